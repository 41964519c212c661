"""Where runs execute: a local process pool, or a Dask ``distributed`` cluster.

Both backends map resolved configs to records with the same pure function (``run_one``), so
a spec gives the same records on either; run ids come from the configs alone. Workers receive
configs (small dicts), never models or problems, and run with one torch thread each.

NOTE [worker death]
    LocalBackend keeps at most ``workers`` runs in flight, so when a worker process dies
    (killed, out of memory, a crash in native code) the suspects are exactly the runs that were
    in flight. Each suspect is retried once on its own, in a fresh one-process pool: a run that
    kills its worker again is stored as failed with that reason, and the innocent ones finish
    normally. Dask retries tasks of lost workers itself; the cluster this backend starts allows
    one retry (``distributed.scheduler.allowed-failures = 1``), after which the run is stored as
    failed with the scheduler's reason (``KilledWorker``). The record's ``attempts`` counts the
    worker deaths the scheduler saw for the run, plus one when it finished.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .spec import config_hash
from .worker import error_text, failed_record, run_one

__all__ = ["BACKENDS", "DaskBackend", "LocalBackend", "default_workers", "make_backend"]

BACKENDS = ("local", "dask")

SCHEDULER_TIMEOUT_S = 10.0
"""Seconds ``DaskBackend`` waits for a scheduler given by address before giving up."""

RunFn = Callable[[dict[str, Any]], dict[str, Any]]


def default_workers() -> int:
    """CPU cores this process may use (``os.sched_getaffinity`` where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    """Process-pool initializer: one torch thread per worker process."""
    import torch

    torch.set_num_threads(1)


def _check_workers(where: str, workers: int | None) -> int | None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"{where}: workers must be a positive integer or None (the number of "
                         f"cores), got {workers!r}.")
    return workers


class LocalBackend:
    """A process pool on this machine (spawn context, one torch thread per worker).

    Args:
        workers: Number of worker processes; default ``default_workers()``.
        fn: The run function, a picklable top-level callable config → record.

    Raises:
        ValueError: For a workers value that is not a positive integer.
    """

    def __init__(self, workers: int | None = None, *, fn: RunFn = run_one):
        self.workers = _check_workers("LocalBackend(workers)", workers) or default_workers()
        self.fn = fn

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                   mp_context=multiprocessing.get_context("spawn"))

    def _round(self, queue: deque, suspects: list) -> Iterator[dict[str, Any]]:
        """Run the queue on one pool until it is empty or the pool breaks.

        On a break, the runs in flight move to ``suspects`` (NOTE [worker death]).

        Yields:
            Records of the runs that finished, in completion order.

        Raises:
            KeyboardInterrupt: Passed on (every other error of a run is a failed record).
        """
        size = min(self.workers, len(queue))
        pool = self._pool(size)
        in_flight: dict[Future, dict[str, Any]] = {}
        try:
            while queue or in_flight:
                broken = False
                while queue and len(in_flight) < size:
                    try:
                        in_flight[pool.submit(self.fn, queue[0])] = queue[0]
                    except BrokenProcessPool:
                        broken = True
                        break
                    queue.popleft()
                if not broken:
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        cfg = in_flight.pop(fut)
                        try:
                            rec = fut.result()
                        except BrokenProcessPool:
                            suspects.append(cfg)
                            broken = True
                            continue
                        except KeyboardInterrupt:
                            raise
                        except BaseException as err:  # NOTE [failed runs]; or pickling
                            rec = failed_record(cfg, error_text(err))
                        yield rec
                if broken:  # every run still in flight was lost with the pool
                    suspects.extend(in_flight.values())
                    return
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _isolated(self, pool: ProcessPoolExecutor | None, cfg: dict[str, Any]
                  ) -> tuple[dict[str, Any], ProcessPoolExecutor | None]:
        """Second attempt of a run whose worker died, alone in a one-process pool.

        Returns the record and the pool if it survived (None if this run killed it too).

        Raises:
            KeyboardInterrupt: Passed on (every other error of a run is a failed record).
        """
        start = time.perf_counter()
        pool = pool or self._pool(1)
        try:
            rec = pool.submit(self.fn, cfg).result()
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            return failed_record(
                cfg, "WorkerDied: the worker process running this config died twice (first "
                "attempt and one retry alone); the run may exhaust memory or crash the "
                "interpreter.", seconds=time.perf_counter() - start, attempts=2), None
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # NOTE [failed runs]; or the result could not come back
            rec = failed_record(cfg, error_text(err))
        rec["attempts"] = 2
        return rec, pool

    def map_unordered(self, configs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield one record per config as runs finish (NOTE [worker death] for crashes).

        Args:
            configs: Resolved configs.

        Yields:
            Records, in completion order.
        """
        queue = deque(configs)
        suspects: list[dict[str, Any]] = []
        alone: ProcessPoolExecutor | None = None
        try:
            while queue or suspects:
                if suspects:
                    rec, alone = self._isolated(alone, suspects.pop(0))
                    yield rec
                    continue
                if alone is not None:
                    alone.shutdown(wait=False, cancel_futures=True)
                    alone = None
                yield from self._round(queue, suspects)
        finally:
            if alone is not None:
                alone.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Nothing to release: pools live only while ``map_unordered`` runs."""

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ONE_RUN_PER_PROCESS = threading.Lock()
"""NOTE [one run per process]: torch.func keeps its transform levels (vmap, forward-mode AD) in
process-global state, so two runs in threads of one process can corrupt each other ("Trying to
access a forward AD level with an invalid index"). A Dask worker with several threads therefore
runs one sweep run at a time; start workers with ``--nthreads 1`` and more processes instead."""


def _dask_task(fn: RunFn, config: dict[str, Any], coordinator_pid: int) -> dict[str, Any]:
    """Run one config on a Dask worker: one run per process, one torch thread in workers."""
    with _ONE_RUN_PER_PROCESS:
        if os.getpid() != coordinator_pid:  # never touch the coordinator's threads (in-process)
            import torch

            torch.set_num_threads(1)
        return fn(config)


def _suspicious(key: str, dask_scheduler: Any = None) -> int | None:
    """On the scheduler: the number of workers that died while running task ``key``."""
    ts = dask_scheduler.tasks.get(key)
    return None if ts is None else int(ts.suspicious)


class DaskBackend:
    """A Dask ``distributed`` cluster: an existing scheduler, or a LocalCluster.

    Dask is imported only here (``pip install "lossgeom[dask]"``).

    Args:
        scheduler: Address of a running scheduler (``tcp://host:8786``); None starts a
            LocalCluster of ``workers`` single-threaded worker processes.
        workers: Worker processes of the LocalCluster; default ``default_workers()``.
        fn: The run function (a picklable callable config → record).
        client: An existing ``distributed.Client`` to use instead (not closed here).
        timeout: Seconds to wait for the scheduler; default ``SCHEDULER_TIMEOUT_S``.

    Raises:
        ValueError: If dask is not installed, or the scheduler cannot be reached (the message
            names the address; nothing has been written anywhere).
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, *,
                 fn: RunFn = run_one, client: Any = None, timeout: float | None = None):
        where = f"DaskBackend(scheduler={scheduler!r})"
        _check_workers(where, workers)
        self.fn = fn
        self._cluster = None
        self._own = client is None
        if client is not None:
            self.client = client
            return
        try:
            import dask
            import distributed
        except ImportError:
            raise ValueError(f"{where}: the dask backend needs dask.distributed. Install it with "
                             "pip install \"lossgeom[dask]\", or use --backend local.") from None
        if scheduler:
            timeout = SCHEDULER_TIMEOUT_S if timeout is None else timeout
            try:
                self.client = distributed.Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError, ValueError) as err:
                raise ValueError(f"{where}: cannot reach the Dask scheduler at {scheduler!r} "
                                 f"within {timeout:g} s ({type(err).__name__}: {err}). Check the "
                                 "address and that `dask scheduler` runs there; nothing was "
                                 "written.") from None
            return
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            self._cluster = distributed.LocalCluster(
                n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=40)
            self.client = distributed.Client(self._cluster)

    def map_unordered(self, configs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Submit every config and yield records as they complete.

        A task the cluster gives up on (its workers died) becomes a failed record with the
        scheduler's reason.

        Args:
            configs: Resolved configs.

        Yields:
            Records, in completion order.

        Raises:
            KeyboardInterrupt: Passed on (every other error of a run is a failed record).
        """
        from distributed import as_completed

        pid = os.getpid()
        futures = {}
        for cfg in configs:
            key = f"lossgeom-run-{config_hash(cfg)[:16]}-{uuid.uuid4().hex[:8]}"
            futures[self.client.submit(_dask_task, self.fn, cfg, pid, key=key, pure=False)] = cfg
        start = time.perf_counter()
        try:
            for fut in as_completed(futures):
                deaths = self._worker_deaths(fut.key)
                try:
                    rec = fut.result()
                except KeyboardInterrupt:
                    raise
                except BaseException as err:  # KilledWorker, lost connection, NOTE [failed runs]
                    killed = type(err).__name__ == "KilledWorker"
                    yield failed_record(futures[fut], error_text(err),
                                        seconds=time.perf_counter() - start,
                                        attempts=(deaths or 2) if killed else 1 + (deaths or 0))
                    continue
                if deaths:  # NOTE [worker death]: the run finished on its retry
                    rec = {**rec, "attempts": rec.get("attempts", 1) + deaths}
                yield rec
        finally:
            for fut in futures:
                fut.release()

    def _worker_deaths(self, key: str) -> int | None:
        """How many workers died while running task ``key`` (the scheduler's count), if known."""
        try:
            return self.client.run_on_scheduler(_suspicious, key=key)
        except Exception:  # a scheduler that refuses run_on_scheduler: attempts stay unknown
            return None

    def close(self) -> None:
        """Close the client and the LocalCluster this backend started (not a given client)."""
        if self._own:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_backend(name: str, *, scheduler: str | None = None, workers: int | None = None,
                 fn: RunFn = run_one) -> LocalBackend | DaskBackend:
    """The backend a CLI or API call names.

    Args:
        name: "local" or "dask".
        scheduler: Dask scheduler address (dask only).
        workers: Worker processes.
        fn: The run function.

    Returns:
        A LocalBackend or a connected DaskBackend.

    Raises:
        ValueError: For an unknown name, a scheduler with the local backend, or an unreachable
            scheduler.
    """
    from .._checks import check_option

    where = f"make_backend({name!r})"
    check_option(where, "backend", name, BACKENDS)
    if name == "local":
        if scheduler:
            raise ValueError(f"{where}: --scheduler {scheduler!r} applies only to the dask "
                             "backend. Add --backend dask, or drop --scheduler.")
        return LocalBackend(workers, fn=fn)
    return DaskBackend(scheduler, workers, fn=fn)
