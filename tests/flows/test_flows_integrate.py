"""integrate: linear time (§2.5, §7 row 3), rank loss (§2.6), descent, fixed steps, stops, bad input."""

import json
import math

import pytest
import torch
from flow_cases import F64, tanh_problem, toy_problem

import lossgeom as lg
from lossgeom.flows import FlowStoppedError, Trajectory, integrate


def _check_row3(steps: int, n_eval: int, tol_line: float) -> None:
    traj = integrate(toy_problem(), None, alpha=1.0, t_end=1.0, time="linear", method="rk4",
                     step=1 / steps, n_eval=n_eval)
    assert traj.n_steps == steps and traj.n_field_evals == 4 * steps and traj.success
    tau = traj.times
    line = torch.stack([1 + tau, 1 + 2 * tau], dim=1)
    assert float((traj.outputs[:, :, 0] - line).abs().max()) <= tol_line   # RK4: error ∝ step⁴
    assert traj.outputs[(n_eval - 1) // 4, :, 0].tolist() == pytest.approx([1.25, 1.5],
                                                                           abs=tol_line)
    assert traj.theta[-1].tolist() == pytest.approx([1.128655, 1.772020, 1.692983], abs=5e-7)
    assert float(traj.loss[-1]) <= 1e-20
    assert traj.rank_jacobian.tolist() == [2] * n_eval and bool(traj.rank_decided.all())
    assert traj.rank_events == () and traj.max_deviation() <= 2 * tol_line


def test_toy_linear_time_rk4_row3():
    """§7 row 3: x(τ) = (1 + τ, 1 + 2τ), θ(1) = (1.128655, 1.772020, 1.692983) (RK4, 400 steps)."""
    _check_row3(400, 5, 1e-12)
    _check_row3(100, 5, 1e-9)     # RK4 error ∝ step⁴: 256× larger with 4× fewer steps


@pytest.mark.slow
def test_toy_linear_time_rk4_row3_every_step_recorded():
    _check_row3(400, 401, 1e-12)


def test_toy_linear_time_adaptive_matches_rk4():
    ref = torch.tensor([1.128655, 1.772020, 1.692983], dtype=F64)
    for method in ("RK45", "DOP853", "LSODA"):
        traj = integrate(toy_problem(), None, t_end=1.0, time="linear", method=method, n_eval=11,
                         rtol=1e-10, atol=1e-12)
        assert float((traj.theta[-1] - ref).abs().max()) <= 1e-6, method
        assert traj.max_deviation() <= 1e-7, method


def test_natural_time_adapted_is_exponential_interpolation():
    """Full rank: x(s) = y + e^{−λs}(x₀ − y), λ = 1/n for the sample-mean cost (§2.5)."""
    p = tanh_problem((2, 6, 2), n=3, seed=4)
    traj = integrate(p, None, alpha=1.0, t_end=3.0, normalization="sample_mean", n_eval=4,
                     method="DOP853", rtol=1e-10, atol=1e-12)
    assert traj.rate == pytest.approx(1 / 3) and traj.cost_factor == pytest.approx(1 / 6)
    x0, y = traj.outputs[0], p.targets
    expect = y + torch.exp(-traj.times / 3)[:, None, None] * (x0 - y)
    assert float((traj.outputs - expect).abs().max()) <= 1e-8
    assert torch.allclose(traj.interpolation_time, 1 - torch.exp(-traj.times / 3))
    assert traj.max_deviation() <= 1e-8


def test_linear_time_tanh_net_reaches_target():
    """Tanh 2-6-2 (K = 32, QN = 6): the straight line to y, final loss at round-off (§2.5)."""
    p = tanh_problem((2, 6, 2), n=3, seed=4)
    traj = integrate(p, None, t_end=1.0, time="linear", method="DOP853", rtol=1e-10, atol=1e-12,
                     n_eval=6)
    assert traj.max_deviation() <= 1e-8
    assert float(traj.loss[-1]) <= 1e-16 and float(traj.loss[0]) > 1.0


def test_rank_loss_duplicated_input_projected_target():
    """§2.6: identical inputs with different targets: rank J = 4 < 6 with ran J fixed, so
    δ(τ) = τP^⊥(x₀ − y): a straight line to the projected target."""
    p = tanh_problem((2, 6, 2), n=3, seed=4, duplicate=(1, 2))
    traj = integrate(p, None, t_end=0.9, time="linear", method="DOP853", rtol=1e-11, atol=1e-13,
                     n_eval=4)
    assert traj.rank_jacobian.tolist() == [4] * 4 and bool(traj.rank_decided.all())
    assert len(traj.rank_events) == 1 and traj.rank_events[0]["previous_rank"] is None
    assert "rank J = 4 < 6 at the start" in traj.message
    assert float(traj.range_drift.max()) <= 1e-12
    err = (traj.deviation - traj.deviation_predicted).flatten(1).norm(dim=1)
    assert float(err.max()) <= 1e-9
    assert float(traj.deviation[-1].norm()) > 0.5            # far from the unprojected line
    # x(τ) − y = U(τ)(x₀ − y) with U = P^⊥ + (1 − τ)P for a constant projector
    assert float(traj.deviation_predicted[0].norm()) == 0.0


@pytest.mark.parametrize("family, alphas", [("field", (0.0, 0.25, 0.5, 0.75, 1.0)),
                                            ("metric", (0.25, 0.5, 0.75))])
def test_cost_descends_for_every_alpha(family, alphas):
    """dC/ds = −∇ₓCᵀ[(1 − α)K + αP]∇ₓC ≤ 0 (§2.3) for each α."""
    p = tanh_problem((2, 5, 2), n=3, seed=8)
    for alpha in alphas:
        traj = integrate(p, None, alpha=alpha, family=family, t_end=1.0, n_eval=6,
                         track_rank=False, rtol=1e-6, atol=1e-9)
        diffs = traj.loss[1:] - traj.loss[:-1]
        assert bool((diffs <= 1e-10 * float(traj.loss[0])).all()), (alpha, diffs)
        assert float(traj.loss[-1]) < 0.5 * float(traj.loss[0])


def test_euler_standard_flow_is_gradient_descent():
    """Euler with α = 0 in natural time is gradient descent on C = c·L with learning rate step."""
    p = tanh_problem((2, 4, 1), n=3, seed=9)
    traj = integrate(p, None, alpha=0.0, t_end=0.5, method="euler", step=0.05, n_eval=3,
                     normalization=0.5)
    theta = p.theta
    for _ in range(10):
        theta = theta - 0.05 * 0.5 * p.grad(theta)
    assert traj.n_steps == 10
    assert torch.allclose(traj.theta[-1], theta, rtol=1e-13, atol=1e-14)
    assert torch.allclose(traj.theta[1], traj.theta[1], rtol=0)   # records land on the step grid


def test_nan_stops_and_keeps_the_path():
    """A model that returns NaN once θ₁ > 1.5: the run stops, the path up to there is kept."""
    def model(params, X):
        t = params["theta"]
        bad = torch.where(t[0] > 1.5, torch.nan, 0.0)
        return X * t[0] + bad

    X = torch.ones(1, 1, dtype=F64)
    p = lg.Problem(model, X, torch.full((1, 1), 3.0, dtype=F64),
                   params={"theta": torch.ones(1, dtype=F64)})
    with pytest.raises(FlowStoppedError, match=r"stopped \(nan\).*last good time t = ") as info:
        integrate(p, None, alpha=1.0, t_end=2.0, n_eval=21)
    err = info.value
    assert isinstance(err, ValueError) and err.status == "nan"
    traj = err.trajectory
    assert isinstance(traj, Trajectory) and traj.status == "nan" and not traj.success
    assert 0 < err.time < 2.0 and float(traj.times[-1]) == pytest.approx(err.time)
    assert bool(torch.isfinite(traj.outputs).all()) and float(traj.theta[-1, 0]) <= 1.5
    assert traj.times.numel() >= 2


def test_undecided_rank_stops_naming_the_step():
    """x = (θ₁, 3e-6 θ₂, 5e-7 θ₃) with rank_rtol = 1e-6: rank 2, gap 6 < min_gap."""
    scale = torch.tensor([1.0, 3e-6, 5e-7], dtype=F64)

    def model(params, X):
        return (X @ (scale * params["theta"]))[:, None]

    p = lg.Problem(model, torch.eye(3, dtype=F64), torch.ones(3, 1, dtype=F64),
                   params={"theta": torch.zeros(3, dtype=F64)})
    with pytest.raises(FlowStoppedError, match=r"rank J undecided at (solver step|record) \d+ "
                                               r"\(t = .*gap 6.*on_undecided='continue'") as info:
        integrate(p, None, t_end=1.0, rank_rtol=1e-6, n_eval=5)
    assert info.value.status == "rank_undecided"
    traj = integrate(p, None, t_end=1.0, rank_rtol=1e-6, n_eval=5, on_undecided="continue")
    assert traj.success and traj.rank_jacobian.tolist() == [2] * 5
    assert not bool(traj.rank_decided.any())
    # the standard flow does not depend on the cut: it never stops for it
    assert integrate(p, None, alpha=0.0, t_end=1.0, rank_rtol=1e-6, n_eval=3).success


def test_max_steps_and_progress():
    p = toy_problem()
    seen = []
    traj = integrate(p, None, t_end=0.5, time="linear", n_eval=3, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.5) and len(seen) == traj.n_steps
    with pytest.raises(FlowStoppedError, match="max_steps = 3") as info:
        integrate(p, None, t_end=1.0, method="rk4", step=0.01, n_eval=5, max_steps=3)
    assert info.value.status == "max_steps" and info.value.trajectory.times.numel() == 2


def test_trajectory_is_frozen_and_json_ready():
    p = toy_problem()
    traj = integrate(p, None, t_end=0.5, time="linear", n_eval=4)
    assert traj.times.shape == (4,) and traj.theta.shape == (4, 3)
    assert traj.outputs.shape == (4, 2, 1) and traj.loss.shape == (4,)
    assert traj.rank_jacobian.dtype == torch.int64 and traj.theta.dtype == F64
    with pytest.raises(AttributeError):
        traj.alpha = 0.5
    d = json.loads(json.dumps(traj.to_dict()))
    assert "theta" not in d and d["rank_gap"][0] == "inf" and d["status"] == "completed"
    assert len(json.loads(json.dumps(traj.to_dict(include_theta=True)))["theta"]) == 4
    s = json.loads(json.dumps(traj.summary()))
    assert s["rank_min"] == 2 and s["max_deviation"] <= 1e-6 and s["time"] == "linear"


def test_untracked_rank_and_lsmr_route():
    p = tanh_problem((2, 5, 2), n=3, seed=11)
    kw = {"t_end": 0.2, "n_eval": 2, "method": "rk4", "step": 0.2, "alpha": 0.7}
    ref = integrate(p, None, **kw)
    traj = integrate(p, None, solver="lsmr", track_rank=False, **kw)
    assert traj.route == "lsmr" and traj.rank_jacobian.tolist() == [-1] * 2
    assert bool(torch.isnan(traj.rank_gap).all())
    assert traj.n_field_evals == 4
    assert torch.allclose(traj.theta, ref.theta, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kwargs, match", [
    ({"t_end": 0.0}, "t_end must be a finite time > 0"),
    ({"t_end": -1.0}, "t_end must be a finite time > 0"),
    ({"t_end": math.inf}, "t_end must be a finite time > 0"),
    ({"t_end": 1.5, "time": "linear"}, "Pass t_end <= 1"),
    ({"t_end": 1.0, "time": "linear", "alpha": 0.5}, "singular at τ = 1.*t_end < 1"),
    ({"t_end": 1.0, "alpha": 1.1}, "alpha must lie in"),
    ({"t_end": 1.0, "alpha": -0.5}, "alpha must lie in"),
    ({"t_end": 1.0, "n_eval": 1}, "n_eval must be an integer >= 2"),
    ({"t_end": 1.0, "method": "rk2"}, "unknown method 'rk2'"),
    ({"t_end": 1.0, "time": "lin"}, "unknown time 'lin'"),
    ({"t_end": 1.0, "method": "rk4"}, "needs a step size"),
    ({"t_end": 1.0, "method": "euler", "step": -0.1}, "step must be a finite number > 0"),
    ({"t_end": 1.0, "step": 0.1}, "step is for the fixed-step methods"),
    ({"t_end": 1.0, "on_undecided": "skip"}, "unknown on_undecided 'skip'"),
    ({"t_end": 1.0, "rtol": 2.0}, "rtol must lie in"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=r"integrate\(problem, theta0\): .*" + match):
        integrate(toy_problem(), None, **kwargs)


def test_linear_time_needs_mse_and_relu_is_refused():
    ce = tanh_problem((2, 4, 3), n=2, seed=12, loss="softmax_ce",
                      targets=torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], dtype=F64))
    with pytest.raises(ValueError, match=r"time='linear'.*MSE-type loss.*softmax_ce"):
        integrate(ce, None, t_end=0.5, time="linear")
    relu = tanh_problem((2, 4, 1), n=3, seed=12, activation="relu")
    with pytest.raises(ValueError, match=r"ReLU.*mollify"):
        integrate(relu, None, t_end=0.5)
    with pytest.raises(TypeError, match="t_end must be a real number"):
        integrate(toy_problem(), None, t_end="1")


def test_rank_drop_along_the_path_is_reported():
    """x = (θ₁, s(θ₁)θ₂) with s(t) = e^{−1/(t − ½)} for t > ½, 0 below: rank J drops 2 → 1 when
    the standard flow carries θ₁ below ½."""
    def model(params, X):
        t = params["theta"]
        d = torch.clamp(t[0] - 0.5, min=1e-3)
        s = torch.where(t[0] > 0.5, torch.exp(-1.0 / d), torch.zeros_like(d))
        return (X @ torch.stack([t[0], s * t[1]]))[:, None]

    p = lg.Problem(model, torch.eye(2, dtype=F64), torch.zeros(2, 1, dtype=F64),
                   params={"theta": torch.tensor([1.0, 1.0], dtype=F64)})
    traj = integrate(p, None, alpha=0.0, t_end=1.0, n_eval=21, on_undecided="continue")
    ranks = traj.rank_jacobian.tolist()
    assert ranks[0] == 2 and ranks[-1] == 1 and ranks == sorted(ranks, reverse=True)
    drops = [e for e in traj.rank_events if e["previous_rank"] == 2 and e["rank"] == 1]
    assert len(drops) == 1 and 0 < drops[0]["time"] < 1.0
    assert "rank J 2 → 1 at t = " in traj.message
    # s(θ₁) falls below the rank tolerance (~4e-16) once θ₁ < ½ + 1/ln(1/4e-16) ≈ 0.528
    assert float(traj.theta[drops[0]["index"], 0]) < 0.53
    assert float(traj.theta[drops[0]["index"] - 1, 0]) > 0.5
