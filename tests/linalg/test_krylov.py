"""Certified low-rank spectra (linalg.krylov) against chosen spectra, dense eigvalsh, the Singh
closed forms (§5.2) and the star/core predictions (§3.4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import random_orthogonal

import lossgeom as lg
from lossgeom.curvature._hessian import make_hvp_block
from lossgeom.linalg.krylov import OUTSIDE_BOUND_FACTOR, LowRankSpectrum, low_rank_spectrum
from lossgeom.loci import core_point, locate, star_point
from lossgeom.tolerances import MIN_GAP

F64 = torch.float64
SPEC_RTOL = 1e-9  # §1.4: sign counts at 1e-9·max|λ| for float64 autograd Hessians


def symmetric(n: int, values, seed: int) -> torch.Tensor:
    """Q diag(values) Qᵀ with a Haar-random Q (n, len(values)): rank = #non-zero values."""
    Q = random_orthogonal(n, seed)[:, :len(values)]
    lam = torch.as_tensor(values, dtype=F64)
    S = (Q * lam) @ Q.T
    return 0.5 * (S + S.T)


@st.composite
def low_rank_symmetric(draw):
    """(S, positive, negative, eigenvalues) with magnitudes in [1e-3, 1]·scale and exact zeros."""
    n = draw(st.integers(40, 160))
    pos = draw(st.integers(0, 12))
    neg = draw(st.integers(0, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = 2.0 ** draw(st.integers(-20, 20))
    rng = np.random.default_rng(seed)
    mags = scale * np.exp(rng.uniform(np.log(1e-3), 0.0, pos + neg))
    values = np.concatenate([mags[:pos], -mags[pos:]])
    return symmetric(n, values, seed), pos, neg, torch.as_tensor(np.sort(values), dtype=F64)


@settings(max_examples=15, deadline=None)
@given(low_rank_symmetric())
def test_counts_and_spectrum_match_the_chosen_ones(case):
    S, pos, neg, values = case
    n = S.shape[0]
    s = low_rank_spectrum(lambda V: S @ V, n, rtol=SPEC_RTOL, keep_basis=True, rng=1)
    assert s.decided, s.reason
    assert s.inertia == (pos, neg, n - pos - neg) and s.rank == pos + neg
    kept = s.eigenvalues[s.eigenvalues.abs() > s.tol]
    scale = float(values.abs().max()) if values.numel() else 1.0
    torch.testing.assert_close(kept, values, rtol=0, atol=1e-10 * scale)
    assert s.residual <= s.tol and s.outside_bound <= s.tol and s.gap >= MIN_GAP
    # the outside bound covers the true ‖(I − QQᵀ)S‖₂, and the residual is ‖SQ − QT‖_F or more
    Q = s.basis
    P = torch.eye(n, dtype=F64) - Q @ Q.T
    assert float(torch.linalg.matrix_norm(P @ S, 2)) <= s.outside_bound + 1e-15 * scale
    T = Q.T @ S @ Q
    assert float(torch.linalg.matrix_norm(S @ Q - Q @ T)) <= s.residual + 1e-14 * scale
    assert 0.0 < s.failure_probability <= 1e-10 or s.subspace_dim == n


@settings(max_examples=10, deadline=None)
@given(low_rank_symmetric(), st.sampled_from([1e-3, 7.0, 2.0**30]))
def test_scaling_keeps_and_negation_swaps_the_counts(case, c):
    S, pos, neg, _ = case
    n = S.shape[0]
    a = low_rank_spectrum(c * S, n, rtol=SPEC_RTOL)
    b = low_rank_spectrum(-S, n, rtol=SPEC_RTOL)
    assert a.inertia == (pos, neg, n - pos - neg)
    assert b.inertia == (neg, pos, n - pos - neg)


def test_multiplicity_above_the_block_size_is_found_by_the_probes():
    # eigenvalue 1 twenty times and −2 five times: a Krylov block of 4 cannot see the whole
    # eigenspace; the fresh probes must bring in the rest before the bound is certified
    n = 300
    S = symmetric(n, [1.0] * 20 + [-2.0] * 5, seed=3)
    s = low_rank_spectrum(S, n, block=4, rtol=1e-10)
    assert s.decided, s.reason
    assert s.inertia == (20, 5, 275)
    torch.testing.assert_close(s.eigenvalues[s.eigenvalues.abs() > s.tol],
                               torch.tensor([-2.0] * 5 + [1.0] * 20, dtype=F64), rtol=0, atol=1e-12)


def test_full_rank_fills_the_space_and_is_deterministic():
    n = 12
    S = symmetric(n, np.linspace(-3.0, 4.0, n) + 0.1, seed=4)
    s = low_rank_spectrum(S, n)
    assert s.decided and s.subspace_dim == n
    assert s.outside_bound == 0.0 and s.failure_probability == 0.0
    dense = lg.inertia(S)
    assert s.inertia == tuple(dense.as_list())
    torch.testing.assert_close(s.eigenvalues, torch.linalg.eigvalsh(S), rtol=0, atol=1e-12)


def test_zero_operator_is_all_zero():
    s = low_rank_spectrum(lambda V: torch.zeros_like(V), 64)
    assert s.decided and s.inertia == (0, 0, 64) and s.rank == 0 and s.subspace_dim == 0


def test_rank_above_max_rank_is_undecided_and_names_max_rank():
    n = 400
    S = symmetric(n, np.linspace(1.0, 2.0, 80), seed=5)
    s = low_rank_spectrum(S, n, max_rank=50)
    assert not s.decided and s.inertia is None and s.rank is None
    assert "raise max_rank" in s.reason
    assert s.subspace_dim <= 50
    # Ritz values are lower bounds on the top eigenvalues (Cauchy interlacing)
    top = s.top_eigenvalues(5)
    assert all(t <= 2.0 + 1e-12 for t in top)


def test_time_budget_is_undecided_and_names_max_seconds():
    """A slow full-rank operator runs out of max_seconds: no count; a fast one with room decides."""
    import time
    n = 300
    S = symmetric(n, np.linspace(1.0, 2.0, n), seed=6)

    def slow(V):
        time.sleep(0.05)
        return S @ V

    s = low_rank_spectrum(slow, n, block=8, max_seconds=0.2)
    assert not s.decided and s.inertia is None and s.rank is None
    assert "max_seconds=0.2 ran out" in s.reason and "raise max_seconds" in s.reason
    assert s.subspace_dim < n and s.n_matvec < 80      # stopped after a few blocks, not at n
    small = symmetric(n, [3.0, -1.0], seed=7)
    ok = low_rank_spectrum(small, n, max_seconds=60.0)
    assert ok.decided and ok.inertia == (1, 1, n - 2)


def test_basis_above_max_bytes_is_undecided_and_names_max_bytes():
    n = 400
    S = symmetric(n, np.linspace(1.0, 2.0, 80), seed=5)
    s = low_rank_spectrum(S, n, max_bytes=8 * n * 40)
    assert not s.decided and s.inertia is None
    assert "raise max_bytes" in s.reason and s.subspace_dim <= 40


def test_eigenvalues_near_the_tolerance_are_undecided_never_miscounted():
    # a continuous decay through tol: no gap to certify a count
    n = 200
    S = symmetric(n, np.logspace(0, -14, 60), seed=6)
    s = low_rank_spectrum(S, n, rtol=1e-9)
    assert not s.decided and s.inertia is None
    assert "rtol" in s.reason


def test_the_bound_constant_and_failure_probability():
    assert OUTSIDE_BOUND_FACTOR == pytest.approx(10 * math.sqrt(2 / math.pi))
    S = symmetric(100, [1.0, -1.0], seed=7)
    s = low_rank_spectrum(S, 100, oversample=6, rtol=1e-10)
    assert s.decided and s.failure_probability == pytest.approx(1e-6)


def test_result_is_frozen_and_json_ready():
    S = symmetric(80, [2.0, 1.0, -1.0], seed=8)
    s = low_rank_spectrum(S, 80, rtol=1e-10, keep_basis=True)
    assert isinstance(s, LowRankSpectrum)
    with pytest.raises(AttributeError):
        s.rank = 3
    d = json.loads(json.dumps(s.to_dict()))
    assert d["inertia"] == [2, 1, 77] and d["decided"] is True and "basis" not in d
    cert = s.certificate()
    assert cert["kind"] == "invariant_subspace" and cert["subspace_dim"] == s.subspace_dim
    assert s.top_eigenvalues(4) == pytest.approx([2.0, 1.0, 0.0, 0.0], abs=1e-12)
    assert s.bottom_eigenvalues(2) == pytest.approx([-1.0, 0.0], abs=1e-12)


def test_progress_reports_products():
    calls = []
    S = symmetric(60, [1.0, 2.0], seed=9)
    s = low_rank_spectrum(S, 60, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (s.n_matvec, s.n_matvec)
    assert all(d <= t for d, t in calls)


def test_float32_products_use_float32_eps():
    S = symmetric(120, [1.0, -0.5, 0.25], seed=10)
    s = low_rank_spectrum(lambda V: (S.float() @ V.float()), 120, dtype=torch.float32)
    assert s.dtype == "float32" and s.rtol == pytest.approx(120 * torch.finfo(torch.float32).eps)
    assert s.decided and s.inertia == (2, 1, 117)


@pytest.mark.parametrize("call, error, text", [
    (lambda: low_rank_spectrum("not a function", 5), TypeError, "callable"),
    (lambda: low_rank_spectrum(lambda V: V, 0), ValueError, "n must be >= 1"),
    (lambda: low_rank_spectrum(lambda V: V, 5, rtol=2.0), ValueError, "rtol must lie in (0, 1)"),
    (lambda: low_rank_spectrum(lambda V: V, 5, block=0), ValueError, "block must be >= 1"),
    (lambda: low_rank_spectrum(lambda V: V, 5, max_rank=1.5), TypeError, "max_rank must be an int"),
    (lambda: low_rank_spectrum(lambda V: V[:2], 5), ValueError, "returned shape"),
    (lambda: low_rank_spectrum(lambda V: V * math.nan, 5), ValueError, "non-finite"),
    (lambda: low_rank_spectrum(torch.eye(4, dtype=F64), 5), ValueError, "shape (5, 5)"),
    (lambda: low_rank_spectrum(lambda V: V, 5, rng="seed"), TypeError, "rng"),
    (lambda: low_rank_spectrum(lambda V: V, 5, dtype=torch.int64), TypeError, "dtype"),
    (lambda: low_rank_spectrum(lambda V: V, 5, max_seconds=0), ValueError,
     "max_seconds must be a positive number of seconds"),
])
def test_bad_input_is_refused_with_the_call_in_the_message(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert "low_rank_spectrum(matmat, n)" in str(info.value) and text in str(info.value)


# -- deep linear networks: Singh et al. closed forms (§5.2) ------------------------------------

def deep_linear(widths, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, widths[0], generator=g, dtype=F64)
    Y = torch.randn(n, widths[-1], generator=g, dtype=F64)
    return lg.Problem(lg.mlp(widths, activation="linear", bias=False, generator=g), X, Y)


def hessian_low_rank(problem, theta, **kw):
    return low_rank_spectrum(make_hvp_block(problem, theta), problem.n_params,
                             dtype=problem.dtype, **kw)


@pytest.fixture(scope="module")
def linear_2e3():
    """N = 2 120 at a generic (non-critical) point; rank H_L = 608 by §5.2 (r = 20, K = q = 4)."""
    widths, n = [20, 40, 30, 4], 40
    problem = deep_linear(widths, n)
    return problem, lg.linear.hessian_rank_formula(widths, data_rank=20)["total"]


def test_deep_linear_rank_matches_the_formula_and_dense_inertia(linear_2e3):
    problem, formula = linear_2e3
    theta = problem.theta
    s = hessian_low_rank(problem, theta, rtol=SPEC_RTOL)
    assert s.decided, s.reason
    dense = lg.inertia(lg.hessian(problem, theta), rtol=SPEC_RTOL)
    assert s.rank == formula == dense.positive + dense.negative
    assert s.inertia == tuple(dense.as_list())
    assert s.n_matvec <= formula + 2 * 32 + 2 * 10   # about one product per basis column


def test_deep_linear_default_rtol_is_decided_or_names_rtol(linear_2e3):
    # at N ≈ 2e3 the default rtol N·eps sits near the products' rounding floor: either the
    # count is certified and right, or it is undecided with rtol named, never wrong
    problem, formula = linear_2e3
    s = hessian_low_rank(problem, problem.theta)
    if s.decided:
        assert s.rank == formula
    else:
        assert s.inertia is None and "rtol" in s.reason


def test_deep_linear_past_the_dense_ceiling_matches_the_formula():
    # N = 100 650 (d = 4 000 ≫ n): rank H_L = 2·q·(25 + 25) + q·(r + K) − L·q² = 118 for r = 20
    widths, n = [4000, 25, 25, 1], 20
    problem = deep_linear(widths, n)
    assert problem.n_params >= 100_000
    formula = lg.linear.hessian_rank_formula(widths, data_rank=n)["total"]
    assert formula == 118
    s = hessian_low_rank(problem, problem.theta)
    assert s.decided, s.reason
    assert s.rank == formula and sum(s.inertia) == problem.n_params


# -- star and core points (§3.4): rank ≪ N -------------------------------------------------------

def mlp_problem(widths, n, seed=0, activation="tanh"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, widths[0], generator=g, dtype=F64)
    Y = torch.randn(n, widths[-1], generator=g, dtype=F64)
    return lg.Problem(lg.mlp(widths, activation, True, generator=g), X, Y)


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_star_points_match_the_prediction_and_dense(layer):
    problem = mlp_problem([3, 6, 8, 5, 1], n=6)
    theta = star_point(problem, layer, rng=layer)
    predicted = locate(problem, theta, rtol=SPEC_RTOL).prediction["inertia"]
    s = hessian_low_rank(problem, theta, rtol=SPEC_RTOL)
    assert s.decided, s.reason
    assert list(s.inertia) == predicted
    assert list(s.inertia) == lg.inertia(lg.hessian(problem, theta), rtol=SPEC_RTOL).as_list()


def test_core_point_has_one_eigenvalue_2n():
    # §3.4(c): on C_{i,j} (convention B, MSE-sum) ∇²L has one non-zero eigenvalue, 2n
    n = 6
    problem = mlp_problem([3, 6, 8, 5, 1], n=n)
    theta = core_point(problem, 1, 3, rng=0)
    s = hessian_low_rank(problem, theta, rtol=SPEC_RTOL)
    assert s.decided and s.inertia == (1, 0, problem.n_params - 1)
    assert s.top_eigenvalues(1)[0] == pytest.approx(2 * n, rel=1e-12)
    assert list(s.inertia) == locate(problem, theta, rtol=SPEC_RTOL).prediction["inertia"]


def big_star_problem():
    # N = 110 541: layer 1 wide, layer 2 narrow, so rank on S_1 is k + 2·ρ₁·τ₁ = 1 + 2·1·20
    return mlp_problem([200, 500, 20, 1], n=8)


@pytest.mark.slow
def test_star_and_core_points_at_n_1e5():
    problem = big_star_problem()
    assert problem.n_params > 100_000
    for theta in (star_point(problem, 1, rng=0), core_point(problem, 1, 2, rng=0)):
        predicted = locate(problem, theta).prediction["inertia"]
        s = hessian_low_rank(problem, theta)
        assert s.decided, s.reason
        assert list(s.inertia) == predicted


def test_at_floor_recuts_above_the_measured_noise_when_a_gap_allows():
    """Products with rounding-like noise (fresh on every call, like HVPs far above eps): at the
    default rtol the measured bound exceeds tol (undecided); re-cut above the floor, the counts
    are the true ones. Without a gap above the floor nothing is re-cut."""
    g = torch.Generator().manual_seed(3)
    n = 300
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.zeros(n, dtype=torch.float64)
    lam[:5] = torch.tensor([3.0, 2.0, -1.5, 1.0, 0.5], dtype=torch.float64)
    A = (Q * lam) @ Q.T

    def noisy(scale):
        def matmat(V):
            return A @ V + scale * torch.randn(V.shape, generator=g, dtype=V.dtype)
        return matmat

    s = low_rank_spectrum(noisy(1e-14), n, rng=0)
    assert not s.decided and s.inertia is None and "bound" in s.reason
    r = s.at_floor()
    assert r.decided and r.inertia == (4, 1, n - 5) and r.tol > s.tol
    assert r.gap >= 1e3 and r.tol > r.outside_bound + r.residual
    # eigenvalues a decade apart down into the floor: no gap of 1e3 to cut in
    lam[5:17] = torch.logspace(-1, -12, 12, dtype=torch.float64)
    A = (Q * lam) @ Q.T
    assert not low_rank_spectrum(noisy(1e-14), n, rng=0).at_floor().decided
