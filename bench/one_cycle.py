"""`fastfound fit`'s default CNN, 5 epochs: the CLI's current `OneCycle` callback (torch's `OneCycleLR`, stepped per
batch) against `Learner.fit_one_cycle` (fastfound's `ParamScheduler`), same model, seed, optimizer (AdamW) and peak
learning rate. Prints the test accuracy after the last epoch and the wall and CPU time of each fit.

    python bench/one_cycle.py [--epochs 5] [--lr 1e-2] [--seeds 0] [--threads 2] [--which cli,ours] [--widths 8,16,32,64]

The issue's target: at least 90.5% test accuracy in 5 epochs.
"""
import argparse, resource, time
import torch
from fastfound.callbacks import accuracy
from fastfound.cli import OneCycle, cnn
from fastfound.data import fashion_mnist_dls
from fastfound.learner import Learner
import fastfound.schedule  # Learner.fit_one_cycle

def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime

def run(which, dls, epochs, lr, seed, widths=(8, 16, 32, 64)):
    torch.manual_seed(seed)
    learn = Learner(cnn(widths), dls, opt_func=torch.optim.AdamW, lr=lr, metrics=accuracy)
    t, c = time.perf_counter(), cpu()
    if which == 'cli': learn.fit(epochs, cbs=OneCycle())
    else: learn.fit_one_cycle(epochs, lr)
    return learn.epoch_stats['valid_accuracy'], time.perf_counter() - t, cpu() - c

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--epochs', type=int, default=5); p.add_argument('--lr', type=float, default=1e-2)
    p.add_argument('--seeds', default='0'); p.add_argument('--threads', type=int, default=None)
    p.add_argument('--which', default='cli,ours'); p.add_argument('--widths', default='8,16,32,64')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dls = fashion_mnist_dls(256, device='cpu')
    rows = []
    for seed in map(int, a.seeds.split(',')):
        for which in a.which.split(','):
            acc, wall, c = run(which, dls, a.epochs, a.lr, seed, tuple(map(int, a.widths.split(','))))
            rows.append((which, seed, acc, wall, c))
            print(f'RESULT {which:4} widths {a.widths} lr {a.lr:g} seed {seed}: test accuracy {acc:.4f}  wall {wall:.1f}s  cpu {c:.1f}s', flush=True)
