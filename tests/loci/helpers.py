"""Problems of the §3 worked examples, built independently of lossgeom.loci."""

from __future__ import annotations

import torch

import lossgeom as lg

F64 = torch.float64
SPEC_INERTIA_RTOL = 1e-9  # §1.4: sign counts at 1e-9·max|λ| for float64 autograd Hessians


def gaussian_problem(widths, bias=True, activation="tanh", n=5, seed=0, loss="mse"):
    """mlp(widths) on Gaussian inputs (n, n_0) and targets (n, k), seeded (§3.4 setting)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, widths[0], generator=g, dtype=F64)
    Y = torch.randn(n, widths[-1], generator=g, dtype=F64)
    return lg.Problem(lg.mlp(widths, activation, bias, generator=g), X, Y, loss=loss)


def dense_spectrum(problem, theta):
    """Eigenvalues (ascending) of ∇²L by torch.autograd.functional.hessian (not lossgeom)."""
    H = torch.autograd.functional.hessian(problem.loss_at, theta)
    return torch.linalg.eigvalsh(0.5 * (H + H.T))


def signs(lam, rtol=SPEC_INERTIA_RTOL):
    """(positive, negative, zero) with tol = rtol·max|λ| (§1.4)."""
    tol = rtol * float(lam.abs().max())
    pos, neg = int((lam > tol).sum()), int((lam < -tol).sum())
    return pos, neg, lam.numel() - pos - neg


def xor_problem():
    """§3.5 row 2: XOR on {0,1}² with labels 0/1, a [2,6,6,1] tanh net with biases."""
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=F64)
    Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=F64)
    return lg.Problem(lg.mlp([2, 6, 6, 1], "tanh", True), X, Y)


def xor_critical_point(problem, copies=6):
    """A critical point of a [2,1,1,1] net with L = 2/3, each unit duplicated ``copies`` times.

    The small net isolates (0,0): h₁ = tanh(50 x₁ + 50 x₂ − 25) ∈ {−1, 1, 1, 1} and
    h₂ = tanh(30 h₁) are saturated exactly in float64 (tanh' = 1 − tanh² = 0), and the output
    u h₂ + c with u = c = 1/3 is the least-squares fit 0 on (0,0) and 2/3 on the rest:
    L = 2·(1/3)² + (2/3)² = 2/3. Duplication copies incoming weights and splits outgoing ones.
    """
    theta = torch.zeros(problem.n_params, dtype=F64)
    p = problem.unflatten(theta)
    p["0.weight"][:] = 50.0
    p["0.bias"][:] = -25.0
    p["2.weight"][:] = 30.0 / copies
    p["4.weight"][:] = (1.0 / 3.0) / copies
    p["4.bias"][:] = 1.0 / 3.0
    return theta
