import json
import os

import numpy as np
import pytest

import lossgeom.sweep as sweep
from lossgeom.sweep import api, backends
from lossgeom.sweep.backends import DaskBackend, LocalBackend, make_backend
from lossgeom.sweep.store import Store, read_records
from lossgeom.sweep.worker import drive, run_one

from .sweep_helpers import MARKER_ENV, TINY, crash_in_worker, write_spec


def _geometry(rec):
    rep = rec["report"]
    return (rec["status"], rep["jacobian"]["rank"], tuple(rep["hessian"]["inertia"]), rep["kind"])


def test_local_and_dask_give_the_same_records(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = write_spec(tmp_path, TINY)
    local = sweep.run(path, db=tmp_path / "local.sqlite", workers=2, progress=False)
    assert (local.ran, local.done, local.failed, local.remaining) == (4, 4, 0, 0)

    spec = sweep.load(path)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client, \
            DaskBackend(client=client) as backend, Store(tmp_path / "dask.sqlite") as store:
        store.plan(spec.configs(), spec.run_ids(), name=spec.name)
        counts = drive(spec.configs(), backend, store, progress=False)
    assert counts == {"done": 4, "failed": 0}

    a = {r["run_id"]: r for r in read_records(tmp_path / "local.sqlite")}
    b = {r["run_id"]: r for r in read_records(tmp_path / "dask.sqlite")}
    assert set(a) == set(b) == set(spec.run_ids())  # run ids do not depend on the backend
    for rid in a:
        assert a[rid]["config"] == b[rid]["config"]
        assert _geometry(a[rid]) == _geometry(b[rid])
        np.testing.assert_allclose(a[rid]["report"]["hessian"]["top_eigenvalues"],
                                   b[rid]["report"]["hessian"]["top_eigenvalues"], rtol=1e-8)


class InProcess:
    """A backend that runs configs in this process (for tests of the resume logic)."""

    def __init__(self):
        self.ran = []

    def map_unordered(self, configs):
        for cfg in configs:
            self.ran.append(cfg)
            yield run_one(cfg)

    def close(self):
        pass


def test_failed_runs_are_stored_then_skipped_then_retried(tmp_path, monkeypatch):
    backend = InProcess()
    monkeypatch.setattr(api, "make_backend", lambda *a, **k: backend)
    np.savez(tmp_path / "good.npz", inputs=np.eye(3) * 2 - 1, targets=np.array([0., 1., 1.]))
    np.savez(tmp_path / "nan.npz", inputs=np.full((3, 3), np.nan), targets=np.zeros(3))
    path = write_spec(tmp_path, """
        [sweep]
        seeds = [0, 1]
        [model]
        widths = [3, 4, 1]
        [data]
        source = ["nan.npz", "good.npz"]
    """)
    st = sweep.run(path, progress=False)
    assert (st.ran, st.done, st.failed, st.remaining, st.planned) == (4, 2, 2, 0, 4)
    for f in st.failures:
        assert f["config"]["source"].endswith("nan.npz")
        assert f["error"].startswith("ValueError: Problem(model, inputs, targets): inputs contain")
    # a plain rerun skips failed runs; retry_failed runs exactly them again
    again = sweep.run(path, progress=False)
    assert (again.ran, again.skipped, again.failed) == (0, 4, 2)
    backend.ran.clear()
    retried = sweep.run(path, retry_failed=True, progress=False)
    assert (retried.ran, retried.skipped, retried.failed, retried.done) == (2, 2, 2, 2)
    assert sorted(sweep.config_hash(c) for c in backend.ran) == sorted(f["run_id"]
                                                                       for f in st.failures)


def test_unreachable_scheduler_writes_nothing(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(backends, "SCHEDULER_TIMEOUT_S", 1.0)
    path = write_spec(tmp_path, TINY)
    with pytest.raises(ValueError, match=r"cannot reach the Dask scheduler at 'tcp://127\.0\.0"):
        sweep.run(path, backend="dask", scheduler="tcp://127.0.0.1:9", progress=False)
    assert not os.path.exists(tmp_path / "sweep.sqlite")


def test_backend_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'slurm'.*'local', 'dask'"):
        make_backend("slurm")
    with pytest.raises(ValueError, match="--scheduler 'tcp://x:1' applies only to the dask"):
        make_backend("local", scheduler="tcp://x:1")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        LocalBackend(0)
    path = write_spec(tmp_path, TINY)
    with pytest.raises(ValueError, match="unknown backend"):
        sweep.run(path, backend="mpi", progress=False)


def test_dead_worker_is_retried_once_then_failed(tmp_path, monkeypatch):
    monkeypatch.setenv(MARKER_ENV, str(tmp_path / "crashed-once"))
    spec = sweep.spec_from_dict({"sweep": {"seeds": [1, 3]}})
    with Store(tmp_path / "s.sqlite") as store:
        counts = drive(spec.configs(), LocalBackend(2, fn=crash_in_worker), store, progress=False)
    assert counts == {"done": 1, "failed": 1}
    by_seed = {r["config"]["seed"]: r for r in read_records(tmp_path / "s.sqlite")}
    assert by_seed[1]["status"] == "failed" and by_seed[1]["attempts"] == 2
    assert by_seed[1]["error"].startswith("WorkerDied: the worker process running this config "
                                          "died twice")
    # the run that shared the pool finishes, on its first attempt or on its retry alone
    assert by_seed[3]["status"] == "done" and by_seed[3]["attempts"] in (1, 2)


@pytest.mark.slow
def test_worker_that_dies_once_finishes_on_its_retry(tmp_path, monkeypatch):
    monkeypatch.setenv(MARKER_ENV, str(tmp_path / "crashed-once"))
    # seed 2 runs alone in the second round (after 1 and 3), so its first attempt is its crash
    spec = sweep.spec_from_dict({"sweep": {"seeds": [1, 3, 2]}})
    with Store(tmp_path / "s.sqlite") as store:
        counts = drive(spec.configs(), LocalBackend(2, fn=crash_in_worker), store, progress=False)
    assert counts == {"done": 2, "failed": 1}
    by_seed = {r["config"]["seed"]: r for r in read_records(tmp_path / "s.sqlite")}
    assert by_seed[1]["status"] == "failed"
    assert by_seed[2]["status"] == "done" and by_seed[2]["attempts"] == 2
    assert os.path.exists(tmp_path / "crashed-once")


def test_yes_allows_more_runs_than_max_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "make_backend", lambda *a, **k: InProcess())
    path = write_spec(tmp_path, """
        [sweep]
        seeds = 3
        max_runs = 2
    """)
    with pytest.raises(ValueError, match="above its max_runs = 2"):
        sweep.run(path, progress=False)
    assert not os.path.exists(tmp_path / "sweep.sqlite")
    st = sweep.run(path, yes=True, progress=False)
    assert (st.ran, st.done, st.db) == (3, 3, str(tmp_path / "sweep.sqlite"))


def test_sweep_on_a_jobqueue_cluster(tmp_path):
    """The documented SLURM/PBS route: a dask-jobqueue cluster, `--backend dask --scheduler ADDR`.

    dask-jobqueue's LocalCluster submits its job scripts to local processes instead of a batch
    system; everything else (job script, `dask worker` processes, scheduler address) is the route
    a SLURMCluster or PBSCluster takes.
    """
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue.local import LocalCluster as JobCluster
    from typer.testing import CliRunner

    from lossgeom.cli.sweep import app

    path = write_spec(tmp_path, TINY)
    with JobCluster(cores=1, processes=1, memory="2GiB", walltime="00:10:00",
                    silence_logs="error") as cluster:
        cluster.scale(jobs=2)
        assert "dask_worker" in cluster.job_script() or "dask-worker" in cluster.job_script()
        res = CliRunner().invoke(app, ["run", path, "--backend", "dask", "--scheduler",
                                       cluster.scheduler_address, "--json"])
        assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    assert (st["ran"], st["done"], st["failed"], st["remaining"]) == (4, 4, 0, 0)
    records = read_records(tmp_path / "sweep.sqlite")
    assert all(r["worker"].split(":")[-1] != str(os.getpid()) for r in records)  # in the jobs
    local = {r["run_id"]: _geometry(r) for r in (run_one(c) | {"run_id": i} for c, i in
                                                 zip(sweep.load(path).configs(),
                                                     sweep.load(path).run_ids(), strict=True))}
    assert {r["run_id"]: _geometry(r) for r in records} == local
