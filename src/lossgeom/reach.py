"""Reaching critical points: exact last-layer fits and descent followed by a float64 polish.

Ensembles of small problems of one structure train and polish together: ``train_many`` runs
full-batch Adam on S problems at once and ``polish_many`` the Gauss–Newton polish of §6.3, each
one vectorised call per step (``torch.func.vmap``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import torch
from scipy.sparse.linalg import minres
from torch import Tensor

from ._checks import check_option
from .analysis import criticality, perfect_fit
from .curvature._hessian import hessian, hessian_operator
from .curvature._jacobian import jacobian, jacobian_blocks
from .curvature.linearization import linearize
from .errors import NotCriticalError
from .linalg.rank import RankDecision, numerical_rank
from .problem import Problem
from .report import jsonable
from .tolerances import eps

__all__ = ["LastLayerFit", "NoExactFitError", "find_critical_point", "fit_last_layer",
           "output_layer_indices", "polish_many", "reach", "train_many"]

POLISH = ("newton", "gauss_newton", "none")
TARGETS = ("minimum", "any")


DENSE_SCALE_ENTRIES = 2**20
"""``gradient_scale`` takes σ_max(J) from a dense J up to this many entries n·k·N."""


def gradient_scale(problem: Problem, theta: Tensor) -> float:
    """The criticality scale of ``analyze`` at θ.

    σ_max(J) comes from the Linearization of θ: the SVD of the dense J while n·k·N ≤
    ``DENSE_SCALE_ENTRIES`` (exact, and cheaper than the products for small nets), else its power
    iteration on JᵀJ.
    """
    small = problem.n_samples * problem.n_outputs * problem.n_params <= DENSE_SCALE_ENTRIES
    lin = linearize(problem, theta, route="svd" if small else "auto",
                    where="find_critical_point(problem, theta)", validate=False)
    sigma = lin.decision.sigma_max if small else lin.sigma_max
    return criticality(problem, theta, lin.outputs, 0.0, sigma).scale


def output_layer_indices(problem: Problem) -> list[int]:
    """Indices of the output layer's parameter tensors: the last weight (k, h) and its bias (k,)."""
    shapes, k = problem.param_shapes, problem.n_outputs
    last = len(shapes) - 1
    if len(shapes[last]) == 1 and last > 0 and len(shapes[last - 1]) == 2 \
            and shapes[last - 1][0] == shapes[last][0] == k:
        return [last - 1, last]
    return [last]


@dataclass(frozen=True)
class LastLayerFit:
    """The evidence behind an output-layer least-squares fit (``fit_last_layer(..., info=True)``).

    The outputs are affine in the output layer's parameters θ_L: x = A θ_L + c, A = ∂x/∂θ_L of
    shape (n·k, N_L). For a linear output layer xᵢ = W φᵢ + b every output reads the same
    features Φ = [φᵢᵀ 1] (n × (h + 1), the ones column with a bias), A = Φ ⊗ I_k up to the order
    of its columns, and the fit is exact for every target exactly when rank Φ = n. With
    rank Φ < n it is exact only for targets in the range of Φ (samples whose features coincide
    and whose labels agree, §6.2), so ``exact`` is decided by the residual, not by the rank.

    Attributes:
        feature_rank: rank Φ; for an output layer that is not a (k, h) weight with an optional
            (k,) bias, rank A, compared with n·k instead of n.
        feature_rank_decision: The RankDecision of that cut (tolerance, gap, σ₁, σ_r, σ_{r+1}).
        n_features: Columns of Φ (h, plus 1 with a bias), or N_L for A.
        n_samples: n.
        n_rows: n·k, the rows of A.
        shared_features: True when Φ was read off A (a linear output layer), so feature_rank
            is compared with n; False when it is rank A, compared with n·k.
        residual: max |fit residual| at the fit: max |x − y| for mse, max |softmax(x) − y| for
            softmax_ce (the ``perfect_fit.max_residual`` of ``analyze``).
        residual_tol: The perfect-fit tolerance the residual is compared with.
        exact: residual ≤ residual_tol (``analyze`` would report ``perfect_fit.holds``).
        reason: "" when exact; otherwise why not, with the numbers, e.g.
            "no exact fit: features of rank 3 < n = 12; residual 0.41 > tol 1e-08".
    """

    feature_rank: int
    feature_rank_decision: RankDecision
    n_features: int
    n_samples: int
    n_rows: int
    shared_features: bool
    residual: float
    residual_tol: float
    exact: bool
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready dict of every field (the rank decision as a nested dict)."""
        return jsonable({**self.__dict__,
                         "feature_rank_decision": self.feature_rank_decision.to_dict()})


class NoExactFitError(ValueError):
    """``fit_last_layer(..., exact=True)`` found no exact fit; ``fit`` holds the evidence.

    Attributes:
        fit: The LastLayerFit (feature rank, residual, reason).
        theta: The least-squares point, shape (N,).
    """

    def __init__(self, message: str, *, fit: LastLayerFit, theta: Tensor):
        super().__init__(message)
        self.fit = fit
        self.theta = theta


def _features(problem: Problem, idx: list[int], A: Tensor) -> tuple[Tensor, bool]:
    """Φ (n, h [+ 1]) read off A when the output layer is a (k, h) weight [+ (k,) bias], else A.

    Column c·h + j of a row-major (k, h) weight is W[c, j] and row i·k + c of A is output c of
    sample i, so the rows i·k of A restricted to W[0, :] (and b[0]) are the features φᵢ (and 1).
    """
    shapes, k = problem.param_shapes, problem.n_outputs
    w = shapes[idx[0]]
    if len(w) != 2 or w[0] != k or (len(idx) == 2 and tuple(shapes[idx[1]]) != (k,)):
        return A, False
    h = w[1]
    cols = list(range(h)) + ([k * h] if len(idx) == 2 else [])
    return A[0::k][:, cols], True


def _fit_evidence(problem: Problem, idx: list[int], A: Tensor, x: Tensor) -> LastLayerFit:
    phi, shared = _features(problem, idx, A)
    decision = numerical_rank(phi, dtype=problem.dtype)
    fit = perfect_fit(problem, x)
    n, rows = problem.n_samples, problem.n_samples * problem.n_outputs
    needed = n if shared else rows
    res, tol = float(fit.max_residual), float(fit.tol)
    what = "features" if shared else "output-layer Jacobian"
    sym = "n" if shared else "n·k"
    if fit.holds:
        reason = ""
    elif decision.rank < needed:
        reason = (f"no exact fit: {what} of rank {decision.rank} < {sym} = {needed}; "
                  f"residual {res:.3g} > tol {tol:.3g}")
    else:
        cond = (decision.sigma_r or 0.0) / decision.sigma_max if decision.sigma_max else 0.0
        reason = (f"no exact fit: {what} of full rank {decision.rank} = {sym} = {needed}, yet the "
                  f"least-squares fit leaves residual {res:.3g} > tol {tol:.3g} (σ_min/σ_max = "
                  f"{cond:.2g} in {str(problem.dtype).removeprefix('torch.')})")
    return LastLayerFit(decision.rank, decision, int(phi.shape[1]), n, rows, shared, res, tol,
                        bool(fit.holds), reason)


@overload
def fit_last_layer(problem: Problem, theta: Tensor | None = None, *, exact: bool = False,
                   info: Literal[False] = False) -> Tensor: ...


@overload
def fit_last_layer(problem: Problem, theta: Tensor | None = None, *, exact: bool = False,
                   info: Literal[True]) -> tuple[Tensor, LastLayerFit]: ...


def fit_last_layer(problem: Problem, theta: Tensor | None = None, *, exact: bool = False,
                   info: bool = False) -> Tensor | tuple[Tensor, LastLayerFit]:
    """Fit the output layer by least squares, other parameters fixed.

    With features φ (the last hidden layer, plus a ones column for a bias) the outputs are affine
    in the output layer's parameters θ_L: x = A θ_L + c, A = ∂x/∂θ_L (n·k, N_L). The minimum-norm
    solution of A θ_L = x* − c, with x* = y (mse) or log y (softmax_ce, soft labels), is an exact
    fit whenever the features Φ (n × (h + 1)) have rank n; otherwise it is the least-squares
    point, exact only if x* − c happens to lie in the range of A. ``info=True`` returns the
    evidence (LastLayerFit: rank Φ with its tolerance and gap, the residual, the reason), and
    ``exact=True`` refuses a fit that is not exact.

    Args:
        problem: The model, data and loss (mse, or softmax_ce with positive soft labels).
        theta: Flat parameters (N,); default ``problem.theta``.
        exact: Raise NoExactFitError (a ValueError carrying the numbers) when the fit is not
            exact.
        info: Return ``(θ, LastLayerFit)`` instead of θ.

    Returns:
        θ with the output layer replaced, shape (N,); with ``info=True`` the pair
        ``(θ, LastLayerFit)``.

    Raises:
        NoExactFitError: With ``exact=True``, when the residual exceeds the perfect-fit
            tolerance ("no exact fit: features of rank r < n = …; residual …").
        ValueError: For a loss whose optimal outputs are not affine-reachable (bce, ce_prob,
            one-hot softmax_ce), or an output layer that is not affine in its parameters.

    Example:
        >>> import torch, lossgeom as lg
        >>> _ = torch.manual_seed(0)
        >>> X, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
        >>> p = lg.Problem(lg.mlp([3, 6, 1], bias=False), X, y)
        >>> float(p.loss(lg.fit_last_layer(p))) < 1e-20
        True
        >>> q = lg.Problem(lg.mlp([3, 2, 1], bias=False), X, y)   # 2 features < n = 4 samples
        >>> fit = lg.fit_last_layer(q, info=True)[1]
        >>> fit.feature_rank, fit.n_samples, fit.exact
        (2, 4, False)
    """
    where = "fit_last_layer(problem, theta)"
    theta = problem.check_theta(where, theta)
    lf, y = problem.loss_fn, problem.targets
    if lf.name == "mse":
        target = y
    elif lf.name == "softmax_ce" and bool((y > 0).all()):
        target = torch.log(y)
    else:
        raise ValueError(f"{where}: no exact output-layer fit for loss={lf.name!r}"
                         + (" with zero target entries (the minimum is at infinity)"
                            if lf.name == "softmax_ce" else "")
                         + ". Use find_critical_point(problem, theta) instead.")
    idx = output_layer_indices(problem)
    offsets = np.cumsum((0,) + problem.param_numels)
    cols = torch.cat([torch.arange(int(offsets[i]), int(offsets[i + 1])) for i in idx])
    A = jacobian_blocks(problem, theta, idx)
    x0 = problem.output_fn(theta).detach().reshape(-1)
    c = x0 - A @ theta[cols]
    rtol = max(A.shape) * eps(problem.dtype)
    sol = torch.linalg.pinv(A, rtol=rtol) @ (target.reshape(-1) - c)
    new = theta.clone()
    new[cols] = sol
    x1 = problem.output_fn(new).detach()
    predicted = A @ sol + c
    scale = max(1.0, float(predicted.abs().max()))
    if float((x1.reshape(-1) - predicted).abs().max()) > math.sqrt(eps(problem.dtype)) * scale:
        raise ValueError(f"{where}: the outputs are not affine in the last parameters "
                         f"{[problem.param_names[i] for i in idx]}; an exact least-squares fit "
                         "needs a linear output layer.")
    if not (exact or info):
        return new
    fit = _fit_evidence(problem, idx, A, x1)
    if exact and not fit.exact:
        raise NoExactFitError(f"{where}: {fit.reason}. Widen the last hidden layer, use fewer "
                              "samples, or descend to a minimum with find_critical_point(problem, "
                              "theta).", fit=fit, theta=new)
    return (new, fit) if info else new


def _newton_steps(problem: Problem, theta: Tensor, g: Tensor, target: str,
                  dense_max_n: int = 3000) -> list[Tensor]:
    """Candidate steps, most aggressive first: Newton −H⁺∇L, then Levenberg–Marquardt damped.

    Dense (N ≤ dense_max_n), with H = V diag(λ) Vᵀ: for target="minimum" the steps are
    −V diag(1/(λ + μ)) Vᵀ∇L with μ = 0 (pseudo-inverse) then μ > −λ_min growing, which are
    descent directions; for target="any" they are −V diag(λ/(λ² + μ)) Vᵀ∇L, Gauss–Newton steps on
    the residual ∇L(θ) = 0. Large N: one MINRES solve of H δ = −∇L on the operator.
    """
    if problem.n_params > dense_max_n:
        op = hessian_operator(problem, theta)
        step, _ = minres(op, -g.numpy(), rtol=1e-12, maxiter=200)
        return [torch.as_tensor(step, dtype=theta.dtype)]
    lam, V = torch.linalg.eigh(hessian(problem, theta))
    gv = V.T @ g
    lmax = float(lam.abs().max()) or 1.0
    cut = problem.n_params * torch.finfo(lam.dtype).eps * lmax
    inv = torch.where(lam.abs() > cut, 1.0 / lam, torch.zeros_like(lam))
    steps = [-(V @ (inv * gv))]
    shift = max(0.0, -float(lam.min()))
    for mu in (1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2):
        if target == "minimum":
            steps.append(-(V @ (gv / (lam + shift + mu * lmax))))
        else:
            steps.append(-(V @ (lam * gv / (lam**2 + (mu * lmax) ** 2))))
    return steps


def _gauss_newton_step(problem: Problem, theta: Tensor) -> Tensor:
    """Step J⁺ δx with δx = −W⁺ ∇ₓC, the Newton step of C in output space, pulled back by J."""
    x = problem.output_fn(theta).detach()
    lf, y = problem.loss_fn, problem.targets
    W = lf.output_hessian(x, y)
    dx = -torch.linalg.lstsq(W, lf.output_grad(x, y).reshape(-1, 1), driver="gelsd").solution
    J = jacobian(problem, theta)
    return torch.linalg.lstsq(J, dx, driver="gelsd").solution[:, 0]


ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
"""PyTorch's Adam defaults, used by ``find_critical_point`` and ``train_many``."""


def _adam(problem: Problem, theta: Tensor, steps: int, lr: float, history: list[dict]) -> Tensor:
    """Full-batch Adam on the flat θ: ``torch.optim.Adam``'s update, operation for operation.

    The update of ``torch.optim.Adam`` (CPU single-tensor path, default options) without its
    per-step bookkeeping: m ← lerp(m, g, 1 − β₁), v ← β₂v + (1 − β₂)g², θ ← θ − lr/(1 − β₁ᵗ) ·
    m / (√v / √(1 − β₂ᵗ) + ε). The same floating-point operations in the same order give the
    same iterates bit for bit, at a fraction of the optimizer's per-step overhead.
    """
    b1, b2 = ADAM_BETAS
    t = theta.clone().requires_grad_(True)
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for i in range(steps):
        loss = problem.loss_at(t)
        (g,) = torch.autograd.grad(loss, t)
        with torch.no_grad():
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step = float(i + 1)
            denom = (v.sqrt() / (1 - b2**step) ** 0.5).add_(ADAM_EPS)
            t.addcdiv_(m, denom, value=-(lr / (1 - b1**step)))
        if i % max(1, steps // 20) == 0 or i == steps - 1:
            history.append({"phase": "adam", "step": i, "loss": loss.item(),
                            "grad_norm": g.norm().item()})
    return t.detach()


def find_critical_point(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    steps: int = 2000,
    target: str = "minimum",
    polish: str = "newton",
    tol: float = 1e-10,
    lr: float = 0.02,
    polish_steps: int = 50,
) -> tuple[Tensor, list[dict]]:
    """Descend (full-batch Adam), then polish in float64 to ‖∇L‖ ≤ tol · scale.

    The scale is that of the criticality test of ``analyze`` (σ_max(J) times the output-gradient
    scale). ``target="minimum"`` runs Adam first and accepts only polish steps that do not raise
    L; ``target="any"`` skips Adam and runs Newton on ∇L = 0 (it converges to the nearest critical
    point of any index), accepting steps that reduce ‖∇L‖.

    Args:
        problem: The model, data and loss.
        theta: Start (N,); default ``problem.theta``.
        steps: Adam steps (target="minimum").
        target: "minimum" or "any".
        polish: "newton" (−H⁺∇L with Levenberg–Marquardt damping when a full step fails),
            "gauss_newton" (−J⁺W⁺∇ₓC with backtracking) or "none".
        tol: Relative gradient tolerance.
        lr: Adam learning rate.
        polish_steps: Maximum polish iterations.

    Returns:
        (θ, history): the critical point (N,) and a list of {phase, step, loss, grad_norm}.

    Raises:
        NotCriticalError: If the polish stops above the tolerance; carries θ, ‖∇L‖, history.
        ValueError: For unknown options or invalid θ.
    """
    where = "find_critical_point(problem, theta)"
    check_option(where, "target", target, TARGETS)
    check_option(where, "polish", polish, POLISH)
    theta = problem.check_theta(where, theta)
    history: list[dict] = []

    if target == "minimum" and steps > 0:
        theta = _adam(problem, theta, steps, lr, history)
        if not math.isfinite(float(problem.loss_at(theta))):
            raise NotCriticalError(f"{where}: Adam diverged (non-finite loss); lower lr={lr}.",
                                   grad_norm=math.inf, tol=tol, theta=theta, history=history)

    def status(th: Tensor) -> tuple[float, float]:
        return float(problem.loss_at(th)), float(problem.grad(th).norm())

    loss, gnorm = status(theta)
    scale = gradient_scale(problem, theta)
    history.append({"phase": "polish", "step": 0, "loss": loss, "grad_norm": gnorm})
    for i in range(1, polish_steps + 1 if polish != "none" else 1):
        if gnorm <= tol * scale:
            break
        g = problem.grad(theta)
        if polish == "gauss_newton":
            gn = _gauss_newton_step(problem, theta)
            candidates = [a * gn for a in (1.0, 0.5, 0.25, 0.125, 0.0625)]
        else:
            candidates = _newton_steps(problem, theta, g, target)
        accepted = False
        for step in candidates:
            cand = theta + step
            c_loss, c_g = status(cand)
            if not (math.isfinite(c_loss) and math.isfinite(c_g)):
                continue
            better = c_g < gnorm if target == "any" else (c_loss <= loss + 1e-12 * abs(loss)
                                                          or c_g < gnorm * 1e-2)
            if better:
                theta, loss, gnorm, accepted = cand, c_loss, c_g, True
                break
        history.append({"phase": "polish", "step": i, "loss": loss, "grad_norm": gnorm})
        if not accepted:
            break
        if i % 5 == 0:
            scale = gradient_scale(problem, theta)
    scale = gradient_scale(problem, theta)
    if gnorm > tol * scale:
        raise NotCriticalError(
            f"{where}: {polish} polish stopped at ‖∇L‖ = {gnorm:.3g} > tol·scale = {tol * scale:.3g} "
            f"after {len(history)} recorded steps. Raise steps, use target=\"any\", or read "
            "err.theta, err.history.", grad_norm=gnorm, tol=tol * scale, theta=theta,
            history=history)
    return theta, history


TARGET_POINTS = ("global_minimum", "minimum", "as_is")


def reach(problem: Problem, target: str = "global_minimum", theta: Tensor | None = None, *,
          steps: int = 2000) -> Tensor:
    """The point to analyze: an exact fit, a polished minimum, or θ as given.

    "global_minimum": ``fit_last_layer`` (mse, softmax_ce with positive soft labels); if that is
    not a perfect fit, Adam + Newton polish; a point that still does not fit raises, and the
    message leads with the output layer's evidence ("no exact fit: features of rank r < n = …;
    residual …"). "minimum": ``find_critical_point(target="minimum")``. "as_is": θ unchanged.

    Args:
        problem: The model, data and loss.
        target: "global_minimum", "minimum" or "as_is".
        theta: Start (N,); default ``problem.theta``.
        steps: Adam steps when descent is needed.

    Returns:
        θ, shape (N,).

    Raises:
        NotCriticalError: If the requested point could not be reached (the message says why).
        ValueError: For an unknown target.
    """
    where = f"reach(problem, {target!r})"
    check_option(where, "target", target, TARGET_POINTS)
    theta = problem.check_theta(where, theta)
    if target == "as_is":
        return theta
    if target == "minimum":
        return find_critical_point(problem, theta, steps=steps, target="minimum")[0]
    try:
        fitted, fit = fit_last_layer(problem, theta, info=True)
    except ValueError as err:  # a loss without an affine optimum, or a nonlinear output layer
        lead = f"no exact fit: the output layer cannot be fitted by least squares ({err})"
    else:
        if fit.exact:
            return fitted
        lead = fit.reason
    descent = f"descent ({steps} Adam steps, Newton polish)"
    fix = ("Use target \"minimum\" to analyze the minimum descent reaches, or widen the last hidden "
           "layer.")
    try:
        found, history = find_critical_point(problem, theta, steps=steps, target="minimum")
    except NotCriticalError as err:
        raise NotCriticalError(f"{where}: {lead}; {descent} reached no critical point either "
                               f"(‖∇L‖ = {err.grad_norm:.3g} > {err.tol:.3g}). {fix}",
                               grad_norm=err.grad_norm, tol=err.tol, theta=err.theta,
                               history=err.history) from None
    fit_found = perfect_fit(problem, problem.output_fn(found).detach())
    if not fit_found.holds:
        raise NotCriticalError(
            f"{where}: {lead}; {descent} stopped at a critical point with max |residual| = "
            f"{fit_found.max_residual:.3g} > {fit_found.tol:.3g}. {fix}",
            grad_norm=float(problem.grad(found).norm()), tol=fit_found.tol, theta=found,
            history=history)
    return found


def _ensemble_data(where: str, problems: Problem | list[Problem], thetas: Tensor,
                   inputs: Tensor | None, targets: Tensor | None
                   ) -> tuple[Problem, Tensor, Tensor]:
    """(p0, X (S, n, …), Y (S, n, k)) of an ensemble: S problems, or one problem and S datasets.

    Raises:
        ValueError: For problems of different structure, thetas not (S, N), data of the wrong
            shape, or data given together with a list of problems.
    """
    single = isinstance(problems, Problem)
    group = [problems] if single else list(problems)
    if not group:
        raise ValueError(f"{where}: no problems given. Pass a Problem or a non-empty list.")
    p0 = group[0]
    for p in group[1:]:
        if (p.param_shapes != p0.param_shapes or p.inputs.shape != p0.inputs.shape
                or p.targets.shape != p0.targets.shape or p.loss_fn != p0.loss_fn):
            raise ValueError(f"{where}: every problem must share parameter shapes, data shapes "
                             "and loss with the first. Group the problems by architecture.")
    ok = isinstance(thetas, Tensor) and thetas.ndim == 2 and thetas.shape[1] == p0.n_params
    S = thetas.shape[0] if ok and single else len(group)
    if not ok or thetas.shape[0] != S:
        got = tuple(thetas.shape) if isinstance(thetas, Tensor) else type(thetas).__name__
        raise ValueError(f"{where}: thetas must have shape ({'S' if single else S}, "
                         f"{p0.n_params}), got {got}. Stack one flat θ per run.")
    if not single:
        if inputs is not None or targets is not None:
            raise ValueError(f"{where}: inputs and targets go with a single Problem; a list of "
                             "problems carries its own data. Pass one or the other.")
        return p0, torch.stack([p.inputs for p in group]), torch.stack([p.targets for p in group])
    X = p0.inputs.expand(S, *p0.inputs.shape) if inputs is None else torch.as_tensor(inputs)
    Y = p0.targets.expand(S, *p0.targets.shape) if targets is None else torch.as_tensor(targets)
    if X.shape != (S, *p0.inputs.shape) or Y.shape != (S, *p0.targets.shape):
        raise ValueError(f"{where}: inputs and targets must have shapes {(S, *p0.inputs.shape)} "
                         f"and {(S, *p0.targets.shape)}, got {tuple(X.shape)} and "
                         f"{tuple(Y.shape)}. Stack one dataset per run, shaped like the "
                         "problem's own.")
    return p0, X.to(p0.inputs.dtype), Y.to(p0.dtype)


def _frozen_mask(where: str, frozen: Tensor | None, S: int, N: int) -> Tensor | None:
    """``frozen`` as a boolean (S, N) mask, or None.

    Raises:
        ValueError: For a mask that is not boolean of shape (N,) or (S, N).
    """
    if frozen is None:
        return None
    frozen = torch.as_tensor(frozen)
    if frozen.dtype != torch.bool or tuple(frozen.shape) not in ((N,), (S, N)):
        raise ValueError(f"{where}: frozen must be a boolean mask of shape ({N},) or ({S}, {N}), "
                         f"got {frozen.dtype} {tuple(frozen.shape)}. Mark the coordinates to hold "
                         "fixed with True.")
    return frozen.expand(S, N)


def train_many(problems: Problem | list[Problem], thetas: Tensor, *, steps: int = 4000,
               lr: float = 0.02, inputs: Tensor | None = None, targets: Tensor | None = None,
               frozen: Tensor | None = None,
               gradient: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """Full-batch Adam on S runs of one architecture at once (one ``vmap`` of the gradient).

    The runs are S problems sharing model structure, loss and data shapes (each with its own
    data), or one problem with S stacked datasets (``inputs``, ``targets``); building one
    Problem instead of S saves its validation cost S − 1 times. Adam uses PyTorch's defaults
    (β₁ = 0.9, β₂ = 0.999, ε = 1e-8): m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²,
    θ ← θ − lr·m̂/(√v̂ + ε) with bias-corrected m̂, v̂. Frozen coordinates get g = 0, so their
    m, v and update stay exactly 0.

    Args:
        problems: S problems with identical parameter and data shapes, or one problem.
        thetas: Starting points, shape (S, N).
        steps: Adam steps.
        lr: Learning rate.
        inputs: With one problem: the runs' inputs (S, n, d…); default the problem's own.
        targets: With one problem: the runs' targets (S, n, k); default the problem's own.
        frozen: Optional boolean mask (S, N) or (N,) of coordinates held fixed.
        gradient: Optional batched gradient (θ (S, N), X (S, n, d…), Y (S, n, k)) → ∇L per run
            (S, N), used instead of ``vmap(grad(L))``: a hand-batched forward of a known
            architecture skips the per-operation cost of the vmap transform. It must equal the
            vmapped gradient (the caller's test).

    Returns:
        Trained parameters, shape (S, N).

    Raises:
        ValueError: If the problems differ in structure, or thetas, the data or frozen have the
            wrong shape.

    Example:
        >>> import torch, lossgeom as lg
        >>> from lossgeom.reach import train_many
        >>> X = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(1, 1, bias=False).double(), X, 3 * X)
        >>> theta = train_many(p, torch.zeros(2, 1, dtype=torch.float64), steps=500, lr=0.1,
        ...                    targets=torch.stack([3 * X, -X]))
        >>> [round(w, 6) for w in theta[:, 0].tolist()]       # least squares: w = 3 and w = −1
        [3.0, -1.0]
    """
    where = "train_many(problems, thetas)"
    p0, X, Y = _ensemble_data(where, problems, thetas, inputs, targets)
    mask = _frozen_mask(where, frozen, *thetas.shape)

    def loss(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return p0.loss_fn(p0._call(p0.unflatten(theta), x), y)

    grads = torch.func.vmap(torch.func.grad(loss)) if gradient is None else gradient
    theta = thetas.detach().clone().to(p0.dtype)
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    (b1, b2), eps_ = ADAM_BETAS, ADAM_EPS
    for t in range(1, steps + 1):
        g = grads(theta, X, Y)
        if mask is not None:
            g = g.masked_fill(mask, 0.0)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / (1 - b2**t)).sqrt_().add_(eps_)
        theta.addcdiv_(m, denom, value=-lr / (1 - b1**t))
    return theta


POLISH_FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625)
"""Step fractions a of the Gauss–Newton step a·δ that ``polish_many`` tries, longest first."""


def polish_many(problems: Problem | list[Problem], thetas: Tensor, *, tol: float = 1e-12,
                steps: int = 30, inputs: Tensor | None = None, targets: Tensor | None = None,
                frozen: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Gauss–Newton polish θ ← θ − J⁺ r on S mse problems of one structure at once (§6.3).

    Per run, r = x(θ) − y (n·k,) and J = ∂x/∂θ (n·k, N), all from one ``vmap(jacrev)`` over
    the ensemble; J⁺ r by a batched SVD pseudo-inverse (singular values below
    max(n·k, N)·eps·σ₁ dropped, so rank-deficient J is fine). Each run takes the longest step
    a·δ, a ∈ ``POLISH_FRACTIONS``, that lowers ‖r‖ and stops once max |r| < tol or when no
    fraction lowers ‖r‖. Frozen coordinates keep their values: their columns of J are set to
    zero, which makes δ the Gauss–Newton step of the free coordinates alone.

    Args:
        problems: S problems with loss "mse" and identical parameter and data shapes, or one
            problem (see ``train_many``).
        thetas: Starting points, shape (S, N).
        tol: Stop a run once max |r| < tol.
        steps: Maximum Gauss–Newton iterations.
        inputs: With one problem: the runs' inputs (S, n, d…); default the problem's own.
        targets: With one problem: the runs' targets (S, n, k); default the problem's own.
        frozen: Optional boolean mask (S, N) or (N,) of coordinates held fixed.

    Returns:
        (θ, max_residual): the polished points (S, N) and max |r| of each run (S,).

    Raises:
        ValueError: If the problems differ in structure, the loss is not mse, or thetas or
            frozen have the wrong shape.

    Example:
        >>> import torch, lossgeom as lg
        >>> from lossgeom.reach import polish_many
        >>> X = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        >>> ps = [lg.Problem(torch.nn.Linear(1, 1).double(), X, X * a + 1) for a in (2.0, -3.0)]
        >>> theta, res = polish_many(ps, torch.zeros(2, 2, dtype=torch.float64))
        >>> theta.round(decimals=10).tolist(), bool((res < 1e-12).all())   # y = a x + 1: (w, b) = (a, 1)
        ([[2.0, 1.0], [-3.0, 1.0]], True)
    """
    where = "polish_many(problems, thetas)"
    p0, X, Y = _ensemble_data(where, problems, thetas, inputs, targets)
    if p0.loss_fn.name != "mse":
        raise ValueError(f"{where}: the Gauss–Newton polish θ ← θ − J⁺ r is for loss \"mse\", got "
                         f"{p0.loss_fn.name!r}. Use find_critical_point(problem, theta) per "
                         "problem instead.")
    S, N = thetas.shape
    frozen = _frozen_mask(where, frozen, S, N)
    Y = Y.reshape(S, -1)

    def outputs(theta: Tensor, x: Tensor) -> Tensor:
        return p0._call(p0.unflatten(theta), x).reshape(-1)

    batched = torch.func.vmap(outputs)
    jac = torch.func.vmap(torch.func.jacrev(outputs))
    fractions = torch.tensor(POLISH_FRACTIONS, dtype=p0.dtype)
    A = len(POLISH_FRACTIONS)
    theta = thetas.detach().clone().to(p0.dtype)
    with torch.no_grad():
        r = batched(theta, X) - Y
    active = r.abs().amax(-1) >= tol
    runs = torch.arange(S)
    rtol = max(Y.shape[1], N) * eps(p0.dtype)
    for _ in range(steps):
        if not bool(active.any()):
            break
        J = jac(theta, X)
        if frozen is not None:
            J = J.masked_fill(frozen[:, None, :], 0.0)
        delta = -(torch.linalg.pinv(J, rtol=rtol) @ r[..., None])[..., 0]
        if frozen is not None:
            delta = delta.masked_fill(frozen, 0.0)
        cand = theta[None] + fractions[:, None, None] * delta[None]          # (A, S, N)
        with torch.no_grad():
            rc = (batched(cand.reshape(A * S, N), X.repeat(A, *(1,) * (X.ndim - 1)))
                  .reshape(A, S, -1) - Y[None])
        norms = rc.norm(dim=-1)
        better = (norms < r.norm(dim=-1)[None]) & torch.isfinite(norms)     # (A, S)
        moved = better.any(0) & active
        first = better.to(torch.int8).argmax(0)
        theta = torch.where(moved[:, None], cand[first, runs], theta)
        r = torch.where(moved[:, None], rc[first, runs], r)
        active = moved & (r.abs().amax(-1) >= tol)
    return theta, r.abs().amax(-1)
