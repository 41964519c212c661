"""Closed forms and independent reference computations, each citing its section of docs/theory.md.

Nothing here calls the code under test: the references use only torch autograd primitives,
``torch.linalg`` and the formulas of the spec, so that a test comparing lossgeom with an oracle
can fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

F64 = torch.float64
EPS64 = torch.finfo(F64).eps

# -- worked numbers of the oracle checklist (§7) ------------------------------------------------
INERTIA_361_EXACT_FIT = (4, 0, 20)
"""§3.1 and §7 row 5: tanh 3-6-1 without bias, n = 4, exact fit: N = 24, inertia (4, 0, 20)."""

INERTIA_251_EXACT_FIT = (4, 0, 17)
"""§6.1 (numerical check): tanh 2-5-1 with biases, n = 4, exact fit: rank G = 4, inertia (4, 0, 17)."""

RELU_DEAD_RANK_J = 3
RELU_DEAD_INERTIA = (3, 0, 10)
"""§6.2 (numerical check): ReLU 2-3-1 dead-pattern example: rank G = 3, inertia (3, 0, 10)."""

SOFTMAX_SOFT_FIT_RANK_J = 6
SOFTMAX_SOFT_FIT_RANK_H = 4
"""§6.4 and §7 row 14: tanh 2-5-3, n = 2, soft-label fit: rank J = 6, rank ∇²L = rank J − n = 4."""

SOFTMAX_ONEHOT_RANK_J = 6
SOFTMAX_ONEHOT_RANK_GN = 4
SOFTMAX_ONEHOT_RANK_H = 22
"""§6.4: one-hot labels at a random point: rank J = 6, Gauss–Newton rank 4, ∇²L rank 22 of 33."""

SPEC_INERTIA_RTOL = 1e-9
"""§1.4: count eigenvalue signs with tolerance 1e-9·max|λ| for float64 autograd Hessians."""


def singh_hessian_ranks(widths: list[int], data_rank: int, loss: str = "mse") -> dict[str, int]:
    """§5.2 (Singh et al., code): ranks of H_o, H_f and H_L of a deep linear net, no bias.

    q = min(r, K, M₁..M_{L−1}), s = min(r, K); rank H_o = q(r + K − q),
    rank H_f = 2q ΣM_l + 2qs − Lq², rank H_L = 2q ΣM_l + q(r + K) − Lq² (hidden widths only);
    for cross-entropy K is replaced by K − 1.
    """
    hidden = list(widths[1:-1])
    K = widths[-1] - (1 if loss == "softmax_ce" else 0)
    r, L = data_rank, len(widths) - 1
    q = min([r, K, *hidden])
    s = min(r, K)
    return {
        "outer": q * (r + K - q),
        "functional": 2 * q * sum(hidden) + 2 * q * s - L * q * q,
        "total": 2 * q * sum(hidden) + q * (r + K) - L * q * q,
    }


SINGH_EXPECTED = {"outer": 150, "functional": 175, "total": 250}
"""§5.3 and §7 row 12: widths [25, 5, 10, 10], n = 50, data rank 25, MSE: 150/175/250 [Q]."""


# -- loss closed forms (§1.3, §2.7, §6.4; per-sample terms summed) --------------------------
def loss_value(name: str, x: Tensor, y: Tensor, reduction: str = "sum") -> Tensor:
    """C(x, y) from the defining formulas (losses table of §0 and §2.7), via torch.nn.functional.

    mse: Σ(x − y)², mean ÷ n·k; bce: PyTorch binary cross-entropy; ce_prob: −Σ y log x, mean ÷ n;
    softmax_ce: −Σ yᵢᵀ log softmax(xᵢ), mean ÷ n.
    """
    import torch.nn.functional as F

    n = x.shape[0]
    if name == "mse":
        return F.mse_loss(x, y, reduction=reduction)
    if name == "bce":
        return F.binary_cross_entropy(x, y, reduction=reduction)
    if name == "ce_prob":
        total = -(y * torch.log(x)).sum()
        return total if reduction == "sum" else total / n
    if name == "softmax_ce":
        return F.cross_entropy(x, y, reduction=reduction)  # soft-target form, mean ÷ n
    raise ValueError(name)


def loss_output_hessian_blocks(name: str, x: Tensor, y: Tensor, reduction: str = "sum") -> Tensor:
    """Per-sample blocks of ∇²ₓC (n, k, k) in closed form (§1.3, §2.7 Lemma 2.6, §6.4).

    mse: 2I; bce: diag(y/x² + (1 − y)/(1 − x)²); ce_prob: diag(y/x²);
    softmax_ce: (Σ_c y_c)(diag p − ppᵀ), p = softmax(x). "mean" scales mse/bce by 1/(n·k) and
    ce_prob/softmax_ce by 1/n.
    """
    n, k = x.shape
    if name == "mse":
        d, s = torch.full_like(x, 2.0), 1.0 / (n * k)
    elif name == "bce":
        d, s = y / x**2 + (1 - y) / (1 - x) ** 2, 1.0 / (n * k)
    elif name == "ce_prob":
        d, s = y / x**2, 1.0 / n
    elif name == "softmax_ce":
        p = torch.softmax(x, dim=-1)
        blocks = y.sum(-1)[:, None, None] * (torch.diag_embed(p) - p[:, :, None] * p[:, None, :])
        return blocks if reduction == "sum" else blocks / n
    else:
        raise ValueError(name)
    blocks = torch.diag_embed(d)
    return blocks if reduction == "sum" else s * blocks


def block_diagonal(blocks: Tensor) -> Tensor:
    """(n, k, k) blocks → dense (n·k, n·k) block-diagonal matrix (sample-major)."""
    return torch.block_diag(*blocks)


# -- autograd references (independent of lossgeom.curvature) -------------------------------------
def reference_jacobian(output_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """J = ∂x/∂θ (n·k, N) by ``torch.autograd.functional.jacobian`` (reverse mode, sample-major)."""
    return torch.autograd.functional.jacobian(lambda t: output_fn(t).reshape(-1), theta)


def reference_hessian(loss_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """∇²L (N, N) by ``torch.autograd.functional.hessian``."""
    return torch.autograd.functional.hessian(loss_fn, theta)


def fd_step(theta: Tensor) -> float:
    """central-difference step h = eps^(1/3) · max(1, ‖θ‖∞)."""
    return EPS64 ** (1 / 3) * max(1.0, float(theta.abs().max()))


def fd_jacobian(f: Callable[[Tensor], Tensor], theta: Tensor, h: float | None = None) -> Tensor:
    """Central differences of a vector function: column j = (f(θ + h eⱼ) − f(θ − h eⱼ)) / 2h."""
    h = fd_step(theta) if h is None else h
    cols = []
    for j in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[j] = h
        cols.append((f(theta + e).reshape(-1) - f(theta - e).reshape(-1)) / (2 * h))
    return torch.stack(cols, dim=1)


def fd_directional(f: Callable[[Tensor], Tensor], theta: Tensor, v: Tensor,
                   h: float | None = None) -> Tensor:
    """Central difference of f along v: (f(θ + h v) − f(θ − h v)) / 2h (HVP from gradients)."""
    h = (fd_step(theta) / max(1.0, float(v.abs().max()))) if h is None else h
    return (f(theta + h * v) - f(theta - h * v)) / (2 * h)


def relative_error(a: Tensor, b: Tensor) -> float:
    """‖a − b‖ / max(‖b‖, tiny)."""
    denom = max(float(torch.linalg.norm(b)), 1e-300)
    return float(torch.linalg.norm(a - b)) / denom


def eigenvalue_signs(H: Tensor, rtol: float = SPEC_INERTIA_RTOL) -> tuple[int, int, int]:
    """§1.4: (positive, negative, zero) of a symmetric matrix with tol = rtol·max|λ|."""
    lam = torch.linalg.eigvalsh(0.5 * (H + H.T))
    tol = rtol * float(lam.abs().max())
    pos, neg = int((lam > tol).sum()), int((lam < -tol).sum())
    return pos, neg, lam.numel() - pos - neg


def svd_rank(A: Tensor, rtol: float) -> int:
    """#{σᵢ > rtol·σ₁} from ``torch.linalg.svdvals`` (§1.4; an explicit tolerance)."""
    s = torch.linalg.svdvals(A)
    return int((s > rtol * float(s[0])).sum()) if s.numel() else 0


# -- §6.1 / §6.2 toy behaviors ---------------------------------------------------------------
def spheres_model(params: dict[str, Tensor], centres: Tensor) -> Tensor:
    """§6.1 (concentric spheres, §7 row 22): fᵢ(θ) = ‖θ − cᵢ‖², one output per centre."""
    return ((params["theta"][None, :] - centres) ** 2).sum(dim=-1)


SPHERE_CENTRES = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=F64)
SPHERE_ON_AXIS = torch.tensor([0.3, 0.0, 0.0], dtype=F64)        # rank G = 1 (manifold: a point)
SPHERE_OFF_AXIS = torch.tensor([0.3, 0.5, -0.2], dtype=F64)      # rank G = 2 (manifold: a circle)


def info_loss_toy(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """§6.2 threshold example (§7 row 23): f(θ, x) = v tanh(w x) + c."""
    return params["v"] * torch.tanh(params["w"] * inputs[:, 0]) + params["c"]


def info_loss_toy_params(v: float = 1.5) -> dict[str, Tensor]:
    """θ at w = 0 (layer-1 activations coincide for every input)."""
    return {"v": torch.tensor(v, dtype=F64), "w": torch.tensor(0.0, dtype=F64),
            "c": torch.tensor(0.2, dtype=F64)}


def tolerance_is_sane(value: float) -> bool:
    """A reported tolerance is finite and non-negative."""
    return math.isfinite(value) and value >= 0.0
