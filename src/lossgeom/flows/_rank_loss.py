"""Rank loss (§2.6, Prop. 2.5): the propagator U(τ) and the deviation δ(τ) from the line.

With P(τ) the projector onto ran J along the path and the interpolation time τ of §2.5, the
constrained Euclidean flow reads (2.57) ∂_τx = −P(τ)(x − y)/(1 − τ). Its solution is
x(τ) − y = U(τ)(x₀ − y) with the propagator ∂_τU = −P(τ)U/(1 − τ), U(0) = 𝟙 (2.59)–(2.63), and the
deviation from the line x_lin(τ) = (1 − τ)x₀ + τy is (2.58):

    δ(τ) = (1 − τ) ∫₀^τ P^⊥(τ′) U(τ′)(x₀ − y) / (1 − τ′)² dτ′      (form "propagator")
         = ∫₀^τ U(τ) U(τ′)⁻¹ P^⊥(τ′)(x₀ − y) dτ′                   (form "duhamel").

If ran J ≡ R is constant, δ(τ) = τ P_R^⊥(x₀ − y): the path is the straight line to P_R y + P_R^⊥ x₀.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.interpolate import CubicSpline
from torch import Tensor

from .._checks import check_option
from ..curvature.linearization import linearize
from ..problem import Problem
from ._trajectory import Trajectory

FORMS = ("propagator", "duhamel")

Projector = Callable[[float], Tensor | np.ndarray]


def _check_taus(where: str, taus) -> np.ndarray:
    t = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all():
        raise ValueError(f"{where}: taus must be a non-empty 1-D sequence of finite times.")
    if (t < 0).any() or (t >= 1).any() or (np.diff(t) < 0).any():
        raise ValueError(f"{where}: taus must be non-decreasing in [0, 1) (U(τ) is singular at "
                         f"τ = 1), got range [{t.min():g}, {t.max():g}].")
    return t


def _projector_at(where: str, projector: Projector, tau: float, m: int | None) -> np.ndarray:
    P = np.asarray(projector(float(tau)), dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or (m is not None and P.shape[0] != m):
        raise ValueError(f"{where}: projector(τ) must return a square ({m}, {m}) matrix, got shape "
                         f"{P.shape}.")
    if not np.isfinite(P).all():
        raise ValueError(f"{where}: projector(τ) returned non-finite entries at τ = {tau:g}.")
    return P


def _solve(where: str, rhs, y0: np.ndarray, t: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Integrate on [0, max t] with DOP853, returning the states at t, shape (T, len(y0)).

    Raises:
        ValueError: If the solver fails.
    """
    if t[-1] == 0.0:
        return np.repeat(y0[None], t.size, axis=0)
    sol = solve_ivp(rhs, (0.0, float(t[-1])), y0, method="DOP853", t_eval=t, rtol=rtol, atol=atol)
    if not sol.success:
        raise ValueError(f"{where}: the ODE solver failed: {sol.message}")
    return sol.y.T


def propagator(projector: Projector, taus, *, rtol: float = 1e-12, atol: float = 1e-14) -> Tensor:
    """The linear propagator U(τ) of (2.59): ∂_τU = −P(τ)U/(1 − τ), U(0) = 𝟙.

    Args:
        projector: τ ↦ P(τ), the orthogonal projector onto ran J at time τ, shape (m, m).
        taus: Times in [0, 1), non-decreasing, shape (T,).
        rtol: Relative tolerance of the DOP853 integration.
        atol: Absolute tolerance of the DOP853 integration.

    Returns:
        U at each τ, float64, shape (T, m, m).

    Raises:
        ValueError: For times outside [0, 1), a projector of the wrong shape or non-finite, or
            a solver failure.

    Example:
        >>> import torch
        >>> P = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))   # constant projector
        >>> U = propagator(lambda tau: P, [0.5])
        >>> [round(v, 10) for v in U[0].diagonal().tolist()]               # P^⊥ + (1 − τ)P
        [0.5, 1.0]
    """
    where = "propagator(projector, taus)"
    t = _check_taus(where, taus)
    m = _projector_at(where, projector, 0.0, None).shape[0]

    def rhs(tau, u):
        P = _projector_at(where, projector, tau, m)
        return (-(P @ u.reshape(m, m)) / (1.0 - tau)).reshape(-1)

    U = _solve(where, rhs, np.eye(m).reshape(-1), t, rtol, atol)
    return torch.as_tensor(U.reshape(t.size, m, m), dtype=torch.float64)


def line_deviation(projector: Projector, x0, y, taus, *, form: str = "propagator",
                   rtol: float = 1e-12, atol: float = 1e-14) -> Tensor:
    """The deviation δ(τ) = x(τ) − [(1 − τ)x₀ + τy] of the (2.57) flow, by either form of (2.58).

    Args:
        projector: τ ↦ P(τ) (m, m).
        x0: Start outputs, any shape with m entries.
        y: Targets, the same number of entries.
        taus: Times in [0, 1), non-decreasing, shape (T,).
        form: "propagator" ((1 − τ)∫P^⊥U(x₀ − y)/(1 − τ′)²) or "duhamel" (∫U(τ)U(τ′)⁻¹P^⊥(x₀ − y)).
        rtol: Relative tolerance of the DOP853 integration.
        atol: Absolute tolerance of the DOP853 integration.

    Returns:
        δ at each τ, float64, shape (T, m).

    Raises:
        ValueError: For an unknown form, mismatched sizes, non-finite values, times outside
            [0, 1), or a solver failure.

    Example:
        >>> import torch
        >>> P = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))   # ran J = R constant
        >>> x0, y = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 4.0])
        >>> d = line_deviation(lambda tau: P, x0, y, [0.5])
        >>> [round(v, 10) for v in d[0].tolist()]                           # τ P_R^⊥(x₀ − y)
        [0.0, -2.0]
    """
    where = "line_deviation(projector, x0, y, taus)"
    form = check_option(where, "form", form, FORMS)
    t = _check_taus(where, taus)
    r = np.asarray(torch.as_tensor(x0, dtype=torch.float64).reshape(-1)) - np.asarray(
        torch.as_tensor(y, dtype=torch.float64).reshape(-1))
    if not np.isfinite(r).all():
        raise ValueError(f"{where}: x0 and y must be finite.")
    m = r.size
    _projector_at(where, projector, 0.0, m)
    eye = np.eye(m)
    if form == "propagator":  # state (z, I): z = U(x₀ − y), I′ = P^⊥ z/(1 − τ)²
        def rhs(tau, s):
            P = _projector_at(where, projector, tau, m)
            z = s[:m]
            return np.concatenate([-(P @ z) / (1.0 - tau), ((eye - P) @ z) / (1.0 - tau) ** 2])

        S = _solve(where, rhs, np.concatenate([r, np.zeros(m)]), t, rtol, atol)
        delta = (1.0 - t)[:, None] * S[:, m:]
    else:  # state (U, U⁻¹, I): (U⁻¹)′ = U⁻¹P/(1 − τ), I′ = U⁻¹P^⊥(x₀ − y)
        def rhs(tau, s):
            P = _projector_at(where, projector, tau, m)
            U, Ui = s[:m * m].reshape(m, m), s[m * m:2 * m * m].reshape(m, m)
            return np.concatenate([(-(P @ U) / (1.0 - tau)).reshape(-1),
                                   ((Ui @ P) / (1.0 - tau)).reshape(-1), Ui @ ((eye - P) @ r)])

        y0 = np.concatenate([eye.reshape(-1), eye.reshape(-1), np.zeros(m)])
        S = _solve(where, rhs, y0, t, rtol, atol)
        delta = np.einsum("tij,tj->ti", S[:, :m * m].reshape(-1, m, m), S[:, 2 * m * m:])
    return torch.as_tensor(delta, dtype=torch.float64)


def path_projector(problem: Problem, trajectory: Trajectory, *, rank_rtol: float | None = None
                   ) -> Callable[[float], Tensor]:
    """τ ↦ P(θ(τ)), the projector onto ran J along a recorded path, for ``propagator``.

    θ(τ) is a cubic spline through the records (in τ = ``trajectory.interpolation_time``); P is
    W_r W_rᵀ from the rank decision of J at that θ (Gram route, dense (n·k, n·k)).

    Args:
        problem: The problem the trajectory was integrated on.
        trajectory: A Trajectory with interpolation times (mse-type cost), at least 2 records.
        rank_rtol: Relative tolerance of the rank cut.

    Returns:
        A callable τ ↦ P (n·k, n·k), float64, for τ within the recorded range.

    Raises:
        ValueError: If the trajectory has no interpolation time, fewer than two records, does not
            match the problem, or τ leaves the recorded range.
    """
    where = "path_projector(problem, trajectory)"
    if not isinstance(trajectory, Trajectory) or trajectory.interpolation_time is None:
        raise ValueError(f"{where}: trajectory must be a Trajectory of an mse-type flow (it needs "
                         "the interpolation time τ).")
    if trajectory.theta.shape[1] != problem.n_params or trajectory.times.numel() < 2:
        raise ValueError(f"{where}: the trajectory does not match the problem (N = "
                         f"{problem.n_params}) or has fewer than 2 records.")
    tau = trajectory.interpolation_time.detach().cpu().double().numpy()
    keep = np.concatenate([[True], np.diff(tau) > 0])  # τ saturates at 1 in natural time
    spline = CubicSpline(tau[keep], trajectory.theta.detach().cpu().double().numpy()[keep],
                         axis=0)
    lo, hi = float(tau[keep][0]), float(tau[keep][-1])

    def projector(t: float) -> Tensor:
        if not (lo <= t <= hi):
            raise ValueError(f"{where}: τ = {t:g} is outside the recorded range [{lo:g}, {hi:g}].")
        theta = torch.as_tensor(spline(t), dtype=problem.dtype, device=problem.device)
        local = linearize(problem, theta, route="gram", rtol=rank_rtol, where=where)
        W = local.left_vectors[:, local.kept]
        return W @ W.T

    return projector
