import json
import os
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

import lossgeom.sweep as sweep
from lossgeom.cli.sweep import app
from lossgeom.sweep.store import SCHEMA_VERSION

from .sweep_helpers import write_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory):
    """A sweep run through the CLI: two exact fits and two runs that fail on NaN data."""
    folder = tmp_path_factory.mktemp("cli")
    np.savez(folder / "nan.npz", inputs=np.full((3, 3), np.nan), targets=np.zeros(3))
    path = write_spec(folder, """
        [sweep]
        name = "cli"
        seeds = [0, 1]
        [model]
        widths = [3, 4, 1]
        [data]
        source = ["cube", "nan.npz"]
        [analysis]
        heldout_outputs = false
    """)
    result = runner.invoke(app, ["run", path, "--workers", "2", "--json"])
    assert result.exit_code == 0, result.output
    st = json.loads(result.stdout)
    assert (st["ran"], st["done"], st["failed"], st["remaining"]) == (4, 2, 2, 0)
    return folder, path, os.path.join(folder, "sweep.sqlite")


def test_report_json_is_json_only(finished_db):
    _, path, db = finished_db
    result = runner.invoke(app, ["report", db, "--json"])
    assert result.exit_code == 0
    runs = json.loads(result.stdout)  # nothing but JSON on stdout
    assert sorted(r["run_id"] for r in runs) == sorted(sweep.load(path).run_ids())
    for r in runs:
        assert {"run_id", "config", "status", "report"} <= set(r)
        if r["status"] == "done":
            assert r["report"]["hessian"]["inertia"] == [4, 0, 17] and r["error"] is None
        else:
            assert r["report"] is None and "non-finite" in r["error"]


def test_status_table_and_json(finished_db):
    _, _, db = finished_db
    result = runner.invoke(app, ["status", db, "--json"])
    st = json.loads(result.stdout)
    assert (st["planned"], st["done"], st["failed"], st["remaining"]) == (4, 2, 2, 0)
    assert all("inputs contain" in f["error"] for f in st["failures"])
    table = runner.invoke(app, ["status", db])
    assert table.exit_code == 0 and "failed runs" in table.stdout


def test_report_tables_and_figures(finished_db, tmp_path):
    _, _, db = finished_db
    result = runner.invoke(app, ["report", db, "--plot", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert "grouped by source" in result.stdout and "nan.npz" in result.stdout
    assert sorted(os.listdir(tmp_path / "figs")) == ["failures.png", "inertia.png", "rank.png"]


def test_rerun_skips_everything_stored(finished_db):
    _, path, _ = finished_db
    result = runner.invoke(app, ["run", path, "--json"])
    st = json.loads(result.stdout)
    assert (st["ran"], st["skipped"]) == (0, 4)


@pytest.mark.parametrize("args, fragment", [
    (["run", "missing.toml"], "no such file"),
    (["run", "{spec}", "--backend", "mpi"], "unknown backend 'mpi'"),
    (["run", "{spec}", "--scheduler", "tcp://127.0.0.1:9"], "applies only to the dask backend"),
    (["status", "{folder}/none.sqlite"], "no sweep database"),
    (["report", "{folder}/none.sqlite", "--json"], "no sweep database"),
])
def test_errors_are_one_line_and_exit_2(finished_db, args, fragment):
    folder, path, _ = finished_db
    args = [a.format(spec=path, folder=folder) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    if "--json" in args:  # one JSON object on stdout, so scripts that parse it get an answer
        assert fragment in json.loads(result.stdout)["error"]
    else:
        assert result.stdout == ""
    assert fragment in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_newer_schema_refused_by_cli(tmp_path):
    db = tmp_path / "new.sqlite"
    with sweep.Store(db):
        pass
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    conn.close()
    result = runner.invoke(app, ["report", str(db), "--json"])
    assert result.exit_code == 2 and "newer than this lossgeom's schema" in result.stderr


def test_report_html_writes_one_self_contained_page(finished_db, tmp_path):
    _, _, db = finished_db
    page = tmp_path / "sweep.html"
    result = runner.invoke(app, ["report", db, "--html", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text
