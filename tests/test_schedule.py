"Schedules, ParamScheduler, fit_one_cycle and lr_find."
import math
import numpy as np, pytest, torch
from hypothesis import given, settings, strategies as st
from fastfound.schedule import *

floats = st.floats(-10, 10, allow_nan=False)
pos = st.floats(0, 1)

# --- the schedule pieces, point by point ---------------------------------------------------------

@pytest.mark.parametrize('p', np.linspace(0, 1, 11))
def test_pieces_closed_forms(p):
    assert SchedLin(2, 4)(p) == pytest.approx(2 + 2*p)
    assert SchedCos(2, 4)(p) == pytest.approx(3 - math.cos(math.pi*p))
    assert SchedExp(1e-3, 10)(p) == pytest.approx(10**(-3 + 4*p))
    assert SchedNo(7)(p) == 7

@given(floats, floats, pos, pos)
def test_lin_cos_stay_between_and_are_monotone(a, b, p, q):
    lo, hi = min(a, b), max(a, b)
    for f in SchedLin(a, b), SchedCos(a, b):
        assert lo - 1e-9 <= f(p) <= hi + 1e-9
        p1, p2 = sorted((p, q))
        assert (f(p2) - f(p1)) * (b - a) >= -1e-9   # moves from a towards b, never back

@given(st.floats(1e-8, 1e3), st.floats(1e-8, 1e3), pos)
def test_exp_is_linear_in_log(a, b, p):
    assert math.log(SchedExp(a, b)(p)) == pytest.approx(math.log(a) + p*(math.log(b) - math.log(a)), abs=1e-9)

@given(st.lists(st.floats(0.01, 1), min_size=1, max_size=5), pos)
def test_combined_matches_piece_by_piece(ws, p):
    pcts = [w/sum(ws) for w in ws]
    scheds = [SchedLin(i, i+1) for i in range(len(pcts))]   # piece i goes from i to i+1: continuous, increasing
    s = combine_scheds(pcts, scheds)
    assert s(0) == 0 and s(1) == pytest.approx(len(pcts))
    bounds = np.cumsum([0] + pcts)
    i = min(int(np.searchsorted(bounds, p, side='right')) - 1, len(pcts) - 1)
    assert s(p) == pytest.approx(i + (p - bounds[i]) / pcts[i], abs=1e-6)

def test_one_cycle_shape_point_by_point():
    lr = combined_cos(0.25, 0.004, 0.1, 1e-6)
    for p, want in [(0, 0.004), (0.125, 0.052), (0.25, 0.1), (0.625, (0.1 + 1e-6)/2), (1, 1e-6)]:
        assert lr(p) == pytest.approx(want)
    mom = combined_cos(0.25, 0.95, 0.85, 0.95)
    for p, want in [(0, 0.95), (0.125, 0.90), (0.25, 0.85), (0.625, 0.90), (1, 0.95)]:
        assert mom(p) == pytest.approx(want)

def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match='sum to 1'): combine_scheds([0.2, 0.2], [SchedLin(0, 1)]*2)
    with pytest.raises(ValueError, match='non-negative'): combine_scheds([-0.5, 1.5], [SchedLin(0, 1)]*2)
    with pytest.raises(ValueError, match=r'\[0, 1\]'): combined_cos(0.3, 0, 1, 0)(-0.1)
    with pytest.raises(ValueError, match='positive'): SchedExp(1, -1)

# --- ParamScheduler, fit_one_cycle and lr_find on a Learner --------------------------------------
from copy import deepcopy
from functools import partial
import random, signal, threading
from torch import nn
from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import Learner, Callback, CancelFitException

class Probe(Callback):
    "Record every param group's hyper-parameters before each training batch (after the scheduler)."
    order = 70
    def before_fit(self): self.hps = []
    def before_batch(self):
        if self.training: self.hps.append([{k: v for k, v in g.items() if k != 'params'} for g in self.opt.param_groups])

def toy(opt_func=partial(torch.optim.SGD, momentum=0.9), n_batches=6, bs=16, seed=0, model=None, valid=True, **kw):
    torch.manual_seed(0)
    x = torch.randn(n_batches*bs, 5); y = (x[:, 0] - x[:, 1] > 0).long()
    torch.manual_seed(seed)
    dls = DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, device='cpu'),
                      TensorLoader(x[:2*bs], y[:2*bs], bs=bs, device='cpu') if valid else None)
    model = model or nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(model, dls, opt_func=opt_func, default_cbs=False, **kw)

def two_groups(params, **kw):
    ps = list(params)
    return torch.optim.AdamW([{'params': ps[:2]}, {'params': ps[2:], 'weight_decay': 0.5}], **kw)

@pytest.mark.parametrize('opt_func, mom_of', [
    (partial(torch.optim.SGD, momentum=0.9), lambda g: g['momentum']),
    (torch.optim.Adam, lambda g: g['betas'][0]),
    (two_groups, lambda g: g['betas'][0]),
    (partial(torch.optim.RMSprop, momentum=0.5), lambda g: g['momentum'])])
def test_param_scheduler_sets_every_group_every_batch(opt_func, mom_of):
    lr, mom = combined_cos(0.3, 0.01, 0.1, 1e-5), SchedLin(0.95, 0.85)
    learn, probe = toy(opt_func), Probe()
    learn.fit(3, cbs=[ParamScheduler({'lr': lr, 'mom': mom}), probe])
    assert len(probe.hps) == 18
    for i, groups in enumerate(probe.hps):
        for g in groups:
            assert g['lr'] == pytest.approx(lr(i/17)) and mom_of(g) == pytest.approx(mom(i/17))
            if 'betas' in g: assert g['betas'][1] == 0.999
    assert [g.get('weight_decay') for g in probe.hps[0]] == [g.get('weight_decay') for g in learn.opt.param_groups]

def test_param_scheduler_other_keys_and_plain_sgd():
    learn, probe = toy(torch.optim.SGD), Probe()
    learn.fit(1, cbs=[ParamScheduler({'weight_decay': SchedLin(0, 0.1), 'mom': SchedNo(0.9)}), probe])
    assert [g[0]['weight_decay'] for g in probe.hps] == pytest.approx([0.1*i/5 for i in range(6)])
    assert {g[0]['momentum'] for g in probe.hps} == {0}   # plain SGD stays plain
    with pytest.raises(ValueError, match="no hyper-parameter 'nope'"): toy().fit(1, cbs=ParamScheduler({'nope': SchedNo(1)}))
    with pytest.raises(ValueError, match="'mom' needs"): toy(torch.optim.Adagrad).fit(1, cbs=ParamScheduler({'mom': SchedNo(1)}))

def test_param_scheduler_needs_a_length_or_n_steps():
    learn = toy()
    learn.dls.train = (b for b in list(learn.dls.train))   # a generator: no len()
    with pytest.raises(ValueError, match='n_steps'): learn.fit(1, cbs=ParamScheduler({'lr': SchedNo(0.1)}))
    learn.dls.train = (b for b in list(toy().dls.train))
    probe = Probe(); learn.fit(1, cbs=[ParamScheduler({'lr': SchedLin(1, 0)}, n_steps=6), probe])
    assert [g[0]['lr'] for g in probe.hps] == pytest.approx([1, .8, .6, .4, .2, 0])

def test_param_scheduler_clamps_past_the_end():
    learn, probe = toy(), Probe()
    learn.fit(2, cbs=[ParamScheduler({'lr': SchedLin(1, 0)}, n_steps=8), probe])
    assert [g[0]['lr'] for g in probe.hps][-6:] == pytest.approx([1/7, 0, 0, 0, 0, 0])

class Snapshot(Callback):
    "After epoch `at`, keep what a checkpoint keeps: weights, optimizer, scheduler position, RNG; then stop."
    order = 90
    def __init__(self, sched, at): self.sched, self.at = sched, at
    def after_epoch(self):
        if self.epoch != self.at: return
        self.saved = dict(model=deepcopy(self.model.state_dict()), opt=deepcopy(self.opt.state_dict()),
                          sched=self.sched.state_dict(), rng=torch.get_rng_state(), epoch=self.epoch + 1)
        raise CancelFitException()

class Restore(Callback):
    "Resume from a `Snapshot` at `order` (before or after the scheduler's own `before_fit`)."
    def __init__(self, sched, saved, order): self.sched, self.saved, self.order = sched, saved, order
    def before_fit(self):
        s = self.saved
        self.model.load_state_dict(s['model']); self.opt.load_state_dict(s['opt'])
        self.sched.load_state_dict(s['sched']); torch.set_rng_state(s['rng'])
        self.learn.start_epoch = s['epoch']

@pytest.mark.parametrize('restore_order', [-10, 100])
def test_resumed_schedule_continues_exactly(restore_order):
    sched = lambda: ParamScheduler({'lr': combined_cos(0.25, 0.01, 0.2, 1e-4), 'mom': combined_cos(0.25, 0.95, 0.85, 0.95)})
    whole, p = toy(), Probe()
    whole.fit(4, cbs=[sched(), p])
    first, s1, p1 = toy(), sched(), Probe()
    snap = Snapshot(s1, at=1)
    first.fit(4, cbs=[s1, p1, snap])
    assert snap.saved['sched'] == {'i': 12, 'n': 24}
    second, s2, p2 = toy(seed=5), sched(), Probe()   # a different init: everything must come from the snapshot
    second.fit(4, cbs=[s2, p2, Restore(s2, snap.saved, restore_order)])
    assert p1.hps + p2.hps == p.hps
    for k, v in whole.model.state_dict().items(): assert torch.equal(v, second.model.state_dict()[k]), k

def test_resume_with_another_length_is_refused():
    learn, s = toy(), ParamScheduler({'lr': SchedNo(0.1)})
    s.load_state_dict({'i': 3, 'n': 12})
    with pytest.raises(ValueError, match='saved for 12 steps but this fit has 18'): learn.fit(3, cbs=s)

def test_a_scheduler_restarts_on_a_new_fit():
    learn, s, probe = toy(), ParamScheduler({'lr': SchedLin(1, 0)}), Probe()
    learn.fit(1, cbs=s); learn.fit(1, cbs=[s, probe])
    assert probe.hps[0][0]['lr'] == 1 and s.state_dict() == {'i': 6, 'n': 6}

def test_fit_one_cycle_schedule_and_training():
    learn, probe = toy(lr=0.3), Probe()
    x, y = learn.dls.train.x, learn.dls.train.y
    loss0 = nn.functional.cross_entropy(learn.model(x), y).item()
    learn.fit_one_cycle(5, cbs=probe)
    lrs, moms = [g[0]['lr'] for g in probe.hps], [g[0]['momentum'] for g in probe.hps]
    assert lrs[0] == pytest.approx(0.3/25) and max(lrs) == pytest.approx(0.3, rel=1e-2) and lrs[-1] == pytest.approx(0.3/1e5)
    assert int(np.argmax(lrs)) == int(np.argmin(moms)) == round(0.25*29)
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, rel=1e-2)
    learn.model.eval()
    assert nn.functional.cross_entropy(learn.model(x), y).item() < loss0 / 2
    learn.fit_one_cycle(1, lr_max=0.3, moms=None, pct_start=0, cbs=probe)   # pure cosine annealing, momentum untouched
    assert probe.hps[0][0]['lr'] == pytest.approx(0.3) and {g[0]['momentum'] for g in probe.hps} == {0.95}

# --- lr_find ---------------------------------------------------------------------------------------

def states_equal(a, b):
    "Deep, exact equality of (optimizer) state dicts: tensors bit for bit."
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return type(a) is type(b) and len(a) == len(b) and all(map(states_equal, a, b))
    return a == b

@pytest.mark.parametrize('opt_func', [partial(torch.optim.SGD, momentum=0.9), torch.optim.AdamW])
def test_lr_find_restores_model_optimizer_rng_and_modes(opt_func):
    learn = toy(opt_func)
    learn.fit(1)
    learn.model.train(); learn.model[1].eval()  # an odd mix of modes must come back as it was
    w, o = deepcopy(learn.model.state_dict()), deepcopy(learn.opt.state_dict())
    opt, cbs = learn.opt, list(learn.cbs)
    rng = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    sug = learn.lr_find(num_it=40, show_plot=False)
    assert states_equal(learn.model.state_dict(), w)      # BatchNorm buffers included
    assert learn.opt is opt and states_equal(learn.opt.state_dict(), o)
    assert torch.equal(torch.get_rng_state(), rng[0]) and random.getstate() == rng[1]
    assert (np.random.get_state()[1] == rng[2]).all()
    assert [m.training for m in learn.model.modules()] == [True, True, False, True, True]
    assert learn.cbs == cbs and isinstance(sug, SuggestedLRs)

def test_lr_find_has_no_side_effect_on_a_later_fit():
    a = toy()                      # seeds the RNG: both fits start from the same state
    a.lr_find(num_it=30, show_plot=False)
    assert a.opt is None
    a.fit(2)
    b = toy(); b.fit(2)
    assert states_equal(a.model.state_dict(), b.model.state_dict())

def test_lr_find_stops_when_the_loss_diverges():
    torch.manual_seed(0)
    x = torch.randn(64*20, 10); y = x @ torch.randn(10, 1)
    dls = DataLoaders(TensorLoader(x, y, bs=64, shuffle=True, device='cpu'), None)
    learn = Learner(nn.Linear(10, 1), dls, loss_func=nn.functional.mse_loss, default_cbs=False)
    sug = learn.lr_find(start_lr=1e-4, end_lr=100, num_it=100, show_plot=False)
    f = learn.lr_finder
    assert 10 < len(f.lrs) < 100                                   # stopped early...
    assert f.losses[-1] > 4*min(f.losses) or not math.isfinite(f.losses[-1])  # ...because it diverged
    assert all(l <= 4*min(f.losses[:i+1]) for i, l in enumerate(f.losses[:-1]))
    assert f.lrs == pytest.approx([1e-4 * 1e6**(i/99) for i in range(len(f.lrs))])
    assert 1e-3 < sug.min_div10 < sug.steep * 10 < 10                # plain least squares: lr ~0.1-1 works
    ax = f.plot(sug)
    assert ax.get_xscale() == 'log' and len(ax.get_lines()) == 3

def test_lr_find_skips_validation_and_cycles_short_data():
    learn = toy(n_batches=3)
    seen = []
    class Count(Callback):
        def before_batch(self): seen.append(self.training)
    learn.add_cbs(Count())
    learn.lr_find(num_it=10, stop_div=None, show_plot=False)
    assert seen == [True]*10

def test_lr_find_restores_after_an_interrupt():
    learn = toy(); learn.fit(1)
    w, o = deepcopy(learn.model.state_dict()), deepcopy(learn.opt.state_dict())
    class Interrupt(Callback):
        order = 100
        def after_batch(self):
            if self.iter == 3: raise KeyboardInterrupt
    learn.add_cbs(Interrupt())
    with pytest.raises(KeyboardInterrupt): learn.lr_find(show_plot=False)
    assert states_equal(learn.model.state_dict(), w) and states_equal(learn.opt.state_dict(), o)

def test_lr_find_leaves_a_permanent_scheduler_alone():
    s = ParamScheduler({'lr': SchedLin(1, 0)})
    learn, probe = toy(), Probe()
    learn.add_cbs(s, probe)
    learn.fit(1); learn.lr_find(num_it=10, show_plot=False)
    assert s.learn is learn and s.state_dict() == {'i': 6, 'n': 6}
    learn.fit(1)
    assert probe.hps[0][0]['lr'] == 1

def test_lr_find_bad_arguments():
    with pytest.raises(ValueError, match='num_it'): toy().lr_find(num_it=1)
    with pytest.raises(ValueError, match='stop_div'): toy().lr_find(stop_div=0.5)

def test_suggest_lrs_on_a_known_curve():
    lrs = np.logspace(-6, 0, 61)
    losses = 2 - np.tanh(np.log10(lrs) + 3) + np.where(lrs > 0.1, 50*(lrs-0.1), 0)   # steepest at 1e-3, minimum near 0.1
    s = suggest_lrs(lrs, losses)
    assert s.steep == pytest.approx(1e-3, rel=0.3)
    assert s.min_div10 == pytest.approx(lrs[np.argmin(losses)]/10)
    with pytest.raises(ValueError, match='too short'): suggest_lrs([1e-3, 1e-2], [1., 0.5])
