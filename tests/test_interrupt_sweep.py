"""Issue 15, failure 10: a Ctrl-C landing inside a restore. For each restore path (a fit's added callbacks and its
resume, `lr_find`'s sweep, an inference pass), one run records every line executed in the frames
marked `uninterrupted`; then one run per line delivers SIGINT there, through the SIGINT handler in place, as a real
Ctrl-C would be delivered. After each: a KeyboardInterrupt came out, and the learner's callbacks, hooks, grad mode
and start_epoch (and, after lr_find, its weights and optimizer) are as before."""
import signal, sys
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

def run_traced(fn, at=None)->list:
    "Run `fn` with a line tracer on the frames marked `uninterrupted`; deliver SIGINT at the `at`-th such line."
    lines = []
    def local(frame, event, arg):
        if event == 'line':
            lines.append((frame.f_code.co_filename, frame.f_lineno))
            if len(lines) - 1 == at: signal.getsignal(signal.SIGINT)(signal.SIGINT, frame)
        return local
    def call(frame, event, arg): return local if held(frame) else None
    sys.settrace(call)
    try: fn()
    finally:
        sys.settrace(None)
        assert at is None or len(lines) > at, 'this run took another path than the recorded one'
    return lines

def picks(lines:list, n_other:int=20)->list:
    "The first run of each line of fastfound's own code, and `n_other` spread over the rest (torch's code...)."
    first = {}
    for i, l in enumerate(lines): first.setdefault(l, i)
    ours = [i for l, i in first.items() if l[0].startswith(PKG)]
    other = [i for i, (f, _) in enumerate(lines) if not f.startswith(PKG)]
    return sorted(set(ours) | set(other[::max(1, len(other) // n_other)]))

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
    assert len({lines[i] for i in todo if lines[i][0].startswith(PKG)}) >= 10  # the restore code was traced
    for at in todo:
        learn, fn = path(tmp_path/str(at))
        w, osd = weights(learn), repr(learn.opt.state_dict())
        where = f'SIGINT at {lines[at][0]}:{lines[at][1]}'
        with pytest.raises(KeyboardInterrupt): run_traced(fn, at)  # held back maybe, never lost
        assert look(learn) == before, where
        if path is lr_find:
            assert all(torch.equal(a, b) for a, b in zip(w, weights(learn))), where
            assert repr(learn.opt.state_dict()) == osd, where
