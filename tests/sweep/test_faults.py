"""Failure paths of a sweep: a worker process killed mid-run, an analysis that raises."""

import os
import sqlite3

import pytest

import lossgeom.sweep as sweep
from lossgeom.sweep.backends import DaskBackend, LocalBackend
from lossgeom.sweep.store import Store, read_records
from lossgeom.sweep.worker import drive, run_one

from .sweep_helpers import MARKER_ENV, kill_worker_mid_run, raise_in_analysis

SEEDS = [0, 1, 2, 3]


def _configs(seeds=SEEDS):
    return sweep.spec_from_dict({"sweep": {"seeds": seeds}}).configs()


def _rows(db):
    conn = sqlite3.connect(db)
    try:
        return {r[0]: r for r in conn.execute("SELECT * FROM runs")}
    finally:
        conn.close()


def _check_unexpected(records):
    by_seed = {r["config"]["seed"]: r for r in records}
    assert set(by_seed) == set(SEEDS)
    assert by_seed[0]["status"] == "done" and by_seed[0]["report"]["kind"] == "global_minimum"
    assert by_seed[1]["status"] == "failed" and by_seed[1]["error"] == "RuntimeError: unexpected: boom"
    assert by_seed[2]["status"] == "failed"
    assert by_seed[2]["error"] == "SystemExit: analysis called exit()"
    assert by_seed[3]["status"] == "failed" and by_seed[3]["error"] == "Unexpected: not an Exception"
    for seed in (1, 2, 3):
        assert by_seed[seed]["report"] is None


def test_unexpected_exception_in_analysis_is_a_failed_run():
    _check_unexpected([raise_in_analysis(c) for c in _configs()])


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_unexpected_exceptions_do_not_stop_the_sweep(tmp_path, backend):
    db = tmp_path / "s.sqlite"
    configs = _configs()
    if backend == "local":
        be = LocalBackend(2, fn=raise_in_analysis)
        with Store(db) as store:
            counts = drive(configs, be, store, progress=False)
    else:
        distributed = pytest.importorskip("distributed")
        with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                                dashboard_address=None) as client, \
                DaskBackend(client=client, fn=raise_in_analysis) as be, Store(db) as store:
            counts = drive(configs, be, store, progress=False)
    assert counts == {"done": 1, "failed": 3}
    _check_unexpected(read_records(db))


def test_dask_worker_killed_mid_run(tmp_path, monkeypatch):
    """A worker process dies during a run: the run is retried once; a run that kills every worker
    it meets is stored as failed with the scheduler's reason; finished rows stay as they were."""
    pytest.importorskip("distributed")
    monkeypatch.setenv(MARKER_ENV, str(tmp_path / "killed-once"))
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        store.put(run_one(_configs([0])[0]))
    before = _rows(db)
    with DaskBackend(workers=2, fn=kill_worker_mid_run) as be, Store(db) as store:
        # seed 2 kills its worker once and finishes on the retry; seed 3 runs beside it
        assert drive(_configs([2, 3]), be, store, progress=False) == {"done": 2, "failed": 0}
        # seed 1 kills every worker it meets: after one retry the scheduler gives up on it
        assert drive(_configs([1]), be, store, progress=False) == {"done": 0, "failed": 1}
    after = _rows(db)
    assert {k: after[k] for k in before} == before        # the finished row is untouched
    by_seed = {r["config"]["seed"]: r for r in read_records(db)}
    assert by_seed[1]["status"] == "failed" and by_seed[1]["error"].startswith("KilledWorker")
    assert by_seed[1]["attempts"] == 2 and by_seed[1]["report"] is None
    assert by_seed[2]["status"] == "done" and by_seed[2]["attempts"] == 2  # killed once, retried
    # seed 3 finishes on its first attempt, or on a second if it was queued on the dead worker
    assert by_seed[3]["status"] == "done" and by_seed[3]["attempts"] in (1, 2)
    assert os.path.exists(tmp_path / "killed-once")
    st = sweep.status(db)
    assert (st.done, st.failed) == (3, 1)
