"""Elastic restarts (issue 22): torchrun restarts the workers after one is SIGKILLed mid-epoch, and they continue from
the last checkpoint by themselves (`distrib_ctx`'s `AutoResume`). Each launch runs under a hard timeout."""
import os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
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


@pytest.mark.parametrize('shard', [False, True], ids=['ddp', 'sharded'])
def test_a_killed_worker_is_restarted_and_resumes_to_the_same_weights(tmp_path, shard):
    more = ['--shard'] if shard else []
    ref = torchrun(tmp_path/'ref', *more)
    cut = torchrun(tmp_path/'cut', '--elastic-kill', '1,5', *more)  # rank 1 dies in epoch 1, before the first restart
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


def cli(out:Path, *args)->subprocess.Popen:
    from fastfound.data import SAMPLE_PATH
    cmd = [sys.executable, '-m', 'fastfound', 'fit', '--nproc', '2', '--max-restarts', '1', '--epochs', '2',
           '--data', str(SAMPLE_PATH), '--out', str(out), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'})


def workers(pid:int)->dict:
    "The torchrun workers under process `pid`: {local rank: pid}."
    kids = {}
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try: kids.setdefault(int((d/'stat').read_text().rsplit(')', 1)[1].split()[1]), []).append(int(d.name))
            except (OSError, IndexError): pass
    out, todo = {}, [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            todo.append(k)
            try: env = dict(v.split('=', 1) for v in (Path('/proc')/str(k)/'environ').read_text().split('\0') if '=' in v)
            except OSError: continue
            if 'LOCAL_RANK' in env and 'TORCHELASTIC_RESTART_COUNT' in env: out[int(env['LOCAL_RANK'])] = k
    return out


@pytest.mark.parametrize('shard', [False, True], ids=['ddp', 'sharded'])
def test_cli_max_restarts_a_killed_worker_ends_with_the_same_history(tmp_path, shard):
    more = ['--shard'] if shard else []
    ref = cli(tmp_path/'ref', *more)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-3000:]
    run = cli(tmp_path/'cut', *more)
    try:
        end = time.monotonic() + 240
        while not (tmp_path/'cut'/'ck'/'last.pt').exists():  # epoch 0 is saved: kill rank 1 in epoch 1
            assert run.poll() is None and time.monotonic() < end, run.stderr.read()[-3000:]
            time.sleep(0.05)
        os.kill(workers(run.pid)[1], signal.SIGKILL)
        out, err = run.communicate(timeout=300)
    finally: run.kill()
    assert run.returncode == 0, err[-3000:]
    assert 'after restart 1: at epoch 1' in err, err[-3000:]
    rows, ref_rows = ((d/'history.csv').read_text().splitlines() for d in (tmp_path/'cut', tmp_path/'ref'))
    assert len(rows) == 3 and [r.rsplit(',', 1)[0] for r in rows] == [r.rsplit(',', 1)[0] for r in ref_rows]
