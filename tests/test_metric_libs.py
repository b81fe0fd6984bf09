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
