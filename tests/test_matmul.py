"Every matmul variant agrees with torch.matmul on random shapes, and all fail the same clear way on bad input."
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from fastfound.matmul import bench_matmul, check_matmul, matmuls

variants = pytest.mark.parametrize('name', list(matmuls))
dims = st.integers(1, 12)

def rand(shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point: return torch.randn(shape, generator=g, dtype=dtype)
    return torch.randint(-50, 50, shape, generator=g, dtype=dtype)

@variants
@settings(max_examples=40, deadline=None)
@given(ar=dims, ac=st.integers(1, 40), bc=dims, seed=st.integers(0, 2**31))
@example(ar=1, ac=7, bc=1, seed=0)    # row @ column: a 1x1 result
@example(ar=7, ac=1, bc=7, seed=0)    # column @ row: an outer product
@example(ar=1, ac=1, bc=1, seed=0)
@example(ar=1, ac=784, bc=10, seed=0)
@example(ar=12, ac=1, bc=1, seed=0)
def test_agrees_with_torch(name, ar, ac, bc, seed):
    a, b = rand((ar, ac), seed), rand((ac, bc), seed + 1)
    res = matmuls[name](a, b)
    torch.testing.assert_close(res, torch.matmul(a, b))  # float32 tolerances
    assert res.shape == (ar, bc) and res.dtype == a.dtype

@variants
@pytest.mark.parametrize('dtype', [torch.float64, torch.int64])
def test_other_dtypes(name, dtype):
    a, b = rand((3, 5), 0, dtype), rand((5, 4), 1, dtype)
    res = matmuls[name](a, b)
    assert res.dtype == dtype
    torch.testing.assert_close(res, a @ b, rtol=0, atol=1e-12)

@variants
@pytest.mark.parametrize('ar,ac,bc', [(0, 3, 2), (2, 0, 3), (2, 3, 0)])
def test_empty(name, ar, ac, bc):
    a, b = torch.randn(ar, ac), torch.randn(ac, bc)
    torch.testing.assert_close(matmuls[name](a, b), a @ b)

@variants
def test_inputs_not_changed(name):
    a, b = torch.randn(3, 4), torch.randn(4, 2)
    a0, b0 = a.clone(), b.clone()
    matmuls[name](a, b)
    assert torch.equal(a, a0) and torch.equal(b, b0)

bad_shapes = [((5, 784), (5, 784)), ((3, 4), (3, 4)), ((1, 2), (3, 1)), ((4, 1), (4, 1))]

@variants
@pytest.mark.parametrize('sa,sb', bad_shapes)
def test_shape_mismatch(name, sa, sb):
    with pytest.raises(ValueError) as e: matmuls[name](torch.randn(sa), torch.randn(sb))
    assert f"{sa} @ {sb}" in str(e.value)

@variants
@pytest.mark.parametrize('sa,sb', [((3,), (3, 2)), ((2, 3), (3,)), ((), (1, 1)), ((2, 2, 3), (3, 2)), ((2, 3), (1, 3, 2))])
def test_not_2d(name, sa, sb):
    with pytest.raises(ValueError, match='2-D') as e: matmuls[name](torch.randn(sa), torch.randn(sb))
    assert f"{sa} @ {sb}" in str(e.value)

@variants
@pytest.mark.parametrize('da,db', [(torch.float32, torch.float64), (torch.float16, torch.float32), (torch.int64, torch.float32)])
def test_dtype_mismatch(name, da, db):
    with pytest.raises(ValueError) as e: matmuls[name](torch.ones(2, 3, dtype=da), torch.ones(3, 4, dtype=db))
    msg = str(e.value)
    assert str(da) in msg and str(db) in msg and '(2, 3) @ (3, 4)' in msg

@variants
def test_device_mismatch(name):
    with pytest.raises(ValueError, match='meta') as e: matmuls[name](torch.ones(2, 3, device='meta'), torch.ones(3, 4))
    assert '(2, 3) @ (3, 4)' in str(e.value)

@variants
@pytest.mark.parametrize('a,b', [([[1., 2]], torch.ones(2, 1)), (torch.ones(1, 2), np.ones((2, 1), dtype=np.float32)), (1., 2.)])
def test_not_tensors(name, a, b):
    with pytest.raises(TypeError, match='tensors') as e: matmuls[name](a, b)
    assert type(a).__name__ in str(e.value) and type(b).__name__ in str(e.value)

def test_check_returns_shape():
    assert check_matmul(torch.ones(2, 3), torch.ones(3, 7)) == (2, 7)

def test_bench_table():
    tb = bench_matmul(ar=2, ac=6, bc=3, n_repeat=2, min_secs=1e-4)
    assert [r.version for r in tb] == ['loops', 'elementwise', 'broadcast', 'einsum', '@']
    assert tb[0].speedup == 1 and all(r.secs > 0 and r.gflops > 0 for r in tb)
    for r in tb: assert r.speedup == pytest.approx(tb[0].secs / r.secs)
    text, md = repr(tb).splitlines(), tb._repr_markdown_().splitlines()
    assert len(text) == len(md) == 7 and text[0].startswith('version') and md[1].startswith('| ---')
    assert [l.split()[0] for l in text[2:]] == [r.version for r in tb]

def test_bench_rejects_wrong_results(monkeypatch):
    monkeypatch.setitem(matmuls, 'einsum', lambda a, b: torch.einsum('ik,kj->ij', a, b) + 1)
    with pytest.raises(RuntimeError, match='einsum disagrees'): bench_matmul(ar=2, ac=3, bc=2, n_repeat=1, min_secs=0)

def test_bench_threads_restored():
    before = torch.get_num_threads()
    tb = bench_matmul(ar=2, ac=6, bc=3, n_repeat=1, min_secs=0, n_threads=1)
    assert len(tb) == 5 and torch.get_num_threads() == before
