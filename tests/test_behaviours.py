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
