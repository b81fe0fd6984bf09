"""A Ctrl-C at every line of the cleanup and restore paths (issues 15 and 24). For each path (a fit's resume and its
cleanups, mixed precision, a fit that fails, a cancelled fit, `lr_find`'s sweep, an inference pass), one run records
every line run in the frames where a Ctrl-C matters: those marked `uninterrupted` (the restores, `run_all` and every
cleanup it calls) and any cleanup method, wherever it is called from. Then one run per line delivers SIGINT there,
through the SIGINT handler in place, as a real Ctrl-C would be delivered. After each: a KeyboardInterrupt came out
(none is lost), and nothing is damaged: the learner's callbacks, hooks, grad mode, start_epoch, autocast, open
descriptors and folder locks are as before (and after `lr_find`, its weights and optimizer).

CI runs a sample of the lines, drawn with a fixed seed (`N_CI` per path); `FASTFOUND_FULL_SWEEP=1` runs them all and
prints the count, e.g. `FASTFOUND_FULL_SWEEP=1 pytest tests/test_interrupt_sweep.py -s`."""
import os, random
from pathlib import Path
import pytest, torch
from torch import nn
from _sigint import traced
from fastfound.callbacks import CSVLogger
from fastfound.checkpoint import Checkpoint
from fastfound.data import DataLoaders
from fastfound.events import Callback, CancelFitException
from fastfound.files import FolderLock
from fastfound.hooks import ActivationStats, n_hooks
from fastfound.learner import Learner
from fastfound.interrupts import held
from fastfound.training import GradClip, MixedPrecision

PKG = str(Path(__import__('fastfound').__file__).parent)
FULL = os.environ.get('FASTFOUND_FULL_SWEEP') == '1'
N_CI = 40  # lines per path in CI
CLEANUPS = {'run_all', '_leave', 'release', 'restore', '__exit__', 'cleanup_fit', 'cleanup_epoch',
            'cleanup_train', 'cleanup_validate', 'cleanup_batch'}


def tiny(cbs=None):
    torch.manual_seed(0)
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    dls = DataLoaders.from_tensors(x, y, x[:8], y[:8], bs=8, device='cpu')
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    return Learner(model, dls, lr=0.1, opt_func=lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9), cbs=cbs)

def matters(frame)->bool:
    "Whether a Ctrl-C in `frame` must not damage anything: a cleanup, or code it runs, or a restore."
    return frame.f_code.co_name in CLEANUPS or held(frame)

def run_traced(fn, at=None, hit=None)->list:
    "Run `fn`, recording each line run in the frames that matter; deliver SIGINT at `at` (a line, its n-th run)."
    return [key for key, _ in traced(fn, matters, at, hit)]

def places(lines:list)->list:
    """Each run of each line of fastfound's own code, and a few spread over the rest (torch's code...), as
    `(line, nth run of it)`: a target that does not move when other code takes another path."""
    seen, keyed = {}, []
    for l in lines:
        seen[l] = seen.get(l, 0) + 1
        keyed.append((l, seen[l]))
    ours = [k for k in keyed if k[0][0].startswith(PKG)]
    other = [k for k in keyed if not k[0][0].startswith(PKG)]
    return ours + other[::max(1, len(other) // 20)]

def n_fds()->int: return len(os.listdir('/proc/self/fd'))
def n_opt_hooks(opt): return len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)  # noqa: SLF001

def look(learn, folder, isolated:bool):
    """What must be as it was after any Ctrl-C (the model's mode too, after a pass that puts the learner back; a fit
    interrupted in training leaves it training, as any Ctrl-C in a batch does)."""
    if folder.exists(): FolderLock(folder).acquire().release()  # FolderBusy if a lock was left behind
    csvs = [c for c in learn.cbs if isinstance(c, CSVLogger)]
    return ([type(c).__name__ for c in learn.cbs], n_hooks(learn.model), n_opt_hooks(learn.opt),
            torch.is_grad_enabled(), learn.start_epoch, torch.is_autocast_enabled('cpu'), [c._fd for c in csvs],
            n_fds(), learn.model.training if isolated else None)

def weights(learn): return [p.detach().clone() for p in learn.model.parameters()]


class Mark(Callback):
    "A callback given to one fit only."

class Fail(Callback):
    order = 95  # after Checkpoint saved, CSVLogger took its row
    def after_epoch(self): raise OSError('the disk went away')

class Cancel(Callback):
    def after_batch(self):
        if self.epoch == 1 and self.learn.iter == 1: raise CancelFitException

def fit_resume(tmp):
    learn = tiny(cbs=[Checkpoint(tmp/'ck'), CSVLogger(tmp/'h.csv')])
    learn.fit(1)
    return learn, lambda: learn.fit(2, cbs=[ActivationStats(), Mark(), GradClip()], resume=True)

def mixed_precision(tmp):
    learn = tiny(cbs=[MixedPrecision(torch.bfloat16, device='cpu')])
    learn.fit(1)
    return learn, lambda: learn.fit(1, cbs=Mark())

def fit_fails(tmp):
    learn = tiny(cbs=[Checkpoint(tmp/'ck'), CSVLogger(tmp/'h.csv')])
    learn.fit(1)
    return learn, lambda: learn.fit(2, cbs=[Fail(), ActivationStats()])

def fit_cancelled(tmp):
    learn = tiny(cbs=[Checkpoint(tmp/'ck'), CSVLogger(tmp/'h.csv')])
    learn.fit(1)
    return learn, lambda: learn.fit(3, cbs=[Cancel(), ActivationStats()])

def lr_find(tmp):
    learn = tiny()
    learn.fit(1)
    return learn, lambda: learn.lr_find(num_it=3, show_plot=False)

def inference(tmp):
    learn = tiny()
    learn.fit(1)
    return learn, lambda: learn.get_preds()

def quiet(fn):
    "`fn`, its own error (not a Ctrl-C) swallowed: the paths that end in an error."
    def _f():
        try: fn()
        except Exception: pass
    return _f

PATHS = [fit_resume, mixed_precision, fit_fails, fit_cancelled, lr_find, inference]

@pytest.mark.parametrize('path', PATHS, ids=lambda f: f.__name__)
def test_interrupt_anywhere_in_a_cleanup_or_restore(tmp_path, path, capsys):
    def fresh():
        torch.set_grad_enabled(True)  # a damaged run fails the test, never the next one
        torch.set_autocast_enabled('cpu', False)
        d = tmp_path/f'{len(list(tmp_path.iterdir()))}'
        learn, fn = path(d)
        return learn, quiet(fn), d/'ck'
    fresh()[1]()  # first runs take longer paths (caches, the handler being installed)
    learn, fn, ck = fresh()
    iso = path in (lr_find, inference)
    before = look(learn, ck, iso)
    lines = run_traced(fn)
    assert look(learn, ck, iso) == before
    todo = places(lines)
    assert len({l for l, _ in todo if l[0].startswith(PKG)}) >= 10  # the cleanup code was traced
    if not FULL: todo = random.Random(24).sample(todo, min(N_CI, len(todo)))
    for at in todo:
        learn, fn, ck = fresh()
        before = look(learn, ck, iso)
        w, osd, hit = weights(learn), repr(learn.opt.state_dict()), []
        where = f'{path.__name__}: SIGINT at {at[0][0]}:{at[0][1]} (run {at[1]})'
        try: run_traced(fn, at, hit)
        except KeyboardInterrupt: pass  # held back maybe, never lost
        else:
            assert not hit, f'{where}: the interrupt was lost'
            # torch's or Python's own code may take another path from run to run; fastfound's may not
            assert not at[0][0].startswith(PKG), f'{where}: this run took another path'
        assert look(learn, ck, iso) == before, where
        if path is lr_find:
            assert all(torch.equal(a, b) for a, b in zip(w, weights(learn))), where
            assert repr(learn.opt.state_dict()) == osd, where
    if FULL:
        with capsys.disabled(): print(f'\n{path.__name__}: {len(todo)} places, each interrupted: 0 damaged, 0 lost')
