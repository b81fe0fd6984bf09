"""The exercises' checkers, proved both ways: the reference solutions (kept here, never on the pages) pass, and
typical wrong answers each get their own message. A stub that raises `NotImplementedError` is 'not attempted'."""
import math
import pytest, torch
import torch.nn.functional as F
from fastfound import exercises as ex
from fastfound.events import Callback, CancelEpochException, CancelFitException

# --- reference solutions --------------------------------------------------------------------------------------

def matmul_loops(a, b):
    c = torch.zeros(a.shape[0], b.shape[1], dtype=a.dtype)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            for k in range(a.shape[1]): c[i, j] += a[i, k] * b[k, j]
    return c

def matmul_bcast(a, b):
    c = torch.zeros(a.shape[0], b.shape[1], dtype=a.dtype)
    for i in range(a.shape[0]): c[i] = (a[i, :, None] * b).sum(0)
    return c

def matmul_einsum(a, b): return torch.einsum('ik,kj->ij', a, b)

def broadcast_shape(s1, s2):
    n = max(len(s1), len(s2))
    s1, s2 = (1,) * (n - len(s1)) + tuple(s1), (1,) * (n - len(s2)) + tuple(s2)
    res = []
    for a, b in zip(s1, s2):
        if a != b and 1 not in (a, b): raise ValueError(f'{s1} and {s2} do not broadcast')
        res.append(max(a, b) if 0 not in (a, b) else 0)
    return tuple(res)

def broadcast_add(m, v): return m + v[:, None]

def lin(x, w, b): return x @ w + b

def relu_grad(inp, out): inp.g = out.g * (inp > 0).float()

def mse_grad(inp, targ): inp.g = 2 * (inp.squeeze(-1) - targ.view(-1)).unsqueeze(-1) / inp.shape[0]

def lin_grads(x, w, b, G): return G @ w.T, x.T @ G, G.sum(0)

def softmax(z):
    e = (z - z.max(-1, keepdim=True).values).exp()
    return e / e.sum(-1, keepdim=True)

def ce_grad(z, y):
    s = softmax(z)
    s[torch.arange(len(y)), y] -= 1
    return s / len(y)

class MyRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)
    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * (x > 0)

class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = 1 / (1 + (-x).exp())
        ctx.save_for_backward(s)
        return s
    @staticmethod
    def backward(ctx, g):
        s, = ctx.saved_tensors
        return g * s * (1 - s)

class MyLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w + b
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, g.sum(0)

def fans(w):
    k = math.prod(w.shape[2:])
    return w.shape[1] * k, w.shape[0] * k

def kaiming(w): return w.normal_(0, math.sqrt(2 / fans(w)[0]))

def xavier(w): return w.normal_(0, math.sqrt(2 / sum(fans(w))))

def conv_out_size(size, k, stride, padding): return (size + 2 * padding - k) // stride + 1

def im2col(x, k):
    n, c, h, w = x.shape
    cols = [x[:, :, i:i + k, j:j + k].reshape(n, -1) for i in range(h - k + 1) for j in range(w - k + 1)]
    return torch.stack(cols, -1)

def my_conv2d(x, w, b, stride, padding):
    cols = F.unfold(x, w.shape[2:], padding=padding, stride=stride)
    oh, ow = (conv_out_size(s, k, stride, padding) for s, k in zip(x.shape[2:], w.shape[2:]))
    return ((w.reshape(len(w), -1) @ cols) + b[:, None]).view(len(x), len(w), oh, ow)

class BatchCounter(Callback):
    def before_fit(self): self.counts = []
    def before_epoch(self): self.counts.append(0)
    def after_batch(self):
        if self.learn.training: self.counts[-1] += 1

class StopAfter(Callback):
    def __init__(self, n): self.n, self.seen = n, 0
    def after_batch(self):
        if not self.learn.training: return
        self.seen += 1
        if self.seen >= self.n: raise CancelFitException()

class GradClip(Callback):
    def __init__(self, max_norm): self.max_norm = max_norm
    def after_backward(self): torch.nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.max_norm)

# --- typical wrong answers ---------------------------------------------------------------------------------------

def _inplace_matmul(a, b):
    a.mul_(1)
    a[0, 0] = a[0, 0] + 1
    return a @ b

class _CountAll(BatchCounter):
    def after_batch(self): self.counts[-1] += 1

class _CountTotal(Callback):
    def before_fit(self): self.counts = [0]
    def after_batch(self):
        if self.learn.training: self.counts[0] += 1

class _StopEpoch(StopAfter):
    def after_batch(self):
        if not self.learn.training: return
        self.seen += 1
        if self.seen >= self.n: raise CancelEpochException()

class _StopLate(StopAfter):
    def after_batch(self):
        if self.learn.training: self.seen += 1
        if self.seen > self.n: raise CancelFitException()

class _ClipLate(GradClip):
    def after_backward(self): pass
    def after_step(self): torch.nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.max_norm)

class _ClipEach(GradClip):
    def after_backward(self):
        for p in self.learn.model.parameters(): torch.nn.utils.clip_grad_norm_([p], self.max_norm)

class _ClipAlways(GradClip):
    def after_backward(self):
        ps = [p for p in self.learn.model.parameters()]
        n = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ps]))
        for p in ps: p.grad.mul_(self.max_norm / n)

def _relu_fn(fwd, bwd):
    "An autograd Function from two plain functions: forward(x), backward(x, g)."
    class F_(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return fwd(x)
        @staticmethod
        def backward(ctx, g): return bwd(ctx.saved_tensors[0], g)
    return F_

class _ReluInPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x.clone())
        return x.clamp_min_(0).clone()
    @staticmethod
    def backward(ctx, g): return g * (ctx.saved_tensors[0] > 0)

class _LinNoBias(MyLinear):
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, None

class _LinWT(MyLinear):
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, (x.T @ g) * 1.5, g.sum(0)

def _softmax_naive(z): return z.exp() / z.exp().sum(-1, keepdim=True)

def _mse_no_mean(inp, targ): inp.g = 2 * (inp - targ.view(-1, 1))

def _mse_broadcast(inp, targ): inp.g = 2 * (inp - targ) / inp.shape[0]

def _mse_sign(inp, targ): inp.g = 2 * (targ.view(-1, 1) - inp) / inp.shape[0]

def _mse_half(inp, targ): inp.g = (inp - targ.view(-1, 1)) / inp.shape[0]

def _relu_grad_inplace(inp, out):
    out.g.mul_(inp > 0)
    inp.g = out.g

def _kaiming_new(w): return torch.randn_like(w) * math.sqrt(2 / fans(w)[0])

def _kaiming_var(w): return w.normal_(0, 2 / fans(w)[0])

def sched_cos(start, end, pos): return start + (1 - math.cos(math.pi * pos)) / 2 * (end - start)

def sched_exp(start, end, pos): return start * (end / start) ** pos

def combine(pcts, scheds):
    edges = [sum(pcts[:i]) for i in range(len(pcts) + 1)]
    def f(pos):
        i = min(max(j for j in range(len(pcts)) if pos >= edges[j]), len(pcts) - 1)
        return scheds[i]((pos - edges[i]) / pcts[i])
    return f

def _combine_global(pcts, scheds):
    edges = [sum(pcts[:i]) for i in range(len(pcts) + 1)]
    return lambda pos: scheds[min(max(j for j in range(len(pcts)) if pos >= edges[j]), len(pcts) - 1)](pos)

CASES = [  # (checker, reference solutions, [(wrong answer, the words its message must hold), ...])
    (ex.check_matmul, [matmul_loops, matmul_bcast, matmul_einsum],
     [(lambda a, b: b.T @ a.T, 'transposed?'), (lambda a, b: (a @ b).float(), 'dtype torch.float32, expected torch.float64'),
      (_inplace_matmul, 'changed its input `a` in place'), (lambda a, b: a[:, :1] * b[:1], 'is off by'),
      (lambda a, b: (a @ b).tolist(), 'is a list, not a tensor')]),
    (ex.check_broadcast_shape, [broadcast_shape],
     [(lambda s1, s2: tuple(max(a, b) for a, b in zip(s1, s2)), 'dimensions, expected'),
      (lambda s1, s2: tuple(torch.broadcast_shapes(s1, s2)) if len(s1) == len(s2) else
       tuple(max(a, b) for a, b in zip((1,) * (len(s2) - len(s1)) + s1 if len(s1) < len(s2) else s1,
                                       s2 + (1,) * (len(s1) - len(s2)) if len(s2) < len(s1) else s2)), 'wrong in dimension'),
      (lambda s1, s2: tuple(max(a, b) for a, b in zip((1,) * (4 - len(s1)) + tuple(s1), (1,) * (4 - len(s2)) + tuple(s2)))[
          -max(len(s1), len(s2)):] if max(len(s1), len(s2)) else (), 'instead of raising ValueError'),
      (lambda s1, s2: list(torch.broadcast_shapes(s1, s2)), 'not a tuple')]),
    (ex.check_broadcast_add, [broadcast_add],
     [(lambda m, v: m + v, 'make v a column'), (lambda m, v: m.add_(v[:, None]), 'changed its input `m`'),
      (lambda m, v: m + v[:, None] * 2, 'is off by')]),
    (ex.check_lin, [lin],
     [(lambda x, w, b: x @ w, 'the bias is missing'), (lambda x, w, b: (x @ w + b).T, 'transposed?'),
      (lambda x, w, b: x.add_(0.5) @ w + b, 'changed its input `x`')]),
    (ex.check_relu_grad, [relu_grad],
     [(lambda inp, out: setattr(inp, 'g', (inp > 0).float()), 'the chain rule'),
      (lambda inp, out: setattr(inp, 'g', out.g.clone()), 'where the input is negative'),
      (lambda inp, out: setattr(inp, 'g', out.g * (inp >= 0)), 'exactly 0'),
      (_relu_grad_inplace, 'changed its input `out.g`'), (lambda inp, out: None, 'inp.g was not set')]),
    (ex.check_mse_grad, [mse_grad],
     [(_mse_no_mean, 'times too large'), (_mse_broadcast, 'broadcast a (N, 1) against a (N,)'),
      (_mse_sign, 'wrong sign'), (_mse_half, 'factor 2')]),
    (ex.check_lin_grads, [lin_grads],
     [(lambda x, w, b, G: (G @ w.T, G.T @ x, G.sum(0)), 'dw has shape'),
      (lambda x, w, b, G: (G @ w.T, x.T @ G, G), 'sum over it'),
      (lambda x, w, b, G: (G @ w.T, x.T @ G, G.mean(0)), 'the mean over the batch'),
      (lambda x, w, b, G: (G @ w.T, x.T @ G), 'three gradients'),
      (lambda x, w, b, G: (G @ w.T * 1.01, x.T @ G, G.sum(0)), 'dx[')]),
    (ex.check_softmax, [softmax, lambda z: torch.softmax(z, -1)],
     [(_softmax_naive, 'subtract each row\'s maximum'), (lambda z: torch.softmax(z, 0), 'over the batch'),
      (lambda z: z.sub_(z.max(-1, keepdim=True).values).exp() / z.exp().sum(-1, keepdim=True), 'changed its input `z`'),
      (lambda z: (z.exp() / z.exp().sum()), 'is off by')]),
    (ex.check_ce_grad, [ce_grad],
     [(lambda z, y: ce_grad(z, y) * len(y), 'too large'), (lambda z, y: softmax(z) / len(y), 'not subtracted'),
      (lambda z, y: -ce_grad(z, y), 'is off by')]),
    (ex.check_relu_function, [MyRelu],
     [(_relu_fn(lambda x: x.clamp_min(0), lambda x, g: g), 'the gradient of input 0'),
      (_relu_fn(lambda x: x.clamp_min(0), lambda x, g: (x > 0).to(g.dtype)), 'the gradient of input 0'),
      (_ReluInPlace, 'changed its input `input 0`'), (_relu_fn(lambda x: x.abs(), lambda x, g: g), "forward's output"),
      (lambda x: x.clamp_min(0), 'not a torch.autograd.Function')]),
    (ex.check_sigmoid_function, [MySigmoid],
     [(_relu_fn(torch.sigmoid, lambda x, g: g * torch.sigmoid(x)), 'the gradient of input 0'),
      (_relu_fn(torch.tanh, lambda x, g: g), "forward's output"),
      (_relu_fn(lambda x: torch.sigmoid(x).detach(), lambda x, g: None), 'no gradient for input 0')]),
    (ex.check_linear_function, [MyLinear],
     [(_LinNoBias, 'no gradient for input 2'), (_LinWT, 'the gradient of input 1'),
      (type('_NoBiasFwd', (MyLinear,), {'forward': staticmethod(lambda ctx, x, w, b: MyLinear.forward(ctx, x, w, b * 0))}),
       "forward's output")]),
    (ex.check_fans, [fans],
     [(lambda w: fans(w)[::-1], 'swapped'), (lambda w: (w.shape[1], w.shape[0]), 'kernel\'s size is missing'),
      (lambda w: w.shape[1], 'return (fan_in, fan_out)')]),
    (ex.check_kaiming, [kaiming],
     [(lambda w: w.normal_(0, math.sqrt(1 / fans(w)[0])), 'the gain √2 is missing'),
      (lambda w: w.normal_(0, math.sqrt(2 / fans(w)[1])), 'fan_out, not fan_in'),
      (_kaiming_new, 'w was not changed'), (_kaiming_var, 'off by a square root'),
      (lambda w: w.normal_(1, math.sqrt(2 / fans(w)[0])), 'not 0')]),
    (ex.check_xavier, [xavier],
     [(lambda w: w.normal_(0, math.sqrt(1 / sum(fans(w)))), 'the gain √2 is missing'),
      (lambda w: w.normal_(0, math.sqrt(2 / fans(w)[0])), 'times the right one'),
      (lambda w: w.clone().normal_(0, 1), 'w was not changed')]),
    (ex.check_conv_out_size, [conv_out_size],
     [(lambda s, k, st, p: (s + p - k) // st + 1, 'counts twice'), (lambda s, k, st, p: (s + 2 * p - k) // st, 'one short'),
      (lambda s, k, st, p: (s + 2 * p - k) / st + 1, 'not an int')]),
    (ex.check_unfold, [im2col],
     [(lambda x, k: F.unfold(x, k).view(x.shape[0], x.shape[1], k * k, -1).transpose(1, 2).reshape(x.shape[0], -1,
       (x.shape[2] - k + 1) * (x.shape[3] - k + 1)), 'wrong order'),
      (lambda x, k: F.unfold(x, k).transpose(1, 2), 'has shape'), (lambda x, k: F.unfold(x, k, padding=1), 'has shape')]),
    (ex.check_conv, [my_conv2d, F.conv2d],
     [(lambda x, w, b, s, p: F.conv2d(x, w, None, s, p), 'the bias is missing'),
      (lambda x, w, b, s, p: F.conv2d(x, w, b, 1, p), 'the stride is ignored'),
      (lambda x, w, b, s, p: F.conv2d(x, w, b, s, 0), 'the padding is ignored'),
      (lambda x, w, b, s, p: F.conv2d(x, w.flip(-1, -2), b, s, p), 'is off by')]),
    (ex.check_batch_counter, [BatchCounter],
     [(_CountAll, 'include the validation batches'), (_CountTotal, 'one running total'),
      (type('_NoCounts', (Callback,), {}), 'no `counts` attribute'), (BatchCounter(), 'pass the class itself')]),
    (ex.check_stop_after, [StopAfter],
     [(_StopEpoch, 'CancelEpochException ends only the epoch'), (_StopLate, 'off by one'),
      (type('_Never', (StopAfter,), {'after_batch': lambda self: None}), 'never stopped')]),
    (ex.check_grad_clip, [GradClip],
     [(_ClipLate, 'not clipped before the optimizer step'), (_ClipEach, 'norm of all the parameters'),
      (_ClipAlways, 'smaller than max_norm were changed')]),
    (ex.check_sched_cos, [sched_cos],
     [(lambda s, e, p: sched_cos(e, s, p), 'from end to start'),
      (lambda s, e, p: s + p * (e - s), 'straight line'),
      (lambda s, e, p: s + (1 - math.cos(2 * math.pi * p)) / 2 * (e - s), 'whole cosine wave'),
      (lambda s, e, p: torch.tensor(sched_cos(s, e, p)), 'not a number')]),
    (ex.check_sched_exp, [sched_exp],
     [(lambda s, e, p: s + p * (e - s), 'not geometric'), (lambda s, e, p: e * (s / e) ** p, 'from end to start'),
      (lambda s, e, p: s * math.exp(p * (e - s)), 'a ratio')]),
    (ex.check_combine, [combine],
     [(_combine_global, 'rescale it'), (lambda pcts, scheds: combine(pcts[::-1], scheds), 'off by'),
      (lambda pcts, scheds: 1.0, 'not a function of pos')]),
]

def _ids(cases): return [c[0].__name__ for c in cases]

@pytest.mark.parametrize('check,refs,wrongs', CASES, ids=_ids(CASES))
def test_reference_solutions_pass(check, refs, wrongs):
    for ref in refs:
        v = check(ref)
        assert v.status == 'pass' and v, f'{check.__name__}({getattr(ref, "__name__", ref)}): {v}'

@pytest.mark.parametrize('check,refs,wrongs', CASES, ids=_ids(CASES))
def test_wrong_answers_get_their_message(check, refs, wrongs):
    assert len(wrongs) >= 3, f'{check.__name__}: fewer than three wrong answers tested'
    msgs = []
    for wrong, words in wrongs:
        v = check(wrong)
        assert v.status == 'fail' and not v, f'{check.__name__} passed a wrong answer ({words!r}): {v}'
        assert words in v.msg, f'{check.__name__}: expected {words!r} in {v.msg!r}'
        msgs.append(v.msg)
    assert len(set(msgs)) == len(msgs), f'{check.__name__}: two wrong answers got the same message'

SOLUTION_BITS = ['@ w.T', 'x.T @', 'clamp_min', 'math.sqrt(2 /', 'F.unfold(x', 'CancelFitException()']

@pytest.mark.parametrize('check', [c[0] for c in CASES], ids=_ids(CASES))
def test_a_stub_is_not_attempted(check):
    def stub(*args): raise NotImplementedError
    class Stub(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args): raise NotImplementedError
    class StubCB(Callback):
        def __init__(self, *args): raise NotImplementedError
    obj = Stub if 'function' in check.__name__ else StubCB if check.__module__ and any(
        k in check.__name__ for k in ('counter', 'stop', 'clip')) else stub
    v = check(obj)
    assert v.status == 'todo' and not v and 'not attempted' in v.msg, v

def test_messages_never_show_a_solution():
    "No message quotes code of a reference solution."
    for check, _, wrongs in CASES:
        for wrong, _ in wrongs:
            msg = check(wrong).msg
            assert not [b for b in SOLUTION_BITS if b in msg], msg

