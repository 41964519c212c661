"""Stochastic Lanczos quadrature, Hutch++ and degeneracy profiles (linalg.slq) against chosen
spectra, Gauss-quadrature exactness and dense eigvalsh."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import aslinearoperator
from strategies import random_orthogonal

from lossgeom.linalg.krylov import low_rank_spectrum
from lossgeom.linalg.slq import (
    DegeneracyProfile,
    _rademacher,
    degeneracy_profile,
    hutchpp_trace,
    spectral_density,
)

F64 = torch.float64


def symmetric(values, seed: int) -> torch.Tensor:
    lam = torch.as_tensor(np.asarray(values, dtype=np.float64))
    Q = random_orthogonal(lam.numel(), seed)
    S = (Q * lam) @ Q.T
    return 0.5 * (S + S.T)


def true_count(lam: torch.Tensor, a: float, b: float) -> int:
    return int(((lam >= a) & (lam <= b)).sum())


@pytest.fixture(scope="module")
def generic():
    """n = 400: a bulk, a cluster of 120 exact zeros, a few outliers of both signs."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.0, 1.0, 200), np.zeros(120), rng.uniform(2.0, 3.0, 60),
                             -rng.uniform(4.0, 6.0, 16), [25.0, 40.0, -30.0, 60.0]])
    lam = torch.as_tensor(np.sort(values), dtype=F64)
    return symmetric(values, seed=1), lam


def test_diagonal_with_distinct_eigenvalues_is_exact():
    # Rademacher v on diag(λ): every (vᵀeⱼ)² = 1, so with n steps each probe's quadrature has
    # nodes λ and weights exactly 1/n: counts are exact and the spread is zero
    lam = torch.linspace(-2.0, 3.0, 25, dtype=F64)
    d = spectral_density(torch.diag(lam), 25, n_probes=3, n_steps=25, rng=0)
    assert bool(d.invariant.all())
    for i in range(3):
        torch.testing.assert_close(d.nodes[i], lam, rtol=0, atol=1e-12)
        torch.testing.assert_close(d.weights[i], torch.full((25,), 1 / 25, dtype=F64), rtol=0,
                                   atol=1e-12)
    est, low, high = d.count(-0.1, 1.1)
    assert est == pytest.approx(true_count(lam, -0.1, 1.1)) and low == pytest.approx(est)
    assert high == pytest.approx(est)
    grid = torch.linspace(-3.0, 4.0, 71, dtype=F64)
    width = 0.2
    closed = (torch.exp(-0.5 * ((grid[:, None] - lam[None, :]) / width) ** 2)
              / (width * math.sqrt(2 * math.pi))).sum(1)
    torch.testing.assert_close(d.density(grid, width), closed, rtol=1e-10, atol=1e-12)
    assert d.trace.estimate == pytest.approx(float(lam.sum()), abs=1e-10)
    assert d.trace.standard_error == pytest.approx(0.0, abs=1e-10)


def test_gauss_quadrature_matches_the_probe_moments():
    # s-point Gauss quadrature integrates polynomials of degree ≤ 2s − 1 exactly:
    # n·Σⱼ τⱼ² θⱼᵏ = vᵀAᵏv for each probe v (the probes are regenerated from the same seed)
    n, p, s = 60, 3, 5
    rng = np.random.default_rng(2)
    A = symmetric(rng.uniform(-1.0, 1.0, n), seed=2)
    d = spectral_density(A, n, n_probes=p, n_steps=s, rng=7)
    V = _rademacher(n, p, torch.Generator().manual_seed(7), "cpu")
    for k in range(2 * s):
        quad = n * (d.weights * d.nodes ** k).sum(1)
        exact = torch.einsum("ip,ij,jp->p", V, torch.linalg.matrix_power(A, k), V)
        torch.testing.assert_close(quad, exact, rtol=1e-9, atol=1e-9)


def test_few_distinct_eigenvalues_break_down_to_exact_nodes():
    values = [-2.0] * 30 + [0.0] * 50 + [1.0] * 40 + [3.0] * 30
    A = symmetric(values, seed=3)
    d = spectral_density(A, 150, n_probes=6, n_steps=20, rng=0)
    assert bool(d.invariant.all())
    finite = d.nodes[torch.isfinite(d.nodes)]
    distinct = torch.tensor([-2.0, 0.0, 1.0, 3.0], dtype=F64)
    assert float((finite[:, None] - distinct[None, :]).abs().min(1).values.max()) < 1e-10
    lam = torch.tensor(sorted(values), dtype=F64)
    for a, b in [(-0.5, 0.5), (0.5, 10.0), (-3.0, -1.0), (-10.0, 10.0)]:
        _, low, high = d.count(a, b)
        assert low <= true_count(lam, a, b) <= high


@pytest.mark.parametrize("a, b", [(-0.01, 0.01), (-1e-6, 1e-6), (-0.5, 0.5), (-1.0, 1.5),
                                  (2.0, 3.0), (-7.0, -3.5), (20.0, 100.0), (0.0, math.inf),
                                  (-math.inf, 0.0)])
def test_intervals_cover_the_true_counts(generic, a, b):
    A, lam = generic
    d = spectral_density(A, 400, n_probes=12, n_steps=40, rng=11)
    est, low, high = d.count(a, b)
    assert low <= true_count(lam, a, b) <= high
    assert 0.0 <= low <= est <= high <= 400


def test_trace_estimates_within_three_standard_errors(generic):
    A, lam = generic
    true = float(lam.sum())
    d = spectral_density(A, 400, n_probes=12, n_steps=40, rng=5)
    assert abs(d.trace.estimate - true) <= 3 * d.trace.standard_error
    h = hutchpp_trace(A, 400, n_matvec=90, rng=5)
    assert abs(h.estimate - true) <= 3 * h.standard_error
    assert h.standard_error > 0


def test_hutchpp_is_exact_when_the_sketch_holds_the_range():
    A = symmetric([5.0, -2.0, 1.0] + [0.0] * 97, seed=4)
    h = hutchpp_trace(lambda V: A @ V, 100, n_matvec=30, rng=0)
    assert h.estimate == pytest.approx(4.0, abs=1e-10) and h.standard_error < 1e-10


def test_linear_operator_and_vector_functions_are_accepted():
    A = symmetric(np.linspace(-1.0, 2.0, 50), seed=5)
    d1 = spectral_density(aslinearoperator(A.numpy()), 50, n_probes=4, n_steps=10, rng=0)
    d2 = spectral_density(lambda v: A @ v, 50, n_probes=4, n_steps=10, rng=0, batched=False)
    torch.testing.assert_close(d1.nodes, d2.nodes, rtol=1e-10, atol=1e-12)
    assert d1.n_matvec == d2.n_matvec == 40


def test_memory_groups_give_the_same_quadrature():
    A = symmetric(np.linspace(-1.0, 2.0, 80), seed=6)
    whole = spectral_density(A, 80, n_probes=6, n_steps=12, rng=3)
    grouped = spectral_density(A, 80, n_probes=6, n_steps=12, rng=3, max_bytes=8 * 80 * 12 * 2)
    torch.testing.assert_close(whole.nodes, grouped.nodes, rtol=1e-10, atol=1e-12)


def test_profile_of_eigenvalues_is_exact():
    lam = torch.tensor([10.0, -0.05, 1e-3, 5e-6, -1e-7, 0.0], dtype=F64)
    prof = degeneracy_profile(lam, rel_eps=(1e-2, 1e-4, 1e-6, 1e-8))
    assert prof.method == "exact" and prof.confidence == 1.0
    # thresholds 0.1, 1e-3, 1e-5, 1e-7 (strict): 10 | 0.05 | 1e-3 | 5e-6
    assert prof.count_above == prof.count_low == prof.count_high == (1, 2, 3, 4)


def test_profile_of_a_certified_low_rank_spectrum_equals_the_dense_one():
    values = [3.0, -1.0, 2e-3, -4e-5, 1e-7] + [0.0] * 95
    A = symmetric(values, seed=7)
    s = low_rank_spectrum(A, 100, rtol=1e-12)
    assert s.decided
    prof = degeneracy_profile(s)
    dense = degeneracy_profile(torch.linalg.eigvalsh(A))
    assert prof.method == "exact" and prof.count_above == dense.count_above == (2, 3, 4, 5)
    assert prof.confidence == pytest.approx(1 - s.failure_probability)


def test_profile_of_an_abandoned_basis_is_a_bracket():
    A = symmetric(list(np.linspace(1.0, 2.0, 60)) + [0.0] * 140, seed=8)
    s = low_rank_spectrum(A, 200, max_rank=20)
    assert not s.decided
    prof = degeneracy_profile(s)
    assert prof.method == "bounds"
    for lo, hi in zip(prof.count_low, prof.count_high, strict=True):
        assert lo <= 60 <= hi


def test_profile_of_a_density_covers_the_dense_counts(generic):
    A, lam = generic
    d = spectral_density(A, 400, n_probes=12, n_steps=40, rng=1)
    prof = degeneracy_profile(d, rel_eps=(1e-1, 1e-2, 1e-3))
    dense = degeneracy_profile(lam, rel_eps=(1e-1, 1e-2, 1e-3))
    assert prof.method == "slq" and prof.confidence == d.confidence
    for lo, c, hi in zip(prof.count_low, dense.count_above, prof.count_high, strict=True):
        assert lo <= c <= hi


def test_results_are_json_ready():
    A = symmetric(np.linspace(-1.0, 2.0, 30), seed=9)
    d = spectral_density(A, 30, n_probes=3, n_steps=30, rng=0)
    out = json.loads(json.dumps(d.to_dict()))
    assert len(out["nodes"]) == 3 and out["n_probes"] == 3 and len(out["trace"]) == 2
    prof = degeneracy_profile(d)
    assert isinstance(prof, DegeneracyProfile)
    assert json.loads(json.dumps(prof.to_dict()))["method"] == "slq"
    with pytest.raises(AttributeError):
        d.n = 3


@pytest.mark.parametrize("call, error, text", [
    (lambda: spectral_density(torch.eye(3, dtype=F64), 3, n_probes=1), ValueError, "n_probes"),
    (lambda: spectral_density(torch.eye(3, dtype=F64), 3, confidence=1.5), ValueError,
     "confidence"),
    (lambda: spectral_density(3.0, 3), TypeError, "callable"),
    (lambda: spectral_density(lambda V: V[:, :1], 3), ValueError, "returned shape"),
    (lambda: hutchpp_trace(torch.eye(3, dtype=F64), 3, n_matvec=3), ValueError, "n_matvec"),
    (lambda: degeneracy_profile(torch.ones(3, dtype=F64), rel_eps=(2.0,)), ValueError,
     "rel_eps"),
    (lambda: degeneracy_profile("spectrum"), TypeError, "SpectralDensity"),
])
def test_bad_input_is_refused(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value) and "(" in str(info.value).split(":")[0]


def test_count_rejects_reversed_ends():
    d = spectral_density(torch.eye(4, dtype=F64), 4, n_probes=2, n_steps=2, rng=0)
    with pytest.raises(ValueError, match="a <= b"):
        d.count(1.0, 0.0)
