"""What users of fastai and Keras reach for (issue 13): named metrics, inference on any batch, parameter groups,
stopping after an epoch, step-piece safety, and the bugs a miniai port found."""
from functools import partial

import pytest, torch
import torch.nn.functional as F
from torch import nn

import fastfound  # noqa: F401  (the whole Learner)
from fastfound.data import DataLoaders
from fastfound.events import Callback
from fastfound.learner import Learner, MetricsCB, ProgressCB, accuracy


def data(n=3, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 3, generator=g), torch.randint(0, 2, (bs,), generator=g)) for _ in range(n)]


def learner(model=None, **kw):
    xs = data()
    return Learner(model or nn.Linear(3, 2), DataLoaders(xs, xs[:1]), cbs=kw.pop('cbs', ProgressCB(bars=False)), **kw)


def topk(preds, targ, k=1): return (preds.topk(k, -1).indices == targ[:, None]).any(-1).float().mean()


# 1. metrics
def test_duplicate_metric_names_are_an_error():
    with pytest.raises(ValueError, match='distinct'):  # when the fit starts
        learner(metrics=[partial(topk, k=1), partial(topk, k=2)]).fit(1)
    with pytest.raises(ValueError, match='distinct'): MetricsCB(accuracy, accuracy)
    with pytest.raises(ValueError, match='not "loss"'): learner(metrics=[('loss', accuracy)]).fit(1)


def test_named_metrics_get_their_columns():
    learn = learner(metrics=[('top1', partial(topk, k=1)), ('top2', partial(topk, k=2)), accuracy])
    learn.fit(1)
    s = learn.epoch_stats
    assert {'valid_top1', 'valid_top2', 'valid_accuracy', 'train_top1'} <= set(s)
    assert s['valid_top2'] == 1.0  # two classes: the top 2 always hold the target
    assert s['valid_top1'] == pytest.approx(s['valid_accuracy'])
    assert set(learn.validate()) == {'loss', 'top1', 'top2', 'accuracy'}


def test_a_raising_metric_surfaces_its_own_error():
    def bad(p, t): raise RuntimeError('my metric broke')
    for ms in ([bad], [accuracy, bad]):
        with pytest.raises(RuntimeError, match='my metric broke') as e: learner(metrics=ms).fit(1)
        assert 'NoneType' not in ' '.join(getattr(e.value, '__notes__', [])) + str(e.value)


# 2. callbacks replacing step pieces take part in inference; summary on dict batches
class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)
    def forward(self, a, b): return self.a(a) + self.b(b)


class DictBatch(Callback):
    replaces = ('split', 'predict')
    def split(self):
        b = self.batch
        self.learn.xb, self.learn.yb = (b['a'], b['b']), b.get('label')
    def predict(self): self.learn.preds = self.model(*self.xb)


def dict_learner():
    g = torch.Generator().manual_seed(0)
    bs = [dict(a=torch.randn(8, 3, generator=g), b=torch.randn(8, 5, generator=g),
               label=torch.randint(0, 2, (8,), generator=g)) for _ in range(4)]
    return Learner(TwoInputs(), DataLoaders(bs, bs[:1]), cbs=[DictBatch(), ProgressCB(bars=False)]), bs


def test_piece_callbacks_take_part_in_inference_by_default():
    learn, bs = dict_learner()
    learn.fit(1)
    b = bs[0]
    with torch.no_grad(): expect = learn.model(b['a'], b['b'])
    preds, targs = learn.get_preds()
    torch.testing.assert_close(preds, expect)
    assert torch.equal(targs, b['label'])
    assert learn.validate()['loss'] == pytest.approx(F.cross_entropy(expect, b['label']).item(), rel=1e-5)
    out = learn.predict_one(dict(a=b['a'][0], b=b['b'][0]))  # an unlabelled dict item
    torch.testing.assert_close(out, expect[0])


def test_summary_on_dict_batches():
    learn, _ = dict_learner()
    s = learn.summary()
    assert '(8, 2)' in str(s) and '20' in str(s)  # both layers' outputs; 3*2+2 + 5*2+2 parameters


# 3. unlabelled data
def test_get_preds_on_unlabelled_batches():
    learn = learner()
    x = torch.randn(5, 3)
    with torch.no_grad(): expect = learn.model(x)
    for dl in ([(x, None)], [x], [(x,)]):
        p, t = learn.get_preds(dl)
        torch.testing.assert_close(p, expect)
        assert t is None
    with pytest.raises(ValueError, match='no targets'): Learner(nn.Linear(3, 2), DataLoaders([x])).fit(1)


# 4. predict_one
def test_predict_one_tuple_item_and_step_piece_errors():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(3, 2)
        def forward(self, xs): return self.l(xs[0]) * xs[1]
    learn = learner(Pair())
    x, s = torch.randn(3), torch.tensor([2.])
    with torch.no_grad(): expect = learn.model.l(x) * 2
    torch.testing.assert_close(learn.predict_one((x, s)), expect)
    with pytest.raises(TypeError, match='needs a tensor'): learn.predict_one(3.0)
    # the step pieces take no arguments: each works on the learner's own batch
    for piece in ('split', 'predict', 'get_loss', 'backward', 'step', 'zero_grad'):
        with pytest.raises(TypeError, match=f'Learner.{piece}\\(\\) takes 1 positional argument'):
            getattr(learn, piece)(x)


def test_predict_one_preps_raw_items_and_decodes():
    from fastfound.data import TensorLoader
    g = torch.Generator().manual_seed(0)
    raw, y = torch.randint(0, 256, (20, 2, 2), dtype=torch.uint8, generator=g), torch.randint(0, 3, (20,))
    tl = TensorLoader(raw, y, bs=10, device='cpu', norm=(0.5, 0.25), shape=(4,), vocab=('a', 'b', 'c'))
    learn = Learner(nn.Linear(4, 3), DataLoaders(tl, tl), cbs=ProgressCB(bars=False))
    with torch.no_grad(): expect = learn.model(tl.x[:1])[0]
    torch.testing.assert_close(learn.predict_one(raw[0]), expect)  # uint8: prepared like the training data
    torch.testing.assert_close(learn.predict_one(tl.x[0]), expect)  # float: taken as already prepared
    label, i, probs = learn.predict_one(raw[0], decoded=True)
    assert i == int(expect.argmax()) and label == 'abc'[i]
    torch.testing.assert_close(probs, expect.softmax(-1))
    learn.meta = dict(classes=['x', 'y', 'z'])  # an export's class names win
    assert learn.predict_one(raw[0], decoded=True)[0] == 'xyz'[i]


# 7. methods named like step pieces
def test_undeclared_piece_method_warns():
    class Log(Callback):
        def step(self): pass
    with pytest.warns(UserWarning, match=r"declare replaces = \('step',\)"): learner(cbs=Log())
    class Declared(Callback):
        replaces = ('step',)
        def step(self): self.learn.opt.step()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        learner(cbs=Declared()).fit(1)
    class Wrong(Callback): replaces = ('stepp',)
    with pytest.raises(ValueError, match='not step pieces'): learner(cbs=Wrong())


# 5. parameter groups, slices, freezing, fine_tune
def two_groups(**kw):
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    return learner(m, splitter=lambda m: [m[0].parameters(), m[2].parameters()], **kw)


def test_fit_lr_scales_groups_keeping_ratios():
    learn = two_groups(lr=slice(1e-3, 1e-1))
    learn.fit(1)
    assert [g['lr'] for g in learn.opt.param_groups] == pytest.approx([1e-3, 1e-1])
    learn.fit(1, lr=0.5)
    assert [g['lr'] for g in learn.opt.param_groups] == pytest.approx([5e-3, 0.5])
    learn.fit(1, lr=slice(0.2))
    assert [g['lr'] for g in learn.opt.param_groups] == pytest.approx([0.02, 0.2])


def test_hand_built_groups_keep_their_ratio():
    learn = learner(nn.Linear(3, 2))
    m = learn.model
    learn.opt = torch.optim.SGD([{'params': [m.weight], 'lr': 1e-3}, {'params': [m.bias], 'lr': 1e-2}], lr=0.1)
    learn.fit(1, lr=0.05)
    assert [g['lr'] for g in learn.opt.param_groups] == pytest.approx([5e-3, 5e-2])


def test_one_cycle_with_a_slice_keeps_ratios_every_batch():
    learn = two_groups()
    seen = []
    class Watch(Callback):
        order, run_valid = 100, False
        def before_batch(self): seen.append([g['lr'] for g in self.opt.param_groups])
    learn.fit_one_cycle(2, slice(1e-4, 1e-2), cbs=Watch())
    assert len(seen) == 6 and all(b == pytest.approx(a * 100) for a, b in seen)
    assert max(b for _, b in seen) == pytest.approx(1e-2, rel=0.1)  # the peak falls between batches
    assert learn.recorder.lrs == pytest.approx([b for _, b in seen])  # the head's rate is recorded


def test_freeze_unfreeze_and_fine_tune():
    learn = two_groups()
    w0 = learn.model[0].weight.detach().clone()
    learn.freeze()
    learn.fit(1)
    assert torch.equal(learn.model[0].weight, w0) and not learn.model[0].weight.requires_grad
    learn.freeze_to(0)
    assert all(p.requires_grad for p in learn.model.parameters())
    learn = two_groups()
    rates = []
    class Watch(Callback):
        def before_fit(self): rates.append(None)
        def after_batch(self): rates[-1] = [g['lr'] for g in self.opt.param_groups]
    w0 = learn.model[0].weight.detach().clone()
    frozen = []
    class Frozen(Callback):
        def before_fit(self): frozen.append(not self.model[0].weight.requires_grad)
    learn.fine_tune(2, base_lr=1e-2, cbs=[Watch(), Frozen()])
    assert frozen == [True, False]
    assert not torch.equal(learn.model[0].weight, w0)
    last = rates[-1]
    assert last[1] / last[0] == pytest.approx(100)


def test_slice_validation():
    with pytest.raises(ValueError, match='slice'): learner(lr=slice(0, 1))
    with pytest.raises(ValueError, match='slice'): learner(lr=slice(1e-3, 1e-2, 2))


# 6. stop after this epoch
def test_stop_training_keeps_the_epoch(tmp_path):
    from fastfound.callbacks import CSVLogger
    class StopAt(Callback):
        order = 15  # after MetricsCB wrote the epoch's stats
        def after_epoch(self):
            if self.epoch == 1: self.learn.stop_training = True
    learn = learner(cbs=[StopAt(), CSVLogger(tmp_path/'h.csv'), ProgressCB(bars=False)])
    learn.fit(5)
    assert learn.epoch == 1
    assert [v['epoch'] for v in learn.recorder.values] == [0, 1]
    assert len((tmp_path/'h.csv').read_text().splitlines()) == 3  # the header and both epochs
    learn.fit(2)  # the request does not outlive its fit
    assert [v['epoch'] for v in learn.recorder.values] == [0, 1]


def test_early_stopping_uses_stop_training():
    from fastfound.callbacks import EarlyStopping
    class Script(Callback):
        def after_epoch(self): self.learn.epoch_stats['valid_loss'] = [0.9, 0.7, 0.8, 0.8, 0.1][self.epoch]
    learn = learner(cbs=[Script(), EarlyStopping(patience=2), ProgressCB(bars=False)])
    learn.fit(5)
    assert learn.epoch == 3 and learn.stop_training
    assert [v['epoch'] for v in learn.recorder.values] == [0, 1, 2, 3]


# Recorder records every hyper-parameter
def test_recorder_records_hyper_parameters():
    learn = learner(opt_func=partial(torch.optim.Adam, weight_decay=0.01))
    learn.fit_one_cycle(1, 1e-2)
    hps = learn.recorder.hps
    assert {'lr', 'betas', 'weight_decay', 'eps'} <= set(hps)
    assert all(len(v) == 3 for v in hps.values())
    mom = [b[0] for b in hps['betas']]
    assert mom[0] == pytest.approx(0.95) and mom[-1] == pytest.approx(0.95) and mom[1] < 0.9  # one-cycle's
    assert hps['lr'] == learn.recorder.lrs
    assert 'foreach' not in hps and 'maximize' not in hps  # flags are not hyper-parameters


# bugs the miniai port found
def test_one_cbs_list_serves_one_learner_after_another():
    "miniai's habit: one `cbs` list for several Learners, each fitting in turn; each fit claims the callbacks back."
    from fastfound.learner import DeviceCB, MetricsCB, Recorder, accuracy
    cbs = [DeviceCB('cpu'), MetricsCB(accuracy), Recorder(), ProgressCB(bars=False)]
    a = learner(cbs=cbs, default_cbs=False)
    b = learner(nn.Linear(3, 2), cbs=cbs, default_cbs=False)
    b.fit(1)
    assert all(c.learn is b for c in cbs) and len(b.recorder.losses) == 3
    a.fit(2)  # the first learner takes them back for its fit
    assert all(c.learn is a for c in cbs) and len(a.recorder.losses) == 6 and a.recorder is b.recorder
    assert 'valid_accuracy' in a.epoch_stats


def test_a_callback_in_use_by_a_running_learner_is_refused():
    "Two Learners at the same time (one fitting inside the other's fit) cannot share a callback."
    from fastfound.learner import Callback, Recorder
    r, seen = Recorder(), {}
    class Inner(Callback):
        def after_epoch(self):
            with pytest.raises(ValueError, match='in use by another Learner, which is running now') as e:
                learner(cbs=[r, ProgressCB(bars=False)])
            seen['msg'] = str(e.value)
    outer = learner(cbs=[r, ProgressCB(bars=False), Inner()])
    outer.fit(1)
    assert 'give this one its own instance' in seen['msg'] and r.learn is outer


def test_lr_in_opt_func_position():
    xs = data()
    with pytest.raises(TypeError, match='give the learning rate as lr='):
        Learner(nn.Linear(3, 2), DataLoaders(xs), F.cross_entropy, 0.1)


def test_lr_find_needs_state_dict():
    class Bare:
        def __init__(self, params, lr): self.params, self.param_groups = list(params), [dict(lr=lr)]
        def step(self): pass
        def zero_grad(self): pass
    learn = learner(opt_func=Bare)
    learn.create_opt()
    with pytest.raises(TypeError, match='needs its state_dict'): learn.lr_find(show_plot=False)


def test_kaiming_normal_a():
    from fastfound.init import kaiming_normal_
    for a in (0, 1, 5):
        w = torch.empty(500, 2000)
        torch.manual_seed(0)
        kaiming_normal_(w, a=a)
        expect = (2 / (1 + a * a) / 2000) ** 0.5  # torch's gain for leaky_relu(a), fan_in 2000
        assert w.std().item() == pytest.approx(expect, rel=0.02)


# 9. smaller ones
def test_get_preds_bf16_is_float32():
    learn = learner()
    learn.model.to(torch.bfloat16)
    x = torch.randn(4, 3, dtype=torch.bfloat16)
    p, _ = learn.get_preds([x])
    assert p.dtype == torch.float32
    p.numpy()


def test_tensor_loader_takes_numpy():
    import numpy as np
    from fastfound.data import TensorLoader
    dl = TensorLoader(np.ones((5, 3), np.float32), np.arange(5), bs=2, device='cpu')
    xb, yb = next(iter(dl))
    assert isinstance(xb, torch.Tensor) and xb.shape == (2, 3) and yb.tolist() == [0, 1]


def test_hooks_callback_with_a_generator_hooks_every_fit():
    from fastfound.hooks import HooksCallback
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    calls = []
    cb = HooksCallback(lambda h, mod, i, o: calls.append(mod), mods=(l for l in m if isinstance(l, nn.Linear)))
    learn = learner(m, cbs=[cb, ProgressCB(bars=False)])
    learn.fit(1)
    n = len(calls)
    learn.fit(1)
    assert n == 2 * 3 and len(calls) == 2 * n  # two layers, three training batches, each fit


def test_checkpoint_without_validation_fails_at_fit_start(tmp_path):
    from fastfound.checkpoint import Checkpoint
    seen = []
    class Count(Callback):
        def before_batch(self): seen.append(1)
    xs = data()
    learn = Learner(nn.Linear(3, 2), DataLoaders(xs, None), cbs=[Checkpoint(tmp_path), Count(), ProgressCB(bars=False)])
    with pytest.raises(ValueError, match='dls.valid is None'): learn.fit(1)
    assert not seen  # before any batch trained
    Learner(nn.Linear(3, 2), DataLoaders(xs, None), cbs=[Checkpoint(tmp_path, monitor='train_loss'),
                                                       ProgressCB(bars=False)]).fit(1)
    assert (tmp_path/'best.pt').exists()


# defect 7: errors that name the fix
def test_metrics_cb_takes_named_metrics_as_miniai_does_and_names_what_it_refuses():
    from fastfound.learner import MetricsCB, accuracy
    learn = learner(cbs=[MetricsCB(acc=accuracy), ProgressCB(bars=False)])
    learn.fit(1)
    assert 'valid_acc' in learn.epoch_stats
    with pytest.raises(TypeError, match="MetricsCB got \\['train_metric'\\], which are not metrics"):
        MetricsCB(accuracy, train_metric=False)


def test_fit_train_false_says_what_to_do():
    with pytest.raises(TypeError, match='to validate only use learn.validate'): learner().fit(1, train=False)
    with pytest.raises(TypeError, match="it takes n_epochs, lr, cbs and resume"): learner().fit(1, epochs=2)


def test_a_callback_method_that_takes_learn_is_refused_when_added():
    from fastfound.learner import Callback
    class MiniaiStyle(Callback):
        def after_batch(self, learn): pass
    with pytest.raises(TypeError, match=r'MiniaiStyle.after_batch\(self, learn\).*write def after_batch\(self\)'):
        learner(cbs=MiniaiStyle())
    class Fine(Callback):
        def after_batch(self, *args, extra=None): pass
    learner(cbs=[Fine(), ProgressCB(bars=False)]).fit(1)


def test_loading_weights_of_another_optimizer_names_with_opt_false(tmp_path):
    from fastfound.files import CheckpointError
    a = learner()
    a.fit(1)
    a.save(tmp_path/'w.pth')
    b = learner(opt_func=torch.optim.Adam)
    b.fit(1)
    with pytest.raises(CheckpointError) as e: b.load(tmp_path/'w.pth')
    assert 'with_opt=False' in ' '.join([str(e.value), *getattr(e.value, '__notes__', [])])
    b.load(tmp_path/'w.pth', with_opt=False)
    assert torch.equal(b.model.weight, a.model.weight)
