"""``lossgeom linear``: deep linear networks (spec §4, §5) from the command line.

classify     pure vs spurious critical points (the §4.7 example, the Eckart–Young fibres, or
             weights from a file)
landscape    every critical value of ‖W_h⋯W_1 − Q‖²_F with its Morse index, confirmed by analyze
bad-minima   gradient descent from random starts; tally of the endpoints (histogram figure)
hessian-rank closed-form rank of H_o, H_f, H_L against measured ranks (tolerance and gap)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import typer
from rich.table import Table

from ..linear import (
    FunctionalLoss,
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
from ..plots import save_figure
from ..plots.linear import bad_minima_figure, eckart_young_figure, hessian_rank_figure
from ..report import jsonable
from ..specs import parse_widths
from ._common import err, out, print_json, user_errors

app = typer.Typer(
    name="linear",
    help="Deep linear networks: pure and spurious critical points, Eckart–Young landscape, "
         "bad minima, Hessian ranks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["app"]


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return "inf" if x == float("inf") else f"{x:.3g}"
    return str(x)


def _floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ValueError(f"{name} must look like '4,3,2,1', got {text!r}.") from None
    if not vals:
        raise ValueError(f"{name} is empty; give comma-separated numbers like '4,3,2,1'.")
    return vals


def _kind_style(kind: str) -> str:
    return {"pure": "green", "spurious": "red", "noncritical": "yellow"}.get(kind, "white")


def _load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"--{what} {path}: no such file.")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _weights_from_file(path: Path) -> list[torch.Tensor]:
    arrays = _load_npz(path, "weights")
    keys = sorted(arrays, key=lambda k: (len(k), k))
    if not keys:
        raise ValueError(f"--weights {path}: the file holds no arrays; save W_1..W_h with "
                         "np.savez(path, W1=..., W2=...).")
    return [torch.as_tensor(arrays[k], dtype=torch.float64) for k in keys]


def _classify_rows(points: list[tuple[str, list[torch.Tensor], FunctionalLoss]], convention: str,
                   rtol: float | None) -> list[tuple]:
    return [(name, loss.value(product(Ws)), classify_point(Ws, loss, convention=convention,
                                                           rtol=rtol))
            for name, Ws, loss in points]


@app.command()
def classify(
    example: str = typer.Option("bad-minimum", help="bad-minimum (spec §4.7) | eckart-young "
                                                    "(spec §4.6, Q = diag(4,3,2,1), widths 4,2,4)."),
    weights: Path | None = typer.Option(None, help="NPZ with W1..Wh (W_i: (d_i, d_{i-1})); "
                                                   "overrides --example."),
    target: Path | None = typer.Option(None, help="NPZ with 'Q': loss ‖W̄ − Q‖²_F."),
    data: Path | None = typer.Option(None, help="NPZ with 'inputs' (n, d_0), 'targets' (n, d_h)."),
    loss: str = typer.Option("mse", help="Loss on --data: mse bce ce_prob softmax_ce."),
    convention: str = typer.Option("tangent_cone", help="tangent_cone | all_singular."),
    rtol: float | None = typer.Option(None, help="Relative tolerance of the rank decisions."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON only."),
) -> None:
    """Classify critical points of L = ℓ∘μ as pure or spurious, with ranks and tolerances."""
    with user_errors():
        if weights is not None:
            Ws = _weights_from_file(weights)
            if (target is None) == (data is None):
                raise ValueError("--weights needs exactly one of --target Q.npz or --data D.npz.")
            if target is not None:
                arrays = _load_npz(target, "target")
                if "Q" not in arrays:
                    raise ValueError(f"--target {target}: expected an array named 'Q', found "
                                     f"{sorted(arrays)}.")
                fl = frobenius_loss(arrays["Q"])
            else:
                arrays = _load_npz(data, "data")
                missing = {"inputs", "targets"} - set(arrays)
                if missing:
                    raise ValueError(f"--data {data}: missing arrays {sorted(missing)}.")
                fl = data_loss(arrays["inputs"], arrays["targets"], loss)
            points = [(str(weights), Ws, fl)]
        elif example == "bad-minimum":
            ex = weighted_frobenius_example()
            points = [(name, list(w), ex.loss) for name, w in ex.points().items()]
        elif example == "eckart-young":
            Q = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
            ls = eckart_young_landscape(Q, 2)
            fl = frobenius_loss(Q)
            points = [(f"I={list(p.index_set)}", fibre_point(Q, p.index_set, ls.widths, rng=i), fl)
                      for i, p in enumerate(ls.points)]
            points.append(("θ = 0", [torch.zeros(2, 4), torch.zeros(4, 2)], fl))
        else:
            raise ValueError(f"unknown --example {example!r}. Expected 'bad-minimum' or "
                             "'eckart-young'.")
        rows = _classify_rows(points, convention, rtol)
    if json_out:
        print_json(jsonable([{"point": name, "loss": value, **c.to_dict()}
                             for name, value, c in rows]))
        return
    first = rows[0][2]
    fs = functional_space(first.widths)
    t = Table(title=f"lossgeom linear classify — widths {first.widths} "
                    f"({'filling' if fs.filling else 'non-filling'}, r = {fs.r}, "
                    f"dim M_r = {fs.dim}, d_θ = {fs.n_params}), convention {convention}",
              title_justify="left")
    for col in ("point", "L", "‖∇L‖ (tol)", "rank W̄ (tol, gap)", "rank dμ formula / numerical",
                "kind"):
        t.add_column(col)
    for name, value, c in rows:
        rd = c.rank_decision
        num = c.differential_numerical
        t.add_row(name, _fmt(value), f"{_fmt(c.grad_norm)} ({_fmt(c.grad_tol)})",
                  f"{c.rank_product} ({_fmt(rd.tol)}, {_fmt(rd.gap)})",
                  f"{c.differential_rank} / {'—' if num is None else num.rank}"
                  + (" max" if c.maximal_differential else ""),
                  f"[{_kind_style(c.kind)}]{c.kind}[/]")
    out.print(t)
    for name, _, c in rows:
        out.print(f"[bold]{name}[/bold]: {c.reason}", highlight=False)


@app.command()
def landscape(
    sigma: str = typer.Option("4,3,2,1", help="Singular values of Q (any order)."),
    rank: int = typer.Option(2, "--rank", "-r", help="Rank bound r = min width."),
    widths: str | None = typer.Option(None, help="Widths d_0,...,d_h (default d_0,r,d_h)."),
    rows_q: int | None = typer.Option(None, "--rows", help="d_h (default len(sigma))."),
    cols_q: int | None = typer.Option(None, "--cols", help="d_0 (default len(sigma))."),
    rotate: bool = typer.Option(False, "--rotate/--no-rotate",
                                help="Q = U diag(σ) Vᵀ with random orthogonal U, V."),
    seed: int = typer.Option(0, help="Seed of the rotation and the fibre points."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Build θ on each fibre and confirm the inertia with analyze."),
    rtol: float | None = typer.Option(None, help="Relative tolerance of the inertia decisions."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON only."),
    plot: Path | None = typer.Option(None, help="Write the critical-value figure (PNG)."),
) -> None:
    """Eckart–Young landscape of ‖W_h⋯W_1 − Q‖²_F: values, index sets, Morse indices."""
    with user_errors():
        s = _floats(sigma, "--sigma")
        m, n = rows_q or len(s), cols_q or len(s)
        if len(s) > min(m, n):
            raise ValueError(f"--sigma has {len(s)} values but Q is {m}x{n}; at most "
                             f"{min(m, n)} singular values.")
        Q = torch.zeros(m, n, dtype=torch.float64)
        Q[range(len(s)), range(len(s))] = torch.tensor(sorted(s, reverse=True),
                                                       dtype=torch.float64)
        if rotate:
            g = torch.Generator().manual_seed(seed)
            U = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64)).Q
            V = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
            Q = U @ Q @ V.T
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
    t = Table(title=f"lossgeom linear landscape — σ(Q) = ({', '.join(f'{x:.4g}' for x in ls.sigma)}),"
                    f" r = {ls.r}, widths {ls.widths}, dim M_r = {fs.dim}, d_θ = {fs.n_params}",
              title_justify="left")
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
    spur = ", ".join(f"{list(I) or 'θ=0'}: {_fmt(v)}" for I, v in ls.spurious)
    out.print(f"spurious critical values (|I| < r, saddles): {spur or 'none'}", highlight=False)
    if not ls.finite:
        out.print(f"[yellow]σ ties {[list(x) for x in ls.ties]}: the critical set is not finite; "
                  "one point per family shown.[/]")


@app.command("bad-minima")
def bad_minima(
    runs: int = typer.Option(200, help="Random initialisations."),
    steps: int = typer.Option(4000, help="Gradient steps per run."),
    lr: float = typer.Option(0.02, help="Step size."),
    seed: int = typer.Option(0, help="Seed of the initialisations."),
    init_scale: float = typer.Option(1.0, help="Std of the initial entries."),
    widths: str = typer.Option("2,1,2", help="d_0,...,d_h with d_0 = d_h = 2 (2,1,2 non-filling, "
                                             "2,3,2 filling)."),
    convention: str = typer.Option("tangent_cone", help="tangent_cone | all_singular."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON only."),
    plot: Path | None = typer.Option(None, help="Write the histogram figure (PNG)."),
) -> None:
    """GD on the weighted-Frobenius example of spec §4.7; tally which critical point each run reaches."""
    with user_errors():
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
    for c in res.clusters:
        style = {"lowest minimum": "green", "bad minimum": "yellow", "saddle": "red"}.get(c.label,
                                                                                        "white")
        t.add_row(_fmt(c.loss), str(c.count), f"[{style}]{c.label}[/]",
                  "/".join(map(str, c.inertia)), f"{_fmt(c.inertia_tol)}, {_fmt(c.inertia_gap)}",
                  _fmt(c.pure), str(c.rank_product))
    out.print(t)
    out.print(f"bad minima: {res.n_bad_minima}/{res.runs} ({100 * res.fraction_bad:.1f}%), "
              f"not converged: {res.n_not_converged}, {res.seconds:.1f} s", highlight=False)


@app.command("hessian-rank")
def hessian_rank(
    widths: str = typer.Option("25,5,10,10", help="Widths d,M_1,...,K."),
    n: int = typer.Option(50, help="Number of samples."),
    data_rank: int | None = typer.Option(None, help="rank X (default min(n, d))."),
    loss: str = typer.Option("mse", help="mse | softmax_ce (alias ce)."),
    bias: bool = typer.Option(False, "--bias/--no-bias", help="Biases in every layer."),
    activations: str = typer.Option("linear,tanh,relu", help="Nets to measure."),
    measure: bool = typer.Option(True, "--measure/--no-measure",
                                 help="Measure ranks (dense Hessians) next to the formula."),
    seed: int = typer.Option(0, help="Seed of weights and data."),
    rtol: float | None = typer.Option(None, help="Relative rank tolerance (default N·eps)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON only."),
    plot: Path | None = typer.Option(None, help="Write the formula-vs-measured bars (PNG)."),
) -> None:
    """Closed-form rank of H_o, H_f, H_L (spec §5) next to measured ranks with tolerance and gap."""
    with user_errors():
        d = parse_widths(widths)
        r = min(n, d[0]) if data_rank is None else data_rank
        if not measure:
            formula = hessian_rank_formula(d, r, loss, bias, n_samples=n)
            if plot is not None:
                raise ValueError("--plot needs measured ranks; drop --no-measure.")
        else:
            acts = [a for a in activations.replace(" ", "").split(",") if a]
            with err.status(f"dense Hessians for {', '.join(acts)}"):
                comp = hessian_rank_comparison(d, n, activations=acts, loss=loss, bias=bias,
                                               data_rank=r, seed=seed, rtol=rtol)
            formula = comp.formula
            if plot is not None:
                save_figure(hessian_rank_figure(comp), plot)
                err.print(f"wrote {plot}")
    if json_out:
        print_json(jsonable(comp.to_dict() if measure else {"widths": d, "n_samples": n,
                                                            "data_rank": r, "formula": formula}))
        return
    t = Table(title=f"lossgeom linear hessian-rank — widths {tuple(d)}, n = {n}, r = {r}, "
                    f"{loss}{', bias' if bias else ''}, N = {formula['n_params']}",
              title_justify="left")
    t.add_column("Hessian")
    t.add_column("formula")
    if measure:
        acts = list(dict.fromkeys(row.activation for row in comp.rows))
        for a in acts:
            t.add_column(f"{a}: rank (tol, gap)")
        rows = {(row.activation, row.part): row for row in comp.rows}
    names = {"outer": "H_o outer product", "functional": "H_f functional", "total": "H_L total"}
    for part, label in names.items():
        cells = [label, _fmt(formula[part])]
        if measure:
            for a in acts:
                row = rows[(a, part)]
                colour = ("green" if row.agrees else "yellow" if row.agrees is None or a != "linear"
                          else "red")
                flag = "" if row.decided else " undecided"
                cells.append(f"[{colour}]{row.measured}[/] ({_fmt(row.tol)}, {_fmt(row.gap)})"
                             f"{flag}")
        t.add_row(*cells)
    out.print(t)
    out.print(f"q = {formula['q']}, s = {formula['s']}, K_eff = {formula['k_effective']}; "
              f"{formula['reason']}", highlight=False)
    if measure:
        out.print("tanh/ReLU: the linear formula is only an estimate there; agreement depends on "
                  f"the tolerance (spec §5.5). rtol = {comp.rtol:.2e}, {comp.seconds:.1f} s.",
                  highlight=False)
