"""Growth rates of the critical loci with the width (§3.6, Props 6.1/6.2).

All hidden widths equal w, depth ℓ (affine layers), input n_0, k outputs, n samples. Convention (B):

    N = w(n_0+1) + (ℓ−2) w(w+1) + k(w+1);   dim M = N − n·k;
    dim S_1 = (ℓ−2) w²;   dim S_i = N − w(w+1) − (ℓ−1−i) w − k(w+1)  (2 ≤ i ≤ ℓ−1);
    dim C_{i,j} = dim S_i − w².

Convention (A) drops every bias term: N = w n_0 + (ℓ−2) w² + k w, dim S_i = N − w n_{i−1} − k w.
Non-zero Hessian eigenvalues (generic): n·k on M (mse); ρ_c on C (k in (B), 0 in (A));
ρ_c + 2ρ_iτ_i on S_i∖C with ρ_i = min(n_{i−1}, k, n − β) and τ_i = w.

The codimension of M is constant, that of S_i (i ≥ 2) and of C quadratic in w; that of S_1 is only
linear in w when n_0 is fixed — the paper's "quadratic" statement holds for i ≥ 2 (§3.6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .._checks import check_option, check_rtol
from ..analysis import analyze, perfect_fit
from ..datasets import random_data
from ..models import ACTIVATIONS, mlp
from ..problem import Problem
from ..reach import fit_last_layer
from ..results import Result
from ._construct import core_point, locus_constraints, star_point
from ._network import network_layout, optimal_constant

__all__ = ["GrowthRow", "GrowthTable", "growth_formulas", "growth_table"]


@dataclass(frozen=True)
class GrowthRow(Result):
    """One width w of a growth table.

    Attributes:
        width: w.
        n_params: N (formula).
        dims: Formula dimensions {"M", "S_1", …, "C_{1,2}", …}; "M" is None when N < n·k.
        nonzero: Formula non-zero Hessian eigenvalue counts {"M", "S_i", "C"} (generic).
        zero_fraction: 1 − nonzero/N per family (formula).
        measured: None when N exceeds the measuring budget; else {"n_params" (counted on the model),
            "dims" (M: N − rank J at an exact fit; loci: free coordinates of the model's locus
            masks), "nonzero" (Hessian rank at a global minimum, a star point of each S_i and a
            core point of C_{1,2}), "zero_fraction", "inertia", "tol", "gap", "decided",
            "method" (dense | gauss_newton | low_rank per family)}.
        skipped: Why a measurement was left out (e.g. no exact fit when w + β < n).
    """

    width: int
    n_params: int
    dims: dict
    nonzero: dict
    zero_fraction: dict
    measured: dict | None
    skipped: list[str]


@dataclass(frozen=True)
class GrowthTable(Result):
    """Dimensions and eigenvalue counts of the loci for a list of widths (§3.6).

    Attributes:
        depth: ℓ.
        n_inputs: n_0.
        n_outputs: k.
        n_samples: n.
        bias: True for convention (B), False for (A).
        activation: σ of the measured networks.
        seed: Seed of the measured networks and data.
        rtol: Relative inertia tolerance of the measurements.
        families: Row keys of ``nonzero``: "M", "S_1", …, "S_{ℓ−1}", "C".
        codimension_growth: {family: "constant" | "linear" | "quadratic"} in w.
        rows: One GrowthRow per width.
        notes: Where the paper's quadratic-codimension statement holds and where it does not.
    """

    depth: int
    n_inputs: int
    n_outputs: int
    n_samples: int
    bias: bool
    activation: str
    seed: int
    rtol: float | None
    families: list[str]
    codimension_growth: dict
    rows: tuple[GrowthRow, ...]
    notes: list[str]


def growth_formulas(depth: int, width: int, n_inputs: int, n_outputs: int, n_samples: int,
                    bias: bool = True) -> dict:
    """§3.6 closed forms for hidden widths w: N, dims of M, S_i, C_{i,j}, non-zero counts.

    Args:
        depth: ℓ ≥ 2 affine layers.
        width: w ≥ 1, every hidden width.
        n_inputs: n_0.
        n_outputs: k.
        n_samples: n.
        bias: Convention (B) (True) or (A) (False).

    Returns:
        {"n_params", "dims": {"M", "S_i", "C_{i,j}"}, "nonzero": {"M", "S_i", "C"}}.

    Raises:
        ValueError: For depth < 2 or non-positive sizes.

    Example:
        >>> f = growth_formulas(4, 5, 3, 1, 5)
        >>> f["n_params"], f["dims"]["S_1"], f["dims"]["S_2"], f["dims"]["C_{1,2}"]
        (86, 50, 45, 25)
    """
    for name, v in (("width", width), ("n_inputs", n_inputs), ("n_outputs", n_outputs),
                    ("n_samples", n_samples)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"growth_formulas(...): {name} must be a positive int, got {v!r}.")
    if not isinstance(depth, int) or depth < 2:
        raise ValueError(f"growth_formulas(...): depth must be an int ≥ 2 (one hidden layer), "
                         f"got {depth!r}.")
    ell, w, n0, k, n, b = depth, width, n_inputs, n_outputs, n_samples, int(bias)
    N = w * (n0 + b) + (ell - 2) * w * (w + b) + k * (w + b)
    dims: dict = {"M": N - n * k if N >= n * k else None}
    for i in range(1, ell):
        if b:
            dims[f"S_{i}"] = (ell - 2) * w * w if i == 1 else \
                N - w * (w + 1) - (ell - 1 - i) * w - k * (w + 1)
        else:
            dims[f"S_{i}"] = N - w * (n0 if i == 1 else w) - k * w
    for i in range(1, ell):
        for j in range(i + 1, ell):
            dims[f"C_{{{i},{j}}}"] = dims[f"S_{i}"] - w * w
    rho_c = k if b else 0
    nonzero: dict = {"M": n * k}
    for i in range(1, ell):
        rho = min(n0 if i == 1 else w, k, n - b)
        nonzero[f"S_{i}"] = rho_c + 2 * rho * w
    if ell >= 3:
        nonzero["C"] = rho_c
    return {"n_params": N, "dims": dims, "nonzero": nonzero}


def _measure(problem: Problem, depth: int, rtol, seed: int, dense: bool
             ) -> tuple[dict, list[str]]:
    """Measurements at a global minimum, star points and a core point (dense or operator)."""
    layout = network_layout(problem, "growth_table(...)")
    N, nk = problem.n_params, problem.n_samples * problem.n_outputs
    c_star = optimal_constant(problem, "growth_table(...)") if layout.convention == "B" else None
    dims, nonzero, inertia, tol, gap, decided, method, skipped = {}, {}, {}, {}, {}, {}, {}, []

    def record(name: str, h: dict) -> None:
        inertia[name] = list(h["inertia"])
        tol[name], gap[name], decided[name], method[name] = (h["tol"], h["gap"], h["decided"],
                                                             h["method"])
        nonzero[name] = None if None in h["inertia"] else h["inertia"][0] + h["inertia"][1]

    def at_locus(name: str, theta: torch.Tensor) -> dict:
        h = analyze(problem, theta, rtol=rtol, method="dense" if dense else "operator",
                    rng=seed).hessian
        return {"inertia": h.inertia.as_list(), "tol": h.tol, "gap": h.gap, "decided": h.decided,
                "method": h.method}

    fitted = fit_last_layer(problem, problem.theta)
    if perfect_fit(problem, problem.outputs(fitted)).holds:
        rep = analyze(problem, fitted, rtol=rtol, method="dense" if dense else "operator")
        dims["M"] = N - rep.jacobian.rank
        h = rep.hessian
        record("M", {"inertia": h.inertia.as_list(), "tol": h.tol, "gap": h.gap, "decided": h.decided,
                     "method": h.method})
    else:
        dims["M"] = None
        skipped.append(f"M: the last layer cannot interpolate n = {problem.n_samples} samples "
                       "(w + β < n); no exact fit to measure")
    for i in range(1, depth):
        mask, _ = locus_constraints(layout, [i], c_star)
        dims[f"S_{i}"] = N - int(mask.sum())
        record(f"S_{i}", at_locus(f"S_{i}", star_point(problem, i, rng=seed + i)))
    for i in range(1, depth):
        for j in range(i + 1, depth):
            mask, _ = locus_constraints(layout, [i, j], c_star)
            dims[f"C_{{{i},{j}}}"] = N - int(mask.sum())
    if depth >= 3:
        record("C", at_locus("C", core_point(problem, 1, 2, rng=seed)))
    zero_fraction = {f: (None if v is None else 1 - v / N) for f, v in nonzero.items()}
    return ({"n_params": N, "dims": dims, "nonzero": nonzero, "zero_fraction": zero_fraction,
             "inertia": inertia, "tol": tol, "gap": gap, "decided": decided, "method": method,
             "n_outputs_total": nk}, skipped)


def growth_table(
    depth: int,
    widths: Sequence[int],
    *,
    n_inputs: int = 3,
    n_outputs: int = 1,
    n_samples: int = 5,
    bias: bool = True,
    activation: str = "tanh",
    seed: int = 0,
    rtol: float | None = None,
    measure_max_params: int = 1500,
    dense_max_params: int = 600,
    progress: Callable[[int, int], None] | None = None,
) -> GrowthTable:
    """Tabulate N, dim M, dim S_i, dim C_{i,j} and non-zero eigenvalue counts against the width.

    Formulas are those of ``growth_formulas`` (§3.6). For N ≤ ``measure_max_params`` each
    width is also measured on a seeded network (``lossgeom.mlp``, Gaussian data): the parameter
    count, dim M = N − rank J at an exact last-layer fit, the locus dimensions as free
    coordinates of the model's masks, and the non-zero Hessian eigenvalue counts at the fit, at
    star points of every S_i and at a core point of C_{1,2} (dense Hessians up to
    ``dense_max_params``, operator routes beyond).

    Args:
        depth: ℓ ≥ 2, the number of affine layers.
        widths: Hidden widths w to tabulate (positive ints).
        n_inputs: n_0.
        n_outputs: k.
        n_samples: n.
        bias: True for convention (B), False for (A).
        activation: Activation of the measured networks (``lossgeom.models.ACTIVATIONS``).
        seed: Seed of networks, data and free locus coordinates.
        rtol: Relative inertia tolerance of the measured Hessians (the theory's checks use 1e-9).
        measure_max_params: Measure only widths with N at most this.
        dense_max_params: Up to this N the measured counts come from dense Hessians
            (``analyze(method="dense")``); beyond, from the operator routes: the Gram matrix and
            the Gauss–Newton identity at the fit, and a randomized low-rank Hessian (about
            2·rank Hessian-vector products, see ``_lowrank``) at star and core points.
        progress: Called as progress(done, total) after each width.

    Returns:
        A GrowthTable.

    Raises:
        ValueError: For invalid sizes, an unknown activation, or rtol outside (0, 1).
        TypeError: For a non-bool ``bias``.

    Example:
        >>> t = growth_table(4, [2, 4, 8], measure_max_params=0)
        >>> [r.dims["C_{1,2}"] for r in t.rows], t.codimension_growth["S_1"]
        ([4, 16, 64], 'linear')
    """
    where = "growth_table(depth, widths)"
    check_rtol(where, rtol)
    check_option(where, "activation", activation, ACTIVATIONS)
    widths = list(widths)
    if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
        raise ValueError(f"{where}: widths must be a non-empty list of positive ints, got "
                         f"{widths!r}.")
    if not isinstance(bias, bool):
        raise TypeError(f"{where}: bias must be True (convention B) or False (convention A).")
    rows = []
    for done, w in enumerate(widths, start=1):
        f = growth_formulas(depth, w, n_inputs, n_outputs, n_samples, bias)
        N = f["n_params"]
        zero_fraction = {fam: 1 - v / N for fam, v in f["nonzero"].items()}
        measured, skipped = None, []
        if N <= measure_max_params:
            g = torch.Generator().manual_seed(seed)
            X, Y = random_data(n_samples, n_inputs, n_outputs, seed)
            model = mlp([n_inputs] + [w] * (depth - 1) + [n_outputs], activation, bias,
                        generator=g)
            measured, skipped = _measure(Problem(model, X, Y), depth, rtol, seed,
                                         N <= dense_max_params)
        else:
            skipped.append(f"N = {N} > measure_max_params = {measure_max_params}: formulas only")
        rows.append(GrowthRow(w, N, f["dims"], f["nonzero"], zero_fraction, measured, skipped))
        if progress is not None:
            progress(done, len(widths))
    growth = {"M": "constant"}
    for i in range(1, depth):
        growth[f"S_{i}"] = "linear" if i == 1 else "quadratic"
    if depth >= 3:
        growth["C"] = "quadratic"
    notes = [
        "codim M = n·k does not depend on w (Cooper 2018, §3.1)",
        "codim S_i and codim C_{i,j} grow like w² for i ≥ 2: the paper's quadratic statement",
        f"codim S_1 = w(n_0 + β) + (ℓ−2)βw + k(w + β) is only linear in w for fixed n_0 = "
        f"{n_inputs}: the quadratic statement needs i ≥ 2 or an input dimension growing with w",
        "non-zero eigenvalues: n·k on M and ρ_c on C stay constant, S_i∖C grows linearly in w, so "
        "the zero fraction tends to 1 on every family",
    ]
    return GrowthTable(depth, n_inputs, n_outputs, n_samples, bias, activation, seed, rtol,
                       list(f["nonzero"]), growth, tuple(rows), notes)
