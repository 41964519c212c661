"""Learning-coefficient figure: SGLD loss traces, and λ̂ beside the rank bound and the regular value."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from ..llc import LLCBounds, LLCEstimate

__all__ = ["llc_figure"]


def llc_figure(estimate: LLCEstimate, bounds: LLCBounds | None = None, exact: float | None = None,
               title: str | None = None) -> Figure:
    """Per-draw loss traces of every chain, and a panel placing λ̂ among the certified values.

    Left: nβ (L_n(w) − L_n(θ*)) at every draw, one line per chain (diverged chains dashed), with
    the running mean over chains; its long-run level is λ̂. Right: λ̂ ± std (and each chain's
    estimate), the §9.1 interval rank ∇²L / 2 ≤ λ ≤ N/2 when ``bounds`` certifies one, and the
    exact value when given.

    Args:
        estimate: An LLCEstimate from ``estimate_llc``.
        bounds: The LLCBounds of the same θ* (``llc_bounds(analyze(problem, θ*))``), or None.
        exact: The exact λ (e.g. ``lossgeom.linear.rlct``), or None.
        title: Figure title (default: backend, chains, step and nβ).

    Returns:
        A matplotlib Figure.
    """
    fig = Figure(figsize=(9.6, 4.0))
    ax, side = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    scaled = estimate.nbeta * (np.asarray(estimate.trace, dtype=float) - estimate.init_loss)
    draws = np.arange(1, scaled.shape[1] + 1)
    for c, row in enumerate(scaled):
        bad = c in estimate.diverged
        ax.plot(draws, np.where(np.isfinite(row), row, np.nan), lw=0.6, alpha=0.6,
                ls="--" if bad else "-", label=f"chain {c}" + (" (diverged)" if bad else ""))
    kept = [c for c in range(scaled.shape[0]) if c not in estimate.diverged]
    if kept:
        running = np.cumsum(scaled[kept].mean(axis=0)) / draws
        ax.plot(draws, running, color="k", lw=1.5, label="running mean = λ̂ so far")
    ax.set_xlabel(f"draw (after {estimate.n_burnin} burn-in steps)")
    ax.set_ylabel("nβ (L_n(w) − L_n(θ*))")
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9, ncol=2)

    x = 0.0
    if math.isfinite(estimate.mean):
        err = estimate.std if math.isfinite(estimate.std) else 0.0
        side.errorbar([x], [estimate.mean], yerr=[err], fmt="o", color="tab:blue", capsize=4,
                      label=f"λ̂ = {estimate.mean:.3g} ± {err:.2g}")
    finite = np.isfinite(estimate.per_chain)
    side.plot(np.full(int(finite.sum()), x + 0.15), estimate.per_chain[finite], ".", ms=4,
              color="tab:blue", alpha=0.5, label="per chain")
    if bounds is not None and bounds.lower is not None:
        side.axhline(bounds.lower, color="tab:green", lw=1.2,
                     label=f"rank H / 2 = {bounds.lower:g}")
        side.axhline(bounds.upper, color="0.4", ls="--", lw=1, label=f"N / 2 = {bounds.upper:g}")
        side.axhspan(bounds.lower, bounds.upper, color="tab:green", alpha=0.08)
    if exact is not None:
        side.axhline(exact, color="tab:red", lw=1.2, ls=":", label=f"exact λ = {exact:g}")
    side.set_xlim(-0.5, 0.5)
    side.set_xticks([])
    side.set_ylabel("λ")
    side.legend(fontsize=7, loc="best", framealpha=0.9)
    mixed = "mixed" if estimate.mixed else "NOT mixed: " + "; ".join(w.split(":")[0]
                                                                    for w in estimate.warnings)
    fig.suptitle(title or f"{estimate.backend}: {estimate.n_chains} chains × {estimate.n_draws} "
                 f"draws, ε = {estimate.step:g}, nβ = {estimate.nbeta:.3g}, γ = "
                 f"{estimate.localization:g} ({mixed})", fontsize=9)
    fig.tight_layout()
    return fig
