"""analyze: criticality test, rank of J, Gauss–Newton and Hessian spectra, classification → Report.

Every number is decided by a route recorded in the Report; docs/routes.md explains each one.

* rank J — the ``Linearization`` of θ (``curvature.linearization``): an SVD of J when n·k ≥ N or
  J is ill-conditioned and fits, else the Gram route K = J Jᵀ with its floor and SVD refinement.
* Gauss–Newton G = Jᵀ W J (W = ∇²ₓC ⪰ 0 for the built-in losses): its nonzero eigenvalues are the
  squared singular values of W^½ J, so its rank is decided on singular values, never on the
  squared ones. A custom loss whose W is not positive semidefinite falls back to the eigenvalues
  of Σ Uᵀ W U Σ from J = U Σ Vᵀ.
* Hessian (``hessian=``) — ``gram`` (method "gauss_newton"): at a critical perfect fit where
  ∇ₓC = 0 the residual term vanishes and H = G exactly, certified by the singular values of
  W^½ J; ``dense``: H from blocks of HVPs and ``eigvalsh``; ``lanczos``: the 10 largest and
  smallest eigenvalues by ``eigsh`` on the HVP operator, counts left null unless every eigenvalue
  has one sign.

Criticality (``criticality``): ‖∇L‖ ≤ tol = max(rtol_c · scale, floor) with scale = σ_max(J) ·
max(‖∇ₓC(x)‖, ‖∇ₓC(x_ref)‖), rtol_c = max(1e-8, 1e3·eps(dtype)). Since ∇L = Jᵀ∇ₓC,
σ_max(J)·‖∇ₓC‖ bounds ‖∇L‖; x_ref (zero outputs for mse and logits, 1/2 for bce, 1/k for ce_prob)
sets the scale where the fit is perfect and ∇ₓC vanishes. The floor, ``CRITICAL_FLOOR_EPS``·eps ·
σ_max(J)² · ‖∇²ₓC‖₂ · ‖θ‖, bounds the gradient that round-off in the outputs (relative to the output
scale σ_max(J)·‖θ‖ the parameters produce) can cause; it matters only when outputs and targets
vanish together, where the first term vanishes with them.

Classification (``classify``): noncritical if the test fails; global_minimum if critical, the
outputs minimize C (perfect fit) and C is convex in x; otherwise by the Hessian's signs: all
positive → strict_local_minimum; some negative and none zero or positive → strict_local_maximum;
some negative otherwise → strict_saddle; no negative and some zero → nonstrict_local_minimum when
the kernel probe certifies a manifold of critical points tangent to ker H (Morse–Bott), else
degenerate.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor

from ._checks import (
    DEFAULT_MAX_BYTES,
    check_dense_budget,
    check_finite,
    check_option,
    check_rtol,
    check_seconds,
    format_bytes,
)
from ._timing import stage
from .curvature._density import hessian_spectrum
from .curvature._hessian import dense_second_order, hessian_operator, make_hvp_block
from .curvature.linearization import Linearization, Route, linearize
from .linalg._inertia import inertia_from_eigenvalues
from .linalg.krylov import LowRankSpectrum, low_rank_spectrum
from .linalg.slq import SpectralDensity, degeneracy_profile
from .linalg.spectrum import extreme_eigenpairs, lanczos_basis_size
from .problem import Problem
from .report import BlockSummary, GaussNewtonSummary, HessianSummary, Report
from .results import (
    Certificate,
    Criticality,
    Inertia,
    Kind,
    PerfectFit,
    RankDecision,
    RankIdentity,
)
from .tolerances import (
    CRITICAL_FLOOR_EPS,
    CRITICAL_RTOL,
    KERNEL_PROBE_DIRECTIONS,
    KERNEL_PROBE_STEPS,
    PERFECT_FIT_RTOL,
    eps,
)

__all__ = [
    "DENSE_MAX_N", "HessianRoute", "Method", "analyze", "classify", "criticality",
    "perfect_fit",
]

DENSE_MAX_N = 4000
"""Largest N for which ``analyze(method="auto")`` builds the dense Hessian (eigvalsh ≈ 6 s here)."""

N_EXTREME = 10
LANCZOS_TOL = 1e-12
"""Relative accuracy asked of ARPACK for the extreme Hessian eigenvalues (float64)."""
LANCZOS_MAXITER = 100
"""Restarts allowed per ``eigsh`` call (≈ 1 000 HVPs); one that runs out keeps the pairs that
converged and reports ``decided=False``. The bottom pairs are computed on H + λ_max·I, so their
accuracy is relative to ‖H‖ rather than to the tiny |λ| of a cluster near zero."""


class Method(StrEnum):
    """Which algorithms ``analyze`` may use.

    AUTO: pick by cost: dense matrices while they are cheap, operators beyond.
    DENSE: dense J (SVD) and dense H (eigvalsh); refuses above ``max_bytes``. Most certain:
        full spectra, every count decided by its gap.
    OPERATOR: Gram matrix for rank J, the Gauss–Newton identity at a perfect fit, iterative
        eigensolvers otherwise; feasible at large N.
    """

    AUTO = "auto"
    DENSE = "dense"
    OPERATOR = "operator"


class HessianRoute(StrEnum):
    """How ``analyze`` decides the Hessian's rank and inertia.

    AUTO: gram at a critical perfect fit whose residual term vanishes; dense while N is small;
        krylov while a basis of ``max_rank`` columns fits ``max_bytes``, and the profile where
        krylov gives up (the cost model of ``_auto_route``; the Report's routes say why).
    DENSE: the assembled N × N matrix and ``eigvalsh``: every eigenvalue, O(N³).
    GRAM: H = Jᵀ ∇²ₓC J at a perfect fit, decided on the singular values of (∇²ₓC)^½ J.
    KRYLOV: block Krylov on batched HVPs until its subspace is invariant: the nonzero spectrum of a
        Hessian of rank ≤ ``max_rank``, rank and inertia certified with a stated failure
        probability; gives up (undecided) past ``max_rank`` or ``max_bytes``.
    PROFILE: no certificate: a degeneracy profile from stochastic Lanczos quadrature, counts of
        eigenvalues above ε·|λ|max with confidence bounds.
    LANCZOS: extreme eigenpairs by ``eigsh`` on HVPs; counts only where every eigenvalue has one
        sign.
    NONE: skip the Hessian.
    """

    AUTO = "auto"
    DENSE = "dense"
    GRAM = "gram"
    KRYLOV = "krylov"
    PROFILE = "profile"
    LANCZOS = "lanczos"
    NONE = "none"


def criticality(problem: Problem, theta: Tensor, x: Tensor, grad_norm: float, sigma_max: float
                ) -> Criticality:
    """The criticality test of the module docstring at θ with outputs x (n, k).

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(2, 1))
        >>> criticality(p, torch.zeros(2, dtype=torch.float64), torch.zeros(2, 1), 0.0, 1.6).critical
        True
    """
    lf, y = problem.loss_fn, problem.targets
    g_here = float(torch.linalg.norm(lf.output_grad(x, y)))
    g_ref = float(torch.linalg.norm(lf.output_grad(lf.reference_outputs(y), y)))
    scale = sigma_max * max(g_here, g_ref)
    rtol = max(CRITICAL_RTOL, 1e3 * eps(problem.dtype))
    floor = (CRITICAL_FLOOR_EPS * eps(problem.dtype) * sigma_max**2
             * _output_hessian_norm(problem, x) * float(torch.linalg.norm(theta)))
    tol = max(rtol * scale, floor)
    return Criticality(grad_norm, tol, scale, rtol, grad_norm <= tol, floor)


def _output_hessian_norm(problem: Problem, x: Tensor) -> float:
    """‖∇²ₓC‖₂ at x: the largest block norm, or power iteration for a custom loss."""
    lf, y = problem.loss_fn, problem.targets
    blocks = lf.output_hessian_blocks(x, y)
    if blocks is not None:
        return float(torch.linalg.matrix_norm(blocks, ord=2).max()) if blocks.numel() else 0.0
    u = torch.ones_like(x) / math.sqrt(x.numel())
    norm = 0.0
    for _ in range(20):
        w = lf.output_hvp(x, y, u)
        norm = float(torch.linalg.norm(w))
        if norm == 0.0:
            break
        u = w / norm
    return norm


def perfect_fit(problem: Problem, x: Tensor) -> PerfectFit:
    """Whether the outputs x (n, k) minimize C: max |fit residual| ≤ rtol·max(1, max|y|).

    Example:
        >>> import torch, lossgeom as lg
        >>> p = lg.Problem(torch.nn.Linear(1, 1).double(), torch.ones(2, 1), torch.ones(2, 1))
        >>> perfect_fit(p, torch.ones(2, 1, dtype=torch.float64)).holds
        True
    """
    r = problem.loss_fn.fit_residual(x, problem.targets)
    max_res = float(r.abs().max())
    rtol = max(PERFECT_FIT_RTOL, 100 * eps(problem.dtype))
    tol = rtol * max(1.0, float(problem.targets.abs().max()))
    return PerfectFit(max_res, tol, max_res <= tol)


def classify(critical: bool, minimizes_c: bool, inertia: Inertia | None, *,
             extremes: tuple[float, float, float] | None = None,
             manifold_of_minima: str | None = None) -> tuple[Kind, str]:
    """The kind of a point from its criticality, fit and Hessian counts (module docstring).

    Args:
        critical: The criticality test passed.
        minimizes_c: The outputs minimize C and C is convex in x.
        inertia: Hessian counts; entries may be None (undecided).
        extremes: (λ_min, λ_max, tol) when only extreme eigenvalues are known.
        manifold_of_minima: The kernel probe's certificate that the zero eigenvectors are tangent
            to a manifold of critical points ("" or None when absent or failed).

    Returns:
        (kind, reason).

    Example:
        >>> from lossgeom.results import Inertia
        >>> classify(True, False, Inertia(3, 1, 0, 1e-12, float("inf")))[0]
        <Kind.STRICT_SADDLE: 'strict_saddle'>
    """
    if not critical:
        return Kind.NONCRITICAL, "‖∇L‖ exceeds the criticality tolerance"
    if minimizes_c:
        return Kind.GLOBAL_MINIMUM, "critical, the outputs minimize C, and C is convex in x"
    if inertia is not None and inertia.positive is not None:
        pos, neg, zero = inertia.as_list()
    elif extremes is not None:  # signs of λ_min and λ_max, zero if either lies within tol
        lo, hi, tol = extremes
        neg, pos = int(lo < -tol), int(hi > tol)
        zero = int(abs(lo) <= tol or abs(hi) <= tol)
    else:
        return Kind.DEGENERATE, ("the extreme eigenvalues were not found: the second-order test "
                                 "is inconclusive")
    if neg == 0 and zero == 0:
        return Kind.STRICT_LOCAL_MINIMUM, "every Hessian eigenvalue is positive"
    if neg > 0 and pos == 0 and zero == 0:
        return Kind.STRICT_LOCAL_MAXIMUM, "every Hessian eigenvalue is negative"
    if neg > 0:
        why = "negative and positive eigenvalues" if pos else "negative and zero eigenvalues only"
        return Kind.STRICT_SADDLE, f"{why}: a direction of negative curvature rules out a minimum"
    if manifold_of_minima:
        return Kind.NONSTRICT_LOCAL_MINIMUM, manifold_of_minima
    return Kind.DEGENERATE, ("no negative eigenvalue but some zero: the second-order test is "
                             "inconclusive")


def _output_hessian_root(problem: Problem, x: Tensor) -> tuple[Tensor, float | None] | None:
    """(W^½ blocks (n, k, k), c if W = c·I else None) for W = ∇²ₓC ⪰ 0; None if W is indefinite."""
    lf, y = problem.loss_fn, problem.targets
    blocks = lf.output_hessian_blocks(x, y)
    n, k = x.shape
    if blocks is None:  # a custom loss: its dense W, split into per-sample blocks if it is one
        W = lf.output_hessian(x, y).to(torch.float64)
        mask = torch.block_diag(*torch.ones(n, k, k, dtype=torch.bool))
        if bool(W[~mask].abs().max() > 0) if n > 1 else False:
            return None
        blocks = torch.stack([W[i * k:(i + 1) * k, i * k:(i + 1) * k] for i in range(n)])
    blocks = 0.5 * (blocks + blocks.transpose(1, 2)).to(torch.float64)
    lam, Q = torch.linalg.eigh(blocks)
    # eigenvalues at the round-off of their block are zero: √ would lift eps·|λ|max to √eps
    cut = max(1, k) * eps(torch.float64) * lam.abs().amax(dim=1, keepdim=True)
    if bool((lam < -cut).any()):
        return None
    root = (Q * torch.where(lam > cut, lam, 0.0).sqrt()[:, None, :]) @ Q.transpose(1, 2)
    diag = torch.diagonal(blocks, dim1=1, dim2=2)
    c = float(diag.flatten()[0]) if diag.numel() else 0.0
    scalar = bool(torch.equal(blocks, c * torch.eye(k, dtype=blocks.dtype).expand(n, k, k)))
    return root, (c if scalar else None)


def _gauss_newton(problem: Problem, lin: Linearization, x: Tensor, rtol: float | None
                  ) -> tuple[GaussNewtonSummary, Tensor, bool]:
    """G's summary, its eigenvalues (N,), and whether they came from singular values of W^½ J.

    G's rank is that of W^½ J, decided on its singular values with the rank rule of J itself
    (rtol on σ; default max(n·k, N)·eps): for mse, W = c·I and the decision is J's own, scaled,
    so at a perfect fit rank H = rank G = rank J exactly as ∇²L = 2JᵀJ says. The summary is
    written in eigenvalue units (tol², gap², rtol²).
    """
    N, dtype = problem.n_params, problem.dtype
    root = _output_hessian_root(problem, x)
    if root is not None:
        B, c = root
        if c is not None and lin.route in ("svd", "gram", "gram+svd"):
            f = math.sqrt(c)
            j = lin.decision
            d = dataclasses.replace(
                j, tol=j.tol * f, sigma_max=j.sigma_max * f,
                sigma_r=None if j.sigma_r is None else j.sigma_r * f,
                sigma_next=None if j.sigma_next is None else j.sigma_next * f)
            S = lin.singular_values * f
        else:
            d, S = lin.scaled_decision(B, rtol)
        lam = torch.sort(torch.cat([S**2, S.new_zeros(max(0, N - S.numel()))])).values[-N:]
        inert = Inertia(d.rank, 0, N - d.rank, d.tol**2,
                        (d.gap**2 if math.isfinite(d.gap) else math.inf), d.rtol**2, d.decided)
        return GaussNewtonSummary(d.rank, inert.tol, inert.gap, d.decided, d.method, inert), lam, True
    W, S = lin.left_factors()
    US = W * S
    M = US.T @ (problem.loss_fn.output_hessian(x, problem.targets).to(torch.float64) @ US)
    lam = torch.linalg.eigvalsh(0.5 * (M + M.T))
    lam = torch.sort(torch.cat([lam, lam.new_zeros(max(0, N - lam.numel()))])).values
    inert = inertia_from_eigenvalues(lam, rtol, dtype=dtype, n=N)
    return (GaussNewtonSummary(inert.rank, inert.tol, inert.gap, inert.decided, "eigenvalues",
                               inert), lam, False)


def _extremes(lam: Tensor) -> tuple[list[float], list[float]]:
    lam = torch.sort(lam).values
    return lam.flip(0)[:N_EXTREME].tolist(), lam[:N_EXTREME].tolist()


def _summary(lam: Tensor, inert: Inertia, method: str, certificate: Certificate, *,
             spectrum: bool = True, reason: str = "") -> HessianSummary:
    top, bottom = _extremes(lam)
    return HessianSummary(
        rank=inert.rank, tol=inert.tol, gap=inert.gap, inertia=inert, method=method,
        decided=inert.decided, top_eigenvalues=top, bottom_eigenvalues=bottom,
        asymmetry=inert.asymmetry, rtol=inert.rtol, certificate=certificate,
        spectrum=torch.sort(lam).values.tolist() if spectrum else None,
        reason=reason if not inert.decided else "")


def analyze(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    method: str = "auto",
    rtol: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    dense_max_n: int = DENSE_MAX_N,
    hessian: str = "auto",
    max_rank: int | None = None,
    blocks: str | list | None = None,
    rng: torch.Generator | int | None = 0,
    progress: Callable[[str, int, int], None] | None | bool = None,
    max_seconds: float | None = None,
) -> Report:
    """Certified local geometry of L at θ: criticality, rank J, G and H spectra, kind.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        method: "auto", "dense" or "operator" (see ``Method``).
        rtol: Relative tolerance for every rank and inertia decision (J, G, H); default the rule
            of ``lossgeom.tolerances`` for each (max(m, n)·eps for J, N·eps for H).
        max_bytes: Memory budget of any dense matrix.
        dense_max_n: Largest N for the dense Hessian under method="auto".
        hessian: "auto", "dense", "gram", "krylov", "profile", "lanczos" or "none" (see
            ``HessianRoute``).
        max_rank: Largest Hessian rank the krylov route may certify (default: as many basis
            columns as ``max_bytes`` holds).
        blocks: None, "module" (one block per top-level module: the first component of the
            parameter names) or a list of blocks, each a list of name prefixes: per block the rank
            of J_b (the columns of J of its parameters) and the rank and inertia of the diagonal
            block H_bb, each decided by this same routine on the Problem restricted to the block.
        rng: Seed or generator of the random probes (krylov, profile); default 0, reproducible.
        progress: None or False (silent), or a callable progress(stage, done, total) that front
            ends turn into a bar (the CLI draws a Rich bar for the iterative routes).
        max_seconds: Wall-time budget of the iterative Hessian routes (default none: they are
            bounded by ``max_rank``/``max_bytes``, the profile's probes × steps and
            ``LANCZOS_MAXITER`` restarts). krylov gives up when it is spent (and, under "auto",
            the profile runs next, in full); lanczos converts it into a restart cap from one
            timed product and returns the pairs that converged, with residuals.

    Returns:
        A Report; see ``lossgeom.report`` for every field.

    Raises:
        ValueError: For an unknown method, θ of the wrong length or non-finite θ, outputs or
            loss, rtol outside (0, 1), hessian="gram" away from a critical perfect fit, or a
            block that selects no parameter.
        DenseTooLargeError: With method="dense" when J or H exceeds ``max_bytes``.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> r = lg.analyze(p, torch.zeros(2, dtype=torch.float64))
        >>> r.kind, r.hessian.inertia.as_list(), r.behavior_manifold_dim
        (<Kind.GLOBAL_MINIMUM: 'global_minimum'>, [2, 0, 0], 0)
    """
    where = "analyze(problem, theta)"
    method_ = Method(check_option(where, "method", method, [m.value for m in Method]))
    route_h = HessianRoute(check_option(where, "hessian", hessian, [h.value for h in HessianRoute]))
    check_rtol(where, rtol)
    if max_seconds is not None:
        max_seconds = check_seconds(where, "max_seconds", max_seconds)
    theta = problem.check_theta(where, theta)
    timings: dict[str, float] = {}
    N, n, k = problem.n_params, problem.n_samples, problem.n_outputs
    dtype, lf = problem.dtype, problem.loss_fn
    routes: list[str] = []

    with stage(timings, "gradient"):
        lin = linearize(problem, theta, rtol=rtol, max_bytes=max_bytes, where=where,
                        validate=False,
                        route={Method.AUTO: Route.AUTO, Method.DENSE: Route.SVD,
                               Method.OPERATOR: Route.GRAM}[method_])
        x = lin.outputs
        loss_t = problem.loss_at(theta).detach()
        check_finite(where, "loss", loss_t, "θ is outside the loss's finite range.")
        g = torch.func.grad(problem.loss_at)(theta)
        check_finite(where, "gradient", g, "θ is outside the loss's finite range.")
        gx = lf.output_grad(x, problem.targets)
        grad_norm, output_grad_norm = float(torch.linalg.norm(g)), float(torch.linalg.norm(gx))

    with stage(timings, "jacobian"):
        jac = lin.decision

    with stage(timings, "gauss_newton"):
        gn, lam_g, gn_from_roots = _gauss_newton(problem, lin, x, rtol)

    crit = criticality(problem, theta, x, grad_norm, jac.sigma_max)
    fit = perfect_fit(problem, x)
    h_equals_g = fit.holds and lf.residual_vanishes_at_fit and crit.critical

    with stage(timings, "hessian"):
        dense_ok = N <= dense_max_n and 8 * N * N <= max_bytes
        if route_h is HessianRoute.AUTO:
            if h_equals_g and gn_from_roots and method_ is not Method.DENSE:
                route_h = HessianRoute.GRAM
            elif method_ is Method.DENSE or (method_ is Method.AUTO and dense_ok):
                route_h = HessianRoute.DENSE
            else:
                route_h = HessianRoute.KRYLOV
                routes.append(_krylov_plan(N, max_rank, max_bytes, dense_max_n))
        hess, kernel, spectrum = None, None, None
        if route_h is HessianRoute.GRAM:
            if not (h_equals_g and gn_from_roots):
                raise ValueError(f"{where}: hessian=\"gram\" needs a critical perfect fit with a "
                                 "loss whose residual term vanishes there (mse, bce, softmax_ce) "
                                 "and a positive semidefinite ∇²ₓC; use hessian=\"dense\" or "
                                 "\"auto\".")
            hess = _summary(lam_g, gn.inertia, "gauss_newton", Certificate("gram"),
                            spectrum=lam_g.numel() <= DENSE_MAX_N * 10)
            spectrum = lam_g
        elif route_h is HessianRoute.DENSE:
            check_dense_budget(where, "Hessian", (N, N), max_bytes,
                               "Use analyze(..., hessian=\"krylov\") or hessian_operator.")
            hess, kernel = _dense_summary(problem, theta, rtol)
            spectrum = kernel[2]
        elif route_h is HessianRoute.KRYLOV:
            hess, spectrum = _krylov_summary(problem, theta, rtol, max_rank, max_bytes, rng,
                                             _stage_progress(progress, "krylov"), routes,
                                             max_seconds)
            if spectrum is None and hessian == "auto":  # krylov gave up: profile instead
                routes.append("krylov gave up (" + hess.reason + "); the degeneracy profile "
                              "comes from stochastic Lanczos quadrature")
                route_h = HessianRoute.PROFILE
                hess = dataclasses.replace(hess, method="krylov")
        elif route_h is HessianRoute.LANCZOS:
            hess = _lanczos_summary(problem, theta, rtol, max_seconds,
                                    _stage_progress(progress, "lanczos"))
        if route_h is HessianRoute.PROFILE:
            density = hessian_spectrum(problem, theta, rng=rng,
                                       progress=_stage_progress(progress, "profile"))
            degeneracy = degeneracy_profile(density)
            if hess is None:
                hess = _profile_summary(density, rtol, problem)
        else:
            degeneracy = None if spectrum is None else degeneracy_profile(spectrum)

    manifold = ""
    if (hess is not None and kernel is not None and crit.critical and not fit.holds
            and hess.inertia.negative == 0 and (hess.inertia.zero or 0) > 0 and hess.decided):
        with stage(timings, "kernel_probe"):
            manifold = _kernel_probe(problem, theta, kernel, crit, routes)
    extremes = None
    if hess is not None and hess.inertia.positive is None and hess.top_eigenvalues \
            and hess.bottom_eigenvalues:
        extremes = (hess.bottom_eigenvalues[0], hess.top_eigenvalues[0], hess.tol)
    kind, kind_reason = classify(crit.critical, fit.holds and lf.is_convex,
                                 hess.inertia if hess is not None else None, extremes=extremes,
                                 manifold_of_minima=manifold)
    if hess is None and not (kind is Kind.NONCRITICAL or kind is Kind.GLOBAL_MINIMUM):
        kind, kind_reason = Kind.DEGENERATE, "hessian=\"none\": the second-order test was skipped"
    block_list = None
    if blocks is not None:
        with stage(timings, "blocks"):
            block_list = [
                BlockSummary(name, sub.n_params, r.jacobian, r.hessian)
                for name, sub in _block_problems(where, problem, theta, blocks)
                for r in [analyze(sub, None, method=method, rtol=rtol, max_bytes=max_bytes,
                                  dense_max_n=dense_max_n, hessian=hessian, max_rank=max_rank,
                                  rng=rng, max_seconds=max_seconds)]]
    model_dtype = str(problem.model_dtype).removeprefix("torch.")
    routes.extend(_problem_notes(problem, model_dtype))
    return Report(
        n_params=N, n_samples=n, n_outputs=k, loss=float(loss_t), grad_norm=grad_norm,
        output_grad_norm=output_grad_norm, criticality=crit, perfect_fit=fit, jacobian=jac,
        gauss_newton=gn, hessian=hess, behavior_manifold_dim=N - jac.rank, kind=kind,
        kind_reason=kind_reason, rank_identity=_rank_identity(problem, fit.holds, jac, hess),
        dtype=str(dtype).removeprefix("torch."), loss_name=lf.name, reduction=lf.reduction,
        timings=timings, model_dtype=model_dtype, routes=routes, blocks=block_list,
        degeneracy=degeneracy,
    )


def _block_problems(where: str, problem: Problem, theta: Tensor, blocks) -> list[tuple[str, Problem]]:
    """(name, the Problem restricted to the block at θ) for each block of ``blocks``.

    Raises:
        ValueError: For a malformed ``blocks`` or a block that selects no parameter.
    """
    names = problem.param_names
    if blocks == "module":
        heads = list(dict.fromkeys(n.split(".", 1)[0] for n in names))
        groups = [(h, [n for n in names if n.split(".", 1)[0] == h]) for h in heads]
    elif isinstance(blocks, list | tuple) and blocks:
        groups = []
        for block in blocks:
            prefixes = [block] if isinstance(block, str) else list(block)
            chosen = [n for n in names if any(n == p or n.startswith(p.rstrip(".") + ".")
                                              for p in prefixes)]
            if not chosen:
                raise ValueError(f"{where}: block {prefixes} selects no parameter of θ; the "
                                 f"parameters are {list(names)}.")
            groups.append(("+".join(prefixes), chosen))
    else:
        raise ValueError(f"{where}: blocks must be None, \"module\" or a list of lists of name "
                         f"prefixes, got {blocks!r}.")
    return [(name, problem.restricted(theta, chosen)) for name, chosen in groups]


def _problem_notes(problem: Problem, model_dtype: str) -> list[str]:
    """Route notes the Problem decided once: dtype copy, frozen parameters, AD mode, coupling."""
    notes = []
    dtype = str(problem.dtype).removeprefix("torch.")
    if model_dtype != dtype:
        notes.append(f"the model's parameters are {model_dtype}; every product ran in {dtype} "
                     "on a copy")
    if problem.n_frozen:
        notes.append(f"{len(problem.frozen_names)} parameter tensors ({problem.n_frozen} entries) "
                     f"are held constant; θ holds the other N = {problem.n_params}")
    if not problem.forward_ad:
        notes.append(f"forward mode unavailable ({problem.ad_notes}): J v and H v in reverse mode")
    if problem.batch_coupled:
        notes.append("batch-coupled model: x(θ) is analysed as one full-batch map; per-sample "
                     "routes are skipped")
    return notes


def _dense_summary(problem: Problem, theta: Tensor, rtol) -> tuple[HessianSummary, tuple]:
    """Every eigenvalue of the assembled H, and (H, λ) kept for the kernel probe."""
    H = dense_second_order(problem.loss_at, theta)
    norm = float(torch.linalg.norm(H))
    asym = float(torch.linalg.norm(H - H.T)) / norm if norm > 0 else 0.0
    H = 0.5 * (H + H.T)
    lam = torch.linalg.eigvalsh(H)
    inert = inertia_from_eigenvalues(lam, rtol, dtype=problem.dtype, n=problem.n_params,
                                     asymmetry=asym)
    return _summary(lam, inert, "dense", Certificate("dense", residual=asym)), (H, inert, lam)


def _kernel_probe(problem: Problem, theta: Tensor, kernel: tuple, crit: Criticality,
                  routes: list[str]) -> str:
    """Certify a manifold of critical points tangent to ker H (Morse–Bott), or return "".

    For each probe direction u in ker H (the basis vectors when the kernel is small, random
    unit combinations otherwise) and each step h in ``KERNEL_PROBE_STEPS`` (times max(1, ‖θ‖∞)),
    start at θ + h u and retract onto the critical set with chord-Newton steps restricted to the
    range of H, δ = −V_r Λ_r⁻¹ V_rᵀ ∇L. On a manifold of critical points tangent to ker H the
    retraction converges to a point with ‖∇L‖ ≤ tol and the same loss; where ker H holds a
    direction of higher-order growth (L = y⁴) a gradient of order h³ is left in ker H, far above
    tol at these steps.
    """
    H, inert, _ = kernel
    lam, V = torch.linalg.eigh(H)
    zero = lam.abs() <= inert.tol
    Z, Vr, lr = V[:, zero], V[:, ~zero], lam[~zero]
    nz = Z.shape[1]
    if nz <= KERNEL_PROBE_DIRECTIONS:
        directions = Z.T
    else:
        gen = torch.Generator().manual_seed(0)
        C = torch.randn(nz, KERNEL_PROBE_DIRECTIONS, generator=gen, dtype=Z.dtype)
        directions = (Z @ (C / torch.linalg.norm(C, dim=0))).T
    L0 = float(problem.loss_at(theta))
    grad = torch.func.grad(problem.loss_at)
    scale = max(1.0, float(theta.abs().max()))
    worst = 0.0
    for u in directions:
        for h in KERNEL_PROBE_STEPS:
            t = theta + h * scale * u.to(theta.dtype)
            for _ in range(30):
                g = grad(t)
                c = Vr.T @ g.to(torch.float64)
                t = t - (Vr @ (c / lr)).to(theta.dtype)
                if float(torch.linalg.norm(c)) <= crit.tol:
                    break
            residual = float(torch.linalg.norm(grad(t)))
            dloss = abs(float(problem.loss_at(t)) - L0)
            worst = max(worst, residual)
            if not (math.isfinite(residual) and residual <= crit.tol
                    and dloss <= max(crit.tol, 1e3 * eps(problem.dtype) * max(1.0, abs(L0)))):
                routes.append(f"kernel probe: a step of {h * scale:.1e} along ker H retracted to "
                              f"‖∇L‖ = {residual:.2e} > tol {crit.tol:.2e} (ΔL = {dloss:.1e}): no "
                              "manifold of critical points certified")
                return ""
    routes.append(f"kernel probe: {len(directions)} directions of ker H (dim {nz}) at steps "
                  f"{', '.join(f'{h * scale:.0e}' for h in KERNEL_PROBE_STEPS)} retracted to "
                  f"‖∇L‖ ≤ {worst:.2e} ≤ tol {crit.tol:.2e} with unchanged loss")
    return (f"no negative eigenvalue, and the {nz} zero eigenvectors are tangent to a manifold of "
            "critical points with the same loss (kernel probe, Morse–Bott): a non-strict minimum")


def _krylov_plan(N: int, max_rank: int | None, max_bytes: int, dense_max_n: int) -> str:
    """The cost model's line: why krylov, with how many basis columns and bytes at most."""
    cap = min(N, max_bytes // (8 * N), max_rank if max_rank is not None else N)
    return (f"N = {N} > dense_max_n = {dense_max_n}: krylov, a basis of at most {cap} columns "
            f"({format_bytes(8 * N * cap)} of max_bytes = {format_bytes(max_bytes)}), about one "
            "HVP per column")


def _stage_progress(progress, stage: str):
    """A (done, total) callback for one stage, or None."""
    if not callable(progress) or isinstance(progress, bool):
        return None
    return lambda done, total: progress(stage, done, total)


def _krylov_summary(problem: Problem, theta: Tensor, rtol, max_rank, max_bytes, rng, progress,
                    routes: list[str], max_seconds: float | None = None,
                    ) -> tuple[HessianSummary, LowRankSpectrum | None]:
    """The certified low-rank spectrum of ∇²L (``linalg.krylov``) as a HessianSummary.

    With the default rtol, a cut the products' rounding leaves undecided is moved just above the
    floor the run measured, where a gap of ``MIN_GAP`` allows (``LowRankSpectrum.at_floor``).
    Returns the spectrum only when it is certified (for the degeneracy profile).
    """
    spec = low_rank_spectrum(make_hvp_block(problem, theta), problem.n_params,
                             dtype=problem.dtype, device=theta.device, rtol=rtol,
                             max_rank=max_rank, max_bytes=max_bytes, rng=rng, progress=progress,
                             max_seconds=max_seconds)
    if rtol is None and not spec.decided:
        recut = spec.at_floor()
        if recut.decided:
            routes.append(f"krylov: the default tol {spec.tol:.2e} lies under the floor "
                          f"{spec.outside_bound + spec.residual:.2e} the products' rounding sets; "
                          f"cut at {recut.tol:.2e} in the gap above it")
            spec = recut
    counts = spec.inertia if spec.decided else (None, None, None)
    inert = Inertia(*counts, spec.tol, spec.gap, spec.rtol, spec.decided)
    summary = HessianSummary(
        rank=spec.rank, tol=spec.tol, gap=spec.gap, inertia=inert, method="krylov",
        decided=spec.decided, top_eigenvalues=spec.top_eigenvalues(N_EXTREME),
        bottom_eigenvalues=spec.bottom_eigenvalues(N_EXTREME), n_matvec=spec.n_matvec,
        asymmetry=spec.asymmetry, rtol=spec.rtol, certificate=spec.certificate(),
        reason=spec.reason)
    return summary, (spec if spec.decided else None)


def _profile_summary(density: SpectralDensity, rtol, problem: Problem) -> HessianSummary:
    """No counts: the profile route certifies nothing; its numbers are in Report.degeneracy."""
    inert = Inertia(None, None, None, math.nan, None, rtol or 0.0, False)
    top = sorted(density.nodes[torch.isfinite(density.nodes)].tolist(), reverse=True)
    return HessianSummary(
        rank=None, tol=math.nan, gap=None, inertia=inert, method="profile", decided=False,
        top_eigenvalues=top[:N_EXTREME], bottom_eigenvalues=sorted(top)[:N_EXTREME],
        n_matvec=density.n_matvec, rtol=rtol or 0.0,
        certificate=Certificate("none", n_matvec=density.n_matvec),
        reason=(f"profile route: stochastic Lanczos quadrature ({density.n_probes} probes × "
                f"{density.n_steps} steps) gives counts with confidence bounds "
                "(Report.degeneracy), not a certificate"))


def _lanczos_restarts(op, N: int, max_seconds: float | None) -> tuple[int, str]:
    """Restarts per eigsh call: LANCZOS_MAXITER, or fewer so that two calls fit max_seconds.

    The cost of a product is timed once (its first call, so an overestimate); a restart of
    ARPACK costs ncv − k products after the first ncv (``lanczos_basis_size``).
    """
    if max_seconds is None:
        return LANCZOS_MAXITER, ""
    t0 = time.perf_counter()
    op.matvec(np.ones(N) / math.sqrt(N))
    per_product = max(time.perf_counter() - t0, 1e-9)
    ncv = lanczos_basis_size(N, N_EXTREME)
    products = max_seconds / 2 / per_product
    restarts = int(min(LANCZOS_MAXITER, max(1, (products - ncv) // max(ncv - N_EXTREME, 1))))
    return restarts, (f"max_seconds={max_seconds:g} at {per_product:.2g} s a product allows "
                      f"{restarts} restart{'s' if restarts != 1 else ''} per end")


def _lanczos_summary(problem: Problem, theta: Tensor, rtol, max_seconds: float | None = None,
                     progress=None) -> HessianSummary:
    """Extreme eigenvalues by eigsh on the HVP operator; counts undecided unless one-signed."""
    op = hessian_operator(problem, theta)
    N = problem.n_params
    # ARPACK cannot resolve eigenvalues below the products' own rounding: ask for what the
    # dtype can deliver (1e-12 in float64, ≈ 1e-5 in float32), and bound the restarts
    tol = max(LANCZOS_TOL, 100 * eps(problem.dtype))
    restarts, budget = _lanczos_restarts(op, N, max_seconds)
    top = extreme_eigenpairs(op, N_EXTREME, "LA", tol=tol, maxiter=restarts, progress=progress)
    scale = abs(float(top.values[0])) if top.values.numel() else 0.0
    bottom = extreme_eigenpairs(op, N_EXTREME, "SA", tol=tol, maxiter=restarts, shift=scale,
                                progress=progress)
    unconverged = "" if top.converged and bottom.converged else (
        f"; ARPACK stopped after {restarts} restart{'s' if restarts != 1 else ''} with "
        f"{top.values.numel()} of {N_EXTREME} top and {bottom.values.numel()} of {N_EXTREME} "
        "bottom pairs converged (kept with their residuals)"
        + (f": {budget}, raise max_seconds" if budget else ""))
    rtol_ = rtol if rtol is not None else N * eps(problem.dtype)
    common = dict(method="lanczos", top_eigenvalues=top.values.tolist(),
                  bottom_eigenvalues=bottom.values.tolist(), residuals_top=top.residuals.tolist(),
                  residuals_bottom=bottom.residuals.tolist(), n_matvec=op.n_matvec, rtol=rtol_,
                  certificate=Certificate("none", n_matvec=op.n_matvec))
    if not (top.values.numel() and bottom.values.numel()):
        inert = Inertia(None, None, None, math.nan, None, rtol_, False)
        return HessianSummary(rank=None, tol=math.nan, gap=None, inertia=inert, decided=False,
                              reason="Lanczos found no extreme eigenpair" + unconverged, **common)
    amax = max(abs(float(top.values[0])), abs(float(bottom.values[0])))
    tol_ = rtol_ * amax
    lam_min, lam_max = float(bottom.values[0]), float(top.values[0])
    counts: list = [None, None, None]
    if lam_min > tol_:  # every eigenvalue is positive
        counts = [N, 0, 0]
    elif lam_max < -tol_:
        counts = [0, N, 0]
    decided = counts[0] is not None and top.converged and bottom.converged
    inert = Inertia(*counts, tol_, None, rtol_, decided)
    return HessianSummary(
        rank=N if counts[2] == 0 else None, tol=tol_, gap=None, inertia=inert, decided=decided,
        reason="" if decided else ("Lanczos finds the extreme eigenvalues only: the counts of a "
                                   "Hessian with both signs or a zero cluster are not certified"
                                   + unconverged),
        **common)


def _rank_identity(problem: Problem, fit: bool, jac: RankDecision,
                   hess: HessianSummary | None) -> RankIdentity:
    lf = problem.loss_fn
    positive = lf.hessian_positive_on_fit(problem.targets)
    if not fit:
        predicted, reason = False, "not a perfect fit: the residual term Σ ∂C/∂x ∇²x need not vanish"
    elif not lf.is_builtin:
        predicted, reason = False, "custom loss: the structure of ∇²ₓC is unknown"
    elif lf.name == "softmax_ce":
        predicted, reason = False, ("softmax_ce: each block of ∇²ₓC has 1 in its kernel, so "
                                    "rank ∇²L ≤ rank J and generically rank J − n at a soft-label fit")
    elif not positive:
        predicted, reason = False, (f"{lf.name}: a zero target entry makes ∇²ₓC singular on that "
                                    "coordinate; only the other rows of J count")
    else:
        predicted = True
        reason = (f"perfect fit with {lf.name}: ∇²L = Jᵀ∇²ₓC J with ∇²ₓC positive definite"
                  + (" (assumes outputs on the probability simplex for every θ)"
                     if lf.name == "ce_prob" else ""))
    holds = None
    if hess is not None and hess.rank is not None:
        holds = hess.rank == jac.rank
    return RankIdentity(predicted, holds, reason)
