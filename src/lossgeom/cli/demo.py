"""``lossgeom demo``: the main job on the embedded default."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table

from ..demo import TREND_SEEDS, TREND_STEPS, TREND_WIDTHS, run_demo
from ._common import err, out, user_errors


def demo(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="Output folder."),
    seeds: int = typer.Option(TREND_SEEDS, help="Seeds per width in the trend experiment."),
    steps: int = typer.Option(TREND_STEPS, help="Adam steps per trend run."),
) -> None:
    """Information loss → flat basins on tiny nets: exact fits, a dead ReLU pattern, softmax-CE,
    and the overparameterization trend. Writes report.json and PNG figures.
    """
    with user_errors():
        stages = 4 + 2 * len(TREND_WIDTHS)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("demo", total=stages)
            result = run_demo(out_dir, seeds=seeds, steps=steps,
                              progress=lambda msg: bar.update(task, advance=1, description=msg))
        t = Table(title="Exact fits (MSE unless named)", title_justify="left")
        for col in ("case", "N", "n·k", "rank J (gap)", "Hessian +/−/0", "N − rank J", "kind",
                    "rank H = rank J"):
            t.add_column(col)
        for name, r in result.reports.items():
            ri = r.rank_identity
            t.add_row(name, str(r.n_params), str(r.n_samples * r.n_outputs),
                      f"{r.jacobian['rank']} ({r.jacobian['gap']:.1e})",
                      "/".join(str(c) for c in r.hessian.inertia), str(r.behavior_manifold_dim),
                      r.kind, f"{ri['holds']} (predicted {ri['predicted']})")
        out.print(t)
        tt = Table(title="Rank-deficient exact fits (rank J < n = 4) vs width, 3-h-1 on {−1,1}³",
                   title_justify="left")
        for col in ("activation", "h", "N", "fits", "rank J < n", "fraction", "not fitted"):
            tt.add_column(col)
        for c in result.trend:
            tt.add_row(c.activation, str(c.width), str(c.n_params), str(c.fitted),
                       str(c.rank_deficient), f"{c.fraction:.2f}", str(c.not_fitted))
        out.print(tt)
        out.print("wrote " + ", ".join(result.files))
