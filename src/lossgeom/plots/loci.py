"""Figures for critical loci and solution-manifold walks (§3).

Builders take result objects from ``lossgeom.loci`` and ``lossgeom.manifold`` and never recompute;
they return a ``matplotlib.figure.Figure`` (no pyplot state). Save with ``save_figure``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..loci import AttractionResult, GrowthTable
from ..manifold import ManifoldWalk
from ._save import save_figure

__all__ = ["attraction_figure", "growth_figure", "save_figure", "walk_figure"]


def _family_style(family: str, index: int) -> dict:
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
               "tab:pink", "tab:olive"]
    return {"color": "black" if family == "M" else colours[index % len(colours)]}


def growth_figure(table: GrowthTable, title: str | None = None) -> Figure:
    """Codimensions and zero-eigenvalue fractions of M, S_i and C against the hidden width w.

    Left: codim = N − dim for M, every S_i and C_{1,2} (log–log; lines are the §3.6 formulas,
    markers the measured values). Right: the fraction of zero Hessian eigenvalues per family,
    1 − (non-zero count)/N (lines formula, markers measured).

    Args:
        table: A GrowthTable from ``lossgeom.loci.growth_table``.
        title: Figure title (default: depth, n_0, k, n and convention).

    Returns:
        A matplotlib Figure.
    """
    w = np.array([r.width for r in table.rows], dtype=float)
    N = np.array([r.n_params for r in table.rows], dtype=float)
    fig = Figure(figsize=(10.0, 4.2))
    ax_codim, ax_zero = fig.subplots(1, 2)
    dim_keys = ["M"] + [f for f in table.families if f.startswith("S_")]
    if "C" in table.families:
        dim_keys.append("C_{1,2}")
    for idx, key in enumerate(dim_keys):
        style = _family_style(key, idx)
        formula = np.array([np.nan if r.dims.get(key) is None else r.n_params - r.dims[key]
                            for r in table.rows], dtype=float)
        growth = table.codimension_growth.get("C" if key.startswith("C") else key, "")
        ax_codim.plot(w, formula, "-", lw=1.5, label=f"{key} ({growth})", **style)
        meas = np.array([np.nan if r.measured is None or r.measured["dims"].get(key) is None
                         else r.measured["n_params"] - r.measured["dims"][key]
                         for r in table.rows], dtype=float)
        ax_codim.plot(w, meas, "o", mfc="none", ms=7, **style)
    ax_codim.plot(w, N, ":", color="0.5", label="N")
    ax_codim.set_xscale("log", base=2)
    ax_codim.set_yscale("log")
    ax_codim.set_xlabel("hidden width w")
    ax_codim.set_ylabel("codimension N − dim")
    ax_codim.set_title("codimension of each locus (lines: formula, o: measured)", fontsize=9)
    ax_codim.legend(fontsize=7)
    lowest = 1.0
    for idx, fam in enumerate(table.families):
        style = _family_style(fam, idx)
        frac = np.array([r.zero_fraction.get(fam, np.nan) for r in table.rows], dtype=float)
        lowest = min(lowest, float(np.nanmin(frac)))
        ax_zero.plot(w, frac, "-", lw=1.5, label=fam, **style)
        meas = np.array([np.nan if r.measured is None
                         or r.measured["zero_fraction"].get(fam) is None
                         else r.measured["zero_fraction"][fam] for r in table.rows], dtype=float)
        ax_zero.plot(w, meas, "o", mfc="none", ms=7, **style)
    ax_zero.set_xscale("log", base=2)
    ax_zero.set_ylim(max(0.0, lowest - 0.05), 1.01)
    ax_zero.axhline(1.0, color="0.6", lw=0.8, ls="--")
    ax_zero.set_xlabel("hidden width w")
    ax_zero.set_ylabel("fraction of zero Hessian eigenvalues")
    ax_zero.set_title("zero-eigenvalue fraction per family (lines: formula, o: measured)",
                      fontsize=9)
    ax_zero.legend(fontsize=7, loc="lower right")
    conv = "B (biases)" if table.bias else "A (no biases)"
    fig.suptitle(title or (f"growth with width: ℓ = {table.depth}, n₀ = {table.n_inputs}, "
                           f"k = {table.n_outputs}, n = {table.n_samples}, convention {conv}"),
                 fontsize=10)
    fig.tight_layout()
    return fig


def walk_figure(walk: ManifoldWalk, title: str | None = None) -> Figure:
    """Loss change, output drift and rank profile along a walk on {x(θ) = x(θ₀)}.

    Top: L(θ_t) − L(θ₀). Middle: ‖x(θ_t) − x(θ₀)‖ (log scale) with ``drift_tol``. Bottom: rank J
    per step and, where measured, the number of zero Hessian eigenvalues (right axis) next to
    N − rank J(θ₀). The title gives the distance travelled ‖θ_T − θ₀‖.

    Args:
        walk: A ManifoldWalk from ``lossgeom.manifold.walk``.
        title: Figure title (default: level set, N, n·k, steps).

    Returns:
        A matplotlib Figure.
    """
    steps = walk.steps
    t = np.array([s.step for s in steps], dtype=float)
    fig = Figure(figsize=(7.0, 7.2))
    ax_loss, ax_drift, ax_rank = fig.subplots(3, 1, sharex=True)
    ax_loss.plot(t, [s.loss_change for s in steps], ".-", color="tab:blue")
    ax_loss.set_ylabel("L(θ) − L(θ₀)")
    ax_loss.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    drift = np.maximum(np.array([s.drift for s in steps], dtype=float), np.finfo(float).tiny)
    ax_drift.semilogy(t[1:], drift[1:], ".-", color="tab:purple", label="‖x(θ) − x(θ₀)‖")
    ax_drift.axhline(walk.drift_tol, color="tab:red", ls="--", lw=1,
                     label=f"drift_tol = {walk.drift_tol:.1e}")
    ax_drift.set_ylabel("output drift")
    ax_drift.legend(fontsize=8)
    ax_rank.step(t, [s.rank for s in steps], where="post", color="tab:green", label="rank J")
    ax_rank.set_ylabel("rank J")
    ax_rank.set_xlabel("step")
    ranks = [s.rank for s in steps]
    ax_rank.set_ylim(min(ranks) - 1, max(ranks) + 1)
    ax_rank.yaxis.set_major_locator(MaxNLocator(integer=True))
    measured = [(s.step, s.inertia[2]) for s in steps
                if s.inertia is not None and s.inertia[2] is not None]
    if measured:
        ax_zero = ax_rank.twinx()
        ax_zero.plot(*zip(*measured, strict=True), "s", color="tab:orange",
                     label="zero Hessian eigenvalues")
        ax_zero.axhline(walk.manifold_dimension, color="tab:orange", ls=":", lw=1,
                        label=f"N − rank J(θ₀) = {walk.manifold_dimension}")
        ax_zero.set_ylabel("# zero eigenvalues", color="tab:orange")
        lo = min(v for _, v in measured + [(0, walk.manifold_dimension)])
        hi = max(v for _, v in measured + [(0, walk.manifold_dimension)])
        ax_zero.set_ylim(lo - 2, hi + 2)
        ax_zero.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_zero.legend(fontsize=8, loc="lower right")
    ax_rank.legend(fontsize=8, loc="lower left")
    dist = steps[-1].distance
    status = "" if walk.completed else " — stopped early"
    fig.suptitle(title or (f"walk on the {walk.level_set}: N = {walk.n_params}, "
                           f"n·k = {walk.n_outputs_total}, {len(steps) - 1} steps, "
                           f"‖θ − θ₀‖ = {dist:.3g}{status}"), fontsize=10)
    fig.tight_layout()
    return fig


def attraction_figure(result: AttractionResult, title: str | None = None) -> Figure:
    """Fraction of runs that stay near / escape the core against the perturbation size.

    Left axis: stayed and escaped fractions (log-scaled size). Right axis: median distance to
    C_{i,j} before and after the descent.

    Args:
        result: An AttractionResult from ``lossgeom.loci.attraction``.
        title: Figure title (default: core, runs, steps).

    Returns:
        A matplotlib Figure.
    """
    s = np.array(result.scales, dtype=float)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    ax.plot(s, result.stayed_fraction, "o-", color="tab:blue", label="stayed near C")
    ax.plot(s, result.escaped_fraction, "s-", color="tab:red", label="escaped (loss fell)")
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("perturbation size ‖θ₀ − θ_C‖")
    ax.set_ylabel("fraction of runs")
    dist = ax.twinx()
    dist.loglog(s, result.initial_distance, ":", color="0.4", label="median distance to C, start")
    dist.loglog(s, result.final_distance, "--", color="0.2", label="median distance to C, end")
    i, j = result.layers
    dist.set_ylabel(f"distance to C_{{{i},{j}}}")
    lines = ax.get_legend_handles_labels()
    more = dist.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center left")
    ax.set_title(title or (f"gradient descent from perturbed points of C_{{{i},{j}}}: "
                           f"{result.runs} runs × {result.steps} steps"), fontsize=10)
    fig.tight_layout()
    return fig
