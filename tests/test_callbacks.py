"The default callbacks and CSVLogger: output modes, records, metrics, logs that survive a crash."
import csv, importlib.util, io
from contextlib import redirect_stdout

import pytest, torch
import torch.nn.functional as F
from torch import nn

from fastfound.callbacks import CSVLogger
from fastfound.learner import DeviceCB, MetricsCB, ProgressCB, Recorder, accuracy, default_cbs, to_device
from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import Callback, CancelBatchException, Learner


def dls(n=64, bs=16, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)
    return DataLoaders(TensorLoader(x, y, bs, shuffle=True, device='cpu'), TensorLoader(x, y, 2*bs, device='cpu'))


def test_defaults_and_replacing_one():
    learn = Learner(nn.Linear(5, 3), dls())
    assert [type(c) for c in learn.cbs] == [DeviceCB, MetricsCB, Recorder, ProgressCB]
    assert learn.recorder is learn.cbs[2] and learn.progress_cb is learn.cbs[3]
    p = ProgressCB(bars=False)
    learn = Learner(nn.Linear(5, 3), dls(), cbs=[p, CSVLogger('x.csv')])
    assert [type(c) for c in learn.cbs] == [DeviceCB, MetricsCB, Recorder, ProgressCB, CSVLogger] and learn.progress_cb is p
    assert [type(c) for c in default_cbs()] == [DeviceCB, MetricsCB, Recorder, ProgressCB]


def test_plain_mode_prints_one_line_per_epoch(capsys):
    Learner(nn.Linear(5, 3), dls(), metrics=accuracy).fit(3)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].split() == ['epoch', 'train_loss', 'valid_loss', 'train_accuracy', 'valid_accuracy', 'time']
    assert [l.split()[0] for l in lines[1:]] == ['0', '1', '2']
    assert '\r' not in out and '█' not in out


def test_bar_mode_runs_and_closes(capsys):
    learn = Learner(nn.Linear(5, 3), dls(), metrics=accuracy, cbs=ProgressCB(bars=True))
    learn.fit(2)
    assert 'valid_accuracy' in capsys.readouterr().out
    class Boom(Callback):
        def after_loss(self):
            if self.iter == 2: raise RuntimeError('boom')
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1, cbs=Boom())


def test_metrics_match_a_direct_computation():
    d = dls()
    learn = Learner(nn.Linear(5, 3), d, metrics=accuracy, cbs=ProgressCB(bars=False))
    learn.fit(1, lr=0)                                          # lr 0: the model is the same for both phases
    s = learn.epoch_stats
    with torch.no_grad(): p = learn.model(d.valid.x)
    assert s['valid_loss'] == pytest.approx(F.cross_entropy(p, d.valid.y).item(), rel=1e-5)
    assert s['valid_accuracy'] == pytest.approx(accuracy(p, d.valid.y).item())
    assert s['train_loss'] == pytest.approx(s['valid_loss'], rel=1e-5)
    assert s['time'] > 0 and s['epoch'] == 0


def test_metrics_weight_uneven_batches():
    "The last batch is smaller; the epoch mean is over samples, not batches."
    x, y = torch.randn(10, 5), torch.randint(0, 3, (10,))
    d = DataLoaders(TensorLoader(x, y, 4, device='cpu'), TensorLoader(x, y, 3, device='cpu'))
    learn = Learner(nn.Linear(5, 3), d, metrics=accuracy, cbs=ProgressCB(bars=False))
    learn.fit(1, lr=0)
    with torch.no_grad(): p = learn.model(x)
    assert learn.epoch_stats['valid_accuracy'] == pytest.approx(accuracy(p, y).item())
    assert learn.epoch_stats['train_loss'] == pytest.approx(F.cross_entropy(p, y).item(), rel=1e-5)


class Count:
    "A duck-typed metric object, like torcheval's and torchmetrics'."
    def __init__(self): self.reset(); self.resets = 0
    def reset(self): self.n = 0; self.resets = getattr(self, 'resets', 0) + 1
    def update(self, preds, targ): self.n += len(targ)
    def compute(self): return torch.tensor(float(self.n))


def test_metric_objects_are_copied_per_phase():
    m = Count()
    learn = Learner(nn.Linear(5, 3), dls(48, 16), cbs=[MetricsCB(m), ProgressCB(bars=False)])
    learn.fit(2)
    assert learn.epoch_stats['train_count'] == 48 and learn.epoch_stats['valid_count'] == 48
    assert m.n == 0                                             # the user's object is untouched


def test_train_metrics_off():
    learn = Learner(nn.Linear(5, 3), dls(), cbs=[MetricsCB(accuracy, train_metrics=False), ProgressCB(bars=False)])
    learn.fit(1)
    assert 'train_accuracy' not in learn.epoch_stats and 'valid_accuracy' in learn.epoch_stats


@pytest.mark.skipif(importlib.util.find_spec('torcheval') is None, reason='torcheval not installed')
def test_torcheval_metric():
    from torcheval.metrics import MulticlassAccuracy
    learn = Learner(nn.Linear(5, 3), dls(), metrics=MulticlassAccuracy(), cbs=ProgressCB(bars=False))
    learn.fit(1, lr=0)
    assert learn.epoch_stats['valid_multiclass_accuracy'] == pytest.approx(learn.epoch_stats['train_multiclass_accuracy'])


def test_recorder_counts_only_finished_batches():
    class SkipOdd(Callback):
        def after_loss(self):
            if self.training and self.iter % 2: raise CancelBatchException
    d = dls(64, 16)                                             # 4 training batches per epoch
    learn = Learner(nn.Linear(5, 3), d, cbs=[SkipOdd(), ProgressCB(bars=False)])
    learn.fit(3)
    r = learn.recorder
    assert len(r.losses) == len(r.lrs) == 6 and r.iters == [2, 4, 6] and len(r.values) == 3
    assert all(isinstance(l, float) for l in r.losses) and r.lrs == [0.1] * 6


def test_recorder_plots(tmp_path):
    import matplotlib; matplotlib.use('Agg')
    learn = Learner(nn.Linear(5, 3), dls(), metrics=accuracy, cbs=ProgressCB(bars=False))
    learn.fit(2)
    for f in (learn.recorder.plot_loss, learn.recorder.plot_metrics, learn.recorder.plot_lr):
        ax = f()
        ax.figure.savefig(tmp_path/'p.png')
        assert (tmp_path/'p.png').read_bytes()[:4] == b'\x89PNG' and ax.lines


def test_recorder_state_round_trip():
    learn = Learner(nn.Linear(5, 3), dls(), cbs=ProgressCB(bars=False))
    learn.fit(1)
    r2 = Recorder(); r2.load_state_dict(learn.recorder.state_dict())
    assert r2.losses == learn.recorder.losses and r2.values == learn.recorder.values


def test_csv_appends_and_survives_a_crash(tmp_path):
    fn = tmp_path/'logs'/'h.csv'
    class CrashInEpoch2(Callback):
        def before_epoch(self):
            if self.epoch == 2: raise MemoryError('out of memory')
    learn = Learner(nn.Linear(5, 3), dls(), metrics=accuracy, cbs=[CSVLogger(fn), ProgressCB(bars=False)])
    with pytest.raises(MemoryError): learn.fit(4, cbs=CrashInEpoch2())
    rows = list(csv.DictReader(fn.open()))
    assert [r['epoch'] for r in rows] == ['0', '1'] and float(rows[1]['valid_accuracy']) >= 0
    learn.fit(1)                                                 # a later fit appends under the same header
    rows = list(csv.DictReader(fn.open()))
    assert [r['epoch'] for r in rows] == ['0', '1', '0'] and fn.read_text().count('epoch') == 1
    assert learn.csv_logger._fd is None


def test_csv_refuses_other_columns(tmp_path):
    fn = tmp_path/'h.csv'; fn.write_text('a,b\n1,2\n')
    learn = Learner(nn.Linear(5, 3), dls(), cbs=[CSVLogger(fn), ProgressCB(bars=False)])
    with pytest.raises(ValueError, match="has columns \\['a', 'b'\\]"): learn.fit(1)
    assert fn.read_text() == 'a,b\n1,2\n'


def test_to_device_structures():
    meta = torch.device('meta')
    b = to_device({'a': torch.zeros(2), 'b': [torch.ones(1), (torch.ones(1), 'keep')]}, meta)
    assert b['a'].device == meta and b['b'][0].device == meta and b['b'][1][0].device == meta and b['b'][1][1] == 'keep'


def test_device_cb_moves_model_and_batches():
    seen = []
    class Peek(Callback):
        order = -50
        def before_batch(self): seen.append((self.xb.device, self.yb.device))
    learn = Learner(nn.Linear(5, 3), dls(), cbs=[DeviceCB('cpu'), Peek(), ProgressCB(bars=False)])
    learn.fit(1)
    assert set(seen) == {(torch.device('cpu'), torch.device('cpu'))} and learn.device_cb.device == torch.device('cpu')


def test_failure_in_before_fit_is_not_masked_by_cleanups(tmp_path):
    "Cleanups of callbacks whose before_fit never ran must not raise and hide the real error."
    class Early(Callback):
        order = -1000
        def before_fit(self): raise KeyError('the real error')
    learn = Learner(nn.Linear(5, 3), dls(), metrics=accuracy, cbs=[Early(), CSVLogger(tmp_path/'h.csv'), ProgressCB(bars=True)])
    with pytest.raises(KeyError, match='the real error') as e: learn.fit(1)
    assert e.value.__notes__ == ['raised in callback Early.before_fit'] and e.value.__context__ is None


def test_optimizer_without_param_groups():
    "A hand-written optimizer with only `step`: the recorder falls back to learn.lr."
    class PlainSGD:
        def __init__(self, params, lr): self.params, self.lr = list(params), lr
        def step(self):
            with torch.no_grad():
                for p in self.params: p -= self.lr * p.grad
        def zero_grad(self):
            for p in self.params: p.grad = None
    learn = Learner(nn.Linear(5, 3), dls(), opt_func=PlainSGD, lr=0.05, cbs=ProgressCB(bars=False))
    learn.fit(1)
    assert learn.recorder.lrs == [0.05] * len(learn.recorder.losses)
