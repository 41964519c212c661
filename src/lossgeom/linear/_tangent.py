"""Tangent and normal spaces of the rank strata of matrices, and the projector P_T (§4.8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_rtol
from ..linalg import CurvatureOperator, RankDecision, numerical_rank

__all__ = ["TangentSpace", "tangent_space"]


@dataclass(frozen=True)
class TangentSpace:
    """Tangent and normal spaces at W̄ of the stratum of matrices of rank e = rank W̄ (§4.1).

    T = {A : U_⊥ᵀ A V_⊥ = 0}, N = {U_⊥ Z V_⊥ᵀ}, with U (d_h, e), V (d_0, e) orthonormal bases of
    Col W̄ and Row W̄, and U_⊥ (d_h, d_h − e), V_⊥ (d_0, d_0 − e) of their complements.

    Attributes:
        rank: e.
        rank_decision: The RankDecision that fixed e (tolerance and gap).
        U: (d_h, e).
        V: (d_0, e).
        U_perp: (d_h, d_h − e).
        V_perp: (d_0, d_0 − e).
        dim: dim T = e(d_0 + d_h − e).
    """

    rank: int
    rank_decision: RankDecision
    U: torch.Tensor
    V: torch.Tensor
    U_perp: torch.Tensor
    V_perp: torch.Tensor
    dim: int

    def project(self, A: torch.Tensor) -> torch.Tensor:
        """P_T(A) = P_U A + A P_V − P_U A P_V (§4.8).

        Args:
            A: Matrix, shape (d_h, d_0).

        Returns:
            The tangent component of A, shape (d_h, d_0).
        """
        A = torch.as_tensor(A, dtype=torch.float64)
        PUA = self.U @ (self.U.T @ A)
        return PUA + (A @ self.V) @ self.V.T - (PUA @ self.V) @ self.V.T

    def project_normal(self, A: torch.Tensor) -> torch.Tensor:
        """P_N(A) = U_⊥ U_⊥ᵀ A V_⊥ V_⊥ᵀ = A − P_T(A).

        Args:
            A: Matrix, shape (d_h, d_0).

        Returns:
            The normal component of A, shape (d_h, d_0).
        """
        A = torch.as_tensor(A, dtype=torch.float64)
        return self.U_perp @ (self.U_perp.T @ A @ self.V_perp) @ self.V_perp.T

    def operator(self) -> CurvatureOperator:
        """P_T as a matrix-free operator on vec(A) (row-major).

        Returns:
            A symmetric psd ``CurvatureOperator`` of shape (d_h·d_0, d_h·d_0).
        """
        m, n = self.U.shape[0], self.V.shape[0]

        def mm(X: torch.Tensor) -> torch.Tensor:
            b = X.shape[1]
            A = X.T.reshape(b, m, n)
            PUA = self.U @ (self.U.T @ A)
            out = PUA + (A @ self.V) @ self.V.T - (PUA @ self.V) @ self.V.T
            return out.reshape(b, m * n).T

        return CurvatureOperator((m * n, m * n), lambda x: mm(x.reshape(-1, 1)).reshape(-1),
                                 matmat=mm, symmetric=True, psd=True, name="tangent_projector")


def tangent_space(W, rank: int | None = None, *, rtol: float | None = None) -> TangentSpace:
    """Tangent and normal spaces at W of its rank stratum, and the projector P_T (§4.8).

    Args:
        W: Matrix W̄, shape (d_h, d_0).
        rank: The stratum rank e; default the numerical rank of W (``numerical_rank``).
        rtol: Relative tolerance of that rank decision, in (0, 1).

    Returns:
        A TangentSpace; its ``project`` applies P_T(A) = P_U A + A P_V − P_U A P_V.

    Raises:
        TypeError: If W is not a tensor or array.
        ValueError: If W is not a finite matrix, or rank is outside [0, min(W.shape)].

    Example:
        >>> import torch
        >>> from lossgeom.linear import tangent_space
        >>> T = tangent_space(torch.diag(torch.tensor([1., 0.], dtype=torch.float64)))
        >>> T.rank, T.dim, T.project(torch.eye(2, dtype=torch.float64)).tolist()
        (1, 3, [[1.0, 0.0], [0.0, 0.0]])
    """
    where = "tangent_space(W, rank)"
    check_rtol(where, rtol)
    if not isinstance(W, torch.Tensor | np.ndarray):
        raise TypeError(f"{where}: W must be a torch.Tensor or numpy array, got "
                        f"{type(W).__name__}.")
    t = torch.as_tensor(W).detach().to(torch.float64).cpu()
    if t.ndim != 2:
        raise ValueError(f"{where}: W has shape {tuple(t.shape)}; a matrix (d_h, d_0) is expected.")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: W contains non-finite values.")
    decision = numerical_rank(t, rtol)
    return _tangent_space(t, decision, rank, where)


def _tangent_space(t: torch.Tensor, decision: RankDecision, rank: int | None, where: str
                   ) -> TangentSpace:
    m, n = t.shape
    e = decision.rank if rank is None else rank
    if isinstance(e, bool) or not isinstance(e, int | np.integer) or not 0 <= e <= min(m, n):
        raise ValueError(f"{where}: rank = {e!r} must be an integer in [0, {min(m, n)}] for W of "
                         f"shape {(m, n)}.")
    e = int(e)
    U, _, Vh = torch.linalg.svd(t, full_matrices=True)
    return TangentSpace(e, decision, U[:, :e].contiguous(), Vh[:e].T.contiguous(),
                        U[:, e:].contiguous(), Vh[e:].T.contiguous(), e * (m + n - e))
