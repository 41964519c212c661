import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import lossgeom.sweep as sweep
from lossgeom.sweep.store import (
    SCHEMA_VERSION,
    Store,
    arrays_path,
    load_arrays,
    read_plan,
    read_records,
    read_statuses,
)


def _rec(run_id, status="done", **kw):
    rec = {"run_id": run_id, "config": {"seed": int(run_id[-1]) if run_id[-1].isdigit() else 0},
           "status": status, "report": {"kind": "global_minimum"} if status == "done" else None,
           "error": None if status == "done" else "ValueError: boom", "seconds": 0.5,
           "finished_at": "2024-01-01T00:00:00+00:00", "extras": {"x": float("inf")}}
    rec.update(kw)
    return rec


def test_roundtrip_columns_and_json(tmp_path):
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        store.plan([{"seed": 0}, {"seed": 1}, {"seed": 2}], ["r0", "r1", "r2"], name="demo")
        store.put(_rec("r1", "failed"))
        store.put(_rec("r0"))
    recs = read_records(db)
    assert [r["run_id"] for r in recs] == ["r0", "r1"]  # plan order
    assert recs[0]["report"] == {"kind": "global_minimum"} and recs[0]["error"] is None
    assert recs[0]["extras"] == {"x": "inf"}  # non-finite numbers as strings
    assert recs[1]["status"] == "failed" and recs[1]["error"] == "ValueError: boom"
    st = sweep.status(db)
    assert (st.name, st.planned, st.done, st.failed, st.remaining) == ("demo", 3, 1, 1, 1)
    assert st.failures == [{"run_id": "r1", "error": "ValueError: boom", "config": {"seed": 1}}]
    meta, ids = read_plan(db)
    assert ids == ["r0", "r1", "r2"] and meta["name"] == "demo"
    # the fixed columns of the contract
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    assert cols[:7] == ["run_id", "config", "status", "report", "error", "seconds", "finished_at"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_rows_hold_a_status_and_no_sentinels(tmp_path):
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        for bad in (_rec("a", status="running"), _rec("b", "failed", error=None),
                    _rec("c", error="oops")):
            with pytest.raises(ValueError, match="expected \"done\" with no error"):
                store.put(bad)
    # the CHECK constraint holds even for writers that bypass Store.put
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        with conn:
            conn.execute("INSERT INTO runs (run_id, config, status) VALUES ('x', '{}', 'failed')")
    conn.close()
    assert read_statuses(db) == {}


def test_retry_replaces_failed_row(tmp_path):
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        store.put(_rec("a", "failed"))
        store.put(_rec("a", attempts=2))
    (rec,) = read_records(db)
    assert rec["status"] == "done" and rec["error"] is None and rec["attempts"] == 2


def test_arrays_beside_the_db_by_run_id(tmp_path):
    db = tmp_path / "s.sqlite"
    lam = np.array([-1e-16, 0.0, 2.5, 7.0])
    with Store(db) as store:
        store.put(_rec("a", arrays={"hessian_eigenvalues": lam}))
        store.put(_rec("b"))
    assert arrays_path(db, "a") == str(tmp_path / "s.arrays" / "a.npz")
    got = load_arrays(db, "a")
    np.testing.assert_array_equal(got["hessian_eigenvalues"], lam)
    assert load_arrays(db, "b") == {}
    assert [r["arrays"] for r in read_records(db)] == [["hessian_eigenvalues"], []]
    assert os.listdir(tmp_path / "s.arrays") == ["a.npz"]  # no temporary files left


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        store.put(_rec("a"))
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    msg = f"store schema {SCHEMA_VERSION + 1}.*newer than this lossgeom's schema {SCHEMA_VERSION}"
    with pytest.raises(ValueError, match=msg):
        Store(db)
    with pytest.raises(ValueError, match=msg):
        sweep.status(db)
    with pytest.raises(ValueError, match=msg):
        sweep.results(db)


def test_foreign_and_missing_databases_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ValueError, match="not a lossgeom sweep store"):
        Store(other)
    with pytest.raises(ValueError, match="not a lossgeom sweep store"):
        sweep.status(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ValueError, match="cannot"):
        Store(junk)
    with pytest.raises(ValueError, match="no sweep database"):
        sweep.status(tmp_path / "none.sqlite")


_WRITER = """
import os, sys, time
from lossgeom.sweep.store import Store
db, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
with Store(db) as store:
    for i in range(n):
        store.put({"run_id": f"{tag}-{i}", "config": {"seed": i}, "status": "done",
                   "report": {"i": i}, "error": None})
"""


def test_concurrent_writers_lose_nothing(tmp_path):
    db = str(tmp_path / "s.sqlite")
    n, go = 40, tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, db, tag, str(n), str(go)],
                              stdout=subprocess.PIPE, text=True) for tag in ("p", "q")]
    assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
    go.touch()  # all three writers start together; the third one is this process
    with Store(db) as store:
        for i in range(n):
            store.put({"run_id": f"m-{i}", "config": {"seed": i}, "status": "done",
                       "report": {"i": i}, "error": None})
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    recs = read_records(db)
    ids = [r["run_id"] for r in recs]
    assert len(ids) == len(set(ids)) == 3 * n
    assert all(r["report"] == {"i": int(r["run_id"].split("-")[1])} for r in recs)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_reader_sees_committed_rows_while_writer_is_open(tmp_path):
    db = tmp_path / "s.sqlite"
    store = Store(db)
    try:
        store.put(_rec("a"))
        assert read_statuses(db) == {"a": "done"}
        assert json.loads(json.dumps(sweep.status(db).to_dict()))["done"] == 1
    finally:
        store.close()
