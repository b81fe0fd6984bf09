"""The per-batch cost of `ParamScheduler`: its `before_batch` alone, timed over many calls, for SGD (lr and momentum)
and Adam (lr and betas[0]), one and four parameter groups; and the Python memory it allocates per batch
(tracemalloc), which should be nothing but the `betas` tuple Adam needs.

    python bench/param_scheduler.py [--n 100000]
"""
import argparse, time, tracemalloc
import torch
from torch import nn
from fastfound.data import DataLoaders
from fastfound.learner import Learner
from fastfound.schedule import ParamScheduler, combined_cos

def scheduler(opt_func, n_groups, n_steps):
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(n_groups)])
    opt = lambda ps, lr: opt_func([{'params': m.parameters()} for m in model], lr=lr)
    learn = Learner(model, DataLoaders([(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))]), opt_func=opt, default_cbs=False)
    learn.create_opt(); learn.n_epochs = 1
    ps = ParamScheduler({'lr': combined_cos(0.25, 1e-3, 1e-2, 1e-7), 'mom': combined_cos(0.25, 0.95, 0.85, 0.95)}, n_steps=n_steps)
    learn.add_cbs(ps); ps.before_fit()
    return ps

def per_call(ps, n):
    ps.i = 0
    t = time.perf_counter()
    for _ in range(n): ps.before_batch()
    return (time.perf_counter() - t) / n

def alloc_per_call(ps, n=1000):
    ps.i = 0; ps.before_batch()
    tracemalloc.start(); s0 = tracemalloc.take_snapshot()
    for _ in range(n): ps.before_batch()
    s1 = tracemalloc.take_snapshot(); tracemalloc.stop()
    return sum(d.size_diff for d in s1.compare_to(s0, 'filename')) / n

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--n', type=int, default=100_000); a = p.parse_args()
    for name, opt_func in (('SGD momentum', lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9)), ('Adam', torch.optim.Adam)):
        for groups in (1, 4):
            ps = scheduler(opt_func, groups, a.n)
            t = sorted(per_call(ps, a.n) for _ in range(5))[2]
            print(f'{name:13} {groups} group(s): {t*1e6:.2f} us per batch; net Python memory per batch: {alloc_per_call(ps):.0f} bytes')
