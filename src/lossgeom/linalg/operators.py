"""CurvatureOperator: a scipy LinearOperator backed by torch products, with declared structure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget

__all__ = ["CurvatureOperator"]

TorchProduct = Callable[[torch.Tensor], torch.Tensor]


class CurvatureOperator(LinearOperator):
    """A matrix-free (m, n) float64 operator built from torch products.

    scipy sees ``matvec``/``rmatvec``/``matmat`` on numpy arrays; lossgeom code calls the torch
    products directly through ``torch_matvec`` and ``torch_matmat``. Products are computed in the
    dtype of the underlying functions and returned as float64. Every vector product is
    counted in ``n_matvec``. Structure is declared (``symmetric``, ``psd``) and checked by tests.

    Args:
        shape: (m, n).
        matvec: v (n,) ↦ A v (m,), torch float64.
        rmatvec: u (m,) ↦ Aᵀ u (n,); defaults to ``matvec`` when ``symmetric``.
        matmat: V (n, b) ↦ A V (m, b), a batched product (default: column loop).
        rmatmat: U (m, b) ↦ Aᵀ U (n, b) (default: ``matmat`` if symmetric, else column loop).
        symmetric: A = Aᵀ.
        psd: vᵀ A v ≥ 0 for all v.
        device: torch device of the products.
        name: Short name used in messages ("hessian", "jacobian", ...).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        matvec: TorchProduct,
        rmatvec: TorchProduct | None = None,
        *,
        matmat: TorchProduct | None = None,
        rmatmat: TorchProduct | None = None,
        symmetric: bool = False,
        psd: bool = False,
        device: torch.device | str = "cpu",
        name: str = "operator",
    ):
        super().__init__(dtype=np.float64, shape=tuple(int(s) for s in shape))
        if symmetric and shape[0] != shape[1]:
            raise ValueError(f"CurvatureOperator: a symmetric operator must be square, got {shape}.")
        self._mv = matvec
        self._rmv = rmatvec if rmatvec is not None else (matvec if symmetric else None)
        self._mm = matmat
        self._rmm = rmatmat if rmatmat is not None else (matmat if symmetric else None)
        self.symmetric = symmetric
        self.psd = psd
        self.device = torch.device(device)
        self.name = name
        self.n_matvec = 0

    # -- torch side -----------------------------------------------------------------------------
    def torch_matvec(self, v: torch.Tensor) -> torch.Tensor:
        """A v for a torch vector (n,), float64."""
        self.n_matvec += 1
        return self._mv(v).to(torch.float64)

    def torch_rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        """Aᵀ u for a torch vector (m,), float64."""
        if self._rmv is None:
            raise NotImplementedError(f"{self.name}: no transpose product was provided.")
        self.n_matvec += 1
        return self._rmv(u).to(torch.float64)

    def torch_matmat(self, V: torch.Tensor) -> torch.Tensor:
        """A V for a torch block (n, b), float64."""
        if self._mm is None:
            return torch.stack([self.torch_matvec(V[:, j]) for j in range(V.shape[1])], dim=1)
        self.n_matvec += V.shape[1]
        return self._mm(V).to(torch.float64)

    def torch_rmatmat(self, U: torch.Tensor) -> torch.Tensor:
        """Aᵀ U for a torch block (m, b), float64."""
        if self._rmm is None:
            return torch.stack([self.torch_rmatvec(U[:, j]) for j in range(U.shape[1])], dim=1)
        self.n_matvec += U.shape[1]
        return self._rmm(U).to(torch.float64)

    # -- scipy hooks ----------------------------------------------------------------------------
    def _to_torch(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64), device=self.device)

    def _matvec(self, x):
        return self.torch_matvec(self._to_torch(x).reshape(-1)).cpu().numpy()

    def _rmatvec(self, x):
        return self.torch_rmatvec(self._to_torch(x).reshape(-1)).cpu().numpy()

    def _matmat(self, X):
        return self.torch_matmat(self._to_torch(X)).cpu().numpy()

    def _rmatmat(self, X):
        return self.torch_rmatmat(self._to_torch(X)).cpu().numpy()

    def _adjoint(self):
        if self.symmetric:
            return self
        return CurvatureOperator(
            (self.shape[1], self.shape[0]), self._rmv, self._mv, matmat=self._rmm,
            rmatmat=self._mm, device=self.device, name=f"{self.name}ᵀ",
        )

    # -- dense ----------------------------------------------------------------------------------
    def materialise(self, max_bytes: int = DEFAULT_MAX_BYTES, block: int = 256) -> torch.Tensor:
        """The dense (m, n) float64 matrix, built from blocks of ``block`` columns.

        Raises:
            DenseTooLargeError: If m·n·8 bytes exceed ``max_bytes``.
        """
        m, n = self.shape
        check_dense_budget(f"{self.name}.materialise()", f"{self.name} matrix", (m, n), max_bytes,
                           "Keep using the operator (matvec/matmat, scipy.sparse.linalg).")
        out = torch.empty(m, n, dtype=torch.float64, device=self.device)
        eye = torch.eye(n, dtype=torch.float64, device=self.device)
        for j in range(0, n, block):
            out[:, j:j + block] = self.torch_matmat(eye[:, j:j + block])
        return out
