"""The global-minimum manifold M = {x(θ) = y} through an exact fit (§3.1, Cooper 2018).

For a network fitted exactly (∇ₓC = 0) with rank J locally constant, M is locally a manifold of
dimension N − rank J, generically N − n·k; the Hessian there is Jᵀ∇²ₓC J, so it has exactly
N − rank J zero eigenvalues when ∇²ₓC is positive definite (mse, bce).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES
from ..analysis import analyze
from ..errors import NotCriticalError
from ..problem import Problem
from ..results import Result

__all__ = ["SolutionManifold", "solution_manifold"]


@dataclass(frozen=True)
class SolutionManifold(Result):
    """Dimension of the global-minimum manifold through an exact fit (§3.1).

    Attributes:
        n_params: N.
        n_outputs_total: n·k.
        rank_jacobian: {rank, tol, gap, decided, method} of J.
        dimension: N − rank J (the manifold's local dimension where rank J is locally constant).
        generic_dimension: N − n·k (Cooper 2018: generic value).
        generic: rank J = min(N, n·k).
        n_zero_eigenvalues: Measured zero eigenvalues of ∇²L (``analyze``).
        inertia: Measured [positive, negative, zero].
        inertia_tol: Eigenvalue tolerance.
        inertia_gap: Its gap.
        zeros_match: n_zero_eigenvalues == dimension (None if undecided).
        loss: L(θ).
        perfect_fit: {max_residual, tol, holds}.
    """

    n_params: int
    n_outputs_total: int
    rank_jacobian: dict
    dimension: int
    generic_dimension: int
    generic: bool
    n_zero_eigenvalues: int | None
    inertia: list
    inertia_tol: float
    inertia_gap: float | None
    zeros_match: bool | None
    loss: float
    perfect_fit: dict


def solution_manifold(problem: Problem, theta: Tensor | None = None, *, rtol: float | None = None,
                      method: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
                      ) -> SolutionManifold:
    """Dim M = N − rank J at an exact fit, the generic N − n·k, and the Hessian's zero count.

    Args:
        problem: The model, data and loss (a loss with ∇ₓC = 0 at a fit: mse, bce, softmax_ce).
        theta: An exact fit (N,); default ``problem.theta``.
        rtol: Relative tolerance of the rank and inertia decisions of ``analyze``.
        method: Route of ``analyze``.
        max_bytes: Memory budget of dense matrices.

    Returns:
        A SolutionManifold.

    Raises:
        NotCriticalError: If θ is not critical (carries ‖∇L‖ and the tolerance).
        ValueError: If θ is critical but not a perfect fit, or for invalid θ or options.

    Example:
        >>> import torch, lossgeom as lg
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = (torch.randn(4, s, generator=g, dtype=torch.float64) for s in (3, 1))
        >>> p = lg.Problem(lg.mlp([3, 6, 1], bias=False, generator=g), X, Y)
        >>> m = solution_manifold(p, lg.fit_last_layer(p))         # §3.1: 3-6-1, n = 4
        >>> m.dimension, m.inertia
        (20, [4, 0, 20])
    """
    where = "solution_manifold(problem, theta)"
    theta = problem.check_theta(where, theta)
    report = analyze(problem, theta, method=method, rtol=rtol, max_bytes=max_bytes)
    if not report.criticality.critical:
        raise NotCriticalError(
            f"{where}: θ is not critical (‖∇L‖ = {report.grad_norm:.3g} > tol = "
            f"{report.criticality.tol:.3g}), so it is no global minimum. Fit exactly first, "
            "e.g. lossgeom.fit_last_layer(problem, theta).", grad_norm=report.grad_norm,
            tol=report.criticality.tol, theta=theta)
    if not report.perfect_fit.holds:
        raise ValueError(
            f"{where}: θ is critical but not a perfect fit (max residual "
            f"{report.perfect_fit.max_residual:.3g} > {report.perfect_fit.tol:.3g}); the "
            "global-minimum manifold is {x(θ) = y}. Use lossgeom.fit_last_layer or "
            "lossgeom.manifold.walk for the behavior level set.")
    N, nk = problem.n_params, problem.n_samples * problem.n_outputs
    rank = report.jacobian.rank
    inert = report.hessian.inertia.as_list()
    return SolutionManifold(
        n_params=N, n_outputs_total=nk,
        rank_jacobian=report.jacobian,
        dimension=N - rank, generic_dimension=N - nk, generic=rank == min(N, nk),
        n_zero_eigenvalues=inert[2], inertia=list(inert), inertia_tol=report.hessian.tol,
        inertia_gap=report.hessian.gap,
        zeros_match=None if inert[2] is None else inert[2] == N - rank, loss=report.loss,
        perfect_fit=report.perfect_fit)
