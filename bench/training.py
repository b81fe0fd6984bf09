"""What the training callbacks cost and save, per batch, on Fashion-MNIST in memory (batch 256).

    python bench/training.py

Each comparison alternates the variants in one process, one short epoch (20 batches) each per round, many rounds,
and reports the medians: time per batch, and the ratio to the baseline. This machine's two cores are shared, and
PyTorch's worker threads slow down badly when another process takes a core, so it runs on one thread
(`python bench/training.py 2` for two).
  0. NaNGuard's own work per batch (its `after_backward`, timed alone with torch.utils.benchmark) on the MLP and CNN.
  1. NaNGuard on the MLP 784-50-10: off, loss only, loss and gradients.
  2. MixedPrecision bfloat16 against float32: the MLP, a small stride-2 CNN, a wide MLP 784-1024-1024-10.
  3. GradAccum(4) against stepping every batch, on the MLP.
"""
import statistics, sys, time
from pathlib import Path
import torch
from torch import nn
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fastfound.learner import DeviceCB
from fastfound.data import DataLoaders, TensorLoader, load_fashion_mnist, FMNIST_STATS
from fastfound.learner import Learner
from fastfound.training import GradAccum, MixedPrecision, NaNGuard

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
xt, yt, *_ = load_fashion_mnist()

def dls(n, shape):
    return DataLoaders(TensorLoader(xt[:n], yt[:n], 256, shuffle=True, device='cpu', norm=FMNIST_STATS, shape=shape), None)

def mlp(): return nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
def wide(): return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
def cnn():
    def conv(ni, nf): return nn.Sequential(nn.Conv2d(ni, nf, 3, 2, 1), nn.ReLU())
    return nn.Sequential(conv(1, 8), conv(8, 16), conv(16, 32), conv(32, 64), nn.Conv2d(64, 10, 3, 2, 1), nn.Flatten())

def compare(title, make_model, data, variants, rounds=25):
    "Time one epoch of each variant per round, alternating; print median time per batch and ratio to the first."
    learns = {k: Learner(make_model(), data, lr=0.01, default_cbs=False, cbs=[DeviceCB('cpu'), *cbs()])
              for k, cbs in variants.items()}
    for l in learns.values(): l.fit(1)  # warm up
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, l in learns.items():
            t = time.perf_counter(); l.fit(1); times[k].append(time.perf_counter() - t)
    nb, base = len(data.train), list(variants)[0]
    print(f'\n{title} ({nb} batches, median of {rounds})')
    for k, ts in times.items():
        ratio = statistics.median(a / b for a, b in zip(ts, times[base]))
        extra = (statistics.median(ts) - statistics.median(times[base])) / nb * 1e6
        print(f'  {k:28s} {statistics.median(ts) / nb * 1e3:7.3f} ms/batch  ratio {ratio:5.3f}  ({extra:+.0f} us/batch)')

def guard_cost(make_model, shape):
    "Microseconds NaNGuard.after_backward takes, with the real gradients of one batch in place."
    from torch.utils.benchmark import Timer
    import torch.nn.functional as F
    learn = Learner(make_model(), dls(256, shape), default_cbs=False, cbs=[DeviceCB('cpu')])
    xb, yb = next(iter(learn.dls.train))
    learn.loss = F.cross_entropy(learn.model(xb), yb); learn.loss.backward()
    res = {}
    for k, g in (('loss only', NaNGuard(grads=False)), ('loss and gradients', NaNGuard())):
        g.learn = learn; g.before_fit()
        res[k] = Timer('g.after_backward()', globals={'g': g}).blocked_autorange(min_run_time=1).median * 1e6
    n = sum(1 for _ in learn.model.parameters())
    print(f'  {make_model.__name__:4s} ({n} parameter tensors): ' + ', '.join(f'{k} {v:.1f} us' for k, v in res.items()))

if __name__ == '__main__':
    flat, img = (784,), (1, 28, 28)
    n = 20 * 256
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s)')
    print('\nNaNGuard.after_backward alone, per batch')
    guard_cost(mlp, flat); guard_cost(cnn, img)
    compare('NaNGuard, MLP 784-50-10', mlp, dls(n, flat),
            {'no guard': lambda: [], 'guard, loss only': lambda: [NaNGuard(grads=False)],
             'guard, loss and gradients': lambda: [NaNGuard()]}, rounds=40)
    compare('bfloat16 autocast, MLP 784-50-10', mlp, dls(n, flat),
            {'float32': lambda: [], 'bfloat16': lambda: [MixedPrecision()]})
    compare('bfloat16 autocast, CNN 1-8-16-32-64-10 stride 2', cnn, dls(n, img),
            {'float32': lambda: [], 'bfloat16': lambda: [MixedPrecision()]}, rounds=7)
    compare('bfloat16 autocast, MLP 784-1024-1024-10', wide, dls(n, flat),
            {'float32': lambda: [], 'bfloat16': lambda: [MixedPrecision()]}, rounds=7)
    compare('GradAccum, MLP 784-50-10', mlp, dls(n, flat),
            {'step every batch': lambda: [], 'GradAccum(4)': lambda: [GradAccum(4)]})
