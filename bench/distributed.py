"""Training throughput of the CLI's CNN on Fashion-MNIST on one or two processes (issue 10), and the peak memory of
DDP against sharded training (issue 22).

    python bench/distributed.py [ROUNDS]
    python bench/distributed.py --memory [ROUNDS]

Three ways, alternated round by round in one run (each a fresh launch, timed inside it, start-up excluded):
  1p1t  one process, one thread;
  1p2t  one process, two threads;
  2p1t  two processes of one thread each, gloo, `DistributedCB` (DDP), each rank half of every batch.
Each launch trains `fastfound.models.cnn(20)` (width 20, the CLI's default when the figures in the notebook were
taken) with AdamW on batches of 256 (in all): a warm-up epoch, then 3 timed epochs of 30 steps (7,680 samples),
rank 0 timing between barriers; a launch reports its median epoch. The 2-process launches also time their two collectives alone: the per-step all-reduce of all the gradients (what DDP does in the
backward pass) and `DistributedCB`'s one-number all-reduce after each step. Reported: the median samples/s of each
way over the rounds, and the scaling efficiency 2p1t / (2 x 1p1t). OpenMP threads sleep while they wait
(`OMP_WAIT_POLICY=PASSIVE`, see the CLI chapter), unless the environment says otherwise: on a shared machine
spinning threads take turns burning the cores.

On the machine that built these docs, quiet (2 cores; load average 1.4-2.2 during the run, which is the run's own
two threads), `python bench/distributed.py 3` with `OMP_WAIT_POLICY=PASSIVE`, 2026-12-02:

| way | samples/s (median of 3) | vs 1p1t |
|---|---|---|
| 1p1t | 5,864 | 1.00x |
| 1p2t | 7,396 | 1.26x |
| 2p1t | 7,817 | 1.33x |

Scaling efficiency 2p1t / (2 x 1p1t): 67%, short of the 90% target. The collectives are part of it: a 2-process
step took 32.8 ms, of which the all-reduce of the 166,390 gradients alone takes 2.4 ms and `DistributedCB`'s
per-step flag 0.7 ms, about 9%. The larger part is the machine: two threads in *one* process reach only 1.26x, so
its two cores do not give twice the work (shared caches and memory bandwidth, or two hyper-threads of one core), and
two processes cannot either. Two processes still beat one process with two threads (1.33x against 1.26x).
Earlier, at load average 14-20 (six other jobs), the same run gave 1,336 / 2,761 / 1,153 samples/s (43%): under that
load DDP's lockstep makes every step as slow as the slower, preempted rank.

Memory (issue 22), `python bench/distributed.py --memory 3`: DDP against FSDP2 (`DistributedCB(shard=True)`) on 2 ranks,
alternated, for an MLP of 51,984,394 weights (784 -> 2048 -> 12 x 2048 -> 10) with AdamW, 4 steps of 64 samples;
each rank reports its peak resident memory and its memory before the model was built. 2026-12-07, 2 cores shared with
other jobs (load average 11-14; memory does not depend on it: the 3 rounds agreed to 1%):

| | peak per rank | above the start |
|---|---|---|
| ddp | 1,375 MiB | 1,114 MiB |
| fsdp | 801 MiB | 541 MiB |

Sharded / DDP: 0.58 of the peak, 0.49 of what training adds (goal: at most 0.6).

The same day, at load average 11-21 (other jobs), `python bench/distributed.py 3` (now with the meeting before backward:
two tiny all-reduces per step) gave 522 / 2,052 / 592 samples/s, 2p1t 0.39 of 1p2t: under that load DDP's lockstep
makes every step last as long as the preempted rank's; it says nothing of the loop. Then, nearly quiet (load average
1.6-3.6 at the end), `OMP_WAIT_POLICY=PASSIVE`: 4,812 / 6,937 / 6,628 samples/s, 2p1t 0.96 of 1p2t (median of the
rounds' ratios), efficiency 69%, a 38.6 ms step with 1.58 ms for the gradients' all-reduce and 0.23 ms for a meeting.
A second run as the load came back (load average 5): 5,069 / 3,975 / 3,909, 0.98.

With a meeting at the start and one at the end of training added (one tiny all-reduce each, per phase), quiet (load
average 0.5 before, 1.4 after), 2026-12-07: 4,823 / 7,243 / 6,938 samples/s, 2p1t 1.01 of 1p2t, efficiency 72%, a
36.9 ms step with 2.08 ms for the gradients' all-reduce and 0.43 ms for a meeting.
"""
import json, os, socket, statistics, subprocess, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BS, STEPS, REPS = 256, 30, 3
# glibc raises its mmap threshold as large blocks are freed (up to 32 MiB), after which freed blocks stay in the
# heap: the peak resident memory would then measure the allocator's caching. A fixed 1 MiB threshold (unless the
# environment sets one) returns every large block when it is freed, so the peak is what the training held.
MALLOC = {'MALLOC_MMAP_THRESHOLD_': os.environ.get('MALLOC_MMAP_THRESHOLD_', '1048576')}
MLP_WIDTH, MLP_DEPTH = 2048, 12  # 784 -> 2048 -> 12 x (2048 -> 2048) -> 10: 52.0 million weights


def worker():
    import torch, torch.distributed as dist
    from fastfound.data import DataLoaders, FMNIST_STATS, TensorLoader, load_fashion_mnist
    from fastfound.distributed import DistributedCB, process_group
    from fastfound.learner import DeviceCB, Learner
    from fastfound.models import cnn
    from fastfound.ranks import barrier, is_main, world_size
    from fastfound.state import set_seed
    x, y, *_ = load_fashion_mnist()
    n = BS * STEPS
    with process_group(threads=int(os.environ['BENCH_THREADS'])):
        set_seed(0)
        dl = TensorLoader(x[:n], y[:n], BS, shuffle=True, device='cpu', norm=FMNIST_STATS, shape=(1, 28, 28))
        learn = Learner(cnn(20), DataLoaders(dl, None), opt_func=torch.optim.AdamW, lr=1e-3, default_cbs=False,
                        cbs=[DeviceCB('cpu'), DistributedCB()])
        learn.fit(1)  # warm up
        times = []
        for _ in range(REPS):
            barrier()
            t0 = time.perf_counter()
            learn.fit(1)
            barrier()
            times.append(time.perf_counter() - t0)
        out = dict(sps=n / statistics.median(times), threads=torch.get_num_threads(), ranks=world_size())
        if world_size() > 1:
            g = torch.zeros(sum(p.numel() for p in learn.model.parameters()))
            f = torch.zeros(world_size(), dtype=torch.int32)
            for name, t in (('grads_ms', g), ('flag_ms', f)):
                for _ in range(5): dist.all_reduce(t)
                t0 = time.perf_counter()
                for _ in range(50): dist.all_reduce(t)
                out[name] = (time.perf_counter() - t0) / 50 * 1e3
            out['params'] = g.numel()
        if is_main(): print('RESULT ' + json.dumps(out), flush=True)


def memory_worker():
    "One rank of the memory comparison: peak resident memory of a >= 50M-weight MLP's AdamW steps."
    import resource, torch
    from torch import nn
    from fastfound.data import DataLoaders, TensorLoader
    from fastfound.distributed import DistributedCB, process_group
    from fastfound.learner import DeviceCB, Learner
    from fastfound.ranks import gather_all, is_main
    from fastfound.state import set_seed
    shard = os.environ['BENCH_SHARD'] == '1'
    with process_group(threads=1):
        base = int(Path('/proc/self/statm').read_text().split()[1]) * os.sysconf('SC_PAGE_SIZE')
        set_seed(0)
        w = MLP_WIDTH
        blocks = [m for _ in range(MLP_DEPTH) for m in (nn.Linear(w, w), nn.ReLU())]
        model = nn.Sequential(nn.Linear(784, w), nn.ReLU(), *blocks, nn.Linear(w, 10))
        n = sum(p.numel() for p in model.parameters())
        x, y = torch.randn(64 * 4, 784), torch.randint(0, 10, (64 * 4,))
        learn = Learner(model, DataLoaders(TensorLoader(x, y, 64, device='cpu'), None), opt_func=torch.optim.AdamW,
                        lr=1e-4, default_cbs=False, cbs=[DeviceCB('cpu'), DistributedCB(shard=shard)])
        learn.fit(1)  # 4 steps
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t = gather_all(torch.tensor([[peak, base]], dtype=torch.float64))
        if is_main(): print('RESULT ' + json.dumps(dict(params=n, peak=t[:, 0].tolist(), base=t[:, 1].tolist())),
                            flush=True)


def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(nproc:int, threads:int, worker:str='--worker', shard:bool=False, env:dict|None=None)->dict:
    port, base = free_port(), os.environ | (env or {}) | {'BENCH_THREADS': str(threads), 'OMP_NUM_THREADS': str(threads),
                                           'BENCH_SHARD': str(int(shard)),
                                           'OMP_WAIT_POLICY': os.environ.get('OMP_WAIT_POLICY', 'PASSIVE'),
                                           'PYTHONPATH': str(ROOT)}
    envs = [base] if nproc == 1 else [base | dict(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(nproc),
                                                  LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR='127.0.0.1',
                                                  MASTER_PORT=str(port)) for r in range(nproc)]
    ps = [subprocess.Popen([sys.executable, __file__, worker], env=e, stdout=subprocess.PIPE, text=True)
          for e in envs]
    outs = [p.communicate(timeout=600)[0] for p in ps]
    if any(p.returncode for p in ps): sys.exit(f'a launch of {nproc}x{threads} {worker} failed')
    return json.loads(next(l for l in outs[0].splitlines() if l.startswith('RESULT '))[7:])


def memory(rounds:int):
    "DDP against FSDP2 (`DistributedCB(shard=True)`) on 2 ranks, alternated: peak memory per rank."
    res = {'ddp': [], 'fsdp': []}
    for i in range(rounds):
        for k in res:
            r = launch(2, 1, '--memory-worker', shard=k == 'fsdp', env=MALLOC)
            res[k].append(r)
            print(f'round {i}: {k} peak per rank {[f"{p / 2**20:,.0f}" for p in r["peak"]]} MiB, '
                  f'before the model {[f"{b / 2**20:,.0f}" for b in r["base"]]} MiB', flush=True)
    med = {k: statistics.median(max(r['peak']) for r in v) for k, v in res.items()}
    grow = {k: statistics.median(max(p - b for p, b in zip(r['peak'], r['base'])) for r in v)
            for k, v in res.items()}
    print(f'MLP of {res["ddp"][0]["params"]:,} weights, AdamW, 2 ranks, median of {rounds} rounds:')
    print('| | peak per rank | above the start |\n|---|---|---|')
    for k in res: print(f'| {k} | {med[k] / 2**20:,.0f} MiB | {grow[k] / 2**20:,.0f} MiB |')
    print(f'sharded / DDP: {med["fsdp"] / med["ddp"]:.2f} of the peak, '
          f'{grow["fsdp"] / grow["ddp"]:.2f} of what training adds')


def main(rounds:int):
    ways = {'1p1t': (1, 1), '1p2t': (1, 2), '2p1t': (2, 1)}
    res = {k: [] for k in ways}
    print(f'uptime: {subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}', flush=True)
    for i in range(rounds):
        for k, (n, t) in ways.items():
            res[k].append(launch(n, t))
            print(f'round {i}: {k} {res[k][-1]["sps"]:8.0f} samples/s', flush=True)
    med = {k: statistics.median(r['sps'] for r in v) for k, v in res.items()}
    print(f'\nuptime: {subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}')
    print(f'CNN, batch {BS} in all, median of {rounds} rounds:')
    print('| way | samples/s | vs 1p1t |\n|---|---|---|')
    for k, v in med.items(): print(f'| {k} | {v:,.0f} | {v / med["1p1t"]:.2f}x |')
    print(f'scaling efficiency 2p1t / (2 x 1p1t): {med["2p1t"] / (2 * med["1p1t"]):.0%}')
    r = statistics.median(a['sps'] / b['sps'] for a, b in zip(res['2p1t'], res['1p2t']))
    print(f'2 processes against 1 process with 2 threads (median of the rounds\' ratios): {r:.2f}')
    two = res['2p1t']
    g, f = (statistics.median(r[k] for r in two) for k in ('grads_ms', 'flag_ms'))
    step = BS / med['2p1t'] * 1e3
    print(f'2p1t: a step takes {step:.1f} ms; all-reducing the {two[0]["params"]:,} gradients alone '
          f'{g:.2f} ms, DistributedCB\'s flag {f:.3f} ms')


if __name__ == '__main__':
    if sys.argv[1:2] == ['--worker']: worker()
    elif sys.argv[1:2] == ['--memory-worker']: memory_worker()
    elif sys.argv[1:2] == ['--memory']: memory(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    else: main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
