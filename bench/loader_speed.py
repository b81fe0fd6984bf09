"""Per-batch cost of `TensorLoader` against PyTorch's `DataLoader` over in-memory Fashion-MNIST (issue 4's benchmark).

bs 256, shuffled, one epoch per measurement, no model: just producing the batches. The two are timed alternately
(and alternating which goes first) in one process; the speed-up is the median of the per-pair ratios. Target: >= 5x
against `DataLoader(TensorDataset(x, y), batch_size=256, shuffle=True)`.

    python bench/loader_speed.py [--pairs 7] [--clock cpu]
"""
import argparse, statistics, time

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from fastfound.data import fashion_mnist_dls, TensorLoader

def main(pairs:int, clock):
    torch.manual_seed(0)
    d = fashion_mnist_dls(bs=256, conv=False, device='cpu').train
    x, y = d.x, d.y
    ds = TensorDataset(x, y)
    contenders = {
        'fastfound TensorLoader (randperm + index_select)': TensorLoader(x, y, 256, shuffle=True, device='cpu'),
        'DataLoader(TensorDataset, batch_size=None, sampler=BatchSampler)':
            DataLoader(ds, batch_size=None, sampler=BatchSampler(RandomSampler(ds), 256, drop_last=False)),
    }
    base = DataLoader(ds, batch_size=256, shuffle=True)
    def epoch(dl):
        t = clock(); n = sum(1 for _ in dl); return (clock() - t) / n
    for dl in (base, *contenders.values()): epoch(dl)        # warm up
    ts = {k: [] for k in contenders}; bs = {k: [] for k in contenders}
    for i in range(pairs):
        for k, dl in contenders.items():
            if i % 2: a, b = epoch(dl), epoch(base)
            else: b, a = epoch(base), epoch(dl)
            ts[k].append(a); bs[k].append(b)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {len(x):,} samples of 784 floats, bs 256, '
          f'{pairs} pairs, clock: {clock.__name__}')
    print('| batch source | per batch (median) | speed-up over the default DataLoader (median of pairs) |')
    print('|---|---|---|')
    print(f'| DataLoader(TensorDataset, batch_size=256, shuffle=True) | {statistics.median(sum(bs.values(), [])) * 1e6:.0f} us | 1.0x |')
    for k in contenders:
        r = statistics.median(b / a for a, b in zip(ts[k], bs[k]))
        print(f'| {k} | {statistics.median(ts[k]) * 1e6:.0f} us | {r:.1f}x |')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pairs', type=int, default=7)
    p.add_argument('--clock', choices=['wall', 'cpu'], default='wall')
    a = p.parse_args()
    main(a.pairs, time.process_time if a.clock == 'cpu' else time.perf_counter)
