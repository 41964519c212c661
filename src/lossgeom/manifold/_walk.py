"""Walking on the solution manifold {θ : x(θ) = x(θ₀)}.

§1.2: where rank J ≡ ρ near θ₀, the level set of the behavior x(θ) through θ₀ is a manifold of
dimension N − ρ with tangent space ker J (generically N − n·k). At an exact fit it is the
global-minimum manifold M of §3.1 (its dimension: ``lossgeom.loci.solution_manifold``).

The walk moves along ker J and pulls back onto the level set:

1. tangent step: d ∈ ker J(θ) (the previous direction projected onto the new kernel, or a random
   one), θ' = θ + h d/‖d‖;
2. retraction: θ' ← θ' − J⁺ (x(θ') − x(θ₀)) with the J of the base point θ (a chord method: the
   corrections are normal to the level set at θ, and one Jacobian serves the whole step); when a
   correction fails to halve the output drift ‖x(θ') − x(θ₀)‖, J is recomputed at θ' (a
   Gauss–Newton step). The loop ends at the round-off floor n·k·eps·max(1, ‖x(θ₀)‖);
3. the step is accepted when the drift is at most ``drift_tol``; otherwise h is halved and the step
   retried; after ``max_halvings`` failures the walk stops and keeps what it has.

J⁺ and the projector onto ker J come from the ``Linearization`` of each point (NOTE
[linearization routes] in ``curvature.linearization``): "svd" uses a thin SVD of J, J⁺r = V S⁻¹ Uᵀ r
and v ↦ v − V Vᵀ v; "gram" uses K = J Jᵀ and the Jacobian operator, with the directions that K's
squared conditioning would blur re-measured by an SVD of Jᵀ U₀, never forming J.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_option, check_rtol, generator
from ..analysis import DENSE_MAX_N, analyze, perfect_fit
from ..curvature.linearization import Linearization, Route, linearize
from ..problem import Problem
from ..results import RankDecision, Result, internal
from ..tolerances import PERFECT_FIT_RTOL, default_rank_rtol

__all__ = ["WALK_ROUTES", "ManifoldWalk", "WalkStep", "tangent_basis", "walk"]


WALK_ROUTES = {"auto": Route.AUTO, "svd": Route.SVD, "gram": Route.GRAM,
               "dense": Route.SVD, "operator": Route.GRAM}
"""Routes of the walk's J⁺ and kernel projector ("dense" and "operator" are the older names of
"svd" and "gram"). "auto" takes svd while N ≤ ``analysis.DENSE_MAX_N`` and J fits ``max_bytes``
(at N ≈ 1e5, n·k = 64 the QR of Jᵀ costs more than the Gram products), gram beyond."""


def _linearize(problem: Problem, theta: Tensor, route: Route, rank_rtol,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Linearization:
    return linearize(problem, theta, route=route, rtol=rank_rtol, max_bytes=max_bytes,
                     where="walk(problem, theta)", validate=False)


def tangent_basis(problem: Problem, theta: Tensor | None = None, *,
                  rtol: float | None = None) -> tuple[Tensor, RankDecision]:
    """Orthonormal basis of ker J(θ), the tangent space of the behavior level set (§1.2).

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        rtol: Relative rank tolerance (default max(n·k, N)·eps).

    Returns:
        (Z, decision): Z of shape (N, N − rank J) with orthonormal columns and ‖J Z‖ ≤ tol, and
        the rank decision of J.

    Raises:
        ValueError: For invalid θ or rtol.
        DenseTooLargeError: If J does not fit the default memory budget.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=True).double(), X, torch.zeros(2, 1))
        >>> Z, d = tangent_basis(p)
        >>> tuple(Z.shape), d.rank                         # N = 3, n·k = 2
        ((3, 1), 2)
    """
    where = "tangent_basis(problem, theta)"
    lin = linearize(problem, theta, route=Route.SVD, rtol=rtol, where=where)
    return lin.null_space(), lin.decision


@dataclass(frozen=True)
class WalkStep(Result):
    """One accepted point of a walk (step 0 is the start).

    Attributes:
        step: Index (0 = θ₀).
        step_size: Tangent step length h used (after halvings).
        drift: ‖x(θ) − x(θ₀)‖₂ over all n·k outputs.
        drift_max: max |x(θ) − x(θ₀)|.
        loss: L(θ).
        loss_change: L(θ) − L(θ₀).
        rank: rank J(θ).
        rank_tol: Its tolerance.
        rank_gap: Its gap.
        rank_decided: Its ``decided`` flag.
        distance: ‖θ − θ₀‖.
        arc_length: Σ ‖θ_t − θ_{t−1}‖ so far.
        corrections: Corrections used by the retraction.
        jacobian_refreshes: Times the retraction recomputed J (0: the base point's J sufficed).
        halvings: Times h was halved for this step.
        inertia: Hessian [positive, negative, zero] at this step, or None (not measured).
        inertia_tol: Its eigenvalue tolerance (None if not measured).
        inertia_gap: Its gap (None if not measured).
    """

    step: int
    step_size: float
    drift: float
    drift_max: float
    loss: float
    loss_change: float
    rank: int
    rank_tol: float
    rank_gap: float
    rank_decided: bool
    distance: float
    arc_length: float
    corrections: int
    jacobian_refreshes: int
    halvings: int
    inertia: list | None = None
    inertia_tol: float | None = None
    inertia_gap: float | None = None


@dataclass(frozen=True)
class ManifoldWalk(Result):
    """A walk on the level set {x(θ) = x(θ₀)}; tensors are left out of ``to_dict``.

    Attributes:
        n_params: N.
        n_outputs_total: n·k.
        level_set: "solution manifold" (θ₀ is a perfect fit: the walk stays on M) or
            "behavior level set" (θ₀ is not a fit: the walk keeps the outputs x(θ₀)).
        perfect_fit: The perfect-fit test at θ₀ {max_residual, tol, holds}.
        route: "dense" or "operator".
        drift_tol: Largest output drift ‖x − x(θ₀)‖₂ a step may end with.
        initial_rank: rank J(θ₀).
        manifold_dimension: N − rank J(θ₀).
        steps: The accepted points, step 0 first.
        completed: All requested steps were taken.
        stopped_reason: Why the walk stopped early ("" when completed).
        rank_constant: rank J stayed at its initial value.
        max_drift: Largest drift over the walk.
        max_loss_change: Largest |L − L(θ₀)| over the walk.
        theta0: Start (N,).
        theta: Last accepted point (N,).
        path: Every accepted point (T+1, N) when ``keep_path``, else None.
    """

    n_params: int
    n_outputs_total: int
    level_set: str
    perfect_fit: dict
    route: str
    drift_tol: float
    initial_rank: int
    manifold_dimension: int
    steps: tuple[WalkStep, ...]
    completed: bool
    stopped_reason: str
    rank_constant: bool
    max_drift: float
    max_loss_change: float
    theta0: Tensor = internal()
    theta: Tensor = internal()
    path: Tensor | None = internal(default=None)


def _retract(problem: Problem, theta: Tensor, x0: Tensor, lin: Linearization,
             route: Route, rank_rtol, max_corrections: int, floor: float
             ) -> tuple[Tensor, float, int, int]:
    """Corrections θ ← θ − J⁺(x(θ) − x₀) toward the level set; returns (θ, drift, used, refreshes).

    J is the one of the step's base point (a chord method: one Jacobian per step) until a
    correction fails to halve the drift; then J is recomputed once at the current iterate
    (a Gauss–Newton step). The loop ends at the round-off ``floor``, after a second stall, or
    after ``max_corrections``.
    """
    def residual(th: Tensor) -> Tensor:
        return problem.output_fn(th).detach().reshape(-1).to(torch.float64) - x0

    res = residual(theta)
    drift, used, refreshes, refreshed = float(torch.linalg.norm(res)), 0, 0, False
    while used < max_corrections and math.isfinite(drift) and drift > floor:
        cand = theta - lin.pinv(res).to(theta.dtype)
        cand_res = residual(cand)
        new = float(torch.linalg.norm(cand_res))
        used += 1
        if new < drift:
            theta, res, ratio, drift = cand, cand_res, new / drift, new
            if ratio <= 0.5:
                refreshed = False
                continue
        if refreshed:
            break
        lin, refreshed, refreshes = _linearize(problem, theta, route, rank_rtol), True, refreshes + 1
    return theta, drift, used, refreshes


def walk(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    steps: int = 50,
    step_size: float = 0.05,
    rng: torch.Generator | int | None = 0,
    inertia_every: int = 10,
    rtol: float | None = None,
    rank_rtol: float | None = None,
    drift_tol: float | None = None,
    max_corrections: int = 30,
    max_halvings: int = 4,
    keep_path: bool = False,
    route: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> ManifoldWalk:
    """Walk along the level set {x(θ) = x(θ₀)} by tangent steps and Gauss–Newton retractions.

    At an exact fit the level set is the global-minimum manifold M and L stays at its minimum; at
    any other θ₀ the walk keeps the behavior x(θ₀), hence the loss L(θ₀), fixed (documented in
    ``level_set``). See the module docstring for the algorithm and routes.

    Args:
        problem: The model, data and loss.
        theta: Start θ₀ (N,); default ``problem.theta``.
        steps: Number of accepted steps to take.
        step_size: Tangent step length h.
        rng: Seed or generator of the initial direction (and of restarts).
        inertia_every: Measure the Hessian inertia (``analyze``) every this many steps and at the
            last one; 0 to skip.
        rtol: Relative inertia tolerance of ``analyze``.
        rank_rtol: Relative rank tolerance of J; default max(n·k, N)·eps.
        drift_tol: Largest accepted ‖x(θ) − x(θ₀)‖₂; default PERFECT_FIT_RTOL·max(1, max|x(θ₀)|).
        max_corrections: Corrections per retraction attempt (chord steps are cheap: one forward
            pass and one application of J⁺ each).
        max_halvings: Step-size halvings before the walk stops.
        keep_path: Keep every accepted θ in ``path`` (T+1, N).
        route: "auto", "svd" or "gram" ("dense" and "operator" are accepted aliases; see
            ``WALK_ROUTES``).
        max_bytes: Memory budget of the dense J.
        progress: Called as progress(done, steps) after each accepted step.

    Returns:
        A ManifoldWalk (also when it stops early: ``completed`` is False and ``stopped_reason``
        gives the residual).

    Raises:
        ValueError: For invalid θ or options, or ker J = {0} at θ₀ (nothing to walk along).

    Example:
        >>> import torch, lossgeom as lg
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = (torch.randn(4, s, generator=g, dtype=torch.float64) for s in (3, 1))
        >>> p = lg.Problem(lg.mlp([3, 8, 1], generator=g), X, Y)
        >>> w = walk(p, lg.fit_last_layer(p), steps=5, inertia_every=0)
        >>> w.completed, w.max_drift < 1e-8, w.rank_constant
        (True, True, True)
    """
    where = "walk(problem, theta)"
    check_rtol(where, rtol)
    check_rtol(where, rank_rtol, "rank_rtol")
    route_ = WALK_ROUTES[check_option(where, "route", route, WALK_ROUTES)]
    for name, value, low in (("steps", steps, 0), ("inertia_every", inertia_every, 0),
                             ("max_corrections", max_corrections, 1),
                             ("max_halvings", max_halvings, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{where}: {name} must be an int >= {low}, got {value!r}.")
    if not (isinstance(step_size, int | float) and math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"{where}: step_size must be a finite number > 0, got {step_size!r}.")
    if drift_tol is not None and not drift_tol > 0:
        raise ValueError(f"{where}: drift_tol must be > 0, got {drift_tol!r}.")
    theta0 = problem.check_theta(where, theta)
    gen = generator(where, rng)
    N, nk = problem.n_params, problem.n_samples * problem.n_outputs
    if route_ is Route.AUTO:
        dense_ok = N <= DENSE_MAX_N and 8 * nk * N <= max_bytes
        route_ = Route.SVD if dense_ok else Route.GRAM

    x0_2d = problem.outputs(theta0)
    x0 = x0_2d.reshape(-1).to(torch.float64)
    fit = perfect_fit(problem, x0_2d)
    tol = drift_tol if drift_tol is not None else PERFECT_FIT_RTOL * max(1.0, float(x0.abs().max()))
    L0 = float(problem.loss(theta0))
    floor = default_rank_rtol((nk,), problem.dtype) * max(1.0, float(torch.linalg.norm(x0)))
    lin = _linearize(problem, theta0, route_, rank_rtol, max_bytes)
    if lin.rank >= N:
        raise ValueError(f"{where}: ker J = {{0}} at θ₀ (rank J = N = {N}): the level set is a "
                         "single point near θ₀, there is nothing to walk along. Use a wider "
                         "network or fewer samples.")

    def inertia_at(th: Tensor) -> tuple[list, float, float | None]:
        h = analyze(problem, th, rtol=rtol, max_bytes=max_bytes).hessian
        return h.inertia.as_list(), h.tol, h.gap

    def record(i: int, th: Tensor, lin_: Linearization, h: float, arc: float, used: int,
               refreshes: int, halved: int, measure: bool) -> WalkStep:
        x = problem.output_fn(th).detach().reshape(-1).to(torch.float64)
        loss = float(problem.loss_at(th).detach())
        inert = inertia_at(th) if measure else (None, None, None)
        return WalkStep(i, h, float(torch.linalg.norm(x - x0)), float((x - x0).abs().max()),
                        loss, loss - L0, lin_.rank, lin_.decision.tol, lin_.decision.gap,
                        lin_.decision.decided, float(torch.linalg.norm(th - theta0)), arc, used,
                        refreshes, halved, *inert)

    records = [record(0, theta0, lin, 0.0, 0.0, 0, 0, 0, inertia_every > 0)]
    path = [theta0.clone()] if keep_path else None
    current, arc, stopped = theta0.clone(), 0.0, ""
    direction = _fresh_direction(lin, N, gen, theta0)
    for i in range(1, steps + 1):
        moved = lin.kernel_project(direction.to(torch.float64))
        if float(torch.linalg.norm(moved)) < 0.5 * float(torch.linalg.norm(direction)):
            moved = lin.kernel_project(_gaussian(N, gen, theta0))
        direction = (moved / torch.linalg.norm(moved)).to(theta0.dtype)
        h, halved = float(step_size), 0
        while True:
            cand, drift, used, refreshes = _retract(problem, current + h * direction, x0, lin,
                                                    route_, rank_rtol, max_corrections, floor)
            if drift <= tol or halved == max_halvings:
                break
            h, halved = h / 2, halved + 1
        if drift > tol:
            stopped = (f"retraction did not converge at step {i}: ‖x − x(θ₀)‖ = {drift:.3g} > "
                       f"drift_tol = {tol:.3g} after {used} corrections and {max_halvings} "
                       f"halvings (last step size {h:.3g}); the walk so far is kept")
            break
        arc += float(torch.linalg.norm(cand - current))
        current = cand
        lin = _linearize(problem, current, route_, rank_rtol, max_bytes)
        measure = inertia_every > 0 and (i % inertia_every == 0 or i == steps)
        records.append(record(i, current, lin, h, arc, used, refreshes, halved, measure))
        if path is not None:
            path.append(current.clone())
        if progress is not None:
            progress(i, steps)
    return ManifoldWalk(
        n_params=N, n_outputs_total=nk,
        level_set="solution manifold" if fit.holds else "behavior level set",
        perfect_fit=fit, route=route_.value, drift_tol=tol, initial_rank=records[0].rank,
        manifold_dimension=N - records[0].rank, steps=tuple(records), completed=not stopped,
        stopped_reason=stopped, rank_constant=all(r.rank == records[0].rank for r in records),
        max_drift=max(r.drift for r in records),
        max_loss_change=max(abs(r.loss_change) for r in records), theta0=theta0, theta=current,
        path=torch.stack(path) if path is not None else None)


def _gaussian(N: int, gen: torch.Generator | None, like: Tensor) -> Tensor:
    """A standard Gaussian vector (N,), float64, on ``like``'s device (drawn on the CPU)."""
    return torch.randn(N, generator=gen, dtype=torch.float64).to(like.device)


def _fresh_direction(lin: Linearization, N: int, gen, like: Tensor) -> Tensor:
    v = lin.kernel_project(_gaussian(N, gen, like))
    return (v / torch.linalg.norm(v)).to(like.dtype)
