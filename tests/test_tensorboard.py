"TensorBoardCallback: rank 0 only, a resumed fit's steps, Adam's betas, the Recorder it needs."
from functools import partial
import pytest, torch
from torch import nn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
import fastfound.learner
from fastfound.checkpoint import Checkpoint
from fastfound.data import DataLoaders
from fastfound.learner import Learner, ProgressCB, accuracy
from fastfound.tensorboard import TensorBoardCallback


def learner(cbs, opt_func=partial(torch.optim.SGD, momentum=0.9), default_cbs=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    return Learner(nn.Linear(8, 2), DataLoaders.from_tensors(x, y, x[:32], y[:32], bs=16, device='cpu'),
                   opt_func=opt_func, metrics=accuracy if default_cbs else None, default_cbs=default_cbs,
                   cbs=[*cbs, ProgressCB(bars=False)])


def scalars(d, tag):
    ea = EventAccumulator(str(d))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_only_rank_0_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(fastfound.learner, 'is_main', lambda: False)  # as on rank 1 of a torchrun job
    learner([TensorBoardCallback(tmp_path/'tb')]).fit(1)
    assert not (tmp_path/'tb').exists()


def test_only_rank_0_writes_on_two_real_ranks(tmp_path):
    "Two gloo ranks, each in its own folder: one set of event files, rank 0's, with the epochs every rank saw."
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_distributed import run
    r0, r1 = run('tb', tmp_path)
    assert not (tmp_path/'cwd1'/'runs').exists()
    files = list((tmp_path/'cwd0'/'runs').glob('events.out.tfevents.*'))  # the scalars' and the hparams'
    assert files and len({f.name.split('.')[-2] for f in files}) == 1  # one writer process
    got = scalars(tmp_path/'cwd0'/'runs', 'epoch/valid_loss')
    assert got == [(e, pytest.approx(s['valid_loss'])) for e, s in enumerate(r1['stats'])]


def test_resumed_fit_goes_on_at_its_step_and_betas_split(tmp_path):
    a = learner([TensorBoardCallback(tmp_path/'a'), Checkpoint(tmp_path/'ck')], opt_func=torch.optim.Adam)
    a.fit(2)
    b = learner([TensorBoardCallback(tmp_path/'b'), Checkpoint(tmp_path/'ck2')], opt_func=torch.optim.Adam)
    b.fit(1)
    c = learner([TensorBoardCallback(tmp_path/'b'), Checkpoint(tmp_path/'ck2')], opt_func=torch.optim.Adam)
    c.fit(2, resume=True)
    assert [s for s, _ in scalars(tmp_path/'b', 'batch/loss')] == list(range(8))  # 4 batches an epoch
    assert [v for _, v in scalars(tmp_path/'b', 'batch/loss')] == [v for _, v in scalars(tmp_path/'a', 'batch/loss')]
    assert [v for _, v in scalars(tmp_path/'a', 'batch/betas_0')] == pytest.approx([0.9] * 8)


def test_needs_a_recorder(tmp_path):
    from fastfound.learner import DeviceCB, MetricsCB
    learn = learner([DeviceCB('cpu'), MetricsCB(), TensorBoardCallback(tmp_path)], default_cbs=False)
    with pytest.raises(ValueError, match='add Recorder'): learn.fit(1)
