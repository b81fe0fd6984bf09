"""Fault tolerance: a training process killed mid-epoch or mid-save, Ctrl-C and a raising callback in a fit.

The subprocess tests run tests/_train_job.py (a 10-epoch one-cycle run on 2,000 Fashion-MNIST images with
EarlyStopping and a Checkpoint every epoch) and compare with an uninterrupted run, bit for bit."""
import json, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from torch import nn
from fastfound.checkpoint import Checkpoint
from fastfound.files import CheckpointError, load_file, read_checkpoint
from fastfound.data import DataLoaders
from fastfound.hooks import ActivationStats, Hooks, n_hooks
from fastfound.learner import Callback, Learner

JOB = Path(__file__).parent/'_train_job.py'
EPOCHS = 10  # early stopping ends the reference run before epoch 6 (best after epoch 3)


def start(d:Path, *args):
    return subprocess.Popen([sys.executable, str(JOB), str(d), '--epochs', str(EPOCHS), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

def run(d:Path, *args)->str:
    p = start(d, *args)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    return out

def wait_for(p, word:str, timeout:float=120)->str:
    "Read the job's output until a line starts with `word`; return that line."
    t0, seen = time.time(), []
    for line in p.stdout:
        seen.append(line)
        if line.startswith(word): return line
        if time.time() - t0 > timeout: break
    p.kill(); raise AssertionError(f'the job never printed {word}:\n' + ''.join(seen))

def kill9(p):
    p.send_signal(signal.SIGKILL); p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL

def equal(a, b)->bool:
    "Exact equality of nested dicts, lists and tensors."
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(map(equal, a, b))
    return a == b

def assert_same_run(got:dict, ref:dict):
    for k in ref: assert equal(got[k], ref[k]), f'{k} differs from the uninterrupted run'


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "The uninterrupted run."
    d = tmp_path_factory.mktemp('ref')
    run(d)
    ref = load_file(d/'final.pt')
    assert ref['epochs'] == [0, 1, 2, 3, 4, 5] and ref['es']['stopped'] and ref['es']['best_epoch'] == 3  # the setting the tests rely on
    return ref


def test_sigkill_mid_epoch_then_resume(reference, tmp_path):
    # killed in the middle of epoch 5: last.pt holds epoch 4, with the early stopper one epoch into its patience
    # and one-cycle half way through
    p = start(tmp_path, '--pause-at', '5,7')
    wait_for(p, 'PAUSED')
    kill9(p)
    assert not (tmp_path/'final.pt').exists()
    ck = read_checkpoint(tmp_path/'ck'/'last.pt', ('train',))
    assert ck['epoch'] == 4
    assert ck['cbs']['EarlyStopping']['wait'] == 1 and not ck['cbs']['EarlyStopping']['stopped']
    assert 0 < ck['cbs']['ParamScheduler']['i'] < ck['cbs']['ParamScheduler']['n']
    out = run(tmp_path, '--resume')
    assert 'stopping after epoch 5' in out  # early stopping went on counting from where it was
    got = load_file(tmp_path/'final.pt')
    assert got['epochs'] == [0, 1, 2, 3, 4, 5]  # the Recorder's history came back too
    assert_same_run(got, reference)  # weights, optimizer, losses, learning rates: bit for bit


def test_sigkill_during_save(reference, tmp_path):
    # killed after last.pt of epoch 2 is written and fsynced to its temporary file, before the rename
    p = start(tmp_path, '--delay-save', '2')
    line = wait_for(p, 'SAVING')
    tmp_file = tmp_path/'ck'/line.split()[1]
    assert tmp_file.exists() and tmp_file.stat().st_size > 0
    kill9(p)
    ck = read_checkpoint(tmp_path/'ck'/'last.pt', ('train',))  # the previous checkpoint: intact, and it loads
    assert ck['epoch'] == 1
    assert tmp_file.exists()  # the killed save's leftover...
    run(tmp_path, '--resume')
    assert not tmp_file.exists()  # ...is swept away by the next fit
    assert_same_run(load_file(tmp_path/'final.pt'), reference)


def test_sigint_mid_fit(tmp_path):
    "A real Ctrl-C (SIGINT) in the middle of a batch."
    p = start(tmp_path, '--interrupt-at', '1,5')
    wait_for(p, 'PAUSED')
    p.send_signal(signal.SIGINT)
    rep = json.loads(wait_for(p, 'REPORT').split(' ', 1)[1])
    p.wait(timeout=60)
    assert p.returncode == 0
    assert rep['seen_tail'] == ['cleanup_batch', 'cleanup_train', 'cleanup_epoch', 'cleanup_fit']
    assert rep['hooks'] == 0 and rep['hooks_after'] == 0  # the hooks went with the fit
    assert rep['fit_cbs_left'] == []  # callbacks given to this fit were taken off again
    assert (rep['epoch'], rep['iter']) == (1, 5)
    assert rep['finite'] and rep['trains_again'] and rep['valid_loss'] < 2.3


# --- in-process: the same faults raised by a callback ---------------------------------------------------------

def tiny_learner(n=256):
    torch.manual_seed(0)
    x, y = torch.randn(n, 10), torch.randint(0, 3, (n,))
    dls = DataLoaders.from_tensors(x, y, x[:64], y[:64], bs=32, device='cpu')
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    return Learner(model, dls, lr=0.1)

class Watch(Callback):
    "Forward hooks on every layer for the fit, and a log of the events that ran."
    def __init__(self): self.log = []
    def before_fit(self): self.hooks = Hooks(list(self.model.children()), lambda *a: None); self.log.append('before_fit')
    def after_fit(self): self.log.append('after_fit')
    def cleanup_fit(self): self.hooks.remove(); self.log.append('cleanup_fit')
    def cleanup_epoch(self): self.log.append('cleanup_epoch')
    def cleanup_batch(self): self.log.append('cleanup_batch')

def raise_in(event:str, exc:BaseException, when):
    "A callback whose method `event` raises `exc` when `when(learn)` is true."
    def f(self):
        if when(self.learn): raise exc
    return type('Raise', (Callback,), {event: f})()

mid_batch = lambda l: l.training and (l.epoch, l.iter) == (1, 3)
FAULTS = {'before_batch': mid_batch, 'after_backward': mid_batch, 'after_epoch': lambda l: l.epoch == 1}
# A fault after backward must not leave that batch's gradients in the parameters for the next fit's first step:
# the Learner clears them when a batch ends with an exception.

@pytest.mark.parametrize('exc', [KeyboardInterrupt(), RuntimeError('a callback failed')], ids=['KeyboardInterrupt', 'RuntimeError'])
@pytest.mark.parametrize('event', ['before_batch', 'after_backward', 'after_epoch'])
def test_interrupt_or_raise_mid_fit(exc, event):
    learn = tiny_learner()
    watch = Watch()
    with pytest.raises(type(exc)): learn.fit(3, cbs=[watch, ActivationStats(), raise_in(event, exc, FAULTS[event])])
    assert watch.log[-2:] == ['cleanup_epoch', 'cleanup_fit'] and 'after_fit' not in watch.log
    if event != 'after_epoch': assert watch.log[-3] == 'cleanup_batch'
    assert n_hooks(learn.model) == 0  # Watch's and ActivationStats' hooks are gone
    assert [type(c).__name__ for c in learn.cbs] == ['DeviceCB', 'MetricsCB', 'Recorder', 'ProgressCB']
    assert learn.epoch == 1
    # the model is usable: finite, it answers, and it trains on exactly as a fresh learner with its weights would
    assert all(p.isfinite().all() for p in learn.model.parameters())
    learn.model.eval()
    with torch.no_grad(): assert learn.model(torch.randn(2, 10)).shape == (2, 3)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    twin = tiny_learner()
    twin.model.load_state_dict(learn.model.state_dict()); twin.create_opt(); twin.opt.load_state_dict(learn.opt.state_dict())
    torch.manual_seed(1); learn.fit(1)
    torch.manual_seed(1); twin.fit(1)
    assert not all(torch.equal(a, p) for a, p in zip(w0, learn.model.parameters()))
    for a, b in zip(learn.model.parameters(), twin.model.parameters()):
        assert torch.equal(a, b), 'gradients left over from the interrupted batch leaked into the next fit'


def test_resume_refuses_bad_files(tmp_path):
    learn = tiny_learner()
    learn.fit(1, cbs=Checkpoint(tmp_path/'ck'))
    data = (tmp_path/'ck'/'last.pt').read_bytes()
    (tmp_path/'cut.pt').write_bytes(data[:len(data)//3])
    (tmp_path/'notes.txt').write_text('epoch 3, loss 0.4\n')
    cases = [('cut.pt', 'truncated or corrupted'), ('notes.txt', 'not a file written by torch.save')]
    for name, why in cases:
        with pytest.raises(CheckpointError, match=why) as e: tiny_learner().fit(2, resume=tmp_path/name)
        assert str(tmp_path/name) in str(e.value)
    other = tiny_learner(); other.model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)); other.opt = None
    with pytest.raises(CheckpointError, match='different model') as e: other.fit(2, resume=tmp_path/'ck'/'last.pt')
    assert 'other shapes: 0.weight is (16, 10) there, (8, 10) here' in str(e.value)
