"""A/B in one process: the cost of a training step of `fastfound fit`'s CNN under variants of its recipe.

    python bench/step_variants.py [--rounds 7] [--steps 15] [--threads N] [--only 'float32,width 32']

Every variant (width, batch size, memory layout, optimizer, autocast dtype) gets its own model and batch; they take
turns, `--steps` steps each, for `--rounds` rounds, so a change in the machine's load hits them all alike. It prints
microseconds per training image (median over rounds) and the median ratio to the default recipe (cnn 24, bs 256,
channels-last, fused AdamW, bfloat16 autocast where the CPU has bfloat16 instructions, else float32), with the
1-minute load average. Like `fastfound fit`, it calls `reuse_memory()` first.
"""
import argparse, os, statistics, time
import torch
import torch.nn.functional as F
from fastfound.cli import precision, reuse_memory
from fastfound.models import CNN_WIDTH, cnn

VARIANTS = {  # name: changes to the default recipe
    'default': {}, 'AdamW, not fused': dict(fused=False), 'bs 512': dict(bs=512),
    'contiguous (NCHW)': dict(cl=False), 'float32': dict(dtype=torch.float32),
    'bfloat16 autocast': dict(dtype=torch.bfloat16),
    **{f'width {w}': dict(width=w) for w in (16, 20, 32)},
    'width 20 float32': dict(width=20, dtype=torch.float32)}  # the default of the round before

def stepper(width=CNN_WIDTH, bs=256, cl=True, fused=True, dtype=precision('cpu')):
    "A function that runs one training step of the variant, and its batch size."
    m = cnn(width)
    if cl: m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-3, fused=fused)
    x, y = torch.randn(bs, 1, 28, 28), torch.randint(0, 10, (bs,))
    def step():
        with torch.autocast('cpu', dtype, enabled=dtype != torch.float32):
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return step, bs

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--steps', type=int, default=15)
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch chooses)')
    ap.add_argument('--only', default=None, help='comma-separated variants besides the default (default: all)')
    a = ap.parse_args()
    names = ['default', *a.only.split(',')] if a.only else list(VARIANTS)
    if a.threads: torch.set_num_threads(a.threads)
    reuse_memory()
    torch.manual_seed(0)
    runs = {k: stepper(**VARIANTS[k]) for k in names}
    for step, _ in runs.values():
        for _ in range(5): step()
    us, load0 = {k: [] for k in runs}, os.getloadavg()[0]
    for _ in range(a.rounds):
        for k, (step, bs) in runs.items():
            t = time.perf_counter()
            for _ in range(a.steps): step()
            us[k].append((time.perf_counter() - t) / a.steps / bs * 1e6)
    print(f'{torch.get_num_threads()} threads, {a.rounds} rounds of {a.steps} steps, load average '
          f'{load0:.2f} -> {os.getloadavg()[0]:.2f}')
    for k, v in us.items():
        ratio = statistics.median(x / d for x, d in zip(v, us['default']))
        print(f'  {k:<20} {statistics.median(v):7.1f} us/image  {ratio:.3f}x')
