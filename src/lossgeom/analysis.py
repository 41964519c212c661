"""analyze: criticality test, rank of J, Gauss–Newton and Hessian spectra, classification → Report.

Routes (recorded in the Report):

* rank J — ``svd`` of the dense J when n·k ≥ N; else ``gram``: eigenvalues of K = J Jᵀ
  (n·k × n·k), with values near the Gram floor re-measured (``gram+svd``) by an SVD of J when J
  fits in memory, else of Jᵀ U₀ projected off the trusted directions (``rank_from_gram``).
* Gauss–Newton G = Jᵀ W J (W = ∇²ₓC): its nonzero eigenvalues are those of M = Σ Uᵀ W U Σ
  (p × p, p = min(n·k, N)) from J = U Σ Vᵀ; the other N − p eigenvalues are zero.
* Hessian — ``dense``: H from blocks of HVPs and ``eigvalsh`` (N ≤ ``dense_max_n`` and within
  ``max_bytes``); ``gauss_newton``: at a perfect fit where ∇ₓC = 0 the residual term vanishes and
  H = G exactly; ``lanczos``: the 10 largest and smallest eigenvalues by ``eigsh`` on the HVP
  operator, inertia counts left null (undecided).

Criticality test: θ is critical when ‖∇L‖ ≤ rtol_c · σ_max(J) · max(‖∇ₓC(x)‖, ‖∇ₓC(x_ref)‖),
rtol_c = max(1e-8, 1e3·eps(dtype)). Since ∇L = Jᵀ∇ₓC, the product σ_max(J)·‖∇ₓC‖ bounds ‖∇L‖;
x_ref (zero outputs for mse and logits, 1/2 for bce, 1/k for ce_prob) sets the scale where the fit
is perfect and ∇ₓC vanishes.

Classification (``kind``): noncritical if the test fails; global_minimum if critical, the outputs
minimize C (perfect fit) and C is convex in x; otherwise by the Hessian's signs: all positive →
strict_local_minimum; some negative and none zero or positive → strict_local_maximum; some
negative otherwise → strict_saddle (negative curvature rules out a minimum); no negative, some zero
→ degenerate.
"""

from __future__ import annotations

import math
from enum import StrEnum

import torch
from torch import Tensor

from ._checks import DEFAULT_MAX_BYTES, check_dense_budget, check_option, check_rtol
from ._timing import stage
from .curvature._hessian import dense_second_order, hessian_operator
from .curvature._jacobian import gram_rank, jacobian
from .linalg._inertia import Inertia, inertia_from_eigenvalues
from .linalg.rank import RankDecision, numerical_rank
from .linalg.spectrum import extreme_eigenpairs
from .linalg.tolerances import CRITICAL_RTOL, PERFECT_FIT_RTOL, eps
from .problem import Problem
from .report import HessianSummary, Report

__all__ = ["DENSE_MAX_N", "Route", "analyze", "criticality_tolerance", "is_perfect_fit"]

DENSE_MAX_N = 4000
"""Largest N for which ``analyze(method="auto")`` builds the dense Hessian (eigvalsh ≈ 6 s here)."""

N_EXTREME = 10
LANCZOS_TOL = 1e-12
"""Relative accuracy asked of ARPACK for the extreme Hessian eigenvalues (float64)."""
LANCZOS_MAXITER = 100
"""Restarts allowed per ``eigsh`` call (≈ 1 000 HVPs); one that runs out keeps the pairs that
converged and reports ``decided=False``. The bottom pairs are computed on H + λ_max·I, so their
accuracy is relative to ‖H‖ rather than to the tiny |λ| of a cluster near zero."""


class Route(StrEnum):
    """Which algorithms ``analyze`` may use.

    AUTO: pick by cost: dense matrices while they are cheap, operators beyond.
    DENSE: dense J (SVD) and dense H (eigvalsh); refuses above ``max_bytes``. Most certain:
        full spectra, every count decided by its gap.
    OPERATOR: Gram matrix for rank J, Gauss–Newton identity at a perfect fit, Lanczos otherwise;
        feasible at large N, but inertia counts away from a perfect fit stay undecided.
    """

    AUTO = "auto"
    DENSE = "dense"
    OPERATOR = "operator"


def criticality_tolerance(problem: Problem, x: Tensor, sigma_max: float) -> tuple[float, float, float]:
    """(tol, scale, rtol) of the criticality test ‖∇L‖ ≤ tol (see the module docstring)."""
    lf, y = problem.loss_fn, problem.targets
    g_here = float(torch.linalg.norm(lf.output_grad(x, y)))
    g_ref = float(torch.linalg.norm(lf.output_grad(lf.reference_outputs(y), y)))
    scale = sigma_max * max(g_here, g_ref)
    rtol = max(CRITICAL_RTOL, 1e3 * eps(problem.dtype))
    return rtol * scale, scale, rtol


def is_perfect_fit(problem: Problem, x: Tensor) -> dict:
    """{max_residual, tol, holds}: max |fit residual| ≤ tol = rtol·max(1, max|y|)."""
    r = problem.loss_fn.fit_residual(x, problem.targets)
    max_res = float(r.abs().max())
    rtol = max(PERFECT_FIT_RTOL, 100 * eps(problem.dtype))
    tol = rtol * max(1.0, float(problem.targets.abs().max()))
    return {"max_residual": max_res, "tol": tol, "holds": max_res <= tol}


def _apply_output_hessian(problem: Problem, x: Tensor, B: Tensor) -> Tensor:
    """W B for W = ∇²ₓC (m × m, m = n·k) and B (m, p), using the per-sample blocks if known."""
    lf, y = problem.loss_fn, problem.targets
    blocks = lf.output_hessian_blocks(x, y)
    n, k = x.shape
    if blocks is not None:
        return torch.einsum("nij,njp->nip", blocks, B.reshape(n, k, -1)).reshape(n * k, -1)
    return lf.output_hessian(x, y) @ B


def _rank_dict(d: RankDecision) -> dict:
    return {"rank": d.rank, "tol": d.tol, "gap": d.gap, "method": d.method, "decided": d.decided,
            "sigma_max": d.sigma_max, "sigma_r": d.sigma_r, "sigma_next": d.sigma_next,
            "rtol": d.rtol, "reason": d.reason}


def _spectral_rank_dict(inert: Inertia, method: str) -> dict:
    return {"rank": inert.positive + inert.negative, "tol": inert.tol, "gap": inert.gap,
            "decided": inert.decided, "method": method,
            "inertia": inert.as_list()}


def _extremes(lam: Tensor) -> tuple[list[float], list[float]]:
    lam = torch.sort(lam).values
    return lam.flip(0)[:N_EXTREME].tolist(), lam[:N_EXTREME].tolist()


def _summary_from_eigenvalues(lam: Tensor, rtol, dtype, n_params: int, method: str,
                              asymmetry: float = 0.0) -> tuple[HessianSummary, Inertia]:
    inert = inertia_from_eigenvalues(lam, rtol, dtype=dtype, n=n_params, asymmetry=asymmetry)
    top, bottom = _extremes(lam)
    summary = HessianSummary(
        rank=inert.positive + inert.negative, tol=inert.tol, gap=inert.gap,
        inertia=inert.as_list(), method=method, decided=inert.decided,
        top_eigenvalues=top, bottom_eigenvalues=bottom, asymmetry=asymmetry, rtol=inert.rtol,
        spectrum=torch.sort(lam).values.tolist(),
    )
    return summary, inert


def _dense_hessian_eigenvalues(problem: Problem, theta: Tensor) -> tuple[Tensor, float]:
    """Eigenvalues of the dense Hessian (ascending) and the assembled matrix's asymmetry."""
    H = dense_second_order(problem.loss_at, theta)
    norm = float(torch.linalg.norm(H))
    asym = float(torch.linalg.norm(H - H.T)) / norm if norm > 0 else 0.0
    return torch.linalg.eigvalsh(0.5 * (H + H.T)), asym


def analyze(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    method: str = "auto",
    rtol: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    dense_max_n: int = DENSE_MAX_N,
) -> Report:
    """Certified local geometry of L at θ: criticality, rank J, G and H spectra, kind.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        method: "auto", "dense" or "operator" (see ``Route``).
        rtol: Relative tolerance for every rank and inertia decision (J, G, H); default the rule
            of ``linalg.tolerances`` for each (max(m, n)·eps for J, N·eps for G and H).
        max_bytes: Memory budget of any dense matrix.
        dense_max_n: Largest N for the dense Hessian under method="auto".

    Returns:
        A Report; see ``lossgeom.report`` for every field.

    Raises:
        ValueError: For an unknown method, θ of the wrong length or non-finite θ, outputs or
            loss, or rtol outside (0, 1).
        DenseTooLargeError: With method="dense" when J or H exceeds ``max_bytes``.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> r = lg.analyze(p, torch.zeros(2, dtype=torch.float64))
        >>> r.kind, r.hessian.inertia, r.behavior_manifold_dim
        ('global_minimum', [2, 0, 0], 0)
    """
    where = "analyze(problem, theta)"
    route = Route(check_option(where, "method", method, [r.value for r in Route]))
    check_rtol(where, rtol)
    theta = problem.check_theta(where, theta)
    timings: dict[str, float] = {}
    N, n, k = problem.n_params, problem.n_samples, problem.n_outputs
    m, dtype, lf = n * k, problem.dtype, problem.loss_fn

    with stage(timings, "gradient"):
        x = problem.outputs(theta)
        loss = float(problem.loss(theta))
        g = problem.grad(theta)
        gx = lf.output_grad(x, problem.targets)
        grad_norm, output_grad_norm = float(torch.linalg.norm(g)), float(torch.linalg.norm(gx))

    # -- rank of J and a factorisation J = U Σ Vᵀ (U, Σ only) for the Gauss–Newton spectrum -----
    with stage(timings, "jacobian"):
        if route is Route.DENSE or (route is Route.AUTO and m >= N):
            J = jacobian(problem, theta, max_bytes=max_bytes)
            U, S, _ = torch.linalg.svd(J, full_matrices=False)
            jac = numerical_rank(S, rtol, shape=(m, N), dtype=dtype)
            jac = RankDecision(**{**jac.to_dict(), "method": "svd"})
        else:
            jac, (lam, U) = gram_rank(problem, theta, rtol, max_bytes=max_bytes)
            keep = min(m, N)  # K has at most N nonzero eigenvalues
            lam, U = lam[m - keep:], U[:, m - keep:]
            S = lam.clamp_min(0).sqrt()

    with stage(timings, "gauss_newton"):
        US = U * S
        M = US.T @ _apply_output_hessian(problem, x, US)
        lam_g = torch.linalg.eigvalsh(0.5 * (M + M.T))
        lam_g = torch.cat([lam_g, lam_g.new_zeros(N - lam_g.numel())])
        g_inert = inertia_from_eigenvalues(lam_g, rtol, dtype=dtype, n=N)
        gn = _spectral_rank_dict(g_inert, "svd" if jac.method == "svd" else "gram")

    # -- criticality and fit ----------------------------------------------------------------------
    crit_tol, scale, crit_rtol = criticality_tolerance(problem, x, jac.sigma_max)
    critical = grad_norm <= crit_tol
    fit = is_perfect_fit(problem, x)
    gn_identity = fit["holds"] and lf.residual_vanishes_at_fit and critical

    # -- Hessian ----------------------------------------------------------------------------------
    with stage(timings, "hessian"):
        dense_ok = N <= dense_max_n and 8 * N * N <= max_bytes
        if route is Route.DENSE or (route is Route.AUTO and dense_ok):
            if route is Route.DENSE:
                check_dense_budget(where, "Hessian", (N, N), max_bytes,
                                   "Use analyze(..., method=\"operator\") or hessian_operator.")
            lam_h, asym = _dense_hessian_eigenvalues(problem, theta)
            hess, h_inert = _summary_from_eigenvalues(lam_h, rtol, dtype, N, "dense", asym)
        elif gn_identity:
            hess, h_inert = _summary_from_eigenvalues(lam_g, rtol, dtype, N, "gauss_newton")
        else:
            hess, h_inert = _lanczos_summary(problem, theta, rtol)

    kind, kind_reason = _classify(critical, fit["holds"] and lf.is_convex, hess, h_inert)
    rank_identity = _rank_identity(problem, fit["holds"], jac, hess)
    return Report(
        n_params=N, n_samples=n, n_outputs=k, loss=loss, grad_norm=grad_norm,
        output_grad_norm=output_grad_norm,
        criticality={"grad_norm": grad_norm, "tol": crit_tol, "scale": scale, "rtol": crit_rtol,
                     "critical": critical},
        perfect_fit=fit, jacobian=_rank_dict(jac), gauss_newton=gn, hessian=hess,
        behavior_manifold_dim=N - jac.rank, kind=kind, kind_reason=kind_reason,
        rank_identity=rank_identity, dtype=str(dtype).removeprefix("torch."),
        loss_name=lf.name, reduction=lf.reduction, timings=timings,
    )


def _lanczos_summary(problem: Problem, theta: Tensor, rtol) -> tuple[HessianSummary, Inertia | None]:
    """Extreme eigenvalues by eigsh on the HVP operator; counts undecided unless all positive."""
    op = hessian_operator(problem, theta)
    # ARPACK cannot resolve eigenvalues below the products' own rounding: ask for what the
    # dtype can deliver (1e-12 in float64, ≈ 1e-5 in float32), and bound the restarts
    tol = max(LANCZOS_TOL, 100 * eps(problem.dtype))
    top = extreme_eigenpairs(op, N_EXTREME, "LA", tol=tol, maxiter=LANCZOS_MAXITER)
    scale = abs(float(top.values[0])) if top.values.numel() else 0.0
    bottom = extreme_eigenpairs(op, N_EXTREME, "SA", tol=tol, maxiter=LANCZOS_MAXITER,
                                shift=scale)
    N = problem.n_params
    rtol_ = rtol if rtol is not None else N * eps(problem.dtype)
    if not (top.values.numel() and bottom.values.numel()):
        summary = HessianSummary(
            rank=None, tol=math.nan, gap=None, inertia=[None, None, None], method="lanczos",
            decided=False, top_eigenvalues=top.values.tolist(),
            bottom_eigenvalues=bottom.values.tolist(), residuals_top=top.residuals.tolist(),
            residuals_bottom=bottom.residuals.tolist(), n_matvec=op.n_matvec, rtol=rtol_)
        return summary, None
    amax = max(abs(float(top.values[0])), abs(float(bottom.values[0])))
    tol = rtol_ * amax
    inertia_counts: list = [None, None, None]
    lam_min, lam_max = float(bottom.values[0]), float(top.values[0])
    if lam_min > tol:  # every eigenvalue is positive
        inertia_counts = [N, 0, 0]
    elif lam_max < -tol:
        inertia_counts = [0, N, 0]
    summary = HessianSummary(
        rank=N if inertia_counts[2] == 0 else None, tol=tol, gap=None, inertia=inertia_counts,
        method="lanczos",
        decided=inertia_counts[0] is not None and top.converged and bottom.converged,
        top_eigenvalues=top.values.tolist(), bottom_eigenvalues=bottom.values.tolist(),
        residuals_top=top.residuals.tolist(), residuals_bottom=bottom.residuals.tolist(),
        n_matvec=op.n_matvec, rtol=rtol_,
    )
    return summary, None


def _classify(critical: bool, minimizes_c: bool, hess: HessianSummary,
              inert: Inertia | None) -> tuple[str, str]:
    if not critical:
        return "noncritical", "‖∇L‖ exceeds the criticality tolerance"
    if minimizes_c:
        return "global_minimum", "critical, the outputs minimize C, and C is convex in x"
    if inert is not None:
        pos, neg, zero = inert.positive, inert.negative, inert.zero
    elif not (hess.bottom_eigenvalues and hess.top_eigenvalues):
        return "degenerate", ("Lanczos did not converge to the extreme eigenvalues: the "
                              "second-order test is inconclusive")
    else:  # Lanczos extremes: signs of λ_min and λ_max, zero if either lies within tol
        lo, hi = hess.bottom_eigenvalues[0], hess.top_eigenvalues[0]
        neg, pos = int(lo < -hess.tol), int(hi > hess.tol)
        zero = int(abs(lo) <= hess.tol or abs(hi) <= hess.tol)
    if neg == 0 and zero == 0:
        return "strict_local_minimum", "every Hessian eigenvalue is positive"
    if neg > 0 and pos == 0 and zero == 0:
        return "strict_local_maximum", "every Hessian eigenvalue is negative"
    if neg > 0:
        why = "negative and positive eigenvalues" if pos else "negative and zero eigenvalues only"
        return "strict_saddle", f"{why}: a direction of negative curvature rules out a minimum"
    return "degenerate", "no negative eigenvalue but some zero: the second-order test is inconclusive"


def _rank_identity(problem: Problem, perfect_fit: bool, jac: RankDecision,
                   hess: HessianSummary) -> dict:
    lf = problem.loss_fn
    positive = lf.hessian_positive_on_fit(problem.targets)
    if not perfect_fit:
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
    if hess.rank is not None:
        holds = hess.rank == jac.rank
    return {"predicted": predicted, "holds": holds, "reason": reason}
