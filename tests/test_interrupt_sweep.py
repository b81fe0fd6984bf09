"""Issue 15, failure 10: a Ctrl-C landing inside a restore. For each restore path (a fit's added callbacks and its
resume, `lr_find`'s sweep, an inference pass), one run records every line executed in the frames
marked `uninterrupted`; then one run per line delivers SIGINT there, through the SIGINT handler in place, as a real
Ctrl-C would be delivered. After each: a KeyboardInterrupt came out, and the learner's callbacks, hooks, grad mode
and start_epoch (and, after lr_find, its weights and optimizer) are as before."""
import gc, signal, sys
from pathlib import Path
import pytest, torch
from torch import nn
from fastfound.checkpoint import Checkpoint
from fastfound.data import DataLoaders
from fastfound.hooks import ActivationStats, n_hooks
from fastfound.events import Callback
from fastfound.learner import Learner
from fastfound.state import held

PKG = str(Path(__import__('fastfound').__file__).parent)


def tiny(cbs=None):
    torch.manual_seed(0)
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    dls = DataLoaders.from_tensors(x, y, x[:8], y[:8], bs=8, device='cpu')
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    return Learner(model, dls, lr=0.1, opt_func=lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9), cbs=cbs)

def run_traced(fn, at=None, hit=None)->list:
    "Run `fn` with a line tracer on the frames marked `uninterrupted`; deliver SIGINT at `at`, a line and how many"
    " times it has run, as `picks` gives it (appending to `hit` when it is delivered)."
    lines, seen = [], {}
    def local(frame, event, arg):
        if event == 'line':
            key = (frame.f_code.co_filename, frame.f_lineno)
            lines.append(key)
            seen[key] = seen.get(key, 0) + 1
            if at is not None and hit is not None and not hit and (key, seen[key]) == at:
                hit.append(key)
                signal.getsignal(signal.SIGINT)(signal.SIGINT, frame)
        return local
    def call(frame, event, arg): return local if held(frame) else None
    gc.disable()  # no cyclic collection inside the traced run: its finalizers (`Hooks.__del__`) would
                  # make one run's path differ from the next
    sys.settrace(call)
    try: fn()
    finally:
        sys.settrace(None)
        gc.enable()
    return lines

def picks(lines:list, n_other:int=20)->list:
    "The first run of each line of fastfound's own code, and `n_other` spread over the rest (torch's code...),"
    " each as `(line, nth run of it)`: a target that does not move when other code takes another path."
    seen, keyed = {}, []
    for l in lines:
        seen[l] = seen.get(l, 0) + 1
        keyed.append((l, seen[l]))
    ours = [k for k in keyed if k[0][0].startswith(PKG) and k[1] == 1]
    other = [k for k in keyed if not k[0][0].startswith(PKG)]
    return ours + other[::max(1, len(other) // n_other)]

def look(learn):
    return ([type(c).__name__ for c in learn.cbs], n_hooks(learn.model), torch.is_grad_enabled(), learn.start_epoch,
            learn.model.training)

def weights(learn): return [p.detach().clone() for p in learn.model.parameters()]


class Mark(Callback):
    "A callback given to one fit only."

def fit_resume(tmp):
    learn = tiny(cbs=Checkpoint(tmp/'ck'))
    learn.fit(1)
    return learn, lambda: learn.fit(2, cbs=[ActivationStats(), Mark()], resume=True)

def lr_find(tmp):
    learn = tiny()
    learn.fit(1)
    return learn, lambda: learn.lr_find(num_it=3, show_plot=False)

def inference(tmp):
    learn = tiny()
    learn.fit(1)
    return learn, lambda: learn.get_preds()

@pytest.mark.parametrize('path', [fit_resume, lr_find, inference], ids=lambda f: f.__name__)
def test_interrupt_anywhere_in_a_restore(tmp_path, path):
    path(tmp_path/'warm')[1]()  # first runs take longer paths (caches, the handler being installed)
    learn, fn = path(tmp_path)
    before = look(learn)
    lines = run_traced(fn)
    assert look(learn) == before
    todo = picks(lines)
    assert len({l for l, _ in todo if l[0].startswith(PKG)}) >= 10  # the restore code was traced
    for at in todo:
        learn, fn = path(tmp_path/f'{len(list(tmp_path.iterdir()))}')
        w, osd, hit = weights(learn), repr(learn.opt.state_dict()), []
        where = f'SIGINT at {at[0][0]}:{at[0][1]} (run {at[1]})'
        try: run_traced(fn, at, hit)
        except KeyboardInterrupt: pass  # held back maybe, never lost
        else:
            assert not hit, f'{where}: the interrupt was lost'
            # torch's or Python's own code may take another path from run to run; fastfound's may not
            assert not at[0][0].startswith(PKG), f'{where}: this run took another path'
        assert look(learn) == before, where
        if path is lr_find:
            assert all(torch.equal(a, b) for a, b in zip(w, weights(learn))), where
            assert repr(learn.opt.state_dict()) == osd, where
