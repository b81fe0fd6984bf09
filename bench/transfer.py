"""Transfer learning on Fashion-MNIST (issue 13): is a body trained on five classes worth reusing for the other five?

The CLI's CNN (width 16) is trained for 2 epochs on every training image of classes 0-4 (T-shirt..Coat). Then, for
N training images of classes 5-9 (Sandal..Ankle boot) and 2 seeds, four ways of training on them, each for 5 epochs,
scored on the test images of classes 5-9 (no tuning was done on them):
- fine_tune: a new head, `fine_tune(4, 1e-2)` (fastai's: 1 frozen epoch, then 4 with the body at lr/100);
- fine_tune_mult10: the same with the body at lr/10;
- pretrained_all: a new head, everything trained from the start, `fit_one_cycle(5, 1e-2)`;
- scratch: a fresh model, `fit_one_cycle(5, 1e-2)`.

    python bench/transfer.py 200      # N = 200 images (about 3 minutes on 2 cores)
"""
import sys, time, torch, torch.nn.functional as F
from torch import nn
from fastfound.all import *
torch.set_num_threads(2)
full = fashion_mnist_dls(bs=256, conv=True, device='cpu')
xtr, ytr, xte, yte = full.train.x, full.train.y, full.valid.x, full.valid.y
a, b = ytr < 5, ytr >= 5
n_small = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
def subset(x, y, m, n=None, seed=0):
    i = m.nonzero()[:, 0]
    if n: i = i[torch.randperm(len(i), generator=torch.Generator().manual_seed(seed))[:n]]
    return x[i], y[i]
def dls_of(x, y, xv, yv, bs): return DataLoaders(TensorLoader(x, y, bs, shuffle=True, device='cpu'),
                                             TensorLoader(xv, yv, 512, device='cpu'))
def model(): return cnn(16)
def split(m): return [list(m[:-2].parameters()), list(m[-2:].parameters())]
def head(m):
    m[-2] = nn.Conv2d(m[-2].in_channels, 10, 3, 2, 1)
    return m
xa, ya = subset(xtr, ytr, a); xva, yva = subset(xte, yte, yte < 5)
xv, yv = subset(xte, yte, yte >= 5)
torch.manual_seed(0)
pre = Learner(model(), dls_of(xa, ya, xva, yva, 256), F.cross_entropy, opt_func=torch.optim.AdamW,
              metrics=accuracy)
pre.fit_one_cycle(2, 1e-2)
sd = pre.model.state_dict()
res = {'fine_tune': [], 'fine_tune_mult10': [], 'pretrained_all': [], 'scratch': []}
for seed in range(2):
    xs, ys = subset(xtr, ytr, b, n_small, seed)
    torch.manual_seed(seed)
    m = model(); m.load_state_dict(sd); m = head(m)
    l = Learner(m, dls_of(xs, ys, xv, yv, 64), F.cross_entropy, opt_func=torch.optim.AdamW, metrics=accuracy,
                splitter=split)
    l.fine_tune(4, 1e-2)
    res['fine_tune'].append(l.epoch_stats['valid_accuracy'])
    torch.manual_seed(seed)
    m = model(); m.load_state_dict(sd); m = head(m)
    l = Learner(m, dls_of(xs, ys, xv, yv, 64), F.cross_entropy, opt_func=torch.optim.AdamW, metrics=accuracy,
                splitter=split)
    l.fine_tune(4, 1e-2, lr_mult=10)
    res['fine_tune_mult10'].append(l.epoch_stats['valid_accuracy'])
    torch.manual_seed(seed)
    m = model(); m.load_state_dict(sd); m = head(m)
    l = Learner(m, dls_of(xs, ys, xv, yv, 64), F.cross_entropy, opt_func=torch.optim.AdamW, metrics=accuracy)
    l.fit_one_cycle(5, 1e-2)
    res['pretrained_all'].append(l.epoch_stats['valid_accuracy'])
    torch.manual_seed(seed)
    l = Learner(model(), dls_of(xs, ys, xv, yv, 64), F.cross_entropy, opt_func=torch.optim.AdamW,
                metrics=accuracy)
    l.fit_one_cycle(5, 1e-2)
    res['scratch'].append(l.epoch_stats['valid_accuracy'])
print(f'{n_small} images of classes 5-9; test accuracy on their 5,000 test images, seeds 0 and 1:')
for k, v in res.items(): print(f'{k:>17}: ' + ' '.join(f'{a:.4f}' for a in v))
