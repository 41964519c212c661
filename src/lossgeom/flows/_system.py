"""The right-hand side of a flow, the recorder of observables, and the two integration loops.

Natural time: ∂ₛθ = V_α(θ) = −M_α ∇ₓC (``_field``), with the cost of NOTE [cost normalisation].

NOTE [linear time]
    For an mse-type cost, ∇ₓC = λ(x − y). The time change τ = 1 − e^{−λs} ((2.51)–(2.53))
    turns ∂ₛθ = −M_α λ(x − y) into

        ∂_τθ = −M_α (x − y)/(1 − τ) = M_α [(y − x₀) − (x − x_lin(τ))/(1 − τ)],
        x_lin(τ) = (1 − τ)x₀ + τy,

    which does not depend on λ. For α = 1 and rank J = n·k the deviation x − x_lin vanishes and
    ∂_τθ = J⁺(y − x₀), the constant-output-velocity ODE of Prop. 2.4 (§2.5): lossgeom
    integrates exactly that form wherever the rank decision gives rank J = n·k. The second term is
    then zero in exact arithmetic, and keeping it would only feed round-off through the factor
    1/(1 − τ), a stiff term that costs explicit methods accuracy near τ = 1. Where rank J < n·k
    the full bracket is integrated: it is the exact (2.57) dynamics. If ran J stays a fixed
    subspace R, J⁺ annihilates x − x_lin = τP_R^⊥(x₀ − y) and the path is again a straight line
    (to P_R y + P_R^⊥x₀); if ran J turns, the term drives the deviation of (2.58). At τ = 1 the
    bracket is evaluated as y − x₀, its value whenever ran J is locally constant near τ = 1.
    For α < 1 the output path is not a line and x − y decays like (1 − τ)^μ with μ the eigenvalues
    of (1 − α)K + α𝟙, so the field is singular at τ = 1: such runs need t_end < 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import DOP853, LSODA, RK45
from torch import Tensor
from torch.func import vjp

from ..curvature.linearization import NonFiniteError, linearize
from ..problem import Problem
from ._field import apply_flow_matrix
from ._trajectory import rank_event

_SCIPY = {"RK45": RK45, "DOP853": DOP853, "LSODA": LSODA}

STEP_ROUNDING = 1e-9
"""A segment between evaluation times whose length is an integer multiple of ``step`` up to this
relative error is split into exactly that many fixed steps (so step = 1/400 on [0, 1] gives 400)."""


class Stop(Exception):
    """Raised inside a run: why it stops (status), what happened, and the fix."""

    def __init__(self, status: str, detail: str, fix: str = ""):
        super().__init__(detail)
        self.status, self.detail, self.fix = status, detail, fix


class FlowSystem:
    """Right-hand side dθ/dt of one flow and the observables recorded along it."""

    def __init__(self, problem: Problem, *, alpha, family, factor, time, x0, solver, rank_rtol,
                 lsmr_tol, on_undecided, track_rank, where):
        self.problem, self.alpha, self.family, self.factor, self.time = (
            problem, alpha, family, factor, time)
        self.x0, self.y = x0.reshape(-1), problem.targets.reshape(-1)
        self.solver, self.rank_rtol, self.lsmr_tol, self.where = solver, rank_rtol, lsmr_tol, where
        self.stop_on_undecided = on_undecided == "stop" and (
            (family == "field" and alpha > 0.0) or alpha == 1.0)  # where the cut shapes the field
        self.track_rank = track_rank
        self.record_solver = solver if solver != "lsmr" else "gram"
        self.n_evals = 0
        self.solver_step = 0

    def as_theta(self, y: np.ndarray) -> Tensor:
        """A solver state (numpy float64) as θ in the Problem's dtype and device (a copy)."""
        return torch.tensor(np.asarray(y), dtype=self.problem.dtype, device=self.problem.device)

    def linearise(self, theta: Tensor, solver: str, t: float):
        try:
            return linearize(self.problem, theta, route=solver, rtol=self.rank_rtol,
                             lsmr_tol=self.lsmr_tol, where=self.where, validate=False)
        except NonFiniteError as err:
            detail = str(err).split(": ", 1)[-1].rstrip(".")
            raise Stop("nan", f"{detail} (t = {t:.6g})") from None

    def __call__(self, t: float, theta: Tensor) -> Tensor:
        self.n_evals += 1
        if not bool(torch.isfinite(theta).all()):
            raise Stop("nan", f"θ became non-finite (t = {t:.6g})")
        if self.alpha == 0.0:  # V₀ = −Jᵀ∇ₓC needs one VJP, no linearisation
            x, pullback = vjp(self.problem.output_fn, theta)
            if not bool(torch.isfinite(x).all()):
                raise Stop("nan", f"the outputs became non-finite at t = {t:.6g}")
            v = pullback(self._drive(t, x).reshape(x.shape))[0]
            if not bool(torch.isfinite(v).all()):
                raise Stop("nan", f"the field became non-finite at t = {t:.6g}")
            return v
        local = self.linearise(theta, self.solver, t)
        d = local.decision
        if self.stop_on_undecided and d is not None and not d.decided:
            raise Stop("rank_undecided",
                        f"rank J undecided at solver step {self.solver_step} (t = {t:.6g}): rank "
                        f"{d.rank}, tol {d.tol:.3g}, gap {d.gap:.3g}: {d.reason}",
                        "Pass on_undecided='continue' to integrate through with the cut at tol, "
                        "or set rank_rtol inside a clear gap.")
        try:
            full = self.alpha == 1.0 and d is not None and d.rank == self.x0.numel()
            u = self.y - self.x0 if (full and self.time == "linear") else self._drive(t,
                                                                                     local.outputs)
            v = apply_flow_matrix(local, u, self.alpha, self.family)
        except ValueError as err:  # LSMR did not converge
            raise Stop("solver_failed", str(err).split(": ", 1)[-1]) from None
        if not bool(torch.isfinite(v).all()):
            raise Stop("nan", f"the field became non-finite at t = {t:.6g}")
        return v

    def _drive(self, t: float, x: Tensor) -> Tensor:
        """The vector u (n·k,) of dθ/dt = M_α u: −∇ₓC, or the bracket of NOTE [linear time]."""
        if self.time == "natural":
            return -self.factor * self.problem.loss_fn.output_grad(x, self.problem.targets
                                                                   ).reshape(-1)
        if t < 1.0:
            x = x.reshape(-1)
            return (self.y - self.x0) - (x - ((1.0 - t) * self.x0 + t * self.y)) / (1.0 - t)
        return self.y - self.x0

    def observe(self, t: float, theta: Tensor) -> dict:
        """The record at (t, θ): outputs, loss, gradient norm, rank decision, ran J basis.

        Raises:
            Stop: If the outputs, loss or gradient are not finite there.
        """
        p = self.problem
        if self.track_rank:
            local = self.linearise(theta, self.record_solver, t)
            x = local.outputs
            grad = local.jt(p.loss_fn.output_grad(x, p.targets).reshape(-1))
            d = local.decision
            rank = (d.rank, d.gap, d.tol, d.decided, local.left_vectors[:, local.kept])
        else:
            with torch.no_grad():
                x = p.output_fn(theta)
            grad = torch.func.grad(p.loss_at)(theta)
            rank = (-1, math.nan, math.nan, False, None)
        loss = p.loss_fn(x, p.targets)
        if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(grad).all())
                and math.isfinite(float(loss))):
            raise Stop("nan", f"the outputs, loss or gradient became non-finite at t = {t:.6g}")
        return {"t": float(t), "theta": theta.clone(), "outputs": x.detach().clone(),
                "loss": float(loss), "grad_norm": float(torch.linalg.norm(grad)),
                "rank": rank[0], "gap": rank[1], "tol": rank[2], "decided": rank[3],
                "basis": rank[4]}


class Recorder:
    """Collects records, rank events and range drift; applies the stop-on-undecided rule."""

    def __init__(self, system: FlowSystem, full_rank: int):
        self.system, self.full_rank = system, full_rank
        self.records: list[dict] = []
        self.events: list[dict] = []
        self.basis0: Tensor | None = None

    def add(self, t: float, theta: Tensor) -> None:
        rec = self.system.observe(t, theta)
        basis = rec.pop("basis")
        if basis is None:
            rec["drift"] = math.nan
        else:
            if self.basis0 is None:
                self.basis0 = basis.clone()  # a separate buffer (NOTE [gram product])
            # ‖P − P₀‖_F² = ‖(𝟙 − P₀)W‖² + ‖(𝟙 − P)W₀‖², free of cancellation
            W, W0 = basis, self.basis0
            rec["drift"] = math.hypot(float((W - W0 @ (W0.T @ W)).norm()),
                                      float((W0 - W @ (W.T @ W0)).norm()))
        i = len(self.records)
        prev = self.records[-1]["rank"] if self.records else None
        if rec["rank"] >= 0 and (rec["rank"] != prev if prev is not None
                                 else rec["rank"] < self.full_rank):
            self.events.append(rank_event(i, rec["t"], rec["rank"], prev, rec["gap"],
                                          rec["decided"]))
        self.records.append(rec)
        if self.system.stop_on_undecided and rec["rank"] >= 0 and not rec["decided"]:
            raise Stop("rank_undecided",
                        f"rank J undecided at record {i} (t = {t:.6g}): rank {rec['rank']}, "
                        f"tol {rec['tol']:.3g}, gap {rec['gap']:.3g}",
                        "Pass on_undecided='continue' to integrate through with the cut at tol, "
                        "or set rank_rtol inside a clear gap.")

    @property
    def last_time(self) -> float:
        return self.records[-1]["t"] if self.records else -math.inf


def _substeps(length: float, step: float) -> int:
    ratio = length / step
    nearest = round(ratio)
    if nearest >= 1 and abs(ratio - nearest) <= STEP_ROUNDING * ratio:
        return nearest
    return max(1, math.ceil(ratio))


def run_fixed(system: FlowSystem, rec: Recorder, times: Tensor, theta: Tensor, method: str,
               step: float, state: dict, progress) -> None:
    for i in range(1, times.numel()):
        ta, tb = float(times[i - 1]), float(times[i])
        n = _substeps(tb - ta, step)
        h = (tb - ta) / n
        for j in range(n):
            t = ta + j * h
            system.solver_step = state["steps"]
            if method == "euler":
                theta = theta + h * system(t, theta)
            else:
                k1 = system(t, theta)
                k2 = system(t + h / 2, theta + h / 2 * k1)
                k3 = system(t + h / 2, theta + h / 2 * k2)
                k4 = system(t + h, theta + h * k3)
                theta = theta + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            state.update(steps=state["steps"] + 1, t=tb if j == n - 1 else t + h, theta=theta)
            if state["steps"] >= state["max_steps"] and not (i == times.numel() - 1 and j == n - 1):
                raise Stop("max_steps", f"max_steps = {state['max_steps']} steps taken",
                            "Raise max_steps or take a larger step.")
        rec.add(tb, theta)
        if progress is not None:
            progress(tb)


def run_scipy(system: FlowSystem, rec: Recorder, times: Tensor, theta0: Tensor, method: str,
               rtol: float, atol: float, state: dict, progress) -> None:
    box: dict[str, Stop] = {}

    def fun(t, y):
        if "stop" in box:
            return np.full_like(y, np.nan)
        try:
            return system(float(t), system.as_theta(y)).detach().cpu().double().numpy()
        except Stop as stop:
            box["stop"] = stop
            if method == "LSODA":  # a Fortran call-back: return NaN, re-raise after the step
                return np.full_like(y, np.nan)
            raise

    solver = _SCIPY[method](fun, 0.0, theta0.detach().cpu().double().numpy(), float(times[-1]),
                            rtol=rtol,
                            atol=atol)
    i = 1
    while i < times.numel():
        system.solver_step = state["steps"]
        message = solver.step()
        if "stop" in box:
            raise box["stop"]
        if solver.status == "failed":
            raise Stop("solver_failed", f"{method} failed: {message}",
                        "Try method='LSODA' (stiff problems) or a fixed-step method.")
        state.update(steps=state["steps"] + 1, t=float(solver.t),
                     theta=system.as_theta(solver.y))
        interp = None
        while i < times.numel() and float(times[i]) <= solver.t:
            if float(times[i]) == solver.t:
                th = solver.y.copy()
            else:
                interp = interp or solver.dense_output()
                th = interp(float(times[i]))
            rec.add(float(times[i]), system.as_theta(th))
            i += 1
        if progress is not None:
            progress(float(solver.t))
        if i < times.numel() and state["steps"] >= state["max_steps"]:
            raise Stop("max_steps", f"max_steps = {state['max_steps']} steps taken",
                        "Raise max_steps, loosen rtol/atol, or try method='LSODA' if the flow is "
                        "stiff (an ill-conditioned K = J Jᵀ slows the standard flow).")
    system.n_evals = max(system.n_evals, int(getattr(solver, "nfev", 0)))
