"""§7 oracle rows 5–8 and 19–21 (Cooper: global minima, star and core loci, wide nets)."""

import math

import pytest
import torch
from cases import tanh_361_exact_fit

from lossgeom import analyze
from lossgeom.loci import (
    core_point,
    last_layer_slice,
    locate,
    locus_dimension,
    solution_manifold,
    star_point,
    wide_zero_bound,
)

from .helpers import (
    SPEC_INERTIA_RTOL,
    dense_spectrum,
    gaussian_problem,
    signs,
    xor_critical_point,
    xor_problem,
)


def test_row5_exact_fit_361_manifold_dimension():
    """Row 5 (§3.1): 3-6-1 tanh, no bias, n = 4, exact fit: N = 24, inertia (4, 0, 20)."""
    problem, theta = tanh_361_exact_fit()
    m = solution_manifold(problem, theta, rtol=SPEC_INERTIA_RTOL)
    assert m.n_params == 24 and m.inertia == [4, 0, 20]
    assert m.dimension == m.generic_dimension == 20 and m.zeros_match
    assert m.rank_jacobian["decided"] and m.inertia_gap > 1e3
    assert signs(dense_spectrum(problem, theta)) == (4, 0, 20)   # independent Hessian


@pytest.fixture(scope="module")
def conv_a():
    """Convention (A), widths (3,4,5,3,2), n = 5 (§3.4 table 2)."""
    return gaussian_problem([3, 4, 5, 3, 2], bias=False, seed=3)


@pytest.fixture(scope="module")
def conv_b():
    """Convention (B), widths (3,4,5,4,1), n = 5 (§3.4 table 1)."""
    return gaussian_problem([3, 4, 5, 4, 1], bias=True, seed=4)


def test_row6_convention_a_star_and_core(conv_a):
    """Row 6: S_2 dim 27, ρ₂ = 2, τ₂ = 3, inertia (6, 6, 41); C_{1,2} dim 15, ∇²L = 0."""
    theta = star_point(conv_a, 2, rng=0)
    r = locate(conv_a, theta, rtol=SPEC_INERTIA_RTOL)
    assert r.locus == "S_2" and r.locus_dimension == 27 == locus_dimension([3, 4, 5, 3, 2], 2,
                                                                          bias=False)
    assert (r.prediction["rho_i"]["rank"], r.prediction["tau_i"]["rank"]) == (2, 3)
    assert r.measured["inertia"] == r.prediction["inertia"] == [6, 6, 41] and r.agrees
    assert r.measured["decided"] and r.critical and r.predicted_critical
    assert signs(dense_spectrum(conv_a, theta)) == (6, 6, 41)
    core = core_point(conv_a, 1, 2, rng=1)
    rc = locate(conv_a, core, rtol=SPEC_INERTIA_RTOL)
    assert rc.locus == "C_{1,2}" and rc.locus_dimension == 15
    assert rc.measured["inertia"] == [0, 0, 53] and rc.prediction["eigenvalues"] == []
    H = torch.autograd.functional.hessian(conv_a.loss_at, core)
    assert float(H.abs().max()) == 0.0                    # ∇²L = 0 exactly
    assert float(conv_a.grad(core).abs().max()) == 0.0


@pytest.mark.parametrize("i", [1, 2, 3])
def test_row7_convention_b_star_points(conv_b, i):
    """Row 7: S_i inertia (5, 4, 61), dims 40 / 36 / 41, ρ_i = 1, τ_i = 4."""
    theta = star_point(conv_b, i, rng=i)
    r = locate(conv_b, theta, rtol=SPEC_INERTIA_RTOL)
    assert r.locus == f"S_{i}" and r.locus_dimension == {1: 40, 2: 36, 3: 41}[i]
    assert r.measured["inertia"] == r.prediction["inertia"] == [5, 4, 61]
    assert (r.prediction["rho_i"]["rank"], r.prediction["tau_i"]["rank"]) == (1, 4)
    assert r.kind == "strict_saddle" and r.grad_norm <= 1e-14
    assert signs(dense_spectrum(conv_b, theta)) == (5, 4, 61)


@pytest.mark.parametrize("pair", [(1, 2), (1, 3), (2, 3)])
def test_row7_convention_b_cores_one_eigenvalue_2n(conv_b, pair):
    """Row 7: C_{i,j} inertia (1, 0, 69) with the single eigenvalue 2n = 10 (MSE-sum)."""
    theta = core_point(conv_b, *pair, rng=sum(pair))
    r = locate(conv_b, theta, rtol=SPEC_INERTIA_RTOL)
    assert r.locus == f"C_{{{pair[0]},{pair[1]}}}"
    assert r.locus_dimension == {(1, 2): 20, (1, 3): 20, (2, 3): 16}[pair]
    assert r.measured["inertia"] == [1, 0, 69] and r.agrees and r.kind == "degenerate"
    lam = dense_spectrum(conv_b, theta)
    assert math.isclose(float(lam[-1]), 2 * conv_b.n_samples, rel_tol=1e-12)
    assert math.isclose(r.prediction["eigenvalues"][0], 10.0, rel_tol=1e-12)
    assert float(lam[:-1].abs().max()) <= 1e-12


def test_row8_wide_isotropic_bound():
    """Row 8: [2,12,12,1] (A), n = 3, random point: m = 117, zeros ≥ 2m − N = 54 (actual 84)."""
    problem = gaussian_problem([2, 12, 12, 1], bias=False, n=3, seed=0)
    b = wide_zero_bound(problem)             # the Report's inertia tolerance (N·eps)
    assert (b["m"], b["bound"], b.n_params) == (117, 54, 180)
    assert b["n_zero_eigenvalues"] == 84 and b.gap >= 1e3 and b.holds
    assert signs(dense_spectrum(problem, problem.theta), b.rtol)[2] == 84


@pytest.mark.parametrize("bias,critical", [(True, True), (False, False)])
def test_row19_softplus_criticality_per_convention(bias, critical):
    """Row 19: softplus (σ(0) ≠ 0): (B) star points critical, (A) not (|∇L| ≥ 6 in the spec)."""
    problem = gaussian_problem([3, 4, 5, 4, 1], bias=bias, activation="softplus", seed=4)
    for i in (1, 2, 3):
        theta = star_point(problem, i, rng=i)
        r = locate(problem, theta, rtol=SPEC_INERTIA_RTOL)
        assert r.critical is critical and r.predicted_critical is critical
        assert "σ(0) = 0" in r.failed_assumptions
        if critical:
            assert r.grad_norm <= 1e-14
        else:
            assert r.grad_norm >= 1.0 and r.prediction is None


def test_row20_xor_level_set():
    """Row 20: [2,6,6,1] (B), n = 4, XOR critical point: L = 2/3, dim ker Q = 5, (2, 0, 65)."""
    problem = xor_problem()
    theta = xor_critical_point(problem)
    s = last_layer_slice(problem, theta, rtol=SPEC_INERTIA_RTOL, require_critical=True)
    assert math.isclose(s.loss, 2 / 3, rel_tol=1e-14)
    assert s.rank_augmented["rank"] == 2 and s.dim_ker_q == 5 and s.n_params == 67
    assert s.inertia == [2, 0, 65] and s.semidefinite
    assert s.level_set["constant"] and s.level_set["max_change"] <= 1e-14
    assert s.cor_5_16["applies"] and s.cor_5_16["holds"]
    assert signs(dense_spectrum(problem, theta)) == (2, 0, 65)


def test_row21_cor_5_16_fails_for_k_gt_1():
    """Row 21: [3,5,3] (B), n = 4, star point S_1: dim ker Q = 15 but inertia (18, 15, 5)."""
    problem = gaussian_problem([3, 5, 3], bias=True, n=4, seed=5)
    theta = star_point(problem, 1, rng=0)
    s = last_layer_slice(problem, theta, rtol=SPEC_INERTIA_RTOL)
    assert s.dim_ker_q == 15 and s.inertia == [18, 15, 5] and s.critical
    assert s.level_set["constant"]
    assert s.cor_5_16["counterexample"] and not s.cor_5_16["applies"]
    assert s.n_zero >= s.isotropic_bound          # the bound that does hold at any point
    assert signs(dense_spectrum(problem, theta)) == (18, 15, 5)


def test_slice_row_361_star_point():
    """§3.5 table, row 3: [3,6,1] (B), n = 4, star point S_1: dim ker Q = 6, (7, 6, 18)."""
    problem = gaussian_problem([3, 6, 1], bias=True, n=4, seed=6)
    s = last_layer_slice(problem, star_point(problem, 1, rng=0), rtol=SPEC_INERTIA_RTOL)
    assert (s.dim_ker_q, s.inertia) == (6, [7, 6, 18])
    assert s.n_zero >= s.dim_ker_q and not s.cor_5_16["counterexample"]


def test_square_activation_star_points_degenerate():
    """§3.4: σ = z², (B), (3,4,5,4,1): σ'(0) = 0 makes S_i degenerate, (1, 0, 69)."""
    problem = gaussian_problem([3, 4, 5, 4, 1], bias=True, activation="square", seed=4)
    r = locate(problem, star_point(problem, 2, rng=0), rtol=SPEC_INERTIA_RTOL)
    assert r.measured["inertia"] == r.prediction["inertia"] == [1, 0, 69]
    assert r.prediction["tau_i"]["rank"] == 0 and "σ'(0) ≠ 0" in r.failed_assumptions
    assert analyze(problem, star_point(problem, 2, rng=0)).kind == "degenerate"
