"""Extreme eigenpairs of a symmetric matrix or operator, with residuals and matvec counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

__all__ = ["Eigenpairs", "extreme_eigenpairs", "lanczos_basis_size"]


@dataclass(frozen=True)
class Eigenpairs:
    """Eigenvalues (ordered as requested) with their vectors and residuals ‖A v − λ v‖.

    Attributes:
        values: (k,) float64; descending for "LA", ascending for "SA".
        vectors: (N, k) float64, orthonormal columns.
        residuals: (k,) ‖A vᵢ − λᵢ vᵢ‖₂.
        n_matvec: Products with A used (0 for a dense matrix).
        method: "eigh" (dense) or "eigsh" (Lanczos).
        converged: False if ARPACK stopped before every pair converged.
    """

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    n_matvec: int
    method: str
    converged: bool = True


def lanczos_basis_size(n: int, k: int) -> int:
    """Lanczos vectors (ARPACK's ncv) ``extreme_eigenpairs`` keeps for k pairs of an n × n A.

    A restart costs ncv − k products after the first ncv.

    Example:
        >>> lanczos_basis_size(1000, 10)
        21
    """
    return min(n, max(2 * k + 1, 20))


def extreme_eigenpairs(
    A: torch.Tensor | LinearOperator,
    k: int = 10,
    which: str = "LA",
    *,
    tol: float = 1e-12,
    seed: int = 0,
    maxiter: int | None = None,
    shift: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> Eigenpairs:
    """The k largest ("LA") or smallest ("SA") algebraic eigenpairs of a symmetric A.

    A dense tensor goes through ``torch.linalg.eigh``; an operator through
    ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos) with a seeded start vector.
    When k ≥ N − 1 an operator is materialised and solved densely.

    Args:
        A: Symmetric (N, N) tensor, or a scipy LinearOperator.
        k: Number of eigenpairs.
        which: "LA" (largest algebraic) or "SA" (smallest algebraic).
        tol: Relative accuracy requested from ARPACK.
        seed: Seed of the start vector.
        maxiter: ARPACK iteration cap (default scipy's).
        shift: Solve for A + shift·I and report eigenvalues of A. ARPACK's test is relative to
            |λ|, so a shift of about ‖A‖ turns it into an accuracy of tol·‖A‖ for eigenvalues
            near zero, which otherwise cannot converge.
        progress: Called as progress(done, total) in products after each one; total is the
            most ``maxiter`` restarts can take.

    Returns:
        Eigenpairs.

    Raises:
        ValueError: If ``which`` is not "LA"/"SA" or A is not square.
    """
    if which not in ("LA", "SA"):
        raise ValueError(f"extreme_eigenpairs(A): which must be 'LA' or 'SA', got {which!r}.")
    n = A.shape[0]
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"extreme_eigenpairs(A): A must be square, got {tuple(A.shape)}.")
    k = max(0, min(k, n))
    if isinstance(A, torch.Tensor) or k >= n - 1:
        if isinstance(A, LinearOperator):
            count0 = getattr(A, "n_matvec", 0)
            M = torch.as_tensor(A.matmat(np.eye(n)))
            used = getattr(A, "n_matvec", count0) - count0
        else:
            M, used = A.to(torch.float64), 0
        lam, V = torch.linalg.eigh(0.5 * (M + M.T))
        idx = torch.arange(n - 1, n - 1 - k, -1) if which == "LA" else torch.arange(k)
        lam, V = lam[idx], V[:, idx]
        res = torch.linalg.norm(M @ V - V * lam, dim=0)
        return Eigenpairs(lam, V, res, used, "eigh")
    count0 = getattr(A, "n_matvec", 0)
    v0 = np.random.default_rng(seed).standard_normal(n)
    ncv = lanczos_basis_size(n, k)
    total = ncv + (maxiter if maxiter is not None else 10 * n) * (ncv - k)  # scipy's default cap

    done = 0

    def product(X: np.ndarray) -> np.ndarray:
        nonlocal done
        Y = A.matmat(X) + shift * X
        done += X.shape[1]
        if progress is not None:
            progress(done, total)
        return Y

    B = A if shift == 0.0 and progress is None else LinearOperator(
        A.shape, matvec=lambda x: product(x.reshape(-1, 1)).reshape(x.shape), matmat=product,
        dtype=np.float64)
    converged = True
    try:
        lam, V = eigsh(B, k=k, which=which, tol=tol, v0=v0, ncv=ncv, maxiter=maxiter)
    except ArpackNoConvergence as err:
        lam, V, converged = err.eigenvalues, err.eigenvectors, False
    lam = lam - shift
    order = np.argsort(-lam) if which == "LA" else np.argsort(lam)
    lam, V = lam[order], V[:, order]
    AV = A.matmat(V) if V.shape[1] else np.zeros_like(V)
    used = getattr(A, "n_matvec", count0) - count0
    res = np.linalg.norm(AV - V * lam, axis=0)
    return Eigenpairs(torch.as_tensor(lam), torch.as_tensor(V), torch.as_tensor(res), used,
                      "eigsh", converged)
