"""`lossgeom linear` commands (Typer sub-app) and the linear-network figures."""

import json
import os

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from typer.testing import CliRunner

from lossgeom import linear as ll
from lossgeom.cli.linear import app
from lossgeom.plots import linear as plots

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_classify_json_is_json_only_and_classifies_spec_47_points():
    rows = json.loads(invoke("classify", "--json").stdout)
    kinds = {r["point"]: (r["kind"], r["loss"]) for r in rows}
    assert kinds == {"global_minimum": ("pure", 0.5), "bad_minimum": ("pure", 1.0),
                     "saddle": ("spurious", 1.5)}
    assert all(r["convention"] == "tangent_cone" for r in rows)
    rows = json.loads(invoke("classify", "--json", "--convention", "all_singular").stdout)
    assert {r["point"]: r["kind"] for r in rows}["saddle"] == "pure"


def test_classify_table_and_eckart_young_example():
    out = invoke("classify", "--example", "eckart-young").stdout
    assert "pure" in out and "spurious" in out and "θ = 0" in out


def test_classify_from_files(tmp_path):
    ex = ll.weighted_frobenius_example()
    Q = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
    np.savez(tmp_path / "w.npz", W1=ex.global_minimum[0].numpy(), W2=ex.global_minimum[1].numpy())
    np.savez(tmp_path / "q.npz", Q=Q.numpy())
    rows = json.loads(invoke("classify", "--weights", str(tmp_path / "w.npz"), "--target",
                             str(tmp_path / "q.npz"), "--json").stdout)
    assert len(rows) == 1 and rows[0]["is_critical"] is False and rows[0]["kind"] == "noncritical"
    np.savez(tmp_path / "d.npz", inputs=np.eye(2), targets=np.eye(2))
    rows = json.loads(invoke("classify", "--weights", str(tmp_path / "w.npz"), "--data",
                             str(tmp_path / "d.npz"), "--json").stdout)
    assert rows[0]["is_critical"] is True and rows[0]["pure"] is True  # e₁e₁ᵀ is critical for I


def test_classify_bad_input_is_one_error_line():
    result = runner.invoke(app, ["classify", "--example", "nope"])
    assert result.exit_code == 2
    assert "unknown --example 'nope'" in result.output


def test_landscape_json_and_plot(tmp_path):
    png = tmp_path / "ey.png"
    payload = json.loads(invoke("landscape", "--json", "--rotate", "--plot", str(png)).stdout)
    assert [p["loss"] for p in payload["points"]] == pytest.approx([5, 10, 13, 17, 20, 25])
    assert [p["morse_index"] for p in payload["points"]] == [0, 1, 2, 2, 3, 4]
    assert all(c["agrees"] for c in payload["checks"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f for f in os.listdir(tmp_path)] == ["ey.png"]  # atomic save leaves no temp file


def test_landscape_table_reports_ties():
    result = runner.invoke(app, ["landscape", "--sigma", "3,2,2,1", "--no-check"])
    assert result.exit_code == 0
    assert "not finite" in result.output


def test_bad_minima_json_and_plot(tmp_path):
    png = tmp_path / "bad.png"
    payload = json.loads(invoke("bad-minima", "--runs", "12", "--steps", "1500", "--json",
                                "--plot", str(png)).stdout)
    assert payload["runs"] == 12 and len(payload["final_loss"]) == 12
    assert sum(c["count"] for c in payload["clusters"]) + payload["n_not_converged"] == 12
    assert png.stat().st_size > 0


def test_hessian_rank_json_formula_only_and_measured(tmp_path):
    payload = json.loads(invoke("hessian-rank", "--no-measure", "--json").stdout)
    assert {k: payload["formula"][k] for k in ("outer", "functional", "total")} == {
        "outer": 150, "functional": 175, "total": 250}
    png = tmp_path / "hr.png"
    payload = json.loads(invoke("hessian-rank", "--widths", "4,3,3,2", "--n", "8",
                                "--activations", "linear,tanh", "--json", "--plot",
                                str(png)).stdout)
    lin = [r for r in payload["rows"] if r["activation"] == "linear"]
    assert len(lin) == 3 and all(r["agrees"] for r in lin)
    assert all("tol" in r and "gap" in r for r in payload["rows"])
    assert png.stat().st_size > 0
    table = invoke("hessian-rank", "--widths", "4,3,3,2", "--n", "8").stdout
    assert "gap" in table and "formula" in table


# -- figures: built from result objects, no pyplot state ----------------------------------------
def test_figures_are_plain_figures_without_pyplot_state():
    Q = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    ls, checks = ll.eckart_young_check(Q, 2)
    fig = plots.eckart_young_figure(ls, checks)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 6  # six pure points
    labels = [t.get_text() for t in ax.texts]
    assert "I={0,1}" in labels and "θ = 0" in labels

    comp = ll.hessian_rank_comparison([4, 3, 2], 6, activations=("linear", "relu"))
    fig = plots.hessian_rank_figure(comp)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == 9  # formula + two activations, three parts
    assert heights[:3] == [comp.formula[p] for p in ("outer", "functional", "total")]

    res = ll.bad_minima_experiment(runs=8, steps=1500, seed=3)
    fig = plots.bad_minima_figure(res)
    assert sum(p.get_height() for p in fig.axes[0].patches) == sum(c.count for c in res.clusters)
