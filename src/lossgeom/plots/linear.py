"""Figures for deep linear networks: Eckart–Young levels, bad-minima tallies, Hessian-rank bars.

Builders take result objects from ``lossgeom.linear`` and never recompute; they return a
``matplotlib.figure.Figure`` (no pyplot state). Save with ``save_figure`` (atomic: a temporary
file in the target folder, then ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..linear import BadMinimaResult, EckartYoungLandscape, FibreCheck, HessianRankComparison
from ._save import save_figure

__all__ = ["bad_minima_figure", "eckart_young_figure", "hessian_rank_figure", "save_figure"]

_KIND_COLOURS = {"lowest minimum": "tab:green", "minimum": "tab:green", "bad minimum": "tab:orange",
                 "saddle": "tab:red", "undecided": "tab:olive"}


def _index_label(index_set: Sequence[int]) -> str:
    return "{" + ",".join(str(i) for i in index_set) + "}"


def eckart_young_figure(landscape: EckartYoungLandscape,
                        checks: Sequence[FibreCheck] | None = None,
                        title: str | None = None) -> Figure:
    """Critical values of L = ‖μ(θ) − Q‖²_F against their Morse index, index sets labelled.

    Pure critical points (|I| = r) sit at x = Morse index; the spurious critical values
    (|I| < r, saddles) share one column on the right. With ``checks`` (from
    ``eckart_young_check``), a point whose measured inertia matched the prediction gets a
    filled marker, a mismatch a red ring.

    Args:
        landscape: An EckartYoungLandscape.
        checks: Optional FibreCheck per point, in the order of ``landscape.points``.
        title: Figure title (default: σ, r and widths).

    Returns:
        A matplotlib Figure.
    """
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    pts = landscape.points
    idx = np.array([p.morse_index for p in pts], dtype=float)
    loss = np.array([p.loss for p in pts], dtype=float)
    top = int(idx.max()) if idx.size else 0
    agree = [None] * len(pts) if checks is None else [c.agrees for c in checks]
    ok = np.array([a is not False for a in agree], dtype=bool)
    ax.scatter(idx[ok], loss[ok], s=60, c=idx[ok], cmap="viridis", vmin=0, vmax=max(top, 1),
               zorder=3, label="pure (|I| = r)" + (", inertia confirmed" if checks else ""))
    if (~ok).any():
        ax.scatter(idx[~ok], loss[~ok], s=90, facecolors="none", edgecolors="tab:red",
                   linewidths=2, zorder=4, label="inertia mismatch")
    for p, x, y in zip(pts, idx, loss, strict=True):
        ax.annotate(f"I={_index_label(p.index_set)}", (x, y), textcoords="offset points",
                    xytext=(7, -3), fontsize=8)
    spur_x = top + 1.5
    if landscape.spurious:
        sv = np.array([v for _, v in landscape.spurious], dtype=float)
        ax.scatter(np.full(sv.size, spur_x), sv, marker="_", s=300, color="0.45", zorder=2,
                   label="spurious values (|I| < r)")
        for subset, v in landscape.spurious:
            ax.annotate(_index_label(subset) if subset else "θ = 0", (spur_x, v),
                        textcoords="offset points",
                        xytext=(12, -3), fontsize=7, color="0.35")
    ax.set_xticks(list(range(top + 1)) + [spur_x],
                  [str(i) for i in range(top + 1)] + ["spurious"])
    ax.set_xlim(-0.6, spur_x + 1.2)
    ax.set_xlabel("Morse index of ∇²L on the fibre")
    ax.set_ylabel("critical value ‖W_I − Q‖²_F")
    sig = ", ".join(f"{s:.3g}" for s in landscape.sigma)
    ax.set_title(title or f"Eckart–Young landscape: σ = ({sig}), r = {landscape.r}, "
                          f"widths {tuple(landscape.widths)}", fontsize=10)
    if not landscape.finite:
        ax.text(0.01, 0.01, f"σ ties {[list(t) for t in landscape.ties]}: critical set not "
                "finite (one point per family)", transform=ax.transAxes, fontsize=8,
                color="tab:red")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def bad_minima_figure(result: BadMinimaResult, title: str | None = None) -> Figure:
    """Histogram of final losses of the gradient-descent runs, one bar colour per endpoint kind.

    Each cluster of runs (same critical value) is a bar at its loss, coloured green for the
    lowest minimum, orange for a bad minimum, red for a saddle, and labelled with its count,
    inertia and purity.

    Args:
        result: A BadMinimaResult from ``bad_minima_experiment``.
        title: Figure title (default: widths, runs and the bad fraction).

    Returns:
        A matplotlib Figure.
    """
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    losses = [c.loss for c in result.clusters]
    span = max(losses) - min(losses) if losses else 0.0
    width = 0.06 * span if span > 0 else 0.05 * max(1.0, abs(losses[0]) if losses else 1.0)
    for c in result.clusters:
        kind = c.label or c.kind
        pure = {True: "pure", False: "spurious", None: "mixed"}[c.pure]
        ax.bar(c.loss, c.count, width=width, color=_KIND_COLOURS.get(kind, "0.5"),
               edgecolor="black", label=f"L = {c.loss:.4g}: {kind}, {pure}, inertia "
                                        f"{'/'.join(map(str, c.inertia))}")
        ax.annotate(str(c.count), (c.loss, c.count), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=9)
    if result.n_not_converged:
        ax.text(0.99, 0.97, f"{result.n_not_converged} runs not converged",
                transform=ax.transAxes, ha="right", va="top", fontsize=8, color="tab:red")
    ax.set_xlabel("final loss L(θ) after gradient descent")
    ax.set_ylabel("number of runs")
    ax.set_title(title or f"GD endpoints, widths {tuple(result.widths)} "
                          f"({'filling' if result.filling else 'non-filling'}), "
                          f"{result.runs} runs: {100 * result.fraction_bad:.0f}% bad minima",
                 fontsize=10)
    if result.clusters:
        ax.legend(fontsize=8, loc="upper center")
        ax.set_ylim(0, 1.25 * max(c.count for c in result.clusters))
    return fig


_BIAS_LABEL = {False: "", True: ", bias", "output": ", output bias"}


def hessian_rank_figure(comparison: HessianRankComparison, title: str | None = None) -> Figure:
    """Grouped bars: formula rank and measured rank per activation for H_o, H_f and H_L.

    Measured bars carry their gap σ_r/σ_{r+1} above them; undecided cuts are hatched. The
    formula is the linear-network closed form; for tanh and ReLU it is only an estimate whose
    agreement depends on the tolerance (§5.5).

    Args:
        comparison: A HessianRankComparison from ``hessian_rank_comparison``.
        title: Figure title (default: widths, n, loss).

    Returns:
        A matplotlib Figure.
    """
    parts = ("outer", "functional", "total")
    labels = {"outer": "H_o (outer)", "functional": "H_f (functional)", "total": "H_L (total)"}
    acts = list(dict.fromkeys(r.activation for r in comparison.rows))
    rows = {(r.activation, r.part): r for r in comparison.rows}
    n_bars = 1 + len(acts)
    width = 0.8 / n_bars
    x = np.arange(len(parts))
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.add_subplot()
    formula = [comparison.formula.get(p) for p in parts]
    ax.bar(x - 0.4 + width / 2, [0 if f is None else f for f in formula], width,
           color="0.8", edgecolor="black", hatch="//", label="formula (linear net)")
    for xi, f in zip(x, formula, strict=True):
        ax.annotate("n/a" if f is None else str(f), (xi - 0.4 + width / 2, f or 0),
                    textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]
    for j, a in enumerate(acts):
        xs = x - 0.4 + width * (j + 1.5)
        vals = [rows[(a, p)].measured for p in parts]
        bars = ax.bar(xs, vals, width, color=colours[j % len(colours)], edgecolor="black",
                      label=f"measured, {a}")
        for b, p in zip(bars, parts, strict=True):
            r = rows[(a, p)]
            if not r.decided:
                b.set_hatch("..")
            gap = "inf" if r.gap == float("inf") else f"{r.gap:.0e}"
            ax.annotate(f"{r.measured}\ngap {gap}", (b.get_x() + width / 2, r.measured),
                        textcoords="offset points", xytext=(0, 2), ha="center", fontsize=6)
    ax.axhline(comparison.n_params, color="0.4", ls="--", lw=1, label=f"N = {comparison.n_params}")
    ax.set_xticks(x, [labels[p] for p in parts])
    ax.set_ylabel("rank")
    ax.set_ylim(0, 1.45 * comparison.n_params)
    ax.set_title(title or f"Hessian ranks: widths {tuple(comparison.widths)}, "
                          f"n = {comparison.n_samples}, r = {comparison.data_rank}, "
                          f"{comparison.loss}{_BIAS_LABEL[comparison.bias]} "
                          f"(rtol {comparison.rtol:.1e})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    return fig
