"""§9.1 bounds on the local learning coefficient read off a certified Report."""

from __future__ import annotations

from dataclasses import dataclass

from ..results import Result

__all__ = ["MINIMUM_KINDS", "LLCBounds", "llc_bounds"]

MINIMUM_KINDS = ("global_minimum", "strict_local_minimum", "nonstrict_local_minimum")
"""Report kinds at which θ is a certified (local) minimum, so that λ exists and §9.1 applies."""


# -- bounds from a certified Report -------------------------------------------------------------
@dataclass(frozen=True)
class LLCBounds(Result):
    """§9.1 bounds rank ∇²L / 2 ≤ λ ≤ N / 2 at a certified minimum, or the reason there are none.

    Attributes:
        lower: rank ∇²L(θ*) / 2, or None where the Report does not certify a minimum with a
            decided Hessian rank.
        upper: N / 2 (the regular value), or None exactly when ``lower`` is None.
        reason: Why the bounds hold, or why they are withheld (saddle, noncritical point,
            inconclusive second-order test, undecided rank).
        kind: The Report's kind, as a string.
        rank_hessian: rank ∇²L(θ*) as certified by the Report (None if undecided).
        n_params: N.
        hessian_tol: The eigenvalue tolerance that cut the rank.
        smallest_kept_eigenvalue: The smallest |eigenvalue| counted in the rank (in the units of
            the Report's loss), or None where the Report does not hold it; SGLD at inverse
            temperature nβ cannot resolve curvature much below 1/(nβ) (module NOTE).
    """

    lower: float | None
    upper: float | None
    reason: str
    kind: str
    rank_hessian: int | None
    n_params: int
    hessian_tol: float | None
    smallest_kept_eigenvalue: float | None

    @property
    def certified(self) -> bool:
        """True when both bounds are given."""
        return self.lower is not None


_WHY_NOT = {
    "noncritical": "θ is not critical (‖∇L‖ exceeds the criticality tolerance): λ is defined at "
                   "a local minimum only. Move to a minimum first (find_critical_point).",
    "strict_saddle": "θ is a saddle (the Hessian has a negative eigenvalue): K = L − L(θ*) takes "
                     "negative values near θ*, so no local learning coefficient is defined.",
    "strict_local_maximum": "θ is a local maximum: no local learning coefficient is defined.",
    "degenerate": "the second-order test is inconclusive (no negative Hessian eigenvalue but some "
                  "zero): θ is not certified as a minimum, so the §9.1 bounds do not apply.",
}


def _smallest_kept(h, rank: int | None) -> float | None:
    """Smallest |λ| counted nonzero, from the full spectrum or the extreme eigenvalues."""
    if rank is None or rank == 0:
        return None
    if h.spectrum is not None:
        mags = sorted(abs(v) for v in h.spectrum)
        return float(mags[len(mags) - rank])
    top = list(h.top_eigenvalues)  # descending; at a minimum every kept eigenvalue is positive
    return float(abs(top[rank - 1])) if len(top) >= rank else None


def llc_bounds(report) -> LLCBounds:
    """The §9.1 bounds on the local learning coefficient at a certified minimum.

    At a local minimum with r = rank ∇²L(θ*), the splitting lemma writes K = Σ_{i≤r} yᵢ² + g(z)
    with g of order ≥ 3 in the remaining N − r coordinates, so r/2 ≤ λ ≤ N/2, with λ = r/2 when
    the minimum set is locally a manifold of dimension N − r. The bounds are given only where the
    Report certifies a minimum (kind global_minimum, strict_local_minimum or
    nonstrict_local_minimum) and a decided Hessian rank; otherwise both are None and ``reason``
    says why.

    Args:
        report: A Report from ``analyze``; only ``kind``, ``n_params`` and ``hessian`` (rank,
            decided, tol, top/bottom eigenvalues, spectrum) are read.

    Returns:
        An LLCBounds.

    Raises:
        TypeError: If ``report`` does not carry ``kind``, ``n_params`` and ``hessian``.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> b = llc_bounds(lg.analyze(p, torch.zeros(2, dtype=torch.float64)))
        >>> (b.lower, b.upper)      # a regular minimum: rank 2 of N = 2, so λ = N/2 = 1
        (1.0, 1.0)
    """
    where = "llc_bounds(report)"
    missing = [a for a in ("kind", "n_params", "hessian") if not hasattr(report, a)]
    if missing:
        raise TypeError(f"{where}: expected a Report from lossgeom.analyze (with kind, n_params "
                        f"and hessian), got {type(report).__name__} without {', '.join(missing)}. "
                        "Pass the result of lg.analyze(problem, theta).")
    kind, N, h = str(report.kind), int(report.n_params), report.hessian
    rank = None if h is None else h.rank
    tol = None if h is None else float(h.tol)

    def withheld(reason: str) -> LLCBounds:
        return LLCBounds(None, None, reason, kind, rank if h is not None and h.decided else None,
                         N, tol, None)

    if kind not in MINIMUM_KINDS:
        return withheld(_WHY_NOT.get(kind, f"kind {kind!r} is not a certified minimum, so the "
                                           "§9.1 bounds do not apply."))
    if h is None:
        return withheld(f"{kind}, but the Report holds no Hessian summary: rank ∇²L is unknown.")
    if not h.decided or rank is None:
        return withheld(f"{kind}, but rank ∇²L is undecided (route {h.method}: the spectrum does "
                        "not show a certified gap at the cut, or the route cannot count the zero "
                        "eigenvalues): no lower bound can be certified. Rerun analyze with "
                        "method=\"dense\" if N allows.")
    lower, upper = rank / 2, N / 2
    if rank == N:
        reason = f"{kind} with a nondegenerate Hessian (rank {rank} = N): λ = N/2 = {upper:g}."
    else:
        reason = (f"{kind} with certified rank ∇²L = {rank} of N = {N}: rank/2 = {lower:g} ≤ λ ≤ "
                  f"N/2 = {upper:g} (§9.1); λ = {lower:g} iff the minimum set is locally a "
                  f"manifold of dimension {N - rank}.")
    return LLCBounds(lower, upper, reason, kind, rank, N, tol, _smallest_kept(h, rank))
