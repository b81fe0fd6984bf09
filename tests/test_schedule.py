"Schedules, ParamScheduler, fit_one_cycle and lr_find."
import math
import numpy as np, pytest, torch
from hypothesis import given, settings, strategies as st
from fastfound.schedule import *

floats = st.floats(-10, 10, allow_nan=False)
pos = st.floats(0, 1)

# --- the schedule pieces, point by point ---------------------------------------------------------

@pytest.mark.parametrize('p', np.linspace(0, 1, 11))
def test_pieces_closed_forms(p):
    assert SchedLin(2, 4)(p) == pytest.approx(2 + 2*p)
    assert SchedCos(2, 4)(p) == pytest.approx(3 - math.cos(math.pi*p))
    assert SchedExp(1e-3, 10)(p) == pytest.approx(10**(-3 + 4*p))
    assert SchedNo(7)(p) == 7

@given(floats, floats, pos, pos)
def test_lin_cos_stay_between_and_are_monotone(a, b, p, q):
    lo, hi = min(a, b), max(a, b)
    for f in SchedLin(a, b), SchedCos(a, b):
        assert lo - 1e-9 <= f(p) <= hi + 1e-9
        p1, p2 = sorted((p, q))
        assert (f(p2) - f(p1)) * (b - a) >= -1e-9   # moves from a towards b, never back

@given(st.floats(1e-8, 1e3), st.floats(1e-8, 1e3), pos)
def test_exp_is_linear_in_log(a, b, p):
    assert math.log(SchedExp(a, b)(p)) == pytest.approx(math.log(a) + p*(math.log(b) - math.log(a)), abs=1e-9)

@given(st.lists(st.floats(0.01, 1), min_size=1, max_size=5), pos)
def test_combined_matches_piece_by_piece(ws, p):
    pcts = [w/sum(ws) for w in ws]
    scheds = [SchedLin(i, i+1) for i in range(len(pcts))]   # piece i goes from i to i+1: continuous, increasing
    s = combine_scheds(pcts, scheds)
    assert s(0) == 0 and s(1) == pytest.approx(len(pcts))
    bounds = np.cumsum([0] + pcts)
    i = min(int(np.searchsorted(bounds, p, side='right')) - 1, len(pcts) - 1)
    assert s(p) == pytest.approx(i + (p - bounds[i]) / pcts[i], abs=1e-6)

def test_one_cycle_shape_point_by_point():
    lr = combined_cos(0.25, 0.004, 0.1, 1e-6)
    for p, want in [(0, 0.004), (0.125, 0.052), (0.25, 0.1), (0.625, (0.1 + 1e-6)/2), (1, 1e-6)]:
        assert lr(p) == pytest.approx(want)
    mom = combined_cos(0.25, 0.95, 0.85, 0.95)
    for p, want in [(0, 0.95), (0.125, 0.90), (0.25, 0.85), (0.625, 0.90), (1, 0.95)]:
        assert mom(p) == pytest.approx(want)

def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match='sum to 1'): combine_scheds([0.2, 0.2], [SchedLin(0, 1)]*2)
    with pytest.raises(ValueError, match='non-negative'): combine_scheds([-0.5, 1.5], [SchedLin(0, 1)]*2)
    with pytest.raises(ValueError, match=r'\[0, 1\]'): combined_cos(0.3, 0, 1, 0)(-0.1)
    with pytest.raises(ValueError, match='positive'): SchedExp(1, -1)
