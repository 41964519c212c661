"""The demo job, small: files written, the §6.2/§6.4 cases measured as the theory states."""

import json

import pytest
import torch
from typer.testing import CliRunner

import lossgeom as lg
from lossgeom import demo
from lossgeom.cli import app
from lossgeom.demo import DEMO_STAGES, run_demo, run_trend
from lossgeom.reach import polish_many, train_many

STAGES = ["exact fits", "trend: Adam", "trend: Gauss–Newton polish", "trend: rank J",
          "gradient flows", "linear network", "figures", "total"]


def test_demo_writes_report_and_figures(tmp_path):
    labels = []
    result = run_demo(tmp_path, seeds=2, steps=300, progress=labels.append)
    report = json.loads((tmp_path / "report.json").read_text())
    r = report["reports"]
    assert r["relu_dead_pattern_2-3-1"]["jacobian"]["rank"] == 3
    assert r["relu_dead_pattern_2-3-1"]["hessian"]["inertia"] == [3, 0, 10]
    assert r["cube_tanh_3-4-1"]["hessian"]["inertia"] == [4, 0, 17]
    sm = r["softmax_ce_soft_labels_2-5-3"]
    assert sm["hessian"]["rank"] == sm["jacobian"]["rank"] - 2
    assert report["information_loss"]["layers"][0]["groups"] == [[2, 3]]
    assert len(report["trend"]) == 12
    flows = {f["alpha"]: f for f in report["flows"]}
    assert flows[1.0]["max_deviation"] < 1e-6 < flows[0.0]["max_deviation"]
    assert report["linear"]["bad_minimum"]["pure"] is True
    assert report["linear"]["saddle"]["kind"] == "spurious"
    for f in result.files:
        assert (tmp_path / f.split("/")[-1]).stat().st_size > 0
    # the time per stage, in the order run, is in report.json; the total covers the stages
    assert list(report["timings"]) == STAGES == list(result.timings)
    assert all(t >= 0 for t in result.timings.values())
    stages = sum(t for name, t in result.timings.items() if name != "total")
    assert stages <= result.timings["total"] + 1e-6
    assert len(labels) == DEMO_STAGES


def test_trend_counts_add_up():
    cells = run_trend(widths=(2,), seeds=4, steps=400)
    for c in cells:
        assert c.fitted + c.not_fitted == 4
        assert 0 <= c.rank_deficient <= c.fitted
    assert all(c.rank_deficient == 0 for c in cells if c.activation == "tanh")


def _host(units, X, Y):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2 * units), demo._SplitActivation(units),
                                torch.nn.Linear(2 * units, 1)).double()
    return lg.Problem(model, X, Y)


@pytest.mark.parametrize("activation, offset", [("tanh", 0), ("relu", 5)])
def test_trend_host_computes_the_small_net(activation, offset):
    """NOTE [trend host]: a 3-h-1 net placed in the host has its outputs, gradient and Jacobian."""
    h, units = 3, 5
    small = demo._cube_problem(h, activation, 7)
    host = _host(units, small.inputs, small.targets)
    index = demo._host_index(h, offset, units)
    theta = small.theta + 0.3 * torch.randn(small.n_params, generator=torch.Generator().manual_seed(1),
                                            dtype=torch.float64)
    big = torch.zeros(host.n_params, dtype=torch.float64)
    big[index] = theta
    torch.testing.assert_close(host.outputs(big), small.outputs(theta), rtol=0, atol=1e-15)
    g = host.grad(big)
    torch.testing.assert_close(g[index], small.grad(theta), rtol=1e-14, atol=1e-15)
    padding = torch.ones(host.n_params, dtype=torch.bool)
    padding[index] = False
    assert bool((g[padding] == 0).all())  # the padding has exactly zero gradient
    torch.testing.assert_close(lg.jacobian(host, big)[:, index], lg.jacobian(small, theta),
                               rtol=1e-14, atol=1e-15)


def test_batched_host_gradient_is_each_run_s_gradient():
    """The hand-written batched gradient of the trend's Adam against Problem.grad, run by run."""
    units, S = 3, 4
    gen = torch.Generator().manual_seed(5)
    data = [lg.datasets.cube_split(s) for s in range(S)]
    X = torch.stack([d[0] for d in data])
    Y = torch.stack([d[1] for d in data])
    host = _host(units, X[0], Y[0])
    theta = torch.randn(S, host.n_params, generator=gen, dtype=torch.float64)
    g = demo._host_gradient(units)(theta, X, Y)
    for s in range(S):
        torch.testing.assert_close(g[s], _host(units, X[s], Y[s]).grad(theta[s]),
                                   rtol=1e-13, atol=1e-14)


def test_ensemble_adam_and_polish_match_per_cell_training():
    """The one-ensemble trend against the per-cell route (a vmap per cell, per-problem checks)."""
    widths, seeds, steps = (2, 3), 3, 150
    timings = {}
    runs = demo._trend_runs(widths, seeds, steps, timings)
    assert len(runs) == 2 * len(widths) * seeds and set(timings) == set(STAGES[1:4])
    for activation in ("tanh", "relu"):
        for h in widths:
            cell = [r for r in runs if r.activation == activation and r.width == h]
            problems = [demo._cube_problem(h, activation, r.seed) for r in cell]
            start = torch.stack([p.theta for p in problems])
            trained = train_many(problems, start, steps=steps)
            polished, residual = polish_many(problems, trained, tol=demo.POLISH_TOL,
                                             steps=demo.POLISH_STEPS)
            for run, problem, theta, res in zip(cell, problems, polished, residual, strict=True):
                fitted = float(res) < demo.FIT_TOL
                assert (run.rank is not None) == fitted
                r = float((problem.outputs(run.theta) - problem.targets).abs().max())
                assert (r < demo.FIT_TOL) == fitted
                if fitted:  # the same exact fit, and rank J from the problem's own Jacobian
                    torch.testing.assert_close(run.theta, theta, rtol=1e-6, atol=1e-6)
                    d = lg.numerical_rank(lg.jacobian(problem, run.theta), rtol=demo.RANK_RTOL)
                    assert d.rank == run.rank.rank


def test_demo_cli(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--seeds", "1", "--steps", "100"])
    assert res.exit_code == 0, res.output
    assert "relu_dead_pattern_2-3-1" in res.stdout and (tmp_path / "trend.png").exists()
    assert "Time per stage" in res.stderr and "Time per stage" not in res.stdout
    assert all(stage in res.stderr for stage in ("trend: Adam", "figures", "total"))
