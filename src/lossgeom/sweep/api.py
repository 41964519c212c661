"""The ``lg.sweep`` Python API: ``load``, ``run``, ``status``, ``results``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .._checks import check_option
from ..report import jsonable
from .backends import BACKENDS, make_backend
from .spec import SweepSpec, load, spec_from_dict
from .store import Store, read_excluded, read_plan, read_records, read_statuses
from .worker import drive

__all__ = ["SweepStatus", "load", "results", "run", "status"]


@dataclass(frozen=True)
class SweepStatus:
    """Counts of a sweep database, and what one ``run`` call did.

    Attributes:
        db: The database path.
        name: Name of the last spec run into it ("" if unknown).
        planned: Runs ever planned in this database.
        done: Runs stored as "done".
        failed: Runs stored as "failed".
        remaining: Planned runs with no row yet.
        failures: [{run_id, error, config}] of the failed runs.
        ran: Runs executed by this ``run`` call (0 for ``status``).
        skipped: Runs of the spec skipped because they were already stored (``run`` only).
        excluded: Runs the last spec's filters left out (``[data] skip_constant_labels``);
            never planned, never run.
        excluded_data_seeds: Their distinct data seeds, sorted.
    """

    db: str
    name: str
    planned: int
    done: int
    failed: int
    remaining: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    excluded: int = 0
    excluded_data_seeds: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return jsonable(self.__dict__)


def status(db: str | os.PathLike) -> SweepStatus:
    """Counts and failures of a sweep database (read-only; safe while a sweep runs).

    Args:
        db: The SQLite file written by ``run``.

    Returns:
        A SweepStatus (``ran`` and ``skipped`` are 0).

    Raises:
        ValueError: For a missing file, a file that is not a sweep store, or a newer schema.
    """
    db = os.fspath(db)
    meta, planned = read_plan(db)
    records = read_records(db)
    stored = {r["run_id"] for r in records}
    failures = [{"run_id": r["run_id"], "error": r["error"], "config": r["config"]}
                for r in records if r["status"] == "failed"]
    excluded = read_excluded(db)
    return SweepStatus(db=db, name=meta.get("name", ""), planned=len(set(planned) | stored),
                       done=sum(r["status"] == "done" for r in records), failed=len(failures),
                       remaining=len(set(planned) - stored), failures=failures,
                       excluded=len(excluded),
                       excluded_data_seeds=sorted({e["config"]["data_seed"] for e in excluded}))


def results(db: str | os.PathLike) -> list[dict[str, Any]]:
    """Every stored run as a plain dict (read-only), in plan order.

    Keys: run_id, config, status, report (``Report.to_dict()`` or None), error, seconds,
    finished_at, extras, arrays (names; load them with ``load_arrays(db, run_id)``), attempts,
    worker, versions.

    Args:
        db: The SQLite file written by ``run``.

    Returns:
        A list of records.

    Raises:
        ValueError: For a missing file, a file that is not a sweep store, or a newer schema.
    """
    return read_records(db)


def _as_spec(where: str, spec_or_path: Any) -> SweepSpec:
    if isinstance(spec_or_path, SweepSpec):
        return spec_or_path
    if isinstance(spec_or_path, dict):
        return spec_from_dict(spec_or_path)
    if isinstance(spec_or_path, str | os.PathLike):
        return load(spec_or_path)
    raise TypeError(f"{where}: spec must be a SweepSpec, a dict of tables or a path to a .toml "
                    f"file, got {type(spec_or_path).__name__}.")


def run(spec_or_path: SweepSpec | dict | str | os.PathLike, *, backend: str = "local",
        scheduler: str | None = None, db: str | os.PathLike | None = None,
        workers: int | None = None, retry_failed: bool = False, yes: bool = False,
        progress: bool = True) -> SweepStatus:
    """Run every run of a spec that the database does not hold yet; store each as it finishes.

    Resume: runs stored as "done" are skipped, and so are "failed" ones unless
    ``retry_failed``. A sweep killed at any moment (SIGKILL, power loss) loses only the runs in
    flight; calling ``run`` again finishes the rest.

    The local backend starts worker processes with the spawn method, which re-imports the
    calling script: in a script, call ``run`` under ``if __name__ == "__main__":``.

    Args:
        spec_or_path: A SweepSpec, a dict of tables, or the path of a TOML spec.
        backend: "local" (process pool) or "dask".
        scheduler: Dask scheduler address (tcp://host:8786); None starts a LocalCluster.
        db: The SQLite file; default ``sweep.sqlite`` beside the spec.
        workers: Worker processes (default: the cores of this machine).
        retry_failed: Run again the runs stored as "failed".
        yes: Allow more runs than the theory's ``max_runs``.
        progress: Show a Rich progress bar on stderr.

    Returns:
        The database's SweepStatus after the run, with ``ran`` and ``skipped`` filled in.

    Raises:
        ValueError: For an invalid spec, an unknown backend, a scheduler without the dask
            backend, an unreachable scheduler (nothing written), more runs than ``max_runs``
            without ``yes``, or a database that is not a sweep store or is newer.
        TypeError: For a spec of the wrong type.
    """
    where = "sweep.run(spec)"
    spec = _as_spec(where, spec_or_path)
    check_option(where, "backend", backend, BACKENDS)
    if scheduler and backend != "dask":
        raise ValueError(f"{where}: --scheduler {scheduler!r} applies only to the dask backend. "
                         "Add --backend dask, or drop --scheduler.")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"{where}: workers must be a positive integer or None (the number of "
                         f"cores), got {workers!r}.")
    if spec.n_runs > spec.max_runs and not yes:
        raise ValueError(f"{where}: spec {spec.name!r} expands to {spec.n_runs} runs, above its "
                         f"max_runs = {spec.max_runs}. Pass --yes (yes=True) to run them all, or "
                         "raise [sweep] max_runs.")
    db = os.fspath(db) if db is not None else spec.default_db
    configs, ids = spec.configs(), spec.run_ids()
    stored = read_statuses(db, missing_ok=True)  # refuses a newer schema before any work
    skip = {"done", "failed"} if not retry_failed else {"done"}
    pending = [c for c, i in zip(configs, ids, strict=True) if stored.get(i) not in skip]

    # connect the backend first: an unreachable scheduler leaves no database behind
    be = make_backend(backend, scheduler=scheduler, workers=workers) if pending else None
    try:
        with Store(db) as store:
            store.plan(configs, ids, name=spec.name, excluded=spec.excluded)
            if be is not None:
                drive(pending, be, store, progress=progress, label=spec.name)
    finally:
        if be is not None:
            be.close()
    out = status(db)
    return SweepStatus(**{**out.__dict__, "ran": len(pending),
                          "skipped": len(configs) - len(pending)})
