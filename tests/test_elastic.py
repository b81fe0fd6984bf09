"""Elastic restarts (issue 22): torchrun restarts the workers after one is SIGKILLed mid-epoch, and they continue from
the last checkpoint by themselves (`distrib_ctx`'s `AutoResume`). Each launch runs under a hard timeout."""
import os, subprocess, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_distributed import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
JOB = Path(__file__).resolve().parent/'_dist_job.py'


def torchrun(out:Path, *args)->subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes=1', '--nproc-per-node=2', '--max-restarts=1',
           '--rdzv-backend=c10d', f'--rdzv-endpoint=127.0.0.1:{free_port()}', '--monitor-interval=0.5',
           str(JOB), 'resume', str(out), *args]
    env = os.environ | {'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def test_a_killed_worker_is_restarted_and_resumes_to_the_same_weights(tmp_path):
    ref = torchrun(tmp_path/'ref')
    cut = torchrun(tmp_path/'cut', '--elastic-kill', '1,5')  # rank 1 dies in epoch 1, before the first restart
    assert 'resumed from' not in ref.stderr
    assert cut.stderr.count('resumed from') == 2 and 'after restart 1: at epoch 1' in cut.stderr, cut.stderr[-3000:]
    for r in range(2):
        a, b = (torch.load(d/f'rank{r}.pt', weights_only=False)['weights'] for d in (tmp_path/'ref', tmp_path/'cut'))
        for k, v in a.items(): assert torch.equal(b[k], v), (r, k)  # bit for bit
    rows = (tmp_path/'cut'/'history.csv').read_text().splitlines()
    assert len(rows) == 4 and [r.split(',')[0] for r in rows[1:]] == ['0', '1', '2']  # one row per epoch
    ref_rows = (tmp_path/'ref'/'history.csv').read_text().splitlines()
    assert rows[0] == ref_rows[0] and rows[0].endswith(',time')
    assert [r.rsplit(',', 1)[0] for r in rows] == [r.rsplit(',', 1)[0] for r in ref_rows]  # all but the time
