"""The derived gradients of a linear layer, MSE and softmax cross-entropy (fastfound.grads), against
Lin, Mse and CrossEntropy's hand-written backward passes and torch.autograd, in float64, batch
sizes from 1; gradcheck on them."""
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch.autograd import gradcheck
from fastfound.backprop import CrossEntropy, Lin, Mse
from fastfound.grads import ce_grad, lin_grads, lin_grads_index

from _f64 import TOL, close, f64, rand, seeds  # noqa: F401

batch, sizes = st.integers(1, 6), st.integers(1, 5)

@settings(max_examples=60, deadline=None)
@given(batch, sizes, sizes, seeds)
def test_lin_formulas_match_lin_bwd_and_autograd(n, n_in, n_out, seed):
    g = torch.Generator().manual_seed(seed)
    x, w, b, up = rand(g, n, n_in), rand(g, n_in, n_out), rand(g, n_out), rand(g, n, n_out)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    (leaves[0] @ leaves[1] + leaves[2]).backward(up)
    ref = [t.grad for t in leaves]
    layer = Lin(w, b)
    out = layer(x)
    out.g = up
    layer.backward()
    for ours in (lin_grads_index(x, w, up), lin_grads(x, w, up), (x.g, w.g, b.g)):
        for a, r, t in zip(ours, ref, (x, w, b)):
            assert a.shape == t.shape
            close(a, r)
    close(b.g, up.sum(0))            # the bias gradient is the sum over the batch
    if n == 1: close(w.g, torch.outer(x[0], up[0]))

def test_lin_formulas_gradcheck():
    "Finite differences against the matrix formulas, for each input of `x @ w + b`."
    g = torch.Generator().manual_seed(0)
    x, w, b = rand(g, 3, 4), rand(g, 4, 2), rand(g, 2)
    class LinFormulas(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            return x @ w + b
        @staticmethod
        def backward(ctx, grad):
            x, w = ctx.saved_tensors
            return lin_grads(x, w, grad)
    assert gradcheck(LinFormulas.apply, [t.requires_grad_() for t in (x, w, b)])

@settings(max_examples=60, deadline=None)
@given(batch, st.integers(1, 4), seeds, st.booleans())
def test_mse_grad_formula(n, k, seed, column):
    g = torch.Generator().manual_seed(seed)
    p = rand(g, n, 1) if column else rand(g, n, k)
    t = rand(g, n) if column else rand(g, n, k)
    loss_fn = Mse()
    loss_fn(p, t)
    loss_fn.backward()
    tt = t[:, None] if column else t
    pr = p.clone().requires_grad_()
    F.mse_loss(pr, tt).backward()
    close(p.g, 2 * (p - tt) / p.numel())
    close(p.g, pr.grad)

@settings(max_examples=60, deadline=None)
@given(batch, st.integers(2, 8), seeds, st.sampled_from([1., 50., 1e4]))
def test_ce_grad_formula(n, c, seed, scale):
    g = torch.Generator().manual_seed(seed)
    z, y = rand(g, n, c) * scale, torch.randint(0, c, (n,), generator=g)
    loss_fn = CrossEntropy()
    loss_fn(z, y)
    loss_fn.backward()
    zr = z.clone().requires_grad_()
    F.cross_entropy(zr, y).backward()
    close(ce_grad(z, y), zr.grad)
    close(z.g, zr.grad)
    close(z.g.sum(-1), torch.zeros(n, dtype=f64))   # each row of softmax - onehot sums to zero

def test_ce_grad_gradcheck():
    g = torch.Generator().manual_seed(1)
    z, y = rand(g, 4, 3), torch.tensor([0, 2, 1, 2])
    class CE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return F.cross_entropy(z, y)
        @staticmethod
        def backward(ctx, grad):
            z, = ctx.saved_tensors
            return grad * ce_grad(z, y)
    assert gradcheck(CE.apply, [z.requires_grad_()])
