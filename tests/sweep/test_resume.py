import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import lossgeom.sweep as sweep
from lossgeom.sweep.store import read_records, read_statuses

from .sweep_helpers import write_spec

SLOW_RUNS = """
[sweep]
name = "kill-me"
seeds = 6
[model]
widths = [3, 4, 1]
activation = "tanh"
[analysis]
target = "minimum"
steps = 1500
"""
"""Six runs of Adam + Newton polish, a fraction of a second each: long enough to be killed."""


@pytest.mark.timeout(240)
def test_sigkill_mid_sweep_leaves_a_readable_store_and_resume_finishes(tmp_path):
    path = write_spec(tmp_path, SLOW_RUNS)
    db = str(tmp_path / "s.sqlite")
    code = ("import lossgeom.sweep as s\n"
            "if __name__ == '__main__':\n"
            f"    s.run({path!r}, db={db!r}, workers=1, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                finished = read_statuses(db, missing_ok=True)
            except (ValueError, sqlite3.Error):  # the file exists but is being created
                finished = {}
            if finished:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its worker, like a power cut
        proc.wait()

    # the store is readable and status counts exactly the rows
    rows = read_records(db)
    st = sweep.status(db)
    n_before = len(rows)
    assert 1 <= n_before < 6, "the sweep must be killed mid-run"
    assert (st.planned, st.done, st.failed, st.remaining) == (6, n_before, 0, 6 - n_before)
    assert all(r["status"] == "done" and r["report"]["hessian"] for r in rows)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    # resume runs only the rest
    out = sweep.run(path, db=db, workers=1, progress=False)
    assert (out.ran, out.skipped) == (6 - n_before, n_before)
    assert (out.planned, out.done, out.failed, out.remaining) == (6, 6, 0, 0)
    after = read_records(db)
    ids = [r["run_id"] for r in after]
    assert len(ids) == len(set(ids)) == 6 and set(ids) == set(sweep.load(path).run_ids())
    kept = {r["run_id"]: r["finished_at"] for r in after}
    assert all(kept[r["run_id"]] == r["finished_at"] for r in rows)  # earlier rows untouched
