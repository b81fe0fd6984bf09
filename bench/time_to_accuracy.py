"""Time to accuracy: the main job, `fastfound fit`, from a fresh process to its printed test accuracy, for 3 seeds.

    python bench/time_to_accuracy.py [--seeds 0,1,2] [--threads N] [--target 0.925] [--budget 60] [-- FIT_ARGS...]

Each seed runs `fastfound fit --seed S --out TMP FIT_ARGS` in a new Python process (imports, data loading and
training all counted) and the clock stops when the line `test accuracy: X` is printed. With `-- --valid-pct P` it
also reports the validation accuracy (the recipe is chosen on that, not on the test accuracy). It prints each run, then the
median and worst accuracy and wall time, and the 1-minute load average before and after each run: this machine's cores
may be shared, and the time means little without the load next to it. `--threads N` sets `OMP_NUM_THREADS`
(torch's intra-op threads) for the child; by default the child chooses.
The goal (issue 14): median and worst test accuracy >= 92.5% within 60 s on 2 quiet cores.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIT = 'import sys; from fastfound.cli import main; sys.exit(main(sys.argv[1:]))'

def run_fit(seed:int, args:list, threads:int|None=None)->dict:
    "Run one `fastfound fit` in a fresh process; return its test accuracy, wall seconds and load averages."
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    if threads: env['OMP_NUM_THREADS'] = str(threads)
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, '-c', FIT, 'fit', '--seed', str(seed), '--out', out, *args]
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        acc, wall, lines, valid, train = None, None, [], None, None
        for line in p.stdout:
            lines.append(line)
            m = re.match(r'test accuracy: ([0-9.]+)', line)
            if m and acc is None: acc, wall = float(m.group(1)), time.perf_counter() - t0
            if m := re.match(r'validation accuracy: ([0-9.]+)', line): valid = float(m.group(1))
            if m := re.match(r'training: ([0-9.]+)s', line): train = float(m.group(1))
        rc = p.wait()
    if rc or acc is None: raise RuntimeError(f'fastfound fit --seed {seed} failed (exit {rc}):\n' + ''.join(lines[-20:]))
    return dict(seed=seed, acc=acc, wall=wall, valid=valid, train=train, load=(load0, os.getloadavg()[0]),
                log=lines)

def summary(runs:list, target:float, budget:float)->str:
    "Median and worst accuracy and wall time over `runs`, and whether they meet the goal."
    accs, walls = [r['acc'] for r in runs], [r['wall'] for r in runs]
    ok = min(accs) >= target and max(walls) <= budget
    return (f'median {statistics.median(accs):.4f}, worst {min(accs):.4f} test accuracy; wall median '
            f'{statistics.median(walls):.1f}s, worst {max(walls):.1f}s; goal >= {target:.3f} in <= {budget:g}s: '
            f'{"met" if ok else "not met"} here')

if __name__ == '__main__':
    argv = sys.argv[1:]
    fit_args = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', default='0,1,2', help='comma-separated seeds (default: %(default)s)')
    ap.add_argument('--threads', type=int, default=None, help='OMP_NUM_THREADS for the child')
    ap.add_argument('--target', type=float, default=0.925, help='test accuracy to reach')
    ap.add_argument('--budget', type=float, default=60., help='seconds allowed')
    ap.add_argument('--verbose', action='store_true', help="print each run's full output")
    a = ap.parse_args(argv)
    print(f'fastfound fit {" ".join(fit_args)}; threads: {a.threads or "default"}; cpus: {os.cpu_count()}', flush=True)
    runs = []
    for s in (int(s) for s in a.seeds.split(',')):
        r = run_fit(s, fit_args, a.threads)
        runs.append(r)
        if a.verbose: print(''.join(r['log']), end='')
        v = f'validation accuracy {r["valid"]:.4f}, ' if r['valid'] is not None else ''
        print(f'  seed {s}: {v}test accuracy {r["acc"]:.4f} in {r["wall"]:.1f}s wall, {r["train"]:.1f}s training '
              f'(load average {r["load"][0]:.2f} -> {r["load"][1]:.2f})', flush=True)
    print(summary(runs, a.target, a.budget))
