"""to_frame: one row per stored run, every config and report leaf a column, the stored values."""

import math
import subprocess
import sys

import pandas as pd
import pytest

import lossgeom as lg
import lossgeom.sweep as sweep
from lossgeom.sweep.frame import to_frame
from lossgeom.sweep.store import Store, read_records
from lossgeom.sweep.summary import summarize
from lossgeom.sweep.worker import run_one

FAILED_ID = "f" * 64


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("frame") / "s.sqlite"
    spec = sweep.spec_from_dict({"sweep": {"name": "frame", "seeds": [0, 1]},
                                 "model": {"widths": [[3, 4, 1], [3, 6, 1]]}})
    configs, ids = spec.configs(), spec.run_ids()
    bad = {**configs[0], "widths": [3, 2, 1]}
    with Store(path) as store:
        store.plan(configs + [bad], ids + [FAILED_ID], name=spec.name)
        for c in configs:
            store.put(run_one(c))
        store.put({"run_id": FAILED_ID, "config": bad, "status": "failed", "seconds": 0.25,
                   "error": "ValueError: no exact fit"})
    return path


def _leaves(value, path=()):
    """(dotted name, value) of every leaf of a stored report, an inertia as its three counts."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    elif path[-1] == "inertia" and isinstance(value, list):
        for name, count in zip(("positive", "negative", "zero"), value, strict=True):
            yield ".".join(path + (name,)), count
    else:
        yield ".".join(path), value


def _same(cell, stored) -> bool:
    if stored is None:
        return cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell))
    if isinstance(stored, str) and stored in ("inf", "-inf", "nan") and isinstance(cell, float):
        return math.isnan(cell) if stored == "nan" else cell == float(stored)
    if isinstance(stored, list):
        return list(cell) == stored
    return cell == stored


def test_every_stored_value_is_a_cell(db):
    df, records = to_frame(db), read_records(db)
    assert len(df) == len(records) == 5
    assert list(df["run_id"]) == [r["run_id"] for r in records]  # plan order
    assert df.columns[0] == "run_id"
    assert list(df.columns[-5:]) == ["status", "seconds", "error", "attempts", "finished_at"]
    for i, rec in enumerate(records):
        row = df.iloc[i]
        assert row["widths"] == ",".join(map(str, rec["config"]["widths"]))
        for key, stored in rec["config"].items():
            if key == "widths":
                continue
            col = f"config.{key}" if key in ("loss", "reduction") else key
            assert _same(row[col], stored), (key, row[col], stored)
        assert row["status"] == rec["status"] and _same(row["seconds"], rec["seconds"])
        if rec["status"] == "failed":
            assert row["error"] == "ValueError: no exact fit"
            assert row["jacobian.rank"] is pd.NA and math.isnan(row["loss"])
            continue
        assert row["error"] is pd.NA
        for key, stored in _leaves(rec["report"]):
            assert key in df.columns, key
            assert _same(row[key], stored), (key, row[key], stored)


def test_columns_have_the_types_of_their_values(db):
    df = to_frame(db)
    assert df["jacobian.rank"].dtype == "Int64" and df["hessian.inertia.zero"].dtype == "Int64"
    assert df["jacobian.decided"].dtype == "boolean" and df["bias"].dtype == "boolean"
    assert df["jacobian.gap"].dtype == "float64" and df["loss"].dtype == "float64"
    # rank J = n·k = 4 < N at these exact fits, so nothing is dropped: the gap is inf, not "inf"
    done = df[df["status"] == "done"]
    assert (done["jacobian.rank"] == 4).all() and (done["jacobian.gap"] == math.inf).all()
    # §6.1 at an MSE fit: rank ∇²L = rank J, the rest zero: N − 4 zero eigenvalues
    assert (done["hessian.inertia.zero"] == done["n_params"] - 4).all()
    assert set(done["kind"]) == {"global_minimum"}
    assert df.loc[df["status"] == "done", "config.loss"].eq("mse").all()


def test_groupby_agrees_with_the_sweep_summary(db):
    df, records = to_frame(db), read_records(db)
    table = df[df["status"] == "done"].groupby("widths")["jacobian.rank"].mean()
    rows = {",".join(map(str, r["group"]["widths"])): r for r in summarize(records, by=["widths"])}
    for widths, mean in table.items():
        assert mean == pytest.approx(rows[widths]["rank_j_mean"])
    assert rows["3,2,1"]["failed"] == (df["widths"] == "3,2,1").sum() == 1
    counts = df.groupby("widths")["status"].value_counts().unstack(fill_value=0)
    for widths, r in rows.items():
        assert counts.loc[widths].get("done", 0) == r["done"]


def test_empty_and_missing_stores(tmp_path):
    empty = tmp_path / "e.sqlite"
    Store(empty).close()
    df = to_frame(empty)
    assert len(df) == 0 and list(df.columns) == ["run_id", "status", "seconds", "error",
                                                 "attempts", "finished_at"]
    with pytest.raises(ValueError, match="no sweep database"):
        to_frame(tmp_path / "missing.sqlite")


def test_exported_from_the_sweep_package():
    assert lg.sweep.to_frame is to_frame and "to_frame" in lg.sweep.__all__


def test_importing_the_sweep_package_does_not_load_pandas():
    code = "import sys, lossgeom.sweep; sys.exit('pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
