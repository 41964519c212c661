"""fit_last_layer, find_critical_point and reach: the points that analyze is run at."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
import torch
from cases import (
    bce_fit,
    ce_prob_fit,
    gaussian,
    gen,
    softmax_onehot_random_point,
    tanh_random_point,
)
from oracles import reference_hessian

import lossgeom as lg
from lossgeom.analysis import criticality, perfect_fit
from lossgeom.curvature._jacobian import jacobian_blocks
from lossgeom.reach import NoExactFitError, reach

F64 = torch.float64


def _tol_scale(problem, theta):
    x = problem.output_fn(theta).detach()
    smax = float(torch.linalg.matrix_norm(lg.jacobian(problem, theta), ord=2))
    return criticality(problem, theta, x, 0.0, smax).scale


@pytest.mark.parametrize("widths, bias", [([3, 6, 1], False), ([2, 5, 1], True),
                                          ([2, 4, 1], "output"), ([2, 3, 4, 2], True)])
def test_fit_last_layer_gives_a_perfect_mse_fit(widths, bias):
    n = 4 if widths[-2] >= 4 else widths[-2]
    X, Y = gaussian(n, widths[0], seed=1), gaussian(n, widths[-1], seed=2)
    problem = lg.Problem(lg.mlp(widths, bias=bias, generator=gen(3)), X, Y)
    theta0 = problem.theta
    theta = lg.fit_last_layer(problem, theta0)
    assert torch.allclose(problem.outputs(theta), Y, rtol=0, atol=1e-10)
    assert float(problem.loss(theta)) < 1e-20
    n_last = sum(problem.param_numels[-2:] if bias is not False else problem.param_numels[-1:])
    assert torch.equal(theta[:-n_last], theta0[:-n_last])     # only the output layer moved
    assert perfect_fit(problem, problem.outputs(theta)).holds


def test_fit_last_layer_softmax_soft_labels():
    X = gaussian(2, 2, seed=4)
    Y = torch.softmax(gaussian(2, 3, seed=5), -1)
    problem = lg.Problem(lg.mlp([2, 5, 3], generator=gen(6)), X, Y, loss="softmax_ce")
    theta = lg.fit_last_layer(problem)
    assert torch.allclose(torch.softmax(problem.outputs(theta), -1), Y, rtol=0, atol=1e-12)
    entropy = -(Y * Y.log()).sum()
    assert float(problem.loss(theta)) == pytest.approx(float(entropy), rel=1e-12)  # §2.7


@pytest.mark.parametrize("case", [bce_fit, ce_prob_fit, softmax_onehot_random_point])
def test_fit_last_layer_refuses_losses_without_affine_optimum(case):
    problem, theta = case()
    with pytest.raises(ValueError, match="fit_last_layer") as err:
        lg.fit_last_layer(problem, theta)
    assert "find_critical_point" in str(err.value)


def test_fit_last_layer_refuses_a_nonlinear_output_layer():
    X, Y = gaussian(3, 2, seed=7), gaussian(3, 1, seed=8)
    model = torch.nn.Sequential(lg.mlp([2, 3, 1], generator=gen(9)), torch.nn.Tanh())
    problem = lg.Problem(model, X, Y * 0.1)
    with pytest.raises(ValueError, match="not affine"):
        lg.fit_last_layer(problem)


def test_fit_last_layer_in_float32():
    X, Y = gaussian(4, 2, seed=20), gaussian(4, 1, seed=21)
    problem = lg.Problem(lg.mlp([2, 5, 1], generator=gen(22)), X, Y, dtype=torch.float32)
    theta = lg.fit_last_layer(problem)
    assert theta.dtype == torch.float32
    assert torch.allclose(problem.outputs(theta), Y.float(), rtol=0, atol=1e-4)


def test_find_critical_point_reaches_tolerance_at_a_minimum():
    X, Y = gaussian(3, 2, seed=30), gaussian(3, 1, seed=31)
    problem = lg.Problem(lg.mlp([2, 3, 1], generator=gen(32)), X, Y)
    theta, history = lg.find_critical_point(problem, steps=300, tol=1e-10)
    gnorm = float(problem.grad(theta).norm())
    assert gnorm <= 1e-10 * _tol_scale(problem, theta)
    assert history[0]["phase"] == "adam" and history[-1]["phase"] == "polish"
    assert history[-1]["grad_norm"] == pytest.approx(gnorm, rel=1e-6, abs=1e-300)
    assert {"phase", "step", "loss", "grad_norm"} <= set(history[-1])
    # n = 3 < N = 13: the minimum found is a perfect fit, and its Hessian has no negative eigenvalue
    assert float(problem.loss(theta)) < 1e-16
    lam = torch.linalg.eigvalsh(reference_hessian(problem.loss_at, theta))
    assert float(lam.min()) > -1e-9 * float(lam.abs().max())


def test_find_critical_point_any_reaches_a_saddle():
    """target="any": Newton on ∇L = 0 converges to the nearest critical point of any index."""
    X, Y = gaussian(12, 2, seed=0), gaussian(12, 1, seed=1)
    problem = lg.Problem(lg.mlp([2, 3, 1], generator=gen(1)), X, Y)
    theta, history = lg.find_critical_point(problem, target="any")
    assert all(h["phase"] == "polish" for h in history)
    assert float(problem.grad(theta).norm()) <= 1e-10 * _tol_scale(problem, theta)
    lam = torch.linalg.eigvalsh(reference_hessian(problem.loss_at, theta))
    scale = float(lam.abs().max())
    assert float(lam.min()) < -1e-6 * scale and float(lam.max()) > 1e-6 * scale


def test_not_critical_error_carries_theta_and_history():
    problem, theta0 = tanh_random_point()
    with pytest.raises(lg.NotCriticalError) as err:
        lg.find_critical_point(problem, theta0, steps=0, polish="none")
    e = err.value
    assert isinstance(e, ValueError)
    assert e.grad_norm == pytest.approx(float(problem.grad(theta0).norm()))
    assert e.grad_norm > e.tol > 0
    assert torch.equal(e.theta, theta0)
    assert isinstance(e.history, list) and e.history[-1]["grad_norm"] == pytest.approx(e.grad_norm)
    msg = str(e)
    assert "find_critical_point" in msg and "err.theta" in msg


@pytest.mark.parametrize("polish", ["newton", "gauss_newton"])
def test_polish_routes_reach_an_exact_fit(polish):
    X, Y = gaussian(3, 2, seed=40), gaussian(3, 1, seed=41)
    problem = lg.Problem(lg.mlp([2, 4, 1], generator=gen(42)), X, Y)
    theta, _ = lg.find_critical_point(problem, steps=200, polish=polish)
    assert float(problem.grad(theta).norm()) <= 1e-10 * _tol_scale(problem, theta)


def test_reach_targets():
    X, Y = gaussian(3, 2, seed=50), gaussian(3, 1, seed=51)
    problem = lg.Problem(lg.mlp([2, 4, 1], generator=gen(52)), X, Y)
    assert torch.equal(reach(problem, "as_is"), problem.theta)
    theta = reach(problem, "global_minimum")
    assert perfect_fit(problem, problem.outputs(theta)).holds
    with pytest.raises(ValueError, match="'global_minimum', 'minimum', 'as_is'"):
        reach(problem, "saddle")


# -- the evidence of a last-layer fit (LastLayerFit) -------------------------------------------
def _tanh_features(problem, theta):
    """Φ = [tanh(X W₁ᵀ + b₁), 1] (n, h + 1), computed from the parameters by hand."""
    p = problem.unflatten(theta)
    hidden = torch.tanh(problem.inputs @ p["0.weight"].T + p["0.bias"])
    return torch.cat([hidden, torch.ones(problem.n_samples, 1, dtype=F64)], 1)


def _deficient(n=6, k=1, h=3, seed=60):
    """tanh 2-h-k with biases on n > h + 1 Gaussian samples: features of rank h + 1 < n."""
    X, Y = gaussian(n, 2, seed=seed), gaussian(n, k, seed=seed + 1)
    return lg.Problem(lg.mlp([2, h, k], generator=gen(seed + 2)), X, Y)


def test_fit_evidence_for_features_that_cannot_interpolate():
    problem = _deficient()
    theta0 = problem.theta
    theta, fit = lg.fit_last_layer(problem, theta0, info=True)
    assert torch.equal(theta, lg.fit_last_layer(problem, theta0))  # the plain contract is unchanged
    phi = _tanh_features(problem, theta0)
    assert (fit.feature_rank, fit.n_features, fit.n_samples, fit.n_rows) == (4, 4, 6, 6)
    assert fit.feature_rank == int(torch.linalg.matrix_rank(phi)) and fit.shared_features
    d = fit.feature_rank_decision
    assert d.rank == 4 and d.decided and d.tol > 0
    # the oracle: least squares on Φ by numpy leaves the residual (I − ΦΦ⁺) y
    coef, *_ = np.linalg.lstsq(phi.numpy(), problem.targets.numpy(), rcond=None)
    expected = float(np.abs(phi.numpy() @ coef - problem.targets.numpy()).max())
    assert fit.residual == pytest.approx(expected, rel=1e-10)
    assert float((problem.outputs(theta) - problem.targets).abs().max()) == pytest.approx(
        fit.residual, rel=1e-12)
    assert not fit.exact and fit.residual > fit.residual_tol
    assert fit.reason.startswith("no exact fit: features of rank 4 < n = 6; residual ")
    json.dumps(fit.to_dict())
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.exact = True


def test_exact_true_refuses_a_fit_that_is_not_exact():
    problem = _deficient()
    with pytest.raises(NoExactFitError) as err:
        lg.fit_last_layer(problem, exact=True)
    e = err.value
    assert isinstance(e, ValueError)
    msg = str(e)
    assert msg.startswith("fit_last_layer(problem, theta): no exact fit: features of rank 4 < n = 6;")
    assert f"residual {e.fit.residual:.3g}" in msg and "find_critical_point" in msg
    assert torch.equal(e.theta, lg.fit_last_layer(problem))


def test_fit_evidence_of_an_exact_fit():
    X, Y = gaussian(4, 3, seed=70), gaussian(4, 1, seed=71)
    problem = lg.Problem(lg.mlp([3, 6, 1], generator=gen(72)), X, Y)
    theta, fit = lg.fit_last_layer(problem, exact=True, info=True)
    assert fit.exact and fit.reason == "" and fit.feature_rank == 4 == fit.n_samples
    assert fit.residual == float((problem.outputs(theta) - Y).abs().max()) <= fit.residual_tol
    assert perfect_fit(problem, problem.outputs(theta)).holds


def test_rank_deficient_features_with_consistent_labels_fit_exactly():
    """§6.2: coinciding inputs with equal labels: rank Φ = 3 < n = 4, yet the fit is exact."""
    X = gaussian(3, 2, seed=80)
    X = torch.cat([X, X[2:]])                       # x₄ = x₃
    Y = torch.tensor([[0.3], [-1.0], [0.7], [0.7]], dtype=F64)
    problem = lg.Problem(lg.mlp([2, 5, 1], generator=gen(81)), X, Y)
    _, fit = lg.fit_last_layer(problem, exact=True, info=True)
    assert fit.feature_rank == 3 < fit.n_samples == 4 and fit.exact


def test_fit_evidence_with_several_outputs():
    """k = 2 outputs read the same features: rank Φ = 4 < n = 6, the 12 rows of A have rank 8."""
    problem = _deficient(k=2)
    _, fit = lg.fit_last_layer(problem, info=True)
    assert (fit.feature_rank, fit.n_samples, fit.n_rows, fit.shared_features) == (4, 6, 12, True)
    idx = lg.reach.output_layer_indices(problem)
    A = jacobian_blocks(problem, problem.theta, idx)
    assert int(torch.linalg.matrix_rank(A)) == 2 * fit.feature_rank
    assert "features of rank 4 < n = 6" in fit.reason


def test_reach_global_minimum_says_why_there_is_no_exact_fit():
    """n = 12 > N = 9: no point fits, and the error leads with the output layer's evidence."""
    problem = _deficient(n=12, h=2, seed=90)
    with pytest.raises(lg.NotCriticalError) as err:
        reach(problem, "global_minimum", steps=100)
    msg = str(err.value)
    assert msg.startswith("reach(problem, 'global_minimum'): no exact fit: features of rank 3 < "
                          "n = 12; residual ")
    assert "descent (100 Adam steps, Newton polish)" in msg and err.value.theta is not None


def test_cli_analyze_prints_the_no_exact_fit_line(monkeypatch):
    from typer.testing import CliRunner

    import lossgeom.cli.analyze as cli_analyze
    from lossgeom.cli import app

    monkeypatch.setattr(cli_analyze, "reach", functools.partial(reach, steps=100))  # fast descent
    res = CliRunner().invoke(app, ["analyze", "--widths", "2,2,1", "--data", "random", "--n", "12"])
    assert res.exit_code == 2
    assert "no exact fit: features of rank 3 < n = 12" in res.stderr
    assert "Traceback" not in res.output


def test_adam_phase_is_torch_optim_adam_bit_for_bit():
    """The flat-θ Adam of find_critical_point against torch.optim.Adam, the reference update."""
    X, Y = gaussian(5, 3, seed=100), gaussian(5, 1, seed=101)
    problem = lg.Problem(lg.mlp([3, 4, 1], "relu", generator=gen(102)), X, Y)
    t = problem.theta.requires_grad_(True)
    opt = torch.optim.Adam([t], lr=0.05)
    for _ in range(120):
        opt.zero_grad()
        problem.loss_at(t).backward()
        opt.step()
    history = []
    theta = lg.reach._adam(problem, problem.theta, 120, 0.05, history)
    assert torch.equal(theta, t.detach())
    assert history[-1]["step"] == 119 and history[0]["phase"] == "adam"


def test_gradient_scale_dense_and_power_iteration_agree(monkeypatch):
    problem, theta = tanh_random_point()
    dense = lg.reach.gradient_scale(problem, theta)
    assert dense == pytest.approx(_tol_scale(problem, theta), rel=1e-12)  # σ_max by matrix norm
    monkeypatch.setattr(lg.reach, "DENSE_SCALE_ENTRIES", 0)
    monkeypatch.setattr(lg.curvature.linearization, "POWER_ITERATIONS", 200)
    power = lg.reach.gradient_scale(problem, theta)
    assert power == pytest.approx(dense, rel=1e-6)
