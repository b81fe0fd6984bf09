"get_preds, predict_one and validate: the right numbers, in order, on the CPU, and the learner left as it was."
import csv
from functools import partial

import pytest, torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from fastfound.callbacks import CSVLogger
from fastfound.learner import DeviceCB, MetricsCB, ProgressCB, Recorder, accuracy
from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import Callback, CancelBatchException, Learner
from fastfound.training import MixedPrecision


def data(n, ni=6, nc=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ni, generator=g)
    return x, (x @ torch.randn(ni, nc, generator=g)).argmax(1)


def learner(n_train=64, n_valid=50, bs=16, **kwargs):
    x, y = data(n_train + n_valid)
    dls = DataLoaders(TensorLoader(x[:n_train], y[:n_train], bs, shuffle=True, device='cpu'),
                      TensorLoader(x[n_train:], y[n_train:], 2 * bs, device='cpu'))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
    kwargs.setdefault('cbs', [ProgressCB(bars=False)])
    kwargs.setdefault('metrics', accuracy)
    return Learner(model, dls, lr=0.1, **kwargs)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 70), bs=st.integers(1, 20), with_loss=st.booleans())
def test_get_preds_is_the_model_over_the_data_in_order(n, bs, with_loss):
    learn = learner()
    x, y = data(n, seed=1)
    res = learn.get_preds(TensorLoader(x, y, bs, device='cpu'), with_loss=with_loss)
    assert len(res) == (3 if with_loss else 2)
    with torch.no_grad(): out = learn.model(x)
    torch.testing.assert_close(res[0], out)
    assert torch.equal(res[1], y)
    if with_loss: torch.testing.assert_close(res[2], F.cross_entropy(out, y, reduction='none'))
    assert all(t.device.type == 'cpu' and not t.requires_grad and t.grad_fn is None for t in res)


def test_get_preds_defaults_to_the_validation_set_and_module_losses_work():
    learn = learner(loss_func=nn.CrossEntropyLoss(label_smoothing=0.1))
    learn.fit(1)
    p, t, l = learn.get_preds(with_loss=True)
    xv, yv = learn.dls.valid.x, learn.dls.valid.y
    with torch.no_grad(): out = learn.model(xv)
    torch.testing.assert_close(p, out); assert torch.equal(t, yv)
    torch.testing.assert_close(l, F.cross_entropy(out, yv, reduction='none', label_smoothing=0.1))
    assert learn.loss_func.reduction == 'mean'  # the learner's own loss is untouched


def test_per_item_losses_need_a_loss_that_can_give_them():
    class Mean(nn.Module):
        def forward(self, p, y): return F.cross_entropy(p, y)
    with pytest.raises(TypeError, match='Mean has no `reduction`'): learner(loss_func=Mean()).get_preds(with_loss=True)
    def summed(p, y, reduction='mean'): return F.cross_entropy(p, y, reduction='sum')
    with pytest.raises(ValueError, match=r'returned shape \(\), expected one loss per item, \(32,\)'):
        learner(loss_func=summed).get_preds(with_loss=True)
    learner(loss_func=Mean()).get_preds()  # without with_loss any loss does


def test_validate_matches_what_the_fit_reported():
    class Acc:
        "An update/compute/reset metric object, like torcheval's."
        def reset(self): self.c = self.n = 0
        def update(self, p, y): self.c += int((p.argmax(1) == y).sum()); self.n += len(y)
        def compute(self): return torch.tensor(self.c / self.n)
    learn = learner(n_valid=77, metrics=[accuracy, Acc()])
    learn.fit(2)
    res = learn.validate()
    last = learn.recorder.values[-1]
    assert list(res) == ['loss', 'accuracy', 'acc']
    assert res['loss'] == pytest.approx(last['valid_loss'], rel=1e-6)
    assert res['accuracy'] == pytest.approx(last['valid_accuracy'], abs=1e-6)
    assert res['acc'] == pytest.approx(last['valid_acc'], abs=1e-6)
    x, y = data(20, seed=3)
    sub = learn.validate([(x[:15], y[:15]), (x[15:], y[15:])])
    with torch.no_grad(): out = learn.model(x)
    assert sub['loss'] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-6)
    assert sub['accuracy'] == pytest.approx(float((out.argmax(1) == y).float().mean()))


def test_predict_one():
    learn = learner()
    x, _ = data(3, seed=2)
    out = learn.predict_one(x[1])
    with torch.no_grad(): torch.testing.assert_close(out, learn.model(x)[1])
    assert out.shape == (4,) and out.device.type == 'cpu'
    with pytest.raises(TypeError, match='needs a tensor'): learn.predict_one([1., 2.])


def test_no_validation_set():
    learn = learner()
    learn.dls.valid = None
    for f in (learn.get_preds, learn.validate):
        with pytest.raises(ValueError, match='dls.valid is None'): f()


def test_watchers_do_not_run_and_the_learner_is_left_as_it_was(tmp_path, capsys):
    fn = tmp_path/'log.csv'
    learn = learner(cbs=[ProgressCB(bars=False), CSVLogger(fn)])
    learn.fit(2)
    capsys.readouterr()
    cbs, values, losses = list(learn.cbs), list(learn.recorder.values), list(learn.recorder.losses)
    learn.model.train()
    learn.get_preds(); learn.validate(); learn.predict_one(learn.dls.valid.x[0])
    assert capsys.readouterr().out == ''  # no progress table
    assert learn.cbs == cbs and learn.recorder.values == values and learn.recorder.losses == losses
    assert learn.model.training
    assert len(list(csv.reader(open(fn)))) == 3  # header and two epochs, nothing added
    learn.fit(1)  # and it still fits, with every callback
    assert len(learn.recorder.values) == 1 and len(list(csv.reader(open(fn)))) == 4


def test_run_preds_callbacks_take_part_and_others_do_not():
    class Double(Callback):
        run_preds = True
        def before_batch(self): self.learn.xb = self.learn.xb * 2
    class Zero(Callback):
        def before_batch(self): self.learn.xb = self.learn.xb * 0
    learn = learner(cbs=[Double(), Zero()])
    x, y = data(5, seed=4)
    p, _ = learn.get_preds([(x, y)])
    with torch.no_grad(): torch.testing.assert_close(p, learn.model(2 * x))


def test_get_preds_from_inside_a_fit_leaves_the_fit_alone():
    seen = []
    class PredsEachEpoch(Callback):
        def after_epoch(self): seen.append(self.learn.get_preds()[0])
    a, b = learner(cbs=[ProgressCB(bars=False), PredsEachEpoch()]), learner()
    torch.manual_seed(1); a.fit(3)
    torch.manual_seed(1); b.fit(3)
    assert len(seen) == 3
    for p, q in zip(a.model.parameters(), b.model.parameters()): assert torch.equal(p, q)
    assert [v['valid_loss'] for v in a.recorder.values] == [v['valid_loss'] for v in b.recorder.values]


def test_an_error_while_predicting_restores_the_learner():
    class Boom(Callback):
        run_preds = True
        def after_pred(self): raise RuntimeError('boom')
    learn = learner()
    cbs = list(learn.cbs)
    learn.add_cbs(boom := Boom())
    with pytest.raises(RuntimeError, match='boom'): learn.get_preds()
    assert learn.cbs == cbs + [boom] and learn.model.training is True
    learn.remove_cbs(boom)
    learn.fit(1)


def test_a_cancelled_batch_is_left_out():
    class SkipFirst(Callback):
        run_preds = True
        def before_batch(self):
            if self.learn.iter == 0: raise CancelBatchException()
    learn = learner(cbs=[ProgressCB(bars=False), SkipFirst()])
    x, y = data(40, seed=5)
    p, t = learn.get_preds(TensorLoader(x, y, 10, device='cpu'))
    assert torch.equal(t, y[10:]) and len(p) == 30


def test_predictions_run_under_mixed_precision():
    learn = learner(cbs=[ProgressCB(bars=False), MixedPrecision(torch.bfloat16)])
    p, _ = learn.get_preds()
    assert p.dtype == torch.float32  # returned as float32, numpy-able
    assert torch.equal(p, p.bfloat16().float())  # but computed in bfloat16: every value is a bfloat16
    assert not torch.is_autocast_enabled('cpu')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_batches_go_to_the_model_device():
    learn = learner()
    learn.model.cuda()
    x, y = data(8, seed=6)
    p, t = learn.get_preds([(x, y)])  # CPU batches, CUDA model
    assert p.device.type == 'cpu'
    with torch.no_grad(): torch.testing.assert_close(p, learn.model(x.cuda()).cpu())
    learn.model.cpu()
    p, t = learn.get_preds([(x.cuda(), y.cuda())])  # CUDA batches, CPU model
    assert p.device.type == 'cpu'
