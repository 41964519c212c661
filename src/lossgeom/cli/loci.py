"""``lossgeom loci``: critical loci of deep networks (§3) from the command line.

star       a point of the star locus S_i: locus, criticality, predicted vs measured inertia
core       a point of the core C_{i,j} = S_i ∩ S_j (same report)
dead-pair  a dead-pair critical point (layers j, j+1 zeroed; not Cooper's star locus)
locate     the same report at any point (init, fit, star:I, core:I,J, dead-pair:J, FILE.npy)
slice      the last-layer slice: Q, dim ker Q, level set, Cor. 5.9 line, Cor. 5.16
bound      the project's zero-eigenvalue bound over all layers (m, 2m − N, measured zeros)
growth     dimensions and eigenvalue counts against the width, with a figure
attract    gradient descent from perturbed core points: does it stay near C? (§3.4(d))
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.progress import Progress
from rich.table import Table

from ..loci import (
    AttractionResult,
    GrowthTable,
    LocusReport,
    SliceReport,
    WideZeroBound,
    attraction,
    core_point,
    dead_pair_point,
    growth_table,
    last_layer_slice,
    locate,
    star_point,
    wide_zero_bound,
)
from ..plots import save_figure
from ..plots.loci import attraction_figure, growth_figure
from ..problem import Problem
from ..problem_specs import parse_widths
from ..reach import reach
from ._common import err, out, print_json, user_errors
from ._options import (
    Activation,
    Bias,
    Data,
    Json,
    Loss,
    Rtol,
    Samples,
    Seed,
    Widths,
    build_problem,
)

app = typer.Typer(
    name="loci",
    help="Critical loci of deep networks: star and core loci, last-layer slices, wide-network "
         "bounds, growth rates (§3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["Point", "app", "resolve_point"]

Point = Annotated[str, typer.Option(
    help="init | fit | star:I | core:I,J | dead-pair:J | FILE.npy (a flat θ).")]

POINTS = ("init", "fit", "star:I", "core:I,J", "dead-pair:J", "FILE.npy")


def _ints(text: str, spec: str, count: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) != count:
        raise ValueError(f"--point {spec!r}: expected {count} comma-separated integer layer "
                         f"index{'es' if count > 1 else ''} after the colon, e.g. "
                         f"{spec.partition(':')[0]}:{','.join(str(i + 1) for i in range(count))}.")
    return values


def resolve_point(problem: Problem, spec: str, seed: int) -> torch.Tensor:
    """θ for a --point value (see ``POINTS``).

    Raises:
        ValueError: For an unknown spec or a file that does not hold a flat θ of length N.
        FileNotFoundError: For a FILE.npy that does not exist.
    """
    if spec == "init":
        return problem.theta
    if spec == "fit":
        return reach(problem, "global_minimum")
    kind, _, rest = spec.partition(":")
    if kind == "star":
        return star_point(problem, *_ints(rest, spec, 1), rng=seed)
    if kind == "core":
        return core_point(problem, *_ints(rest, spec, 2), rng=seed)
    if kind == "dead-pair":
        return dead_pair_point(problem, *_ints(rest, spec, 1), rng=seed)
    if spec.endswith(".npy"):
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"--point {spec!r}: no such file.")
        theta = torch.as_tensor(np.load(path, allow_pickle=False))
        return problem.check_theta(f"--point {spec!r}", theta)
    raise ValueError(f"--point must be one of {', '.join(POINTS)}; got {spec!r}.")


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "inf" if x == float("inf") else f"{x:.3g}"
    if isinstance(x, list):
        return "(" + ", ".join(_fmt(v) for v in x) + ")"
    return str(x)


def _yes_no(value: bool | None, good: bool = True) -> str:
    if value is None:
        return "[yellow]—[/yellow]"
    colour = "green" if value == good else "red"
    return f"[{colour}]{'yes' if value else 'no'}[/{colour}]"


def locus_table(r: LocusReport) -> Table:
    """Rich table of a LocusReport."""
    t = Table(title=f"lossgeom loci: {r.locus}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    conv = {"A": "A (no biases)", "B": "B (biases everywhere)"}.get(r.convention, "mixed")
    t.add_row("widths, N, n, k", f"{r.widths}, {r.n_params}, {r.n_samples}, {r.n_outputs}")
    t.add_row("convention, σ", f"{conv}, {r.activation['name']} (σ(0) = "
              f"{_fmt(r.activation['value_at_zero'])}, σ'(0) = "
              f"{_fmt(r.activation['slope_at_zero'])})")
    t.add_row("locus (dim)", f"[bold]{r.locus}[/bold] ({_fmt(r.locus_dimension)})"
              + ("  [yellow]dead pair: not Cooper's star locus[/yellow]" if r.dead_pairs else ""))
    near = ", ".join(f"{k} {_fmt(v)}" for k, v in r.distances.items())
    t.add_row("distances (on_tol)", f"{near}  ({_fmt(r.on_tol)})")
    t.add_row("loss", _fmt(r.loss))
    t.add_row("critical (‖∇L‖ vs tol)", f"{_yes_no(r.critical)}  {_fmt(r.grad_norm)} vs "
              f"{_fmt(r.criticality.tol)}; predicted {_yes_no(r.predicted_critical)}")
    m = r.measured
    flag = "" if m["decided"] else " [yellow](undecided)[/yellow]"
    t.add_row("measured inertia (+/−/0)", f"{_fmt(m['inertia'])}  tol {_fmt(m['tol'])}  gap "
              f"{_fmt(m['gap'])}  \\[{m['method']}]{flag}")
    if r.prediction is not None:
        p = r.prediction
        t.add_row("predicted inertia", f"{_fmt(p['inertia'])}  {p['formula']}")
        if p["rho_i"] is not None:
            t.add_row("ρ_i, τ_i, ρ_c", f"{p['rho_i']['rank']}, {p['tau_i']['rank']}, "
                      f"{p['rho_c']}")
        eigs = p["eigenvalues"]
        t.add_row("predicted non-zero λ", ", ".join(_fmt(v) for v in eigs[:8])
                  + (" …" if len(eigs) > 8 else "") if eigs else "none (∇²L = 0)")
        t.add_row("agrees", _yes_no(r.agrees))
    t.add_row("prediction", r.prediction_reason)
    t.add_row("kind", r.kind)
    for a in r.assumptions:
        if not a["holds"]:
            t.add_row(f"[yellow]fails: {a['assumption']}[/yellow]", a["consequence"])
    return t


def slice_table(s: SliceReport) -> Table:
    """Rich table of a SliceReport."""
    t = Table(title="lossgeom loci slice (last-layer fibre)", show_header=False,
              title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("N, n, k, n_{ℓ−1}, β", f"{s.n_params}, {s.n_samples}, {s.n_outputs}, "
              f"{s.last_hidden_width}, {s.output_bias}")
    t.add_row("regime", s.regime)
    ra = s.rank_augmented
    t.add_row("rank Ã (tol, gap)", f"{ra['rank']} ({_fmt(ra['tol'])}, {_fmt(ra['gap'])}); "
              f"rank A_(ℓ−1) = {s.rank_hidden['rank']}")
    t.add_row("full rank (Lemma 5.8)", _yes_no(s.full_rank))
    t.add_row("rank Q, dim ker Q", f"{s.rank_q}, [bold]{s.dim_ker_q}[/bold] (≥ "
              f"{s.dim_ker_q_lower}; uniform {s.uniform_dim})")
    lv = s.level_set
    t.add_row("L constant on θ + ker Q", f"{_yes_no(lv['constant'])}  max |ΔL| = "
              f"{_fmt(lv['max_change'])} (tol {_fmt(lv['tol'])}, {lv['n_probes']} probes of "
              f"norm {_fmt(lv['step_norm'])})")
    t.add_row("loss, fibre minimum", f"{_fmt(s.loss)}, {_fmt(s.fibre_minimum)}")
    if s.decreasing_line is not None:
        dl = s.decreasing_line
        t.add_row("Cor. 5.9 line", f"strictly decreasing {_yes_no(dl['strictly_decreasing'])}, "
                  f"L: {_fmt(dl['loss'][0])} → {_fmt(dl['final_loss'])}, length "
                  f"{_fmt(dl['length'])}, |L − (1−t)²L₀| ≤ {_fmt(dl['closed_form_error'])}")
    else:
        t.add_row("Cor. 5.9 line", s.decreasing_line_reason)
    t.add_row("critical (‖∇L‖ vs tol)", f"{_yes_no(s.critical)} {_fmt(s.grad_norm)} vs "
              f"{_fmt(s.criticality.tol)}")
    t.add_row("inertia (+/−/0)", f"{_fmt(s.inertia)}  tol {_fmt(s.inertia_tol)}  gap "
              f"{_fmt(s.inertia_gap)}")
    t.add_row("zeros vs dim ker Q", f"{_fmt(s.n_zero)} vs {s.dim_ker_q} (isotropic bound "
              f"2·dim − N = {s.isotropic_bound})")
    cor = s.cor_5_16
    colour = "red" if cor["counterexample"] else ("green" if cor["applies"] else "yellow")
    t.add_row("Cor. 5.16", f"[{colour}]applies {_fmt(cor['applies'])}, holds "
              f"{_fmt(cor['holds'])}[/{colour}]: {cor['reason']}")
    return t


def bound_table(b: WideZeroBound) -> Table:
    """Rich table of a WideZeroBound."""
    t = Table(title="lossgeom loci bound (isotropic subspace ⊕V_k)", title_justify="left")
    for col in ("layer", "n_k", "n_(k+1)", "rank A_k", "gap", "dim V_k"):
        t.add_column(col, justify="right")
    for row in b.layers:
        t.add_row(str(row["layer"]), str(row["n_in"]), str(row["n_out"]), str(row["rank"]),
                  _fmt(row["rank_gap"]), str(row["dim"]))
    t.caption = (f"m = {b.m}, N = {b.n_params}, bound 2m − N = {b.bound}; measured zeros "
                 f"{_fmt(b.n_zero_eigenvalues)} (inertia {_fmt(b.inertia)}, tol {_fmt(b.tol)}, "
                 f"gap {_fmt(b.gap)}); semidefinite {_fmt(b.semidefinite)}; holds "
                 f"{_fmt(b.holds)}; ‖BᵀHB‖/‖H‖ = {_fmt(b.isotropy_residual)}")
    return t


def growth_rich_table(g: GrowthTable) -> Table:
    """Rich table of a GrowthTable: formula (measured) per width."""
    t = Table(title=f"lossgeom loci growth: ℓ = {g.depth}, n₀ = {g.n_inputs}, k = "
              f"{g.n_outputs}, n = {g.n_samples}, {'B' if g.bias else 'A'}", title_justify="left")
    t.add_column("w", justify="right")
    t.add_column("N", justify="right")
    dim_keys = ["M"] + [f for f in g.families if f.startswith("S_")]
    if "C" in g.families:
        dim_keys.append("C_{1,2}")
    for key in dim_keys:
        t.add_column(f"dim {key}", justify="right")
    for fam in g.families:
        t.add_column(f"≠0 {fam}", justify="right")

    def cell(formula, measured) -> str:
        if measured is None:
            return _fmt(formula)
        if measured == formula:
            return f"{_fmt(formula)} [green]✓[/green]"
        return f"{_fmt(formula)} [red]≠ {_fmt(measured)}[/red]"

    for r in g.rows:
        m = r.measured
        cells = [str(r.width), cell(r.n_params, m and m["n_params"])]
        cells += [cell(r.dims.get(key), m and m["dims"].get(key)) for key in dim_keys]
        cells += [cell(r.nonzero.get(fam), m and m["nonzero"].get(fam)) for fam in g.families]
        t.add_row(*cells)
    growth = ", ".join(f"{k}: {v}" for k, v in g.codimension_growth.items())
    t.caption = (f"formula values; ✓ measured equal, ≠ measured differs, bare: not measured. "
                 f"Codimension growth in w — {growth}")
    return t


def attraction_table(a: AttractionResult) -> Table:
    """Rich table of an AttractionResult, one row per perturbation size."""
    i, j = a.layers
    t = Table(title=f"lossgeom loci attract: C_{{{i},{j}}}, {a.runs} runs × {a.steps} steps, "
              f"η₀ = {a.learning_rate:.3g}", title_justify="left")
    for col in ("size", "stayed", "escaped", "distance start", "distance end", "loss drop"):
        t.add_column(col, justify="right")
    for k, s in enumerate(a.scales):
        t.add_row(_fmt(s), _fmt(a.stayed_fraction[k]), _fmt(a.escaped_fraction[k]),
                  _fmt(a.initial_distance[k]), _fmt(a.final_distance[k]), _fmt(a.loss_drop[k]))
    t.caption = (f"escaped: loss below L(θ_C)(1 − {a.escape_rtol:g}); medians over runs. Whether "
                 "C attracts gradient flow is open in the source (§3.4(d)).")
    return t


@app.command()
def star(
    layer: Annotated[int, typer.Option(help="Hidden layer i (1-based) of S_i.")] = 1,
    widths: Widths = "3,4,5,4,1", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 5, seed: Seed = 0, loss: Loss = "mse",
    rtol: Rtol = None, json_out: Json = False,
) -> None:
    """A point of the star locus S_i: criticality, predicted vs measured inertia."""
    _locate_command(f"star:{layer}", widths, activation, bias, data, n, seed, loss, rtol,
                    json_out)


@app.command()
def core(
    layers: Annotated[str, typer.Option(help="Two hidden layers i,j of C_{i,j}.")] = "1,2",
    widths: Widths = "3,4,5,4,1", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 5, seed: Seed = 0, loss: Loss = "mse",
    rtol: Rtol = None, json_out: Json = False,
) -> None:
    """A point of the core C_{i,j} = S_i ∩ S_j: one positive eigenvalue (B) or ∇²L = 0 (A)."""
    _locate_command(f"core:{layers}", widths, activation, bias, data, n, seed, loss, rtol,
                    json_out)


@app.command("dead-pair")
def dead_pair(
    layer: Annotated[int, typer.Option(help="First dead hidden layer j (layers j, j+1).")] = 1,
    widths: Widths = "3,4,5,4,2", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 5, seed: Seed = 0, loss: Loss = "mse",
    rtol: Rtol = None, json_out: Json = False,
) -> None:
    """A dead-pair critical point (§3.3): critical, but not Cooper's star locus."""
    _locate_command(f"dead-pair:{layer}", widths, activation, bias, data, n, seed, loss, rtol,
                    json_out)


@app.command("locate")
def locate_command(
    point: Point = "init",
    widths: Widths = "3,4,5,4,1", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 5, seed: Seed = 0, loss: Loss = "mse",
    rtol: Rtol = None, json_out: Json = False,
) -> None:
    """Which S_i / C_{i,j} a point lies on, is it critical, predicted vs measured inertia."""
    _locate_command(point, widths, activation, bias, data, n, seed, loss, rtol, json_out)


def _locate_command(point, widths, activation, bias, data, n, seed, loss, rtol,
                    json_out) -> None:
    with user_errors(json_out):
        problem = build_problem(widths, activation, bias, data, n, seed, loss)
        with err.status(f"locating {point} (N = {problem.n_params})"):
            report = locate(problem, resolve_point(problem, point, seed), rtol=rtol)
        if json_out:
            print_json(report.to_dict())
        else:
            out.print(locus_table(report))


@app.command("slice")
def slice_command(
    point: Point = "star:1",
    widths: Widths = "3,6,1", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 4, seed: Seed = 0, loss: Loss = "mse",
    rtol: Rtol = None, require_critical: Annotated[bool, typer.Option(
        help="Refuse a point that is not critical (Thm 5.15's hypothesis).")] = False,
    json_out: Json = False,
) -> None:
    """The last-layer slice: dim ker Q, L constant on θ + ker Q, Cor. 5.9 and Cor. 5.16."""
    with user_errors(json_out):
        problem = build_problem(widths, activation, bias, data, n, seed, loss)
        with err.status(f"slicing at {point} (N = {problem.n_params})"):
            report = last_layer_slice(problem, resolve_point(problem, point, seed), rtol=rtol,
                                      rng=seed, require_critical=require_critical)
        if json_out:
            print_json(report.to_dict())
        else:
            out.print(slice_table(report))


@app.command()
def bound(
    point: Point = "init",
    widths: Widths = "2,12,12,1", activation: Activation = "tanh", bias: Bias = False,
    data: Data = "random", n: Samples = 3, seed: Seed = 0, loss: Loss = "mse",
    rtol: Rtol = None, json_out: Json = False,
) -> None:
    """The bound over all layers: m = Σ n_(k+1)(n_k − rank A_k), zeros ≥ 2m − N."""
    with user_errors(json_out):
        problem = build_problem(widths, activation, bias, data, n, seed, loss)
        with err.status(f"bounding at {point} (N = {problem.n_params})"):
            result = wide_zero_bound(problem, resolve_point(problem, point, seed), rtol=rtol)
        if json_out:
            print_json(result.to_dict())
        else:
            out.print(bound_table(result))


@app.command()
def growth(
    depth: Annotated[int, typer.Option(help="Number of affine layers ℓ.")] = 4,
    widths: Annotated[str, typer.Option(help="Hidden widths w to tabulate.")] = "2,4,8,16,32",
    n_inputs: Annotated[int, typer.Option(help="Input width n_0.")] = 3,
    n_outputs: Annotated[int, typer.Option(help="Output width k.")] = 1,
    n: Samples = 5, bias: Bias = True, activation: Activation = "tanh", seed: Seed = 0,
    rtol: Rtol = None,
    measure_max_params: Annotated[int, typer.Option(
        help="Measure (dense Hessians) only widths with N at most this.")] = 1500,
    plot: Annotated[Path | None, typer.Option(help="Write the growth figure (PNG).")] = None,
    json_out: Json = False,
) -> None:
    """Dimensions of M, S_i, C and non-zero eigenvalue counts against the width (§3.6)."""
    with user_errors(json_out):
        ws = parse_widths(widths)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("widths", total=len(ws))
            table = growth_table(depth, ws, n_inputs=n_inputs, n_outputs=n_outputs,
                                 n_samples=n, bias=bias, activation=activation, seed=seed,
                                 rtol=rtol, measure_max_params=measure_max_params,
                                 progress=lambda done, total: bar.update(task, completed=done))
        if plot is not None:
            save_figure(growth_figure(table), plot)
            err.print(f"wrote {plot}")
        if json_out:
            print_json(table.to_dict())
        else:
            out.print(growth_rich_table(table))
            for note in table.notes:
                out.print(f"• {note}")


@app.command()
def attract(
    layers: Annotated[str, typer.Option(help="Two hidden layers i,j of C_{i,j}.")] = "1,2",
    widths: Widths = "3,4,5,4,1", activation: Activation = "tanh", bias: Bias = True,
    data: Data = "random", n: Samples = 5, seed: Seed = 0, loss: Loss = "mse",
    scales: Annotated[str, typer.Option(help="Perturbation sizes.")] = "1e-3,1e-2,1e-1",
    runs: Annotated[int, typer.Option(help="Runs per size.")] = 8,
    steps: Annotated[int, typer.Option(help="Gradient-descent steps per run.")] = 1000,
    plot: Annotated[Path | None, typer.Option(help="Write the attraction figure (PNG).")] = None,
    json_out: Json = False,
) -> None:
    """Gradient descent from perturbed core points: fraction that stays near C vs escapes.

    Raises:
        ValueError: For a --scales value that is not a comma-separated list of numbers (caught
            by ``user_errors``: one line on stderr, exit code 2).
    """
    with user_errors(json_out):
        problem = build_problem(widths, activation, bias, data, n, seed, loss)
        try:
            sizes = [float(v) for v in scales.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--scales must look like '1e-3,1e-2', got {scales!r}.") from None
        pair = _ints(layers, f"core:{layers}", 2)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("perturbation sizes", total=len(sizes))
            result = attraction(problem, *pair, scales=sizes, runs=runs, steps=steps, rng=seed,
                                progress=lambda done, total: bar.update(task, completed=done))
        if plot is not None:
            save_figure(attraction_figure(result), plot)
            err.print(f"wrote {plot}")
        if json_out:
            print_json(result.to_dict())
        else:
            out.print(attraction_table(result))
