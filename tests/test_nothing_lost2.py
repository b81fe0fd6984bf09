"""Issue 24, "Nothing lost, part 2": one test per defect the second adversarial run found (numbered as there), on a
tiny model. Each failed on the code before the fix. The tests that need a read-only or a full file system mount a
tmpfs in a private mount namespace (`unshare -m`, as root); elsewhere they are skipped."""
import csv, os, re, shutil, signal, subprocess, sys, textwrap
from pathlib import Path
import pytest, torch
from torch import nn
from fastfound.callbacks import CSVLogger
from fastfound.checkpoint import Checkpoint
from fastfound.data import DataLoaders
from fastfound.events import Callback, CancelFitException, run_all
from fastfound.files import CheckpointError, FolderLock
from fastfound.learner import Learner
from fastfound.training import MixedPrecision
from _sigint import code_named, each_line

ROOT = str(Path(__file__).parents[1])


def tiny(n=32, bs=8, **kw):
    "A 10-16-3 MLP on `n` random points: 4 training batches and 2 validation batches an epoch."
    torch.manual_seed(0)
    x, y = torch.randn(n, 10), torch.randint(0, 3, (n,))
    dls = DataLoaders.from_tensors(x, y, x[:16], y[:16], bs=bs, device='cpu')
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    return Learner(model, dls, lr=0.1, **kw)

def epochs_logged(p): return [int(r['epoch']) for r in csv.DictReader(open(p, newline=''))]

def python(code:str, *args, timeout=120, **kw):
    "Run `code` in a fresh Python that imports this checkout's fastfound."
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=os.environ | {'PYTHONPATH': ROOT}, **kw)

def can_mount()->bool:
    if os.geteuid() != 0 or not shutil.which('unshare'): return False
    return subprocess.run(['unshare', '-m', 'true'], capture_output=True).returncode == 0

needs_mount = pytest.mark.skipif(not can_mount(), reason='needs root and unshare -m to mount a tmpfs')

def in_tmpfs(tmp_path, opts:str, code:str, *args):
    "Run `code` with a tmpfs mounted (`opts`) at `tmp_path/'mnt'` (its first argument) in a private mount namespace."
    mnt = tmp_path/'mnt'
    mnt.mkdir()
    sh = f'mount -t tmpfs -o {opts} tmpfs "$1" && shift && exec "$@"'
    return subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c', sh, 'sh', str(mnt),
                           sys.executable, '-c', textwrap.dedent(code), str(mnt), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=os.environ | {'PYTHONPATH': ROOT})


# 1. a Ctrl-C that lands between two cleanups skips the rest; FolderLock.release loses its descriptor
def test_1_a_ctrl_c_between_cleanups_skips_none():
    def make():
        log = []
        return log, lambda: run_all('cleanup_fit', [lambda i=i: log.append(i) for i in range(4)])
    def check(log, got, where):
        assert log == [0, 1, 2, 3], f'{where}: cleanups skipped'
        assert isinstance(got, KeyboardInterrupt), f'{where}: the Ctrl-C was lost ({got!r})'
    assert each_line(make, code_named('run_all', file='events.py'), check) >= 8

def test_1_folder_lock_release_cannot_be_split(tmp_path):
    def make():
        lock = FolderLock(tmp_path/'run').acquire()
        return lock, lock.release
    def check(lock, got, where):
        assert isinstance(got, KeyboardInterrupt), where
        lock.release()  # what a cleanup run again would do
        FolderLock(tmp_path/'run').acquire().release()  # the folder is free (FolderBusy otherwise)
    assert each_line(make, code_named('release', file='files.py'), check) >= 3


# 2. a Ctrl-C raised while a cancelled stage cleans up becomes a note on the cancel, and fit returns normally
class StopFit(Callback):
    def after_batch(self): raise CancelFitException

class CtrlC(Callback):
    "A real SIGINT, through the handler in place, in a cleanup of the epoch or the training phase."
    def __init__(self, event): setattr(self, event, self.ctrl_c)
    def ctrl_c(self): signal.raise_signal(signal.SIGINT)
    def own(self, name): return self.ctrl_c if name in self.__dict__ else super().own(name)

@pytest.mark.parametrize('event', ['cleanup_epoch', 'cleanup_train', 'cleanup_batch'])
def test_2_a_ctrl_c_while_a_cancelled_stage_cleans_up_goes_on(event):
    learn = tiny()
    with pytest.raises(KeyboardInterrupt): learn.fit(2, cbs=[StopFit(), CtrlC(event)])
    assert len(learn.recorder.losses) == 0 and learn.cbs[-1].__class__.__name__ == 'ProgressCB'

def test_2_a_ctrl_c_at_the_end_of_lr_finds_sweep_goes_on():
    learn = tiny()
    learn.fit(1)
    w = [p.detach().clone() for p in learn.model.parameters()]
    learn.add_cbs(CtrlC('cleanup_epoch'))
    with pytest.raises(KeyboardInterrupt): learn.lr_find(num_it=3, show_plot=False)
    assert all(torch.equal(a, p) for a, p in zip(w, learn.model.parameters()))  # put back all the same


# 3. a Ctrl-C between autocast's __enter__ and the flag leaves autocast on for the rest of the process
def test_3_a_ctrl_c_never_leaves_autocast_on():
    def make():
        learn = tiny(cbs=MixedPrecision(torch.bfloat16, device='cpu'))
        return learn, lambda: learn.fit(1)
    def check(learn, got, where):
        on = torch.is_autocast_enabled('cpu')
        torch.set_autocast_enabled('cpu', False)  # whatever happened, not in the tests that follow
        assert isinstance(got, KeyboardInterrupt), where
        assert not on, f'{where}: autocast left on'
    assert each_line(make, code_named('before_batch', '_leave', file='training.py'), check) >= 4


# 4. a crash after epoch 0's CSV row but before the first save: the resumed log reads 0,0,1,2
class DieAt(Callback):
    "A Ctrl-C at the end of epoch `epoch`, at `order`: 50 is after CSVLogger (30), before Checkpoint (90)."
    def __init__(self, epoch, order=50): self.at, self.order = epoch, order
    def after_epoch(self):
        if self.epoch == self.at: raise KeyboardInterrupt

@pytest.mark.parametrize('every,die,order', [(1, 0, 50), (2, 2, 50), (1, 1, 95), (3, 1, 95)],
                         ids=['before the first save', 'between saves', 'between a save and its row',
                              'after a row, no save yet'])
def test_4_csv_matches_the_checkpoint_after_any_crash(tmp_path, every, die, order):
    log, ck = tmp_path/'h.csv', tmp_path/'ck'
    with pytest.raises(KeyboardInterrupt):
        tiny(cbs=[Checkpoint(ck, every=every), CSVLogger(log)]).fit(4, cbs=DieAt(die, order))
    tiny(cbs=[Checkpoint(ck, every=every), CSVLogger(log)]).fit(4, resume=True)
    assert epochs_logged(log) == [0, 1, 2, 3]


# 5. a dangling or looping link at last.pt: resume=True starts from scratch and the first save replaces the link
@pytest.mark.parametrize('target,why', [('gone.pt', 'is a symbolic link to gone.pt, which does not exist'),
                                        ('last.pt', 'cannot be used as a checkpoint: its symbolic links form a loop')],
                         ids=['dangling', 'loop'])
def test_5_a_bad_link_at_last_pt_fails_the_resume(tmp_path, target, why):
    ck = tmp_path/'ck'
    ck.mkdir()
    os.symlink(target, ck/'last.pt')
    learn = tiny(cbs=Checkpoint(ck))
    with pytest.raises(CheckpointError, match=re.escape(f'{ck/"last.pt"} ') + why): learn.fit(2, resume=True)
    assert os.readlink(ck/'last.pt') == target and learn.recorder.losses == []


# 6. a CSV row that hits ENOSPC: the partial row stays and a raw [Errno 28] escapes
FULL = '''
import os, sys
from pathlib import Path
from test_nothing_lost2 import tiny
from fastfound.callbacks import CSVLogger
from fastfound.events import Callback
log = Path(sys.argv[1])/'h.csv'
learn = tiny(cbs=CSVLogger(log))
learn.fit(1)
row = log.read_bytes().splitlines(keepends=True)[-1]
n = log.stat().st_size
with open(log, 'ab') as f:  # whole rows up to 5 bytes short of a page: the next row needs a new page
    while n + 2 * len(row) < 4091: n += f.write(row)
    f.write(b'0' * (4091 - n - len(row)) + row)
before = log.read_bytes()
class Fill(Callback):  # the disk fills up during the epoch, after the checks before it
    def before_epoch(self):
        with open(Path(sys.argv[1])/'filler', 'wb', buffering=0) as f:
            try:
                while True: f.write(b'x' * 4096)
            except OSError: pass
try: learn.fit(1, cbs=Fill())
except OSError as e: print(type(e).__name__, e)
print('unchanged' if log.read_bytes() == before else 'changed', len(before))
'''

@needs_mount
def test_6_full_disk_mid_row_leaves_no_partial_row(tmp_path):
    r = in_tmpfs(tmp_path, 'size=256k', f'import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n' + FULL)
    err, state = r.stdout.splitlines()[-2:]
    assert err.startswith('OSError') and 'h.csv: the disk is full' in err, r.stdout + r.stderr
    assert state.startswith('unchanged 4091'), r.stdout + r.stderr


# 7. CSVLogger reads its whole target: /dev/stdout blocks, /dev/zero eats memory, a link loop fails after an epoch
FIT_TO = '''
import sys
from test_nothing_lost2 import tiny
from fastfound.callbacks import CSVLogger
learn = tiny(cbs=CSVLogger(sys.argv[1]))
try: learn.fit(1)
except ValueError as e: print(e, '| batches trained:', len(learn.recorder.losses), file=sys.stderr)
'''

@pytest.mark.parametrize('target', ['/dev/stdout', '/dev/zero'])
def test_7_a_device_log_is_refused_before_training(target):
    code = f'import resource, sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n' + FIT_TO
    code = code.replace('import sys\n', 'import sys\nresource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n', 1)
    try: r = python(code, target, timeout=60)  # its stdout a pipe, which nobody writes to
    except subprocess.TimeoutExpired: pytest.fail(f'CSVLogger({target!r}) blocked')
    assert f'{target} is a ' in r.stderr and 'not a regular file' in r.stderr, r.stderr
    assert r.stderr.strip().endswith('batches trained: 0'), r.stderr

def test_7_a_link_loop_is_refused_before_training(tmp_path):
    os.symlink('h.csv', tmp_path/'h.csv')
    learn = tiny(cbs=CSVLogger(tmp_path/'h.csv'))
    with pytest.raises(ValueError, match='h.csv cannot be used as a log: its symbolic links form a loop'):
        learn.fit(1)
    assert learn.recorder.losses == []


# 8. learn.fit inside a fit is not refused: it wipes the Recorder, leaves n_epochs wrong, and a Checkpoint's folder busy
class FitAgain(Callback):
    order = 50  # after the Recorder took the epoch
    def __init__(self, how): self.how = how
    def after_epoch(self): self.how(self.learn)

@pytest.mark.parametrize('how', [lambda l: l.fit(1), lambda l: l.lr_find(num_it=3, show_plot=False)],
                         ids=['fit', 'lr_find'])
def test_8_a_fit_inside_a_fit_is_refused(tmp_path, how):
    learn = tiny(cbs=Checkpoint(tmp_path/'ck'))
    with pytest.raises(RuntimeError, match='fit was called while this learner is fitting.*call fit again once'):
        learn.fit(3, cbs=FitAgain(how))
    assert [v['epoch'] for v in learn.recorder.values] == [0] and learn.n_epochs == 3
    learn.fit(2)  # the folder is free, the learner as good as new
    assert [v['epoch'] for v in learn.recorder.values] == [0, 1]


# 9. fit(lr=0.5, resume=True) trains at the checkpoint's rate while learn.lr says 0.5
class LRs(Callback):
    run_valid = False
    def before_fit(self): self.lrs = []
    def after_batch(self): self.lrs.append(self.opt.param_groups[0]['lr'])

def test_9_the_fits_lr_wins_over_the_checkpoints(tmp_path):
    tiny(cbs=Checkpoint(tmp_path/'ck')).fit(1)
    shutil.copytree(tmp_path/'ck', tmp_path/'ck2')
    learn, spy = tiny(cbs=Checkpoint(tmp_path/'ck')), LRs()
    learn.fit(3, lr=0.5, resume=True, cbs=spy)
    assert learn.lr == 0.5 and len(spy.lrs) == 8 and set(spy.lrs) == {0.5}
    learn, spy = tiny(cbs=Checkpoint(tmp_path/'ck2')), LRs()
    learn.fit(3, resume=True, cbs=spy)  # no lr: the checkpoint's
    assert set(spy.lrs) == {0.1}


# 10. errors that hide their cause: a read-only mount, out of memory while serialising
RO = '''
import sys, torch
from pathlib import Path
from fastfound.files import atomic_save
try: atomic_save({'w': torch.ones(3)}, Path(sys.argv[1])/'x.pt')
except OSError as e: print(type(e).__name__, e)
'''

@needs_mount
def test_10_read_only_mount_names_the_cause(tmp_path):
    r = in_tmpfs(tmp_path, 'ro,size=64k', RO)
    assert 'x.pt: the file system is read-only' in r.stdout and '.tmp' not in r.stdout, r.stdout + r.stderr

OOM = '''
import resource, sys, torch
from fastfound.files import atomic_save
t = torch.ones(64 << 18)  # 64 MiB
vm = next(int(l.split()[1]) << 10 for l in open('/proc/self/status') if l.startswith('VmSize'))
resource.setrlimit(resource.RLIMIT_AS, (vm + (32 << 20),) * 2)  # room for half of it
try: atomic_save({'w': t}, sys.argv[1])
except Exception as e: print(type(e).__name__, e)
'''

def test_10_out_of_memory_while_serialising_names_the_cause(tmp_path):
    r = python(OOM, tmp_path/'big.pt')
    assert r.stdout.startswith(f'MemoryError cannot write {tmp_path/"big.pt"}: out of memory while serialising'), \
        r.stdout + r.stderr
    assert not (tmp_path/'big.pt').exists()

def test_10_a_float_loss_is_a_clear_error():
    learn = tiny(loss_func=lambda preds, yb: 0.5)
    with pytest.raises(TypeError, match='the loss must be a scalar tensor, got a float'): learn.fit(1)

@pytest.mark.parametrize('f,err,msg', [(lambda p, y: 0.5, TypeError, 'returned a float (0.5), not a tensor'),
                                       (lambda p, y: 'good', TypeError, "returned a str ('good'), not a tensor"),
                                       (lambda p, y: (p.argmax(1) == y).float(), ValueError,
                                        'returned a tensor of shape (8,), not a scalar')],
                         ids=['float', 'str', 'per-sample'])
def test_10_a_bad_metric_is_named(f, err, msg):
    def hits(preds, yb): return f(preds, yb)
    with pytest.raises(err, match=re.escape(f"metric 'hits' {msg}")): tiny(metrics=hits).fit(1)
