"""lossgeom flow (CLI sub-app) and the flow figures."""

import json

import pytest
import torch
from flow_cases import tanh_problem, toy_problem
from matplotlib.figure import Figure
from typer.testing import CliRunner

from lossgeom.cli.flow import app
from lossgeom.flows import integrate
from lossgeom.plots.flows import flow_figures, loss_figure, output_paths_figure, rank_figure

runner = CliRunner()
SMALL = ["--widths", "2,4,2", "--n", "2", "--n-eval", "6"]


def test_cli_json_and_figures(tmp_path):
    res = runner.invoke(app, SMALL + ["--alpha", "0,1", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)            # JSON alone on stdout
    assert [r["alpha"] for r in report["runs"]] == [0.0, 1.0]
    assert report["runs"][1]["max_deviation"] < 1e-5 and report["runs"][1]["t_end"] == 1.0
    assert report["runs"][0]["t_end"] == 0.99          # α < 1 is singular at τ = 1
    assert report["normalization"] == "sample_mean" and report["n_params"] == 22
    for name in ("paths", "loss", "rank"):
        assert (tmp_path / f"flow_{name}.png").stat().st_size > 1000
    assert json.loads((tmp_path / "flow.json").read_text())["runs"][0]["status"] == "completed"


def test_cli_table_natural_time_and_mollify():
    res = runner.invoke(app, SMALL + ["--alpha", "1", "--time", "natural", "--activation", "relu",
                                      "--mollify", "0.1", "--t-end", "0.5"])
    assert res.exit_code == 0, res.output
    assert "lossgeom flow: N = 22" in res.output and " ok" in res.output


@pytest.mark.parametrize("args, match", [
    (["--activation", "relu"], "--mollify 0.1"),
    (["--alpha", "0,1.5"], "must lie in [0, 1]"),
    (["--alpha", "a"], "--alpha must look like"),
    (["--normalization", "half"], "--normalization must be one of"),
    (["--time", "linear", "--loss", "softmax_ce", "--widths", "2,4,3"], "MSE-type loss"),
    (["--t-end", "-1"], "t_end must be a finite time > 0"),
])
def test_cli_errors_are_one_line(args, match):
    res = runner.invoke(app, SMALL + args)
    assert res.exit_code == 2
    assert match in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 3    # one message (soft-wrapped at most)


def test_figures_draw_every_run():
    p = tanh_problem((2, 4, 2), n=2, seed=0)
    trajs = [integrate(p, None, alpha=a, t_end=0.9, time="linear", n_eval=8) for a in (0.0, 1.0)]
    figs = flow_figures(trajs)
    assert set(figs) == {"paths", "loss", "rank"} and all(isinstance(f, Figure) for f in figs.values())
    ax = output_paths_figure(trajs).axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "α = 0" in labels and "α = 1" in labels and "straight line x₀ → y" in labels
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "straight line x₀ → y")
    alpha1 = next(ln for ln in ax.get_lines() if ln.get_label() == "α = 1")
    # the adapted path lies on the straight line in the principal plane too
    x0, y = line.get_xydata()
    d = alpha1.get_xydata() - x0
    cross = d[:, 0] * (y - x0)[1] - d[:, 1] * (y - x0)[0]
    assert abs(cross).max() < 1e-6
    assert loss_figure(trajs).axes[0].get_yscale() == "log"
    assert len(rank_figure(trajs).axes) == 2
    one = integrate(toy_problem(), None, t_end=0.5, time="linear", n_eval=3)   # k = 1 outputs
    assert isinstance(output_paths_figure([one]), Figure)
    with pytest.raises(TypeError, match="non-empty sequence"):
        loss_figure([])
    with pytest.raises(TypeError, match="non-empty sequence"):
        rank_figure([torch.zeros(2)])
