"Hooks always clean up; activation statistics are right; summary changes nothing."
import gc, os, signal, threading, time
import numpy as np, pytest, torch
from torch import nn
from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import Learner, Callback
from fastfound.learner import Recorder
from fastfound.hooks import *

def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Sequential(nn.Linear(6, 16), nn.ReLU()), nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU()),
                         nn.Linear(16, 3))

def learner(n_batches=8, bs=32, m=None, **kw):
    torch.manual_seed(0)
    x = torch.randn(n_batches*bs, 6); y = torch.randint(0, 3, (n_batches*bs,))
    dls = DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, device='cpu'), TensorLoader(x[:64], y[:64], bs=32, device='cpu'))
    return Learner(m or model(), dls, **kw)

def raiser(exc, event, at=3):
    "A callback raising `exc` at `event` (on training batch `at` for the batch events)."
    def fire(self):
        if self.learn.iter == at or not event.endswith(('batch', 'step', 'loss', 'pred', 'backward')): raise exc
    return type('Raise', (Callback,), {'order': 100, event: fire})()

def hook_cbs(): return [ActivationStats(), HooksCallback(lambda h, m, i, o: None, on_valid=True)]

@pytest.mark.parametrize('exc', [RuntimeError('boom'), KeyboardInterrupt()])
@pytest.mark.parametrize('event', ['before_fit', 'before_batch', 'after_loss', 'after_batch', 'before_validate', 'after_epoch'])
@pytest.mark.parametrize('as_fit_cbs', [True, False])
def test_every_hook_is_gone_after_a_fit_that_raises(exc, event, as_fit_cbs):
    learn, cbs = learner(default_cbs=False), hook_cbs()
    if not as_fit_cbs: learn.add_cbs(*cbs)
    with pytest.raises(type(exc)): learn.fit(2, cbs=[raiser(exc, event)] + (cbs if as_fit_cbs else []))
    assert n_hooks(learn.model) == 0
    learn.fit(1, cbs=cbs if as_fit_cbs else None)    # usable again, and the next fit hooks and unhooks cleanly
    assert n_hooks(learn.model) == 0 and len(cbs[0].stats()[0]) == 8

class SendSigint(Callback):
    "A real SIGINT `after` s after the first batch (so a slow start cannot make it early); lost, it fails."
    order = 200
    def __init__(self, after=0.3): self.after, self.timer = after, None
    def after_batch(self):
        if self.timer is None:
            self.timer = threading.Timer(self.after, os.kill, (os.getpid(), signal.SIGINT))
            self.timer.start()
            self.t0 = time.monotonic()
        elif time.monotonic() - self.t0 > 30: raise RuntimeError('the SIGINT was lost')

def test_hooks_are_gone_after_a_real_sigint():
    "Ctrl-C: a SIGINT arrives from outside at an arbitrary point of the fit, and stops it."
    learn, cbs, send = learner(n_batches=400), hook_cbs(), SendSigint()  # the default callbacks too
    gc.collect()
    for _ in range(3): learner().fit(1, cbs=hook_cbs())  # dropped: cycles for `Hooks.__del__`
    try:
        with pytest.raises(KeyboardInterrupt): learn.fit(1000, cbs=cbs + [send])
    finally: send.timer.cancel()
    assert n_hooks(learn.model) == 0 and len(cbs[0].hooks[0].stats) > 0

def test_hooks_are_gone_after_an_exception_in_forward():
    class Bad(nn.Module):
        def forward(self, x): raise ValueError('bad layer')
    m = nn.Sequential(nn.Linear(6, 3), Bad())
    learn = learner(m=m, default_cbs=False)
    with pytest.raises(ValueError, match='bad layer'): learn.fit(1, cbs=ActivationStats())
    assert n_hooks(m) == 0

def test_hook_and_hooks_context_managers_and_remove():
    lin = nn.Linear(2, 2)
    h = Hook(lin, lambda *a: None); h.remove(); h.remove()          # twice is harmless
    assert n_hooks(lin) == 0
    with pytest.raises(KeyboardInterrupt):
        with Hooks([lin, lin], lambda *a: None):
            assert n_hooks(lin) == 2
            raise KeyboardInterrupt
    assert n_hooks(lin) == 0

def test_activation_stats_match_a_direct_computation():
    learn = learner(default_cbs=False, lr=0)      # lr 0: the weights don't move, so we can recompute every batch
    seen = []
    class Keep(Callback):
        def before_batch(self):
            if self.training: seen.append(self.xb)
    astats = ActivationStats(bins=20, hist_max=4., eps=0.1)
    learn.fit(2, cbs=[astats, Keep()])
    s, h = astats.stats(), astats.hists()
    assert s.shape == (3, 16, 3) and h.shape == (3, 16, 20)      # 3 children, 16 training batches only
    learn.model.train()
    with torch.no_grad():
        for b, xb in enumerate(seen):
            a = xb
            for i, child in enumerate(learn.model):
                a = child(a)
                want = torch.stack([a.mean(), a.std(), (a.abs() < 0.1).float().mean()])
                assert torch.allclose(s[i, b], want, atol=1e-5)
                assert torch.equal(h[i, b], a.abs().histc(20, 0, 4))
    assert astats.near_zero() == pytest.approx(s[..., 2].mean(1).tolist())
    assert astats.near_zero(slice(0, 1)) == pytest.approx(s[:, 0, 2].tolist())

def test_activation_stats_on_chosen_modules_and_validation():
    learn = learner(default_cbs=False)
    relus = [m for m in learn.model.modules() if isinstance(m, nn.ReLU)]
    astats = ActivationStats(relus)
    learn.fit(1, cbs=astats)
    assert astats.stats().shape == (2, 8, 3)
    assert (astats.stats()[..., 0] >= 0).all()                  # after a ReLU
    hc = HooksCallback(lambda h, m, i, o: setattr(h, 'n', getattr(h, 'n', 0) + 1), mods=relus[:1], on_train=False, on_valid=True)
    learn.fit(1, cbs=hc)
    assert hc.hooks[0].n == 2                                    # the two validation batches only

def test_activation_stats_plots():
    import matplotlib; matplotlib.use('Agg')
    learn = learner(default_cbs=False); astats = ActivationStats()
    learn.fit(1, cbs=astats)
    axs = astats.plot_stats(); assert len(axs[0].get_lines()) == 3
    axs = astats.color_dim(); assert len(axs) == 3 and axs[0].get_images()[0].get_array().shape == (40, 8)
    ax = astats.plot_near_zero(); assert ax.get_ylim() == (0, 1)

def test_activation_stats_sit_out_lr_find():
    learn = learner(default_cbs=False); astats = ActivationStats()
    learn.add_cbs(astats); learn.fit(1)
    before = astats.stats()
    learn.lr_find(num_it=10, show_plot=False)
    assert torch.equal(astats.stats(), before) and n_hooks(learn.model) == 0

def test_summary_changes_nothing_and_counts_right():
    m = model()
    m[0][0].weight.requires_grad_(False)                         # a frozen weight
    m.train(); m[1].eval()
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    modes = [x.training for x in m.modules()]
    learn = learner(m=m)
    s = learn.summary()
    assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())   # BatchNorm running stats untouched
    assert [x.training for x in m.modules()] == modes and n_hooks(m) == 0
    assert all(p.grad is None for p in m.parameters())
    assert [r[0] for r in s.rows] == ['0.0', '0.1', '1.0', '1.1', '1.2', '2']
    assert [r[2] for r in s.rows] == [(32, 16)]*5 + [(32, 3)]
    assert s.n_params == sum(p.numel() for p in m.parameters()) == sum(r[3] for r in s.rows)
    assert s.n_params - s.n_train == 6*16
    text, md = repr(s), s._repr_markdown_()
    assert '96 frozen' in text and '| `1.1` | BatchNorm1d | (32, 16) | (32, 16) | 32 | 0 |' in md
    assert learn.summary(torch.randn(5, 6)).rows[-1][2] == (5, 3)

def test_summary_shapes_in_and_flops_by_hand():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2, groups=2),
                      nn.Flatten(), nn.Linear(2*3*3, 5))
    s = model_summary(m, torch.randn(7, 3, 8, 8))
    assert [r.inp for r in s.rows] == [(7, 3, 8, 8), (7, 4, 8, 8), (7, 4, 8, 8), (7, 2, 3, 3), (7, 18)]
    assert [r.out for r in s.rows] == [(7, 4, 8, 8), (7, 4, 8, 8), (7, 2, 3, 3), (7, 18), (7, 5)]
    want = [2*4*3*9*64, 0, 2*2*2*9*9, 0, 2*18*5]       # 2 x multiply-adds per item, grouped conv included
    assert [r.flops for r in s.rows] == want and s.flops == sum(want)
    assert s.in_shape == (7, 3, 8, 8) and 'FLOPs per item: 14.7k' in repr(s)

def test_summary_counts_flops_outside_leaves():
    class Res(nn.Module):
        def __init__(self): super().__init__(); self.lin = nn.Linear(4, 4)
        def forward(self, x): return self.lin(x) + x @ torch.ones(4, 4)   # a matmul in the parent's forward
    s = model_summary(Res(), torch.randn(3, 4))
    assert [r.flops for r in s.rows] == [2*4*4] and s.flops == 2 * 2*4*4

@pytest.mark.parametrize('cls', [HooksCallback, ActivationStats])
def test_a_generator_of_modules_hooks_the_same_modules_every_fit(cls):
    learn = learner(default_cbs=False)
    gen = (m for m in learn.model.modules() if isinstance(m, nn.ReLU))
    cb = cls(lambda h, *a: None, gen) if cls is HooksCallback else cls(gen)
    for _ in range(2):
        learn.fit(1, cbs=cb)
        assert [type(h.m) for h in cb.hooks] == [nn.ReLU, nn.ReLU] and n_hooks(learn.model) == 0
    if cls is ActivationStats: assert cb.stats().shape == (2, 8, 3)

def test_a_filter_is_resolved_against_the_model_at_each_fit():
    calls = []
    astats = ActivationStats(nn.Linear)
    learn = learner(default_cbs=False)
    learn.fit(1, cbs=astats)
    assert astats.stats().shape[:2] == (3, 8)
    learn.model[2] = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))   # the model changes
    learn.fit(1, cbs=astats)
    assert [h.m for h in astats.hooks] == [m for m in learn.model.modules() if isinstance(m, nn.Linear)]
    assert astats.stats().shape[:2] == (4, 8)
    pick = HooksCallback(lambda h, *a: calls.append(h.m), lambda m: isinstance(m, nn.BatchNorm1d))
    learn.fit(1, cbs=pick)
    assert len(calls) == 8 and all(isinstance(m, nn.BatchNorm1d) for m in calls)
    other = learner(default_cbs=False)                      # the same callback on another learner's model
    other.fit(1, cbs=astats)
    assert all(any(h.m is m for m in other.model.modules()) for h in astats.hooks)

def test_mods_that_match_nothing_fail_before_training():
    learn = learner(default_cbs=False)
    w = learn.model[0][0].weight.clone()
    with pytest.raises(ValueError, match='matches no module'): learn.fit(1, cbs=ActivationStats(nn.Conv2d))
    with pytest.raises(ValueError, match='matches no module'):
        learn.fit(1, cbs=HooksCallback(lambda *a: None, lambda m: False))
    assert torch.equal(learn.model[0][0].weight, w) and n_hooks(learn.model) == 0
