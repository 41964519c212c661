"""Figures of one Report beyond its spectrum: the rank cut of J, per-block counts, degeneracy.

Each builder reads what the Report holds and nothing else: ``cut_figure`` draws the four numbers
a ``RankDecision`` keeps (σ₁, σ_r, σ_(r+1) and the tolerance), not a spectrum it does not have.
Blocks and degeneracy profiles are read by attribute or by key, so results and their ``to_dict``
forms both work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..results import RankDecision
from .spectrum import axis_floor

__all__ = ["blocks_figure", "cut_figure", "degeneracy_figure"]


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for a mapping, else ``getattr(obj, key, None)``."""
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _num(x: Any) -> float | None:
    """A float from a number or its JSON string form ("inf", "nan"); None stays None."""
    return None if x is None else float(x)


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return "∞" if x == math.inf else f"{x:.3g}"


def cut_figure(decision: RankDecision, *, name: str = "J", title: str | None = None) -> Figure:
    """The rank cut of a matrix from its decision alone: σ₁, σ_r, σ_(r+1), tol and the gap.

    A log axis with the largest singular value σ₁ (``sigma_max``), the smallest one kept σ_r
    (``sigma_r``, r = rank) and the largest one dropped σ_(r+1) (``sigma_next``); the tolerance
    tol = max(atol, rtol·σ₁) is the dashed line, and the arrow from σ_r to σ_(r+1) is the gap
    σ_r / σ_(r+1) that justifies the cut (green when decided, orange otherwise). At full rank
    nothing is dropped and the gap is ∞; a σ_(r+1) that is exactly 0 sits on the axis floor.

    Args:
        decision: A ``RankDecision`` (or anything with its fields, e.g. its ``to_dict()``).
        name: The matrix's name in the labels.
        title: Figure title (default: rank, gap, method and whether it is decided).

    Returns:
        A matplotlib Figure.

    Example:
        >>> from lossgeom.results import RankDecision
        >>> d = RankDecision(rank=2, tol=1e-12, sigma_max=3.0, sigma_r=1.0, sigma_next=1e-15,
        ...                  gap=1e15, method="svd", decided=True)
        >>> [t.get_text() for t in cut_figure(d).axes[0].get_xticklabels()]
        ['σ₁', 'σ_r (r = 2)', 'σ_(r+1)']
    """
    rank, tol = _get(decision, "rank"), _num(_get(decision, "tol"))
    smax, sr, snext = (_num(_get(decision, k)) for k in ("sigma_max", "sigma_r", "sigma_next"))
    gap, decided = _num(_get(decision, "gap")), bool(_get(decision, "decided"))
    floor = axis_floor(np.array([v for v in (smax, sr, snext) if v is not None]), tol or 0.0)
    colour = "tab:green" if decided else "tab:orange"
    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.add_subplot()
    labels = ["σ₁", f"σ_r (r = {rank})", "σ_(r+1)"]
    top = (smax or 1.0) * 10
    for x, v, kept in ((0, smax, True), (1, sr, True), (2, snext, False)):
        if v is None:
            ax.text(x, math.sqrt(floor * top), "none\n(full rank)" if x == 2 else "none\n(rank 0)",
                    ha="center", va="center", fontsize=7, color="0.4")
            continue
        y = v if v > 0 else floor
        ax.semilogy([x], [y], "o" if v > 0 else "v", ms=7,
                    color="tab:blue" if kept else "0.55")
        ax.annotate(f"{v:.3g}" if v > 0 else "0 exactly", xy=(x, y), xytext=(8, 0),
                    textcoords="offset points", fontsize=7, va="center")
    if tol and tol > 0:
        ax.axhline(tol, color="0.4", ls="--", lw=1, label=f"tol = {tol:.2e}")
    if sr is not None and snext is not None:
        lo = snext if snext > 0 else floor
        ax.annotate("", xy=(1.5, lo), xytext=(1.5, sr),
                    arrowprops={"arrowstyle": "<->", "color": colour, "lw": 1.5})
        ax.annotate(f"gap {_fmt(gap)}", xy=(1.5, math.sqrt(sr * lo)), xytext=(5, 0),
                    textcoords="offset points", fontsize=8, color=colour, va="center")
    ax.set_yscale("log")
    ax.set_xticks(range(3), labels, fontsize=8)
    ax.set_xlim(-0.5, 2.9)
    ax.set_ylim(floor / 2, top)
    ax.set_ylabel(f"singular values of {name}")
    ax.set_title(title or f"rank {name} = {rank}, gap {_fmt(gap)}, {_get(decision, 'method')}"
                 + ("" if decided else " (undecided)"), fontsize=9)
    if tol and tol > 0:
        ax.legend(fontsize=7, loc="lower left")
    return fig


def blocks_figure(blocks: Sequence[Any]) -> Figure:
    """Per-block bars: rank J_b against N_b, and the inertia of each diagonal block H_bb.

    Left: the block's parameter count N_b (outline) and rank J_b (filled; hatched when
    undecided). Right: positive, negative and zero counts of H_bb stacked to N_b; a block whose
    counts the route could not settle is drawn as an outline marked "?".

    Args:
        blocks: ``Report.blocks``: items with name, n_params, jacobian (a RankDecision) and
            hessian (a HessianSummary), as results or dicts.

    Returns:
        A matplotlib Figure with two panels.
    """
    names = [str(_get(b, "name")) for b in blocks]
    sizes = np.array([int(_get(b, "n_params")) for b in blocks], dtype=float)
    x = np.arange(len(blocks))
    fig = Figure(figsize=(max(6.4, 1.1 * len(blocks) + 4), 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.bar(x, sizes, color="none", edgecolor="0.3", label="N_b")
    for i, b in enumerate(blocks):
        j = _get(b, "jacobian")
        decided = bool(_get(j, "decided"))
        left.bar(i, _get(j, "rank"), color="tab:blue", alpha=0.8, hatch="" if decided else "//",
                 edgecolor="tab:orange" if not decided else "tab:blue",
                 label="rank J_b" if i == 0 else None)
        left.annotate(str(_get(j, "rank")) + ("" if decided else "?"), xy=(i, _get(j, "rank")),
                      ha="center", va="bottom", fontsize=7)
    left.set_title("rank J_b of each block (outline: N_b)", fontsize=9)
    right.bar(x, sizes, color="none", edgecolor="0.3")
    for i, b in enumerate(blocks):
        h = _get(b, "hessian")
        counts = list(_get(h, "inertia") or [None, None, None])
        if any(c is None for c in counts):
            right.annotate("?", xy=(i, sizes[i] / 2), ha="center", fontsize=10, color="tab:orange")
            continue
        bottom = 0.0
        for c, colour, label in zip(counts, ("tab:blue", "tab:red", "0.7"),
                                    ("positive", "negative", "zero"), strict=True):
            right.bar(i, c, bottom=bottom, color=colour,
                      hatch="" if _get(h, "decided") else "//", label=label if i == 0 else None)
            bottom += c
    right.set_title("inertia of H_bb (hatched: undecided)", fontsize=9)
    for ax in (left, right):
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
    return fig


def degeneracy_figure(profile: Any, n_params: int | None = None) -> Figure:
    """The degeneracy profile: #{|λ| > ε·|λ|max} against ε, with the interval of each count.

    Args:
        profile: ``Report.degeneracy``: rel_eps, count_above, count_low, count_high, confidence
            and method, as a result or a dict.
        n_params: N, drawn as a line (the most any count can be).

    Returns:
        A matplotlib Figure.

    Example:
        >>> p = {"rel_eps": [1e-2, 1e-4], "count_above": [3, 5], "count_low": [3, 4],
        ...      "count_high": [3, 6], "confidence": 0.99, "method": "slq"}
        >>> degeneracy_figure(p).axes[0].get_xscale()
        'log'
    """
    eps = np.array([float(e) for e in _get(profile, "rel_eps")])
    mid = np.array([float(c) for c in _get(profile, "count_above")])
    low = np.array([float(c) for c in _get(profile, "count_low")])
    high = np.array([float(c) for c in _get(profile, "count_high")])
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(eps, mid, yerr=np.vstack([mid - low, high - mid]), fmt="o-", capsize=4,
                color="tab:purple", label="count with its interval")
    if n_params is not None:
        ax.axhline(n_params, color="0.4", ls="--", lw=1, label=f"N = {n_params}")
    ax.set_xscale("log")
    ax.set_ylim(0, max([*high, n_params or 0, 1.0]) * 1.08)
    ax.invert_xaxis()
    ax.set_xlabel("ε (relative to |λ|max)")
    ax.set_ylabel("#{|λ| > ε·|λ|max}")
    ax.set_title(f"degeneracy profile ({_get(profile, 'method')}, confidence "
                 f"{_fmt(_num(_get(profile, 'confidence')))})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig
