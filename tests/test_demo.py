"""The demo job, small: files written, the §6.2/§6.4 cases measured as the theory states."""

import json

from typer.testing import CliRunner

from lossgeom.cli import app
from lossgeom.demo import run_demo, run_trend


def test_demo_writes_report_and_figures(tmp_path):
    result = run_demo(tmp_path, seeds=2, steps=300)
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


def test_trend_counts_add_up():
    cells = run_trend(widths=(2,), seeds=4, steps=400)
    for c in cells:
        assert c.fitted + c.not_fitted == 4
        assert 0 <= c.rank_deficient <= c.fitted
    assert all(c.rank_deficient == 0 for c in cells if c.activation == "tanh")


def test_demo_cli(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--seeds", "1", "--steps", "100"])
    assert res.exit_code == 0, res.output
    assert "relu_dead_pattern_2-3-1" in res.stdout and (tmp_path / "trend.png").exists()
