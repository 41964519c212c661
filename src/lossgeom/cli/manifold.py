"""``lossgeom manifold``: the solution manifold {x(θ) = x(θ₀)} from the command line.

walk       tangent steps along ker J with Gauss–Newton retractions; loss, drift, rank J per step
dimension  dim M = N − rank J at an exact fit, the generic N − n·k, and the Hessian's zero count
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from ..loci import SolutionManifold, solution_manifold
from ..manifold import ManifoldWalk, walk
from ..plots import save_figure
from ..plots.loci import walk_figure
from ._common import err, out, print_json, user_errors
from ._options import Activation, Bias, Data, Json, Loss, Rtol, Samples, Seed, Widths, build_problem
from .loci import Point, resolve_point

app = typer.Typer(
    name="manifold",
    help="The solution manifold {x(θ) = x(θ₀)}: its dimension, and walking along it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["app"]


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return "inf" if x == float("inf") else f"{x:.3g}"
    return str(x)


def walk_table(w: ManifoldWalk, every: int) -> Table:
    """Rich table of a walk: every ``every``-th step, the last one, and a summary caption."""
    t = Table(title=f"lossgeom manifold walk on the {w.level_set} (route {w.route})",
              title_justify="left")
    for col in ("step", "h", "‖x − x₀‖", "L − L₀", "rank J", "gap", "‖θ − θ₀‖", "GN",
                "inertia (+/−/0)"):
        t.add_column(col, justify="right")
    for s in w.steps:
        if s.step % every and s.step != w.steps[-1].step and s.inertia is None:
            continue
        inertia = "—" if s.inertia is None else "/".join(_fmt(c) for c in s.inertia)
        t.add_row(str(s.step), _fmt(s.step_size), _fmt(s.drift), _fmt(s.loss_change),
                  str(s.rank) + ("" if s.rank_decided else " [yellow]?[/yellow]"),
                  _fmt(s.rank_gap), _fmt(s.distance), str(s.corrections), inertia)
    status = "[green]completed[/green]" if w.completed else f"[red]stopped:[/red] {w.stopped_reason}"
    t.caption = (f"N = {w.n_params}, n·k = {w.n_outputs_total}, dim = N − rank J(θ₀) = "
                 f"{w.manifold_dimension}; max drift {_fmt(w.max_drift)} (tol "
                 f"{_fmt(w.drift_tol)}), max |ΔL| {_fmt(w.max_loss_change)}, rank constant "
                 f"{w.rank_constant}; {status}")
    return t


def dimension_table(m: SolutionManifold) -> Table:
    """Rich table of a SolutionManifold."""
    t = Table(title="lossgeom manifold dimension (global-minimum manifold, §3.1)",
              show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    j = m.rank_jacobian
    t.add_row("N, n·k", f"{m.n_params}, {m.n_outputs_total}")
    t.add_row("rank J (tol, gap)", f"{j['rank']} ({_fmt(j['tol'])}, {_fmt(j['gap'])}) "
              f"\\[{j['method']}]")
    t.add_row("dim M = N − rank J", f"[bold]{m.dimension}[/bold] (generic N − n·k = "
              f"{m.generic_dimension}; generic rank {m.generic})")
    t.add_row("Hessian inertia (+/−/0)", f"{'/'.join(_fmt(c) for c in m.inertia)}  tol "
              f"{_fmt(m.inertia_tol)}  gap {_fmt(m.inertia_gap)}")
    colour = "green" if m.zeros_match else "red"
    t.add_row("zeros = dim M", f"[{colour}]{m.zeros_match}[/{colour}]")
    t.add_row("loss, max residual", f"{_fmt(m.loss)}, {_fmt(m.perfect_fit.max_residual)}")
    return t


@app.command("walk")
def walk_command(
    point: Point = "fit",
    widths: Widths = "3,8,1", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 4, seed: Seed = 0, loss: Loss = "mse",
    steps: Annotated[int, typer.Option(help="Number of steps.")] = 50,
    step_size: Annotated[float, typer.Option(help="Tangent step length h.")] = 0.05,
    inertia_every: Annotated[int, typer.Option(
        help="Measure the Hessian inertia every this many steps (0: never).")] = 10,
    route: Annotated[str, typer.Option(help="auto | svd | gram (dense, operator: older names).")] = "auto",
    rtol: Rtol = None,
    plot: Annotated[Path | None, typer.Option(
        help="Write loss, drift and rank profile along the walk (PNG).")] = None,
    json_out: Json = False,
) -> None:
    """Walk along {x(θ) = x(θ₀)}: from a non-fitted point, the behavior level set.

    Raises:
        typer.Exit: Code 1 when the walk stops early (the table or JSON is printed first).
    """
    with user_errors(json_out):
        problem = build_problem(widths, activation, bias, data, n, seed, loss)
        theta = resolve_point(problem, point, seed)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("walking", total=steps)
            result = walk(problem, theta, steps=steps, step_size=step_size, rng=seed,
                          inertia_every=inertia_every, rtol=rtol, route=route,
                          progress=lambda done, total: bar.update(task, completed=done))
        if result.level_set != "solution manifold":
            err.print("[yellow]note:[/yellow] θ₀ is not a perfect fit; the walk keeps its "
                      "outputs x(θ₀) (the behavior level set), not the global-minimum manifold.")
        if plot is not None:
            save_figure(walk_figure(result), plot)
            err.print(f"wrote {plot}")
        if json_out:
            print_json(result.to_dict())
        else:
            out.print(walk_table(result, max(1, steps // 10)))
        if not result.completed:
            raise typer.Exit(1)


@app.command()
def dimension(
    point: Point = "fit",
    widths: Widths = "3,6,1", activation: Activation = "tanh", bias: Bias = False,
    data: Data = "random", n: Samples = 4, seed: Seed = 0, loss: Loss = "mse",
    rtol: Rtol = None, json_out: Json = False,
) -> None:
    """Dim M = N − rank J at an exact fit, against N − n·k and the Hessian's zero count."""
    with user_errors(json_out):
        problem = build_problem(widths, activation, bias, data, n, seed, loss)
        result = solution_manifold(problem, resolve_point(problem, point, seed), rtol=rtol)
        if json_out:
            print_json(result.to_dict())
        else:
            out.print(dimension_table(result))
