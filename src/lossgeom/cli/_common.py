"""Shared CLI helpers: error handling, stdout/stderr consoles, report tables."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..report import Report

out = Console()
err = Console(stderr=True)


@contextlib.contextmanager
def user_errors(json_out: bool = False) -> Iterator[None]:
    """Turn ValueError/TypeError/FileNotFoundError into one red line on stderr and exit code 2.

    With ``json_out`` (a ``--json`` run) the error is also printed on stdout as one JSON object
    ``{"error": message, "type": exception type}``, so scripts that parse stdout get an answer.

    Raises:
        typer.Exit: With code 2 after printing the message.
    """
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        if json_out:
            print_json({"error": str(exc), "type": type(exc).__name__})
        raise typer.Exit(2) from None


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator:
    """A callback progress(stage, done, total) drawing one Rich bar per stage on stderr.

    Silent (the callback is None) when ``enabled`` is False, e.g. in ``--json`` mode.
    """
    if not enabled:
        yield None
        return
    with Progress(console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, done, 1))

        yield update


def print_json(obj) -> None:
    """JSON alone on stdout."""
    typer.echo(json.dumps(obj, indent=1))


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isinf(x):
            return "inf"
        return f"{x:.3g}"
    return str(x)


def _flag(decided: bool | None) -> str:
    return "" if decided in (True, None) else " [yellow](undecided)[/yellow]"


def report_table(report: Report, title: str = "lossgeom analyze") -> Table:
    """A two-column Rich table of a Report's headline fields; undecided cuts in yellow."""
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    j, h, g = report.jacobian, report.hessian, report.gauss_newton
    t.add_row("N, n, k", f"{report.n_params}, {report.n_samples}, {report.n_outputs}")
    t.add_row("loss", _fmt(report.loss))
    crit = report.criticality
    t.add_row("‖∇L‖ (tol)", f"{_fmt(report.grad_norm)} ({_fmt(crit.tol)})")
    t.add_row("‖∇ₓC‖", _fmt(report.output_grad_norm))
    t.add_row("rank J", f"{j.rank}  tol {_fmt(j.tol)}  gap {_fmt(j.gap)}  \\[{j.method}]"
              + _flag(j.decided))
    if g is not None:
        t.add_row("rank G (Gauss–Newton)", f"{g.rank}  tol {_fmt(g.tol)}  gap {_fmt(g.gap)}"
                  + _flag(g.decided))
    if h is not None:
        inertia = " / ".join(_fmt(c) for c in h.inertia)
        t.add_row("Hessian inertia (+/−/0)", f"{inertia}  \\[{h.method}]" + _flag(h.decided))
        if not h.decided and h.reason:
            t.add_row("", f"[yellow]{h.reason}[/yellow]")
        t.add_row("rank ∇²L", f"{_fmt(h.rank)}  tol {_fmt(h.tol)}  gap {_fmt(h.gap)}")
        t.add_row("λ_max, λ_min", f"{_fmt(h.top_eigenvalues[0])}, {_fmt(h.bottom_eigenvalues[0])}")
    t.add_row("behavior manifold dim", str(report.behavior_manifold_dim))
    t.add_row("kind", f"[bold]{report.kind}[/bold] ({report.kind_reason})")
    ri = report.rank_identity
    t.add_row("rank ∇²L = rank J", f"predicted {ri.predicted}, holds {ri.holds}")
    if report.model_dtype and report.model_dtype != report.dtype:
        t.add_row("dtype", f"[yellow]model {report.model_dtype}, products in {report.dtype}[/yellow]")
    for note in report.routes:
        t.add_row("route", note)
    dg = report.degeneracy
    if dg is not None:
        cells = []
        for e, c, lo, hi in zip(dg.rel_eps, dg.count_above, dg.count_low, dg.count_high,
                                strict=True):
            cells.append(f"{e:g}: {_fmt(c)}" + ("" if lo == hi else f" [{_fmt(lo)}, {_fmt(hi)}]"))
        t.add_row("#{|λ| > ε·|λ|max}", "; ".join(cells) + f"  \\[{dg.method}]")
    for b in report.blocks or []:
        inertia = " / ".join(_fmt(c) for c in b.hessian.inertia) if b.hessian else "—"
        t.add_row(f"block {b.name} (N_b = {b.n_params})",
                  f"rank J_b {b.jacobian.rank}{_flag(b.jacobian.decided)}, H_bb inertia {inertia}"
                  + (_flag(b.hessian.decided) if b.hessian else ""))
    return t


def llc_table(bounds, estimate) -> Table:
    """The local learning coefficient: §9.1 bounds next to the SGLD estimate and its diagnostics."""
    t = Table(title="local learning coefficient λ (§9)", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    if bounds.lower is None:
        t.add_row("bounds", f"[yellow]none: {bounds.reason}[/yellow]")
    else:
        t.add_row("rank ∇²L / 2 ≤ λ ≤ N / 2", f"{_fmt(bounds.lower)} ≤ λ ≤ {_fmt(bounds.upper)}")
        t.add_row("smallest kept eigenvalue", _fmt(bounds.smallest_kept_eigenvalue))
    mixed = "" if estimate.mixed else " [yellow](not mixed)[/yellow]"
    t.add_row("SGLD estimate λ̂", f"{_fmt(estimate.mean)} ± {_fmt(estimate.std)}{mixed}")
    t.add_row("chains × draws, nβ, step",
              f"{estimate.n_chains} × {estimate.n_draws}, {_fmt(estimate.nbeta)}, "
              f"{_fmt(estimate.step)} [{estimate.backend}]")
    for note in estimate.warnings:
        t.add_row("", f"[yellow]{note}[/yellow]")
    return t
