"""SQLite store of a sweep: one row per finished run, written in one transaction each.

Schema (version ``SCHEMA_VERSION``)::

    schema_version(version INTEGER, library TEXT, created_at TEXT)       one row
    meta(key TEXT PRIMARY KEY, value TEXT)                               name, excluded runs, ...
    plan(run_id TEXT PRIMARY KEY, config TEXT, position INTEGER)         every run ever planned
    runs(run_id TEXT PRIMARY KEY, config TEXT, status TEXT, report TEXT, error TEXT,
         seconds REAL, finished_at TEXT, extras TEXT, arrays TEXT, attempts INTEGER,
         worker TEXT, versions TEXT)

``runs.status`` is "done" (``error`` NULL) or "failed" (``error`` the reason); a CHECK constraint
holds every row to that, so no sentinel value ever stands for a missing result. Arrays (spectra)
go to ``<db stem>.arrays/<run_id>.npz`` beside the database, written atomically before the row
that names them commits.

NOTE [crash safety]
    The database runs in WAL mode with ``synchronous=FULL``: a committed row survives SIGKILL and
    power loss, and a killed writer leaves at most an uncommitted transaction, which SQLite rolls
    back. A row exists only once its run finished, so after a crash ``status`` counts exactly the
    finished runs and ``sweep run`` resumes with the rest. Writes take the lock up front
    (``BEGIN IMMEDIATE``) and wait up to ``BUSY_TIMEOUT_S`` for it (the switch to WAL is retried
    for as long, see ``_enter_wal``), so several writers never corrupt or lose rows (the sweep
    itself writes from the coordinating process only).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import numpy as np

from .._files import write_atomically
from ..report import jsonable

__all__ = ["BUSY_TIMEOUT_S", "SCHEMA_VERSION", "Store", "arrays_path", "load_arrays",
           "read_excluded", "read_plan", "read_records", "read_statuses"]

SCHEMA_VERSION = 1
"""Version of the store layout written by this code; newer databases are refused."""

BUSY_TIMEOUT_S = 60.0
"""Seconds a writer waits for the database lock before giving up."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL, library TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plan (
    run_id TEXT PRIMARY KEY, config TEXT NOT NULL, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK ((status = 'done' AND error IS NULL)
                                OR (status = 'failed' AND error IS NOT NULL)),
    report TEXT,
    error TEXT,
    seconds REAL,
    finished_at TEXT,
    extras TEXT,
    arrays TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    worker TEXT,
    versions TEXT);
"""

_COLUMNS = ("run_id", "config", "status", "report", "error", "seconds", "finished_at", "extras",
            "arrays", "attempts", "worker", "versions")


def _library() -> str:
    try:
        return f"lossgeom {metadata.version('lossgeom')}"
    except metadata.PackageNotFoundError:
        return "lossgeom"


def arrays_path(db: str | os.PathLike, run_id: str) -> str:
    """Where a run's arrays live: ``<db stem>.arrays/<run_id>.npz`` beside the database."""
    db = os.fspath(db)
    return os.path.join(os.path.splitext(db)[0] + ".arrays", f"{run_id}.npz")


def _save_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    write_atomically(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def _check_schema(conn: sqlite3.Connection, where: str, path: str) -> None:
    """Refuse a database that is not a sweep store or was written by a newer schema.

    Raises:
        ValueError: For foreign tables, or a schema version above ``SCHEMA_VERSION``.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        if tables:
            raise ValueError(f"{where}: {path!r} is an SQLite database but not a lossgeom sweep "
                             f"store (tables {sorted(tables)}). Use another --db path.")
        return
    row = conn.execute("SELECT version, library FROM schema_version").fetchone()
    if row is not None and row[0] > SCHEMA_VERSION:
        raise ValueError(f"{where}: {path!r} was written by store schema {row[0]} ({row[1]}), "
                         f"newer than this lossgeom's schema {SCHEMA_VERSION}. Upgrade lossgeom "
                         "(pip install -U lossgeom) to read or extend it.")


def _enter_wal(conn: sqlite3.Connection) -> None:
    """Switch ``conn``'s database to WAL, waiting up to ``BUSY_TIMEOUT_S`` for the other openers.

    Two connections that switch a new database at once deadlock on the lock upgrade, and SQLite
    then answers "database is locked" at once instead of calling the busy handler; so the switch
    is retried here, with growing pauses, until the deadline.

    Raises:
        sqlite3.OperationalError: Past the deadline, or for any error other than a lock.
    """
    deadline, pause = time.monotonic() + BUSY_TIMEOUT_S, 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.25)


def _connect_ro(path: str, where: str) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``) to an existing sweep store.

    Raises:
        ValueError: For a missing file, a non-store, a newer schema or an unreadable file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{where}: no sweep database at {path!r}. Run `lossgeom sweep run "
                         "SPEC.toml` first, or pass the --db it wrote.")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
        _check_schema(conn, where, path)
    except sqlite3.DatabaseError as err:
        raise ValueError(f"{where}: cannot read {path!r} as a sweep database ({err}).") from None
    return conn


class Store:
    """Writer of a sweep database (create, plan, one transaction per finished run).

    Args:
        path: The SQLite file; created with its folder if missing.

    Raises:
        ValueError: If the file is not a sweep store, cannot be opened, or was written by a
            newer schema version.

    Example:
        >>> import tempfile, os
        >>> from lossgeom.sweep.store import Store, read_records
        >>> db = os.path.join(tempfile.mkdtemp(), "s.sqlite")
        >>> with Store(db) as s:
        ...     s.put({"run_id": "a", "config": {"seed": 0}, "status": "failed", "error": "boom"})
        >>> [(r["run_id"], r["status"], r["error"]) for r in read_records(db)]
        [('a', 'failed', 'boom')]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        where = f"Store({self.path!r})"
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            _check_schema(self._conn, where, self.path)
            _enter_wal(self._conn)
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                if self._conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
                    self._conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                                       (SCHEMA_VERSION, _library(), _dt.datetime.now(
                                           _dt.UTC).isoformat(timespec="seconds")))
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{where}: cannot open {self.path!r} as a sweep database ({err}). "
                             "Use another --db path.") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def plan(self, configs: list[dict[str, Any]], run_ids: list[str], *,
             name: str | None = None, excluded: list[dict[str, Any]] | tuple = ()) -> None:
        """Record the runs a sweep means to finish (one transaction; existing ones kept).

        Args:
            configs: Resolved configs.
            run_ids: Their ``config_hash`` values.
            name: The sweep's name, kept in ``meta``.
            excluded: Runs the spec's filters left out ({run_id, config, reason} each), kept
                in ``meta`` as "excluded" (the last spec's; ``read_excluded``).
        """
        with self._transaction():
            start = self._conn.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM plan").fetchone()[0]
            self._conn.executemany(
                "INSERT OR IGNORE INTO plan (run_id, config, position) VALUES (?, ?, ?)",
                [(i, json.dumps(c, sort_keys=True), start + j)
                 for j, (i, c) in enumerate(zip(run_ids, configs, strict=True))])
            if name is not None:
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('name', ?)", (name,))
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('excluded', ?)",
                                   (json.dumps(list(excluded), sort_keys=True),))

    def put(self, record: dict[str, Any]) -> None:
        """Write one finished run: its arrays (atomically), then its row (one transaction).

        A run already stored is replaced (a failed run retried with ``retry_failed``).

        Args:
            record: A record from ``run_one`` (keys run_id, config, status, error at least).

        Raises:
            ValueError: For a status other than "done"/"failed", or "failed" without an error.
        """
        status, error = record.get("status"), record.get("error")
        if status not in ("done", "failed") or (status == "failed") != (error is not None):
            raise ValueError(f"Store.put(record): run {record.get('run_id')!r} has status "
                             f"{status!r} and error {error!r}; expected \"done\" with no error or "
                             "\"failed\" with its error text.")
        arrays = record.get("arrays") or {}
        if arrays:
            _save_npz_atomic(arrays_path(self.path, record["run_id"]), arrays)

        def js(key: str) -> str | None:
            value = record.get(key)
            return None if value is None else json.dumps(jsonable(value), sort_keys=True)

        row = (record["run_id"], json.dumps(record["config"], sort_keys=True), status, js("report"),
               error, record.get("seconds"), record.get("finished_at"), js("extras"),
               json.dumps(sorted(arrays)) if arrays else None, int(record.get("attempts", 1)),
               record.get("worker"), js("versions"))
        with self._transaction():
            self._conn.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})", row)

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed into the database file)."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_statuses(path: str | os.PathLike, *, missing_ok: bool = False) -> dict[str, str]:
    """run_id → status of every stored run (read-only).

    Args:
        path: The database.
        missing_ok: Return {} for a database that does not exist yet.

    Returns:
        A dict of run ids to "done" or "failed".

    Raises:
        ValueError: For a missing file (unless ``missing_ok``), a non-store or a newer schema.
    """
    where = f"read_statuses({os.fspath(path)!r})"
    if missing_ok and not os.path.exists(path):
        return {}
    conn = _connect_ro(path, where)
    try:
        if not _has_runs(conn):
            return {}
        return dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    finally:
        conn.close()


def _has_runs(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'"
                        ).fetchone() is not None


def read_plan(path: str | os.PathLike) -> tuple[dict[str, str], list[str]]:
    """(meta, planned run ids in plan order), read-only.

    Raises:
        ValueError: For a missing file, a non-store or a newer schema.
    """
    conn = _connect_ro(path, f"read_plan({os.fspath(path)!r})")
    try:
        if not _has_runs(conn):
            return {}, []
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        ids = [r[0] for r in conn.execute("SELECT run_id FROM plan ORDER BY position")]
        return meta, ids
    finally:
        conn.close()


def read_excluded(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Runs the last spec's filters left out, [{run_id, config, reason}] (read-only).

    Raises:
        ValueError: For a missing file, a non-store or a newer schema.
    """
    meta, _ = read_plan(path)
    return json.loads(meta.get("excluded", "[]"))


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every stored run as a plain dict (read-only), in plan order, then by finish time.

    Each dict has the ``runs`` columns with JSON decoded: run_id, config, status, report,
    error, seconds, finished_at, extras, arrays (names of the arrays in the .npz), attempts,
    worker, versions.

    Raises:
        ValueError: For a missing file, a non-store or a newer schema.
    """
    conn = _connect_ro(path, f"read_records({os.fspath(path)!r})")
    try:
        if not _has_runs(conn):
            return []
        rows = conn.execute(
            f"SELECT {', '.join('r.' + c for c in _COLUMNS)} FROM runs r "
            "LEFT JOIN plan p ON p.run_id = r.run_id "
            "ORDER BY p.position IS NULL, p.position, r.finished_at").fetchall()
    finally:
        conn.close()
    out = []
    for row in rows:
        rec = dict(zip(_COLUMNS, row, strict=True))
        for key in ("config", "report", "extras", "arrays", "versions"):
            if rec[key] is not None:
                rec[key] = json.loads(rec[key])
        rec["extras"] = rec["extras"] or {}
        rec["arrays"] = rec["arrays"] or []
        out.append(rec)
    return out


def load_arrays(path: str | os.PathLike, run_id: str) -> dict[str, np.ndarray]:
    """The arrays stored for one run (e.g. "hessian_eigenvalues"), {} if it has none.

    Args:
        path: The database.
        run_id: The run's id.

    Returns:
        name → float64 array.
    """
    file = arrays_path(path, run_id)
    if not os.path.isfile(file):
        return {}
    with np.load(file, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
