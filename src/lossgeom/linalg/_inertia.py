"""Inertia (signs of eigenvalues) of a symmetric matrix with a stated tolerance and gap."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_rtol
from ..results import Inertia
from ..tolerances import MIN_GAP, default_inertia_rtol

__all__ = ["Inertia", "inertia"]


def inertia(
    symmetric_or_eigenvalues: torch.Tensor | np.ndarray,
    rtol: float | None = None,
    *,
    min_gap: float = MIN_GAP,
    dtype: torch.dtype | None = None,
) -> Inertia:
    """Inertia (positive, negative, zero) with tol = rtol·max|λ|.

    A matrix is upcast to float64, symmetrised ((A + Aᵀ)/2) and its eigenvalues taken with
    ``eigvalsh``; the asymmetry ‖A − Aᵀ‖/‖A‖ is reported. Default rtol = N·eps(dtype).

    Args:
        symmetric_or_eigenvalues: A symmetric matrix (N, N), or its eigenvalues (N,).
        rtol: Relative tolerance in (0, 1).
        min_gap: ``decided`` is True when the gap is at least this.
        dtype: dtype the numbers were computed in (default: the input's).

    Returns:
        An Inertia.

    Raises:
        ValueError: For a non-square or non-finite input, or rtol outside (0, 1).

    Example:
        >>> import torch, lossgeom as lg
        >>> lg.inertia(torch.tensor([2.0, -1.0, 0.0], dtype=torch.float64)).as_list()
        [1, 1, 1]
    """
    where = "inertia(A)"
    check_rtol(where, rtol)
    t = torch.as_tensor(symmetric_or_eigenvalues)
    in_dtype = dtype or (t.dtype if t.is_floating_point() else torch.float64)
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: input contains non-finite values.")
    asym = 0.0
    if t.ndim == 2:
        if t.shape[0] != t.shape[1]:
            raise ValueError(f"{where}: expected a square matrix, got shape {tuple(t.shape)}.")
        norm = float(torch.linalg.norm(t))
        asym = float(torch.linalg.norm(t - t.T)) / norm if norm > 0 else 0.0
        lam = torch.linalg.eigvalsh(0.5 * (t + t.T))
    elif t.ndim == 1:
        lam = t
    else:
        raise ValueError(f"{where}: expected a matrix or eigenvalues, got shape {tuple(t.shape)}.")
    return inertia_from_eigenvalues(lam, rtol, min_gap=min_gap, dtype=in_dtype, asymmetry=asym)


def inertia_from_eigenvalues(lam: torch.Tensor, rtol: float | None, *, min_gap: float = MIN_GAP,
                             dtype: torch.dtype = torch.float64, n: int | None = None,
                             asymmetry: float = 0.0) -> Inertia:
    """Inertia of the given eigenvalues (float64); ``n`` sets the default rtol (default len(λ))."""
    lam = lam.to(torch.float64)
    rtol_ = default_inertia_rtol(n or lam.numel(), dtype) if rtol is None else float(rtol)
    amax = float(lam.abs().max()) if lam.numel() else 0.0
    tol = rtol_ * amax
    pos = int((lam > tol).sum())
    neg = int((lam < -tol).sum())
    zero = lam.numel() - pos - neg
    a = lam.abs()
    nonzero, zeros = a[a > tol], a[a <= tol]
    if nonzero.numel() == 0 or zeros.numel() == 0 or float(zeros.max()) == 0.0:
        gap = math.inf
    else:
        gap = float(nonzero.min()) / float(zeros.max())
    return Inertia(pos, neg, zero, tol, gap, rtol_, gap >= min_gap, asymmetry)
