"""``lossgeom sweep``: run a TOML spec over its grid, check a database, report its results.

Commands::

    lossgeom sweep run SPEC.toml [--backend local|dask] [--scheduler ADDRESS] [--db FILE]
                                 [--workers N] [--retry-failed] [--yes] [--json]
    lossgeom sweep status DB [--json]
    lossgeom sweep report DB [--json] [--plot DIR]

``--json`` prints JSON and nothing else on stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from .. import sweep as _sweep
from ..sweep.store import read_excluded
from ..sweep.summary import format_value, summarize, varying_keys
from ._common import err as _err
from ._common import out as _out
from ._common import user_errors
from ._options import Html

__all__ = ["app"]

app = typer.Typer(help="Sweeps: TOML specs over grids of widths, activations, data and seeds, "
                       "stored in SQLite (crash-safe, resumable).", no_args_is_help=True)

_KIND_SHORT = {"global_minimum": "gm", "strict_local_minimum": "min", "strict_saddle": "saddle",
               "strict_local_maximum": "max", "degenerate": "deg", "noncritical": "noncrit"}


@contextlib.contextmanager
def _resumable() -> Iterator[None]:
    """Ctrl-C: say that finished runs are kept, and exit with status 130.

    Raises:
        typer.Exit: With code 130 after a KeyboardInterrupt.
    """
    try:
        yield
    except KeyboardInterrupt:
        _err.print("interrupted: finished runs are stored; run the same command to resume.")
        raise typer.Exit(130) from None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _status_tables(st: _sweep.SweepStatus) -> None:
    table = Table(title=f"sweep {st.name!r}: {st.db}")
    for col in ("planned", "done", "failed", "remaining"):
        table.add_column(col, justify="right")
    table.add_row(str(st.planned), f"[green]{st.done}[/]", f"[red]{st.failed}[/]" if st.failed
                  else "0", str(st.remaining))
    _out.print(table)
    if st.failures:
        fails = Table(title="failed runs", show_lines=False)
        fails.add_column("run_id")
        fails.add_column("config")
        fails.add_column("error", overflow="fold")
        for f in st.failures:
            cfg = f["config"]
            short = f"{'-'.join(map(str, cfg['widths']))} {cfg['activation']} seed={cfg['seed']}"
            fails.add_row(f["run_id"][:12], short, f["error"])
        _out.print(fails)


@app.command("run")
def run_command(
    spec: Path = typer.Argument(..., help="The sweep spec (TOML)."),
    backend: str = typer.Option("local", "--backend", help="local (process pool) or dask."),
    scheduler: str = typer.Option(None, "--scheduler",
                                  help="Dask scheduler address, tcp://HOST:8786 (dask only)."),
    db: Path = typer.Option(None, "--db", help="SQLite file [default: sweep.sqlite beside "
                                              "the spec]."),
    workers: int = typer.Option(None, "--workers", help="Worker processes [default: cores]."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun failed runs."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Allow more runs than max_runs."),
    as_json: bool = typer.Option(False, "--json", help="Print the final status as JSON."),
) -> None:
    """Run every run of SPEC that the database does not hold yet (resumes a killed sweep)."""
    with _resumable(), user_errors(as_json):
        st = _sweep.run(spec, backend=backend, scheduler=scheduler, db=db, workers=workers,
                        retry_failed=retry_failed, yes=yes, progress=True)
    if as_json:
        typer.echo(json.dumps(st.to_dict()))
        return
    _err.print(f"ran {st.ran}, skipped {st.skipped} already stored"
               + (f", left out {st.excluded} with constant labels (data seeds "
                  f"{', '.join(map(str, st.excluded_data_seeds))})" if st.excluded else ""))
    _status_tables(st)


@app.command("status")
def status_command(
    db: Path = typer.Argument(..., help="The sweep database."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
) -> None:
    """Counts of planned, done, failed and remaining runs, and each failure's error."""
    with user_errors(as_json):
        st = _sweep.status(db)
    if as_json:
        typer.echo(json.dumps(st.to_dict()))
        return
    _status_tables(st)


def _excluded_line(excluded: list[dict[str, Any]]) -> str:
    """One line on the runs a spec's filter left out, with their data seeds."""
    seeds = sorted({e["config"]["data_seed"] for e in excluded})
    reasons = sorted({e["reason"] for e in excluded})
    return (f"skipped {len(seeds)} data seed{'s' * (len(seeds) != 1)} ({len(excluded)} runs) with "
            f"{' or '.join(reasons)} in the training targets: {', '.join(map(str, seeds))}")


def _report_table(records: list[dict[str, Any]], excluded: list[dict[str, Any]]) -> None:
    keys = varying_keys(records)
    rows = summarize(records, by=keys, excluded=excluded)
    table = Table(title=f"{len(records)} runs grouped by {', '.join(keys) or 'nothing'}")
    for key in keys:
        width = max([len(key)] + [len(format_value(key, r["group"][key])) for r in rows])
        table.add_column(key, no_wrap=True, min_width=width)
    columns = ("N", "runs", "fail") + (("skip",) if excluded else ()) + (
        "fits", "rank J/nk", "deficient", "zero/N", "inertia", "kinds")
    for col in columns:
        table.add_column(col, justify="left" if col == "kinds" else "right")
    for row in rows:
        frac = row["rank_deficient_fraction"]
        table.add_row(
            *(format_value(k, row["group"][k]) for k in keys), _fmt(row["n_params"]),
            str(row["runs"]), f"[red]{row['failed']}[/]" if row["failed"] else "0",
            *((str(row["skipped_seeds"]),) if excluded else ()),
            str(row["fitted"]), _fmt(row["rank_j_ratio"]),
            "-" if frac is None else f"{row['rank_deficient']}/{row['fitted']}",
            _fmt(row["zero_fraction"]),
            "-" if row["inertia_mode"] is None else "/".join(map(str, row["inertia_mode"])),
            " ".join(f"{_KIND_SHORT.get(k, k)}:{v}" for k, v in sorted(row["kinds"].items())))
    _out.print(table)
    if excluded:
        _out.print(_excluded_line(excluded) + " (skip: per group; left out of every count).")
    _out.print("fits: exact fits (perfect_fit); deficient: fits with rank J < min(n·k, N); "
               "zero/N: zero Hessian eigenvalues over N; inertia: the most common "
               "positive/negative/zero; kinds: " + ", ".join(f"{v} = {k}"
                                                            for k, v in _KIND_SHORT.items()))
    held = [r for r in rows if r["heldout"]]
    if held:
        t2 = Table(title="held-out outputs of the fits (§6.3 Experiments 2b and 1)")
        for key in keys:
            t2.add_column(key)
        for col in ("fits", "spread", "modal share", "patterns", "corr(freq, N-rank J)"):
            t2.add_column(col, justify="right")
        undefined = []
        for r in held:
            h = r["heldout"]
            rho = h["pattern_dim_correlation"]
            if rho is None:
                undefined.append(f"{r['label']}: {h['pattern_dim_correlation_reason']}")
            t2.add_row(*(format_value(k, r["group"][k]) for k in keys), str(h["runs"]),
                       _fmt(h["spread"]), _fmt(h["modal_share"]), str(h["patterns"]),
                       "n/a" if rho is None else _fmt(rho))
        _out.print(t2)
        _out.print("corr(freq, N-rank J): Spearman correlation, over the held-out patterns of a "
                   "group, of a pattern's share of the fits against its mean manifold dimension "
                   "(§6.3 Experiment 1).")
        for line in undefined:
            _out.print(f"n/a for {line}.")


@app.command("report")
def report_command(
    db: Path = typer.Argument(..., help="The sweep database."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as a JSON list only."),
    plot: Path = typer.Option(None, "--plot", help="Write figures (PNG) into this folder."),
    html: Html = None,
) -> None:
    """Tables grouped by the axes that vary, or every run as JSON; figures, a page with --html."""
    with user_errors(as_json):
        records = _sweep.results(db)
        excluded = read_excluded(db)
        if html is not None:
            from ..pages import save_page, sweep_page

            _err.print(f"wrote {save_page(sweep_page(db), html)}")
    if plot is not None:
        from ..plots.sweep import save_sweep_figures

        for path in save_sweep_figures(records, plot):
            _err.print(f"wrote {path}")
    if as_json:
        keys = ("run_id", "config", "status", "report", "error", "extras")
        typer.echo(json.dumps([{k: r[k] for k in keys} for r in records]))
        return
    _report_table(records, excluded)
