"""Does EMA pay on `fastfound fit`'s recipe? Validation accuracy with and without `--ema`, same seeds.

    python bench/ema.py                              # the default recipe, 3 seeds, EMA 0.999 vs off
    python bench/ema.py --epochs 4 --decays 0 0.999 0.99 --seeds 0 1 2
    python bench/ema.py --per-class 1000 --epochs 4  # a stratified 10,000-image part of the training set

Each run is a fresh `fastfound fit --valid-pct 0.1 --seed S [--ema D]` process (the hold-out is the same images every
run); the variants take turns within each seed, so a change in the machine's load falls on all of them. It prints the
validation accuracy (with the recipe's TTA) of each run, and the mean per variant. Tune on validation: the test
accuracy each run also prints is not looked at here.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time


def run(seed:int, decay:float, epochs:int|None, extra:list)->tuple:
    "One `fastfound fit`: its validation accuracy and wall time."
    out = tempfile.mkdtemp(prefix='ema-bench-')
    cmd = [sys.executable, '-m', 'fastfound', 'fit', '--valid-pct', '0.1', '--seed', str(seed), '--out', out,
           '--ema', str(decay), *(['--epochs', str(epochs)] if epochs else []), *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_WAIT_POLICY='PASSIVE'))
    if r.returncode: sys.exit(f'{" ".join(cmd)} failed:\n{r.stderr[-2000:]}')
    acc = float(re.search(r'validation accuracy: ([0-9.]+)', r.stdout).group(1))
    return acc, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--decays', type=float, nargs='+', default=[0., 0.999], help='0: no EMA')
    p.add_argument('--epochs', type=int, default=None, help="default: the recipe's")
    p.add_argument('--per-class', type=int, default=None,
                   help='train on the first N training images of each class (make_sample), not all 60,000')
    a, extra = p.parse_known_args()
    if a.per_class:
        from fastfound.data import make_sample
        d = tempfile.mkdtemp(prefix='ema-bench-data-')
        make_sample(d, n_train=a.per_class, n_test=100)
        extra += ['--data', d]
        print(f'training set: {10 * a.per_class:,} images ({a.per_class} a class), in {d}', flush=True)
    res = {d: [] for d in a.decays}
    for s in a.seeds:
        for d in a.decays:
            acc, t = run(s, d, a.epochs, extra)
            res[d].append(acc)
            load = os.getloadavg()[0]
            print(f'seed {s}  ema {d:g}  valid acc {acc:.4f}  {t:.0f}s wall  load {load:.1f}', flush=True)
    for d, accs in res.items():
        print(f'ema {d:g}: mean {statistics.mean(accs):.4f}  ' + ' '.join(f'{x:.4f}' for x in accs))


if __name__ == '__main__': main()
