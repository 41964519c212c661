"""inertia: signs of eigenvalues with tol = rtol·max|λ|, the gap and the asymmetry."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import symmetric_with_inertia

import lossgeom as lg
from lossgeom.linalg._inertia import inertia_from_eigenvalues
from lossgeom.report import jsonable
from lossgeom.tolerances import MIN_GAP, default_inertia_rtol, eps

F64 = torch.float64


def straddle_rtol(case) -> float:
    """A relative tolerance geometrically inside the gap between zero and nonzero eigenvalues."""
    nonzero = case.eigenvalues[:case.positive + case.negative].abs()
    if nonzero.numel() == 0:
        return 1e-7
    ratio = float(nonzero.min() / nonzero.max())   # smallest nonzero |λ| ÷ max|λ|
    if bool((case.eigenvalues[case.positive + case.negative:] == 0).all()):
        return math.sqrt(ratio * 1e-13)           # zeros are round-off of the assembled matrix
    return ratio / math.sqrt(case.gap)


@given(symmetric_with_inertia())
def test_counts_recovered_and_sum_to_n(case):
    rtol = straddle_rtol(case)
    inert = lg.inertia(case.S, rtol=rtol)
    assert (inert.positive, inert.negative, inert.zero) == (case.positive, case.negative, case.zero)
    assert inert.positive + inert.negative + inert.zero == case.n
    assert inert.as_list() == [case.positive, case.negative, case.zero]
    assert inert.decided
    assert inert.rtol == rtol
    assert inert.tol == pytest.approx(rtol * float(case.eigenvalues.abs().max()), rel=1e-8)


@given(symmetric_with_inertia())
def test_matrix_and_eigenvalue_inputs_agree(case):
    rtol = straddle_rtol(case)
    a = lg.inertia(case.S, rtol=rtol)
    b = lg.inertia(case.eigenvalues, rtol=rtol)
    assert a.as_list() == b.as_list()
    assert b.asymmetry == 0.0


@given(symmetric_with_inertia(), st.floats(1e-8, 1e8))
def test_scaling_by_positive_constant_changes_nothing(case, c):
    rtol = straddle_rtol(case)
    a, b = lg.inertia(case.S, rtol=rtol), lg.inertia(c * case.S, rtol=rtol)
    assert a.as_list() == b.as_list()
    assert b.tol == pytest.approx(c * a.tol, rel=1e-8)


@given(symmetric_with_inertia())
def test_negation_swaps_positive_and_negative(case):
    rtol = straddle_rtol(case)
    a, b = lg.inertia(case.S, rtol=rtol), lg.inertia(-case.S, rtol=rtol)
    assert (b.positive, b.negative, b.zero) == (a.negative, a.positive, a.zero)


@given(symmetric_with_inertia())
def test_gap_definition(case):
    rtol = straddle_rtol(case)
    inert = lg.inertia(case.eigenvalues, rtol=rtol)
    a = case.eigenvalues.abs()
    nonzero, zeros = a[a > inert.tol], a[a <= inert.tol]
    if nonzero.numel() and zeros.numel() and float(zeros.max()) > 0:
        assert inert.gap == pytest.approx(float(nonzero.min() / zeros.max()))
        assert inert.gap == pytest.approx(case.gap, rel=1e-9)
    else:
        assert inert.gap == math.inf
    assert inert.decided == (inert.gap >= MIN_GAP)


def test_small_gap_is_undecided():
    lam = torch.tensor([1.0, -0.5, 2e-6, 1e-7], dtype=F64)
    inert = lg.inertia(lam, rtol=1e-6)          # tol = 1e-6: 2e-6 counted, 1e-7 zero, gap 20
    assert inert.as_list() == [2, 1, 1]
    assert inert.gap == pytest.approx(20.0)
    assert not inert.decided
    assert lg.inertia(lam, rtol=1e-6, min_gap=10.0).decided


def test_default_rtol_is_n_eps_of_dtype():
    lam = torch.tensor([1.0, -1.0, 1e-20, 0.0], dtype=F64)
    assert lg.inertia(lam).rtol == pytest.approx(4 * eps(F64)) == default_inertia_rtol(4, F64)
    lam32 = lam.to(torch.float32)
    inert32 = lg.inertia(lam32)
    assert inert32.rtol == pytest.approx(4 * eps(torch.float32))
    # 1e-7 is above 4·eps(float64) but below 4·eps(float32): the dtype the numbers came from decides
    v = torch.tensor([1.0, 1e-7], dtype=F64)
    assert lg.inertia(v).as_list() == [2, 0, 0]
    assert lg.inertia(v, dtype=torch.float32).as_list() == [1, 0, 1]


def test_asymmetry_reported_and_matrix_symmetrised():
    A = torch.tensor([[2.0, 1.0], [0.0, -1.0]], dtype=F64)
    inert = lg.inertia(A)
    expected = float(torch.linalg.norm(A - A.T) / torch.linalg.norm(A))
    assert inert.asymmetry == pytest.approx(expected)
    lam = torch.linalg.eigvalsh(0.5 * (A + A.T))
    assert inert.as_list() == [int((lam > 0).sum()), int((lam < 0).sum()), 0]


def test_exact_zeros_give_infinite_gap_and_all_zero_matrix():
    inert = lg.inertia(torch.tensor([3.0, 0.0, 0.0], dtype=F64))
    assert inert.as_list() == [1, 0, 2] and inert.gap == math.inf and inert.decided
    z = lg.inertia(torch.zeros(3, 3, dtype=F64))
    assert z.as_list() == [0, 0, 3]


def test_inertia_from_eigenvalues_uses_n_for_default_rtol():
    lam = torch.tensor([1.0, 5e-15], dtype=F64)
    assert inertia_from_eigenvalues(lam, None).zero == 0                # rtol = 2·eps
    assert inertia_from_eigenvalues(lam, None, n=1000).zero == 1        # rtol = 1000·eps


def test_inertia_is_frozen_and_json_ready():
    inert = lg.inertia(np.array([1.0, -2.0, 0.0]))
    with pytest.raises(AttributeError):
        inert.positive = 3  # type: ignore[misc]
    d = json.loads(json.dumps(jsonable(inert.to_dict())))
    assert d["positive"] == 1 and d["negative"] == 1 and d["gap"] == "inf"


@pytest.mark.parametrize("bad, kw, match", [
    (torch.zeros(2, 3), {}, "square"),
    (torch.zeros(2, 2, 2), {}, "shape"),
    (torch.tensor([1.0, float("nan")]), {}, "non-finite"),
    (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), {}, "non-finite"),
    (torch.eye(2), {"rtol": 0.0}, r"\(0, 1\)"),
    (torch.eye(2), {"rtol": 2.0}, r"\(0, 1\)"),
])
def test_inertia_rejects_bad_input(bad, kw, match):
    with pytest.raises(ValueError, match=match) as err:
        lg.inertia(bad, **kw)
    assert "inertia" in str(err.value)
