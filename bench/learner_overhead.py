"""The Learner's cost over a hand-written PyTorch loop (issue 4's benchmark).

Same MLP 784-50-10 (same initial weights), same batches (bs 256, the same random order: the seed is reset before each
epoch), same optimizer (SGD, momentum 0.9). One training epoch each, alternating (and alternating which goes first),
in one process; the ratio of each pair, median over the pairs. Targets: default Learner (ProgressCB in non-terminal
mode) <= 1.05x, a Learner with only what training needs <= 1.03x.

    python bench/learner_overhead.py [--pairs 15] [--threads 1] [--clock cpu]

On a machine shared with other jobs, `--threads 1 --clock cpu` measures CPU time of one thread, which other
processes disturb much less than wall time.
"""
import argparse, contextlib, io, statistics, sys, time
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from fastfound.learner import accuracy
from fastfound.data import DataLoaders, fashion_mnist_dls
from fastfound.learner import Learner

def mlp(): return nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
opt_func = partial(torch.optim.SGD, momentum=0.9)
LR = 0.05

def hand_epoch(model, opt, dl):
    model.train()
    for xb, yb in dl:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()

def main(pairs:int, clock=time.perf_counter):
    torch.manual_seed(0)
    data = fashion_mnist_dls(bs=256, conv=False, device='cpu')
    dls = DataLoaders(data.train, None)                 # training epochs only, for both loops
    init = mlp().state_dict()
    def fresh():
        m = mlp(); m.load_state_dict(init); return m
    hand_model = fresh(); hand_opt = opt_func(hand_model.parameters(), lr=LR)
    contenders = {
        'fastfound Learner, defaults (Device, Metrics, Recorder, Progress non-terminal)': Learner(fresh(), dls, lr=LR, opt_func=opt_func),
        'fastfound Learner, defaults + accuracy on every training batch': Learner(fresh(), dls, lr=LR, opt_func=opt_func, metrics=accuracy),
        'fastfound Learner, only what training needs (no callbacks)': Learner(fresh(), dls, lr=LR, opt_func=opt_func, default_cbs=False),
    }
    sink = io.StringIO()
    def timed(f, seed):
        torch.manual_seed(seed)
        t = clock(); f(); return clock() - t
    hand = lambda: hand_epoch(hand_model, hand_opt, dls.train)
    with contextlib.redirect_stdout(sink):               # ProgressCB prints its one line per epoch here
        for learn in contenders.values(): learn.fit(1)    # warm up
        hand()
        times = {k: [] for k in contenders}; hand_times = {k: [] for k in contenders}
        for i in range(pairs):
            for k, learn in contenders.items():
                fit = lambda: learn.fit(1)
                if i % 2: a, b = timed(fit, i), timed(hand, i)
                else: b, a = timed(hand, i), timed(fit, i)
                times[k].append(a); hand_times[k].append(b)
    n = len(dls.train)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {n} batches of 256 per epoch, {pairs} pairs each, '
          f'clock: {clock.__name__}')
    print(f'| loop | epoch (median) | ratio to hand-written (median of pairs) | overhead per batch |')
    print(f'|---|---|---|---|')
    h = statistics.median(sum(hand_times.values(), []))
    print(f'| hand-written PyTorch loop | {h:.3f} s | 1.00 | 0 |')
    for k in contenders:
        r = statistics.median(a / b for a, b in zip(times[k], hand_times[k]))
        d = statistics.median(a - b for a, b in zip(times[k], hand_times[k]))
        print(f'| {k} | {statistics.median(times[k]):.3f} s | {r:.3f} | {d / n * 1e6:.0f} us |')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pairs', type=int, default=15)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                   help="wall: perf_counter; cpu: process CPU time, steadier on a shared machine")
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    main(a.pairs, time.process_time if a.clock == 'cpu' else time.perf_counter)
