"""Training on 2 processes with gloo (issue 10). Each job runs under a hard timeout, so a hang fails the test.

The ranks are started directly with torchrun's environment variables (faster than torchrun's agent, and the test
then controls each process); the CLI test uses torchrun itself.
"""
import math, os, signal, socket, subprocess, sys, time
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parent.parent
JOB = Path(__file__).resolve().parent/'_dist_job.py'
sys.path.insert(0, str(JOB.parent))
from _dist_job import build, weights  # noqa: E402

TIMEOUT = 120


def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def env(r:int, n:int, port:int)->dict:
    return os.environ | dict(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n),
                             MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), OMP_NUM_THREADS='1',
                             PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))


def start(mode:str, out:Path, *args, n:int=2)->list:
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return [subprocess.Popen([sys.executable, str(JOB), mode, str(out), *args], env=env(r, n, port),
                             stdout=open(out/f'out{r}.txt', 'w'), stderr=open(out/f'err{r}.txt', 'w'))
            for r in range(n)]


def finish(ps:list, out:Path, timeout:float=TIMEOUT)->list:
    "Wait for every rank (killing all when the time is up); their exit statuses."
    end = time.monotonic() + timeout
    try:
        for p in ps: p.wait(timeout=max(1., end - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in ps: p.kill()
        pytest.fail(f'a rank hung for {timeout}s: ' + ' | '.join((out/f'err{r}.txt').read_text()[-2000:]
                                                                  for r in range(len(ps))))
    return [p.returncode for p in ps]


def run(mode:str, out:Path, *args)->list:
    "Run a job on 2 ranks; each rank's results."
    codes = finish(start(mode, out, *args), out)
    errs = [(out/f'err{r}.txt').read_text()[-3000:] for r in range(2)]
    assert codes == [0, 0], errs
    return [torch.load(out/f'rank{r}.pt', weights_only=False) for r in range(2)]


@pytest.fixture(scope='module')
def train(tmp_path_factory):
    out = tmp_path_factory.mktemp('train')
    return out, run('train', out)


def same_weights(r0, r1, key, one):
    "The ranks' weights under `key` are identical, and those of one process `one` to float rounding."
    for k, v in weights(one).items():
        assert torch.equal(r0[key][k], r1[key][k]), k
        torch.testing.assert_close(r0[key][k], v, atol=1e-5, rtol=1e-5)


def test_two_ranks_half_batch_equal_one_rank(train):
    "1 rank with batch 32 and 2 ranks with 16 each: the same weights, and identical on both ranks."
    _, (r0, r1) = train
    one = build()
    one.fit(2)
    same_weights(r0, r1, 'weights', one)


def test_grad_accum_no_sync_as_one_process(train):
    "GradAccum's accumulation steps skip DDP's all-reduce; the step's gradients are still everyone's mean."
    _, (r0, r1) = train
    from fastfound.training import GradAccum
    one = build(n_train=480, cbs=[GradAccum(4)])
    one.fit(1)
    same_weights(r0, r1, 'accum', one)


def test_epoch_stats_same_on_every_rank_and_as_one_process(train):
    "Validation on 1,001 samples (501 + 500): loss and accuracy as one process computes them."
    _, (r0, r1) = train
    assert r0['stats'] == r1['stats']
    assert r0['zero'] == r1['zero']
    one = build()
    one.fit(1, lr=0.)
    want = one.recorder.values[0]
    for k in ('train_loss', 'valid_loss', 'train_accuracy', 'valid_accuracy'):
        assert r0['zero'][k] == pytest.approx(want[k], rel=1e-6), k


def test_shards_disjoint_cover_and_change(train):
    _, (r0, r1) = train
    a, b = r0['shards'], r1['shards']
    assert a['len_train'] == b['len_train'] == len(a['train'][0]) == len(b['train'][0]) == 100  # equal steps
    for ea, eb in zip(a['train'], b['train']):
        sa, sb = sum(ea, []), sum(eb, [])
        assert len(sa) == len(sb) == 500 and not set(sa) & set(sb)  # disjoint, as many on each rank
        assert len(set(sa) | set(sb)) == 1000  # all but 1001 % 2
    assert sum(a['train'][0], []) != sum(a['train'][1], []) != sum(a['train'][2], [])  # a new order each epoch
    va, vb = sum(a['valid'], []), sum(b['valid'], [])
    assert sorted(va + vb) == list(range(1001))  # validation: every sample exactly once, no padding


def test_only_rank_0_writes(train):
    out, _ = train
    assert sorted(str(p.relative_to(out/'cwd0')) for p in (out/'cwd0').rglob('*')) == [
        'ck', 'ck/best.pt', 'ck/last.pt', 'history.csv', 'model.pth', 'saved.pth']
    assert list((out/'cwd1').iterdir()) == []
    assert len((out/'cwd0'/'history.csv').read_text().splitlines()) == 3  # a header, one row per epoch
    assert (out/'out0.txt').read_text().count('train_loss') == 3  # a table for each of the 3 fits, on rank 0
    assert 'train_loss' not in (out/'out1.txt').read_text()


def test_a_resume_one_rank_cannot_find_names_that_rank_and_path(train):
    "The ranks share no folder here: rank 0's checkpoint is not in rank 1's; both fail, naming rank 1 and the path."
    _, (r0, r1) = train
    assert r0['missing'] == r1['missing'], (r0.get('missing'), r1.get('missing'))
    assert r0['missing'].startswith(f'resume: ck/last.pt is missing on rank 1 (host {socket.gethostname()})')


def test_lr_find_early_stopping_and_a_cancel_on_one_rank_agree(tmp_path):
    r0, r1 = run('lr_es', tmp_path)
    assert r0['lr_find'] == r1['lr_find'] and r0['lr_find']['restored']
    assert len(r0['lr_find']['lrs']) == 12
    assert r0['early'] == r1['early'] == 2
    assert r0['cancel'] == r1['cancel'] == (0, 3, 0)


def test_resume_after_killing_both_ranks_is_bitwise_equal(tmp_path):
    ref = run('resume', tmp_path/'ref')
    codes = finish(start('resume', tmp_path/'cut', '--kill-at', '1,5'), tmp_path/'cut')
    assert codes == [-signal.SIGKILL] * 2
    got = run('resume', tmp_path/'cut', '--resume')
    for r in range(2):
        for k, v in ref[r]['weights'].items(): assert torch.equal(got[r]['weights'][k], v), (r, k)


def lose_rank_1(tmp_path, sig, timeout=60)->tuple:
    "Start the long job, send `sig` to rank 1 after both trained a batch; rank 0's stderr and seconds to its exit."
    ps = start('kill', tmp_path, '--timeout', str(timeout))
    try:
        end = time.monotonic() + TIMEOUT
        while not all((tmp_path/f'started{r}').exists() for r in range(2)):
            assert time.monotonic() < end and all(p.poll() is None for p in ps), (tmp_path/'err0.txt').read_text()
            time.sleep(0.1)
        ps[1].send_signal(sig)
        t0 = time.monotonic()
        ps[0].wait(timeout=TIMEOUT)
        took = time.monotonic() - t0
    finally:
        for p in ps: p.kill()
        for p in ps: p.wait()
    err = (tmp_path/'err0.txt').read_text()
    assert ps[0].returncode not in (0, None), err
    return err, took, ps[1].pid


def test_sigkill_one_rank_the_other_fails_naming_it(tmp_path):
    err, took, pid = lose_rank_1(tmp_path, signal.SIGKILL)
    print(f'SIGKILL: rank 0 named rank 1 {took:.1f} s after the signal')
    assert f'lost rank 1 (host {socket.gethostname()}, pid {pid}): no longer running' in err, err
    assert took < 30, took


def test_sigstop_one_rank_the_other_names_it_at_the_timeout(tmp_path):
    "A stopped peer is still a process: only its silent heartbeat names it, when the collective times out."
    err, took, pid = lose_rank_1(tmp_path, signal.SIGSTOP, timeout=10)
    print(f'SIGSTOP: rank 0 named rank 1 {took:.1f} s after the signal (collective timeout 10 s)')
    assert f'lost rank 1 (host {socket.gethostname()}, pid {pid}): no heartbeat for' in err, err
    assert 'on rank 0 of 2' in err, err
    assert took < 10 + 8, took  # the collective's timeout, and a few seconds to fail and exit (on a busy machine)


def test_a_cancel_on_one_rank_is_agreed_at_every_meeting(tmp_path):
    "Each case: both ranks stop at the same place, at once (a missed cancel would wait for the 30 s timeout)."
    t0 = time.monotonic()
    r0, r1 = run('cancel', tmp_path, '--timeout', '30')
    assert time.monotonic() - t0 < 60
    # (event, exception, the epoch it ended in, epochs recorded): the same on both ranks
    assert [c[:3] + c[4:5] for c in r0['cancel']] == [c[:3] + c[4:5] for c in r1['cancel']] == [
        ('after_pred', 'CancelEpochException', 1, 1),  # training, before backward: epoch 0 ends, 1 runs
        ('after_loss', 'RuntimeError', 0, 0),  # an error before backward ends the fit on both
        ('after_pred', 'CancelEpochException', 1, 1),  # validation: epoch 0 ends, 1 runs
        ('after_epoch', 'CancelFitException', 0, 1),  # after_epoch (after Checkpoint's place)
        ('before_train', 'CancelTrainException', 1, 2),  # epoch 0 validates without training, 1 runs
        ('before_validate', 'CancelValidateException', 1, 2)]  # epoch 0 trains without validating, 1 runs
    assert r0['cancel'][1][3] == r1['cancel'][1][3] == 2  # at the batch it was raised in
    assert [c[5] for c in r0['cancel']] == ['done', 'rank 1 failed at epoch 0, batch 2'] + ['done'] * 4
    assert [c[5] for c in r1['cancel']] == ['done', 'on rank 1 only'] + ['done'] * 4
    no_time = lambda h: [{k: v for k, v in d.items() if k != 'time'} for d in h]
    assert str([no_time(h) for h in r0['stats']]) == str([no_time(h) for h in r1['stats']])  # one history (nan too)
    assert math.isnan(r0['stats'][4][0]['train_loss'])  # epoch 0 trained on no rank


def test_ranks_draw_differently_and_reproducibly(tmp_path):
    r0, r1 = run('rng', tmp_path)
    for r in (r0, r1): assert r['draws'][0] == r['draws'][1]  # the same seed and world size: the same draws
    assert not set(map(tuple, r0['draws'][0])) & set(map(tuple, r1['draws'][0]))  # no draw shared
    for k, v in r0['weights'].items(): assert torch.equal(v, r1['weights'][k]), k  # still one model


def test_an_empty_shard_names_its_rank(tmp_path):
    "1 validation sample on 2 ranks: rank 0's shard is empty; its error says so, rank 1 names it as lost."
    codes = finish(start('empty', tmp_path, '--timeout', '20'), tmp_path, timeout=60)
    e0, e1 = [(tmp_path/f'err{r}.txt').read_text() for r in range(2)]
    assert codes[0] != 0 and codes[1] != 0, (e0, e1)
    assert 'dls.valid is empty' in e0 and 'on rank 0 of 2' in e0, e0
    assert 'lost rank 0' in e1, e1


def test_torchrun_cli_fit_one_table(tmp_path):
    from fastfound.data import SAMPLE_PATH
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node=2', '-m', 'fastfound',
           'fit', '--epochs', '1', '--data', str(SAMPLE_PATH), '--out', str(tmp_path/'run')]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=os.environ | {'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('train_loss') == 1, r.stdout
    assert r.stdout.count('test accuracy') == 1, r.stdout
    assert len((tmp_path/'run'/'history.csv').read_text().splitlines()) == 2


def test_cli_nproc_2_launches_torchrun(tmp_path):
    "`fastfound fit --nproc 2` starts 2 ranks through torch.distributed.run (which must not see --nproc)."
    from fastfound.data import SAMPLE_PATH
    cmd = [sys.executable, '-m', 'fastfound', 'fit', '--nproc', '2', '--epochs', '1', '--data', str(SAMPLE_PATH),
           '--out', str(tmp_path/'run')]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=os.environ | {'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('train_loss') == 1 and r.stdout.count('test accuracy') == 1, r.stdout
    assert sorted(p.name for p in (tmp_path/'run').iterdir()) == ['confusion.png', 'history.csv', 'loss.png', 'model.pth']
