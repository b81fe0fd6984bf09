"""A small training run for the fault-tolerance tests (tests/test_faults.py), run as a subprocess.

    python tests/_train_job.py DIR [--epochs N] [--resume] [--pause-at E,B] [--delay-save E] [--interrupt-at E,B]

Trains an MLP with dropout on 2,000 images of the bundled Fashion-MNIST sample with one-cycle, `EarlyStopping`
and a `Checkpoint` in DIR/ck every epoch. Batches get a little noise drawn from numpy and Python's `random`, so
every generator a checkpoint carries matters to the result. At the end it writes DIR/final.pt and prints DONE.

--pause-at E,B     print PAUSED and sleep (for the test to SIGKILL us) before training batch B of epoch E
--delay-save E     print SAVING and sleep inside the save of last.pt after epoch E, between fsync and rename
--interrupt-at E,B print PAUSED and sleep before batch B of epoch E until SIGINT arrives; then report on the
                   learner's state as JSON (REPORT {...}) and check it still trains
"""
import argparse, json, math, os, random, sys, time
from functools import partial
from pathlib import Path
import numpy as np, torch
from torch import nn
from fastfound.callbacks import EarlyStopping
from fastfound.checkpoint import Checkpoint
from fastfound.files import atomic_save
from fastfound.data import DataLoaders, SAMPLE_PATH, FMNIST_STATS, load_fashion_mnist
from fastfound.hooks import ActivationStats, Hooks, n_hooks
from fastfound.learner import Callback, Learner

p = argparse.ArgumentParser()
p.add_argument('dir', type=Path)
p.add_argument('--epochs', type=int, default=8)
p.add_argument('--resume', action='store_true')
p.add_argument('--min-delta', type=float, default=0.02)
p.add_argument('--pause-at', default=None)
p.add_argument('--delay-save', type=int, default=None)
p.add_argument('--interrupt-at', default=None)
args = p.parse_args()

torch.set_num_threads(1)  # one thread: the same float sums in every process, and no waiting on a busy machine
torch.manual_seed(0); random.seed(0); np.random.seed(0)

xt, yt, xv, yv = load_fashion_mnist(SAMPLE_PATH)
dls = DataLoaders.from_tensors(xt[:2000], yt[:2000], xv[:500], yv[:500], bs=100, device='cpu',
                               norm=FMNIST_STATS, shape=(784,))
model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.25), nn.Linear(32, 10))

class Noise(Callback):
    "A little input noise from numpy and Python's `random`: both generators shape the run."
    def before_batch(self):
        if self.training: self.learn.xb = self.xb + float(np.random.randn()) * 0.05 * random.random()

class PauseAt(Callback):
    "Announce batch B of epoch E on stdout, then sleep: the test kills or interrupts us here."
    def __init__(self, at): self.at = tuple(int(i) for i in at.split(','))
    def before_batch(self):
        if self.training and (self.epoch, self.iter) == self.at:
            print('PAUSED', self.epoch, self.iter, flush=True)
            for _ in range(6000): time.sleep(0.01)  # short sleeps: a SIGINT is handled within 10 ms

class Events(Callback):
    "Record the cleanup events and watch every Linear layer with forward hooks that must be gone after the fit."
    order = 5
    def __init__(self): self.seen = []
    def before_fit(self): self.hooks = Hooks([m for m in self.model.modules() if isinstance(m, nn.Linear)], lambda *a: None)
    def cleanup_fit(self): self.hooks.remove(); self.seen.append('cleanup_fit')
    def cleanup_epoch(self): self.seen.append('cleanup_epoch')
    def cleanup_train(self): self.seen.append('cleanup_train')
    def cleanup_batch(self): self.seen.append('cleanup_batch')

if args.delay_save is not None:
    rename = os.replace
    def slow_replace(tmp, dest):  # the checkpoint's data is on disk; hold the rename for the test to kill us
        if Path(dest).name == 'last.pt' and learn.epoch == args.delay_save:
            print('SAVING', Path(tmp).name, flush=True)
            time.sleep(60)
        return rename(tmp, dest)
    os.replace = slow_replace

learn = Learner(model, dls, lr=0.05, opt_func=partial(torch.optim.SGD, momentum=0.9),
                cbs=[Noise(), EarlyStopping(patience=2, min_delta=args.min_delta), Checkpoint(args.dir/'ck')])
extra = [PauseAt(args.pause_at or args.interrupt_at)] if (args.pause_at or args.interrupt_at) else []
if args.interrupt_at: extra.append(ActivationStats())  # the library's own hooks must go too
events = Events()

try:
    learn.fit_one_cycle(args.epochs, 0.1, cbs=extra + [events], resume=True if args.resume else None)
except KeyboardInterrupt:
    if not args.interrupt_at: raise
    fit_cbs_left = [type(c).__name__ for c in learn.cbs if any(c is e for e in extra) or c is events]
    w = torch.cat([p.detach().flatten() for p in model.parameters()])
    report = dict(seen_tail=events.seen[-4:], hooks=n_hooks(model), fit_cbs_left=fit_cbs_left, finite=bool(w.isfinite().all()),
                  stale_grads=sum(int(p.grad is not None and bool(p.grad.any())) for p in model.parameters()),
                  epoch=learn.epoch, iter=learn.iter)
    before = w.clone()
    learn.fit(1)  # still trains
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    report.update(trains_again=not torch.equal(before, after), valid_loss=learn.epoch_stats['valid_loss'],
                  hooks_after=n_hooks(model))
    print('REPORT', json.dumps(report), flush=True)
    sys.exit(0)

rec, es = learn.recorder, learn.early_stopping
atomic_save(dict(model=model.state_dict(), opt=learn.opt.state_dict(), losses=rec.losses, lrs=rec.lrs,
                 epochs=[v['epoch'] for v in rec.values], valid=[v['valid_loss'] for v in rec.values],
                 es=es.state_dict(), last_epoch=learn.epoch), args.dir/'final.pt')
print('DONE', json.dumps(dict(epochs=[v['epoch'] for v in rec.values], es=es.state_dict())), flush=True)
