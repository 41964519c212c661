"""The equilibria of the family are shared across α (§2.3): a check along integrated paths.

Every V_α vanishes exactly where P∇ₓC = 0, i.e. where ∇_θC = Jᵀ∇ₓC = 0 (2.34)–(2.35), (2.43). The
check integrates several α from one θ₀ and, at each end point, evaluates every member V_β of the
family: if the end point of one flow is (nearly) an equilibrium, so it is for all β.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..analysis import criticality
from ..curvature.linearization import linearize
from ..problem import Problem
from ..report import jsonable
from ._common import check_alpha
from ._field import apply_flow_matrix
from ._integrate import FlowStoppedError, integrate
from ._trajectory import Trajectory


@dataclass(frozen=True, eq=False)
class EquilibriumCheck:
    """End points of flows with several α from one θ₀, each probed with every member of the family.

    Attributes:
        alphas: The α integrated, in order.
        rows: One dict per α: {alpha, status, t_end, loss_start, loss, grad_norm_start, grad_norm,
            projected_output_grad_norm (‖P∇ₓC‖ of the flow cost), criticality_tol (the
            ``analyze`` test on ‖∇L‖), critical, field_norms {β: ‖V_β(θ_end)‖ for β in alphas}}.
        trajectories: The Trajectories, in the order of ``alphas``.
    """

    alphas: tuple[float, ...]
    rows: tuple[dict, ...]
    trajectories: tuple[Trajectory, ...]

    def to_dict(self) -> dict:
        """JSON-ready dict: alphas, rows and each trajectory's summary."""
        return jsonable({"alphas": list(self.alphas), "rows": list(self.rows),
                         "trajectories": [t.summary() for t in self.trajectories]})


def shared_equilibria(
    problem: Problem,
    theta0: Tensor | None,
    alphas: Sequence[float] = (0.0, 0.5, 1.0),
    *,
    t_end: float,
    progress: Callable[[float, float], None] | None = None,
    **integrate_options,
) -> EquilibriumCheck:
    """Integrate each α from θ₀ to t_end and probe every end point with every V_β.

    Args:
        problem: The model, data and loss.
        theta0: Start θ₀ (N,); None for ``problem.theta``.
        alphas: The α ∈ [0, 1] to integrate (at least one).
        t_end: Final time of every run (see ``integrate``).
        progress: Called with (α, t) after every step of every run.
        **integrate_options: Passed on to ``integrate`` (time, method, family, normalization,
            solver, rtol, atol, n_eval, ...).

    Returns:
        An EquilibriumCheck. A run that stops early keeps its partial path and its status.

    Raises:
        TypeError: As ``integrate``.
        ValueError: For an empty ``alphas`` or any argument ``integrate`` rejects.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.tensor([[1.], [2.]]))
        >>> check = shared_equilibria(p, torch.zeros(2, dtype=torch.float64), (0.0, 1.0), t_end=20.0)
        >>> [row["loss"] < 1e-12 for row in check.rows]          # both reach the minimum
        [True, True]
    """
    where = "shared_equilibria(problem, theta0, alphas)"
    alphas = tuple(check_alpha(where, a) for a in alphas)
    if not alphas:
        raise ValueError(f"{where}: alphas is empty; pass at least one α in [0, 1].")
    family = integrate_options.get("family", "field")
    trajectories, rows = [], []
    for a in alphas:
        step = None if progress is None else (lambda t, a=a: progress(a, t))
        try:
            traj = integrate(problem, theta0, alpha=a, t_end=t_end, progress=step,
                             **integrate_options)
        except FlowStoppedError as err:
            traj = err.trajectory
        trajectories.append(traj)
        rows.append(_probe(where, problem, traj, alphas, family,
                           integrate_options.get("solver", "auto"),
                           integrate_options.get("rank_rtol")))
    return EquilibriumCheck(alphas=alphas, rows=tuple(rows), trajectories=tuple(trajectories))


def _probe(where: str, problem: Problem, traj: Trajectory, alphas: tuple[float, ...], family: str,
           solver: str, rank_rtol) -> dict:
    theta = traj.final_theta
    local = linearize(problem, theta, route=solver, rtol=rank_rtol, where=where)
    g = traj.cost_factor * problem.loss_fn.output_grad(local.outputs, problem.targets).reshape(-1)
    grad_norm = float(traj.grad_norm[-1])
    tol = criticality(problem, theta, local.outputs, grad_norm, local.sigma_max).tol
    return {
        "alpha": traj.alpha, "status": traj.status, "t_end": float(traj.times[-1]),
        "loss_start": float(traj.loss[0]), "loss": float(traj.loss[-1]),
        "grad_norm_start": float(traj.grad_norm[0]), "grad_norm": grad_norm,
        "projected_output_grad_norm": float(torch.linalg.norm(local.project(g))),
        "criticality_tol": tol, "critical": grad_norm <= tol,
        "field_norms": {str(b): float(torch.linalg.norm(apply_flow_matrix(local, g, b, family)))
                        for b in alphas},
    }
