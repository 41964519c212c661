"""Numerical rank and null space with a stated tolerance and the gap that justifies the cut."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from .._checks import check_atol, check_rtol
from ..results import RankDecision
from ..tolerances import MIN_GAP, default_rank_rtol, gram_floor

__all__ = ["RankDecision", "numerical_rank", "null_space", "rank_from_gram"]

REFINE_MARGIN = 100.0
"""σ within this factor of the Gram floor are re-measured when the cut lies near the floor: their
eigenvectors are not separated from the rest, so the refined subspace starts above them."""
COUNT_MARGIN = 10.0
"""When every σ from K exceeds this multiple of the floor, K decides the count alone: each σ̂² is
off by at most floor², so each σ by at most 0.5 %, which moves no value across the cut and no gap
across ``MIN_GAP``."""


def _decide(
    s: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, rtol, atol, min_gap, method: str
) -> RankDecision:
    """Cut descending singular values ``s`` (float64) at max(atol, rtol·σ₁)."""
    s = torch.sort(s.to(torch.float64).clamp_min(0.0), descending=True).values
    rtol_ = default_rank_rtol(shape, dtype) if rtol is None else float(rtol)
    sigma_max = float(s[0]) if s.numel() else 0.0
    tol = max(float(atol or 0.0), rtol_ * sigma_max)
    rank = int((s > tol).sum())
    sigma_r = float(s[rank - 1]) if rank > 0 else None
    sigma_next = float(s[rank]) if rank < s.numel() else None
    if rank == 0:
        gap = tol / sigma_max if sigma_max > 0 else math.inf  # margin of σ₁ below the cut
    elif sigma_next is None or sigma_next == 0.0:
        gap = math.inf
    else:
        gap = sigma_r / sigma_next
    decided = gap >= min_gap
    reason = "" if decided else (
        f"gap σ_r/σ_(r+1) = {gap:.3g} at the cut is below min_gap = {min_gap:g}"
    )
    return RankDecision(rank, tol, sigma_max, sigma_r, sigma_next, gap, method, decided,
                        rtol_, min_gap, reason)


def numerical_rank(
    A_or_singular_values: torch.Tensor | np.ndarray,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    min_gap: float = MIN_GAP,
    shape: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
) -> RankDecision:
    """Numerical rank of a matrix, or of the matrix whose singular values are given.

    rank = #{σᵢ > tol}, tol = max(atol, rtol·σ_max), default rtol = max(m, n)·eps(dtype).
    A matrix is upcast to float64 and its singular values taken by SVD.

    Args:
        A_or_singular_values: A matrix (m, n), or its singular values (p,) in any order.
        rtol: Relative tolerance in (0, 1); default max(m, n)·eps(dtype).
        atol: Absolute tolerance ≥ 0; default 0.
        min_gap: ``decided`` is True when σ_r/σ_{r+1} ≥ min_gap.
        shape: The matrix shape when singular values are given (default (p, p)).
        dtype: The dtype the numbers were computed in (default: the input's).

    Returns:
        A RankDecision.

    Raises:
        ValueError: If the input is not 1-D or 2-D, holds non-finite values, or rtol/atol are
            out of range.

    Example:
        >>> import torch, lossgeom as lg
        >>> d = lg.numerical_rank(torch.tensor([3.0, 1.0, 1e-20], dtype=torch.float64))
        >>> d.rank, d.decided
        (2, True)
    """
    where = "numerical_rank(A)"
    check_rtol(where, rtol)
    check_atol(where, atol)
    t = torch.as_tensor(A_or_singular_values)
    in_dtype = dtype or (t.dtype if t.is_floating_point() else torch.float64)
    if t.ndim not in (1, 2):
        raise ValueError(f"{where}: expected a matrix (m, n) or singular values (p,), got shape "
                         f"{tuple(t.shape)}.")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: input contains non-finite values; a rank is undefined.")
    if t.ndim == 1:
        if bool((t < 0).any()):
            raise ValueError(f"{where}: singular values must be >= 0, got min {float(t.min()):g}.")
        shp = shape or (t.numel(), t.numel())
        return _decide(t, shp, in_dtype, rtol, atol, min_gap, "singular_values")
    s = torch.linalg.svdvals(t) if t.numel() else torch.zeros(0, dtype=torch.float64)
    return _decide(s, tuple(t.shape), in_dtype, rtol, atol, min_gap, "svd")


def rank_from_gram(
    K: torch.Tensor,
    n_cols: int,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    min_gap: float = MIN_GAP,
    dtype: torch.dtype = torch.float64,
    refine: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eig: tuple[torch.Tensor, torch.Tensor] | None = None,
    singular_values: Callable[[], torch.Tensor] | None = None,
    trust_above: float | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_refine: int | None = None,
) -> RankDecision:
    """Rank of J (m, n_cols) from its Gram matrix K = J Jᵀ (m, m), refined below the Gram floor.

    σᵢ(J) = √λᵢ(K). Values under the floor √(m·eps)·σ_max (NOTE [gram floor]) are not trusted.
    If the cut falls there, the decision is re-made ("gram+svd") from, in order of preference:
    ``singular_values()``, the exact σ of J (an SVD, when J fits in memory); or ``refine(U)``,
    which must return Jᵀ U (n_cols, ·): the singular values of Jᵀ U₀ on the eigenvectors U₀ of K
    below the floor, after removing from Jᵀ U₀ its components along the trusted right singular
    vectors Jᵀ U_t Σ_t⁻¹ (eigenvectors of K are accurate only to eps·σ₁²/σ gap). Without either,
    the decision is returned with ``decided=False``.

    Args:
        K: Symmetric positive semidefinite Gram matrix, shape (m, m).
        n_cols: Number of columns N of J (sets the default rtol max(m, N)·eps).
        rtol: Relative tolerance in (0, 1).
        atol: Absolute tolerance on σ.
        min_gap: Gap threshold for ``decided``.
        dtype: dtype J was computed in.
        refine: Callable U (m, b) ↦ Jᵀ U (n_cols, b).
        eig: Precomputed ``torch.linalg.eigh(K)`` (ascending eigenvalues, eigenvectors).
        singular_values: Callable returning all singular values of J (preferred over refine).
        trust_above: Re-measure every σ below this too (not only those near the floor), so the
            refined directions are accurate beyond what K's squared conditioning allows.
        forward: Callable V (n_cols, b) ↦ J V (m, b). With it the trusted directions are removed
            in the sample space, U₀ ← U₀ − U_t M⁻¹ U_tᵀ J (Jᵀ U₀) with M = U_tᵀ K U_t, and U₀
            re-orthonormalised before the last ``refine``: memory n_cols × (m − n_trusted)
            instead of n_cols × m (Jᵀ U_t is never formed).
        max_refine: Most columns ``refine`` may be called on (the memory it may take); a cut that
            needs more is returned undecided, with the count and the reason.

    Returns:
        A RankDecision with method "gram" or "gram+svd".
    """
    K = K.to(torch.float64)
    m = K.shape[0]
    if eig is not None:
        lam, U = eig
    elif refine is not None and singular_values is None:
        lam, U = torch.linalg.eigh(0.5 * (K + K.T))
    else:  # eigenvectors are needed only for the Jᵀ U₀ refinement
        lam, U = torch.linalg.eigvalsh(0.5 * (K + K.T)), None
    lam = lam.flip(0)
    U = U.flip(1) if U is not None else None
    sig = lam.clamp_min(0.0).sqrt()
    smax = float(sig[0]) if m else 0.0
    floor = gram_floor(m, smax, dtype if dtype.is_floating_point else torch.float64)
    first = _decide(sig, (m, n_cols), dtype, rtol, atol, min_gap, "gram")
    if trust_above is None and m and float(sig[-1]) > COUNT_MARGIN * floor:
        return first  # every value is resolved to 0.5 %: K's count is the count
    # values within a factor REFINE_MARGIN of the floor are re-measured too, so the subspace
    # handed to ``refine`` is separated from the trusted one by a margin
    n_trusted = int((sig > REFINE_MARGIN * floor).sum())
    if trust_above is not None and refine is not None:
        n_trusted = min(n_trusted, int((sig > trust_above).sum()))
    elif first.tol > REFINE_MARGIN * floor:
        return first  # the cut lies where every singular value is resolved
    if n_trusted == m:
        return first
    if singular_values is not None:
        return _decide(singular_values().to(torch.float64), (m, n_cols), dtype, rtol, atol,
                       min_gap, "gram+svd")
    if refine is None:
        return dataclasses.replace(first, decided=False,
                                   reason=f"the cut lies below the Gram floor {floor:.3g}; "
                                          "no SVD refinement was available")
    if max_refine is not None and m - n_trusted > max_refine:
        return dataclasses.replace(first, decided=False, reason=(
            f"the cut lies below the Gram floor {floor:.3g}, and re-measuring the {m - n_trusted} "
            f"singular values near it needs {m - n_trusted} products of {n_cols} entries, more "
            f"than the {max_refine} the memory budget holds; raise max_bytes"))
    U0, Ut = U[:, n_trusted:], U[:, :n_trusted]
    if n_trusted and forward is not None:  # project off range(Jᵀ U_t) in the sample space
        C = forward(refine(U0).to(torch.float64)).to(torch.float64)    # J Jᵀ U₀, by products
        M = Ut.T @ K @ Ut
        U0 = torch.linalg.qr(U0 - Ut @ torch.linalg.solve(0.5 * (M + M.T), Ut.T @ C))[0]
        B = refine(U0).to(torch.float64)
    else:
        Vt = None
        if n_trusted:  # trusted directions first, so the last call of ``refine`` is on U₀
            Vt, _ = torch.linalg.qr(refine(Ut).to(torch.float64) / sig[:n_trusted])
        B = refine(U0).to(torch.float64)
        if Vt is not None:
            B = B - Vt @ (Vt.T @ B)
    small = torch.linalg.svdvals(torch.linalg.qr(B, mode="r")[1]) if B.shape[0] > B.shape[1] \
        else torch.linalg.svdvals(B)
    sig2 = torch.cat([sig[:n_trusted], small])
    return _decide(sig2, (m, n_cols), dtype, rtol, atol, min_gap, "gram+svd")


def null_space(A: torch.Tensor | np.ndarray, rtol: float | None = None, atol: float | None = None
               ) -> torch.Tensor:
    """Orthonormal basis of ker A, shape (n, n − rank), float64.

    The rank is decided by ``numerical_rank`` with the same rtol/atol (SVD of A).

    Args:
        A: Matrix (m, n).
        rtol: Relative tolerance, see ``numerical_rank``.
        atol: Absolute tolerance, see ``numerical_rank``.

    Returns:
        Z with ZᵀZ = I and ‖A Z‖₂ ≤ tol.

    Raises:
        ValueError: If A is not 2-D or not finite.

    Example:
        >>> import torch, lossgeom as lg
        >>> lg.null_space(torch.tensor([[1.0, 1.0]], dtype=torch.float64)).shape
        torch.Size([2, 1])
    """
    t = torch.as_tensor(A)
    if t.ndim != 2:
        raise ValueError(f"null_space(A): expected a matrix, got shape {tuple(t.shape)}.")
    decision = numerical_rank(t, rtol, atol)
    t = t.to(torch.float64)
    _, _, Vh = torch.linalg.svd(t, full_matrices=True)
    return Vh[decision.rank:].T.contiguous()
