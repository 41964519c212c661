"""``lossgeom linear``: deep linear networks (§4, §5) from the command line.

classify      pure vs spurious critical points (the §4.7 example, the Eckart–Young fibres, or
              weights from a file)
landscape     every critical value of ‖W_h⋯W_1 − Q‖²_F with its Morse index, confirmed by analyze
bad-minima    gradient descent from random starts; tally of the endpoints (histogram figure)
hessian-rank  closed-form rank of H_o, H_f, H_L against measured ranks (tolerance and gap)

Every command prints a Rich table; ``--json`` prints JSON alone on stdout (progress and notes go
to stderr); ``--plot PNG`` writes the figure atomically.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.table import Table

from ..linear import (
    FunctionalLoss,
    LinearCritical,
    SingularValueTieWarning,
    bad_minima_experiment,
    data_loss,
    eckart_young_check,
    eckart_young_landscape,
    fibre_point,
    frobenius_loss,
    functional_space,
    hessian_rank_comparison,
    hessian_rank_formula,
    product,
    weighted_frobenius_example,
    weighted_frobenius_loss,
)
from ..linear import classify as classify_point
from ..llc import aoyagi_study
from ..plots import save_figure
from ..plots.linear import bad_minima_figure, eckart_young_figure, hessian_rank_figure
from ..problem_specs import parse_widths
from ..report import jsonable
from ._common import _fmt, err, out, print_json, progress_bars, user_errors
from ._options import Json, Rtol

app = typer.Typer(
    name="linear",
    help="Deep linear networks: pure and spurious critical points, Eckart–Young landscape, "
         "bad minima, Hessian ranks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["app"]

Convention = Annotated[str, typer.Option(help="tangent_cone | all_singular.")]
Seed = Annotated[int, typer.Option(help="Seed of the random parts.")]


def _floats(text: str, name: str) -> list[float]:
    """Parse '4,3,2,1'.

    Returns:
        The numbers.

    Raises:
        ValueError: If the text is not a non-empty comma-separated list of numbers.
    """
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ValueError(f"{name} must look like '4,3,2,1', got {text!r}.") from None
    if not vals:
        raise ValueError(f"{name} is empty; give comma-separated numbers like '4,3,2,1'.")
    return vals


def _load_npz(path: Path, option: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Arrays of an NPZ file (no pickles).

    Returns:
        name → array.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a required array is missing.
    """
    if not path.exists():
        raise FileNotFoundError(f"{option} {path}: no such file.")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise ValueError(f"{option} {path}: missing arrays {missing} (found {sorted(arrays)}).")
    return arrays


def _points_from_files(weights: Path, target: Path | None, data: Path | None, loss: str
                       ) -> list[tuple[str, list[torch.Tensor], FunctionalLoss]]:
    """One point from --weights with the loss of --target (‖W − Q‖²_F) or --data (C(XWᵀ, Y)).

    Returns:
        [(name, weights, loss)].

    Raises:
        ValueError: If not exactly one of --target and --data is given, or arrays are missing.
    """
    if (target is None) == (data is None):
        raise ValueError("--weights needs exactly one of --target Q.npz or --data D.npz.")
    arrays = _load_npz(weights, "--weights")
    if not arrays:
        raise ValueError(f"--weights {weights}: the file holds no arrays; save W_1..W_h with "
                         "np.savez(path, W1=..., W2=...).")
    Ws = [torch.as_tensor(arrays[k], dtype=torch.float64)
          for k in sorted(arrays, key=lambda k: (len(k), k))]
    if target is not None:
        fl = frobenius_loss(_load_npz(target, "--target", ("Q",))["Q"])
    else:
        d = _load_npz(data, "--data", ("inputs", "targets"))
        fl = data_loss(d["inputs"], d["targets"], loss)
    return [(str(weights), Ws, fl)]


def _example_points(example: str) -> list[tuple[str, list[torch.Tensor], FunctionalLoss]]:
    """The named points of a built-in example.

    Returns:
        [(name, weights, loss)].

    Raises:
        ValueError: For an unknown example name.
    """
    if example == "bad-minimum":
        ex = weighted_frobenius_example()
        return [(name, list(w), ex.loss) for name, w in ex.points().items()]
    if example == "eckart-young":
        Q = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
        ls = eckart_young_landscape(Q, 2)
        fl = frobenius_loss(Q)
        points = [(f"I={list(p.index_set)}", fibre_point(Q, p.index_set, ls.widths, rng=i), fl)
                  for i, p in enumerate(ls.points)]
        points.append(("θ = 0", [torch.zeros(2, 4), torch.zeros(4, 2)], fl))
        return points
    raise ValueError(f"unknown --example {example!r}. Expected 'bad-minimum' or 'eckart-young'.")


def _classify_table(rows: list[tuple[str, float, LinearCritical]], convention: str) -> Table:
    first = rows[0][2]
    fs = functional_space(first.widths)
    t = Table(title=f"lossgeom linear classify — widths {first.widths} "
                    f"({'filling' if fs.filling else 'non-filling'}, r = {fs.r}, "
                    f"dim M_r = {fs.dim}, d_θ = {fs.n_params}), convention {convention}",
              title_justify="left")
    for col in ("point", "L", "‖∇L‖ (tol)", "rank W̄ (tol, gap)", "rank dμ formula / numerical",
                "kind"):
        t.add_column(col)
    style = {"pure": "green", "spurious": "red", "noncritical": "yellow"}
    for name, value, c in rows:
        rd, num = c.rank_decision, c.differential_numerical
        t.add_row(name, _fmt(value), f"{_fmt(c.grad_norm)} ({_fmt(c.grad_tol)})",
                  f"{c.rank_product} ({_fmt(rd.tol)}, {_fmt(rd.gap)})",
                  f"{c.differential_rank} / {'—' if num is None else num.rank}"
                  + (" max" if c.maximal_differential else ""),
                  f"[{style[c.kind]}]{c.kind}[/]")
    return t


@app.command()
def classify(
    example: Annotated[str, typer.Option(
        help="bad-minimum (§4.7) | eckart-young (§4.6: Q = diag(4,3,2,1), widths "
             "4,2,4).")] = "bad-minimum",
    weights: Annotated[Path | None, typer.Option(
        help="NPZ with W1..Wh (W_i: (d_i, d_{i-1})); overrides --example.")] = None,
    target: Annotated[Path | None, typer.Option(help="NPZ with 'Q': loss ‖W̄ − Q‖²_F.")] = None,
    data: Annotated[Path | None, typer.Option(
        help="NPZ with 'inputs' (n, d_0) and 'targets' (n, d_h): loss C(X W̄ᵀ, Y).")] = None,
    loss: Annotated[str, typer.Option(help="Loss on --data: mse bce ce_prob softmax_ce.")] = "mse",
    convention: Convention = "tangent_cone",
    rtol: Rtol = None,
    json_out: Json = False,
) -> None:
    """Classify critical points of L = ℓ∘μ as pure or spurious, with ranks and tolerances."""
    with user_errors(json_out):
        points = (_points_from_files(weights, target, data, loss) if weights is not None
                  else _example_points(example))
        rows = [(name, fl.value(product(Ws)),
                 classify_point(Ws, fl, convention=convention, rtol=rtol))
                for name, Ws, fl in points]
    if json_out:
        print_json(jsonable([{"point": name, "loss": value, **c.to_dict()}
                             for name, value, c in rows]))
        return
    out.print(_classify_table(rows, convention))
    for name, _, c in rows:
        out.print(f"[bold]{name}[/bold]: {c.reason}", highlight=False)


def _target_matrix(sigma: str, rows_q: int | None, cols_q: int | None, rotate: bool, seed: int
                   ) -> torch.Tensor:
    """Q = diag(σ) of shape (rows, cols), optionally U diag(σ) Vᵀ with random orthogonal U, V.

    Returns:
        Q, float64.

    Raises:
        ValueError: If σ does not parse or has more values than min(rows, cols).
    """
    s = _floats(sigma, "--sigma")
    m, n = rows_q or len(s), cols_q or len(s)
    if len(s) > min(m, n):
        raise ValueError(f"--sigma has {len(s)} values but Q is {m}x{n}; at most {min(m, n)} "
                         "singular values.")
    Q = torch.zeros(m, n, dtype=torch.float64)
    Q[range(len(s)), range(len(s))] = torch.tensor(sorted(s, reverse=True), dtype=torch.float64)
    if rotate:
        g = torch.Generator().manual_seed(seed)
        U = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64)).Q
        V = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
        Q = U @ Q @ V.T
    return Q


@app.command()
def landscape(
    sigma: Annotated[str, typer.Option(help="Singular values of Q (any order).")] = "4,3,2,1",
    rank: Annotated[int, typer.Option("--rank", "-r", help="Rank bound r = min width.")] = 2,
    widths: Annotated[str | None, typer.Option(
        help="Widths d_0,...,d_h (default d_0,r,d_h).")] = None,
    rows_q: Annotated[int | None, typer.Option("--rows", help="d_h (default len(sigma)).")] = None,
    cols_q: Annotated[int | None, typer.Option("--cols", help="d_0 (default len(sigma)).")] = None,
    rotate: Annotated[bool, typer.Option(
        "--rotate/--no-rotate", help="Q = U diag(σ) Vᵀ with random orthogonal U, V.")] = False,
    seed: Seed = 0,
    check: Annotated[bool, typer.Option(
        "--check/--no-check",
        help="Build θ on each fibre and confirm the inertia with analyze.")] = True,
    rtol: Rtol = None,
    json_out: Json = False,
    plot: Annotated[Path | None, typer.Option(
        help="Write the critical-value figure (PNG).")] = None,
) -> None:
    """Eckart–Young landscape of ‖W_h⋯W_1 − Q‖²_F: values, index sets, Morse indices."""
    with user_errors(json_out):
        Q = _target_matrix(sigma, rows_q, cols_q, rotate, seed)
        d = None if widths is None else parse_widths(widths)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SingularValueTieWarning)
            if check:
                ls, checks = eckart_young_check(Q, rank, d, rng=seed, rtol=rtol)
            else:
                ls, checks = eckart_young_landscape(Q, rank, d), None
        for w in caught:
            err.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
        if plot is not None:
            save_figure(eckart_young_figure(ls, checks), plot)
            err.print(f"wrote {plot}")
    if json_out:
        payload = ls.to_dict()
        if checks is not None:
            payload["checks"] = [c._asdict() for c in checks]
        print_json(jsonable(payload))
        return
    fs = functional_space(ls.widths)
    sig = ", ".join(f"{x:.4g}" for x in ls.sigma)
    t = Table(title=f"lossgeom linear landscape — σ(Q) = ({sig}), r = {ls.r}, widths {ls.widths}, "
                    f"dim M_r = {fs.dim}, d_θ = {fs.n_params}", title_justify="left")
    for col in ("I (0-based)", "L = Σ_{i∉I} σ_i²", "Morse index", "predicted inertia (+/−/0)"):
        t.add_column(col)
    if checks is not None:
        for col in ("analyze inertia", "tol, gap", "kind", "pure", "agrees"):
            t.add_column(col)
    for i, (p, pred) in enumerate(zip(ls.points, ls.predicted_inertia, strict=True)):
        row = [str(list(p.index_set)), _fmt(p.loss), str(p.morse_index),
               "—" if pred is None else "/".join(map(str, pred))]
        if checks is not None:
            c = checks[i]
            row += ["/".join(map(str, c.measured)), f"{_fmt(c.tol)}, {_fmt(c.gap)}", c.kind,
                    _fmt(c.pure), "[green]yes[/]" if c.agrees else "[red]no[/]"]
        t.add_row(*row)
    out.print(t)
    spur = ", ".join(f"{list(subset) or 'θ=0'}: {_fmt(v)}" for subset, v in ls.spurious)
    out.print(f"spurious critical values (|I| < r, saddles): {spur or 'none'}", highlight=False)
    if not ls.finite:
        out.print(f"[yellow]σ ties {[list(x) for x in ls.ties]}: the critical set is not finite; "
                  "one point per family shown.[/]")


@app.command("bad-minima")
def bad_minima(
    runs: Annotated[int, typer.Option(help="Random initialisations.")] = 200,
    steps: Annotated[int, typer.Option(help="Gradient steps per run.")] = 4000,
    lr: Annotated[float, typer.Option(help="Step size.")] = 0.02,
    seed: Seed = 0,
    init_scale: Annotated[float, typer.Option(help="Std of the initial entries.")] = 1.0,
    widths: Annotated[str, typer.Option(
        help="d_0,...,d_h with d_0 = d_h = 2 (2,1,2 non-filling; 2,3,2 filling).")] = "2,1,2",
    convention: Convention = "tangent_cone",
    json_out: Json = False,
    plot: Annotated[Path | None, typer.Option(help="Write the histogram figure (PNG).")] = None,
) -> None:
    """Gradient descent on the §4.7 example; tally the critical point each run reaches."""
    with user_errors(json_out):
        d = parse_widths(widths)
        ex = weighted_frobenius_example()
        loss = weighted_frobenius_loss(ex.Q, ex.Lambda)
        with err.status(f"gradient descent: {runs} runs x {steps} steps"):
            res = bad_minima_experiment(runs, steps=steps, lr=lr, seed=seed,
                                        init_scale=init_scale, widths=d, loss=loss,
                                        convention=convention)
        if plot is not None:
            save_figure(bad_minima_figure(res), plot)
            err.print(f"wrote {plot}")
    if json_out:
        print_json(jsonable(res.to_dict()))
        return
    t = Table(title=f"lossgeom linear bad-minima — widths {res.widths} "
                    f"({'filling' if res.filling else 'non-filling'}), ℓ = Σ Λ_ab (W_ab − I_ab)², "
                    f"{res.runs} runs x {res.steps} steps, lr {res.lr}", title_justify="left")
    for col in ("final L", "runs", "endpoint", "inertia (+/−/0)", "tol, gap", "pure", "rank W̄"):
        t.add_column(col)
    style = {"lowest minimum": "green", "bad minimum": "yellow", "saddle": "red"}
    for c in res.clusters:
        t.add_row(_fmt(c.loss), str(c.count), f"[{style.get(c.label, 'white')}]{c.label}[/]",
                  "/".join(map(str, c.inertia)), f"{_fmt(c.inertia_tol)}, {_fmt(c.inertia_gap)}",
                  _fmt(c.pure), str(c.rank_product))
    out.print(t)
    out.print(f"bad minima: {res.n_bad_minima}/{res.runs} ({100 * res.fraction_bad:.1f}%), "
              f"not converged: {res.n_not_converged}, {res.seconds:.1f} s", highlight=False)


@app.command("hessian-rank")
def hessian_rank(
    widths: Annotated[str, typer.Option(help="Widths d,M_1,...,K.")] = "25,5,10,10",
    n: Annotated[int, typer.Option(help="Number of samples.")] = 50,
    data_rank: Annotated[int | None, typer.Option(help="rank X (default min(n, d)).")] = None,
    loss: Annotated[str, typer.Option(help="mse | softmax_ce (alias ce).")] = "mse",
    bias: Annotated[bool, typer.Option("--bias/--no-bias",
                                       help="Biases in every layer.")] = False,
    activations: Annotated[str, typer.Option(help="Nets to measure.")] = "linear,tanh,relu",
    measure: Annotated[bool, typer.Option(
        "--measure/--no-measure",
        help="Measure ranks (dense Hessians) next to the formula.")] = True,
    seed: Seed = 0,
    rtol: Annotated[float | None, typer.Option(
        help="Relative rank tolerance (default N·eps).")] = None,
    json_out: Json = False,
    plot: Annotated[Path | None, typer.Option(
        help="Write the formula-vs-measured bars (PNG); needs --measure.")] = None,
) -> None:
    """Closed-form rank of H_o, H_f, H_L (§5) next to measured ranks with tolerance and gap."""
    comp = None
    with user_errors(json_out):
        d = parse_widths(widths)
        r = min(n, d[0]) if data_rank is None else data_rank
        if measure:
            acts = [a for a in activations.replace(" ", "").split(",") if a]
            with err.status(f"dense Hessians for {', '.join(acts)}"):
                comp = hessian_rank_comparison(d, n, activations=acts, loss=loss, bias=bias,
                                               data_rank=r, seed=seed, rtol=rtol)
            formula = comp.formula
            if plot is not None:
                save_figure(hessian_rank_figure(comp), plot)
                err.print(f"wrote {plot}")
        else:
            formula = hessian_rank_formula(d, r, loss, bias, n_samples=n)
            if plot is not None:
                err.print("[yellow]--plot ignored: the figure needs measured ranks "
                          "(drop --no-measure).[/]")
    if json_out:
        print_json(jsonable(comp.to_dict() if comp is not None else
                            {"widths": d, "n_samples": n, "data_rank": r, "formula": formula}))
        return
    t = Table(title=f"lossgeom linear hessian-rank — widths {tuple(d)}, n = {n}, r = {r}, "
                    f"{loss}{', bias' if bias else ''}, N = {formula['n_params']}",
              title_justify="left")
    t.add_column("Hessian")
    t.add_column("formula")
    rows = {} if comp is None else {(row.activation, row.part): row for row in comp.rows}
    acts = list(dict.fromkeys(a for a, _ in rows))
    for a in acts:
        t.add_column(f"{a}: rank (tol, gap)")
    names = {"outer": "H_o outer product", "functional": "H_f functional", "total": "H_L total"}
    for part, label in names.items():
        cells = [label, _fmt(formula[part])]
        for a in acts:
            row = rows[(a, part)]
            colour = "green" if row.agrees else "red" if a == "linear" and row.agrees is False \
                else "yellow"
            cells.append(f"[{colour}]{row.measured}[/] ({_fmt(row.tol)}, {_fmt(row.gap)})"
                         + ("" if row.decided else " undecided"))
        t.add_row(*cells)
    out.print(t)
    out.print(f"q = {formula['q']}, s = {formula['s']}, K_eff = {formula['k_effective']}; "
              f"{formula['reason']}", highlight=False)
    if comp is not None:
        routes = ", ".join(sorted({row.route for row in comp.rows if row.part == "outer"}))
        out.print(f"H_o route {routes}: its tol and gap are singular values of that matrix (the "
                  "eigenvalues of H_o would square its conditioning).", highlight=False)
        out.print("tanh/ReLU: the linear formula is only an estimate there; agreement depends on "
                  f"the tolerance (§5.5). rtol = {comp.rtol:.2e}, {comp.seconds:.1f} s.",
                  highlight=False)


@app.command("llc-study")
def llc_study(
    n: Annotated[int, typer.Option(help="Number of Gaussian inputs (nβ = n / log n).")] = 1000,
    quick: Annotated[bool, typer.Option(
        "--quick", help="2 chains × 100 draws: a smoke run that does not mix.")] = False,
    json_out: Json = False,
) -> None:
    """The four Aoyagi cases of reduced-rank regression: exact λ, rank ∇²L / 2, SGLD (§9.2)."""
    with user_errors(json_out), progress_bars(not json_out) as bar:
        study = aoyagi_study(n=n, quick=quick,
                             progress=None if bar is None else
                             lambda done, total: bar("SGLD, four cases", done, total))
    if json_out:
        print_json(study.to_dict())
        return
    t = Table(title=f"lossgeom linear llc-study — x ↦ BAx, true rank 0, n = {n}, nβ = n/log n "
                    f"({'quick' if quick else 'default'} SGLD settings)", title_justify="left")
    for col in ("case", "(M, H, N)", "exact λ", "rank H/2 at 0", "SGLD at 0", "rank H/2 at A=0",
                "SGLD at A=0", "N/2", "nβ·μ_min", "mixed", "s"):
        t.add_column(col, justify="right")
    for c in study.cases:
        z, f = c.at_zero, c.at_less_singular
        t.add_row(str(c.case), str(c.widths), f"{c.exact:g}", _fmt(c.bounds_at_zero.lower),
                  f"{z.mean:.2f} ± {z.std:.2f}", _fmt(c.bounds_at_less_singular.lower),
                  f"{f.mean:.2f} ± {f.std:.2f}", f"{c.n_params / 2:g}", _fmt(c.resolution),
                  "yes" if c.mixed else "[yellow]no[/]", f"{z.seconds + f.seconds:.1f}")
    out.print(t)
    out.print("At θ = 0 the Hessian vanishes (bound 0) while λ is the exact value; at A = 0 the "
              "bound is λ itself, and SGLD at a finite nβ sees only curvature with nβ·μ ≫ 1 "
              "(docs/theory.md §9).", highlight=False)
