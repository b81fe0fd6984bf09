"Module: registration, signatures, super().__init__() anyway, inheritance, copies, pickles through files and processes, devices, compile."
import copy, inspect, io, os, pickle, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from torch import nn
from fastfound.module import Module, PreInitMeta

class Net(Module):
    "Parameters, a submodule, a buffer and a non-persistent buffer, assigned without super().__init__()."
    def __init__(self, n_in:int, nh:int=8, n_out:int=2):
        self.layers = nn.Sequential(nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, n_out))
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer('mean', torch.zeros(n_in))
        self.register_buffer('scratch', torch.zeros(1), persistent=False)
        self.n_in = n_in
    def forward(self, x): return self.layers(x - self.mean) * self.scale

class PlainNet(nn.Module):
    def __init__(self, n_in, nh=8, n_out=2):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, n_out))
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer('mean', torch.zeros(n_in))
        self.register_buffer('scratch', torch.zeros(1), persistent=False)
        self.n_in = n_in
    def forward(self, x): return self.layers(x - self.mean) * self.scale

def names(it): return [n for n, _ in it]

def test_registers_like_nn_module():
    net, plain = Net(4), PlainNet(4)
    assert names(net.named_parameters()) == names(plain.named_parameters())
    assert names(net.named_buffers()) == names(plain.named_buffers()) == ['mean', 'scratch']
    assert names(net.named_modules()) == names(plain.named_modules())
    assert list(net.state_dict()) == list(plain.state_dict())  # the non-persistent buffer stays out of both
    assert 'scratch' not in net.state_dict() and net.n_in == 4 and 'n_in' not in net._parameters
    assert isinstance(net, nn.Module) and net.training
    # attributes registered after construction, and deleted ones, behave as in nn.Module
    net.extra = nn.Linear(2, 2)
    assert 'extra.weight' in net.state_dict()
    del net.scale
    assert 'scale' not in dict(net.named_parameters())

def test_hooks_and_modes_work():
    net, seen = Net(4), []
    net.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    net(torch.randn(3, 4))
    assert seen == [(3, 2)]
    assert not net.eval().training and not net.layers[0].training

def test_signature():
    assert str(inspect.signature(Net)) == '(n_in: int, nh: int = 8, n_out: int = 2)'
    assert str(inspect.signature(Module)) == '()'
    # an instance's signature is that of calling it, as for any nn.Module; the class's does not leak to it
    assert inspect.signature(Net(2)) == inspect.signature(PlainNet(2))
    class NoInit(Net): pass
    assert inspect.signature(NoInit) == inspect.signature(Net)
    class Mixin:
        def __init__(self, k): self.k = k
    class Mixed(Mixin, Module): pass
    assert list(inspect.signature(Mixed).parameters) == ['k'] and Mixed(3).k == 3

def test_super_init_is_harmless():
    class Late(Module):
        def __init__(self):
            self.w = nn.Parameter(torch.ones(3))
            self.register_buffer('b', torch.ones(1))
            self.sub = nn.Linear(1, 1)
            super().__init__()
            super().__init__()
            self.v = nn.Parameter(torch.ones(1))
    m = Late()
    assert names(m.named_parameters()) == ['w', 'v', 'sub.weight', 'sub.bias']
    assert names(m.named_buffers()) == ['b']
    # calling __init__ again on a finished module keeps it too
    Module.__init__(m)
    assert len(list(m.parameters())) == 4

def test_subclass_of_subclass():
    class Child(Net):
        def __init__(self, n_in, extra):
            super().__init__(n_in)
            self.head = nn.Linear(2, extra)
        def forward(self, x): return self.head(super().forward(x))
    class GrandChild(Child):
        def __init__(self, n_in): Child.__init__(self, n_in, 5)  # an explicit parent call also works
    assert str(inspect.signature(Child)) == '(n_in, extra)'
    g = GrandChild(4)
    assert g(torch.randn(3, 4)).shape == (3, 5)
    assert names(g.named_children()) == ['layers', 'head']

def test_multiple_inheritance():
    class Left(Module):
        def __init__(self): super().__init__(); self.left = nn.Parameter(torch.zeros(1))
    class Right(Module):
        def __init__(self): super().__init__(); self.right = nn.Parameter(torch.zeros(1))
    class Both(Left, Right):
        def __init__(self): super().__init__(); self.both = nn.Parameter(torch.zeros(1))
    assert sorted(names(Both().named_parameters())) == ['both', 'left', 'right']
    class Explicit(Left, Right):  # non-cooperative parents called one by one
        def __init__(self): Left.__init__(self); Right.__init__(self)
    assert sorted(names(Explicit().named_parameters())) == ['left', 'right']
    class LinearModule(nn.Linear, Module): pass  # an existing nn.Module class first, so its __init__ runs
    lm = LinearModule(3, 2)
    assert names(lm.named_parameters()) == ['weight', 'bias'] and lm(torch.randn(4, 3)).shape == (4, 2)
    assert list(inspect.signature(LinearModule).parameters)[:2] == ['in_features', 'out_features']

def test_pre_init_meta_on_its_own():
    calls = []
    class A(metaclass=PreInitMeta):
        def __pre_init__(self, x, y=1): calls.append(('pre', x, y))
        def __init__(self, x, y=1): calls.append(('init', x, y))
    A(1, y=2)
    assert calls == [('pre', 1, 2), ('init', 1, 2)]
    class B(metaclass=PreInitMeta):  # no __pre_init__: a plain class
        def __init__(self, x): self.x = x
    assert B(3).x == 3
    class C(metaclass=PreInitMeta):  # __new__ returning another type skips __init__, as with type.__call__
        def __new__(cls, x): return x
        def __init__(self, x): raise AssertionError('not called')
    assert C(7) == 7
    with pytest.raises(TypeError): Net()  # a missing argument is still the usual TypeError

def same(m1, m2, x):
    torch.testing.assert_close(m1(x), m2(x))
    assert list(m1.state_dict()) == list(m2.state_dict())
    for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()): assert p1 is not p2, n

def test_deepcopy_and_pickle():
    net, x = Net(4), torch.randn(3, 4)
    with torch.no_grad(): net.mean += 0.5
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert type(clone) is Net and clone.n_in == 4
        same(clone, net, x)
        clone.scale.data.fill_(3.)  # independent of the original
        assert net.scale.item() == 1.

def test_pickle_through_a_file_and_another_process(tmp_path):
    net, x = Net(4), torch.randn(3, 4)
    with torch.no_grad(): net.scale.fill_(2.)
    fn = tmp_path/'net.pkl'
    fn.write_bytes(pickle.dumps((net, x)))
    same(pickle.loads(fn.read_bytes())[0], net, x)
    out = tmp_path/'out.pt'
    code = ("import pickle, sys, torch; net, x = pickle.load(open(sys.argv[1], 'rb')); "
            "torch.save(net(x).detach(), sys.argv[2])")
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(Path(__file__).parent), os.environ.get('PYTHONPATH', '')])}
    subprocess.run([sys.executable, '-c', code, str(fn), str(out)], check=True, env=env, timeout=120)
    torch.testing.assert_close(torch.load(out, weights_only=True), net(x).detach())

def test_state_dict_round_trip():
    src, dst, x = Net(4), Net(4), torch.randn(3, 4)
    with torch.no_grad(): src.mean.fill_(0.25)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    res = dst.load_state_dict(torch.load(buf, weights_only=True))
    assert not res.missing_keys and not res.unexpected_keys
    torch.testing.assert_close(dst(x), src(x))
    # and across the two ways of writing the model
    plain = PlainNet(4)
    plain.load_state_dict(src.state_dict())
    torch.testing.assert_close(plain(x), src(x))

def test_to():
    net = Net(4)
    assert net.to(torch.float64) is net
    assert {t.dtype for t in [*net.parameters(), *net.buffers()]} == {torch.float64}
    assert net(torch.randn(2, 4, dtype=torch.float64)).dtype == torch.float64
    meta = Net(4).to('meta')
    assert {t.device.type for t in [*meta.parameters(), *meta.buffers()]} == {'meta'}
    if torch.cuda.is_available():
        cu = Net(4).cuda()
        assert cu(torch.randn(2, 4, device='cuda')).device.type == 'cuda'

@pytest.mark.filterwarnings('ignore::DeprecationWarning:torch.jit')  # raised inside torch's own compile path
@pytest.mark.parametrize('backend', ['eager', 'inductor'])
def test_torch_compile(backend):
    torch._dynamo.reset()
    net, x = Net(4), torch.randn(3, 4)
    cnet = torch.compile(net, backend=backend, fullgraph=True)
    torch.testing.assert_close(cnet(x), net(x))
    # compiled, it still trains: gradients reach the Module's parameters
    cnet(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    del cnet
    torch._dynamo.reset()
