"""``lossgeom flow``: integrate several α of the flow family from one start and draw the paths."""

from __future__ import annotations

import json
import math
import os
import time as _time
from pathlib import Path

import typer
from rich import box
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import flows
from ..plots import save_figure
from ..plots.flows import flow_figures
from ..problem import Problem
from ..problem_specs import problem_from_config
from ..report import jsonable
from ._common import err, out, print_json, user_errors
from ._options import Activation, Bias, Data, Json, Loss, Samples, Seed, Widths

app = typer.Typer(
    name="flow",
    help="Integrate gradient flows (standard, adapted, and the family between) from one start "
         "and plot their output-space paths (§2).",
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["app"]

LINEAR_END_BELOW_ONE = 0.99
"""Default end of the linear-time runs with α < 1, whose field is singular at τ = 1."""


def _parse_alphas(text: str) -> list[float]:
    try:
        values = [float(a) for a in text.replace(" ", "").split(",") if a]
    except ValueError:
        raise ValueError(f"--alpha must look like '0,0.5,1', got {text!r}.") from None
    if not values:
        raise ValueError("--alpha is empty; pass values in [0, 1], e.g. '0,0.5,1'.")
    bad = [a for a in values if not 0.0 <= a <= 1.0]
    if bad:
        raise ValueError(f"--alpha values must lie in [0, 1], got {bad}.")
    return values


def _parse_normalization(text: str) -> str | float:
    if text in flows.NORMALIZATIONS:
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--normalization must be one of {', '.join(flows.NORMALIZATIONS)} or a "
                         f"number c > 0 (C = c·L), got {text!r}.") from None


def _build_problem(config: dict, temperature: float | None) -> Problem:
    if config["activation"] == "relu" and temperature is None:
        raise ValueError("--activation relu has no Lipschitz derivative, which the flows need "
                         "(§2.1). Pass --mollify 0.1 (ReLU → softplus with temperature 0.1) "
                         "or --activation softplus.")
    problem = problem_from_config(config)
    if temperature is None:
        return problem
    model = flows.mollify(problem.model, temperature)
    targets = problem.labels if problem.labels is not None else problem.targets
    return Problem(model, problem.inputs, targets, loss=problem.loss_fn.name,
                   reduction=problem.loss_fn.reduction)


def _end_times(problem: Problem, alphas: list[float], time: str, t_end: float | None,
               normalization) -> list[float]:
    if t_end is not None:
        return [t_end] * len(alphas)
    if time == "linear":
        return [1.0 if a == 1.0 else LINEAR_END_BELOW_ONE for a in alphas]
    c, rate = flows.cost_normalization(problem, normalization)
    # natural time: τ = 1 − e^{−λs} = 0.99 for mse; a fixed horizon otherwise
    s_end = math.log(100.0) / rate if rate is not None else 20.0 / c
    return [s_end] * len(alphas)


def _table(summaries: list[dict], problem: Problem) -> Table:
    table = Table(title=f"lossgeom flow: N = {problem.n_params}, n = {problem.n_samples}, "
                        f"k = {problem.n_outputs}, L(θ₀) = {summaries[0]['loss_start']:.3g}",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("α", "t_end", "L end", "‖∇L‖ end", "rank J", "min gap", "max|δ|", "evals",
                "run"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in summaries:
        rank = "—" if s["rank_min"] is None else (
            str(s["rank_min"]) if s["rank_min"] == s["rank_max"]
            else f"{s['rank_min']}–{s['rank_max']}")
        if s["all_decided"] is False:
            rank = f"[yellow]{rank}?[/yellow]"
        gap, dev = s["min_gap"], s["max_deviation"]
        status = "ok" if s["status"] == "completed" else f"[yellow]{s['status']}[/yellow]"
        table.add_row(
            f"{s['alpha']:g}", f"{s['t_end']:.3g}", f"{s['loss_end']:.2e}",
            f"{s['grad_norm_end']:.2e}", rank,
            "—" if gap is None else (gap if isinstance(gap, str) else f"{gap:.2g}"),
            "—" if dev is None else f"{dev:.1e}", str(s["n_field_evals"]), status)
    return table


@app.callback(invoke_without_command=True)
def flow(
    widths: Widths = "2,6,2", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 3, seed: Seed = 0, loss: Loss = "mse",
    reduction: str = typer.Option("sum", help="sum | mean (the Problem's loss)."),
    alpha: str = typer.Option("0,0.5,1", help="Comma-separated α in [0, 1]."),
    time: str = typer.Option("linear", help="linear (τ of §2.5, mse only) | natural."),
    t_end: float | None = typer.Option(None, help="End time (default: τ = 1 for α = 1 and 0.99 "
                                                  "otherwise; natural: τ(s) = 0.99)."),
    method: str = typer.Option("RK45", help="RK45 | DOP853 | LSODA | euler | rk4."),
    step: float | None = typer.Option(None, help="Step of euler/rk4."),
    rtol: float = typer.Option(1e-8, help="Relative tolerance of adaptive methods."),
    atol: float = typer.Option(1e-10, help="Absolute tolerance of adaptive methods."),
    n_eval: int = typer.Option(60, help="Records per run."),
    family: str = typer.Option("field", help="field | metric (§2.3)."),
    normalization: str = typer.Option("sample_mean", help="sample_mean (C = |x−y|²/(2n)) | "
                                                          "problem | a factor c."),
    on_undecided: str = typer.Option("stop", help="stop | continue when rank J is undecided."),
    mollify: float | None = typer.Option(None, help="Replace ReLU by softplus with this "
                                                    "temperature."),
    out_dir: Path | None = typer.Option(None, "--out", help="Directory for flow.json and the "
                                                            "figures."),
    json_out: Json = False,
) -> None:
    """Integrate each α from the same start; print a table (or JSON) and write figures.

    Raises:
        typer.Exit: Code 2 for invalid options (one line on stderr), code 1 when a run stopped
            early (its partial path is still reported and drawn).
    """
    with user_errors(json_out):
        alphas = _parse_alphas(alpha)
        norm = _parse_normalization(normalization)
        config = {"widths": widths, "activation": activation, "bias": bias, "source": data,
                  "n": n, "seed": seed, "loss": loss, "reduction": reduction}
        problem = _build_problem(config, mollify)
        ends = _end_times(problem, alphas, time, t_end, norm)
        trajectories, summaries, stopped = _run(problem, alphas, ends, json_out, {
            "time": time, "method": method, "step": step, "rtol": rtol, "atol": atol,
            "n_eval": n_eval, "family": family, "normalization": norm,
            "on_undecided": on_undecided})
    report = jsonable({
        "n_params": problem.n_params, "n_samples": problem.n_samples,
        "n_outputs": problem.n_outputs, "config": {**config, "mollify": mollify},
        "time": time, "family": family, "normalization": norm, "runs": summaries,
    })
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        report["figures"] = {name: save_figure(fig, out_dir / f"flow_{name}.png")
                             for name, fig in flow_figures(trajectories).items()}
        tmp = out_dir / "flow.json.tmp"
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, out_dir / "flow.json")
    if json_out:
        print_json(report)
    else:
        out.print(_table(summaries, problem))
        if out_dir is not None:
            out.print(f"wrote {out_dir / 'flow.json'} and {len(report['figures'])} figures")
    for message in stopped:
        err.print(f"[yellow]{message}[/yellow]", highlight=False, soft_wrap=True)
    if stopped:
        raise typer.Exit(1)


def _run(problem: Problem, alphas: list[float], ends: list[float], quiet: bool, options: dict
         ) -> tuple[list, list[dict], list[str]]:
    """Integrate every α from problem.theta under a Rich progress bar on stderr."""
    trajectories, summaries, stopped = [], [], []
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("t = {task.completed:.4g} / {task.total:.4g}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=quiet) as bar:
        for a, end in zip(alphas, ends, strict=True):
            task = bar.add_task(f"α = {a:g}", total=end)
            start = _time.perf_counter()
            try:
                traj = flows.integrate(problem, problem.theta, alpha=a, t_end=end,
                                       progress=lambda t, task=task: bar.update(task, completed=t),
                                       **options)
            except flows.FlowStoppedError as stop:
                traj = stop.trajectory
                stopped.append(str(stop))
            trajectories.append(traj)
            summaries.append({**traj.summary(), "seconds": _time.perf_counter() - start})
    return trajectories, summaries, stopped
