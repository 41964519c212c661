"""Output-space metrics of the flow family: (2.44) for full-rank J, the bundle metric (2.45) on ran J.

For the family V_α (§2.4): the induced output field is ∂ₛx = −[(1 − α)K + αP]∇ₓC.
* Full rank (P = 𝟙): it is the gradient of C for g_α = B_α⁻¹, B_α = (1 − α)K + α𝟙 (2.44);
  g₀ = K⁻¹ is the metric induced from Euclidean parameter space, g₁ the Euclidean one.
* Any rank: ∂ₛx lies in E = ran J and g_α(∂ₛx, e) = −⟨∇ₓC, e⟩ for every e ∈ E, with the bundle
  metric g_α = [(1 − α)K + αP]⁺ restricted to E (2.45).
For V^met_α the tensor is (1 − α)K⁻¹ + α𝟙 (on E: (1 − α)K⁺ + αP).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget
from ..curvature.linearization import Linearization, linearize
from ..problem import Problem
from ..results import Result
from ._common import check_alpha, check_family


def _dense_local(where: str, problem: Problem, theta, alpha, family, rank_rtol, max_bytes
                 ) -> tuple[float, str, Linearization]:
    if not isinstance(problem, Problem):
        raise TypeError(f"{where}: problem must be a lossgeom.Problem, got {type(problem).__name__}.")
    alpha = check_alpha(where, alpha)
    family = check_family(where, family)
    m = problem.n_samples * problem.n_outputs
    check_dense_budget(where, "output metric", (m, m), max_bytes,
                       "Use output_velocity(problem, theta, alpha) for the metric's action instead.")
    theta = problem.check_theta(where, theta)
    return alpha, family, linearize(problem, theta, route="gram", rtol=rank_rtol, where=where)


def _tensor_values(S2: Tensor, alpha: float, family: str) -> Tensor:
    """Eigenvalues of the metric on the kept directions, whose K-eigenvalues are S2."""
    if family == "field":
        return 1.0 / ((1.0 - alpha) * S2 + alpha)
    return (1.0 - alpha) / S2 + alpha


def output_metric(problem: Problem, theta: Tensor | None, alpha: float, *, family: str = "field",
                  rank_rtol: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Tensor:
    """The Riemannian metric (2.44) on output space R^{n·k} at θ, shape (n·k, n·k).

    g_α = [(1 − α)K + α𝟙]⁻¹ (family "field"), or (1 − α)K⁻¹ + α𝟙 (family "metric"), K = J Jᵀ.
    Defined when rank J = n·k; for rank-deficient J use ``bundle_metric`` (2.45).

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); None for ``problem.theta``.
        alpha: α ∈ [0, 1].
        family: "field" or "metric".
        rank_rtol: Relative tolerance of the rank cut of J.
        max_bytes: Memory budget for the dense (n·k, n·k) matrix.

    Returns:
        The symmetric positive definite tensor g_α, float64.

    Raises:
        TypeError: For a problem that is not a Problem or a non-numeric α.
        ValueError: For α outside [0, 1], an unknown family, bad θ, or rank J < n·k (with the
            rank, tolerance and gap).
        DenseTooLargeError: If the (n·k)² matrix exceeds ``max_bytes``.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(2, 1))
        >>> output_metric(p, None, 0.0).diagonal().tolist()          # K⁻¹ = (XXᵀ)⁻¹
        [1.0, 0.25]
    """
    where = "output_metric(problem, theta, alpha)"
    alpha, family, local = _dense_local(where, problem, theta, alpha, family, rank_rtol, max_bytes)
    m = local.left_vectors.shape[0]
    d = local.decision
    if d.rank < m:
        raise ValueError(
            f"{where}: J has rank {d.rank} < n·k = {m} (tol {d.tol:.3g}, gap {d.gap:.3g}), so "
            "(2.44) is not a metric on all of output space. Use bundle_metric(problem, theta, "
            "alpha), the metric (2.45) on ran J.")
    W = local.left_vectors
    return (W * _tensor_values(local.singular_values**2, alpha, family)) @ W.T


@dataclass(frozen=True, eq=False)
class BundleMetric(Result):
    """The bundle metric (2.45) on E = ran J at one θ.

    Attributes:
        alpha: α.
        family: "field" or "metric".
        basis: Orthonormal basis of E, shape (n·k, r), r = rank J.
        matrix: g_α as an (n·k, n·k) matrix: [(1 − α)K + αP]⁺ (family "field") or
            (1 − α)K⁺ + αP (family "metric"); zero on E^⊥.
        coordinates: g_α in the basis, shape (r, r) (diagonal: the basis diagonalises K).
        rank: Rank decision for J ({rank, tol, gap, method, decided, ...}).
    """

    alpha: float
    family: str
    basis: Tensor
    matrix: Tensor
    coordinates: Tensor
    rank: dict


def bundle_metric(problem: Problem, theta: Tensor | None, alpha: float, *, family: str = "field",
                  rank_rtol: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES
                  ) -> BundleMetric:
    """The bundle metric (2.45) on the subbundle E = ran J, for any rank of J.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); None for ``problem.theta``.
        alpha: α ∈ [0, 1].
        family: "field" or "metric".
        rank_rtol: Relative tolerance of the rank cut of J (it fixes E).
        max_bytes: Memory budget for the dense (n·k, n·k) matrix.

    Returns:
        A BundleMetric.

    Raises:
        TypeError: For a problem that is not a Problem or a non-numeric α.
        ValueError: For α outside [0, 1], an unknown family or bad θ.
        DenseTooLargeError: If the (n·k)² matrix exceeds ``max_bytes``.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 1.], [1., 1.]], dtype=torch.float64)   # rank J = 1
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(2, 1))
        >>> b = bundle_metric(p, None, 1.0)                               # α = 1: Euclidean on E
        >>> b.basis.shape, round(float(b.coordinates[0, 0]), 12)
        (torch.Size([2, 1]), 1.0)
    """
    where = "bundle_metric(problem, theta, alpha)"
    alpha, family, local = _dense_local(where, problem, theta, alpha, family, rank_rtol, max_bytes)
    E = local.left_vectors[:, local.kept]
    values = _tensor_values(local.singular_values[local.kept] ** 2, alpha, family)
    return BundleMetric(alpha=alpha, family=family, basis=E, matrix=(E * values) @ E.T,
                        coordinates=values.diag(), rank=local.decision)
