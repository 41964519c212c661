"""Reaching critical points: exact last-layer fits and descent followed by a float64 polish."""

from __future__ import annotations

import math

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
from .problem import Problem
from .tolerances import eps

__all__ = ["find_critical_point", "fit_last_layer", "output_layer_indices"]

POLISH = ("newton", "gauss_newton", "none")
TARGETS = ("minimum", "any")


def gradient_scale(problem: Problem, theta: Tensor) -> float:
    """The criticality scale of ``analyze`` at θ (σ_max(J) from the Linearization's power iteration)."""
    lin = linearize(problem, theta, where="find_critical_point(problem, theta)", validate=False)
    return criticality(problem, theta, lin.outputs, 0.0, lin.sigma_max).scale


def output_layer_indices(problem: Problem) -> list[int]:
    """Indices of the output layer's parameter tensors: the last weight (k, h) and its bias (k,)."""
    shapes, k = problem.param_shapes, problem.n_outputs
    last = len(shapes) - 1
    if len(shapes[last]) == 1 and last > 0 and len(shapes[last - 1]) == 2 \
            and shapes[last - 1][0] == shapes[last][0] == k:
        return [last - 1, last]
    return [last]


def fit_last_layer(problem: Problem, theta: Tensor | None = None) -> Tensor:
    """Fit the output layer exactly by least squares, other parameters fixed.

    With features φ (the last hidden layer, plus a ones column for a bias) the outputs are affine
    in the output layer's parameters θ_L: x = A θ_L + c, A = ∂x/∂θ_L. The minimum-norm solution
    of A θ_L = x* − c, with x* = y (mse) or log y (softmax_ce, soft labels), is an exact fit
    whenever the augmented feature matrix has rank n.

    Args:
        problem: The model, data and loss (mse, or softmax_ce with positive soft labels).
        theta: Flat parameters (N,); default ``problem.theta``.

    Returns:
        θ with the output layer replaced, shape (N,).

    Raises:
        ValueError: For a loss whose optimal outputs are not affine-reachable (bce, ce_prob,
            one-hot softmax_ce), or an output layer that is not affine in its parameters.

    Example:
        >>> import torch, lossgeom as lg
        >>> _ = torch.manual_seed(0)
        >>> X, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
        >>> p = lg.Problem(lg.mlp([3, 6, 1], bias=False), X, y)
        >>> float(p.loss(lg.fit_last_layer(p))) < 1e-20
        True
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
    x1 = problem.output_fn(new).detach().reshape(-1)
    predicted = A @ sol + c
    scale = max(1.0, float(predicted.abs().max()))
    if float((x1 - predicted).abs().max()) > math.sqrt(eps(problem.dtype)) * scale:
        raise ValueError(f"{where}: the outputs are not affine in the last parameters "
                         f"{[problem.param_names[i] for i in idx]}; an exact least-squares fit "
                         "needs a linear output layer.")
    return new


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
        t = theta.clone().requires_grad_(True)
        opt = torch.optim.Adam([t], lr=lr)
        for i in range(steps):
            opt.zero_grad()
            loss = problem.loss_at(t)
            loss.backward()
            opt.step()
            if i % max(1, steps // 20) == 0 or i == steps - 1:
                history.append({"phase": "adam", "step": i, "loss": loss.item(),
                                "grad_norm": t.grad.norm().item()})
        theta = t.detach()
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
    not a perfect fit, Adam + Newton polish; a point that still does not fit raises.
    "minimum": ``find_critical_point(target="minimum")``. "as_is": θ unchanged.

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
    where = "reach(problem, target)"
    check_option(where, "target", target, TARGET_POINTS)
    theta = problem.check_theta(where, theta)
    if target == "as_is":
        return theta
    if target == "minimum":
        return find_critical_point(problem, theta, steps=steps, target="minimum")[0]
    try:
        fitted = fit_last_layer(problem, theta)
        if perfect_fit(problem, problem.output_fn(fitted).detach()).holds:
            return fitted
    except ValueError:
        pass
    found, history = find_critical_point(problem, theta, steps=steps, target="minimum")
    fit = perfect_fit(problem, problem.output_fn(found).detach())
    if not fit.holds:
        raise NotCriticalError(
            f"{where}: no exact fit: the output layer cannot interpolate and descent stopped at a "
            f"critical point with max |residual| = {fit.max_residual:.3g} > {fit.tol:.3g}.",
            grad_norm=float(problem.grad(found).norm()), tol=fit.tol, theta=found,
            history=history)
    return found


def train_many(problems: list[Problem], thetas: Tensor, *, steps: int = 4000, lr: float = 0.02
               ) -> Tensor:
    """Full-batch Adam on S problems of one architecture at once (``vmap`` over runs).

    All problems must share the model structure, loss and data shapes; each has its own data.
    Adam uses PyTorch's defaults (β₁ = 0.9, β₂ = 0.999, ε = 1e-8).

    Args:
        problems: S problems with identical parameter shapes and data shapes.
        thetas: Starting points, shape (S, N).
        steps: Adam steps.
        lr: Learning rate.

    Returns:
        Trained parameters, shape (S, N).

    Raises:
        ValueError: If the problems differ in structure or thetas has the wrong shape.
    """
    where = "train_many(problems, thetas)"
    if not problems:
        raise ValueError(f"{where}: no problems given.")
    p0 = problems[0]
    for p in problems[1:]:
        if (p.param_shapes != p0.param_shapes or p.inputs.shape != p0.inputs.shape
                or p.targets.shape != p0.targets.shape or p.loss_fn != p0.loss_fn):
            raise ValueError(f"{where}: every problem must share parameter shapes, data shapes "
                             "and loss with the first.")
    if thetas.shape != (len(problems), p0.n_params):
        raise ValueError(f"{where}: thetas has shape {tuple(thetas.shape)}, expected "
                         f"({len(problems)}, {p0.n_params}).")
    X = torch.stack([p.inputs for p in problems])
    Y = torch.stack([p.targets for p in problems])

    def loss(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return p0.loss_fn(p0._call(p0.unflatten(theta), x), y)

    grads = torch.func.vmap(torch.func.grad(loss))
    theta = thetas.clone().to(p0.dtype)
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    b1, b2, eps_ = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        g = grads(theta, X, Y)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        step = lr / (1 - b1**t)
        theta -= step * m / ((v / (1 - b2**t)).sqrt() + eps_)
    return theta
