"""Small jobs for tests/test_distributed.py, one process per rank, started with torchrun's environment variables.

    python tests/_dist_job.py MODE OUT [--kill-at E,B] [--resume]

Every rank runs the same job inside `learn.distrib_ctx(timeout=60)` and saves what it saw to OUT/rank{R}.pt:
  train   2 epochs of an MLP (global batch 32) with a CSV log, checkpoints, `save` and `export`, each rank in its
          own working directory OUT/cwd{R}; then one epoch at lr=0 (the start weights' validation figures); then
          the shards of a loader over `arange` for 3 epochs; an epoch with `GradAccum(4)` (DDP's `no_sync`); a
          resume of the checkpoint, which only rank 0's folder holds
  lr_es   `lr_find`; `EarlyStopping` that stops after 2 of 5 epochs; a `CancelFitException` on rank 1 only
  resume  3 epochs with dropout, momentum and a `Checkpoint` in OUT/ck; --kill-at E,B: SIGKILL itself after
          training batch B of epoch E; --resume: continue from OUT/ck/last.pt
  kill    a long fit; writes OUT/started{R} after its first batch (for the test to SIGKILL or SIGSTOP a rank)
  cancel  a cancel raised on rank 1 only: before its backward pass, in validation, in after_epoch, before_train,
          before_validate
  rng     what each rank draws in its first batches, twice from the same seed
  empty   a validation set of 1 sample: one rank's shard is empty
  shard   2 epochs with FSDP2 (`distrib_ctx(shard=True)`), then `export`; then 1 epoch with a `Checkpoint` in
          OUT/ck (sharded), copied to OUT/ck0, and a resume of it for epoch 1; then a
          2 epochs with `Checkpoint(load_best=True)` in OUT/ck_max that counts epoch 0 as the best
  tb      2 epochs with a `TensorBoardCallback('runs')`, each rank in its own working directory OUT/cwd{R}
--elastic-kill E,B (resume): rank 1 SIGKILLs itself after batch B of epoch E, but only before torchrun's first
restart; the job is then run by torchrun with --max-restarts and resumes by itself.
--shard (resume): the model sharded by FSDP2, its checkpoints written by torch.distributed.checkpoint.
`build` is also what the tests run in one process, for the single-process figures.
"""
import argparse, os, shutil, signal, sys
from functools import partial
from pathlib import Path
import torch
from torch import nn
from fastfound.callbacks import CSVLogger, EarlyStopping
from fastfound.checkpoint import Checkpoint
from fastfound.data import DataLoaders, TensorLoader
from fastfound.distributed import restart_count
from fastfound.events import (Callback, CancelEpochException, CancelFitException, CancelTrainException,
                              CancelValidateException)
from fastfound.learner import Learner, ProgressCB, accuracy
from fastfound.ranks import broadcast, rank
from fastfound.state import set_seed
from fastfound.training import GradAccum
import fastfound.distributed  # noqa: F401 (Learner.distrib_ctx)


def build(n_train=512, bs=32, cbs=(), dropout=0., momentum=0., n_valid=1001):
    "An MLP learner on a seeded synthetic problem: `n_train` training and `n_valid` validation samples."
    set_seed(0)
    x = torch.randn(n_train + n_valid, 8)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    dls = DataLoaders(TensorLoader(x[:n_train], y[:n_train], bs, shuffle=True, device='cpu'),
                      TensorLoader(x[n_train:], y[n_train:], 100, device='cpu'))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))
    return Learner(model, dls, lr=0.2, opt_func=partial(torch.optim.SGD, momentum=momentum), metrics=accuracy,
                   cbs=[ProgressCB(bars=False), *cbs])


def weights(learn): return {k: v.clone() for k, v in learn.model.state_dict().items()}


def shards(n=1001, bs=10, epochs=3):
    "The labels (= sample numbers) each epoch's batches of a training and a validation loader hold on this rank."
    torch.set_rng_state(broadcast(torch.get_rng_state()))
    t = TensorLoader(torch.zeros(n, 1), torch.arange(n), bs, shuffle=True, device='cpu')
    v = TensorLoader(torch.zeros(n, 1), torch.arange(n), bs, device='cpu')
    return dict(train=[[b[1].tolist() for b in t] for _ in range(epochs)], valid=[b[1].tolist() for b in v],
                len_train=len(t), len_valid=len(v))


class At(Callback):
    "Call `f` after training batch `b` of epoch `e`."
    order = 100
    def __init__(self, e, b, f): self.e, self.b, self.f = e, b, f
    def after_batch(self):
        if self.training and (self.epoch, self.iter) == (self.e, self.b): self.f()


class Raise(Callback):
    "Raise `exc` on rank 1 at `event` of epoch `e`: at batch `b` of the training (or validation) phase."
    order = 100  # after the rest (Checkpoint's barrier included)
    def __init__(self, event, exc, e=0, b=2, training=True):
        self.exc, self.e, self.b, self.tr = exc, e, b, training
        setattr(self, event, self._maybe)
    def _maybe(self):
        if rank() != 1 or self.epoch != self.e: return
        if self.b is None or (self.iter == self.b and self.training == self.tr):
            raise self.exc('on rank 1 only')


class Draw(Callback):
    "Record what this rank draws (torch.rand) after the forward pass of each training batch."
    def __init__(self): self.draws = []
    def after_pred(self):
        if self.training: self.draws.append(torch.rand(2).tolist())


class Touch(Callback):
    def __init__(self, fn): self.fn = fn
    def after_batch(self):
        if not self.fn.exists(): self.fn.touch()


def main():
    p = argparse.ArgumentParser()
    p.add_argument('mode')
    p.add_argument('out', type=Path)
    p.add_argument('--kill-at', default=None)
    p.add_argument('--resume', action='store_true')
    p.add_argument('--elastic-kill', default=None)
    p.add_argument('--timeout', type=float, default=60)
    p.add_argument('--shard', action='store_true')
    a = p.parse_args()
    r = int(os.environ['RANK'])
    res = {}
    if a.mode == 'train':
        cwd = a.out/f'cwd{r}'
        cwd.mkdir(parents=True, exist_ok=True)
        os.chdir(cwd)
        learn = build(cbs=[CSVLogger('history.csv'), Checkpoint('ck')])
        with learn.distrib_ctx(timeout=60):
            learn.fit(2)
            res['stats'] = learn.recorder.values
            res['weights'] = weights(learn)
            learn.save('saved.pth')
            learn.export('model.pth')
            zero = build()
            with zero.distrib_ctx(timeout=60): zero.fit(1, lr=0.)
            res['zero'] = zero.recorder.values[0]
            res['shards'] = shards()
            acc = build(n_train=480, cbs=[GradAccum(4)])  # 15 batches: 3 steps of 4 and a flush of 3
            with acc.distrib_ctx(timeout=60): acc.fit(1)
            res['accum'] = weights(acc)
            try: learn.fit(3, resume=True)  # ck/last.pt is in rank 0's folder only
            except FileNotFoundError as e: res['missing'] = str(e)
    elif a.mode == 'lr_es':
        learn = build()
        with learn.distrib_ctx(timeout=60):
            w0 = weights(learn)
            sug = learn.lr_find(num_it=12, show_plot=False)
            res['lr_find'] = dict(sug=tuple(sug), losses=learn.lr_finder.losses, lrs=learn.lr_finder.lrs,
                                  restored=all(torch.equal(w0[k], v) for k, v in weights(learn).items()))
            learn.fit(5, cbs=EarlyStopping(min_delta=100., patience=1))
            res['early'] = len(learn.recorder.values)
            def cancel():
                if rank() == 1: raise CancelFitException()
            learn.fit(3, cbs=At(0, 3, cancel))
            res['cancel'] = (learn.epoch, learn.iter, len(learn.recorder.values))
    elif a.mode == 'resume':
        cbs = [Checkpoint(a.out/'ck', save_best=False), CSVLogger(a.out/'history.csv')]
        die = lambda: os.kill(os.getpid(), signal.SIGKILL)
        if a.kill_at: cbs.append(At(*map(int, a.kill_at.split(',')), die))
        if a.elastic_kill and restart_count() == 0 and r == 1:
            cbs.append(At(*map(int, a.elastic_kill.split(',')), die))
        learn = build(cbs=cbs, dropout=0.2, momentum=0.9)
        with learn.distrib_ctx(timeout=60, shard=a.shard):
            learn.fit(3, resume=True if a.resume else None)
        res['weights'] = weights(learn)
    elif a.mode == 'kill':
        learn = build(n_train=4096, cbs=[Touch(a.out/f'started{r}')])
        with learn.distrib_ctx(timeout=a.timeout): learn.fit(1000)
    elif a.mode == 'cancel':
        res['cancel'] = []
        cases = (('after_pred', CancelEpochException, 2, True), ('after_loss', RuntimeError, 2, True),
                 ('after_pred', CancelEpochException, 2, False), ('after_epoch', CancelFitException, None, None),
                 ('before_train', CancelTrainException, None, None),
                 ('before_validate', CancelValidateException, None, None))
        for ev, exc, b, tr in cases:
            learn = build(cbs=[Raise(ev, exc, b=b, training=tr)])
            with learn.distrib_ctx(timeout=a.timeout):
                try:
                    learn.fit(2)
                    what = 'done'
                except RuntimeError as e: what = str(e).split(' (')[0]
            res['cancel'].append((ev, exc.__name__, learn.epoch, learn.iter, len(learn.recorder.values), what))
            res.setdefault('stats', []).append(learn.recorder.values)
    elif a.mode == 'rng':
        res['draws'] = []
        for _ in range(2):
            d = Draw()
            learn = build(cbs=[d], dropout=0.5)
            with learn.distrib_ctx(timeout=a.timeout): learn.fit(2)
            res['draws'].append(d.draws)
            res['weights'] = weights(learn)
    elif a.mode == 'empty':
        learn = build(n_valid=1)
        with learn.distrib_ctx(timeout=a.timeout): learn.fit(1)
    elif a.mode == 'shard':
        learn = build(momentum=0.9)
        with learn.distrib_ctx(timeout=a.timeout, shard=True):
            learn.fit(2)
            res['stats'] = learn.recorder.values
            res['weights'] = weights(learn)
            res['type'] = type(learn.model).__name__
            learn.export(a.out/'model.pth')
        part = build(momentum=0.9, cbs=[Checkpoint(a.out/'ck')])  # 1 epoch, saved sharded
        with part.distrib_ctx(timeout=a.timeout, shard=True): part.fit(1)
        res['saved'] = sorted(f.name for f in (a.out/'ck').iterdir())
        if r == 0: shutil.copytree(a.out/'ck', a.out/'ck0')  # epoch 0's, for the one-process test
        more = build(momentum=0.9, cbs=[Checkpoint(a.out/'ck')])  # resumed: epoch 1
        with more.distrib_ctx(timeout=a.timeout, shard=True): more.fit(2, resume=True)
        res['resumed'] = weights(more)
        res['left'] = sorted(f.name for f in (a.out/'ck').iterdir())
        res['part'] = weights(part)
        # the highest validation loss is the best here: epoch 0's, loaded from its shards over epoch 1's weights
        ck = Checkpoint(a.out/'ck_max', monitor='valid_loss', mode='max', load_best=True)
        best = build(momentum=0.9, cbs=[ck])
        with best.distrib_ctx(timeout=a.timeout, shard=True): best.fit(2)
        res['best'], res['best_epoch'] = weights(best), best.checkpoint.best_epoch
    elif a.mode == 'tb':
        cwd = a.out/f'cwd{r}'
        cwd.mkdir(parents=True, exist_ok=True)
        os.chdir(cwd)
        from fastfound.tensorboard import TensorBoardCallback
        learn = build(cbs=[TensorBoardCallback('runs')])
        with learn.distrib_ctx(timeout=a.timeout): learn.fit(2)
        res['stats'] = learn.recorder.values
    else: sys.exit(f'unknown mode {a.mode}')
    torch.save(res, a.out/f'rank{r}.pt')


if __name__ == '__main__':
    main()
    # as `python -m fastfound` does on a torchrun rank: skip C++'s exit-time teardown, where gloo's threads
    # abort a finished rank now and then ("terminate called without an active exception", see 11d)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
