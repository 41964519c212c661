"""Seeded problems for the flow tests (§2.4–§2.7 settings)."""

from __future__ import annotations

import torch

import lossgeom as lg

F64 = torch.float64


def toy_model(params, X):
    """x(θ) = (θ₁θ₂, θ₂θ₃), one output per sample; X = I₂ selects the sample (§2.4)."""
    t = params["theta"]
    return (X @ torch.stack([t[0] * t[1], t[1] * t[2]]))[:, None]


def toy_problem(y=(2.0, 3.0), theta=(1.0, 1.0, 1.0)) -> lg.Problem:
    """The worked toy of §2.4: K = 3, QN = 2, mse-sum; normalization="sample_mean" gives
    the theory's C = |x − y|²/(2·2) = ¼|x − y|²."""
    return lg.Problem(toy_model, torch.eye(2, dtype=F64), torch.tensor(y, dtype=F64)[:, None],
                      params={"theta": torch.tensor(theta, dtype=F64)})


def tanh_problem(widths=(2, 4, 2), n=3, seed=0, *, duplicate: tuple[int, int] | None = None,
                 loss="mse", targets=None, activation="tanh", reduction="sum") -> lg.Problem:
    """A seeded mlp on Gaussian data; ``duplicate=(i, j)`` copies input i onto input j."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, widths[0], generator=g, dtype=F64)
    if duplicate is not None:
        X[duplicate[1]] = X[duplicate[0]]
    if targets is None:
        targets = torch.randn(n, widths[-1], generator=g, dtype=F64)
    model = lg.mlp(list(widths), activation, generator=torch.Generator().manual_seed(seed + 100))
    return lg.Problem(model, X, targets, loss=loss, reduction=reduction)


def dense_parts(problem: lg.Problem, theta=None, normalization_factor=1.0):
    """Dense oracle pieces: J (m, N), K, P (via torch.linalg.pinv), ∇ₓC flattened."""
    theta = problem.theta if theta is None else theta
    J = lg.jacobian(problem, theta)
    Jp = torch.linalg.pinv(J)
    g = normalization_factor * problem.output_grad(theta).reshape(-1)
    return J, J @ J.T, J @ Jp, Jp, g


def rotating_projector(m=5, r=3, seed=0):
    """P(τ) = R(τ) P₀ R(τ)ᵀ, R(τ) = exp(τA) with A skew-symmetric: a rank-r projector turning in R^m."""
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(m, m, generator=g, dtype=F64)
    A = B - B.T
    P0 = torch.diag(torch.cat([torch.ones(r, dtype=F64), torch.zeros(m - r, dtype=F64)]))

    def projector(tau: float) -> torch.Tensor:
        R = torch.linalg.matrix_exp(tau * A)
        return R @ P0 @ R.T

    return projector
