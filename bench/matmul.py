"The matmul ladder on the chapter's shapes (5x784 @ 784x10), and `@` on larger products against the machine's peak."
import torch
from fastfound.matmul import bench_matmul, _time, _fmt_secs

for n_threads in (None, 1):
    print(f"\nthreads: {n_threads or torch.get_num_threads()}")
    print(bench_matmul(n_repeat=15, min_secs=0.05, n_threads=n_threads))
for n in (256, 1024):
    x = torch.randn(n, n)
    s = _time(lambda: x @ x, 7, 0.1)
    print(f"{n}x{n} @ {n}x{n}: {_fmt_secs(s)}, {2 * n**3 / s / 1e9:.0f} GFLOP/s")
