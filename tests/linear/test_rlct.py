"""Exact learning coefficient of reduced-rank regression (§9.2) against hand-computed values."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lossgeom import linear as ll
from lossgeom.linear import rlct


@pytest.mark.parametrize(("widths", "r", "expected", "why"), [
    # case 1, M + H + N + r odd: (2·3·10 − 0 − 9 + 1)/8
    ((5, 3, 5), 0, 6.5, "case 1 odd"),
    # case 1, even: (2·2·8 − 0 − 4)/8
    ((4, 2, 4), 0, 3.5, "case 1 even"),
    # case 1, M ≠ N, even (sum 10): (2·3·7 − 1 − 9)/8
    ((3, 2, 4), 1, 4.0, "case 1 even, M != N"),
    # case 1, M ≠ N, odd (sum 11): (2·4·7 − 1 − 16 + 1)/8
    ((3, 3, 4), 1, 5.0, "case 1 odd, M != N"),
    # case 2 (M + H < N + r): (HM − Hr + Nr)/2
    ((2, 2, 6), 0, 2.0, "case 2, r = 0"),
    ((2, 2, 6), 1, 4.0, "case 2: (4 − 2 + 6)/2"),
    # case 3 (N + H < M + r): (HN − Hr + Mr)/2
    ((6, 2, 2), 0, 2.0, "case 3, r = 0"),
    ((6, 2, 2), 1, 4.0, "case 3: (4 − 2 + 6)/2"),
    # case 4 (M + N < H + r): MN/2
    ((2, 5, 2), 0, 2.0, "case 4"),
    ((3, 6, 2), 1, 3.0, "case 4, r = 1"),
])
def test_hand_computed_values(widths, r, expected, why):
    assert rlct(widths, r) == expected, why


def test_parity_rule_of_case_1_adds_one_eighth():
    # (5, 3, 5): r = 0 has an odd sum (13), r = 1 an even one (14); the raw formula without the
    # parity term is (2(H+r)(M+N) − (M−N)² − (H+r)²)/8
    raw = {r: (2 * (3 + r) * 10 - 0 - (3 + r) ** 2) / 8 for r in (0, 1)}
    assert rlct((5, 3, 5), 0) == raw[0] + 1 / 8 == 6.5
    assert rlct((5, 3, 5), 1) == raw[1] == 8.0


@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8))
def test_regular_limit_r_equals_h(M, H, N):
    """r = H: the coefficient is half the dimension H(M + N − H) of the rank-H matrices."""
    if H > min(M, N):
        return
    assert rlct((M, H, N), H) == H * (M + N - H) / 2


@given(st.integers(1, 9), st.integers(1, 9))
def test_rank_one_product_of_two_sums_of_squares(M, N):
    """H = 1, r = 0: K = |a|²|b|², whose log canonical threshold is min(M, N)/2 (an independent
    closed form: integrate out the smaller sphere's radius)."""
    assert rlct((M, 1, N), 0) == min(M, N) / 2


@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7), st.integers(0, 7))
def test_transpose_symmetry_and_range(M, H, N, r):
    """λ(M, H, N, r) = λ(N, H, M, r) (the transposed network), and 0 < λ ≤ H(M + N)/2 = N_params/2."""
    if r > min(M, H, N):
        return
    lam = rlct((M, H, N), r)
    assert lam == rlct((N, H, M), r)
    assert 0 < lam <= H * (M + N) / 2


def test_numpy_integers_accepted():
    assert rlct(np.array([5, 3, 5]).tolist(), np.int64(0)) == 6.5
    assert rlct((np.int64(5), np.int32(3), 5), 0) == 6.5


def test_exported_from_linear():
    assert "rlct" in ll.__all__ and ll.rlct is rlct
    assert math.isclose(ll.rlct((5, 3, 5), 0), 6.5)


@pytest.mark.parametrize(("args", "kwargs", "exc", "match"), [
    (((3, 2, 2, 3), 0), {}, ValueError, "no closed form"),
    (((3, 2), 0), {}, ValueError, "expected widths \\(M, H, N\\)"),
    (((5, 3, 5), 0), {"bias": True}, ValueError, "biased layers"),
    (((5, 3, 5), 4), {}, ValueError, "exceeds the hidden width"),
    (((5, 3, 5), -1), {}, ValueError, "true_rank must be an integer >= 0"),
    (((2, 3, 5), 3), {}, ValueError, "rank at most 2"),
    (((0, 3, 5), 0), {}, ValueError, "M must be an integer >= 1"),
    (((5, 3.0, 5), 0), {}, TypeError, "H must be an integer"),
    (((5, 3, 5), True), {}, TypeError, "true_rank must be an integer"),
    (("535", 0), {}, TypeError, "widths must be a sequence"),
])
def test_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rlct(*args, **kwargs)
