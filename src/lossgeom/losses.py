"""Losses C(x, y) on model outputs, spelled out (no torch.nn.functional reductions).

Every named loss is a sum over samples of a per-sample term, so its output-space Hessian ∇²ₓC is
block-diagonal with one (k, k) block per sample. The blocks decide the Gauss–Newton term and the
rank identity rank ∇²L = rank J (§1.3, §6.4).

| name        | C(x, y) with reduction="sum"                 | ∇²ₓC block (sum)              |
|-------------|----------------------------------------------|-------------------------------|
| mse         | Σ (x − y)²                                   | 2 I                           |
| bce         | −Σ [y log x + (1 − y) log(1 − x)]            | diag(y/x² + (1−y)/(1−x)²)     |
| ce_prob     | −Σ y log x  (x are probabilities)            | diag(y/x²)                    |
| softmax_ce  | −Σᵢ yᵢᵀ log softmax(xᵢ)  (x are logits)      | (Σ_c y_ic)(diag pᵢ − pᵢpᵢᵀ)   |

reduction="mean" follows PyTorch: mse/bce divide by n·k, ce_prob/softmax_ce divide by n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jvp

LOSS_NAMES = ("mse", "bce", "ce_prob", "softmax_ce")
REDUCTIONS = ("sum", "mean")

__all__ = ["LOSS_NAMES", "REDUCTIONS", "Loss"]


@dataclass(frozen=True)
class Loss:
    """A loss C(x, y) on outputs x (n, k) and targets y (n, k).

    Attributes:
        name: One of ``LOSS_NAMES`` or "custom".
        reduction: "sum" or "mean" (ignored for a custom callable).
        fn: The custom callable C(outputs, targets) -> scalar, or None.
    """

    name: str
    reduction: str = "sum"
    fn: Callable[[Tensor, Tensor], Tensor] | None = None

    # -- structure flags ------------------------------------------------------------------------
    @property
    def is_builtin(self) -> bool:
        """True for the four named losses (known Hessian blocks, known convexity)."""
        return self.fn is None

    @property
    def is_convex(self) -> bool:
        """C is convex in x (all built-ins); unknown, hence False, for a custom callable."""
        return self.is_builtin

    @property
    def residual_vanishes_at_fit(self) -> bool:
        """∇ₓC = 0 at a perfect fit, so the residual term Σ ∂C/∂x_a ∇²x_a vanishes there.

        True for mse, bce and softmax_ce (soft labels); False for ce_prob, whose gradient −y/x is
        normal to the simplex, not zero (the residual term then vanishes only if the model's
        outputs sum to one identically).
        """
        return self.name in ("mse", "bce", "softmax_ce")

    def scale(self, n: int, k: int) -> float:
        """Reduction factor: 1 for "sum"; 1/(n·k) (mse, bce) or 1/n (ce_prob, softmax_ce)."""
        if self.reduction == "sum" or not self.is_builtin:
            return 1.0
        return 1.0 / (n * k) if self.name in ("mse", "bce") else 1.0 / n

    # -- values ---------------------------------------------------------------------------------
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """C(x, y), a scalar tensor."""
        if self.fn is not None:
            return self.fn(x, y)
        s = self.scale(*x.shape)
        if self.name == "mse":
            return s * ((x - y) ** 2).sum()
        if self.name == "bce":
            return -s * (y * torch.log(x) + (1 - y) * torch.log1p(-x)).sum()
        if self.name == "ce_prob":
            # entries with y = 0 contribute 0 and a zero gradient, even where x = 0
            pos = y > 0
            return -s * torch.where(pos, y * torch.log(torch.where(pos, x, 1.0)), 0.0).sum()
        return -s * (y * torch.log_softmax(x, dim=-1)).sum()  # softmax_ce

    def output_grad(self, x: Tensor, y: Tensor) -> Tensor:
        """∇ₓC, shape (n, k)."""
        return grad(lambda z: self(z, y))(x)

    def output_hvp(self, x: Tensor, y: Tensor, u: Tensor) -> Tensor:
        """∇²ₓC · u for u of shape (n, k) (forward-over-reverse for custom losses)."""
        blocks = self.output_hessian_blocks(x, y)
        if blocks is not None:
            return torch.einsum("nij,nj->ni", blocks, u)
        return jvp(lambda z: self.output_grad(z, y), (x,), (u,))[1]

    def output_hessian_blocks(self, x: Tensor, y: Tensor) -> Tensor | None:
        """Per-sample blocks of ∇²ₓC, shape (n, k, k); None for a custom callable."""
        if self.fn is not None:
            return None
        n, k = x.shape
        s = self.scale(n, k)
        if self.name == "mse":
            d = torch.full_like(x, 2.0 * s)
        elif self.name == "bce":
            d = s * (y / x**2 + (1 - y) / (1 - x) ** 2)
        elif self.name == "ce_prob":
            d = s * torch.where(y > 0, y / torch.where(y > 0, x, 1.0) ** 2, 0.0)
        else:
            p = torch.softmax(x, dim=-1)
            mass = y.sum(dim=-1)[:, None, None]
            return s * mass * (torch.diag_embed(p) - p[:, :, None] * p[:, None, :])
        return torch.diag_embed(d)

    def output_hessian(self, x: Tensor, y: Tensor) -> Tensor:
        """Dense ∇²ₓC on the flattened outputs, shape (n·k, n·k)."""
        blocks = self.output_hessian_blocks(x, y)
        if blocks is not None:
            return torch.block_diag(*blocks)
        flat = x.reshape(-1)
        # jacfwd of grad: the composition that stays right (``curvature._hessian`` NOTE)
        return torch.func.jacfwd(torch.func.grad(lambda z: self(z.reshape(x.shape), y)))(flat)

    def hessian_positive_on_fit(self, y: Tensor) -> bool:
        """∇²ₓC is positive definite at a perfect fit (x = y, or softmax(x) = y).

        mse, bce: yes. ce_prob: only if every target entry is positive. softmax_ce: never
        (1 lies in the kernel of each block). Custom: unknown, hence False.
        """
        if self.name in ("mse", "bce"):
            return True
        if self.name == "ce_prob":
            return bool((y > 0).all())
        return False

    def fit_residual(self, x: Tensor, y: Tensor) -> Tensor:
        """How far the outputs are from minimizing C, shape (n, k).

        x − y for mse, bce and ce_prob; softmax(x)·Σ_c y − y (∝ ∇ₓC) for softmax_ce; ∇ₓC for a
        custom callable.
        """
        if self.fn is not None:
            return self.output_grad(x, y)
        if self.name == "softmax_ce":
            return torch.softmax(x, dim=-1) * y.sum(dim=-1, keepdim=True) - y
        return x - y

    def reference_outputs(self, y: Tensor) -> Tensor:
        """A problem-scale reference point x_ref: 0 (mse, logits, custom), 1/2 (bce), 1/k (ce_prob)."""
        if self.name == "bce":
            return torch.full_like(y, 0.5)
        if self.name == "ce_prob":
            return torch.full_like(y, 1.0 / y.shape[-1])
        return torch.zeros_like(y)
