"MyRelu and the LayerFunction -> autograd bridge: gradcheck in float64, agreement with autograd, module behaviour."
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck
from hypothesis import given, settings, strategies as st
from fastfound.autograd import *
from fastfound.backprop import Lin, Relu, Mse, CrossEntropy, Sequential, mlp

f64 = torch.float64
seeds = st.integers(0, 2**31 - 1)

def away_from_zero(t): return (t + 0.1 * t.sign()).detach().requires_grad_()

@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), seeds)
def test_myrelu_gradcheck(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    x = away_from_zero(torch.randn(n, k, generator=g, dtype=f64))
    assert gradcheck(MyRelu.apply, (x,))
    xr = x.detach().clone().requires_grad_()
    up = torch.randn(n, k, generator=g, dtype=f64)
    MyRelu.apply(x).backward(up); torch.relu(xr).backward(up)
    assert torch.equal(x.grad, xr.grad)

def test_myrelu_module_in_sequential_trains_like_nn_relu():
    def run(act):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(20, 16), act, nn.Linear(16, 3))
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        g, losses = torch.Generator().manual_seed(1), []
        teacher = torch.randn(20, 3, generator=g)
        for _ in range(100):
            x = torch.randn(16, 20, generator=g); y = (x @ teacher).argmax(1)   # a learnable rule
            loss = F.cross_entropy(m(x), y); loss.backward(); opt.step(); opt.zero_grad()
            losses.append(loss.detach())
        return torch.stack(losses)
    a, b = run(nn.ReLU()), run(MyReluModule())
    assert torch.equal(a, b) and a[-10:].mean() < a[:10].mean()

@settings(max_examples=15, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(2, 5), seeds)
def test_bridge_gradcheck(n, n_in, n_out, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=f64).requires_grad_()
    x, w, b = r(n, n_in), r(n_in, n_out), r(n_out)
    t = torch.randint(0, n_out, (n,), generator=g)
    y = torch.randn(n, generator=g, dtype=f64)
    assert gradcheck(lambda x, w, b: layer_fn(Lin(w, b), x), (x, w, b))
    assert gradcheck(lambda x: layer_fn(Relu(), x), (away_from_zero(x),))
    assert gradcheck(lambda p: layer_fn(Mse(), p, y), (r(n, 1),))
    assert gradcheck(lambda p: layer_fn(CrossEntropy(), p, t), (r(n, n_out) * 5,))

@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(2, 6), min_size=2, max_size=4), seeds)
def test_bridged_model_matches_autograd(n, widths, seed):
    "The bridged hand-written MLP and the same network in plain torch give the same gradients (float64)."
    torch.manual_seed(seed)
    hand = mlp(widths, input_grad=True, dtype=f64)
    model = nn.Sequential(*map(LayerModule, hand.layers))
    x = torch.randn(n, widths[0], dtype=f64, requires_grad=True)
    t = torch.randint(0, widths[-1], (n,))
    LayerModule(CrossEntropy())(model(x), t).backward()
    ps = [p.detach().clone().requires_grad_() for p in model.parameters()]
    xr = x.detach().clone().requires_grad_()
    h = xr
    for i in range(0, len(ps), 2):
        h = h @ ps[i] + ps[i + 1]
        if i < len(ps) - 2: h = h.relu()
    F.cross_entropy(h, t).backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-10, atol=1e-12)
    for p, r in zip(model.parameters(), ps): torch.testing.assert_close(p.grad, r.grad, rtol=1e-10, atol=1e-12)
    assert not any(hasattr(p, 'g') for p in model.parameters())   # no leftover `.g`

def test_one_layer_object_used_twice():
    "The bridge keeps no state on the layer, so one `Relu` can appear twice in a graph."
    relu = Relu()
    x = torch.randn(4, 3, dtype=f64, requires_grad=True); xr = x.detach().clone().requires_grad_()
    y = layer_fn(relu, layer_fn(relu, x) - 0.5).sum(); y.backward()
    torch.relu(torch.relu(xr) - 0.5).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)

def test_missing_input_gradient_is_an_error():
    lin = LayerModule(Lin(torch.randn(3, 2), torch.zeros(2), input_grad=False))
    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match='set no gradient for its argument 0'): lin(x).sum().backward()
    lin(torch.randn(4, 3)).sum().backward()     # fine when the input is data
    assert lin.w.grad is not None

def test_layer_module_is_a_proper_module():
    lm = LayerModule(Lin(torch.randn(3, 2), torch.zeros(2)))
    assert [n for n, _ in lm.named_parameters()] == ['w', 'b']
    sd = lm.state_dict(); assert set(sd) == {'w', 'b'}
    lm2 = LayerModule(Lin(torch.zeros(3, 2), torch.ones(2))); lm2.load_state_dict(sd)
    x = torch.randn(5, 3)
    torch.testing.assert_close(lm2(x), lm(x))
    lm.double()                                  # conversions reach the layer's weights
    assert lm(x.double()).dtype == f64
    assert 'Lin(3, 2)' in repr(lm)

def test_saved_bytes_input_vs_output():
    torch.manual_seed(0)
    l1, l2 = nn.Linear(30, 20), nn.Linear(20, 5)
    xb = torch.randn(16, 30)
    base = saved_bytes(lambda x: l2(torch.relu(l1(x))), xb)
    act = 16 * 20 * 4
    assert base >= 16 * 30 * 4 + act                               # the data and the ReLU's output
    assert saved_bytes(lambda x: l2(MyRelu.apply(l1(x))), xb) - base == act   # saving the input: one more activation
    assert saved_bytes(lambda x: l2(layer_fn(Relu(), l1(x))), xb) - base == act
    assert saved_bytes(lambda x: x * 2, torch.randn(3)) == 0        # nothing saved without grad-requiring inputs
