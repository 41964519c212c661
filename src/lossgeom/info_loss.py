"""Information loss: inputs whose activations coincide make behavioral gradients dependent.

Split θ = (θ_≤l, θ_>l) at hidden layer l. The gradient of the outputs with respect to θ_>l depends on
an input only through its activation h_l(x), so the rows of J = [A | B] (A: θ_≤l columns, B: θ_>l
columns) have at most m_l·k distinct B-parts, m_l the number of distinct activation vectors. Hence
(§6.2)

    rank J ≤ min(n_rows·k, N, min(N_≤l, (n − n_dead)·k) + min(m_l·k, N_>l)),

where n_dead counts inputs whose every unit at layer l has zero derivative (all-dead ReLU patterns):
their A-rows vanish too, so dead inputs with coinciding activations have identical rows, and
n_rows = n − Σ_groups (#dead in the group − 1) counts the distinct rows left. N − rank J is the
behavior-manifold dimension only where rank J is locally constant (§1.2, §6.1); ranks at
nearby points are reported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_rtol
from .curvature.linearization import linearize
from .layers import Role, Stage, describe, follower_derivative, forward_stages, sequential_stages
from .problem import Problem
from .results import RankDecision, Result
from .tolerances import COINCIDENCE_RTOL, NEARBY_RADIUS, eps

__all__ = ["InfoLossReport", "LayerInfo", "information_loss"]


@dataclass(frozen=True)
class LayerInfo(Result):
    """What hidden layer ``layer`` (1-based) keeps apart.

    Attributes:
        layer: 1-based hidden-layer index (the output layer is excluded).
        distinct_activations: m_l, the number of distinct activation vectors h_l(xᵢ).
        groups: 0-based sample indices with coinciding activations (only groups of size ≥ 2).
        dead_units: Units whose derivative is zero on every training input.
        dead_samples: Inputs with every unit of this layer at zero derivative.
        n_params_upto: N_≤l, parameters of layers 1..l.
        rank_bound: The bound on rank J implied by this layer (module docstring), or None where
            the bound does not apply (``note`` says why).
        tol: Coincidence tolerance on ‖hᵢ − hⱼ‖∞.
        note: What of §6.2 does not apply at this layer ("" when everything does).
    """

    layer: int
    distinct_activations: int
    groups: list[list[int]]
    dead_units: list[int]
    dead_samples: list[int]
    n_params_upto: int
    rank_bound: int | None
    tol: float
    note: str = ""


@dataclass(frozen=True)
class InfoLossReport(Result):
    """Per-layer coincidences and the rank bounds they imply, next to the measured rank of J.

    Attributes:
        rank_jacobian: Measured rank J.
        n_samples: n.
        layers: One LayerInfo per hidden layer.
        jacobian: The rank decision for J (``RankDecision``: tol, gap, method, ...).
        rank_nearby: rank J at a few random points at relative distance ``NEARBY_RADIUS``.
        rank_locally_constant: All nearby ranks equal ``rank_jacobian``.
        warning: Why N − rank J may only bound the manifold dimension ("" if none).
    """

    rank_jacobian: int
    n_samples: int
    layers: list[LayerInfo]
    jacobian: RankDecision
    rank_nearby: list[int]
    rank_locally_constant: bool
    warning: str


def _hidden_stages(problem: Problem, where: str) -> list[Stage]:
    """The stages of the model; all but the last are hidden layers.

    Raises:
        ValueError: If the model is not an nn.Sequential.
    """
    try:
        return sequential_stages(problem.model)
    except TypeError:
        raise ValueError(f"{where}: layer activations need an nn.Sequential model (as built by "
                         f"lossgeom.mlp), got {type(problem.model).__name__}; without a layer "
                         "split the §6.2 bound does not apply.") from None


def _groups(h: Tensor, tol: float) -> list[list[int]]:
    n = h.shape[0]
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    dist = torch.cdist(h, h, p=float("inf")) if h.shape[1] else torch.zeros(n, n)
    for i, j in torch.nonzero(dist <= tol).tolist():
        if i < j:
            parent[find(i)] = find(j)
    classes: dict[int, list[int]] = {}
    for i in range(n):
        classes.setdefault(find(i), []).append(i)
    return sorted(classes.values())


def information_loss(problem: Problem, theta: Tensor | None = None, rtol: float | None = None,
                     *, n_nearby: int = 3, seed: int = 0) -> InfoLossReport:
    """Per hidden layer: coinciding activations, dead units and the rank bound they imply.

    Args:
        problem: An ``nn.Sequential`` model (e.g. ``lossgeom.mlp``) with its data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        rtol: Relative tolerance of the rank of J (default max(n·k, N)·eps).
        n_nearby: Random nearby points at which rank J is re-measured.
        seed: Seed of those perturbations.

    Returns:
        An InfoLossReport.

    Raises:
        ValueError: For a model that is not an nn.Sequential, invalid θ or rtol.

    Example:
        >>> import torch, lossgeom as lg
        >>> m = lg.mlp([1, 1, 1], activation="relu")
        >>> X = torch.tensor([[-1.0], [-2.0], [3.0]], dtype=torch.float64)
        >>> with torch.no_grad():
        ...     _ = m[0].weight.fill_(1.0), m[0].bias.fill_(0.0)
        >>> r = lg.information_loss(lg.Problem(m, X, torch.zeros(3, 1)))
        >>> r.layers[0].groups, r.layers[0].dead_samples, r.rank_jacobian
        ([[0, 1]], [0, 1], 2)
    """
    where = "information_loss(problem, theta)"
    check_rtol(where, rtol)
    theta = problem.check_theta(where, theta)
    n, k, N = problem.n_samples, problem.n_outputs, problem.n_params
    stages = _hidden_stages(problem, where)
    coupled = [type(m).__name__ for m in problem.model.modules()
               if describe(m).role is not Role.UNKNOWN and not describe(m).per_sample]
    jac = linearize(problem, theta, rtol=rtol, where=where, validate=False).decision
    infos = []
    with torch.no_grad():
        traces = forward_stages(stages, {**problem.constants, **problem.unflatten(theta)},
                                problem.inputs)
    upto = 0
    for stage, trace in zip(stages[:-1], traces, strict=False):
        upto += sum(size for name, size in zip(problem.param_names, problem.param_numels,
                                               strict=True) if name.startswith(stage.name + "."))
        index, h2 = stage.index, trace.post.reshape(n, -1)
        elementwise = all(describe(m).elementwise for m in stage.followers)
        dh2 = (follower_derivative(stage, trace.pre).reshape(n, -1) if elementwise
               else torch.ones_like(h2))
        tol = COINCIDENCE_RTOL * eps(problem.dtype) * max(1.0, float(h2.abs().max()))
        groups = _groups(h2, tol)
        dead_units = torch.nonzero((dh2 == 0).all(dim=0)).flatten().tolist()
        dead_samples = torch.nonzero((dh2 == 0).all(dim=1)).flatten().tolist()
        m = len(groups)
        dead = set(dead_samples)
        n_rows = n - sum(max(0, len(dead.intersection(g)) - 1) for g in groups)
        bound: int | None = min(n_rows * k, N, min(upto, (n - len(dead)) * k)
                                + min(m * k, N - upto))
        note = "" if elementwise else (
            f"the modules after layer {index} ({', '.join(type(f).__name__ for f in stage.followers)}) "
            "are not elementwise: dead units are not defined, only coinciding activations count")
        if coupled:
            bound, note = None, (f"{', '.join(coupled)} couples the samples (each output depends on "
                                 "the whole batch), so the split of §6.2 does not bound rank J")
        infos.append(LayerInfo(index, m, [g for g in groups if len(g) >= 2], dead_units, dead_samples,
                               upto, bound, tol, note))
    gen = torch.Generator().manual_seed(seed)
    radius = NEARBY_RADIUS * max(1.0, float(theta.abs().max()))
    nearby = []
    for _ in range(n_nearby):
        d = torch.randn(N, generator=gen, dtype=theta.dtype)
        nearby.append(linearize(problem, theta + radius * d / d.norm(), rtol=rtol,
                                where=where, validate=False).rank)
    constant = all(r == jac.rank for r in nearby)
    warning = "" if constant else (
        f"rank J changes nearby ({jac.rank} here, {nearby} at distance {radius:.1e}): N − rank J "
        "is then only an upper bound on the behavior-manifold dimension (§1.2)")
    if warning:
        warnings.warn(warning, stacklevel=2)
    return InfoLossReport(jac.rank, n, infos, jac, nearby, constant, warning)
