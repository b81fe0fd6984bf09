"""The unfold convolution against F.conv2d, its hand-written gradients against autograd (float64)
and gradcheck, and the hand-written CNN training step for step with torch.nn, alone and through
the Learner."""
import pytest, torch
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st
from torch.autograd import gradcheck
from fastfound.autograd import layer_fn
from fastfound.backprop import CrossEntropy, SGD, Sequential
from fastfound.conv import (Conv, as_torch, conv2d, conv_net, conv_out_size,
                            unfold_bytes)
from fastfound.data import FMNIST_STATS, SAMPLE_PATH, load_fashion_mnist

f64 = torch.float64

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "One thread: the machine is shared, and two contending threads are many times slower than one."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@st.composite
def conv_case(draw, max_size=9):
    "A batch, a weight, a stride and a padding that make a valid convolution."
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    kh, kw = draw(st.integers(1, h + 2 * p[0])), draw(st.integers(1, w + 2 * p[1]))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    bias, seed = draw(st.booleans()), draw(st.integers(0, 2**31 - 1))
    return (n, c, h, w), (o, c, kh, kw), s, p, bias, seed

def make(case, dtype=torch.float32):
    xs, ws, s, p, bias, seed = case
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(*xs, generator=g, dtype=dtype), torch.randn(*ws, generator=g, dtype=dtype)
    b = torch.randn(ws[0], generator=g, dtype=dtype) if bias else None
    return x, w, b, s, p

ONE_BY_ONE = ((2, 3, 5, 4), (4, 3, 1, 1), (1, 1), (0, 0), True, 0)
WHOLE_INPUT = ((2, 3, 5, 4), (4, 3, 5, 4), (1, 1), (0, 0), True, 1)
WHOLE_PADDED = ((1, 2, 3, 3), (2, 2, 5, 7), (2, 1), (1, 2), False, 2)

@settings(max_examples=200, deadline=None)
@given(conv_case())
@example(ONE_BY_ONE)
@example(WHOLE_INPUT)
@example(WHOLE_PADDED)
def test_conv2d_matches_f_conv2d(case):
    x, w, b, s, p = make(case)
    out = conv2d(x, w, b, s, p)
    torch.testing.assert_close(out, F.conv2d(x, w, b, s, p), rtol=1e-4, atol=1e-5)
    test_shape = [conv_out_size(*a) for a in zip(x.shape[2:], w.shape[2:], s, p)]
    assert list(out.shape) == [len(x), len(w), *test_shape]

def test_conv2d_int_stride_and_padding():
    x, w = torch.randn(2, 3, 8, 6), torch.randn(5, 3, 3, 3)
    ours, ref = conv2d(x, w, stride=2, padding=1), F.conv2d(x, w, stride=2, padding=1)
    torch.testing.assert_close(ours, ref)

@pytest.mark.parametrize('x,w,b,kw,msg', [
    ((2, 3, 8, 8), (4, 2, 3, 3), None, {},
     'input of shape (2, 3, 8, 8) has 3 channels, but the weight of shape (4, 2, 3, 3) expects 2'),
    ((2, 3, 4, 8), (4, 3, 5, 3), None, {},
     'kernel (5, 3) of weight (4, 3, 5, 3) is larger than the padded input (4, 8)'),
    ((2, 3, 4, 4), (4, 3, 7, 3), None, dict(padding=1), 'larger than the padded input (6, 6)'),
    ((3, 8, 8), (4, 3, 3, 3), None, {}, 'input must be (N, C, H, W), got shape (3, 8, 8)'),
    ((2, 3, 8, 8), (4, 3, 3), None, {}, 'weight must be (out_channels, in_channels, kh, kw)'),
    ((2, 3, 8, 8), (4, 3, 3, 3), (3,), {}, 'needs a bias of shape (4,), got (3,)'),
    ((2, 3, 8, 8), (4, 3, 3, 3), None, dict(stride=(1, 0)), 'stride must be an int >= 1'),
    ((2, 3, 8, 8), (4, 3, 3, 3), None, dict(padding=-1), 'padding must be an int >= 0'),
])
def test_conv2d_bad_shapes(x, w, b, kw, msg):
    b = None if b is None else torch.randn(b)
    with pytest.raises(ValueError) as e: conv2d(torch.randn(x), torch.randn(w), b, **kw)
    assert msg in str(e.value)

@settings(max_examples=150, deadline=None)
@given(conv_case(), st.booleans())
@example(ONE_BY_ONE, True)
@example(WHOLE_INPUT, True)
@example(WHOLE_PADDED, False)
def test_conv_grads_match_autograd(case, input_grad):
    x, w, b, s, p = make(case, f64)
    layer = Conv(w, b, s, p, input_grad=input_grad)
    out = layer(x)
    out.g = torch.randn(out.shape, generator=torch.Generator().manual_seed(case[-1]), dtype=f64)
    layer.backward()
    leaves = [t.detach().clone().requires_grad_(t is not x or input_grad)
              for t in (x, w, b) if t is not None]
    F.conv2d(*leaves, stride=s, padding=p).backward(out.g)
    ours = [x, w] + ([b] if b is not None else [])
    for t, r in zip(ours, leaves):
        if t is x and not input_grad: assert not hasattr(x, 'g') and r.grad is None
        else: torch.testing.assert_close(t.g, r.grad, rtol=1e-10, atol=1e-12)
    assert layer.parameters() == ([w] if b is None else [w, b])

@settings(max_examples=12, deadline=None)
@given(conv_case(max_size=5))
@example(WHOLE_PADDED)
def test_conv_gradcheck_through_the_bridge(case):
    x, w, b, s, p = make(case, f64)
    inputs = [t.requires_grad_() for t in (x, w, b) if t is not None]
    def f(x, w, b=None): return layer_fn(Conv(w, b, s, p), x)
    assert gradcheck(f, inputs)

def test_flatten_and_a_small_cnn_match_autograd():
    torch.manual_seed(0)
    net = conv_net(channels=(2, 3, 4), ks=(3, 3), hidden=5, n_out=3, size=9, dtype=f64)
    x, y = torch.randn(4, 2, 9, 9, dtype=f64), torch.tensor([0, 2, 1, 2])
    twin = as_torch(net)
    loss_fn = CrossEntropy()
    loss = loss_fn(net(x), y)
    loss_fn.backward()
    net.backward()
    ref = F.cross_entropy(twin(x), y)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    for p, (name, q) in zip(net.parameters(), twin.named_parameters()):
        qg = q.grad.t() if p.ndim == 2 else q.grad   # Lin keeps (n_in, n_out), nn.Linear (out, in)
        torch.testing.assert_close(p.g, qg, rtol=1e-10, atol=1e-12)

def test_as_torch_and_conv_net_errors():
    with pytest.raises(TypeError, match='no torch.nn twin for CrossEntropy'):
        as_torch(Sequential(CrossEntropy()))
    with pytest.raises(ValueError, match='2 convolutions need as many kernel sizes'):
        conv_net(ks=(3,))

@settings(max_examples=50, deadline=None)
@given(conv_case())
def test_unfold_bytes(case):
    x, w, b, s, p = make(case)
    cols = F.unfold(x, w.shape[2:], padding=p, stride=s)
    assert unfold_bytes(x, tuple(w.shape[2:]), s, p) == cols.nbytes

@pytest.fixture(scope='module')
def sample():
    xt, yt, xv, yv = load_fashion_mnist(SAMPLE_PATH)
    prep = lambda x: ((x.float() / 255 - FMNIST_STATS[0]) / FMNIST_STATS[1])[:, None]
    return prep(xt), yt, prep(xv), yv

@pytest.mark.parametrize('dtype,n_steps,tol', [(f64, 30, 1e-12), (torch.float32, 5, 1e-5)])
def test_cnn_follows_torch_nn_step_for_step(sample, dtype, n_steps, tol):
    """SGD steps on real images: the hand-written CNN and its torch.nn twin, from the same weights.
    In float32 only the first few: the runs part once a ReLU input rounds to different sides of
    zero in the two (see 03b_conv)."""
    xt, yt, _, _ = sample
    xt = xt.to(dtype)
    torch.manual_seed(0)
    net = conv_net(dtype=dtype)
    twin = as_torch(net)
    loss_fn, opt = CrossEntropy(), SGD(net.parameters(), 0.1)
    perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(0))
    losses = []
    for idx in perm[:n_steps * 64].split(64):
        loss = loss_fn(net(xt[idx]), yt[idx])
        loss_fn.backward()
        net.backward()
        opt.step()
        ref = F.cross_entropy(twin(xt[idx]), yt[idx])
        ref.backward()
        with torch.no_grad():
            for q in twin.parameters():
                q.sub_(q.grad, alpha=0.1)
                q.grad = None
        torch.testing.assert_close(loss, ref.detach(), rtol=tol, atol=tol)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for p, q in zip(net.parameters(), twin.parameters()):
        q = q.detach().t() if p.ndim == 2 else q.detach()
        torch.testing.assert_close(p, q, rtol=tol, atol=10 * tol)

def test_cnn_trains_on_the_sample_through_the_learner(sample):
    "Three epochs through the Learner with the step's pieces replaced: the weights of a plain loop."
    from fastfound.learner import Learner, Callback
    from fastfound.learner import accuracy
    from fastfound.data import DataLoaders

    class HandStep(Callback):
        def before_fit(self): self.opt_ = SGD(self.model.parameters(), self.learn.lr)
        def backward(self):
            self.learn.loss_func.backward()
            self.model.backward()
        def step(self): self.opt_.step()
        def zero_grad(self): pass

    xt, yt, xv, yv = sample
    torch.manual_seed(0)
    dls = DataLoaders.from_tensors(xt, yt, xv, yv, bs=64, device='cpu', drop_last=True)
    learn = Learner(conv_net(), dls, loss_func=CrossEntropy(), opt_func=None, lr=0.05,
                    cbs=HandStep(), metrics=accuracy)
    learn.fit(3)
    assert learn.epoch_stats['valid_accuracy'] >= 0.75
    torch.manual_seed(0)
    net = conv_net()
    loss_fn, opt = CrossEntropy(), SGD(net.parameters(), 0.05)
    for epoch in range(3):
        for idx in torch.randperm(len(xt))[:len(xt) // 64 * 64].split(64):   # drop_last
            loss_fn(net(xt[idx]), yt[idx])
            loss_fn.backward()
            net.backward()
            opt.step()
    for p, q in zip(net.parameters(), learn.model.parameters()): torch.testing.assert_close(p, q)
