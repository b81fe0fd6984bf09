"Shared by the gradient tests: float64 tensors from a seeded generator, and a tight comparison."
import torch
from hypothesis import strategies as st

f64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)
seeds = st.integers(0, 2**31 - 1)

def rand(g, *shape): return torch.randn(*shape, generator=g, dtype=f64)
def leaf(t): return t.detach().clone().requires_grad_()
def close(a, b): torch.testing.assert_close(a, b, **TOL)
