"""Shared checks of the flows package: α, the cost normalisation, smoothness of the model.

NOTE [cost normalisation]
    A flow's speed depends on the factor in front of the cost: ∂ₛθ = −M_α ∇ₓC doubles when C does.
    The flows never guess it. Every entry point takes ``normalization``:

    * ``"problem"``: C is the Problem's loss exactly as built (mse-sum: C = Σ(x − y)², so
      ∇ₓC = 2(x − y); mse-mean divides by n·k).
    * ``"sample_mean"``: C = (1/n) Σⱼ ℓⱼ, the cost of §2.1 (2.47) and §2.7 (2.67): for mse
      ℓⱼ = ½|xⱼ − yⱼ|², so C = |x − y|²/(2n) and ∇ₓC = (x − y)/n; for the cross-entropies ℓⱼ is the
      per-sample loss; for bce the sum over the sample's k outputs.
    * a number c > 0: C = c · (the Problem's loss).

    The flow cost is C_flow = c · L_problem with the factor c resolved here; results record c.
    For mse-type costs ∇ₓC_flow = λ (x − y) with the rate λ = 2·c·scale (scale = 1 for reduction
    "sum", 1/(n·k) for "mean"); λ = 1/n for "sample_mean", the clock τ = 1 − e^{−λs} of §2.5.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn

from .._checks import check_option
from ..curvature.linearization import Route
from ..layers import Role, describe
from ..problem import Problem

NORMALIZATIONS = ("problem", "sample_mean")
SOLVERS = tuple(r.value for r in Route)
"""Routes of J⁺ (``curvature.linearization.Route``)."""
FAMILIES = ("field", "metric")

SOFTPLUS_THRESHOLD = 40.0
"""``nn.Softplus`` switches to the identity above β·z = threshold; at 40 the jump of the derivative,
e^{−40} ≈ 4e-18, is below float64 resolution, so the mollified activation is smooth in practice."""


def check_alpha(where: str, alpha) -> float:
    """α as a float in [0, 1].

    Raises:
        TypeError: If α is not a real number.
        ValueError: If α lies outside [0, 1] (or is NaN).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{where}: alpha must be a real number in [0, 1], got "
                        f"{type(alpha).__name__}.")
    a = float(alpha)
    if not (0.0 <= a <= 1.0):  # also rejects NaN
        raise ValueError(f"{where}: alpha must lie in [0, 1] (0 = standard flow, 1 = adapted flow), "
                         f"got {alpha!r}.")
    return a


def check_family(where: str, family: str) -> str:
    """``family`` if it is "field" or "metric"."""
    return check_option(where, "family", family, FAMILIES)


def nonsmooth_modules(model) -> list[str]:
    """Names (with types) of the submodules of ``model`` whose derivative is not Lipschitz.

    Read from the layer registry (``lossgeom.layers.describe``): ReLU-like activations, max
    pooling, ELU with α ≠ 1, and layers that apply such functions internally.
    """
    if not isinstance(model, nn.Module):
        return []
    bad = []
    for name, mod in model.named_modules():
        kind = describe(mod)
        if kind.role is not Role.UNKNOWN and not kind.lipschitz_derivative:
            bad.append(f"{name or 'model'!r} ({type(mod).__name__})")
    return bad


def check_smooth(where: str, problem: Problem) -> None:
    """Refuse models with non-smooth activations: the flows need Lipschitz derivatives (§2.1).

    Raises:
        ValueError: Naming the offending modules and the mollified replacement.
    """
    bad = nonsmooth_modules(problem.model)
    if bad:
        raise ValueError(
            f"{where}: the model has activations without a Lipschitz derivative: {', '.join(bad)}. "
            "Gradient flows need Lipschitz continuous derivatives (§2.1). Mollify them: "
            "lossgeom.flows.mollify(model, temperature=0.1) replaces ReLU by a softplus with that "
            "temperature, or build the net with activation='softplus'."
        )


def mollify(model: nn.Module, temperature: float = 0.1) -> nn.Module:
    """A copy of ``model`` with every ReLU replaced by a softplus of the given temperature.

    softplus_T(z) = T·log(1 + e^{z/T}) (``nn.Softplus(beta=1/T)``) is smooth with Lipschitz
    derivative and tends to ReLU as T → 0: |softplus_T − ReLU| ≤ T·log 2. The model passed in is
    not modified.

    Args:
        model: An ``nn.Module``.
        temperature: T > 0.

    Returns:
        The mollified copy (same parameters, same parameter names).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``.
        ValueError: If T is not a finite positive number.

    Example:
        >>> import torch
        >>> smooth = mollify(torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.ReLU()), 0.01)
        >>> type(smooth[1]).__name__, smooth[1].beta
        ('Softplus', 100.0)
    """
    where = "mollify(model, temperature)"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module, got {type(model).__name__}.")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{where}: temperature must be a finite number > 0, got {temperature!r}.")
    clone = copy.deepcopy(model)

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if type(child) is nn.ReLU:
                setattr(parent, name, nn.Softplus(beta=1.0 / float(temperature),
                                                  threshold=SOFTPLUS_THRESHOLD))
            else:
                swap(child)

    if type(clone) is nn.ReLU:
        return nn.Softplus(beta=1.0 / float(temperature), threshold=SOFTPLUS_THRESHOLD)
    swap(clone)
    return clone


def cost_factor(where: str, problem: Problem, normalization: str | float) -> float:
    """The factor c of C_flow = c · L_problem (NOTE [cost normalisation]).

    Raises:
        TypeError: For a normalization that is neither a string nor a number.
        ValueError: For an unknown name, a non-positive or non-finite number, or "sample_mean"
            with a custom loss (its per-sample form is unknown).
    """
    lf = problem.loss_fn
    n, k = problem.n_samples, problem.n_outputs
    if isinstance(normalization, str):
        if normalization == "problem":
            return 1.0
        if normalization == "sample_mean":
            if not lf.is_builtin:
                raise ValueError(f"{where}: normalization='sample_mean' needs a built-in loss; for "
                                 "a custom loss pass the factor c of C = c·L as a number.")
            if lf.name == "mse":  # Σ(x−y)²·scale → |x−y|²/(2n)
                return 1.0 / (2.0 * n * lf.scale(n, k))
            return 1.0 / (n * lf.scale(n, k))  # Σⱼ ℓⱼ·scale → (1/n) Σⱼ ℓⱼ
        raise ValueError(f"{where}: unknown normalization {normalization!r}. Expected one of: "
                         f"{', '.join(map(repr, NORMALIZATIONS))}, or a number c > 0 (C = c·L).")
    if isinstance(normalization, bool) or not isinstance(normalization, numbers.Real):
        raise TypeError(f"{where}: normalization must be 'problem', 'sample_mean' or a number, got "
                        f"{type(normalization).__name__}.")
    c = float(normalization)
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"{where}: a numeric normalization must be a finite factor c > 0, got "
                         f"{normalization!r}.")
    return c


def cost_normalization(problem: Problem, normalization: str | float = "problem"
                       ) -> tuple[float, float | None]:
    """The factor c of the flow cost C = c·L and, for mse, the output rate λ (∇ₓC = λ(x − y)).

    See NOTE [cost normalisation]. λ sets the natural clock: the adapted flow with full-rank J has
    x(s) = y + e^{−λs}(x₀ − y), and τ = 1 − e^{−λs} is the interpolation time of §2.5.

    Args:
        problem: The model, data and loss.
        normalization: "problem", "sample_mean" or a factor c > 0.

    Returns:
        (c, λ), with λ None for losses other than mse.

    Raises:
        TypeError: For a normalization that is neither a string nor a number.
        ValueError: For an unknown name, a factor that is not finite and positive, or
            "sample_mean" with a custom loss.

    Example:
        >>> import torch, lossgeom as lg
        >>> p = lg.Problem(torch.nn.Linear(2, 1).double(), torch.zeros(4, 2), torch.zeros(4, 1))
        >>> cost_normalization(p, "sample_mean")      # C = |x − y|²/(2n): c = 1/8, λ = 1/n
        (0.125, 0.25)
    """
    c = cost_factor("cost_normalization(problem, normalization)", problem, normalization)
    return c, output_rate(problem, c)


def output_rate(problem: Problem, factor: float) -> float | None:
    """λ with ∇ₓC_flow = λ (x − y) for mse (2·c·scale); None for any other loss."""
    lf = problem.loss_fn
    if not (lf.is_builtin and lf.name == "mse"):
        return None
    return 2.0 * factor * lf.scale(problem.n_samples, problem.n_outputs)


def flow_output_grad(problem: Problem, x: torch.Tensor, factor: float) -> torch.Tensor:
    """∇ₓC_flow = c·∇ₓL at outputs x (n, k), flattened to (n·k,)."""
    return (factor * problem.loss_fn.output_grad(x, problem.targets)).reshape(-1)
