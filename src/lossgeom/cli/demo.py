"""``lossgeom demo``: the main job on the embedded default."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table

from ..demo import DEMO_STAGES, TREND_SEEDS, TREND_STEPS, run_demo
from ._common import err, out, user_errors

__all__ = ["demo_command"]


def _timings_table(timings: dict[str, float]) -> Table:
    """Seconds per stage, the last row the total."""
    t = Table(title="Time per stage", title_justify="left")
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    for name, seconds in timings.items():
        t.add_row(f"[bold]{name}[/bold]" if name == "total" else name, f"{seconds:.2f}")
    return t


def demo_command(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="Output folder."),
    seeds: int = typer.Option(TREND_SEEDS, help="Seeds per width in the trend experiment."),
    steps: int = typer.Option(TREND_STEPS, help="Adam steps per trend run."),
) -> None:
    """Information loss → flat basins: exact fits, dead ReLU patterns, softmax-CE, width trend.

    Also the adapted vs standard flows and a deep linear network; writes report.json and PNG
    figures to --out, and the time per stage to stderr and report.json.
    """
    with user_errors():
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("demo", total=DEMO_STAGES)
            result = run_demo(out_dir, seeds=seeds, steps=steps,
                              progress=lambda msg: bar.update(task, advance=1, description=msg))
        t = Table(title="Exact fits (MSE unless named)", title_justify="left")
        for col in ("case", "N", "n·k", "rank J (gap)", "Hessian +/−/0", "N − rank J", "kind",
                    "rank H = rank J"):
            t.add_column(col, overflow="fold")  # names wrap whole at narrow widths, never "…"
        for name, r in result.reports.items():
            ri = r.rank_identity
            t.add_row(name, str(r.n_params), str(r.n_samples * r.n_outputs),
                      f"{r.jacobian.rank} ({r.jacobian.gap:.1e})",
                      "/".join(str(c) for c in r.hessian.inertia), str(r.behavior_manifold_dim),
                      r.kind, f"{ri.holds} (predicted {ri.predicted})")
        out.print(t)
        tt = Table(title="Rank-deficient exact fits (rank J < n = 4) vs width, 3-h-1 on {−1,1}³",
                   title_justify="left")
        for col in ("activation", "h", "N", "fits", "rank J < n", "fraction", "not fitted"):
            tt.add_column(col)
        for c in result.trend:
            tt.add_row(c.activation, str(c.width), str(c.n_params), str(c.fitted),
                       str(c.rank_deficient), f"{c.fraction:.2f}", str(c.not_fitted))
        out.print(tt)
        ft = Table(title="Gradient flows in linear time τ (tanh 2-6-2, n = 3): only the adapted "
                   "flow (α = 1) keeps the outputs on the straight line", title_justify="left")
        for col in ("α", "τ end", "loss end", "max distance from the line", "rank J", "status"):
            ft.add_column(col)
        for f in result.flows:
            ft.add_row(f"{f['alpha']:g}", f"{f['t_end']:g}", f"{f['loss_end']:.2e}",
                       f"{f['max_deviation']:.2e}", f"{f['rank_min']}–{f['rank_max']}", f["status"])
        out.print(ft)
        lt = Table(title="Deep linear network (2,1,2), weighted Frobenius loss (§4.7)",
                   title_justify="left")
        for col in ("point", "L", "critical", "pure / spurious"):
            lt.add_column(col)
        for name, c in result.linear.items():
            lt.add_row(name, f"{c['loss']:g}", str(c["is_critical"]), c["kind"])
        out.print(lt)
        out.print("wrote " + ", ".join(result.files))
        err.print(_timings_table(result.timings))
