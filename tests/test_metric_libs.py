"""torchmetrics and torcheval metric objects (both in the dev install): their figures on 2 gloo ranks equal one
process's. Each rank runs under a hard timeout, so a hang fails the test."""
import os, socket, subprocess, sys
from pathlib import Path
import pytest, torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _metric_job import build  # noqa: E402

TIMEOUT = 120


def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_metric_objects_on_two_ranks_equal_one_process(tmp_path):
    port, n = free_port(), 2
    env = lambda r: os.environ | dict(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n),
                                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), OMP_NUM_THREADS='1',
                                      PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get('PYTHONPATH', '')]))
    ps = [subprocess.Popen([sys.executable, str(HERE/'_metric_job.py'), str(tmp_path)], env=env(r),
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path/f'err{r}.txt', 'w')) for r in range(n)]
    try:
        for p in ps: p.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        for p in ps: p.kill()
        pytest.fail(f'a rank hung for {TIMEOUT}s')
    assert [p.returncode for p in ps] == [0, 0], [(tmp_path/f'err{r}.txt').read_text()[-3000:] for r in range(n)]
    ranks = [torch.load(tmp_path/f'rank{r}.pt') for r in range(n)]
    one = build()
    one.fit(1, lr=0.)
    want = one.recorder.values[0]
    for k in ('valid_accuracy', 'valid_torchmetrics', 'valid_torcheval'):
        assert ranks[0][k] == ranks[1][k] == pytest.approx(want[k], abs=1e-6), k
    # the three agree with each other: the libraries compute the same accuracy over the same 1,001 samples
    assert want['valid_torchmetrics'] == pytest.approx(want['valid_accuracy'], abs=1e-6)
    assert want['valid_torcheval'] == pytest.approx(want['valid_accuracy'], abs=1e-6)


def test_metric_collection_and_dict_results_give_a_column_per_key():
    "torchmetrics' MetricCollection as `metrics=`: one metric, whose dict result gives `<name>_<key>` columns."
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
    coll = MetricCollection({'acc': MulticlassAccuracy(num_classes=3, average='micro'),
                             'f1': MulticlassF1Score(num_classes=3)})
    from fastfound.learner import Learner, ProgressCB
    b = build()
    learn = Learner(b.model, b.dls, metrics=[('m', coll)], cbs=ProgressCB(bars=False))
    learn.fit(1, lr=0.)
    s = learn.epoch_stats
    assert {'train_m_acc', 'train_m_f1', 'valid_m_acc', 'valid_m_f1'} <= set(s)
    v = learn.validate()
    assert v['m_acc'] == pytest.approx(s['valid_m_acc'], abs=1e-6) and v['m_f1'] == pytest.approx(s['valid_m_f1'], abs=1e-6)
    unnamed = Learner(b.model, b.dls, metrics=coll, cbs=ProgressCB(bars=False))  # a collection alone, unnamed
    unnamed.fit(1, lr=0.)
    assert unnamed.epoch_stats['valid_metric_collection_acc'] == pytest.approx(s['valid_m_acc'], abs=1e-6)
