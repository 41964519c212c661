"""analyze → Report: the oracles of §7, routes agreeing pairwise, classification, rank identity."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from cases import (
    ALL64,
    EXACT_FIT_MSE,
    bce_fit,
    ce_prob_fit,
    ce_prob_onehot_random_point,
    deep_linear_singh,
    float32_exact_fit,
    gaussian,
    gen,
    relu_dead_pattern,
    softmax_onehot_random_point,
    softmax_soft_label_fit,
    tanh_251_exact_fit,
    tanh_361_exact_fit,
    tanh_random_point,
)
from oracles import (
    INERTIA_251_EXACT_FIT,
    INERTIA_361_EXACT_FIT,
    RELU_DEAD_INERTIA,
    RELU_DEAD_RANK_J,
    SINGH_EXPECTED,
    SOFTMAX_ONEHOT_RANK_GN,
    SOFTMAX_ONEHOT_RANK_H,
    SOFTMAX_ONEHOT_RANK_J,
    SOFTMAX_SOFT_FIT_RANK_H,
    SOFTMAX_SOFT_FIT_RANK_J,
    SPEC_INERTIA_RTOL,
    SPHERE_CENTRES,
    SPHERE_OFF_AXIS,
    SPHERE_ON_AXIS,
    eigenvalue_signs,
    info_loss_toy,
    info_loss_toy_params,
    reference_hessian,
    reference_jacobian,
    singh_hessian_ranks,
    spheres_model,
    svd_rank,
)

import lossgeom as lg
from lossgeom.analysis import criticality, perfect_fit
from lossgeom.errors import DenseTooLargeError

F64 = torch.float64

API_KEYS = {
    "n_params", "n_samples", "n_outputs", "loss", "grad_norm", "output_grad_norm", "jacobian",
    "gauss_newton", "hessian", "behavior_manifold_dim", "kind", "rank_identity", "timings",
}
API_NESTED = {
    "jacobian": {"rank", "tol", "gap", "method"},
    "gauss_newton": {"rank", "tol", "gap"},
    "hessian": {"rank", "tol", "gap", "inertia", "method", "top_eigenvalues", "bottom_eigenvalues"},
    "rank_identity": {"predicted", "holds", "reason"},
}
KINDS = {"noncritical", "global_minimum", "strict_local_minimum", "strict_saddle",
         "strict_local_maximum", "degenerate"}


# -- the report ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "dense", "operator"])
def test_report_has_every_api_key_and_is_json_ready(method):
    problem, theta = tanh_random_point()
    report = lg.analyze(problem, theta, method=method)
    d = report.to_dict()
    assert API_KEYS <= set(d)
    for key, sub in API_NESTED.items():
        assert sub <= set(d[key]), key
    assert {"criticality", "perfect_fit", "kind_reason"} <= set(d)
    assert d["kind"] in KINDS
    assert len(d["hessian"]["inertia"]) == 3
    again = json.loads(report.to_json())
    assert again == json.loads(json.dumps(d))
    assert set(d["timings"]) >= {"gradient", "jacobian", "hessian"}
    assert all(v >= 0 for v in d["timings"].values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.kind = "x"  # type: ignore[misc]


def test_report_numbers_match_independent_computations():
    problem, theta = tanh_random_point()
    r = lg.analyze(problem, theta)
    assert (r.n_params, r.n_samples, r.n_outputs) == (22, 3, 2)
    assert r.loss == pytest.approx(float(problem.loss(theta)), rel=1e-14)
    assert r.grad_norm == pytest.approx(float(problem.grad(theta).norm()), rel=1e-12)
    assert r.output_grad_norm == pytest.approx(float(problem.output_grad(theta).norm()), rel=1e-12)
    J = reference_jacobian(problem.output_fn, theta)
    s = torch.linalg.svdvals(J)
    assert r.jacobian.sigma_max == pytest.approx(float(s[0]), rel=1e-10)
    assert r.behavior_manifold_dim == r.n_params - r.jacobian.rank == 22 - 6
    lam = torch.linalg.eigvalsh(reference_hessian(problem.loss_at, theta))
    top, bottom = r.hessian.top_eigenvalues, r.hessian.bottom_eigenvalues
    assert len(top) == len(bottom) == 10
    assert top == sorted(top, reverse=True) and bottom == sorted(bottom)
    scale = float(lam.abs().max())
    assert torch.allclose(torch.tensor(top, dtype=F64), lam.flip(0)[:10], rtol=0, atol=1e-10 * scale)
    assert torch.allclose(torch.tensor(bottom, dtype=F64), lam[:10], rtol=0, atol=1e-10 * scale)
    assert (r.dtype, r.loss_name, r.reduction) == ("float64", "mse", "sum")


def test_criticality_test_is_the_documented_rule():
    problem, theta = tanh_random_point()
    r = lg.analyze(problem, theta)
    c = r.criticality
    x = problem.outputs(theta)
    again = criticality(problem, theta, x, r.grad_norm, r.jacobian.sigma_max)
    assert (c.tol, c.scale, c.rtol) == pytest.approx((again.tol, again.scale, again.rtol))
    assert c.tol == pytest.approx(c.rtol * c.scale) and c.floor < c.tol
    # scale = σ_max(J)·max(‖∇ₓC(x)‖, ‖∇ₓC(x_ref)‖), x_ref = 0 for mse: ‖2y‖
    expected_scale = r.jacobian.sigma_max * max(float(problem.output_grad(theta).norm()),
                                                   float((2 * problem.targets).norm()))
    assert c.scale == pytest.approx(expected_scale, rel=1e-12)
    assert c.critical is False and r.kind == "noncritical"


# -- §7 oracles -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "dense", "operator"])
def test_tanh_361_exact_fit_inertia(method):
    """§3.1 / §7 row 5: N = 24, rank J = 4, inertia (4, 0, 20), a global minimum."""
    problem, theta = tanh_361_exact_fit()
    r = lg.analyze(problem, theta, method=method)
    assert r.n_params == 24
    assert r.jacobian.rank == 4 and r.jacobian.decided
    assert tuple(r.hessian.inertia) == INERTIA_361_EXACT_FIT
    assert r.hessian.decided and r.hessian.rank == 4
    assert r.kind == "global_minimum"
    assert r.behavior_manifold_dim == 20
    assert r.rank_identity.predicted is True and r.rank_identity.holds is True
    assert r.perfect_fit.holds and r.criticality.critical


@pytest.mark.parametrize("name", sorted(EXACT_FIT_MSE))
def test_mse_perfect_fit_rank_hessian_equals_rank_jacobian(name):
    """§1.3, §6.1 Claim 3 (§7 row 13): ∇²L = 2JᵀJ, so rank H = rank J, inertia (r, 0, N − r)."""
    problem, theta = EXACT_FIT_MSE[name]()
    r = lg.analyze(problem, theta)
    J = reference_jacobian(problem.output_fn, theta)
    rank_j = svd_rank(J, 1e-9)
    assert r.jacobian.rank == rank_j
    assert r.hessian.inertia == [rank_j, 0, problem.n_params - rank_j]
    assert eigenvalue_signs(2 * J.T @ J) == tuple(r.hessian.inertia)
    assert r.rank_identity.predicted is True and r.rank_identity.holds is True


def test_tanh_251_exact_fit_matches_spec():
    problem, theta = tanh_251_exact_fit()
    r = lg.analyze(problem, theta)
    assert r.n_params == 21 and tuple(r.hessian.inertia) == INERTIA_251_EXACT_FIT


@pytest.mark.parametrize("method", ["auto", "dense", "operator"])
def test_relu_dead_pattern_example(method):
    """§6.2: inputs 3 and 4 give h₁ = 0: rank J = 3 (not 4), inertia (3, 0, 10) at the fit."""
    problem, theta = relu_dead_pattern()
    J = reference_jacobian(problem.output_fn, theta)
    assert torch.equal(J[2], J[3])                     # identical behavioral gradients
    r = lg.analyze(problem, theta, method=method)
    assert r.jacobian.rank == RELU_DEAD_RANK_J and r.jacobian.decided
    assert tuple(r.hessian.inertia) == RELU_DEAD_INERTIA
    assert r.behavior_manifold_dim == 13 - 3
    assert r.kind == "global_minimum"
    # n·k = 4 < N = 13: the Gram cut falls below the floor, so K alone cannot decide; auto forms
    # the small J whole for an SVD, the matrix-free route refines by products
    assert r.jacobian.method == {"auto": "svd", "dense": "svd", "operator": "gram+svd"}[method]


@pytest.mark.parametrize("method", ["auto", "dense", "operator"])
def test_softmax_soft_label_fit_rank_drops_by_n(method):
    """§6.4 / §7 row 14: rank J = 6, rank ∇²L = rank J − n = 4; rank identity not predicted."""
    problem, theta = softmax_soft_label_fit()
    r = lg.analyze(problem, theta, method=method)
    assert r.jacobian.rank == SOFTMAX_SOFT_FIT_RANK_J
    assert r.hessian.rank == SOFTMAX_SOFT_FIT_RANK_H == r.jacobian.rank - problem.n_samples
    assert r.hessian.inertia == [4, 0, 29]
    assert r.gauss_newton.rank == 4
    assert r.kind == "global_minimum"
    assert r.rank_identity.predicted is False and r.rank_identity.holds is False
    assert "softmax_ce" in r.rank_identity.reason


def test_softmax_onehot_random_point_ranks():
    """§6.4: one-hot labels at a random point: rank J = 6, GN rank 4, ∇²L rank 22 of 33."""
    problem, theta = softmax_onehot_random_point()
    for rtol in (None, SPEC_INERTIA_RTOL):
        r = lg.analyze(problem, theta, rtol=rtol)
        assert r.jacobian.rank == SOFTMAX_ONEHOT_RANK_J
        assert r.gauss_newton.rank == SOFTMAX_ONEHOT_RANK_GN
        assert r.hessian.rank == SOFTMAX_ONEHOT_RANK_H and r.n_params == 33
        assert r.hessian.decided
    pos, neg, _ = eigenvalue_signs(reference_hessian(problem.loss_at, theta))
    assert pos + neg == SOFTMAX_ONEHOT_RANK_H
    assert r.kind == "noncritical"
    assert r.rank_identity.predicted is False


def test_deep_linear_hessian_ranks_singh():
    """§5.3 / §7 row 12: [25, 5, 10, 10], n = 50, data rank 25: H_o/H_f/H_L = 150/175/250,
    measured with gauss_newton / residual_hessian / hessian and inertia at rtol 1e-9."""
    problem, theta = deep_linear_singh()
    assert problem.n_params == 275
    assert svd_rank(problem.inputs, 1e-9) == 25
    assert singh_hessian_ranks([25, 5, 10, 10], 25) == SINGH_EXPECTED
    measured = {}
    for key, fn in (("outer", lg.gauss_newton), ("functional", lg.residual_hessian),
                    ("total", lg.hessian)):
        inert = lg.inertia(fn(problem, theta), rtol=SPEC_INERTIA_RTOL)
        assert inert.decided, key
        measured[key] = inert.positive + inert.negative
    assert measured == SINGH_EXPECTED
    r = lg.analyze(problem, theta, rtol=SPEC_INERTIA_RTOL)
    assert r.hessian.rank == 250 and r.gauss_newton.rank == 150
    assert r.hessian.method == "dense" and r.jacobian.method == "svd"


def test_spheres_rank_drops_on_the_axis():
    """§6.1 / §7 row 22: rank G = 1 on the x-axis, 2 off it (behavior manifold dim 2 vs 1)."""
    problem = lg.Problem(spheres_model, SPHERE_CENTRES, torch.zeros(2, 1, dtype=F64),
                         params={"theta": SPHERE_ON_AXIS.clone()})
    on, off = lg.analyze(problem, SPHERE_ON_AXIS), lg.analyze(problem, SPHERE_OFF_AXIS)
    assert (on.jacobian.rank, on.behavior_manifold_dim) == (1, 2)
    assert (off.jacobian.rank, off.behavior_manifold_dim) == (2, 1)
    assert on.jacobian.decided and off.jacobian.decided


@pytest.mark.parametrize("inputs", [[1.0, 2.0], [1.0, 2.0, 3.0]])
def test_information_loss_threshold_example(inputs):
    """§6.2 / §7 row 23: f = v tanh(w x) + c at w = 0: rank G = 2 for {1, 2} and {1, 2, 3}."""
    X = torch.tensor(inputs, dtype=F64)[:, None]
    problem = lg.Problem(info_loss_toy, X, torch.zeros(len(inputs), 1, dtype=F64),
                         params=info_loss_toy_params())
    r = lg.analyze(problem)
    assert r.jacobian.rank == 2 and r.jacobian.decided


# -- routes agree pairwise ----------------------------------------------------------------------------
ROUTE_CASES = ["tiny_tanh_exact_fit", "tanh_251_exact_fit", "bias_output_exact_fit",
               "softmax_soft_label_fit", "bce_fit", "tanh_random_point",
               "linear_net",
               "softmax_onehot_random_point", "callable_model", "callable_batch_coupled"]


@pytest.mark.parametrize("name", ROUTE_CASES)
def test_dense_and_operator_routes_agree(name):
    """Gram vs SVD rank, Gauss–Newton identity vs dense inertia, Lanczos extremes vs
    dense eigenvalues (~1e-8 relative)."""
    problem, theta = ALL64[name]()
    dense = lg.analyze(problem, theta, method="dense")
    op = lg.analyze(problem, theta, method="operator")
    assert dense.jacobian.method == "svd"
    assert op.jacobian.method in ("gram", "gram+svd")
    assert dense.jacobian.rank == op.jacobian.rank
    assert dense.jacobian.sigma_max == pytest.approx(op.jacobian.sigma_max, rel=1e-10)
    assert dense.gauss_newton.rank == op.gauss_newton.rank
    assert dense.kind == op.kind
    assert dense.hessian.method == "dense"
    scale = max(abs(dense.hessian.top_eigenvalues[0]), abs(dense.hessian.bottom_eigenvalues[0]))
    if op.hessian.method == "gauss_newton":
        assert op.hessian.inertia == dense.hessian.inertia
        assert op.hessian.decided
    else:  # the krylov route: certified counts equal the dense ones, extremes agree
        assert op.hessian.method == "krylov"
        if op.hessian.decided:
            assert op.hessian.inertia == dense.hessian.inertia
            assert op.hessian.certificate.kind == "invariant_subspace"
        k = len(op.hessian.top_eigenvalues)
        top = torch.tensor(op.hessian.top_eigenvalues, dtype=F64)
        bottom = torch.tensor(op.hessian.bottom_eigenvalues, dtype=F64)
        assert torch.allclose(top, torch.tensor(dense.hessian.top_eigenvalues[:k], dtype=F64),
                              rtol=0, atol=1e-8 * scale)
        assert torch.allclose(bottom,
                              torch.tensor(dense.hessian.bottom_eigenvalues[:k], dtype=F64),
                              rtol=0, atol=1e-8 * scale)
        assert op.hessian.certificate.residual < 1e-8 * scale
        assert op.hessian.n_matvec > 0
    auto = lg.analyze(problem, theta)
    assert auto.hessian.inertia == dense.hessian.inertia
    assert auto.jacobian.method == ("svd" if problem.n_samples * problem.n_outputs
                                       >= problem.n_params else op.jacobian.method)


def test_auto_gram_route_agrees_with_svd_on_an_ill_conditioned_linear_net():
    """Deep linear 3-2-2, n = 4 (n·k = 8 < N = 10): rank J = 6 by SVD with a gap ~1e13; the
    matrix-free route (Gram, refined) must find the same rank, decided; auto forms this small J
    whole for an SVD, since K alone cannot resolve it."""
    X, Y = gaussian(4, 3, seed=8), gaussian(4, 2, seed=108)
    problem = lg.Problem(lg.mlp([3, 2, 2], "linear", bias=False, generator=gen(8)), X, Y)
    dense = lg.analyze(problem, method="dense")
    assert dense.jacobian.rank == 6 and dense.jacobian.decided
    op = lg.analyze(problem, method="operator")
    assert op.jacobian.method in ("gram", "gram+svd")
    assert op.jacobian.rank == 6 and op.jacobian.decided
    auto = lg.analyze(problem)
    assert auto.jacobian.method == "svd" and auto.jacobian.rank == 6 and auto.jacobian.decided


def test_operator_route_when_samples_outnumber_parameters():
    X, Y = gaussian(5, 2, seed=1), gaussian(5, 1, seed=2)
    problem = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, Y)
    dense = lg.analyze(problem, method="dense")
    op = lg.analyze(problem, method="operator")
    assert op.jacobian.rank == dense.jacobian.rank == 2
    assert op.gauss_newton.rank == 2


def test_lanczos_route_marks_counts_undecided_away_from_a_fit():
    problem, theta = tanh_random_point()
    r = lg.analyze(problem, theta, method="operator", hessian="lanczos")
    assert r.hessian.method == "lanczos"
    assert r.hessian.inertia == [None, None, None] and r.hessian.rank is None
    assert r.hessian.decided is False
    assert r.rank_identity.holds is None
    assert r.to_dict()["hessian"]["inertia"] == [None, None, None]


def test_lanczos_time_budget_caps_restarts_and_keeps_what_converged():
    """max_seconds → one restart per end: fewer products, the converged pairs exact to their
    residuals against dense eigvalsh, and the reason names the budget."""
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(30, 8, generator=g, dtype=F64), torch.randn(30, 2, generator=g, dtype=F64)
    problem = lg.Problem(lg.mlp([8, 20, 20, 2], generator=g), X, Y)
    lam = torch.linalg.eigvalsh(lg.hessian(problem))
    free = lg.analyze(problem, method="operator", hessian="lanczos")
    calls = []
    r = lg.analyze(problem, method="operator", hessian="lanczos", max_seconds=1e-3,
                   progress=lambda stage, done, total: calls.append(stage))
    assert "ARPACK stopped after 1 restart with" in r.hessian.reason
    assert "raise max_seconds" in r.hessian.reason and not r.hessian.decided
    ncv, k = 21, 10
    assert r.hessian.n_matvec <= 1 + 2 * (ncv + (ncv - k) + k) < free.hessian.n_matvec
    for value, res in zip(r.hessian.top_eigenvalues, r.hessian.residuals_top, strict=True):
        assert float((lam - value).abs().min()) <= res + 1e-9 * float(lam.abs().max())
    assert set(calls) == {"lanczos"}
    with pytest.raises(ValueError, match="max_seconds must be a positive number"):
        lg.analyze(problem, max_seconds=-1)


def test_krylov_time_budget_under_auto_falls_back_to_the_profile():
    problem, theta = tanh_random_point()
    r = lg.analyze(problem, theta, hessian="krylov", max_seconds=1e-9)
    assert not r.hessian.decided and "max_seconds=1e-09 ran out" in r.hessian.reason
    assert r.hessian.inertia == [None, None, None] and r.degeneracy is None
    auto = lg.analyze(problem, theta, dense_max_n=1, max_seconds=1e-9)
    assert any(note.startswith("krylov gave up (max_seconds") for note in auto.routes)
    assert auto.degeneracy is not None and auto.degeneracy.method == "slq"


def test_dense_method_refuses_over_budget_and_auto_falls_back():
    problem, theta = tanh_251_exact_fit()
    N = problem.n_params
    with pytest.raises(DenseTooLargeError, match="operator"):
        lg.analyze(problem, theta, method="dense", max_bytes=8 * N * N - 1)
    r = lg.analyze(problem, theta, max_bytes=8 * N * N - 1)
    assert r.hessian.method == "gauss_newton"               # perfect fit: identity route
    assert tuple(r.hessian.inertia) == INERTIA_251_EXACT_FIT
    r2 = lg.analyze(problem, theta, dense_max_n=N - 1)
    assert r2.hessian.method == "gauss_newton"


def test_rtol_is_used_for_every_decision():
    problem, theta = tanh_251_exact_fit()
    r = lg.analyze(problem, theta, rtol=1e-9)
    assert r.jacobian.rtol == 1e-9
    # at the fit H = G is decided on the singular values of J at rtol 1e-9: 1e-18 on eigenvalues
    assert r.hessian.method == "gauss_newton"
    assert r.hessian.rtol == r.gauss_newton.inertia.rtol == pytest.approx(1e-18)
    d = lg.analyze(problem, theta)
    assert d.jacobian.rtol == pytest.approx(max(4, 21) * torch.finfo(F64).eps)
    assert d.hessian.rtol == pytest.approx(d.jacobian.rtol**2)
    dense = lg.analyze(problem, theta, hessian="dense")
    assert dense.hessian.rtol == pytest.approx(21 * torch.finfo(F64).eps)


def test_float32_twin_agrees_with_float64():
    p32, t32 = float32_exact_fit()
    p64, t64 = tanh_251_exact_fit()
    r32, r64 = lg.analyze(p32, t32), lg.analyze(p64, t64)
    assert r32.dtype == "float32"
    assert r32.jacobian.rtol == pytest.approx(21 * torch.finfo(torch.float32).eps)
    assert r32.jacobian.rank == r64.jacobian.rank == 4
    assert r32.hessian.inertia == r64.hessian.inertia
    assert r32.kind == r64.kind == "global_minimum"
    # float32 comparison tolerance (conftest TOL table): rtol 1e-4
    assert r32.hessian.top_eigenvalues[0] == pytest.approx(r64.hessian.top_eigenvalues[0], rel=1e-4)


# -- classification ----------------------------------------------------------------------------------
def _linear_least_squares(rank_deficient: bool, loss="mse"):
    X = gaussian(5, 2, seed=3)
    if rank_deficient:
        X = torch.cat([X, X[:, :1] + X[:, 1:]], dim=1)       # 3 columns, rank 2
    Y = gaussian(5, 1, seed=4)
    problem = lg.Problem(torch.nn.Linear(X.shape[1], 1, bias=False).double(), X, Y, loss=loss)
    theta = torch.linalg.pinv(X) @ Y[:, 0]                   # normal equations: ∇L = 0
    return problem, theta


def test_kind_global_minimum_saddle_noncritical_degenerate_minimum_maximum():
    fit, t_fit = tanh_251_exact_fit()
    assert lg.analyze(fit, t_fit).kind == "global_minimum"
    rnd, t_rnd = tanh_random_point()
    assert lg.analyze(rnd, t_rnd).kind == "noncritical"
    # least squares that cannot interpolate (n = 5 > rank X): critical, not a perfect fit
    deg, t_deg = _linear_least_squares(rank_deficient=True)
    r = lg.analyze(deg, t_deg)
    assert r.criticality.critical and not r.perfect_fit.holds
    # the minimizers form a line (ker X): a manifold of critical points, certified by the probe
    assert (r.kind, r.hessian.inertia) == ("nonstrict_local_minimum", [2, 0, 1])
    assert any("kernel probe" in note for note in r.routes)
    mn, t_mn = _linear_least_squares(rank_deficient=False)
    assert lg.analyze(mn, t_mn).kind == "strict_local_minimum"
    # C = −Σ(x − y)²: concave, H = −2XᵀX
    mx, t_mx = _linear_least_squares(False, loss=lambda x, y: -((x - y) ** 2).sum())
    r = lg.analyze(mx, t_mx)
    assert (r.kind, r.hessian.inertia) == ("strict_local_maximum", [0, 2, 0])


@pytest.mark.parametrize("method", ["dense", "operator"])
def test_kind_saddle_found_by_find_critical_point(method):
    X, Y = gaussian(12, 2, seed=0), gaussian(12, 1, seed=1)
    problem = lg.Problem(lg.mlp([2, 3, 1], generator=gen(1)), X, Y)
    theta, _ = lg.find_critical_point(problem, target="any")
    r = lg.analyze(problem, theta, method=method)
    assert r.criticality.critical
    assert r.kind == "strict_saddle"
    lam = torch.linalg.eigvalsh(reference_hessian(problem.loss_at, theta))
    assert float(lam.min()) < 0 < float(lam.max())
    if method == "operator":
        assert r.hessian.method == "krylov"
        assert r.hessian.bottom_eigenvalues[0] == pytest.approx(float(lam.min()), rel=1e-8)


def _bowl(params, x):
    """x(θ) = ‖θ‖² · input: at θ = 0 with target −1 (unreachable), H = 4I ≻ 0 and J = 0."""
    return (params["t"] ** 2).sum() * x[:, 0]


def test_kind_strict_minimum_by_lanczos_extremes():
    """Away from a fit on the operator route, an all-positive spectrum is certified by λ_min."""
    N = 12
    problem = lg.Problem(_bowl, torch.ones(1, 1, dtype=F64), -torch.ones(1, 1, dtype=F64),
                         params={"t": torch.zeros(N, dtype=F64)})
    for method in ("operator", "dense"):
        r = lg.analyze(problem, method=method)
        assert r.criticality.critical and not r.perfect_fit.holds
        assert r.kind == "strict_local_minimum", method
        assert r.hessian.inertia == [N, 0, 0], method
        assert r.hessian.bottom_eigenvalues[0] == pytest.approx(4.0, rel=1e-10)
        assert r.jacobian.rank == 0 and r.behavior_manifold_dim == N
    assert lg.analyze(problem, method="operator").hessian.method == "krylov"


# -- rank identity -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case, predicted", [
    (tanh_251_exact_fit, True),          # mse
    (bce_fit, True),                     # bce at a fit
    (ce_prob_fit, True),                 # ce_prob, positive targets, softmax outputs
    (softmax_soft_label_fit, False),     # softmax_ce: 1 in the kernel of each block (§6.4)
    (ce_prob_onehot_random_point, False),  # not a fit
])
def test_rank_identity_predicted_and_measured(case, predicted):
    problem, theta = case()
    r = lg.analyze(problem, theta)
    assert r.rank_identity.predicted is predicted
    J = reference_jacobian(problem.output_fn, theta)
    H = reference_hessian(problem.loss_at, theta)
    pos, neg, _ = eigenvalue_signs(H)
    assert r.rank_identity.holds == ((pos + neg) == svd_rank(J, 1e-9))
    if predicted:
        assert r.rank_identity.holds is True
    assert r.rank_identity.reason


def _ce_prob_with_zero_target():
    """Probability outputs (a, 1 − a, 0) fitted exactly: a zero target entry at a perfect fit."""
    def model(params, x):
        a = torch.sigmoid(x @ params["w"] + params["b"])
        return torch.cat([a, 1 - a, torch.zeros_like(a)], dim=1)

    params = {"w": gaussian(2, 1, seed=8), "b": torch.zeros(1, dtype=F64)}
    X = gaussian(3, 2, seed=9)
    with torch.no_grad():
        Y = model(params, X)
    return lg.Problem(model, X, Y, loss="ce_prob", params=params)


def test_rank_identity_ce_prob_zero_target():
    """§1.3 caveat: with a zero target entry ∇²ₓC = diag(y/x²) is singular, so the identity
    is not predicted; holds compares the measured ranks."""
    problem = _ce_prob_with_zero_target()
    assert perfect_fit(problem, problem.outputs()).holds
    r = lg.analyze(problem)
    assert r.rank_identity.predicted is False
    assert "zero target" in r.rank_identity.reason
    J = reference_jacobian(problem.output_fn, problem.theta)
    pos, neg, _ = eigenvalue_signs(reference_hessian(problem.loss_at, problem.theta))
    assert r.rank_identity.holds == ((pos + neg) == svd_rank(J, 1e-9))


def test_analyze_default_theta_and_callable_model():
    problem, theta = ALL64["callable_model"]()
    a, b = lg.analyze(problem), lg.analyze(problem, theta)
    assert a.to_dict()["hessian"]["inertia"] == b.to_dict()["hessian"]["inertia"]
    assert a.jacobian.rank == 6 and a.kind == "noncritical"
    assert not math.isnan(a.grad_norm)


# -- blocks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["fit", "random"])
def test_blocks_match_dense_column_and_diagonal_blocks(point):
    """rank J_b = rank of J's columns, inertia of H_bb = inertia of H's diagonal block."""
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 1, generator=g, dtype=F64)
    problem = lg.Problem(lg.mlp([3, 4, 2, 1], generator=g), X, Y)
    theta = lg.fit_last_layer(problem) if point == "fit" else problem.theta
    r = lg.analyze(problem, theta, blocks="module")
    assert [b.name for b in r.blocks] == ["0", "2", "4"]
    J = reference_jacobian(problem.output_fn, theta)
    H = reference_hessian(problem.loss_at, theta)
    slices = problem.param_slices
    for b in r.blocks:
        cols = [slices[f"{b.name}.weight"], slices[f"{b.name}.bias"]]
        idx = torch.cat([torch.arange(s.start, s.stop) for s in cols])
        assert b.n_params == idx.numel()
        assert b.jacobian.rank == svd_rank(J[:, idx], 1e-9) and b.jacobian.decided
        assert b.hessian.decided
        # an independent Hessian (autograd double backward), cut at the block's own tolerance
        assert b.hessian.inertia == lg.inertia(H[idx][:, idx], rtol=b.hessian.rtol)
    d = r.to_dict()["blocks"]
    assert d[0]["hessian"]["inertia"] == r.blocks[0].hessian.inertia.as_list()


def test_blocks_by_prefix_lists_and_bad_blocks():
    problem, theta = tanh_251_exact_fit()
    r = lg.analyze(problem, theta, blocks=[["0."], ["2.weight", "2.bias"]])
    assert [b.name for b in r.blocks] == ["0.", "2.weight+2.bias"]
    assert sum(b.n_params for b in r.blocks) == problem.n_params
    with pytest.raises(ValueError, match="selects no parameter"):
        lg.analyze(problem, theta, blocks=[["head."]])
    with pytest.raises(ValueError, match="blocks must be"):
        lg.analyze(problem, theta, blocks="layers")


# -- perfect fits certified through J; criticality at vanishing scale ---------------------------------
def test_perfect_fit_hessian_decided_on_the_singular_values_of_j():
    """At an MSE fit H = 2JᵀJ: rank and inertia are J's decision, never a re-cut of σ²."""
    g = torch.Generator().manual_seed(0)
    n, d = 6, 40
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(d, n, generator=g, dtype=F64))
    X = (U * torch.logspace(0, -6, n, dtype=F64)) @ V.T          # cond J = 1e6
    model = torch.nn.Linear(d, 1, bias=False).double()
    theta = torch.randn(d, generator=g, dtype=F64)
    problem = lg.Problem(model, X, (X @ theta)[:, None])           # an exact fit at θ
    r = lg.analyze(problem, theta)
    assert r.kind == "global_minimum" and r.jacobian.rank == n and r.jacobian.decided
    h = r.hessian
    assert (h.method, h.certificate.kind) == ("gauss_newton", "gram")
    assert h.inertia == [n, 0, d - n] and h.decided
    # the eigenvalues are 2σ², and the cut's gap is the square of a singular-value gap
    s = torch.linalg.svdvals(X)
    assert torch.allclose(torch.tensor(h.top_eigenvalues[:n], dtype=F64), 2 * s**2, rtol=1e-10)
    assert r.gauss_newton.method in ("svd", "gram+svd") and r.rank_identity.holds is True


@pytest.mark.parametrize("labels", ["zero", "constant"])
@pytest.mark.parametrize("scale", [1.0, 1e-8])
def test_global_minimum_with_vanishing_outputs_is_critical(labels, scale):
    """Outputs equal to the targets up to round-off, with all-zero or constant labels.

    The output weights are at the round-off of the network's own scale (1e-17 · scale), so θ is
    a global minimum to float64 accuracy. With zero labels the former scale
    σ_max·max(‖∇ₓC(x)‖, ‖∇ₓC(x_ref)‖) vanishes with the outputs: rtol·scale is 1e-8 of ‖∇L‖
    itself, and the floor keeps the test meaningful.
    """
    g = torch.Generator().manual_seed(1)
    X = torch.randn(4, 3, generator=g, dtype=F64)
    constant = labels == "constant"
    model = lg.mlp([3, 6, 1], bias="output" if constant else False, generator=g)
    c = 0.7 if constant else 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
        model[2].weight.copy_(1e-17 * scale * torch.randn(1, 6, generator=g, dtype=F64))
        if constant:
            model[2].bias.fill_(c)
    problem = lg.Problem(model, X, torch.full((4, 1), c, dtype=F64))
    r = lg.analyze(problem)
    assert r.perfect_fit.holds and (constant or r.grad_norm > 0.0)
    assert r.criticality.critical, r.criticality
    assert r.kind == "global_minimum"
    if not constant:  # the σ_max·‖∇ₓC‖ scale vanishes: the floor decides
        assert r.criticality.rtol * r.criticality.scale < r.grad_norm <= r.criticality.floor
