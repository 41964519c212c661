"""Information loss: inputs whose activations coincide make behavioral gradients dependent.

Split θ = (θ_≤l, θ_>l) at hidden layer l. The gradient of the outputs with respect to θ_>l depends on
an input only through its activation h_l(x), so the rows of J = [A | B] (A: θ_≤l columns, B: θ_>l
columns) have at most m_l·k distinct B-parts, m_l the number of distinct activation vectors. Hence
(spec §6.2)

    rank J ≤ min(n_rows·k, N, min(N_≤l, (n − n_dead)·k) + min(m_l·k, N_>l)),

where n_dead counts inputs whose every unit at layer l has zero derivative (all-dead ReLU patterns):
their A-rows vanish too, so dead inputs with coinciding activations have identical rows, and
n_rows = n − Σ_groups (#dead in the group − 1) counts the distinct rows left. N − rank J is the
behavior-manifold dimension only where rank J is locally constant (spec §1.2, §6.1); ranks at
nearby points are reported.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from ._checks import check_rtol
from .curvature._jacobian import gram_rank
from .linalg.tolerances import COINCIDENCE_RTOL, NEARBY_RADIUS, eps
from .problem import Problem
from .report import jsonable

__all__ = ["InfoLossReport", "LayerInfo", "hidden_layers", "information_loss"]


@dataclass(frozen=True)
class LayerInfo:
    """What hidden layer ``layer`` (1-based) keeps apart.

    Attributes:
        layer: 1-based hidden-layer index (the output layer is excluded).
        distinct_activations: m_l, the number of distinct activation vectors h_l(xᵢ).
        groups: 0-based sample indices with coinciding activations (only groups of size ≥ 2).
        dead_units: Units whose derivative is zero on every training input.
        dead_samples: Inputs with every unit of this layer at zero derivative.
        n_params_upto: N_≤l, parameters of layers 1..l.
        rank_bound: The bound on rank J implied by this layer (module docstring).
        tol: Coincidence tolerance on ‖hᵢ − hⱼ‖∞.
    """

    layer: int
    distinct_activations: int
    groups: list[list[int]]
    dead_units: list[int]
    dead_samples: list[int]
    n_params_upto: int
    rank_bound: int
    tol: float


@dataclass(frozen=True)
class InfoLossReport:
    """Per-layer coincidences and the rank bounds they imply, next to the measured rank of J.

    Attributes:
        rank_jacobian: Measured rank J.
        n_samples: n.
        layers: One LayerInfo per hidden layer.
        jacobian: The full rank decision for J (tol, gap, method, ...).
        rank_nearby: rank J at a few random points at relative distance ``NEARBY_RADIUS``.
        rank_locally_constant: All nearby ranks equal ``rank_jacobian``.
        warning: Why N − rank J may only bound the manifold dimension ("" if none).
    """

    rank_jacobian: int
    n_samples: int
    layers: list[LayerInfo]
    jacobian: dict
    rank_nearby: list[int]
    rank_locally_constant: bool
    warning: str

    def to_dict(self) -> dict:
        """JSON-ready dict (keys fixed by the API contract, plus diagnostics)."""
        return jsonable(asdict(self))


def hidden_layers(problem: Problem) -> list[tuple[int, int]]:
    """For an ``nn.Sequential`` model: (end, n_params_upto) per hidden layer l.

    ``end`` is the index of the first module of layer l + 1 (the next module with parameters);
    the hidden activation h_l is the output of modules [0, end).

    Raises:
        ValueError: If the model is not an nn.Sequential of modules.
    """
    model = problem.model
    if not isinstance(model, nn.Sequential):
        raise ValueError("information_loss(problem, theta): layer activations need an "
                         f"nn.Sequential model (as built by lossgeom.mlp), got {type(model).__name__}.")
    with_params = [j for j, m in enumerate(model) if any(True for _ in m.parameters())]
    out, upto = [], 0
    for a, b in zip(with_params[:-1], with_params[1:], strict=True):
        upto += sum(p.numel() for m in list(model)[a:b] for p in m.parameters())
        out.append((b, upto))
    return out


def _forward_layers(problem: Problem, theta: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(∂h/∂z elementwise, activation h) of each hidden layer's nonlinearity z ↦ h."""
    model, params = problem.model, problem.unflatten(theta)
    h, out = problem.inputs, []
    starts = [j for j, m in enumerate(model) if any(True for _ in m.parameters())]
    for (end, _), start in zip(hidden_layers(problem), starts, strict=False):
        sub = {k.split(".", 1)[1]: v for k, v in params.items() if k.split(".", 1)[0] == str(start)}
        z = functional_call(model[start], sub, (h,))
        act = list(model)[start + 1:end]
        if act:
            h, dh = jvp(nn.Sequential(*act), (z,), (torch.ones_like(z),))
        else:
            h, dh = z, torch.ones_like(z)
        out.append((dh, h))
    return out


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
    layers = hidden_layers(problem)
    jac, _ = gram_rank(problem, theta, rtol)
    infos = []
    with torch.no_grad():
        acts = _forward_layers(problem, theta)
    for index, ((_, upto), (dh, h)) in enumerate(zip(layers, acts, strict=True), start=1):
        h2, dh2 = h.reshape(n, -1), dh.reshape(n, -1)
        tol = COINCIDENCE_RTOL * eps(problem.dtype) * max(1.0, float(h2.abs().max()))
        groups = _groups(h2, tol)
        dead_units = torch.nonzero((dh2 == 0).all(dim=0)).flatten().tolist()
        dead_samples = torch.nonzero((dh2 == 0).all(dim=1)).flatten().tolist()
        m = len(groups)
        dead = set(dead_samples)
        n_rows = n - sum(max(0, len(dead.intersection(g)) - 1) for g in groups)
        bound = min(n_rows * k, N, min(upto, (n - len(dead)) * k) + min(m * k, N - upto))
        infos.append(LayerInfo(index, m, [g for g in groups if len(g) >= 2], dead_units, dead_samples,
                               upto, bound, tol))
    gen = torch.Generator().manual_seed(seed)
    radius = NEARBY_RADIUS * max(1.0, float(theta.abs().max()))
    nearby = []
    for _ in range(n_nearby):
        d = torch.randn(N, generator=gen, dtype=theta.dtype)
        nearby.append(gram_rank(problem, theta + radius * d / d.norm(), rtol)[0].rank)
    constant = all(r == jac.rank for r in nearby)
    warning = "" if constant else (
        f"rank J changes nearby ({jac.rank} here, {nearby} at distance {radius:.1e}): N − rank J "
        "is then only an upper bound on the behavior-manifold dimension (spec §1.2)")
    if warning:
        warnings.warn(warning, stacklevel=2)
    jd = {"rank": jac.rank, "tol": jac.tol, "gap": jac.gap, "method": jac.method,
          "decided": jac.decided}
    return InfoLossReport(jac.rank, n, infos, jd, nearby, constant, warning)
