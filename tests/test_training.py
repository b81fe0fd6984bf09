"NaNGuard, GradClip, GradAccum, MixedPrecision and CompileCB: each against a hand-written loop, and all together."
import copy, math
from functools import partial

import pytest, torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from fastfound.learner import DeviceCB, MetricsCB, Recorder
from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import Callback, CancelBatchException, Learner
from fastfound.training import CompileCB, GradAccum, GradClip, MixedPrecision, NaNGuard, NonFiniteError

SGD = partial(torch.optim.SGD, momentum=0.9)


def data(n=96, ni=8, nc=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ni, generator=g)
    return x, (x @ torch.randn(ni, nc, generator=g)).argmax(1)


def model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def learner(bs=16, n=96, cbs=(), lr=0.1, opt_func=SGD, seed=0, valid=True):
    x, y = data(n, seed=seed)
    dls = DataLoaders(TensorLoader(x, y, bs, device='cpu'), TensorLoader(x[:40], y[:40], 32, device='cpu') if valid else None)
    return Learner(model(seed), dls, lr=lr, opt_func=opt_func, default_cbs=False,
                   cbs=[DeviceCB('cpu'), MetricsCB(), Recorder(), *cbs])


def weights(m): return [p.detach().clone() for p in m.parameters()]


def assert_close(ms, ns, tol=1e-6):
    for p, q in zip(ms, ns): torch.testing.assert_close(p.detach(), q.detach(), rtol=tol, atol=tol)


class At(Callback):
    "Run `f(learn)` at `event` of training batch (`epoch`, `it`); keep the weights and optimizer state from before it."
    order, run_valid = -1, False
    def __init__(self, epoch, it, event, f): self.at, self.event, self.f = (epoch, it), event, f
    def before_batch(self):
        if (self.learn.epoch, self.learn.iter) == self.at:
            self.w, self.opt_sd = weights(self.learn.model), copy.deepcopy(self.learn.opt.state_dict())
        if self.event == 'before_batch': self._maybe()
    def after_backward(self):
        if self.event == 'after_backward': self._maybe()
    def _maybe(self):
        if (self.learn.epoch, self.learn.iter) == self.at: self.f(self.learn)


def nan_inputs(learn): learn.xb = torch.full_like(learn.xb, float('nan'))
def inf_inputs(learn): learn.xb = torch.full_like(learn.xb, float('inf'))


# --- NaNGuard ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('poison', [nan_inputs, inf_inputs])
@pytest.mark.parametrize('epoch,it', [(0, 0), (1, 3), (2, 5)])
def test_guard_stops_at_first_bad_batch_with_weights_and_optimizer_from_before(poison, epoch, it):
    at = At(epoch, it, 'before_batch', poison)
    learn = learner(cbs=[NaNGuard(), at])
    with pytest.raises(NonFiniteError, match=f'at epoch {epoch}, batch {it} of 6') as e:
        learn.fit(3)
    assert (e.value.epoch, e.value.iter) == (epoch, it)
    assert isinstance(e.value, FloatingPointError)
    for p, q in zip(learn.model.parameters(), at.w): assert torch.equal(p.detach(), q)
    sd = learn.opt.state_dict()['state']
    for k, v in at.opt_sd['state'].items(): assert torch.equal(sd[k]['momentum_buffer'], v['momentum_buffer'])
    assert all(p.grad is None for p in learn.model.parameters())
    learn.remove_cbs(at)
    learn.fit(1)  # the learner is usable, and trains to finite weights
    assert all(p.isfinite().all() for p in learn.model.parameters())


def test_guard_changes_nothing_on_a_healthy_run():
    a, b = learner(cbs=[NaNGuard()]), learner()
    a.fit(2); b.fit(2)
    for p, q in zip(a.model.parameters(), b.model.parameters()): assert torch.equal(p, q)


def test_guard_catches_a_diverging_run():
    "Least squares with a learning rate far too high: the weights grow geometrically until the loss is inf."
    x = torch.randn(64, 8); y = x @ torch.randn(8, 1)
    dls = DataLoaders(TensorLoader(x, y, 16, device='cpu'), None)
    learn = Learner(nn.Linear(8, 1), dls, loss_func=F.mse_loss, lr=10., cbs=[NaNGuard()], default_cbs=False)
    with pytest.raises(NonFiniteError, match='the loss is (inf|nan) at epoch') as e: learn.fit(100)
    assert e.value.epoch < 100
    assert all(p.isfinite().all() for p in learn.model.parameters())


class SqrtAt0(nn.Module):
    "A finite output whose gradient is infinite: d sqrt(w)/dw at w = 0."
    def __init__(self): super().__init__(); self.w = nn.Parameter(torch.zeros(3))
    def forward(self, x): return torch.sqrt(self.w).expand(len(x), 3) + 0 * x[:, :3]


def test_guard_names_a_non_finite_gradient_and_grads_false_skips_it():
    learn = learner(cbs=[NaNGuard()]); learn.model = SqrtAt0()
    with pytest.raises(NonFiniteError, match='gradient of w is not finite at epoch 0, batch 0'): learn.fit(1)
    assert torch.equal(learn.model.w.detach(), torch.zeros(3))
    learn = learner(cbs=[NaNGuard(grads=False)]); learn.model = SqrtAt0()
    # only the loss is checked: the bad gradient reaches the weights, and the guard sees it one batch too late
    with pytest.raises(NonFiniteError, match='the loss is nan at epoch 0, batch 1'): learn.fit(1)
    assert not learn.model.w.isfinite().all()


def test_guard_with_float16_scaler_leaves_overflow_to_the_scaler_but_stops_a_nan_loss():
    def inf_grad(learn): learn.model[0].weight.grad[0, 0] = float('inf')
    mp = MixedPrecision(torch.float16, init_scale=1.)
    learn = learner(cbs=[mp, NaNGuard(), At(0, 2, 'after_backward', inf_grad)])
    learn.fit(1)
    assert mp.skipped == 1
    learn = learner(cbs=[MixedPrecision(torch.float16), NaNGuard(), At(0, 2, 'before_batch', nan_inputs)])
    with pytest.raises(NonFiniteError, match='the loss is nan at epoch 0, batch 2'): learn.fit(1)


# --- GradClip ----------------------------------------------------------------------------------------------

def hand_loop(x, y, bs, epochs, lr, opt_func=SGD, clip=None, accum=1, amp=None, init_scale=2.**16, norm_type=2.0):
    "The recipe from PyTorch's docs: loss / accum, scaler, unscale, clip, step, update. Groups never cross epochs."
    m = model(); opt = opt_func(m.parameters(), lr=lr)
    scaler = torch.amp.GradScaler('cpu', init_scale=init_scale, enabled=amp == torch.float16)
    starts = list(range(0, len(x), bs))
    for _ in range(epochs):
        for k, i in enumerate(starts):
            with torch.autocast('cpu', dtype=amp or torch.bfloat16, enabled=amp is not None):
                loss = F.cross_entropy(m(x[i:i+bs]), y[i:i+bs])
            scaler.scale(loss / accum).backward()
            if (k + 1) % accum == 0 or k == len(starts) - 1:
                scaler.unscale_(opt)
                if clip: nn.utils.clip_grad_norm_(m.parameters(), clip, norm_type)
                scaler.step(opt); scaler.update(); opt.zero_grad()
    return m


@pytest.mark.parametrize('norm_type', [2.0, math.inf])
@pytest.mark.parametrize('opt_func', [SGD, torch.optim.AdamW])
def test_clip_matches_clip_grad_norm_in_a_hand_loop(opt_func, norm_type):
    learn = learner(lr=0.01, opt_func=opt_func, cbs=[GradClip(0.1, norm_type)])
    learn.fit(2)
    x, y = data()
    assert_close(learn.model.parameters(), hand_loop(x, y, 16, 2, 0.01, opt_func, clip=0.1, norm_type=norm_type).parameters())
    assert float(learn.grad_clip.norm) > 0.1  # it clipped


def test_clip_hooks_come_off_after_an_error_and_need_an_optimizer():
    learn = learner(cbs=[GradClip(1.), NaNGuard(), At(0, 1, 'before_batch', nan_inputs)])
    with pytest.raises(NonFiniteError): learn.fit(1)
    assert not learn.opt._optimizer_step_pre_hooks and not learn.opt._optimizer_step_post_hooks
    with pytest.raises(ValueError, match='max_norm must be positive'): GradClip(-1)
    class OwnStep(Callback):
        def step(self): pass
        def zero_grad(self): pass
    with pytest.raises(ValueError, match='needs learn.opt'): learner(opt_func=None, cbs=[GradClip(1.), OwnStep()]).fit(1)


# --- GradAccum ---------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), bs=st.integers(1, 8), items=st.integers(1, 50), adam=st.booleans())
def test_accumulating_n_batches_of_b_equals_batches_of_n_times_b(n, bs, items, adam):
    "Every group of n batches of size b (the last one shorter, its last batch smaller) steps like one big batch."
    opt_func = torch.optim.Adam if adam else SGD
    small = learner(bs=bs, n=items, lr=0.01, opt_func=opt_func, cbs=[GradAccum(n)], valid=False)
    big = learner(bs=n * bs, n=items, lr=0.01, opt_func=opt_func, valid=False)
    steps = []
    small.fit(1, cbs=[StepCount(steps)]); small.fit(1)
    big.fit(2)
    assert steps == [math.ceil(math.ceil(items / bs) / n)]
    assert_close(small.model.parameters(), big.model.parameters(), 1e-5)


class StepCount(Callback):
    def __init__(self, out): self.out = out
    def before_fit(self): self.n, self.h = 0, self.learn.opt.register_step_post_hook(self._inc)
    def _inc(self, *a): self.n += 1
    def cleanup_fit(self): self.h.remove(); self.out.append(self.n)


def test_accumulated_gradient_equals_the_big_batch_gradient():
    "Compare the gradients themselves, right before the step, for a group of 3 batches of 8."
    seen = []
    class Grab(Callback):
        def before_fit(self): self.h = self.learn.opt.register_step_pre_hook(lambda o, a, k: seen.append([p.grad.clone() for p in self.learn.model.parameters()]))
        def cleanup_fit(self): self.h.remove()
    learner(bs=8, n=24, cbs=[GradAccum(3), Grab()], valid=False).fit(1)
    x, y = data(24)
    m = model()
    F.cross_entropy(m(x), y).backward()
    assert len(seen) == 1
    assert_close(seen[0], [p.grad for p in m.parameters()])


def test_a_batch_cancelled_after_its_backward_drops_its_group_and_one_before_keeps_it():
    def cancel(learn): raise CancelBatchException()
    for event, kept in [('before_batch', True), ('after_backward', False)]:
        steps = []
        learn = learner(bs=8, n=32, cbs=[GradAccum(2), StepCount(steps), At(0, 1, event, cancel)], valid=False, opt_func=torch.optim.SGD)
        learn.fit(1)
        # batches 0,1 | 2,3: cancelling batch 1 before its backward leaves batch 0 alone in the first group (stepped with
        # batch 2 when the count reaches 2); cancelling it after drops batch 0 too
        m = model(); opt = torch.optim.SGD(m.parameters(), lr=0.1)
        x, y = data(32)
        groups = [[0, 2], [3]] if kept else [[2, 3]]
        for g in groups:
            xs, ys = torch.cat([x[8*i:8*i+8] for i in g]), torch.cat([y[8*i:8*i+8] for i in g])
            F.cross_entropy(m(xs), ys).backward(); opt.step(); opt.zero_grad()
        assert steps == [len(groups)]
        assert_close(learn.model.parameters(), m.parameters())


def test_accum_checks_n():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match='whole number'): GradAccum(bad)


# --- MixedPrecision ----------------------------------------------------------------------------------------

def test_bfloat16_autocast_forward_float32_weights_and_it_learns():
    learn = learner(cbs=[MixedPrecision(torch.bfloat16)])
    dtypes = []
    class Seen(Callback):
        run_valid = False
        def after_pred(self): dtypes.append((self.learn.preds.dtype, torch.is_autocast_enabled('cpu')))
        def after_loss(self): dtypes.append(self.learn.loss.dtype)
        def after_backward(self): dtypes.append(torch.is_autocast_enabled('cpu'))
    learn.fit(3, cbs=[Seen()])
    assert dtypes[:3] == [(torch.bfloat16, True), torch.float32, False]  # backward runs outside autocast
    assert all(p.dtype == torch.float32 and p.grad is None for p in learn.model.parameters())
    v = learn.recorder.values
    assert v[-1]['valid_loss'] < v[0]['valid_loss']
    assert not torch.is_autocast_enabled('cpu')


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('opt_func', [SGD, torch.optim.AdamW])
def test_mixed_precision_with_accumulation_and_clipping_matches_the_pytorch_recipe(dtype, opt_func):
    learn = learner(lr=0.01, opt_func=opt_func, cbs=[GradAccum(2), MixedPrecision(dtype, init_scale=2.**12), GradClip(0.5)])
    learn.fit(2)
    x, y = data()
    m = hand_loop(x, y, 16, 2, 0.01, opt_func, clip=0.5, accum=2, amp=dtype, init_scale=2.**12)
    assert_close(learn.model.parameters(), m.parameters(), 1e-5)


def test_float16_overflow_steps_are_skipped_counted_and_reported():
    "A scale of 2**20 overflows float16 for real: the scaler halves it until steps go through."
    mp = MixedPrecision(torch.float16, init_scale=2.**20)
    moved = []
    class Watch(Callback):
        run_valid = False
        def after_backward(self): self.w = weights(self.learn.model)
        def after_step(self): moved.append(any(not torch.equal(p, q) for p, q in zip(self.learn.model.parameters(), self.w)))
    learn = learner(cbs=[mp, Watch()])
    learn.fit(2)
    n_skip = moved.count(False)
    assert 0 < n_skip < 10 and mp.skipped == n_skip and mp.steps == 12
    assert not moved[0] and any(moved)  # the first step overflows; later ones go through
    assert mp.scaler.get_scale() == 2.**20 / 2**n_skip
    assert sum(v['skipped'] for v in learn.recorder.values) == n_skip
    assert f'{n_skip} of 12 steps skipped' in repr(mp)
    sd = mp.state_dict()
    mp2 = MixedPrecision(torch.float16); mp2.load_state_dict(sd)
    assert mp2.scaler.get_scale() == mp.scaler.get_scale() and mp2.skipped == n_skip


@pytest.mark.filterwarnings('ignore:.*CUDA is not available')
def test_mixed_precision_errors_and_autocast_is_left_on_an_error():
    with pytest.raises(ValueError, match='float16 or torch.bfloat16'): MixedPrecision(torch.float64)
    with pytest.raises(ValueError, match="model is on cpu"): learner(cbs=[MixedPrecision(device='cuda')]).fit(1)
    class Boom(nn.Module):
        def forward(self, x): raise RuntimeError('boom')
    learn = learner(cbs=[MixedPrecision(torch.bfloat16)]); learn.model = nn.Sequential(model(), Boom())
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1)
    assert not torch.is_autocast_enabled('cpu')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_float16_with_grad_scaler():
    mp = MixedPrecision()
    assert mp.dtype == torch.float16 and mp.scaler.is_enabled()
    x, y = data()
    dls = DataLoaders(TensorLoader(x, y, 16, device='cuda'), TensorLoader(x, y, 32, device='cuda'))
    learn = Learner(model(), dls, lr=0.1, opt_func=SGD, cbs=[mp, GradAccum(2), GradClip(1.), NaNGuard()])
    learn.fit(3)
    assert next(learn.model.parameters()).device.type == 'cuda'
    assert learn.recorder.values[-1]['valid_loss'] < learn.recorder.values[0]['valid_loss']
    preds, targs = learn.get_preds()
    assert preds.device.type == 'cpu' and preds.dtype == torch.float16


# --- CompileCB ---------------------------------------------------------------------------------------------

def counting_backend():
    graphs = []
    def backend(gm, example_inputs):
        graphs.append((torch.is_grad_enabled(), [tuple(t.shape) for t in example_inputs if not isinstance(t, nn.Parameter)]))
        return gm.forward
    return backend, graphs


def test_compile_compiles_one_training_and_one_evaluation_graph_across_epochs_and_fits():
    torch.compiler.reset()
    backend, graphs = counting_backend()
    learn = learner(n=100, cbs=[CompileCB(backend=backend), GradAccum(2)])
    learn.fit(3)
    assert graphs == [(True, [(16, 8)]), (False, [(32, 8)])]
    assert learn.compile_cb.dropped == 3
    learn.fit(2); learn.get_preds(); learn.validate(); learn.predict_one(data(1)[0][0])
    assert len(graphs) == 2
    x, y = data(100)
    preds, _ = learn.get_preds()
    with torch.no_grad(): torch.testing.assert_close(preds, learn.model(x[:40]))


def test_compile_keeps_the_model_and_its_state_dict_names():
    torch.compiler.reset()
    backend, _ = counting_backend()
    learn = learner(cbs=[CompileCB(backend=backend)])
    m = learn.model
    learn.fit(1)
    assert learn.model is m and list(m.state_dict()) == ['0.weight', '0.bias', '2.weight', '2.bias']


def test_compile_with_inductor_trains_like_eager():
    "A real compile: C++ kernels built on the CPU. The slowest test here (about 20-40 s on 2 cores)."
    torch.compiler.reset()
    from torch._dynamo.utils import counters
    counters.clear()
    learn = learner(n=100, cbs=[CompileCB()])
    learn.fit(3)
    eager = learner(n=100, cbs=[DropOdd()])
    eager.fit(3)
    assert_close(learn.model.parameters(), eager.model.parameters(), 1e-4)
    assert counters['stats']['unique_graphs'] == 2


class DropOdd(Callback):
    "What CompileCB does to training batches, without compiling: drop a batch of another size than the first."
    run_valid = False
    def before_train(self): self.bs = None
    def before_batch(self):
        if self.bs is None: self.bs = len(self.learn.xb)
        if len(self.learn.xb) != self.bs: raise CancelBatchException()


# SingleBatchCB and LRSchedulerCB (the miniai port's pieces)
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau, StepLR
from fastfound.training import LRSchedulerCB, SingleBatchCB


def test_single_batch_steps_once_and_runs_every_cleanup():
    seen = []
    class Watch(Callback):
        def after_batch(self): seen.append('after_batch')
        def cleanup_train(self): seen.append('cleanup_train')
        def before_validate(self): seen.append('validate')
        def cleanup_fit(self): seen.append('cleanup_fit')
    learn = learner(cbs=[SingleBatchCB(), Watch()], opt_func=torch.optim.SGD)
    x, y = data()
    m = model()
    F.cross_entropy(m(x[:16]), y[:16]).backward()
    with torch.no_grad():
        for p in m.parameters(): p -= 0.1 * p.grad
    learn.fit(5)
    assert_close(learn.model.parameters(), m.parameters())
    assert seen == ['after_batch', 'cleanup_train', 'cleanup_fit'] and len(learn.recorder.losses) == 1
    learn.remove_cbs(learn.single_batch_cb)
    learn.fit(1)                                            # the learner trains normally afterwards
    assert len(learn.recorder.losses) == 6


def hand_lrs(make, per, n_epochs, n_batches=6, lrs=(0.1,)):
    "Each batch's rates, every group, with the scheduler stepped by hand on an optimizer like the learner's."
    m = model()
    rest = [p for p in m.parameters() if p is not m[0].weight]
    opt = SGD([{'params': [m[0].weight]}, {'params': rest}] if len(lrs) > 1 else m.parameters(), lr=lrs[0])
    for g, lr in zip(opt.param_groups, lrs): g['lr'] = lr
    sched, out = make(opt), []
    for _ in range(n_epochs):
        for _ in range(n_batches):
            out.append([g['lr'] for g in opt.param_groups])
            if per == 'batch': sched.step()
        if per == 'epoch': sched.step()
    return out


class GroupLrs(Callback):
    order = 15
    def before_fit(self): self.lrs = []
    def after_batch(self):
        if self.learn.training: self.lrs.append([g['lr'] for g in self.learn.opt.param_groups])


@pytest.mark.parametrize('make,per', [(partial(OneCycleLR, max_lr=0.5, total_steps=18), 'batch'),
                                      (partial(CosineAnnealingLR, T_max=17), 'batch'),
                                      (partial(StepLR, step_size=1, gamma=0.3), 'epoch')])
def test_lr_scheduler_cb_sets_torch_s_rates(make, per):
    watch = GroupLrs()
    learn = learner(cbs=[LRSchedulerCB(make, per), watch])
    learn.fit(3)
    torch.testing.assert_close(torch.tensor(watch.lrs), torch.tensor(hand_lrs(make, per, 3)), rtol=1e-12, atol=0)
    assert [[l] for l in learn.recorder.lrs] == watch.lrs      # the Recorder notes the rate the batch used


def test_lr_scheduler_cb_keeps_the_groups_ratios():
    watch = GroupLrs()
    learn = learner(cbs=[LRSchedulerCB(partial(StepLR, step_size=1, gamma=0.5), 'epoch'), watch])
    learn.opt = SGD([{'params': [learn.model[0].weight]},
                     {'params': [p for p in learn.model.parameters() if p is not learn.model[0].weight]}], lr=0.1)
    learn.opt.param_groups[0]['lr'] = 0.01
    learn.fit(2)
    want = hand_lrs(partial(StepLR, step_size=1, gamma=0.5), 'epoch', 2, lrs=(0.01, 0.1))
    torch.testing.assert_close(torch.tensor(watch.lrs), torch.tensor(want), rtol=1e-12, atol=0)
    assert watch.lrs[0] == [0.01, 0.1] and watch.lrs[-1] == [0.005, 0.05]


def test_lr_scheduler_cb_resumes_the_schedule(tmp_path):
    from fastfound.checkpoint import Checkpoint
    make = partial(StepLR, step_size=1, gamma=0.5)
    whole = learner(cbs=[LRSchedulerCB(make, 'epoch')])
    whole.fit(4)
    class Crash(Callback):
        def before_epoch(self):
            if self.epoch == 2: raise RuntimeError('crash')
    a = learner(cbs=[LRSchedulerCB(make, 'epoch'), Checkpoint(tmp_path), Crash()])
    with pytest.raises(RuntimeError, match='crash'): a.fit(4)
    b = learner(cbs=[LRSchedulerCB(make, 'epoch'), Checkpoint(tmp_path)])
    with torch.no_grad():
        for p in b.model.parameters(): p.zero_()              # the checkpoint must bring the weights
    b.fit(4, resume=True)
    assert b.recorder.lrs == whole.recorder.lrs                # 0.1 x 6, 0.05 x 6, 0.025 x 6, 0.0125 x 6
    assert_close(b.model.parameters(), whole.model.parameters())


def test_lr_scheduler_cb_plateau_and_errors():
    learn = learner(cbs=[LRSchedulerCB(partial(ReduceLROnPlateau, factor=0.5, patience=0), 'epoch',
                                       monitor='train_loss')], lr=1e-5)
    learn.fit(4)
    opt = SGD(model().parameters(), lr=1e-5)
    s = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    for v in learn.recorder.values: s.step(v['train_loss'])
    assert learn.opt.param_groups[0]['lr'] == opt.param_groups[0]['lr'] < 1e-5
    with pytest.raises(ValueError, match="'batch' or 'epoch'"): LRSchedulerCB(StepLR, per='iter')
    class OwnStep(Callback):                                # a step of its own, no optimizer
        def step(self): pass
        def zero_grad(self): pass
    with pytest.raises(ValueError, match='needs an optimizer'):
        learner(cbs=[LRSchedulerCB(StepLR), OwnStep()], opt_func=None).fit(1)


@pytest.mark.parametrize('avx,amx', [(False, False), (True, False), (False, True)])
def test_one_precision_rule_for_mixed_precision_and_the_cli(monkeypatch, avx, amx):
    "MixedPrecision() and `fastfound fit --precision auto` pick bfloat16 only where it is native; else float32, said."
    import warnings
    from fastfound.cli import precision
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: avx)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: amx)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        mp = MixedPrecision(device='cpu')
    want = torch.bfloat16 if avx or amx else torch.float32
    assert (mp.dtype, precision(torch.device('cpu'), 'auto')) == (want, want)
    assert len([w for w in ws if 'trains in float32' in str(w.message)]) == (want == torch.float32)
    if want == torch.float32:  # the fit runs in float32: no bfloat16 anywhere
        learn = learner(cbs=[mp])
        learn.fit(1)
        assert learn.preds.dtype == torch.float32
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        MixedPrecision(torch.bfloat16, device='cpu')  # asked for by name: as asked, with the cost if emulated
    costly = [str(w.message) for w in ws if 'times as long as in float32' in str(w.message)]
    assert len(costly) == (0 if avx or amx else 1)
    assert MixedPrecision(device='cuda').dtype == torch.float16


def test_bf16_cost_is_measured_once():
    from fastfound.training import bf16_cost
    c = bf16_cost()
    assert c > 0 and bf16_cost() is c  # cached: one measurement per process


@pytest.mark.parametrize('n', [1, 3, 4])
def test_after_step_fires_once_per_optimizer_step_under_accumulation(n):
    "10 batches an epoch in groups of n: after_step as often as the optimizer really steps (the last group too)."
    class Count(Callback):
        def before_fit(self): self.events, self.steps, self._h = 0, 0, self.opt.register_step_post_hook(self._one)
        def _one(self, *a): self.steps += 1
        def after_step(self): self.events += 1
        def cleanup_fit(self): self._h.remove()
    c = Count()
    learner(bs=8, n=80, cbs=[GradAccum(n), c]).fit(2)
    assert c.events == c.steps == 2 * -(-10 // n)
