"""The command line: tables, --json on stdout only, figures, checkpoints and one-line errors."""

import json

import torch
from typer.testing import CliRunner

import lossgeom as lg
from lossgeom.cli import app

runner = CliRunner()


def test_analyze_table():
    res = runner.invoke(app, ["analyze", "--widths", "3,4,1", "--activation", "relu"])
    assert res.exit_code == 0, res.output
    assert "global_minimum" in res.stdout and "4 / 0 / 17" in res.stdout


def test_analyze_json_is_the_report_only():
    res = runner.invoke(app, ["analyze", "--widths", "2,5,3", "--data", "random", "--n", "2",
                              "--loss", "softmax_ce", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["jacobian"]["rank"] == 6
    assert report["hessian"]["rank"] == 4          # rank J − n (§6.4)
    assert report["rank_identity"]["predicted"] is False


def test_analyze_plot(tmp_path):
    png = tmp_path / "spectrum.png"
    res = runner.invoke(app, ["analyze", "--widths", "3,4,1", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 1000


def test_checkpoint_round_trip(tmp_path, monkeypatch):
    (tmp_path / "cli_ckpt_net.py").write_text(
        "import lossgeom\n\ndef make():\n    return lossgeom.mlp([4, 5, 3])\n")
    model = lg.mlp([4, 5, 3])
    torch.save(model.state_dict(), tmp_path / "net.pt")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["analyze", "--checkpoint", "net.pt", "--model", "cli_ckpt_net:make",
                              "--data", "iris", "--n", "10", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    expected = lg.Problem(model, *lg.datasets.load_data("iris", 10)).loss()
    assert abs(report["loss"] - float(expected)) <= 1e-12 * float(expected)
    assert report["kind"] == "noncritical"


def test_unsafe_checkpoint_is_refused(tmp_path, monkeypatch):
    (tmp_path / "cli_ckpt_net2.py").write_text(
        "import lossgeom\n\ndef make():\n    return lossgeom.mlp([4, 5, 3])\n")
    torch.save({"state_dict": lg.mlp([4, 5, 3]), "note": object}, tmp_path / "bad.pt")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["analyze", "--checkpoint", "bad.pt", "--model", "cli_ckpt_net2:make",
                              "--data", "iris", "--n", "10"])
    assert res.exit_code == 2
    assert "weights_only=True" in res.output and "Traceback" not in res.output


def test_errors_are_one_line_and_exit_2():
    res = runner.invoke(app, ["analyze", "--widths", "2,5", "--data", "iris"])
    assert res.exit_code == 2
    assert "input width 2" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["analyze", "--loss", "hinge"])
    assert res.exit_code == 2 and "unknown loss 'hinge'" in res.output
    res = runner.invoke(app, ["analyze", "--checkpoint", "nowhere.pt", "--model", "x:y"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["analyze", "--max-seconds", "0"])
    assert res.exit_code == 2 and "max_seconds must be a positive number" in res.output


def test_max_seconds_reaches_the_lanczos_route():
    res = runner.invoke(app, ["analyze", "--widths", "8,20,20,2", "--data", "random", "--n", "30",
                              "--target", "as_is", "--hessian", "lanczos", "--max-seconds",
                              "0.001", "--json"])
    assert res.exit_code == 0, res.output
    assert "raise max_seconds" in json.loads(res.stdout)["hessian"]["reason"]


def test_json_mode_errors_are_one_json_object_on_stdout():
    res = runner.invoke(app, ["analyze", "--widths", "3,-4,1", "--json"])
    assert res.exit_code == 2
    payload = json.loads(res.stdout)
    assert payload["type"] == "ValueError" and "widths" in payload["error"]
    assert "Traceback" not in res.output


def test_analyze_llc_in_json_and_html(tmp_path):
    page, fig = tmp_path / "r.html", tmp_path / "llc.png"
    res = runner.invoke(app, ["analyze", "--widths", "3,6,1", "--no-bias", "--data", "random",
                              "--n", "4", "--llc", "--json", "--html", str(page),
                              "--llc-plot", str(fig)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    bounds, est = payload["llc"]["bounds"], payload["llc"]["estimate"]
    assert bounds["lower"] == payload["hessian"]["rank"] / 2 == 2.0            # §9.1
    assert bounds["upper"] == payload["n_params"] / 2
    assert est["n_chains"] == 4 and est["mean"] > 0
    assert 'data-field="llc.lower"' in page.read_text() and fig.stat().st_size > 0
