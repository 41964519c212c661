"""Hessian spectrum figure: |λ| on a log scale with the tolerance line and the gap at the cut."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..report import Report

__all__ = ["spectrum_figure"]


def spectrum_figure(report: Report, title: str | None = None) -> Figure:
    """|eigenvalues| of ∇²L in decreasing order (log scale), signs coloured, tol and gap marked.

    Uses the full spectrum when the Report holds it (dense or Gauss–Newton routes), else the
    extreme eigenvalues only.

    Args:
        report: A Report from ``analyze``.
        title: Figure title (default: kind and inertia).

    Returns:
        A matplotlib Figure.
    """
    h = report.hessian
    lam = np.asarray(h.spectrum if h.spectrum is not None
                     else h.top_eigenvalues + h.bottom_eigenvalues, dtype=float)
    order = np.argsort(-np.abs(lam))
    lam = lam[order]
    mags = np.maximum(np.abs(lam), np.finfo(float).tiny)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    idx = np.arange(1, lam.size + 1)
    pos, neg = lam > 0, lam <= 0
    ax.semilogy(idx[pos], mags[pos], "o", ms=3, color="tab:blue", label="λ > 0")
    ax.semilogy(idx[neg], mags[neg], "s", ms=3, color="tab:red", label="λ ≤ 0")
    if h.tol > 0:
        ax.axhline(h.tol, color="0.4", ls="--", lw=1, label=f"tol = {h.tol:.2e}")
    rank = h.rank
    if rank is not None and 0 < rank < lam.size:
        ax.axvline(rank + 0.5, color="tab:green", lw=1,
                   label=f"cut after {rank}: gap {h.gap:.2e}" if h.gap else f"cut after {rank}")
    ax.set_xlabel("index (by |λ|, descending)")
    ax.set_ylabel("|λ| of ∇²L")
    inertia = "/".join("?" if c is None else str(c) for c in h.inertia)
    ax.set_title(title or f"{report.kind}: inertia (+/−/0) = {inertia}, method {h.method}")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    return fig
