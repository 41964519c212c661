"""Hessian spectrum figure: |λ| on a log scale with the tolerance line and the gap at the cut."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from ..report import Report

__all__ = ["axis_floor", "spectrum_figure"]


def axis_floor(values: np.ndarray, tol: float) -> float:
    """Where a log axis draws exact zeros: a decade below the smallest nonzero |value| and ``tol``.

    Args:
        values: Magnitudes (any shape); zeros and non-finite entries are ignored.
        tol: The tolerance drawn on the same axis (ignored when ≤ 0).

    Returns:
        10^(⌊log₁₀ m⌋ − 1) for m the smallest positive finite entry of ``values`` ∪ {tol}, or 1
        when there is none.

    Example:
        >>> axis_floor(np.array([0.0, 3e-5, 2.0]), tol=1e-9)
        1e-10
    """
    mags = np.abs(np.asarray(values, dtype=float)).ravel()
    cand = mags[np.isfinite(mags) & (mags > 0)].tolist() + ([tol] if tol > 0 else [])
    if not cand:
        return 1.0
    return 10.0 ** (math.floor(math.log10(min(cand))) - 1)


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return "∞" if x == math.inf else f"{x:.3g}"


def spectrum_figure(report: Report, title: str | None = None) -> Figure:
    """|eigenvalues| of ∇²L in decreasing order (log scale), signs coloured, tol and gap marked.

    Uses the full spectrum when the Report holds it (dense, Gauss–Newton and certified routes),
    else the extreme eigenvalues only (then the x axis counts the eigenvalues shown, not their
    index in the spectrum, and no cut is drawn). Eigenvalues that are exactly 0 cannot sit on a
    log axis: they are drawn as grey triangles on the axis floor (``axis_floor``). The rank cut
    sits after the ``rank`` largest |λ|; the gap |λ|_rank / |λ|_(rank+1) is drawn as an arrow
    across it, orange when the decision is undecided.

    Args:
        report: A Report from ``analyze`` with a Hessian summary.
        title: Figure title (default: kind, inertia and method).

    Returns:
        A matplotlib Figure.

    Raises:
        ValueError: If the Report holds no Hessian summary (``analyze(..., hessian="none")``).
    """
    h = report.hessian
    if h is None:
        raise ValueError("spectrum_figure(report): the Report holds no Hessian summary (expected "
                         "report.hessian, got None). Analyze with a Hessian route, e.g. "
                         "hessian=\"auto\".")
    full = h.spectrum is not None
    lam = np.asarray(h.spectrum if full else list(h.top_eigenvalues) + list(h.bottom_eigenvalues),
                     dtype=float)
    lam = lam[np.argsort(-np.abs(lam), kind="stable")]
    mags = np.abs(lam)
    floor = axis_floor(mags, h.tol)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    idx = np.arange(1, lam.size + 1)
    for mask, marker, colour, label in ((lam > 0, "o", "tab:blue", "λ > 0"),
                                        (lam < 0, "s", "tab:red", "λ < 0"),
                                        (lam == 0, "v", "0.55", "λ = 0 exactly (on the floor)")):
        if mask.any():
            ax.semilogy(idx[mask], np.where(mags[mask] > 0, mags[mask], floor), marker, ms=3,
                        color=colour, label=label, linestyle="none")
    if h.tol > 0:
        ax.axhline(h.tol, color="0.4", ls="--", lw=1, label=f"tol = {h.tol:.2e}")
    rank = h.rank
    colour = "tab:green" if h.decided else "tab:orange"
    if full and rank is not None and 0 < rank < lam.size:
        kept, dropped = mags[rank - 1], mags[rank]
        ax.axvline(rank + 0.5, color=colour, lw=1, ls=":",
                   label=f"cut after {rank}" + ("" if h.decided else " (undecided)"))
        ax.annotate("", xy=(rank + 0.5, max(dropped, floor)), xytext=(rank + 0.5, kept),
                    arrowprops={"arrowstyle": "<->", "color": colour, "lw": 1.5})
        ax.annotate(f"gap {_fmt(h.gap)}", xy=(rank + 0.5, math.sqrt(kept * max(dropped, floor))),
                    xytext=(6, 0), textcoords="offset points", color=colour, fontsize=8,
                    va="center")
    ax.set_ylim(bottom=floor / 2)
    ax.set_xlabel("index (by |λ|, descending)" if full
                  else "eigenvalues shown (extremes only, by |λ|)")
    ax.set_ylabel("|λ| of ∇²L")
    inertia = "/".join("?" if c is None else str(c) for c in h.inertia)
    ax.set_title(title or f"{report.kind}: inertia (+/−/0) = {inertia}, method {h.method}"
                 + ("" if h.decided else " (undecided)"), fontsize=10)
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    return fig
