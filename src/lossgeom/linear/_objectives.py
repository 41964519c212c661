"""Losses ℓ on the functional space R^{d_h×d_0} of a linear network, and their Problems.

A ``FunctionalLoss`` holds ℓ(W) as a pure torch function; calling it gives ∇ℓ(W), so it is a
valid ``loss_grad_fn`` for ``classify``. ``functional_problem`` turns L(θ) = ℓ(μ(θ)) into a
``lossgeom.Problem`` so the core engine (``analyze``, Hessians) applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._checks import check_finite, check_option
from ..losses import LOSS_NAMES, Loss
from ..models import mlp
from ..problem import Problem
from ._weights import _matrix, check_widths

__all__ = ["FunctionalLoss", "data_loss", "frobenius_loss", "functional_loss",
           "functional_problem", "weighted_frobenius_loss"]


@dataclass(frozen=True)
class FunctionalLoss:
    """A smooth loss ℓ: R^{d_h×d_0} → R on end-to-end matrices; calling it gives ∇ℓ(W).

    Attributes:
        loss: W (d_h, d_0) ↦ ℓ(W), a scalar tensor; a pure torch function (``torch.func``
            transforms it).
        name: Short description used in reports.
        shape: (d_h, d_0) the loss expects, or None when any shape works.
    """

    loss: Callable[[Tensor], Tensor]
    name: str = "custom"
    shape: tuple[int, int] | None = None

    def value(self, W: Tensor) -> float:
        """ℓ(W) as a float.

        Args:
            W: Matrix, shape (d_h, d_0).

        Returns:
            ℓ(W).
        """
        return float(self.loss(torch.as_tensor(W, dtype=torch.float64)))

    def gradient(self, W: Tensor) -> Tensor:
        """∇ℓ(W) by reverse-mode autograd.

        Args:
            W: Matrix, shape (d_h, d_0).

        Returns:
            ∇ℓ(W), shape (d_h, d_0), float64.
        """
        return torch.func.grad(self.loss)(torch.as_tensor(W, dtype=torch.float64))

    def __call__(self, W: Tensor) -> Tensor:
        """∇ℓ(W): a FunctionalLoss is a valid ``loss_grad_fn`` for ``classify``.

        Args:
            W: Matrix, shape (d_h, d_0).

        Returns:
            ∇ℓ(W), shape (d_h, d_0), float64.
        """
        return self.gradient(W)


def frobenius_loss(Q) -> FunctionalLoss:
    """ℓ(W) = ‖W − Q‖²_F (no factor ½), the quadratic loss of §4.6.

    Args:
        Q: Target matrix, shape (d_h, d_0).

    Returns:
        A FunctionalLoss with ∇ℓ(W) = 2(W − Q).

    Raises:
        TypeError: If Q is not a tensor or array.
        ValueError: If Q is not a finite non-empty matrix.

    Example:
        >>> import torch
        >>> from lossgeom.linear import frobenius_loss
        >>> frobenius_loss(torch.eye(2)).value(torch.zeros(2, 2))
        2.0
    """
    Qt = _matrix("frobenius_loss(Q)", "Q", Q)
    return FunctionalLoss(lambda W: ((W - Qt) ** 2).sum(), "frobenius", tuple(Qt.shape))


def weighted_frobenius_loss(Q, weights) -> FunctionalLoss:
    """ℓ(W) = Σ_ab Λ_ab (W_ab − Q_ab)², a smooth convex loss (strictly convex when Λ > 0).

    Args:
        Q: Target matrix, shape (d_h, d_0).
        weights: Entry weights Λ ≥ 0, shape (d_h, d_0).

    Returns:
        A FunctionalLoss with ∇ℓ(W) = 2 Λ ∘ (W − Q).

    Raises:
        TypeError: If Q or Λ is not a tensor or array.
        ValueError: If the shapes differ, an entry is not finite, or Λ has a negative entry.
    """
    where = "weighted_frobenius_loss(Q, weights)"
    Qt, Lt = _matrix(where, "Q", Q), _matrix(where, "weights", weights)
    if Qt.shape != Lt.shape:
        raise ValueError(f"{where}: weights have shape {tuple(Lt.shape)} but Q has shape "
                         f"{tuple(Qt.shape)}; they must match.")
    if bool((Lt < 0).any()):
        raise ValueError(f"{where}: weights must be >= 0 for a convex loss, got min "
                         f"{float(Lt.min()):g}.")
    return FunctionalLoss(lambda W: (Lt * (W - Qt) ** 2).sum(), "weighted_frobenius",
                          tuple(Qt.shape))


def data_loss(inputs, targets, loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
              reduction: str = "sum") -> FunctionalLoss:
    """ℓ(W) = C(X Wᵀ, Y): a lossgeom loss on the outputs of the linear map W on data.

    Rows are samples, as everywhere in lossgeom: outputs (n, d_h) = X (n, d_0) · Wᵀ. For MSE
    with reduction "sum" this is ‖W Xᵀ − Yᵀ‖²_F, the ‖WX − Y‖² of §4.1 with columns as
    samples.

    Args:
        inputs: X, shape (n, d_0).
        targets: Y, shape (n, d_h); for "softmax_ce" also integer labels (n,).
        loss: "mse", "bce", "ce_prob", "softmax_ce", or a callable C(outputs, targets).
        reduction: "sum" or "mean" (PyTorch's convention, see ``lossgeom.Problem``).

    Returns:
        A FunctionalLoss on W of shape (d_h, d_0).

    Raises:
        TypeError: If inputs or targets are not tensors or arrays.
        ValueError: For unknown loss or reduction names, shape mismatches, or non-finite data.

    Example:
        >>> import torch
        >>> from lossgeom.linear import data_loss
        >>> X = torch.eye(3, dtype=torch.float64)
        >>> data_loss(X, X).value(torch.zeros(3, 3))  # ‖0 − I‖²_F
        3.0
    """
    where = "data_loss(inputs, targets, loss)"
    check_option(where, "reduction", reduction, ("sum", "mean"))
    if callable(loss) and not isinstance(loss, str):
        C = Loss("custom", reduction, loss)
    else:
        check_option(where, "loss", loss, LOSS_NAMES)
        C = Loss(loss, reduction)
    X = _matrix(where, "inputs", inputs)
    if not isinstance(targets, Tensor | np.ndarray):
        raise TypeError(f"{where}: targets must be a torch.Tensor or numpy array, got "
                        f"{type(targets).__name__}.")
    Y = torch.as_tensor(targets).detach().cpu()
    if C.name == "softmax_ce" and Y.ndim == 1 and not Y.is_floating_point():
        raise ValueError(f"{where}: integer labels need the number of classes; pass one-hot "
                         "targets (n, k) (torch.nn.functional.one_hot(labels, k)).")
    Y = Y.to(torch.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"{where}: targets have shape {tuple(Y.shape)} but inputs have "
                         f"{X.shape[0]} rows; expected targets (n, d_h) = ({X.shape[0]}, d_h).")
    check_finite(where, "targets", Y)
    return FunctionalLoss(lambda W: C(X @ W.T, Y), f"data:{C.name}", (Y.shape[1], X.shape[1]))


def functional_loss(fn: Callable[[Tensor], Tensor], *, name: str = "custom",
                    shape: tuple[int, int] | None = None) -> FunctionalLoss:
    """Wrap a smooth scalar loss ℓ(W) so that ``classify`` gets its gradient by autograd.

    Args:
        fn: W (d_h, d_0) ↦ ℓ(W), a scalar tensor written in torch operations.
        name: Short description used in reports.
        shape: (d_h, d_0) the loss expects, if fixed.

    Returns:
        A FunctionalLoss.

    Raises:
        TypeError: If ``fn`` is not callable.

    Example:
        >>> import torch
        >>> from lossgeom.linear import functional_loss
        >>> functional_loss(lambda W: (W ** 2).sum())(torch.ones(2, 2)).tolist()
        [[2.0, 2.0], [2.0, 2.0]]
    """
    if not callable(fn):
        raise TypeError(f"functional_loss(fn): fn must be callable W -> scalar, got "
                        f"{type(fn).__name__}.")
    return FunctionalLoss(fn, name, None if shape is None else tuple(int(s) for s in shape))


def functional_problem(loss: FunctionalLoss, widths):
    """A ``lossgeom.Problem`` whose loss is L(θ) = ℓ(μ(θ)), for ``analyze`` and the curvature API.

    The model is ``mlp(widths, activation="linear", bias=False)`` (parameters θ = (vec W_1, …,
    vec W_h), row-major), the inputs are I_{d_0} (n = d_0 samples), so the outputs are W̄ᵀ, and
    the loss is the callable C(outputs, targets) = ℓ(outputsᵀ).

    Args:
        loss: The FunctionalLoss ℓ.
        widths: (d_0, …, d_h).

    Returns:
        A Problem with n = d_0, k = d_h and N = d_θ; its ``theta`` is the model's random
        initialisation, so pass θ explicitly (``flatten_weights``).

    Raises:
        TypeError: If loss is not a FunctionalLoss.
        ValueError: If widths are invalid or do not match the loss's shape.
    """
    where = "functional_problem(loss, widths)"
    if not isinstance(loss, FunctionalLoss):
        raise TypeError(f"{where}: loss must be a FunctionalLoss, got {type(loss).__name__}.")
    d = check_widths(where, widths)
    if loss.shape is not None and tuple(loss.shape) != (d[-1], d[0]):
        raise ValueError(f"{where}: loss expects W of shape {tuple(loss.shape)} but widths {d} "
                         f"give (d_h, d_0) = {(d[-1], d[0])}.")
    fn = loss.loss
    return Problem(mlp(list(d), activation="linear", bias=False),
                   torch.eye(d[0], dtype=torch.float64),
                   torch.zeros(d[0], d[-1], dtype=torch.float64),
                   loss=lambda out, _targets: fn(out.T))
