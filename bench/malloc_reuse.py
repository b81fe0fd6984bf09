"""A/B: a training step of `fastfound fit`'s CNN with and without `fastfound.cli.reuse_memory` (glibc `mallopt`).

    python bench/malloc_reuse.py [--rounds 5] [--steps 40] [--width 24]

The setting is per process, so each measurement is a fresh child process, A and B alternating; it prints the
median milliseconds per step (batch 256, channels-last, AdamW, the default threads) and the median B/A ratio,
with the 1-minute load average.
"""
import argparse, os, statistics, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = '''
import sys, time, torch
from torch import nn
from fastfound.cli import reuse_memory
from fastfound.models import cnn
if sys.argv[1] == '1': assert reuse_memory()
torch.manual_seed(0)
m = cnn(int(sys.argv[3])).to(memory_format=torch.channels_last)
opt, lf = torch.optim.AdamW(m.parameters(), 1e-3), nn.CrossEntropyLoss()
x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
def step():
    lf(m(x), y).backward()
    opt.step()
    opt.zero_grad()
for _ in range(5): step()
t = time.perf_counter()
for _ in range(int(sys.argv[2])): step()
print((time.perf_counter() - t) / int(sys.argv[2]) * 1e3)
'''

def once(reuse:bool, steps:int, width:int)->float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    r = subprocess.run([sys.executable, '-c', CHILD, str(int(reuse)), str(steps), str(width)],
                       capture_output=True, text=True, env=env, check=True)
    return float(r.stdout.split()[-1])

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--steps', type=int, default=40)
    ap.add_argument('--width', type=int, default=24)
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    base, reuse = [], []
    for _ in range(a.rounds):
        base.append(once(False, a.steps, a.width))
        reuse.append(once(True, a.steps, a.width))
    ratio = statistics.median(r / b for r, b in zip(reuse, base))
    print(f'cnn width {a.width}, bs 256: glibc defaults {statistics.median(base):.1f} ms/step, reuse_memory '
          f'{statistics.median(reuse):.1f} ms/step; median ratio {ratio:.2f} '
          f'(load average {load0:.2f} -> {os.getloadavg()[0]:.2f})')
