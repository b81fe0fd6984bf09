"""Test-time augmentation, view by view: the validation accuracy of trained `fastfound fit` models, and its cost.

    python bench/tta_views.py DIR [DIR ...]

Each DIR is the `--out` of a `fastfound fit --valid-pct 0.1 --width W` run: its `model.pth` is loaded and scored on
that run's validation hold-out (the same 6,000 training images every run) as it is, with its mirror image (flip TTA),
and with `flip_shift_views` (the mirror image and the one-pixel shifts of both: ten views), each with the seconds it
took (float32, the default threads). The test set is not touched.
"""
import sys, time
import torch
from fastfound.augment import flip_lr, flip_shift_views
from fastfound.checkpoint import load_learner, read_checkpoint
from fastfound.cli import BACKGROUND, load_data, parser
from fastfound.data import DataLoaders
from fastfound.models import cnn

def scores(d:str, valid)->dict:
    "Validation accuracy of the model in `d` under each TTA choice."
    width = read_checkpoint(f'{d}/model.pth')['meta']['width']
    learn = load_learner(f'{d}/model.pth', cnn(width), DataLoaders(valid, valid))
    acc = lambda p, y: (p.argmax(1) == y).float().mean().item()
    out = {}
    for name, tfms in (('none', []), ('flip', [flip_lr]), ('10 views', flip_shift_views(BACKGROUND))):
        t = time.perf_counter()
        p, y = learn.tta(valid, tfms)
        out[name] = acc(p, y), time.perf_counter() - t
    return out

if __name__ == '__main__':
    a = parser().parse_args(['fit', '--valid-pct', '0.1'])
    a.device = torch.device('cpu')
    valid = load_data(a)[0].valid
    print(f'{len(valid.x):,} validation images')
    for d in sys.argv[1:]:
        s = scores(d, valid)
        print(f'  {d}: ' + ', '.join(f'{k} {v:.4f} ({t:.2f}s)' for k, (v, t) in s.items()))
