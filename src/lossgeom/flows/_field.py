"""The interpolating family of gradient-flow fields V_α (§2.2–§2.3) and its output velocity.

Spec notation: D = J = ∂x/∂θ (n·k, N), K = J Jᵀ, P = J J⁺ (projector onto ran J), ∇ₓC the output
gradient of the flow cost (NOTE [cost normalisation] in ``_common``).

* ``family="field"`` (default, §2.3): V_α = −[(1 − α)Jᵀ + α J⁺] ∇ₓC = (1 − α)V₀ + α V₁.
* ``family="metric"`` (§2.3, second family): V^met_α = −Jᵀ [(1 − α)𝟙 + α K]⁺ ∇ₓC.

Both give the standard field V₀ = −∇_θC (2.28) at α = 0 and the adapted field V₁ = −J⁺∇ₓC (2.29)
at α = 1, and share their zero set {P∇ₓC = 0} = {∇_θC = 0}. The induced output velocity is
∂ₛx = J V_α = −[(1 − α)K + αP]∇ₓC (2.39)–(2.42).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.func import jvp

from .._checks import check_option
from ..curvature.linearization import LSMR_TOL, Linearization, linearize
from ..problem import Problem
from ..results import Result
from ._common import SOLVERS, check_alpha, check_family, check_smooth, cost_factor, flow_output_grad


def apply_flow_matrix(local: Linearization, u: Tensor, alpha: float, family: str) -> Tensor:
    """M_α u (n·k,) → (N,), with V_α = −M_α ∇ₓC.

    M_α = (1 − α)Jᵀ + α J⁺ (family "field") or Jᵀ[(1 − α)𝟙 + α K]⁺ (family "metric").
    """
    if family == "metric":
        return local.metric_param(u, alpha)
    if alpha == 0.0:
        return local.jt(u)
    if alpha == 1.0:
        return local.pinv(u)
    return (1.0 - alpha) * local.jt(u) + alpha * local.pinv(u)


def _prepare(where: str, problem: Problem, theta, alpha, family, normalization, solver,
             rank_rtol, lsmr_tol) -> tuple[Tensor, float, str, float, Linearization, Tensor]:
    """Validate the common arguments; linearise at θ; return (θ, α, family, c, local, ∇ₓC).

    Raises:
        TypeError: For a problem that is not a Problem, or a non-numeric α or normalization.
        ValueError: For any invalid argument (see ``vector_field``).
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"{where}: problem must be a lossgeom.Problem, got {type(problem).__name__}.")
    alpha = check_alpha(where, alpha)
    family = check_family(where, family)
    check_smooth(where, problem)
    c = cost_factor(where, problem, normalization)
    check_option(where, "solver", solver, SOLVERS)
    theta = problem.check_theta(where, theta)
    local = linearize(problem, theta, route=solver, rtol=rank_rtol, lsmr_tol=lsmr_tol,
                      where=where, validate=False)
    return theta, alpha, family, c, local, flow_output_grad(problem, local.outputs, c)


def vector_field(
    problem: Problem,
    theta: Tensor | None,
    alpha: float = 0.0,
    *,
    family: str = "field",
    normalization: str | float = "problem",
    solver: str = "auto",
    rank_rtol: float | None = None,
    lsmr_tol: float = LSMR_TOL,
) -> Tensor:
    """The flow field V_α(θ) of the interpolating family, shape (N,).

    α = 0: the standard field −∇_θC; α = 1: the adapted field −J⁺∇ₓC, a minimum-norm solve (never
    an explicit pseudo-inverse, NOTE [pseudo-inverse routes]); in between the family of §2.3.

    Args:
        problem: The model, data and loss; the model's activations must have Lipschitz
            derivatives (ReLU is refused: use ``mollify`` or softplus).
        theta: Flat parameters (N,); None for ``problem.theta``.
        alpha: α ∈ [0, 1].
        family: "field" (V_α, linear in the field) or "metric" (V^met_α, linear in the output
            metric tensor); they agree at α ∈ {0, 1}.
        normalization: The cost C of the flow: "problem", "sample_mean" (C = |x − y|²/(2n) for
            mse, (2.47)) or a factor c > 0 (C = c·L); NOTE [cost normalisation].
        solver: "auto", "gram", "svd" or "lsmr" (route of J⁺; "auto": Gram while n·k ≤
            ``GRAM_MAX_OUTPUTS``).
        rank_rtol: Relative tolerance of the rank cut of J (default max(n·k, N)·eps).
        lsmr_tol: Tolerance of LSMR on the "lsmr" route.

    Returns:
        V_α(θ), float64, shape (N,).

    Raises:
        TypeError: For a problem that is not a Problem, or a non-numeric α.
        ValueError: For α outside [0, 1], unknown options, θ of the wrong length or non-finite,
            non-smooth activations, non-finite outputs or Jacobian, or LSMR not converging.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.tensor([[1.], [2.]]))
        >>> theta = torch.zeros(2, dtype=torch.float64)       # x = Xθ = 0, ∇ₓC = 2(x − y)
        >>> vector_field(p, theta, 0.0).tolist()              # −Xᵀ∇ₓC
        [2.0, 8.0]
        >>> vector_field(p, theta, 1.0).tolist()              # −X⁻¹∇ₓC
        [2.0, 2.0]
    """
    where = "vector_field(problem, theta, alpha)"
    _, alpha, family, _, local, g = _prepare(where, problem, theta, alpha, family, normalization,
                                             solver, rank_rtol, lsmr_tol)
    return -apply_flow_matrix(local, g, alpha, family)


@dataclass(frozen=True, eq=False)
class OutputVelocity(Result):
    """The output-space picture of the flow at one θ, every array of shape (n, k).

    Attributes:
        alpha: α of the field.
        family: "field" or "metric".
        velocity: ∂ₛx = J V_α, by forward-mode AD (a JVP) of the parameter field.
        predicted: The closed form −[(1 − α)K + αP]∇ₓC of (2.39)–(2.42) (family "field"), or
            −K[(1 − α)𝟙 + αK]⁺∇ₓC (family "metric"), from K and P.
        standard: −K∇ₓC, the standard output flow (2.17) (α = 0).
        adapted: −P∇ₓC, the constrained Euclidean flow (2.27) (α = 1).
        projector_residual: ∇ₓC − P∇ₓC = P^⊥∇ₓC, the part of the output gradient outside ran J
            that no member of the family can follow (zero when rank J = n·k).
        output_grad: ∇ₓC of the flow cost.
        rank: Rank decision for J ({rank, tol, gap, method, decided, ...}); None on LSMR.
        cost_factor: c of C = c·L.
    """

    alpha: float
    family: str
    velocity: Tensor
    predicted: Tensor
    standard: Tensor
    adapted: Tensor
    projector_residual: Tensor
    output_grad: Tensor
    rank: dict | None
    cost_factor: float


def output_velocity(
    problem: Problem,
    theta: Tensor | None,
    alpha: float = 1.0,
    *,
    family: str = "field",
    normalization: str | float = "problem",
    solver: str = "auto",
    rank_rtol: float | None = None,
    lsmr_tol: float = LSMR_TOL,
) -> OutputVelocity:
    """Output velocity J V_α and its closed form, with K = J Jᵀ and P acting on ∇ₓC side by side.

    Args:
        problem: The model, data and loss (smooth activations).
        theta: Flat parameters (N,); None for ``problem.theta``.
        alpha: α ∈ [0, 1].
        family: "field" or "metric".
        normalization: Cost normalisation (see ``vector_field``).
        solver: Route of J⁺ (see ``vector_field``).
        rank_rtol: Relative tolerance of the rank cut of J.
        lsmr_tol: Tolerance of LSMR on the "lsmr" route.

    Returns:
        An OutputVelocity.

    Raises:
        TypeError: As ``vector_field``.
        ValueError: As ``vector_field``.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.tensor([[1.], [2.]]))
        >>> ov = output_velocity(p, torch.zeros(2, dtype=torch.float64), 1.0)
        >>> ov.velocity.flatten().tolist(), ov.standard.flatten().tolist()   # −∇ₓC, −XXᵀ∇ₓC
        ([2.0, 4.0], [2.0, 16.0])
    """
    where = "output_velocity(problem, theta, alpha)"
    theta, alpha, family, c, local, g = _prepare(where, problem, theta, alpha, family,
                                                 normalization, solver, rank_rtol, lsmr_tol)
    V = -apply_flow_matrix(local, g, alpha, family)
    velocity = jvp(problem.output_fn, (theta,), (V,))[1].reshape(-1)
    Kg, Pg = local.gram(g), local.project(g)
    if family == "field":
        predicted = -((1.0 - alpha) * Kg + alpha * Pg)
    elif local.route == "lsmr":
        predicted = -local.jv(local.metric_param(g, alpha))
    else:
        predicted = -local.gram(local.metric_solve(g, alpha))
    shape = (problem.n_samples, problem.n_outputs)
    return OutputVelocity(
        alpha=alpha, family=family, velocity=velocity.reshape(shape),
        predicted=predicted.reshape(shape), standard=(-Kg).reshape(shape),
        adapted=(-Pg).reshape(shape), projector_residual=(g - Pg).reshape(shape),
        output_grad=g.reshape(shape), rank=None if local.route == "lsmr" else local.decision, cost_factor=c,
    )
