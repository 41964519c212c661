"""Gauss–Newton term G = Jᵀ ∇²ₓC J and residual term R = Σₐ ∂C/∂xₐ ∇²xₐ, so ∇²L = G + R.

R is computed independently of H: it is the Hessian of θ ↦ ⟨c, x(θ)⟩ with c = ∇ₓC(x(θ₀))
held fixed, so G + R = H is a check, not a definition.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget
from ..linalg.operators import CurvatureOperator
from ..problem import Problem
from ._hessian import HvpMode, _second_order, dense_second_order
from ._jacobian import jacobian, make_jvp, make_vjp

__all__ = [
    "gauss_newton", "gauss_newton_operator", "make_gauss_newton_product",
    "make_residual_product", "residual_hessian", "residual_operator",
]


def make_gauss_newton_product(problem: Problem, theta: Tensor) -> Callable[[Tensor], Tensor]:
    """Factory of v (N,) ↦ Jᵀ ∇²ₓC J v (N,): one JVP, one output-space product, one VJP."""
    x = problem.output_fn(theta).detach()
    jv, vjp_ = make_jvp(problem, theta), make_vjp(problem, theta)
    y, lf = problem.targets, problem.loss_fn

    def product(v: Tensor) -> Tensor:
        return vjp_(lf.output_hvp(x, y, jv(v.to(theta.dtype)).reshape(x.shape)).reshape(-1))

    return product


def _residual_scalar(problem: Problem, theta: Tensor) -> Callable[[Tensor], Tensor]:
    x = problem.output_fn(theta).detach()
    c = problem.loss_fn.output_grad(x, problem.targets).detach()
    return lambda t: (c * problem.output_fn(t)).sum()


def make_residual_product(problem: Problem, theta: Tensor) -> Callable[[Tensor], Tensor]:
    """Factory of v (N,) ↦ R v with R = ∇²_θ ⟨∇ₓC(x(θ₀)), x(θ)⟩ at θ = θ₀."""
    return _second_order(_residual_scalar(problem, theta), theta, HvpMode.REVERSE)[0]


def gauss_newton_operator(problem: Problem, theta: Tensor | None = None) -> CurvatureOperator:
    """G = Jᵀ ∇²ₓC J as a symmetric operator (N, N); psd when C is convex in x.

    Raises:
        ValueError: If θ has the wrong length or non-finite entries.
    """
    theta = problem.check_theta("gauss_newton_operator(problem, theta)", theta)
    return CurvatureOperator((problem.n_params,) * 2, make_gauss_newton_product(problem, theta),
                             symmetric=True, psd=problem.loss_fn.is_convex,
                             device=theta.device, name="gauss_newton")


def residual_operator(problem: Problem, theta: Tensor | None = None) -> CurvatureOperator:
    """R = Σₐ ∂C/∂xₐ ∇²xₐ as a symmetric operator (N, N).

    Raises:
        ValueError: If θ has the wrong length or non-finite entries.
    """
    theta = problem.check_theta("residual_operator(problem, theta)", theta)
    one, block = _second_order(_residual_scalar(problem, theta), theta, HvpMode.REVERSE)
    return CurvatureOperator((problem.n_params,) * 2, one, matmat=block, symmetric=True,
                             device=theta.device, name="residual_hessian")


def gauss_newton(problem: Problem, theta: Tensor | None = None, *,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> Tensor:
    """Dense Gauss–Newton term Jᵀ ∇²ₓC J, shape (N, N).

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        max_bytes: Refuse above this many bytes for the (N, N) float64 matrix.

    Returns:
        G, symmetric (psd for the built-in losses), float64.

    Raises:
        DenseTooLargeError: If N·N·8 bytes exceed ``max_bytes``.
        ValueError: If θ has the wrong length or non-finite entries.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.ones(3, 1))
        >>> torch.allclose(lg.gauss_newton(p), 2 * X.T @ X)
        True
    """
    where = "gauss_newton(problem, theta)"
    theta = problem.check_theta(where, theta)
    N = problem.n_params
    check_dense_budget(where, "Gauss-Newton matrix", (N, N), max_bytes,
                       "Use gauss_newton_operator(problem, theta).")
    J = jacobian(problem, theta, max_bytes=max_bytes)
    x = problem.output_fn(theta).detach()
    W = problem.loss_fn.output_hessian(x, problem.targets)
    G = J.T @ (W @ J)
    return 0.5 * (G + G.T)


def residual_hessian(problem: Problem, theta: Tensor | None = None, *,
                     max_bytes: int = DEFAULT_MAX_BYTES) -> Tensor:
    """Dense residual term Σₐ ∂C/∂xₐ ∇²_θ xₐ, shape (N, N); zero at a perfect MSE fit.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        max_bytes: Refuse above this many bytes for the (N, N) float64 matrix.

    Returns:
        R, symmetric, float64.

    Raises:
        DenseTooLargeError: If N·N·8 bytes exceed ``max_bytes``.
        ValueError: If θ has the wrong length or non-finite entries.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.ones(2, 1))
        >>> float(lg.residual_hessian(p).abs().max())   # x(θ) is linear in θ
        0.0
    """
    where = "residual_hessian(problem, theta)"
    theta = problem.check_theta(where, theta)
    N = problem.n_params
    check_dense_budget(where, "residual Hessian", (N, N), max_bytes,
                       "Use residual_operator(problem, theta).")
    R = dense_second_order(_residual_scalar(problem, theta), theta)
    return 0.5 * (R + R.T)
