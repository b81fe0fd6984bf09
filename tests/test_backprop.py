"Hand-written gradients against torch.autograd (float64, tight tolerance), errors, and training on Fashion-MNIST."
import pytest, torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from fastfound.backprop import *
from fastfound.backprop import _match
from fastfound.data import load_fashion_mnist

from _f64 import TOL, close, f64, leaf, rand, seeds  # noqa: F401

sizes = st.integers(1, 9)
batch = st.integers(1, 9)   # batch of one included

@settings(max_examples=60, deadline=None)
@given(batch, sizes, sizes, seeds)
def test_lin_grads(n, n_in, n_out, seed):
    g = torch.Generator().manual_seed(seed)
    x, w, b, up = rand(g, n, n_in), rand(g, n_in, n_out), rand(g, n_out), rand(g, n, n_out)
    layer = Lin(w, b); out = layer(x); out.g = up; layer.backward()
    xr, wr, br = map(leaf, (x, w, b))
    outr = xr @ wr + br; outr.backward(up)
    close(out, outr.detach())
    for t, r in ((x, xr), (w, wr), (b, br)): close(t.g, r.grad)
    # the functional version agrees too
    x2, w2, b2 = x.clone(), w.clone(), b.clone(); o2 = lin(x2, w2, b2); o2.g = up; lin_grad(x2, o2, w2, b2)
    for t, r in ((x2, xr), (w2, wr), (b2, br)): close(t.g, r.grad)

@settings(max_examples=60, deadline=None)
@given(batch, sizes, seeds)
def test_relu_grads(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    x, up = rand(g, n, k), rand(g, n, k)
    layer = Relu(); out = layer(x); out.g = up; layer.backward()
    xr = leaf(x); torch.relu(xr).backward(up)
    close(out, torch.relu(x)); close(x.g, xr.grad)

def test_relu_grad_at_zero_matches_torch():
    x = torch.tensor([[-1., 0., 2.]], dtype=f64)
    layer = Relu(); out = layer(x); out.g = torch.ones_like(out); layer.backward()
    xr = leaf(x); torch.relu(xr).sum().backward()
    close(x.g, xr.grad)

@settings(max_examples=60, deadline=None)
@given(batch, st.integers(0, 4), seeds, st.booleans())
def test_mse_grads(n, k, seed, column):
    "Predictions `(N, 1)` against targets `(N,)`, or equal shapes `(N, k)`."
    g = torch.Generator().manual_seed(seed)
    inp = rand(g, n, 1) if column or k == 0 else rand(g, n, k)
    targ = rand(g, n) if column or k == 0 else rand(g, n, k)
    layer = Mse(); loss = layer(inp, targ); layer.backward()
    ir = leaf(inp); lr = F.mse_loss(ir, targ.view_as(ir)); lr.backward()
    close(loss, lr.detach()); close(inp.g, ir.grad)
    inp2 = inp.clone(); mse_grad(inp2, targ); close(inp2.g, ir.grad)

@settings(max_examples=60, deadline=None)
@given(batch, st.integers(1, 9), seeds, st.sampled_from([1., 30., 1e4]))
def test_cross_entropy_grads(n, c, seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = rand(g, n, c) * scale
    targ = torch.randint(0, c, (n,), generator=g)
    layer = CrossEntropy(); loss = layer(x, targ); layer.backward()
    xr = leaf(x); lr = F.cross_entropy(xr, targ); lr.backward()
    close(loss, lr.detach()); close(x.g, xr.grad)
    assert loss.isfinite() and x.g.isfinite().all()

def test_cross_entropy_large_logits_float32():
    "Logits around 1e4 in float32: finite, and equal to autograd's."
    torch.manual_seed(0)
    x = torch.randn(16, 10) * 1e4; targ = torch.randint(0, 10, (16,))
    layer = CrossEntropy(); loss = layer(x, targ); layer.backward()
    xr = leaf(x); F.cross_entropy(xr, targ).backward()
    assert torch.isfinite(loss) and x.g.isfinite().all()
    torch.testing.assert_close(x.g, xr.grad)

def test_upstream_gradient_scales_losses():
    "A loss inside a bigger computation: its `out.g` (not only the implicit 1) is honoured."
    x, targ = torch.randn(4, 3, dtype=f64), torch.randint(0, 3, (4,))
    layer = CrossEntropy(); out = layer(x, targ); out.g = torch.tensor(2.5, dtype=f64); layer.backward()
    xr = leaf(x); (2.5 * F.cross_entropy(xr, targ)).backward()
    close(x.g, xr.grad)
    y = torch.randn(4, dtype=f64); p = torch.randn(4, 1, dtype=f64)
    m = Mse(); out = m(p, y); out.g = torch.tensor(-3., dtype=f64); m.backward()
    pr = leaf(p); (-3 * F.mse_loss(pr[:, 0], y)).backward()
    close(p.g, pr.grad)

def torch_mlp(x, leaves):
    h = x
    for i in range(0, len(leaves), 2):
        h = h @ leaves[i] + leaves[i + 1]
        if i < len(leaves) - 2: h = torch.relu(h)
    return h

@settings(max_examples=40, deadline=None)
@given(batch, st.lists(sizes, min_size=2, max_size=4), seeds, st.booleans())
def test_model_grads(n, widths, seed, classify):
    "Every gradient of a whole model (inputs, weights, biases) equals autograd's, for MSE and cross-entropy."
    torch.manual_seed(seed)
    if classify: widths[-1] = max(widths[-1], 2)
    else: widths[-1] = 1
    net = mlp(widths, input_grad=True, dtype=f64)
    x = torch.randn(n, widths[0], dtype=f64)
    targ = torch.randint(0, widths[-1], (n,)) if classify else torch.randn(n, dtype=f64)
    loss_fn = CrossEntropy() if classify else Mse()
    model = Model([net], loss_fn)
    loss = model(x, targ); model.backward()
    leaves = [leaf(t) for t in (x, *model.parameters())]
    out = torch_mlp(leaves[0], leaves[1:])
    lr = F.cross_entropy(out, targ) if classify else F.mse_loss(out[:, 0], targ)
    lr.backward()
    close(loss, lr.detach())
    for t, r in zip((x, *model.parameters()), leaves): close(t.g, r.grad)

@settings(max_examples=30, deadline=None)
@given(batch, sizes, sizes, seeds)
def test_forward_and_backward(n, n_in, nh, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = rand(g, n, n_in), rand(g, n)
    ps = [rand(g, n_in, nh), rand(g, nh), rand(g, nh, 1), rand(g, 1)]
    loss = forward_and_backward(x, y, *ps)
    leaves = [leaf(t) for t in (x, *ps)]
    lr = mse(torch_mlp(leaves[0], leaves[1:]), y); lr.backward()
    close(loss, lr.detach())
    for t, r in zip((x, *ps), leaves): close(t.g, r.grad)

def test_nested_sequential_and_first_layer_skip():
    torch.manual_seed(0)
    a, b = mlp([5, 4, 3], dtype=f64), mlp([3, 2], input_grad=True, dtype=f64)
    net = Sequential(a, Relu(), b)
    x = torch.randn(3, 5, dtype=f64); targ = torch.randint(0, 2, (3,))
    model = Model([net], CrossEntropy()); model(x, targ); model.backward()
    assert not hasattr(x, 'g')   # the data's gradient is not computed by default
    leaves = [leaf(t) for t in model.parameters()]
    h = torch.relu(torch.relu(x @ leaves[0] + leaves[1]) @ leaves[2] + leaves[3])
    F.cross_entropy(h @ leaves[4] + leaves[5], targ).backward()
    for t, r in zip(model.parameters(), leaves): close(t.g, r.grad)

# --- errors -------------------------------------------------------------------------------------
def test_bad_shapes_name_the_shapes():
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r'\(5, 4\) have 4 features.*got shape \(3, 2\)'): lin(x, torch.randn(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r'\(5, 4\) have 4 features'): Lin(torch.randn(3, 2), torch.zeros(2))(x)
    with pytest.raises(ValueError, match=r'bias of shape \(2,\), got \(3,\)'): lin(x, torch.randn(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r'got shape \(4,\)'): lin(torch.randn(4), torch.randn(4, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r'\(5, 1\) do not match targets of shape \(4,\)'): Mse()(torch.randn(5, 1), torch.randn(4))
    with pytest.raises(ValueError, match=r'\(5, 3\) need targets of shape \(5,\), got \(4,\)'):
        CrossEntropy()(torch.randn(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r'got shape \(3,\)'): CrossEntropy()(torch.randn(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match='class indices'): CrossEntropy()(torch.randn(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match='at least'): mlp([3])

def test_squeeze_free_mse_handles_a_batch_of_one_and_column_targets():
    p, t = torch.randn(1, 1, dtype=f64), torch.randn(1, 1, dtype=f64)
    assert _match(p, t) is t
    m = Mse(); m(p, t); m.backward()
    pr = leaf(p); F.mse_loss(pr, t).backward()
    close(p.g, pr.grad); assert p.g.shape == (1, 1)
    p, t = torch.randn(4, 1, dtype=f64), torch.randn(4, 1, dtype=f64)
    close(mse(p, t), F.mse_loss(p, t))   # a squeeze() would broadcast to (4, 4)

@pytest.mark.parametrize('layer,args', [(Relu(), (torch.randn(2, 3),)), (Lin(torch.randn(3, 2), torch.zeros(2)), (torch.randn(2, 3),)),
                                        (Mse(), (torch.randn(2, 1), torch.randn(2))), (CrossEntropy(), (torch.randn(2, 3), torch.zeros(2, dtype=torch.long)))])
def test_backward_before_forward(layer, args):
    with pytest.raises(RuntimeError, match='before a forward pass'): layer.backward()
    layer(*args); layer.backward() if layer.out.numel() == 1 else None

def test_backward_needs_the_output_gradient():
    l = Relu(); l(torch.randn(2, 3))
    with pytest.raises(RuntimeError, match='no `.g` yet'): l.backward()

def test_sgd_step():
    w = torch.ones(2); opt = SGD([w], lr=0.5)
    with pytest.raises(RuntimeError, match='no `.g`'): opt.step()
    w.g = torch.tensor([1., -2.]); opt.step()
    assert torch.equal(w, torch.tensor([0.5, 2.]))

def test_batches_cover_everything_once():
    idx = torch.cat(list(batches(103, 10, torch.Generator().manual_seed(0))))
    assert sorted(idx.tolist()) == list(range(103))
    assert [len(b) for b in batches(103, 10)][-1] == 3

# --- training on Fashion-MNIST ------------------------------------------------------------------
LRS, BS, SEED = (0.1, 0.1, 0.05), 32, 0

@pytest.fixture(scope='module')
def data():
    x_train, y_train, x_test, y_test = load_fashion_mnist()
    prep = lambda x: x.view(len(x), -1).float() / 255
    xtr, xte = prep(x_train), prep(x_test)
    m, s = xtr.mean(), xtr.std()
    return (xtr - m) / s, y_train, (xte - m) / s, y_test

def torch_net(x, params):
    w1, b1, w2, b2 = params
    return F.linear(F.relu(F.linear(x, w1.t(), b1)), w2.t(), b2)

def accuracy(out, targ): return (out.argmax(-1) == targ).float().mean().item()

@pytest.fixture(scope='module')
def runs(data):
    "Three epochs by hand and three with autograd, from the same weights over the same batches."
    xtr, ytr, xte, yte = data
    torch.manual_seed(42)
    init = mlp([784, 50, 10]).parameters()
    # hand-written
    hp = [p.clone() for p in init]
    net, loss_fn, opt = Sequential(Lin(*hp[:2], input_grad=False), Relu(), Lin(*hp[2:])), CrossEntropy(), SGD(hp, LRS[0])
    gen, hl, hacc, worst = torch.Generator().manual_seed(SEED), [], [], 0.
    for epoch in range(3):
        opt.lr = LRS[epoch]
        for idx in batches(len(xtr), BS, gen):
            xb, yb = xtr[idx], ytr[idx]
            hl.append(loss_fn(net(xb), yb)); loss_fn.backward(); net.backward()
            if len(hl) <= 100:   # autograd's gradients at the very same weights
                ref = [p.detach().clone().requires_grad_() for p in hp]
                F.cross_entropy(torch_net(xb, ref), yb).backward()
                for p, r in zip(hp, ref):
                    torch.testing.assert_close(p.g, r.grad, rtol=1e-4, atol=1e-6)
                    worst = max(worst, (p.g - r.grad).abs().max().item())
            opt.step()
        hacc.append(accuracy(net(xte), yte))
    # autograd
    ap = [p.clone().requires_grad_() for p in init]
    gen, al, aacc = torch.Generator().manual_seed(SEED), [], []
    for epoch in range(3):
        for idx in batches(len(xtr), BS, gen):
            loss = F.cross_entropy(torch_net(xtr[idx], ap), ytr[idx]); loss.backward()
            with torch.no_grad():
                for p in ap: p -= LRS[epoch] * p.grad; p.grad = None
            al.append(loss.detach())
        with torch.no_grad(): aacc.append(accuracy(torch_net(xte, ap), yte))
    print(f'\nhand-written accuracy {hacc}, autograd {aacc}, largest gradient difference (100 steps) {worst:.2e}')
    return dict(hand_acc=hacc, auto_acc=aacc, hand_loss=torch.stack(hl), auto_loss=torch.stack(al), worst=worst)

def test_training_by_hand_reaches_the_targets(runs):
    assert runs['hand_acc'][0] >= 0.80
    assert runs['hand_acc'][2] >= 0.85

def test_training_matches_autograd(runs):
    assert runs['worst'] < 1e-5   # the 100-step check also asserted each step to float32 tolerance
    assert abs(runs['hand_acc'][2] - runs['auto_acc'][2]) <= 0.005
    hl, al = runs['hand_loss'], runs['auto_loss']
    assert hl.shape == al.shape == (3 * 1875,)
    # the loss curves overlap: their running means (100 steps, as plotted in the notebook) agree within 2%
    torch.testing.assert_close(hl.unfold(0, 100, 100).mean(1), al.unfold(0, 100, 100).mean(1), rtol=0.02, atol=0)
