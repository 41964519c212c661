"""numerical_rank, null_space and rank_from_gram: decisions with their tolerance and gap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import low_rank_matrices, random_orthogonal, singular_value_lists

import lossgeom as lg
from lossgeom.linalg import RankDecision, rank_from_gram
from lossgeom.report import jsonable
from lossgeom.tolerances import MIN_GAP, default_rank_rtol, eps, gram_floor

F64 = torch.float64


# -- properties on constructed matrices -----------------------------------------------------------
@given(low_rank_matrices())
def test_rank_recovered_when_gap_straddles_tol(case):
    rtol = case.straddle_rtol
    d = lg.numerical_rank(case.A, rtol=rtol)
    assert d.rank == case.rank
    assert d.decided
    assert d.method == "svd"
    assert d.tol == pytest.approx(rtol * d.sigma_max, rel=1e-12)
    assert d.sigma_max == pytest.approx(float(case.sigma[0]), rel=1e-12)


@given(low_rank_matrices())
def test_cut_lies_between_kept_and_dropped(case):
    d = lg.numerical_rank(case.A, rtol=case.straddle_rtol)
    if d.rank:
        assert d.sigma_r > d.tol
        assert d.sigma_r == pytest.approx(case.sigma_r, rel=1e-9)
    else:
        assert d.sigma_r is None
    if d.rank < min(case.shape):
        assert d.sigma_next <= d.tol
        assert d.gap == (math.inf if d.sigma_next == 0 or d.rank == 0 else d.sigma_r / d.sigma_next)
    else:
        assert d.sigma_next is None and d.gap == math.inf


@given(low_rank_matrices(min_gap=2.0, max_gap=50.0, allow_full=False, min_rank=1))
def test_undecided_when_gap_is_small(case):
    assume(not case.exact_zeros)
    # put the cut in the middle of the (small) gap: the rank is right but not certified
    rtol = math.sqrt(case.sigma_r * case.sigma_next) / float(case.sigma[0])
    d = lg.numerical_rank(case.A, rtol=rtol)
    assert d.rank == case.rank
    assert not d.decided
    assert d.gap < MIN_GAP
    assert d.gap == pytest.approx(case.gap, rel=1e-6)
    assert "gap" in d.reason


@given(low_rank_matrices(), st.floats(1e-8, 1e8))
def test_scaling_changes_nothing(case, c):
    a = lg.numerical_rank(case.A, rtol=case.straddle_rtol)
    b = lg.numerical_rank(c * case.A, rtol=case.straddle_rtol)
    assert (a.rank, a.decided) == (b.rank, b.decided)
    assert b.tol == pytest.approx(c * a.tol, rel=1e-10)


@given(low_rank_matrices())
def test_transpose_and_numpy_input_agree(case):
    a = lg.numerical_rank(case.A, rtol=case.straddle_rtol)
    b = lg.numerical_rank(case.A.T.numpy(), rtol=case.straddle_rtol)
    assert a.rank == b.rank == case.rank


@given(low_rank_matrices(max_cond=1e3))
def test_default_rtol_on_exactly_rank_deficient_matrices(case):
    """Default rtol = max(m, n)·eps: the rank is found when kept σ ≥ 1e-3 σ₁ and the dropped σ
    are exact zeros (computed as round-off of order eps·σ₁ from the assembled product)."""
    assume(case.exact_zeros)
    d = lg.numerical_rank(case.A)
    assert d.rtol == default_rank_rtol(case.shape, F64) == max(case.shape) * eps(F64)
    assert d.rank == case.rank


@given(singular_value_lists())
def test_singular_values_input_matches_definition(s):
    d = lg.numerical_rank(s, rtol=1e-6)
    ordered = torch.sort(s, descending=True).values
    tol = 1e-6 * float(ordered[0])
    assert d.method == "singular_values"
    assert d.rank == int((ordered > tol).sum())
    assert d.tol == pytest.approx(tol)
    assert d.decided == (d.gap >= d.min_gap)


@given(low_rank_matrices())
def test_matrix_and_its_singular_values_agree(case):
    a = lg.numerical_rank(case.A, rtol=case.straddle_rtol)
    b = lg.numerical_rank(torch.linalg.svdvals(case.A), rtol=case.straddle_rtol, shape=case.shape)
    assert (a.rank, a.decided) == (b.rank, b.decided)
    assert a.tol == pytest.approx(b.tol, rel=1e-12)


# -- fixed examples -------------------------------------------------------------------------------
def test_tol_is_max_of_atol_and_rtol_sigma_max():
    s = torch.tensor([10.0, 1.0, 1e-3, 1e-9], dtype=F64)
    assert lg.numerical_rank(s, rtol=1e-5).rank == 3          # tol = 1e-4
    d = lg.numerical_rank(s, rtol=1e-5, atol=0.5)              # atol dominates: tol = 0.5
    assert (d.rank, d.tol) == (2, 0.5)
    assert d.gap == pytest.approx(1000.0) and d.decided       # 1 / 1e-3 ≥ MIN_GAP


def test_full_rank_gap_is_inf_and_zero_matrix_has_rank_zero():
    d = lg.numerical_rank(torch.eye(3, dtype=F64))
    assert (d.rank, d.gap, d.sigma_next, d.decided) == (3, math.inf, None, True)
    z = lg.numerical_rank(torch.zeros(3, 4, dtype=F64))
    assert (z.rank, z.sigma_max, z.sigma_r) == (0, 0.0, None)


def test_default_rtol_uses_eps_of_input_dtype():
    A = torch.diag(torch.tensor([1.0, 1e-9], dtype=torch.float32))
    d32 = lg.numerical_rank(A)
    assert d32.rtol == pytest.approx(2 * eps(torch.float32))
    assert d32.rank == 1                        # 1e-9 < 2·eps(float32)
    d64 = lg.numerical_rank(A.double())
    assert d64.rtol == pytest.approx(2 * eps(F64)) and d64.rank == 2
    assert lg.numerical_rank(A.double(), dtype=torch.float32).rank == 1


def test_rank_decision_is_frozen_and_json_ready():
    d = lg.numerical_rank(torch.eye(2, dtype=F64))
    assert isinstance(d, RankDecision)
    with pytest.raises(AttributeError):
        d.rank = 5  # type: ignore[misc]
    text = json.dumps(jsonable(d.to_dict()))
    assert json.loads(text)["gap"] == "inf"


@pytest.mark.parametrize("bad, kw, match", [
    (torch.zeros(2, 2, 2), {}, "expected a matrix"),
    (torch.tensor([[1.0, float("nan")]]), {}, "non-finite"),
    (torch.tensor([[1.0, float("inf")]]), {}, "non-finite"),
    (torch.tensor([1.0, -1.0]), {}, ">= 0"),
    (torch.eye(2), {"rtol": 0.0}, r"\(0, 1\)"),
    (torch.eye(2), {"rtol": 1.0}, r"\(0, 1\)"),
    (torch.eye(2), {"rtol": float("nan")}, r"\(0, 1\)"),
    (torch.eye(2), {"atol": -1e-3}, ">= 0"),
])
def test_numerical_rank_rejects_bad_input(bad, kw, match):
    with pytest.raises(ValueError, match=match) as err:
        lg.numerical_rank(bad, **kw)
    assert "numerical_rank" in str(err.value)


# -- null space -----------------------------------------------------------------------------------
@given(low_rank_matrices())
def test_null_space_orthonormal_and_annihilated(case):
    Z = lg.null_space(case.A, rtol=case.straddle_rtol)
    d = lg.numerical_rank(case.A, rtol=case.straddle_rtol)
    n = case.shape[1]
    assert Z.shape == (n, n - case.rank)
    assert Z.dtype == F64
    assert torch.allclose(Z.T @ Z, torch.eye(n - case.rank, dtype=F64), atol=1e-12)
    if Z.shape[1]:
        assert float(torch.linalg.matrix_norm(case.A @ Z, ord=2)) <= d.tol


def test_null_space_of_known_matrix():
    A = torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]], dtype=F64)
    Z = lg.null_space(A)
    assert Z.shape == (3, 2)
    expected = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64).T
    # same subspace: projector onto span(Z) equals projector onto span(expected)
    Qe, _ = torch.linalg.qr(expected)
    assert torch.allclose(Z @ Z.T, Qe @ Qe.T, atol=1e-14)


def test_null_space_rejects_bad_input():
    with pytest.raises(ValueError, match="null_space"):
        lg.null_space(torch.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        lg.null_space(torch.tensor([[float("nan"), 1.0]]))


# -- Gram route ---------------------------------------------------------------------------------
def _rank_deficient_jacobian(m=6, N=20, r=4, seed=0, small=0.0):
    U, V = random_orthogonal(m, seed), random_orthogonal(N, seed + 1)[:, :m]
    sig = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.25, 0.1][:m], dtype=F64)
    sig[r:] = small
    return (U * sig) @ V.T, sig


def test_gram_matches_svd_when_well_conditioned():
    J, _ = _rank_deficient_jacobian(r=6)
    d = rank_from_gram(J @ J.T, J.shape[1])
    assert (d.rank, d.method, d.decided) == (6, "gram", True)
    assert d.sigma_max == pytest.approx(3.0, rel=1e-12)
    assert d.sigma_r == pytest.approx(0.1, rel=1e-10)


def test_gram_without_refine_is_undecided_below_floor():
    J, _ = _rank_deficient_jacobian(r=4)
    K = J @ J.T
    d = rank_from_gram(K, J.shape[1])
    assert not d.decided
    assert "floor" in d.reason
    assert d.method == "gram"


def test_gram_refines_below_floor_with_svd_of_JtU0():
    J, _ = _rank_deficient_jacobian(r=4)
    calls = []

    def refine(U0):
        calls.append(U0.shape)
        return J.T @ U0

    d = rank_from_gram(J @ J.T, J.shape[1], refine=refine)
    assert calls and calls[0][0] == J.shape[0]
    assert (d.rank, d.method, d.decided) == (4, "gram+svd", True)
    assert d.rank == lg.numerical_rank(J).rank
    # the refined zero singular values are at round-off level, far below the Gram floor
    floor = gram_floor(J.shape[0], d.sigma_max)
    assert d.sigma_next < 1e-3 * floor


def test_gram_resolves_small_singular_values_the_squared_route_cannot():
    """σ₅ = 1e-11·σ₁ > default tol but below the floor: the Gram eigenvalues alone cannot see it;
    the refined route recovers rank 5 like an SVD of J."""
    J, _ = _rank_deficient_jacobian(r=4)
    U, S, Vh = torch.linalg.svd(J, full_matrices=False)
    S = S.clone()
    S[4] = 3e-11
    J5 = (U * S) @ Vh
    ref = lg.numerical_rank(J5)
    assert ref.rank == 5
    d = rank_from_gram(J5 @ J5.T, J5.shape[1], refine=lambda U0: J5.T @ U0)
    assert (d.rank, d.method) == (5, "gram+svd")
    assert d.sigma_r == pytest.approx(3e-11, rel=1e-3)


def test_gram_accepts_precomputed_eigendecomposition():
    J, _ = _rank_deficient_jacobian(r=4)
    K = J @ J.T
    eig = torch.linalg.eigh(K)
    a = rank_from_gram(K, J.shape[1], refine=lambda U0: J.T @ U0)
    b = rank_from_gram(K, J.shape[1], refine=lambda U0: J.T @ U0, eig=eig)
    assert (a.rank, a.method, a.decided) == (b.rank, b.method, b.decided)


def test_gram_trusts_cut_far_above_floor_without_refine():
    J, _ = _rank_deficient_jacobian(r=4, small=1e-12)
    d = rank_from_gram(J @ J.T, J.shape[1], rtol=1e-3)   # tol = 3e-3 ≫ 100·floor
    assert (d.rank, d.method, d.decided) == (4, "gram", True)


def test_gram_counts_alone_when_every_value_clears_the_floor_tenfold():
    """σ = σ₁·[1, …, 20·floor]: the cut (default tol) lies below the floor, but every σ̂ is
    resolved to 0.5 %, so K's count is the SVD's and nothing is re-measured."""
    m, N = 6, 20
    floor = gram_floor(m, 3.0)
    J, _ = _rank_deficient_jacobian(m, N, r=6)
    U, S, Vh = torch.linalg.svd(J, full_matrices=False)
    S[-1] = 20 * floor                       # between COUNT_MARGIN and REFINE_MARGIN floors
    J = (U * S) @ Vh

    def refine(U0):
        raise AssertionError("refined although the count was clear")

    d = rank_from_gram(J @ J.T, N, refine=refine)
    assert (d.rank, d.method, d.decided) == (6, "gram", True) == (
        lg.numerical_rank(J).rank, "gram", True)
    assert d.sigma_r == pytest.approx(20 * floor, rel=5e-3)


def test_gram_refinement_over_its_memory_is_undecided_and_names_max_bytes():
    J, _ = _rank_deficient_jacobian(r=4)
    d = rank_from_gram(J @ J.T, J.shape[1], refine=lambda U0: J.T @ U0, max_refine=1)
    assert not d.decided and "raise max_bytes" in d.reason and "2 singular values" in d.reason
    ok = rank_from_gram(J @ J.T, J.shape[1], refine=lambda U0: J.T @ U0, max_refine=2)
    assert (ok.rank, ok.method, ok.decided) == (4, "gram+svd", True)


def test_gram_floor_rule():
    assert gram_floor(9, 2.0) == pytest.approx(math.sqrt(9 * eps(F64)) * 2.0)
    assert gram_floor(1, 1.0, torch.float32) == pytest.approx(math.sqrt(eps(torch.float32)))


def test_numpy_singular_values_accepted():
    d = lg.numerical_rank(np.array([2.0, 1.0, 0.0]))
    assert d.rank == 2


def test_rank_zero_cut_at_sigma_max_is_not_certified():
    d = lg.numerical_rank(torch.tensor([1.0, 0.999], dtype=F64), atol=1.0)
    assert d.rank == 0
    assert not d.decided


def test_gram_refinement_projects_off_trusted_directions():
    """Without an SVD of J, the re-measured σ below the Gram floor must match the SVD of J."""
    gen = torch.Generator().manual_seed(5)
    U, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(40, 6, generator=gen, dtype=torch.float64))
    sigma = torch.tensor([1e4, 3e2, 1.0, 1e-3, 0.0, 0.0], dtype=torch.float64)
    J = U @ torch.diag(sigma) @ V.T
    d = lg.linalg.rank_from_gram(J @ J.T, 40, refine=lambda W: J.T @ W)
    svd = lg.numerical_rank(J)
    assert d.method == "gram+svd"
    assert d.rank == svd.rank == 4 and d.decided
    assert abs(d.sigma_r - 1e-3) <= 1e-9
