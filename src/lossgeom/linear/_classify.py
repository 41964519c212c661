"""Pure and spurious critical points of L = ℓ ∘ μ for deep linear networks (§4.2–§4.4, §4.8).

L = ℓ ∘ μ with μ(θ) = W̄ = W_h ⋯ W_1 and ℓ a smooth loss on R^{d_h×d_0}. A critical point θ of L
is **pure** if W̄ is a critical point of ℓ restricted to the functional space M_r, and
**spurious** otherwise (§4.2). Every critical θ maps to a critical point of ℓ on the
stratum of its own rank e = rank W̄ (§4.4), so the test reduces to:

* e = r (a smooth point of M_r where dμ has maximal rank): pure ⇔ P_T ∇ℓ(W̄) = 0, which every
  critical θ satisfies;
* filling, e < r (M_r = R^{d_h×d_0} is a vector space): pure ⇔ ∇ℓ(W̄) = 0;
* non-filling, e < r (a singular point, Sing M_r = M_{r-1}): under the "tangent_cone"
  convention pure ⇔ ∇ℓ(W̄) = 0 (the tangent cone of a determinantal variety spans the whole
  space); under "all_singular" every singular point counts as critical, so pure.

NOTE [stationarity tolerances]
    The gradient scale of ℓ is s_ℓ = max(‖∇ℓ(0)‖_F, ‖∇ℓ(W̄) − ∇ℓ(0)‖_F): how large ∇ℓ gets
    between the origin and W̄ (if ∇ℓ(0) is not finite, s_ℓ = max(1, ‖∇ℓ(W̄)‖_F)). Since
    ‖∇_{W_i}L‖_F ≤ ‖W_{>i}‖₂ ‖∇ℓ(W̄)‖_F ‖W_{<i}‖₂, θ is critical when ‖∇L(θ)‖ ≤ grad_tol =
    CRITICAL_RTOL·s_ℓ·s_μ with s_μ = (Σ_i ‖W_{>i}‖₂² ‖W_{<i}‖₂²)^½, and ∇ℓ(W̄) counts as zero when
    ‖∇ℓ(W̄)‖_F ≤ stationarity_tol = CRITICAL_RTOL·s_ℓ. Both are keywords and both are reported.
    At rank W̄ = r no tolerance is needed: dμ(θ) then has maximal rank (§4.2 (i), §4.3), its
    image is T_{W̄}M_r, and dμᵀ∇ℓ = 0 forces P_T∇ℓ = 0, so a critical θ is pure; the measured
    ‖P_T∇ℓ(W̄)‖ is reported as a check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .._checks import check_finite, check_option, check_rtol
from ..linalg import RankDecision, numerical_rank
from ..results import Result
from ..tolerances import CRITICAL_RTOL
from ._functional import (
    DifferentialRank,
    FunctionalSpace,
    _differential,
    _factor_singular_values,
    _partial_products,
    _product,
    _staircase,
    functional_space,
)
from ._tangent import _tangent_space
from ._weights import as_weights, widths_of

__all__ = ["CONVENTIONS", "LinearCritical", "classify"]

CONVENTIONS = ("tangent_cone", "all_singular")
"""Singular-point conventions of §4.2: a singular W̄ ∈ Sing M_r counts as critical for ℓ|M
iff ∇ℓ(W̄) = 0 ("tangent_cone"), or always ("all_singular")."""

NUMERICAL_CROSS_CHECK_MAX = 1_000_000
"""``cross_check="auto"`` materialises dμ when d_h·d_0·d_θ is at most this many entries."""


@dataclass(frozen=True)
class LinearCritical(Result):
    """Whether θ is critical for L = ℓ ∘ μ, and whether it is pure or spurious (§4.2–4.4).

    Attributes:
        is_critical: ‖∇L(θ)‖ ≤ grad_tol.
        rank_product: e = rank W̄ (numerical, see ``rank_decision``).
        r: min_i d_i.
        pure: True (pure), False (spurious), None when θ is not critical.
        differential_rank: rank dμ(θ) by the staircase formula (§4.3).
        dim_functional_space: dim M_r = r(d_0 + d_h − r).
        convention: "tangent_cone" or "all_singular" (§4.2).
        grad_norm: ‖∇L(θ)‖ = ‖dμ(θ)ᵀ ∇ℓ(W̄)‖.
        grad_tol: Criticality tolerance used (NOTE [stationarity tolerances]).
        loss_grad_norm: ‖∇ℓ(W̄)‖_F.
        stratum_grad_norm: ‖P_T ∇ℓ(W̄)‖_F on the rank-e stratum; ≈ 0 at every critical θ (§4.4).
        tested_norm: ‖∇ℓ(W̄)‖ when the purity decision compared it with stationarity_tol
            (e < r, filling or "tangent_cone"); None when the decision needed no tolerance.
        stationarity_tol: Tolerance for ``tested_norm``.
        filling: r = min(d_0, d_h).
        smooth_point: W̄ is a smooth point of M_r (filling, or e = r).
        maximal_differential: rank dμ = dim M_r.
        kind: "pure", "spurious" or "noncritical".
        reason: One sentence saying why.
        widths: (d_0, …, d_h).
        n_params: d_θ.
        rank_decision: RankDecision of W̄ (tolerance and gap).
        differential: The DifferentialRank with the factor ranks u_i, v_i.
        differential_numerical: RankDecision of the materialised dμ, or None if skipped.
    """

    is_critical: bool
    rank_product: int
    r: int
    pure: bool | None
    differential_rank: int
    dim_functional_space: int
    convention: str
    grad_norm: float
    grad_tol: float
    loss_grad_norm: float
    stratum_grad_norm: float
    tested_norm: float | None
    stationarity_tol: float
    filling: bool
    smooth_point: bool
    maximal_differential: bool
    kind: str
    reason: str
    widths: tuple[int, ...]
    n_params: int
    rank_decision: RankDecision = field(repr=False)
    differential: DifferentialRank = field(repr=False)
    differential_numerical: RankDecision | None = field(default=None, repr=False)


def _gradient_scale(loss_grad_fn: Callable[[Tensor], Tensor], G: Tensor, g_norm: float) -> float:
    """The gradient scale s_ℓ of NOTE [stationarity tolerances].

    Returns:
        s_ℓ = max(‖∇ℓ(0)‖_F, ‖∇ℓ(W̄) − ∇ℓ(0)‖_F), or max(1, ‖∇ℓ(W̄)‖_F) if ∇ℓ(0) is not finite.
    """
    try:
        G0 = torch.as_tensor(loss_grad_fn(torch.zeros_like(G))).detach().to(torch.float64).cpu()
    except (ArithmeticError, ValueError, RuntimeError):  # ℓ need not be defined at W = 0
        return max(1.0, g_norm)
    if G0.shape != G.shape or not bool(torch.isfinite(G0).all()):
        return max(1.0, g_norm)
    return max(float(torch.linalg.norm(G0)), float(torch.linalg.norm(G - G0)))


def classify(weights, loss_grad_fn: Callable[[Tensor], Tensor], *,
             convention: str = "tangent_cone", rtol: float | None = None,
             grad_tol: float | None = None, stationarity_tol: float | None = None,
             cross_check: bool | str = "auto") -> LinearCritical:
    """Is θ critical for L = ℓ ∘ μ, and is it pure or spurious? (§4.8).

    Steps: ∇L(θ) = dμ(θ)ᵀ ∇ℓ(W̄) (matrix-free); if ‖∇L‖ > grad_tol the point is reported as
    not critical and purity is not classified. Otherwise e = rank W̄ is decided with a gap,
    rank dμ is computed by the staircase formula (and, for small nets, by the singular values
    of dμ), and purity follows the rules in the module docstring.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).
        loss_grad_fn: W (d_h, d_0) ↦ ∇ℓ(W) (d_h, d_0). Use ``data_loss(X, Y)``,
            ``frobenius_loss(Q)`` or ``functional_loss(ℓ)`` to build one from data or from ℓ.
        convention: "tangent_cone" (default) or "all_singular" for singular points of M_r.
        rtol: Relative tolerance of the rank decisions, in (0, 1).
        grad_tol: Criticality tolerance on ‖∇L‖ (default: NOTE [stationarity tolerances]).
        stationarity_tol: Tolerance on ‖∇ℓ(W̄)‖ (default: same NOTE).
        cross_check: Also compute rank dμ from the materialised Jacobian: True, False, or
            "auto" (when d_h·d_0·d_θ ≤ 1e6).

    Returns:
        A LinearCritical.

    Raises:
        TypeError: If weights are not matrices or loss_grad_fn is not callable.
        ValueError: If the shapes do not chain, a value is not finite, loss_grad_fn returns a
            wrong shape, the convention is unknown, or a tolerance is out of range.

    Example:
        >>> import torch
        >>> from lossgeom.linear import classify, frobenius_loss
        >>> Q = torch.diag(torch.tensor([4., 3., 2., 1.], dtype=torch.float64))
        >>> zero = [torch.zeros(2, 4), torch.zeros(4, 2)]   # θ = 0, widths (4, 2, 4)
        >>> c = classify(zero, frobenius_loss(Q))
        >>> c.is_critical, c.rank_product, c.pure          # spurious: ∇ℓ(0) = −2Q ≠ 0
        (True, 0, False)
    """
    where = "classify(weights, loss_grad_fn)"
    Ws = as_weights(where, weights)
    check_option(where, "convention", convention, CONVENTIONS)
    check_rtol(where, rtol)
    if not callable(loss_grad_fn):
        raise TypeError(f"{where}: loss_grad_fn must be callable W -> ∇ℓ(W), got "
                        f"{type(loss_grad_fn).__name__}. Build one with data_loss(X, Y), "
                        "frobenius_loss(Q) or functional_loss(fn).")
    for name, tol in (("grad_tol", grad_tol), ("stationarity_tol", stationarity_tol)):
        if tol is not None and not float(tol) >= 0.0:
            raise ValueError(f"{where}: {name} must be >= 0, got {tol!r}.")
    if cross_check not in (True, False, "auto"):
        raise ValueError(f"{where}: cross_check must be True, False or 'auto', got "
                         f"{cross_check!r}.")
    d = widths_of(Ws)
    fs: FunctionalSpace = functional_space(d)
    Wbar = _product(Ws)
    G = loss_grad_fn(Wbar.clone())
    if not isinstance(G, Tensor | np.ndarray):
        raise TypeError(f"{where}: loss_grad_fn returned {type(G).__name__}; expected a tensor "
                        f"of shape {tuple(Wbar.shape)}.")
    G = torch.as_tensor(G).detach().to(torch.float64).cpu()
    if tuple(G.shape) != tuple(Wbar.shape):
        raise ValueError(f"{where}: loss_grad_fn returned shape {tuple(G.shape)} but "
                         f"W̄ = W_h⋯W_1 has shape {tuple(Wbar.shape)}; ∇ℓ(W̄) must match W̄.")
    check_finite(where, "loss_grad_fn(W̄)", G)

    after, before = _partial_products(Ws)
    sa, sb = _factor_singular_values(after, before)
    grads = [A.T @ G @ B.T for A, B in zip(after, before, strict=True)]
    grad_norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    g_norm = float(torch.linalg.norm(G))
    s_ell = _gradient_scale(loss_grad_fn, G, g_norm)
    if grad_tol is None:
        s_mu = math.sqrt(sum((float(a[0]) * float(b[0])) ** 2
                             for a, b in zip(sa, sb, strict=True)))
        grad_tol = CRITICAL_RTOL * s_ell * s_mu
    if stationarity_tol is None:
        stationarity_tol = CRITICAL_RTOL * s_ell
    grad_tol, stationarity_tol = float(grad_tol), float(stationarity_tol)

    rank_dec = numerical_rank(Wbar, rtol)
    e = rank_dec.rank
    stair = _staircase(Ws, rtol, (after, before), (sa, sb))
    numerical = None
    if cross_check is True or (cross_check == "auto" and
                               Wbar.numel() * fs.n_params <= NUMERICAL_CROSS_CHECK_MAX):
        numerical = numerical_rank(_differential(Ws).materialise(), rtol)
    tangent = _tangent_space(Wbar, rank_dec, None, where)
    stratum_norm = float(torch.linalg.norm(tangent.project(G)))
    smooth = fs.filling or e == fs.r

    is_critical = grad_norm <= grad_tol
    tested: float | None = None
    zero_grad = g_norm <= stationarity_tol
    cmp = "<=" if zero_grad else ">"
    if not is_critical:
        pure, kind = None, "noncritical"
        reason = (f"not critical: ‖∇L‖ = {grad_norm:.3g} > grad_tol = {grad_tol:.3g}; purity is "
                  "defined only at critical points")
    elif e == fs.r:
        pure = True
        reason = (f"rank W̄ = r = {e}: dμ(θ) has maximal rank dim M_r, so a critical θ is pure "
                  f"(§4.2 (i)); check ‖P_T ∇ℓ(W̄)‖ = {stratum_norm:.3g}")
    elif fs.filling:
        tested, pure = g_norm, zero_grad
        reason = (f"filling (M_r is all of R^{d[-1]}x{d[0]}), rank W̄ = {e} < {fs.r}: pure iff "
                  f"∇ℓ(W̄) = 0; ‖∇ℓ(W̄)‖ = {g_norm:.3g} {cmp} {stationarity_tol:.3g}")
    elif convention == "all_singular":
        pure = True
        reason = (f"singular point of M_{fs.r} (rank W̄ = {e} < r = {fs.r}); convention "
                  "all_singular counts every singular point as critical")
    else:
        tested, pure = g_norm, zero_grad
        reason = (f"singular point of M_{fs.r} (rank W̄ = {e} < r = {fs.r}); tangent-cone "
                  f"convention: pure iff ∇ℓ(W̄) = 0; ‖∇ℓ(W̄)‖ = {g_norm:.3g} {cmp} "
                  f"{stationarity_tol:.3g}")
    if is_critical:
        kind = "pure" if pure else "spurious"
    return LinearCritical(
        is_critical=is_critical, rank_product=e, r=fs.r, pure=pure,
        differential_rank=stair.rank, dim_functional_space=fs.dim, convention=convention,
        grad_norm=grad_norm, grad_tol=grad_tol, loss_grad_norm=g_norm,
        stratum_grad_norm=stratum_norm, tested_norm=tested, stationarity_tol=stationarity_tol,
        filling=fs.filling, smooth_point=smooth, maximal_differential=stair.rank == fs.dim,
        kind=kind, reason=reason, widths=d, n_params=fs.n_params, rank_decision=rank_dec,
        differential=stair, differential_numerical=numerical,
    )
