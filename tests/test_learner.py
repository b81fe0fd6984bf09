"The Learner's contract: exact event sequences for a normal fit and each cancel, errors, bad input, step pieces."
import math
from functools import partial

import pytest, torch
import torch.nn.functional as F
from torch import nn

from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import (EVENTS, STEP_EVENTS, Callback, CancelBatchException, CancelEpochException,
                               CancelFitException, CancelTrainException, CancelValidateException, Learner)

TRAIN_BATCH = ['before_batch', 'after_pred', 'after_loss', 'after_backward', 'after_step', 'after_batch', 'cleanup_batch']
VALID_BATCH = ['before_batch', 'after_pred', 'after_loss', 'after_batch', 'cleanup_batch']


class Trace(Callback):
    "Record every event; raise `exc` at `event`, on batch `at` of phase `phase` (True: training) when given."
    def __init__(self, exc=None, event=None, at=None, phase=None, epoch=None):
        self.exc, self.event, self.at, self.phase, self.ep, self.log = exc, event, at, phase, epoch, []
    def _ev(self, e):
        self.log.append(e)
        if e != self.event: return
        if self.phase is not None and self.phase != self.learn.training: return
        if self.at is not None and self.learn.iter != self.at: return
        if self.ep is not None and self.learn.epoch != self.ep: return
        raise self.exc('test')
for _e in EVENTS: setattr(Trace, _e, (lambda e: lambda self: self._ev(e))(_e))


def tiny_dls(n_train=4, n_valid=2, bs=2):
    x = torch.randn(n_train + n_valid, 3)
    y = torch.randint(0, 2, (n_train + n_valid,))
    return DataLoaders(TensorLoader(x[:n_train], y[:n_train], bs, device='cpu'),
                       TensorLoader(x[n_train:], y[n_train:], bs, device='cpu'))


def run(*args, epochs=1, **kw):
    t = Trace(*args, **kw)
    Learner(nn.Linear(3, 2), tiny_dls(), cbs=t, default_cbs=False).fit(epochs)
    return t.log


TRAIN = ['before_train', *TRAIN_BATCH, *TRAIN_BATCH, 'after_train', 'cleanup_train']
VALID = ['before_validate', *VALID_BATCH, 'after_validate', 'cleanup_validate']
EPOCH = ['before_epoch', *TRAIN, *VALID, 'after_epoch', 'cleanup_epoch']


def test_normal_fit_sequence():
    assert run() == ['before_fit', *EPOCH, 'after_fit', 'cleanup_fit']
    assert run(epochs=2) == ['before_fit', *EPOCH, *EPOCH, 'after_fit', 'cleanup_fit']


@pytest.mark.parametrize('event', ['before_batch', 'after_pred', 'after_loss', 'after_backward', 'after_step', 'after_batch'])
def test_cancel_batch_in_training(event):
    cut = TRAIN_BATCH[:TRAIN_BATCH.index(event) + 1] + ['cleanup_batch']
    train = ['before_train', *cut, *TRAIN_BATCH, 'after_train', 'cleanup_train']
    assert run(CancelBatchException, event, at=0, phase=True) == \
        ['before_fit', 'before_epoch', *train, *VALID, 'after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit']


def test_cancel_batch_in_validation():
    valid = ['before_validate', 'before_batch', 'after_pred', 'cleanup_batch', 'after_validate', 'cleanup_validate']
    assert run(CancelBatchException, 'after_pred', at=0, phase=False) == \
        ['before_fit', 'before_epoch', *TRAIN, *valid, 'after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit']


def test_cancel_train():
    train = ['before_train', *TRAIN_BATCH, 'before_batch', 'after_pred', 'after_loss', 'cleanup_batch', 'cleanup_train']
    assert run(CancelTrainException, 'after_loss', at=1, phase=True) == \
        ['before_fit', 'before_epoch', *train, *VALID, 'after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit']
    # cancelled in before_train: no batch at all
    assert run(CancelTrainException, 'before_train')[:4] == ['before_fit', 'before_epoch', 'before_train', 'cleanup_train']


def test_cancel_validate():
    valid = ['before_validate', 'before_batch', 'cleanup_batch', 'cleanup_validate']
    assert run(CancelValidateException, 'before_batch', at=0, phase=False) == \
        ['before_fit', 'before_epoch', *TRAIN, *valid, 'after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit']


def test_cancel_epoch():
    # during training: validation is skipped too, then the next epoch runs normally
    train = ['before_train', *TRAIN_BATCH[:3], 'cleanup_batch', 'cleanup_train']
    assert run(CancelEpochException, 'after_loss', at=0, phase=True, epoch=0, epochs=2) == \
        ['before_fit', 'before_epoch', *train, 'cleanup_epoch', *EPOCH, 'after_fit', 'cleanup_fit']
    # in after_validate
    valid = VALID[:-2] + ['after_validate', 'cleanup_validate']
    assert run(CancelEpochException, 'after_validate') == \
        ['before_fit', 'before_epoch', *TRAIN, *valid, 'cleanup_epoch', 'after_fit', 'cleanup_fit']


def test_cancel_fit():
    train = ['before_train', *TRAIN_BATCH, 'before_batch', 'after_pred', 'after_loss', 'after_backward', 'cleanup_batch', 'cleanup_train']
    assert run(CancelFitException, 'after_backward', at=1, phase=True) == \
        ['before_fit', 'before_epoch', *train, 'cleanup_epoch', 'cleanup_fit']
    assert run(CancelFitException, 'before_fit') == ['before_fit', 'cleanup_fit']
    assert run(CancelFitException, 'after_epoch', epoch=0, epochs=3) == ['before_fit', *EPOCH[:-2], 'after_epoch', 'cleanup_epoch', 'cleanup_fit']


def test_cancelled_batch_does_not_step_and_clears_grads():
    class Skip(Callback):
        def after_backward(self): raise CancelBatchException
    learn = Learner(nn.Linear(3, 2), tiny_dls(), cbs=Skip(), default_cbs=False)
    w = learn.model.weight.detach().clone()
    learn.fit(1)
    assert torch.equal(learn.model.weight, w)
    assert all(p.grad is None or not p.grad.any() for p in learn.model.parameters())


def test_exception_names_callback_and_event_and_cleanups_run():
    class Bad(Callback):
        order = 5
        def after_step(self): raise ZeroDivisionError('x')
    t = Trace()
    learn = Learner(nn.Linear(3, 2), tiny_dls(), cbs=[Bad(), t], default_cbs=False)
    with pytest.raises(ZeroDivisionError) as e: learn.fit(1)
    assert 'raised in callback Bad.after_step' in e.value.__notes__
    assert t.log[-4:] == ['cleanup_batch', 'cleanup_train', 'cleanup_epoch', 'cleanup_fit']
    assert 'after_fit' not in t.log


def test_error_in_model_runs_cleanups():
    t = Trace()
    learn = Learner(nn.Linear(4, 2), tiny_dls(), cbs=t, default_cbs=False)      # wrong input size
    with pytest.raises(RuntimeError): learn.fit(1)
    assert t.log == ['before_fit', 'before_epoch', 'before_train', 'before_batch', 'cleanup_batch', 'cleanup_train',
                     'cleanup_epoch', 'cleanup_fit']


def test_callback_order_and_run_flags():
    seen = []
    class A(Callback):
        order = 2
        def before_batch(self): seen.append(('A', self.training))
    class B(Callback):
        order = 1; run_valid = False
        def before_batch(self): seen.append(('B', self.training))
    Learner(nn.Linear(3, 2), tiny_dls(4, 2, 2), cbs=[A(), B()], default_cbs=False).fit(1)
    assert seen == [('B', True), ('A', True), ('B', True), ('A', True), ('A', False)]


def test_fit_only_callbacks_are_removed_also_after_error():
    class Bad(Callback):
        def before_epoch(self): raise ValueError('no')
    learn = Learner(nn.Linear(3, 2), tiny_dls(), default_cbs=False)
    cb = Bad()
    with pytest.raises(ValueError): learn.fit(1, cbs=cb)
    assert learn.cbs == [] and cb.learn is None and not hasattr(learn, 'bad')
    t = Trace()
    learn.fit(1, cbs=[t])
    assert learn.cbs == [] and t.log[0] == 'before_fit'


def test_callback_reads_learner_state_and_name():
    class Peek(Callback):
        def after_loss(self): self.seen = (self.epoch, self.iter, self.loss.shape, self.n_iter)
    p = Peek()
    learn = Learner(nn.Linear(3, 2), tiny_dls(), cbs=p, default_cbs=False)
    learn.fit(1)
    assert p.seen == (0, 0, torch.Size([]), 1) and learn.peek is p
    with pytest.raises(AttributeError): Peek().epoch       # not added: no learner to read from


def test_optimizer_is_kept_across_fits_and_lr_is_set():
    learn = Learner(nn.Linear(3, 2), tiny_dls(), opt_func=partial(torch.optim.SGD, momentum=0.9), default_cbs=False)
    learn.fit(1); opt = learn.opt
    learn.fit(1, lr=0.01)
    assert learn.opt is opt and opt.param_groups[0]['lr'] == 0.01 and learn.lr == 0.01
    assert opt.state[learn.model.weight]['momentum_buffer'] is not None


def test_start_epoch_for_resume():
    class Resume(Callback):
        def before_fit(self): self.learn.start_epoch = 2
    t = Trace()
    Learner(nn.Linear(3, 2), tiny_dls(), cbs=[Resume(), t], default_cbs=False).fit(3)
    assert t.log.count('before_epoch') == 1


# --- bad input ------------------------------------------------------------------------------------------------------
def mk(model=None, train='ok', valid=None, **kw):
    xy = [(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))]
    return Learner(model or nn.Linear(3, 2), DataLoaders(xy if train == 'ok' else train, valid), default_cbs=False, **kw)


class NoStep(Callback):
    "Fails the test if any training step happens."
    def after_backward(self): raise AssertionError('a training step happened')


@pytest.mark.parametrize('n', [0, -1, 1.5, True, None])
def test_bad_epochs(n):
    with pytest.raises(ValueError, match='whole number of epochs'): mk().fit(n)


@pytest.mark.parametrize('lr', [-0.1, math.nan, math.inf, 'fast'])
def test_bad_lr(lr):
    with pytest.raises(ValueError, match='finite number >= 0'): mk(lr=lr)
    with pytest.raises(ValueError, match='finite number >= 0'): mk().fit(1, lr=lr)


def test_empty_loaders():
    with pytest.raises(ValueError, match='dls.train is empty'): mk(train=[]).fit(1)
    with pytest.raises(ValueError, match='dls.valid is empty'): mk(valid=[]).fit(1)
    with pytest.raises(ValueError, match='dls.train is empty'):
        mk(train=TensorLoader(torch.zeros(3, 3), torch.zeros(3), 4, drop_last=True, device='cpu')).fit(1)
    with pytest.raises(ValueError, match='yielded no batches'): mk(train=iter([])).fit(1)   # no len()


def test_no_parameters():
    with pytest.raises(ValueError, match='has no parameters'): mk(model=nn.ReLU()).fit(1)


@pytest.mark.parametrize('batch', [(torch.randn(4, 3), torch.zeros(4), torch.zeros(4)), {'x': 1}])
def test_batch_not_a_pair(batch):
    learn = mk(train=[batch], cbs=NoStep())
    with pytest.raises(TypeError, match=r'a batch must be a pair \(x, y\)'): learn.fit(1)


@pytest.mark.parametrize('batch', [(torch.randn(4, 3),), torch.randn(4, 3), (torch.randn(4, 3), None)])
def test_batch_without_targets_cannot_train(batch):
    learn = mk(train=[batch], cbs=NoStep())
    with pytest.raises(ValueError, match='this batch has no targets'): learn.fit(1)


def test_custom_predict_takes_any_batch():
    class P(Callback):
        def predict(self): self.learn.preds = self.model(self.xb[0])
        def get_loss(self): self.learn.loss = F.cross_entropy(self.preds, self.xb[1])
    mk(train=[(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 'extra')], cbs=P()).fit(1)


def test_non_scalar_loss():
    learn = mk(loss_func=partial(F.cross_entropy, reduction='none'), cbs=NoStep())
    with pytest.raises(ValueError, match=r'scalar, got shape \(4,\)'): learn.fit(1)
    assert all(p.grad is None for p in learn.model.parameters())


def test_dls_without_train_valid():
    with pytest.raises(TypeError, match='.train and .valid'): Learner(nn.Linear(3, 2), [1, 2], default_cbs=False)


def test_metrics_need_metrics_cb():
    with pytest.raises(ValueError, match='MetricsCB'): mk(metrics=[lambda p, y: p.mean()])


# --- step pieces ---------------------------------------------------------------------------------------------------
def test_callback_replaces_a_piece_and_can_call_the_default():
    calls = []
    class Clip(Callback):
        def step(self):
            calls.append(self.iter)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.1)
            self.learn.step()
    learn = Learner(nn.Linear(3, 2), tiny_dls(), cbs=Clip(), default_cbs=False)
    w = learn.model.weight.detach().clone()
    learn.fit(1)
    assert calls == [0, 1] and not torch.equal(w, learn.model.weight)


def test_two_callbacks_replacing_one_piece_is_an_error():
    class S1(Callback):
        def step(self): pass
    class S2(Callback):
        def step(self): pass
    with pytest.raises(ValueError, match='step is replaced by more than one callback'):
        Learner(nn.Linear(3, 2), tiny_dls(), cbs=[S1(), S2()], default_cbs=False).fit(1)


def test_piece_not_shadowed_by_delegation():
    "A callback without `predict` must not pick up the learner's through attribute delegation."
    class Nothing(Callback): pass
    learn = Learner(nn.Linear(3, 2), tiny_dls(), cbs=Nothing(), default_cbs=False)
    learn.fit(1)
    assert learn._pieces[True][1].__self__ is learn


def test_no_optimizer_needs_custom_step():
    with pytest.raises(ValueError, match='replace step and zero_grad'): mk(opt_func=None).fit(1)


def test_subclass_overrides_pieces():
    class L(Learner):
        n = 0
        def step(self): L.n += 1; super().step()
    L(nn.Linear(3, 2), tiny_dls(), default_cbs=False).fit(2)
    assert L.n == 4


def test_validation_has_no_grad_and_eval_mode():
    seen = []
    class Mode(Callback):
        def after_pred(self): seen.append((self.training, self.model.training, torch.is_grad_enabled()))
    Learner(nn.Linear(3, 2), tiny_dls(4, 2, 2), cbs=Mode(), default_cbs=False).fit(1)
    assert seen == [(True, True, True), (True, True, True), (False, False, False)]


# --- properties over every place a cancel can be raised -------------------------------------------------------
from hypothesis import given, settings, strategies as st

CANCELS = {'fit': CancelFitException, 'epoch': CancelEpochException, 'train': CancelTrainException,
           'validate': CancelValidateException, 'batch': CancelBatchException}


@settings(max_examples=200, deadline=None)
@given(stage=st.sampled_from(list(CANCELS)), event=st.sampled_from([e for e in EVENTS if not e.startswith('cleanup_')]),
       at=st.sampled_from([None, 0, 1]), phase=st.sampled_from([None, True, False]), epochs=st.integers(1, 2))
def test_events_nest_and_after_means_finished(stage, event, at, phase, epochs):
    "Wherever a cancel is raised: stages nest, every opened stage is cleaned up, and a cancelled stage has no after."
    t = Trace(CANCELS[stage], event, at=at, phase=phase)
    learn = Learner(nn.Linear(3, 2), tiny_dls(), cbs=t, default_cbs=False)
    raises = []
    orig = t._ev
    def spy(e):
        try: orig(e)
        except Exception: raises.append(len(t.log) - 1); raise
    t._ev = spy
    for e in EVENTS: setattr(t, e, (lambda e: lambda: t._ev(e))(e))
    try: learn.fit(epochs); escaped = False
    except CANCELS[stage]: escaped = True
    log, stack, spans = t.log, [], []
    for i, e in enumerate(log):
        kind, s = e.split('_', 1)
        if kind == 'before': stack.append((s, i))
        elif kind == 'cleanup':
            assert stack and stack[-1][0] == s, log               # cleanups close the innermost open stage
            spans.append((s, stack.pop()[1], i))
        elif e in STEP_EVENTS: assert stack[-1][0] == 'batch', log
        else: assert stack[-1][0] == s and log[i + 1] == f'cleanup_{s}', log   # after_X comes last, then cleanup_X
    assert stack == [] and log[0] == 'before_fit' and log[-1] == 'cleanup_fit', log
    for r in raises:
        inside = [(a, b) for s, a, b in spans if s == stage and a <= r <= b]
        if not inside: assert escaped; continue                  # a cancel raised outside its stage leaves fit
        a, b = max(inside)                                       # the innermost such stage: the one cancelled
        assert f'after_{stage}' not in log[r + 1:b], log          # no after_X once X was cancelled
    if not raises: assert log.count('after_fit') == 1 and log.count('after_epoch') == epochs


def test_recorder_counts_after_batch_only():
    from fastfound.learner import Recorder
    class Skip(Callback):
        def after_step(self):
            if self.iter == 0: raise CancelBatchException
    t, r = Trace(), Recorder()
    Learner(nn.Linear(3, 2), tiny_dls(6, 2, 2), cbs=[Skip(), t, r], default_cbs=False).fit(2)
    training_after_batches = 2 * 2                              # 3 batches per epoch, the first one cancelled
    assert len(r.losses) == training_after_batches


def test_any_iterable_of_batches_works():
    from torch.utils.data import DataLoader, TensorDataset
    from fastfound.learner import DeviceCB, MetricsCB, accuracy
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    dls = DataLoaders(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), DataLoader(TensorDataset(x, y), batch_size=8))
    learn = Learner(nn.Linear(3, 2), dls, cbs=[DeviceCB('cpu'), MetricsCB(accuracy)], default_cbs=False)
    learn.fit(2)
    assert set(learn.epoch_stats) >= {'train_loss', 'valid_loss', 'valid_accuracy'}
