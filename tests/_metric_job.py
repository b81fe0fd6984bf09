"""One rank of tests/test_metric_libs.py: a fit at lr=0 with torchmetrics' and torcheval's accuracy objects on 2 gloo
ranks; saves the epoch's figures to OUT/rank{R}.pt. `build` is also what the test runs in one process."""
import os, sys
from functools import partial
from pathlib import Path
import torch
from torch import nn
from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import Learner, ProgressCB, accuracy
from fastfound.state import set_seed
import fastfound.distributed  # noqa: F401 (Learner.distrib_ctx)


def build():
    "An MLP on a seeded problem: 512 training and 1,001 validation samples (an odd count: uneven shards)."
    from torcheval.metrics import MulticlassAccuracy as TE
    from torchmetrics.classification import MulticlassAccuracy as TM
    set_seed(0)
    x = torch.randn(512 + 1001, 8)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    dls = DataLoaders(TensorLoader(x[:512], y[:512], 32, shuffle=True, device='cpu'),
                      TensorLoader(x[512:], y[512:], 100, device='cpu'))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    metrics = [accuracy, ('torchmetrics', TM(num_classes=3, average='micro')), ('torcheval', TE())]
    return Learner(model, dls, opt_func=partial(torch.optim.SGD), metrics=metrics, cbs=ProgressCB(bars=False))


if __name__ == '__main__':
    out = Path(sys.argv[1])
    learn = build()
    with learn.distrib_ctx(timeout=60): learn.fit(1, lr=0.)
    torch.save(learn.recorder.values[0], out/f'rank{os.environ["RANK"]}.pt')
