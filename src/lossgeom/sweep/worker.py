"""One run of a sweep (``run_one``, pure: config in, plain-dict record out) and the driver loop.

A record is what a worker sends back and what the store keeps::

    {"run_id": str, "config": dict, "status": "done" | "failed",
     "report": Report.to_dict() | None, "extras": dict, "arrays": {name: ndarray},
     "error": str | None, "seconds": float, "finished_at": ISO-8601 UTC str,
     "worker": "host:pid", "versions": {package: version}, "attempts": int}

Workers receive configs, never models: everything a run needs is rebuilt from its config.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any, Protocol

import numpy as np
import torch

from ..analysis import analyze
from ..curvature import hessian, jacobian
from ..datasets import cube_split
from ..linalg import numerical_rank
from ..problem import Problem
from ..problem_specs import DEFAULTS as PROBLEM_DEFAULTS
from ..problem_specs import problem_from_config
from ..reach import find_critical_point, reach
from .spec import config_hash

__all__ = ["Backend", "drive", "error_text", "failed_record", "run_one"]

PROBLEM_KEYS = tuple(PROBLEM_DEFAULTS)
"""Config keys that define the Problem (``lossgeom.problem_specs.problem_from_config``)."""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__}
    try:
        out["lossgeom"] = metadata.version("lossgeom")
    except metadata.PackageNotFoundError:
        out["lossgeom"] = "unknown"
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _base_record(config: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": config_hash(config), "config": config, "status": "failed", "report": None,
            "extras": {}, "arrays": {}, "error": None, "seconds": 0.0, "finished_at": None,
            "worker": f"{socket.gethostname()}:{os.getpid()}", "versions": _versions(),
            "attempts": 1}


def error_text(err: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, the error column of a failed run.

    NOTE [failed runs]
        A failing run is a result: the sweep stores it and goes on. That holds for every
        exception a run can raise, not only ``Exception`` subclasses: ``SystemExit`` from a
        library that calls ``exit()``, or a ``BaseException`` subclass, is stored the same way
        (by ``run_one`` in the worker, and by the backends for a run function that lets one
        escape). Only ``KeyboardInterrupt`` stops the sweep, whose finished runs are kept.

    Example:
        >>> error_text(SystemExit("bye"))
        'SystemExit: bye'
    """
    return f"{type(err).__name__}: {err}"


def failed_record(config: dict[str, Any], error: str, *, seconds: float = 0.0,
                  attempts: int = 1) -> dict[str, Any]:
    """A "failed" record for a run that did not return one (its worker died, say).

    Args:
        config: The run's resolved config.
        error: Why it failed, one readable line.
        seconds: Time spent on it.
        attempts: How many times it was started.

    Returns:
        The record, built in the calling process.
    """
    rec = _base_record(config)
    rec.update(error=error, seconds=float(seconds), finished_at=_now(), attempts=attempts)
    return rec


def _problem(config: dict[str, Any]) -> Problem:
    problem = problem_from_config({k: config[k] for k in PROBLEM_KEYS})
    if "checkpoint" in config:
        targets = problem.labels if problem.labels is not None else problem.targets
        problem = Problem.from_checkpoint(config["checkpoint"], problem.model, problem.inputs,
                                          targets, loss=config["loss"],
                                          reduction=config["reduction"])
    return problem


def _reach(problem: Problem, config: dict[str, Any]) -> torch.Tensor:
    if config["target"] == "minimum":
        theta, _ = find_critical_point(problem, steps=config["steps"], target="minimum",
                                       polish=config["polish"], lr=config["lr"])
        return theta
    return reach(problem, config["target"], steps=config.get("steps", 0))


def _heldout_outputs(problem: Problem, theta: torch.Tensor, config: dict[str, Any]) -> dict:
    """Outputs on the cube points left out of training (§6.3), (8 − n, k) as lists."""
    _, _, heldout = cube_split(config["data_seed"], config["n"])
    with torch.no_grad():
        out = [problem.sample_output_fn(theta, x).tolist() for x in heldout]
    return {"inputs": heldout.tolist(), "outputs": out}


def _hessian_rank_formula(problem: Problem, config: dict[str, Any]) -> dict:
    """Closed-form Hessian rank of a deep linear net (§5) next to the data rank used.

    Raises:
        ValueError: If ``lossgeom.linear.hessian_rank_formula`` is missing, or refuses the config.
    """
    try:
        from ..linear import hessian_rank_formula
    except ImportError:
        raise ValueError("run_one(config): hessian_rank_formula = true needs "
                         "lossgeom.linear.hessian_rank_formula, which this installation lacks. "
                         "Upgrade lossgeom or drop the option.") from None
    X = problem.inputs.reshape(problem.n_samples, -1)
    data_rank = numerical_rank(X)
    # with biases the formula needs rank [X 1] (r + 1 unless the data hold a constant feature)
    ones = torch.ones(problem.n_samples, 1, dtype=X.dtype, device=X.device)
    augmented = numerical_rank(torch.cat([X, ones], dim=1)).rank if config["bias"] else None
    formula = dict(hessian_rank_formula(config["widths"], data_rank.rank, loss=config["loss"],
                                        bias=config["bias"], n_samples=problem.n_samples,
                                        augmented_rank=augmented))
    return {**formula, "data_rank": data_rank.rank, "data_rank_gap": data_rank.gap}


def _extras(problem: Problem, theta: torch.Tensor, config: dict[str, Any]
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    extras: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    if config.get("information_loss"):
        from ..info_loss import information_loss  # imported only when a config asks for it

        extras["information_loss"] = information_loss(problem, theta,
                                                      rtol=config.get("rtol")).to_dict()
    if config.get("heldout_outputs"):
        extras["heldout_outputs"] = _heldout_outputs(problem, theta, config)
    if config.get("hessian_rank_formula"):
        extras["hessian_rank_formula"] = _hessian_rank_formula(problem, config)
    if config.get("spectrum"):
        H = hessian(problem, theta)
        arrays["hessian_eigenvalues"] = torch.linalg.eigvalsh(0.5 * (H + H.T)).numpy()
        arrays["jacobian_singular_values"] = torch.linalg.svdvals(jacobian(problem, theta)).numpy()
    return extras, arrays


def run_one(config: dict[str, Any]) -> dict[str, Any]:
    """Run one resolved config: build the problem, reach the point, analyze, add extras.

    Never raises for a failing run: any exception but KeyboardInterrupt becomes a "failed"
    record carrying ``"<ExceptionType>: <message>"`` (NOTE [failed runs]; a
    ``NotCriticalError`` from target = "global_minimum" says why no exact fit was reached).
    Warnings raised during the run are not printed; their distinct messages go to
    ``extras["warnings"]``.

    Args:
        config: A resolved config (``SweepSpec.configs()``; NOTE [canonical config]).

    Returns:
        The record (plain dict; see the module docstring), with ``run_id = config_hash(config)``.

    Raises:
        KeyboardInterrupt: Passed on: the user stops the sweep.

    Example:
        >>> rec = run_one({"widths": [3, 4, 1], "activation": "tanh", "bias": True,
        ...                "source": "cube", "n": 4, "data_seed": 0, "seed": 0, "loss": "mse",
        ...                "reduction": "sum", "target": "global_minimum", "method": "auto",
        ...                "steps": 2000})
        >>> rec["status"], rec["report"]["jacobian"]["rank"], rec["report"]["hessian"]["inertia"]
        ('done', 4, [4, 0, 17])
    """
    start = time.perf_counter()
    rec = _base_record(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            problem = _problem(config)
            theta = _reach(problem, config)
            report = analyze(problem, theta, method=config["method"], rtol=config.get("rtol"))
            extras, arrays = _extras(problem, theta, config)
            rec.update(status="done", report=report.to_dict(), extras=extras, arrays=arrays)
        except KeyboardInterrupt:  # the user stops the sweep: not a result of this run
            raise
        except BaseException as err:  # NOTE [failed runs]
            rec["error"] = error_text(err)
    messages = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    if messages:
        rec["extras"]["warnings"] = messages
    rec["seconds"] = time.perf_counter() - start
    rec["finished_at"] = _now()
    return rec


class Backend(Protocol):
    """What the driver needs of a backend: records for configs, in completion order."""

    def map_unordered(self, configs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield one record per config as runs finish."""
        ...


class _Sink(Protocol):
    def put(self, record: dict[str, Any]) -> None: ...


def drive(configs: Iterable[dict[str, Any]], backend: Backend, store: _Sink, *,
          progress: bool = True, label: str = "sweep",
          on_record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, int]:
    """Run configs on a backend and write each record to the store as it arrives.

    Only this (the coordinating) process writes; each record is one transaction. A Rich
    progress bar on stderr shows done / failed / remaining and the ETA.

    Args:
        configs: Resolved configs still to run.
        backend: Anything with ``map_unordered(configs)`` (LocalBackend, DaskBackend).
        store: Anything with ``put(record)`` (``Store``).
        progress: Show the progress bar.
        label: Text in front of the bar.
        on_record: Called with each record after it is stored.

    Returns:
        {"done": count, "failed": count} of this call.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    configs = list(configs)
    counts = {"done": 0, "failed": 0}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("done [green]{task.fields[done]}[/] failed [red]{task.fields[failed]}"
                          "[/] remaining {task.fields[remaining]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(label, total=len(configs), done=0, failed=0, remaining=len(configs))
        for rec in backend.map_unordered(configs):
            store.put(rec)
            counts[rec["status"]] += 1
            finished = counts["done"] + counts["failed"]
            bar.update(task, completed=finished, done=counts["done"], failed=counts["failed"],
                       remaining=len(configs) - finished)
            if on_record is not None:
                on_record(rec)
    return counts
