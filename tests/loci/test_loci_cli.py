"""``lossgeom loci …`` and ``lossgeom manifold …``: tables, --json on stdout only, figures, errors."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from lossgeom.cli.loci import app as loci_app
from lossgeom.cli.manifold import app as manifold_app
from lossgeom.loci import growth_table
from lossgeom.manifold import walk
from lossgeom.plots.loci import growth_figure, walk_figure

from .helpers import gaussian_problem

runner = CliRunner()


def test_star_json_matches_the_spec_table():
    res = runner.invoke(loci_app, ["star", "--layer", "2", "--rtol", "1e-9", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["locus"] == "S_2" and report["locus_dimension"] == 36
    assert report["measured"]["inertia"] == [5, 4, 61] and report["agrees"] is True


def test_core_table_and_no_bias_convention():
    res = runner.invoke(loci_app, ["core", "--layers", "1,2", "--widths", "3,4,5,3,2",
                                   "--no-bias", "--rtol", "1e-9"])
    assert res.exit_code == 0, res.output
    assert "C_{1,2}" in res.stdout and "(0, 0, 53)" in res.stdout and "A (no biases)" in res.stdout


def test_dead_pair_is_labelled():
    res = runner.invoke(loci_app, ["dead-pair", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["locus"] == "dead pair (1, 2)" and report["critical"] is True
    assert "not Cooper's star locus" in report["prediction_reason"]


def test_locate_point_from_file(tmp_path):
    problem = gaussian_problem([3, 4, 5, 4, 1], bias=False)
    path = tmp_path / "theta.npy"
    np.save(path, np.zeros(problem.n_params))
    res = runner.invoke(loci_app, ["locate", "--point", str(path), "--no-bias", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["locus"] == "S_{1,2,3}" and report["measured"]["inertia"] == [0, 0, 56]
    res = runner.invoke(loci_app, ["locate", "--point", str(path), "--json"])
    assert res.exit_code == 2 and "shape (56,)" in res.stderr       # (B) has N = 70
    np.save(path, np.zeros(3))
    res = runner.invoke(loci_app, ["locate", "--point", str(path)])
    assert res.exit_code == 2 and "shape (3,)" in res.output


def test_slice_and_bound_json():
    res = runner.invoke(loci_app, ["slice", "--widths", "3,5,3", "--rtol", "1e-9", "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["dim_ker_q"] == 15 and s["inertia"] == [18, 15, 5]
    assert s["cor_5_16"]["counterexample"] is True and "kernel_basis" not in s
    res = runner.invoke(loci_app, ["bound", "--json"])
    assert res.exit_code == 0, res.output
    b = json.loads(res.stdout)
    assert (b["m"], b["bound"], b["n_zero_eigenvalues"]) == (117, 54, 84)


def test_growth_and_walk_figures(tmp_path):
    png = tmp_path / "growth.png"
    res = runner.invoke(loci_app, ["growth", "--depth", "3", "--widths", "2,4", "--n", "4",
                                   "--plot", str(png), "--json"])
    assert res.exit_code == 0, res.output
    table = json.loads(res.stdout)
    assert [r["width"] for r in table["rows"]] == [2, 4] and png.stat().st_size > 1000
    png = tmp_path / "walk.png"
    res = runner.invoke(manifold_app, ["walk", "--steps", "4", "--inertia-every", "2",
                                       "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "completed" in res.stdout and png.stat().st_size > 1000


def test_attract_json_and_figure(tmp_path):
    png = tmp_path / "attract.png"
    res = runner.invoke(loci_app, ["attract", "--runs", "2", "--steps", "30", "--scales",
                                   "1e-4,0.5", "--plot", str(png), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["scales"] == [1e-4, 0.5] and result["stayed_fraction"][0] == 1.0
    assert png.stat().st_size > 1000
    res = runner.invoke(loci_app, ["attract", "--scales", "big"])
    assert res.exit_code == 2 and "--scales must look like" in res.stderr


def test_manifold_dimension_and_level_set_note():
    res = runner.invoke(manifold_app, ["dimension", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["inertia"] == [4, 0, 20] and m["dimension"] == 20
    res = runner.invoke(manifold_app, ["walk", "--point", "init", "--steps", "2", "--json",
                                       "--inertia-every", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["level_set"] == "behavior level set"
    assert "not a perfect fit" in res.stderr


def test_errors_are_one_line_with_exit_2():
    for app, args, text in (
            (loci_app, ["star", "--layer", "9"], "hidden layer 9 is outside"),
            (loci_app, ["core", "--layers", "2,2"], "must be distinct"),
            (loci_app, ["locate", "--point", "star:1,2"], "expected 1 comma-separated"),
            (loci_app, ["locate", "--point", "middle"], "--point must be one of"),
            (loci_app, ["slice", "--point", "init", "--require-critical"], "not critical"),
            (manifold_app, ["dimension", "--point", "init"], "not critical"),
            (manifold_app, ["walk", "--route", "magic"], "unknown route")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert text in res.stderr and "Traceback" not in res.output
        assert len(res.stderr.strip().splitlines()) <= 3


def test_figures_from_result_objects():
    table = growth_table(3, [2, 3], measure_max_params=100)
    assert len(growth_figure(table).axes) == 2
    problem = gaussian_problem([3, 6, 1], n=4)
    w = walk(problem, steps=2, inertia_every=1)
    fig = walk_figure(w)
    assert len(fig.axes) == 4 and "behavior level set" in fig._suptitle.get_text()
    assert torch.is_tensor(w.theta)
