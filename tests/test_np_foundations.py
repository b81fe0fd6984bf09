"""`fastfound.np_foundations` against its PyTorch twins in fastfound, on the same inputs; importing
and training it with torch blocked; its MLP trained step for step with the PyTorch one; the
NumPy/PyTorch bench in smoke mode."""
import ast, math, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, torch
from hypothesis import given, settings, strategies as st
import fastfound.backprop as tb
import fastfound.np_foundations as nf
from fastfound.matmul import matmuls as torch_matmuls
from fastfound.init import calc_gain, kaiming_normal_
from fastfound.data import FMNIST_STATS, SAMPLE_PATH, load_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
seeds, sizes, batch = st.integers(0, 2**31 - 1), st.integers(1, 8), st.integers(1, 8)
TOL = dict(rtol=1e-10, atol=1e-12)

def close(a, b, **kw): np.testing.assert_allclose(a, np.asarray(b), **(kw or TOL))

def test_imports_and_trains_without_torch():
    code = '''
import sys
sys.modules['torch'] = None             # any `import torch` now raises ImportError
import numpy as np
import fastfound.np_foundations as nf
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 20)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int64)
net, loss_fn = nf.mlp([20, 16, 2], rng), nf.CrossEntropy()
opt = nf.SGD(net, 0.1)
losses = np.concatenate([nf.train_epoch(net, loss_fn, opt, x, y, 32, rng) for _ in range(10)])
assert losses[-8:].mean() < 0.5 * losses[:8].mean(), losses
assert nf.accuracy(net(x), y) > 0.9
assert sys.modules['torch'] is None and not any(m.startswith('torch.') for m in sys.modules)
print('ok')
'''
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'})
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr

def test_module_source_has_no_torch_import():
    tree = ast.parse((ROOT/'fastfound'/'np_foundations.py').read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or '' for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert 'numpy' in names, names
    assert not any(n.split('.')[0] in ('torch', 'fastfound') for n in names), names

@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 5), seeds)
def test_matmul_ladder_matches_torch_twins(ar, ac, bc, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((ar, ac)).astype(np.float32)
    b = rng.standard_normal((ac, bc)).astype(np.float32)
    for name, f in nf.matmuls.items():
        c = f(a, b)
        assert c.shape == (ar, bc) and c.dtype == np.float32
        ref = torch_matmuls[name](torch.from_numpy(a), torch.from_numpy(b)).numpy()
        close(c, ref, rtol=1e-5, atol=1e-5)
        close(c, a @ b, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize('f', list(nf.matmuls.values()))
def test_matmul_bad_inputs(f):
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r'`a` has 3 columns but `b` has 2 rows'): f(a, a)
    with pytest.raises(ValueError, match='one dtype'): f(a, np.ones((3, 2)))
    with pytest.raises(ValueError, match='2-D'): f(a, np.ones(3, np.float32))
    with pytest.raises(TypeError, match='got list and ndarray'): f([[1.]], a)

@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.lists(st.integers(1, 3), max_size=2),
       seeds)
def test_stride0_matches_torch_expand(shape, extra, seed):
    "Broadcast to `extra + shape` with some axes of size 1: the same strides as `Tensor.expand`."
    rng = np.random.default_rng(seed)
    src = [1 if rng.random() < 0.5 else n for n in shape]
    v = rng.standard_normal(src).astype(np.float32)
    target = (*extra, *shape)
    m = nf.stride0(v, target)
    t = torch.from_numpy(v).expand(*target)
    assert m.shape == target and np.shares_memory(m, v) and not m.flags.writeable
    big = [i for i, n in enumerate(target) if n > 1]   # the stride of a length-1 axis is never used
    assert [nf.elem_strides(m)[i] for i in big] == [t.stride()[i] for i in big]
    stretched = [i for i in big if i < len(extra) or src[i - len(extra)] == 1]
    assert all(nf.elem_strides(m)[i] == 0 for i in stretched)
    close(m, t.numpy())

@pytest.mark.parametrize('n_in,n_out,gain', [(500, 400, math.sqrt(2)), (300, 600, 1.)])
def test_kaiming_matches_torch_scale(n_in, n_out, gain):
    w = nf.kaiming_normal(n_in, n_out, np.random.default_rng(0), gain=gain)
    assert w.shape == (n_in, n_out) and w.dtype == np.float32
    nl = 'relu' if gain > 1 else 'linear'
    want = calc_gain(nl) / math.sqrt(n_in)
    gen = torch.Generator().manual_seed(0)
    wt = kaiming_normal_(torch.empty(n_out, n_in), nonlinearity=nl, generator=gen)
    assert abs(w.std() / want - 1) < 0.01 and abs(wt.std().item() / want - 1) < 0.01
    assert abs(w.mean()) < 0.01 * want * 10

@settings(max_examples=40, deadline=None)
@given(batch, sizes, sizes, seeds)
def test_functions_and_grads_match_backprop(n, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    x, w, b, g = (rng.standard_normal(s) for s in ((n, n_in), (n_in, n_out), (n_out,), (n, n_out)))
    out = nf.lin(x, w, b)
    xt, wt, bt = map(torch.from_numpy, (x, w, b))
    ot = tb.lin(xt, wt, bt)
    close(out, ot.numpy())
    ot.g = torch.from_numpy(g)
    tb.lin_grad(xt, ot, wt, bt)
    for mine, t in zip(nf.lin_grad(x, w, g), (xt, wt, bt)): close(mine, t.g.numpy())
    r = tb.relu(xt)
    r.g = torch.from_numpy(rng.standard_normal((n, n_in)))
    tb.relu_grad(xt, r)
    close(nf.relu(x), r.numpy())
    close(nf.relu_grad(x, r.g.numpy()), xt.g.numpy())
    p, t = rng.standard_normal((n, 1)), rng.standard_normal(n)
    pt = torch.from_numpy(p)
    close(nf.mse(p, t), tb.mse(pt, torch.from_numpy(t)).item())
    tb.mse_grad(pt, torch.from_numpy(t))
    close(nf.mse_grad(p, t), pt.g.numpy())

@settings(max_examples=40, deadline=None)
@given(batch, st.integers(2, 9), seeds, st.sampled_from([1., 30., 1e4]))
def test_layer_classes_match_backprop(n, c, seed, scale):
    rng = np.random.default_rng(seed)
    z, targ = rng.standard_normal((n, c)) * scale, rng.integers(0, c, n)
    ce, tce = nf.CrossEntropy(), tb.CrossEntropy()
    zt = torch.from_numpy(z)
    close(ce(z, targ), tce(zt, torch.from_numpy(targ)).item())
    tce.backward()
    gz = ce.backward()
    close(gz, zt.g.numpy())
    assert np.isfinite(gz).all()
    close(nf.softmax(z), torch.softmax(zt, -1).numpy())
    w, b, up = rng.standard_normal((c, 3)), rng.standard_normal(3), rng.standard_normal((n, 3))
    lin, tlin = nf.Lin(w, b), tb.Lin(torch.from_numpy(w), torch.from_numpy(b))
    close(lin(z), tlin(zt).numpy())
    tlin.out.g = torch.from_numpy(up)
    tlin.backward()
    close(lin.backward(up), zt.g.numpy())
    for mine, p in zip(lin.grads, tlin.parameters()): close(mine, p.g.numpy())
    m, tm = nf.Mse(), tb.Mse()
    t = rng.standard_normal((n, c))
    close(m(z, t), tm(zt, torch.from_numpy(t)).item())
    tm.backward()
    close(m.backward(), zt.g.numpy())

def test_errors():
    with pytest.raises(RuntimeError, match='before a forward pass'): nf.Relu().backward()
    r = nf.Relu()
    r(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r'shape \(2, 3\) is not a scalar'): r.backward()
    net = nf.mlp([4, 3, 2], np.random.default_rng(0))
    with pytest.raises(RuntimeError, match='no gradients'): nf.SGD(net, 0.1).step()
    with pytest.raises(ValueError, match='an input and an output'): nf.mlp([4], None)
    ce = nf.CrossEntropy()
    with pytest.raises(TypeError, match='class indices'): ce(np.ones((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match=r'need targets of shape \(2,\)'):
        ce(np.ones((2, 3)), np.zeros(3, int))
    with pytest.raises(ValueError, match='do not match targets'):
        nf.mse(np.ones((4, 1)), np.ones(3))
    with pytest.raises(ValueError, match='needs a bias of shape'):
        nf.lin(np.ones((2, 3)), np.ones((3, 4)), np.ones(3))

def test_mlp_matches_autograd():
    "The whole NumPy MLP's gradients, in float64, against torch.autograd on the same weights."
    rng = np.random.default_rng(3)
    net = nf.mlp([6, 5, 4, 3], rng, dtype=np.float64)
    x, y = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    loss_fn = nf.CrossEntropy()
    loss = loss_fn(net(x), y)
    net.backward(loss_fn.backward())
    ps = [torch.tensor(p, requires_grad=True) for p in net.parameters()]
    h = torch.from_numpy(x)
    for i in range(0, len(ps), 2):
        h = h @ ps[i] + ps[i + 1]
        if i < len(ps) - 2: h = h.relu()
    ref = torch.nn.functional.cross_entropy(h, torch.from_numpy(y))
    ref.backward()
    close(loss, ref.item())
    assert len(net.grads) == len(ps)
    for g, p in zip(net.grads, ps): close(g, p.grad.numpy())

def test_mlp_trains_on_the_sample_like_the_torch_one():
    "One epoch on the bundled sample: NumPy and fastfound.backprop, the same weights and batches."
    xt, yt, xv, yv = load_fashion_mnist(SAMPLE_PATH)
    prep = lambda x: (x.reshape(len(x), -1).float() / 255 - FMNIST_STATS[0]) / FMNIST_STATS[1]
    xt, xv = prep(xt), prep(xv)
    net = nf.mlp([784, 50, 10], np.random.default_rng(0))
    def twin_of(l):
        if isinstance(l, nf.Relu): return tb.Relu()
        return tb.Lin(torch.tensor(l.w), torch.tensor(l.b), l.input_grad)
    twin = tb.Sequential(*map(twin_of, net.layers))
    losses = nf.train_epoch(net, nf.CrossEntropy(), nf.SGD(net, 0.1), xt.numpy(), yt.numpy(), 32,
                            np.random.default_rng(1))
    loss_fn, opt, tl = tb.CrossEntropy(), tb.SGD(twin.parameters(), 0.1), []
    for idx in nf.batches(len(xt), 32, np.random.default_rng(1)):
        idx = torch.from_numpy(idx)
        tl.append(loss_fn(twin(xt[idx]), yt[idx]).item())
        loss_fn.backward()
        twin.backward()
        opt.step()
    close(losses, tl, rtol=1e-4, atol=1e-5)
    acc = nf.accuracy(net(xv.numpy()), yv.numpy())
    tacc = (twin(xv).argmax(-1) == yv).float().mean().item()
    assert acc >= 0.70 and abs(acc - tacc) <= 0.005

def test_bench_runs_in_smoke_mode():
    r = subprocess.run([sys.executable, str(ROOT/'bench'/'numpy_vs_torch.py'), '--smoke'],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'})
    assert r.returncode == 0, r.stderr
    rows = [l for l in r.stdout.splitlines() if l.startswith('| ') and 'NumPy' not in l]
    assert len(rows) == 6 and all(float(l.split('|')[-2]) > 0 for l in rows), r.stdout
