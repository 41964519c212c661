"""integrate: one flow of the family from θ₀, in natural time s or in interpolation time τ (§2.5)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_atol, check_option, check_rtol
from ..curvature.linearization import GRAM_MAX_OUTPUTS, LSMR_TOL, linearize
from ..problem import Problem
from ._common import SOLVERS, check_alpha, check_family, check_smooth, cost_factor, output_rate
from ._system import FlowSystem, Recorder, Stop, run_fixed, run_scipy
from ._trajectory import Trajectory, stack_records

METHODS = ("RK45", "DOP853", "LSODA", "euler", "rk4")
TIMES = ("natural", "linear")
ON_UNDECIDED = ("stop", "continue")


class FlowStoppedError(ValueError):
    """An integration stopped before t_end; the path so far is kept.

    Attributes:
        trajectory: The Trajectory up to the last good time (its ``status`` says why it stopped).
        status: "nan", "rank_undecided", "max_steps" or "solver_failed".
        time: The last good time.
    """

    def __init__(self, message: str, *, trajectory: Trajectory, status: str, time: float):
        super().__init__(message)
        self.trajectory = trajectory
        self.status = status
        self.time = time


def _check_t_end(where: str, t_end, time: str, alpha: float) -> float:
    if isinstance(t_end, bool) or not isinstance(t_end, numbers.Real):
        raise TypeError(f"{where}: t_end must be a real number, got {type(t_end).__name__}.")
    t = float(t_end)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"{where}: t_end must be a finite time > 0, got {t_end!r}.")
    if time == "linear" and t > 1.0:
        raise ValueError(f"{where}: with time='linear', t is the interpolation time τ ∈ [0, 1] "
                         f"(τ = 1 reaches the target), got t_end = {t_end!r}. Pass t_end <= 1.")
    if time == "linear" and t == 1.0 and alpha < 1.0:
        raise ValueError(f"{where}: with time='linear' and alpha = {alpha:g} < 1 the field is "
                         "singular at τ = 1 (x − y decays like a power of 1 − τ; only alpha = 1 "
                         "moves on the straight line). Pass t_end < 1, e.g. 0.99.")
    return t


def _check_int(where: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_step(where: str, method: str, step) -> float | None:
    if method not in ("euler", "rk4"):
        if step is not None:
            raise ValueError(f"{where}: step is for the fixed-step methods 'euler' and 'rk4'; "
                             f"method={method!r} chooses its own steps from rtol and atol.")
        return None
    if step is None:
        raise ValueError(f"{where}: method={method!r} needs a step size, e.g. step=0.01.")
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not (
            math.isfinite(step) and step > 0):
        raise ValueError(f"{where}: step must be a finite number > 0, got {step!r}.")
    return float(step)


def _notes(problem: Problem, rec: Recorder) -> str:
    notes = []
    for e in rec.events:
        if e["previous_rank"] is None:
            notes.append(f"rank J = {e['rank']} < {rec.full_rank} at the start")
        else:
            notes.append(f"rank J {e['previous_rank']} → {e['rank']} at t = {e['time']:.6g} "
                         f"(record {e['index']}, gap {e['gap']:.3g})")
    lf = problem.loss_fn
    if lf.name in ("softmax_ce", "ce_prob") and bool((problem.targets == 0).any()):
        notes.append("the targets have zero entries: the cross-entropy has no finite minimiser and "
                     "the outputs run off to infinity as t → ∞ (§2.7)")
    return "; ".join(notes)


def _assemble(system: FlowSystem, rec: Recorder, meta: dict, residual0: Tensor | None,
              status: str, message: str, n_steps: int) -> Trajectory:
    records = rec.records
    p = system.problem
    times = stack_records(records, "t")
    outputs = stack_records(records, "outputs")
    rate = meta["rate"]
    tau = deviation = predicted = None
    if meta["time"] == "linear":
        tau = times.clone()
    elif rate is not None:
        tau = -torch.expm1(-rate * times)
    if tau is not None:
        x0, y = system.x0.reshape(outputs.shape[1:]), p.targets
        deviation = outputs - ((1.0 - tau)[:, None, None] * x0 + tau[:, None, None] * y)
        predicted = tau[:, None, None] * residual0.reshape(outputs.shape[1:])
    return Trajectory(
        times=times, theta=stack_records(records, "theta"), outputs=outputs,
        targets=p.targets.clone(),
        loss=stack_records(records, "loss"), grad_norm=stack_records(records, "grad_norm"),
        rank_jacobian=stack_records(records, "rank", torch.int64),
        rank_gap=stack_records(records, "gap"), rank_tol=stack_records(records, "tol"),
        rank_decided=stack_records(records, "decided", torch.bool),
        range_drift=stack_records(records, "drift"), interpolation_time=tau,
        deviation=deviation, deviation_predicted=predicted, rank_events=tuple(rec.events),
        n_field_evals=system.n_evals, n_steps=n_steps, status=status, message=message, **meta)


def integrate(
    problem: Problem,
    theta0: Tensor | None,
    *,
    alpha: float = 1.0,
    t_end: float,
    time: str = "natural",
    method: str = "RK45",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    n_eval: int = 100,
    step: float | None = None,
    family: str = "field",
    normalization: str | float = "problem",
    solver: str = "auto",
    rank_rtol: float | None = None,
    lsmr_tol: float = LSMR_TOL,
    on_undecided: str = "stop",
    track_rank: bool | None = None,
    max_steps: int = 100_000,
    progress: Callable[[float], None] | None = None,
) -> Trajectory:
    """Integrate the flow ∂θ = V_α(θ) from θ₀ and record it at n_eval evenly spaced times.

    time="natural": t is the flow time s of ∂ₛθ = V_α(θ). time="linear": t is the interpolation
    time τ = 1 − e^{−λs} of §2.5 (mse-type costs only): the adapted flow (α = 1) then moves
    the outputs on the straight line x(τ) = (1 − τ)x₀ + τy and τ = 1 reaches y when rank J = n·k
    along the path (NOTE [linear time]). Rank changes of J are reported (``rank_events``) and the
    flow goes on with the projector P = J J⁺; the deviation δ(τ) from the line is recorded next to
    its constant-range prediction τP₀^⊥(x₀ − y) (§2.6).

    Args:
        problem: The model, data and loss (smooth activations; ReLU is refused, see ``mollify``).
        theta0: Start θ₀ (N,); None for ``problem.theta``.
        alpha: α ∈ [0, 1] (0 standard flow, 1 adapted flow).
        t_end: Final time > 0; with time="linear", t_end ≤ 1, and t_end < 1 when α < 1.
        time: "natural" or "linear".
        method: "RK45", "DOP853", "LSODA" (scipy, adaptive; LSODA estimates an N × N Jacobian by
            differences if it turns stiff, so keep N small) or "euler", "rk4" (fixed steps).
        rtol: Relative tolerance of an adaptive method.
        atol: Absolute tolerance of an adaptive method.
        n_eval: Number of records, evenly spaced on [0, t_end], both ends included (≥ 2).
        step: Step size of "euler"/"rk4" (shortened so that steps land on every record time;
            Euler with α = 0 in natural time is gradient descent with learning rate step).
        family: "field" or "metric" (see ``vector_field``).
        normalization: The cost of the flow (NOTE [cost normalisation]): "problem",
            "sample_mean" (C = |x − y|²/(2n) for mse, λ = 1/n) or a factor c > 0.
        solver: Route of J⁺: "auto", "gram", "svd" or "lsmr" (NOTE [pseudo-inverse routes]).
        rank_rtol: Relative tolerance of the rank cut of J (default max(n·k, N)·eps).
        lsmr_tol: Tolerance of LSMR on the "lsmr" route.
        on_undecided: "stop" (default) ends the run with FlowStoppedError when the rank cut of J
            is not certified by its gap where the cut shapes the field (α > 0); "continue" goes
            on with the cut at tol and records ``rank_decided`` False.
        track_rank: Record rank J (Gram route) at every record; default: while n·k ≤
            ``GRAM_MAX_OUTPUTS``.
        max_steps: Stop after this many steps.
        progress: Called with t after every accepted step (e.g. to drive a progress bar).

    Returns:
        The Trajectory (status "completed").

    Raises:
        TypeError: For a problem that is not a Problem, or non-numeric alpha or t_end.
        ValueError: For α outside [0, 1], t_end ≤ 0 (or > 1, or = 1 with α < 1, for linear time),
            n_eval < 2, unknown options, a non-mse loss with time="linear", non-smooth
            activations, a missing or non-positive step for "euler"/"rk4", or bad θ₀.
        FlowStoppedError: If the run stops early (non-finite values, undecided rank, max_steps,
            solver failure); ``err.trajectory`` holds the path up to the last good time.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.tensor([[1.], [2.]]))
        >>> traj = integrate(p, torch.zeros(2, dtype=torch.float64), t_end=1.0, time="linear",
        ...                  n_eval=5)
        >>> [round(v, 12) for v in traj.outputs[2].flatten().tolist()]   # τ = 1/2: halfway to y
        [0.5, 1.0]
        >>> float(traj.max_deviation()) < 1e-12
        True
    """
    where = "integrate(problem, theta0)"
    if not isinstance(problem, Problem):
        raise TypeError(f"{where}: problem must be a lossgeom.Problem, got {type(problem).__name__}.")
    alpha = check_alpha(where, alpha)
    family = check_family(where, family)
    time = check_option(where, "time", time, TIMES)
    method = check_option(where, "method", method, METHODS)
    on_undecided = check_option(where, "on_undecided", on_undecided, ON_UNDECIDED)
    t_end = _check_t_end(where, t_end, time, alpha)
    n_eval = _check_int(where, "n_eval", n_eval, 2)
    max_steps = _check_int(where, "max_steps", max_steps, 1)
    check_rtol(where, rtol)
    check_atol(where, atol)
    step = _check_step(where, method, step)
    if progress is not None and not callable(progress):
        raise TypeError(f"{where}: progress must be a callable t ↦ None, got "
                        f"{type(progress).__name__}.")
    check_smooth(where, problem)
    factor = cost_factor(where, problem, normalization)
    rate = output_rate(problem, factor)
    if time == "linear" and rate is None:
        raise ValueError(f"{where}: time='linear' is the L2 time change of §2.5 and needs an "
                         f"MSE-type loss, got loss={problem.loss_fn.name!r}. Use time='natural'.")
    m = problem.n_samples * problem.n_outputs
    check_option(where, "solver", solver, SOLVERS)
    theta0 = problem.check_theta(where, theta0)
    route = linearize(problem, theta0, route=solver, where=where, validate=False).solve_route.value
    track = (m <= GRAM_MAX_OUTPUTS) if track_rank is None else bool(track_rank)
    x0 = problem.outputs(theta0)

    system = FlowSystem(problem, alpha=alpha, family=family, factor=factor, time=time, x0=x0,
                        solver=route, rank_rtol=rank_rtol, lsmr_tol=lsmr_tol,
                        on_undecided=on_undecided, track_rank=track, where=where)
    rec = Recorder(system, min(m, problem.n_params))
    meta = {"alpha": alpha, "family": family, "time": time, "method": method, "step": step,
            "rtol": float(rtol), "atol": float(atol), "normalization": normalization,
            "cost_factor": factor, "rate": rate, "route": route}
    times = torch.linspace(0.0, t_end, n_eval, dtype=torch.float64)
    times[-1] = t_end
    state = {"steps": 0, "t": 0.0, "theta": theta0, "max_steps": max_steps}
    residual0 = None
    try:
        if rate is not None:  # P₀^⊥(x₀ − y), for the constant-range prediction of δ
            r = (x0 - problem.targets).reshape(-1)
            residual0 = r - system.linearise(theta0, route, 0.0).project(r)
        rec.add(0.0, theta0)
        if method in ("euler", "rk4"):
            run_fixed(system, rec, times, theta0, method, step, state, progress)
        else:
            run_scipy(system, rec, times, theta0, method, rtol, atol, state, progress)
    except Stop as stop:
        if state["t"] > rec.last_time:  # keep the last accepted state as a final record
            try:
                system.stop_on_undecided = False
                rec.add(state["t"], state["theta"])
            except Stop:
                pass
        last = rec.last_time
        message = (f"{where}: stopped ({stop.status}): {stop.detail.rstrip('.')}. The trajectory "
                   f"up to the "
                   f"last good time t = {last:.6g} is in err.trajectory. {stop.fix}").rstrip()
        if not rec.records:
            raise ValueError(message.replace(" is in err.trajectory", " is empty")) from None
        traj = _assemble(system, rec, meta, residual0, stop.status, message, state["steps"])
        raise FlowStoppedError(message, trajectory=traj, status=stop.status, time=last) from None
    return _assemble(system, rec, meta, residual0, "completed", _notes(problem, rec),
                     state["steps"])
