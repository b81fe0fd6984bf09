"EMA: bit-exact resume with its state in the checkpoint, the average in exports and predictions, errors."
from functools import partial

import pytest, torch
from torch import nn

from fastfound.checkpoint import Checkpoint, load_learner
from fastfound.data import DataLoaders
from fastfound.ema import EMA
from fastfound.events import Callback
from fastfound.files import read_checkpoint
from fastfound.learner import Learner


def small_learner(seed=0, cbs=(), bn=True):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    dls = DataLoaders.from_tensors(x, y, x[:60], y[:60], bs=30, device='cpu')
    model = nn.Sequential(nn.Linear(8, 16), *([nn.BatchNorm1d(16)] if bn else []), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(16, 3))
    return Learner(model, dls, lr=0.1, opt_func=partial(torch.optim.SGD, momentum=0.9), cbs=list(cbs))


class Crash(Callback):
    def before_batch(self):
        if self.training and (self.epoch, self.iter) == (2, 4): raise RuntimeError('crash')


def state(learn): return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


def test_resume_with_ema_is_bit_exact(tmp_path):
    "Crash in epoch 2, resume in a learner built with another seed: the same average as a run never interrupted."
    a = small_learner(cbs=[EMA(0.9), Checkpoint(tmp_path/'a')])
    a.fit(4)
    b = small_learner(cbs=[EMA(0.9), Checkpoint(tmp_path/'b')])
    with pytest.raises(RuntimeError): b.fit(4, cbs=Crash())
    torch.manual_seed(99)
    b = small_learner(seed=5, cbs=[EMA(0.9), Checkpoint(tmp_path/'b')])
    b.fit(4, resume=True)
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.recorder.losses == b.recorder.losses and a.ema.n == b.ema.n == 40
    assert [v['valid_loss'] for v in a.recorder.values] == [v['valid_loss'] for v in b.recorder.values]


def test_checkpoint_holds_live_weights_and_the_average(tmp_path):
    learn = small_learner(cbs=[EMA(0.9), Checkpoint(tmp_path/'c')])
    learn.fit(2)
    d = read_checkpoint(tmp_path/'c'/'last.pt', ('train',))
    avg = d['cbs']['EMA']['avg']
    now = state(learn)  # the average: the fit has ended
    assert all(torch.equal(avg[k], now[k]) for k in ('0.weight', '1.running_mean', '4.bias'))
    assert not torch.equal(d['model']['0.weight'], now['0.weight'])  # the live weights, for the next step
    assert d['cbs']['EMA']['n'] == 20


def test_export_and_predictions_use_the_average(tmp_path):
    learn = small_learner(cbs=[EMA(0.9)])
    learn.fit(2)
    avg = dict(zip(learn.ema._names, learn.ema._avg))
    assert all(torch.equal(v, avg[k]) for k, v in learn.model.state_dict().items())
    learn.export(tmp_path/'m.pt')
    inf = load_learner(tmp_path/'m.pt', small_learner(bn=True).model)
    x = learn.dls.valid.x
    with torch.no_grad(): want = learn.model.eval()(x)
    torch.testing.assert_close(inf.get_preds([(x, None)])[0], want)


def test_live_weights_back_after_an_error_in_validation():
    "An error in validation: the live weights go back at cleanup_validate, then the average at cleanup_fit."
    seen = {}
    class Boom(Callback):
        order = -5  # its cleanup_validate runs before EMA's: the average is still in the model
        def after_batch(self):
            if not self.training: raise ValueError('boom')
        def cleanup_validate(self): seen['in_valid'] = state(self.learn)
    class Live(Callback):
        order = 5  # its cleanup_validate runs after EMA's: the live weights are back
        def cleanup_validate(self): seen['live'] = state(self.learn)
    ema = EMA(0.5)
    learn = small_learner(cbs=[ema, Boom(), Live()], bn=False)
    with pytest.raises(ValueError, match='boom'): learn.fit(1)
    avg = dict(zip(ema._names, ema._avg))
    assert all(torch.equal(v, avg[k]) for k, v in seen['in_valid'].items())
    assert not torch.equal(seen['live']['0.weight'], avg['0.weight'])
    assert all(torch.equal(v, avg[k]) for k, v in state(learn).items())  # the fit ended: the average
    assert not ema._swapped and not ema._in_fit


def test_a_later_fit_trains_on_from_the_average_and_errors():
    learn = small_learner(cbs=[EMA(0.9)], bn=False)
    learn.fit(1)
    avg = state(learn)
    learn.fit(1)  # starts from the average, a fresh average of this fit's steps
    assert learn.ema.n == 10 and not all(torch.equal(v, avg[k]) for k, v in state(learn).items())
    with pytest.raises(ValueError, match='0 <= decay < 1'): EMA(1.0)
    other = small_learner(cbs=[EMA()], bn=True)
    other.ema.before_fit()
    with pytest.raises(ValueError, match='does not fit this model'): other.ema.load_state_dict(learn.ema.state_dict())
