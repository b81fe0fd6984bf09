"""NumPy (`fastfound.np_foundations`) against PyTorch (`fastfound.matmul`, `fastfound.backprop`),
one thread each.

Rows: each rung of the matmul ladder on the chapter's example, 5x784 @ 784x10 in float32, and `@`
itself; then one training epoch of the MLP 784-50-10 on Fashion-MNIST (batches of 32, hand-written
layers and SGD in both). NumPy and PyTorch alternate in one process, `ROUNDS` rounds; each figure is
a median, and the ratio is the median of the per-round ratios PyTorch / NumPy (above 1: NumPy is
faster).

    python bench/numpy_vs_torch.py           # 11 rounds
    python bench/numpy_vs_torch.py --quick   # 3 rounds, what the 13_numpy notebook runs
    python bench/numpy_vs_torch.py --smoke   # one round, 2,000 images: checks that it runs (tests/)
"""
import os, sys
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')   # before NumPy loads its BLAS
import statistics, time
import numpy as np
import torch
import fastfound.np_foundations as nf
import fastfound.backprop as tb
from fastfound.matmul import matmuls as torch_matmuls
from fastfound.data import FMNIST_STATS, load_fashion_mnist

SMOKE = '--smoke' in sys.argv
ROUNDS = 1 if SMOKE else 3 if '--quick' in sys.argv else 11
MIN_SECS = 0 if SMOKE else 0.02   # each timing repeats a call until it has run this long

def timed(f):
    "Seconds per call of `f`, over enough calls to last `MIN_SECS`."
    n, t0 = 0, time.perf_counter()
    while True:
        f()
        n += 1
        t = time.perf_counter() - t0
        if t >= MIN_SECS: return t / n

def compare(fn_np, fn_torch):
    "Median seconds of each, and the median ratio torch / numpy, alternating which runs first."
    for f in (fn_np, fn_torch): f()   # warm up
    tn, tt = [], []
    for r in range(ROUNDS):
        pair = (fn_np, tn), (fn_torch, tt)
        for f, times in (pair if r % 2 == 0 else pair[::-1]): times.append(timed(f))
    ratio = statistics.median(b / a for a, b in zip(tn, tt))
    return statistics.median(tn), statistics.median(tt), ratio

def ladder():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 784), dtype=np.float32)
    b = rng.standard_normal((784, 10), dtype=np.float32)
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    rows = [(k, lambda f=f: f(a, b), lambda g=torch_matmuls[k]: g(at, bt))
            for k, f in nf.matmuls.items()]
    return rows + [('`@`', lambda: a @ b, lambda: at @ bt)]

def epoch_pair():
    xt, yt, _, _ = load_fashion_mnist()
    if SMOKE: xt, yt = xt[:2000], yt[:2000]
    x = (xt.reshape(len(xt), -1).float() / 255 - FMNIST_STATS[0]) / FMNIST_STATS[1]
    xn, yn = x.numpy(), yt.numpy()
    net = nf.mlp([784, 50, 10], np.random.default_rng(0))
    l1, l2 = net.layers[0], net.layers[2]
    twin = tb.Sequential(tb.Lin(torch.tensor(l1.w), torch.tensor(l1.b), False), tb.Relu(),
                         tb.Lin(torch.tensor(l2.w), torch.tensor(l2.b)))
    lr = 0.01
    loss_n, opt_n = nf.CrossEntropy(), nf.SGD(net, lr)
    loss_t, opt_t = tb.CrossEntropy(), tb.SGD(twin.parameters(), lr)
    rng_n, rng_t = np.random.default_rng(1), np.random.default_rng(1)
    def numpy_epoch(): nf.train_epoch(net, loss_n, opt_n, xn, yn, 32, rng_n)
    def torch_epoch():
        for idx in nf.batches(len(x), 32, rng_t):
            idx = torch.from_numpy(idx)
            loss_t(twin(x[idx]), yt[idx])
            loss_t.backward()
            twin.backward()
            opt_t.step()
    return numpy_epoch, torch_epoch

def fmt(s):
    if s >= 0.1: return f'{s:.2f} s'
    return f'{s*1e3:.2f} ms' if s >= 1e-3 else f'{s*1e6:.1f} us'

if __name__ == '__main__':
    torch.set_num_threads(1)
    print(f'numpy {np.__version__}, torch {torch.__version__}, one thread each, {ROUNDS} rounds\n')
    print('| what | NumPy | PyTorch | PyTorch / NumPy |\n|---|---|---|---|')
    for name, fn, ft in ladder():
        tn, tt, r = compare(fn, ft)
        print(f'| matmul 5x784 @ 784x10, {name} | {fmt(tn)} | {fmt(tt)} | {r:.2f} |', flush=True)
    tn, tt, r = compare(*epoch_pair())
    what = 'one epoch' if not SMOKE else '2,000 images'
    print(f'| {what}, MLP 784-50-10, batches of 32 | {fmt(tn)} | {fmt(tt)} | {r:.2f} |')
