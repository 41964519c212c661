"""Inertia of a low-rank Hessian from Hessian-vector products (randomized range finder).

Used where a dense N × N eigendecomposition is too costly and Lanczos stalls on the huge zero
cluster of a Hessian of tiny rank: star and core points at large N (``locate``, ``growth_table``).

At star and core points ∇²L has rank r ≪ N (§3.4: r = ρ_c + 2ρ_iτ_i on S_i∖C, ρ_c on C), so
its non-zero eigenvalues are those of a small r × r matrix:

1. Y = ∇²L Ω for a Gaussian Ω (N × p), p = rank hint + oversampling (p HVPs, in batches);
2. the numerical rank r of Y (QR, then the singular values of R) with its tolerance and gap; if
   r = p the range may be incomplete, so p doubles (up to N);
3. Q (N × r) an orthonormal basis of ran Y = ran ∇²L; T = Qᵀ ∇²L Q (r more HVPs); the spectrum of
   ∇²L is eig T together with N − r zeros, and ‖∇²L Q − Q T‖_F / ‖T‖_F certifies that Q spans an
   invariant subspace.

No N × N matrix is formed: cost O(r) HVPs and O(N r²) flops.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..analysis import classify, criticality, perfect_fit
from ..curvature._hessian import make_hvp_block
from ..curvature.linearization import linearize
from ..linalg._inertia import inertia_from_eigenvalues
from ..linalg.rank import numerical_rank
from ..problem import Problem
from ..results import Inertia

__all__ = ["apply_in_chunks", "locus_measurement", "low_rank_hessian_inertia"]

OVERSAMPLE = 10
"""Extra random probes beyond the rank hint (the failure probability falls like 10^−p_extra)."""

PROBE_CHUNK = 64
"""Probe vectors per batched Hessian-vector pass (bounds the memory of one vmap)."""


def apply_in_chunks(block, V: Tensor) -> Tensor:
    """block(V) computed PROBE_CHUNK columns at a time (V: (N, b))."""
    if V.shape[1] == 0:                 # rank 0: ∇²L = 0 (a core in convention A)
        return torch.zeros_like(V)
    return torch.cat([block(V[:, j:j + PROBE_CHUNK]) for j in range(0, V.shape[1], PROBE_CHUNK)],
                     dim=1)


def low_rank_hessian_inertia(problem: Problem, theta: Tensor, rank_hint: int, rtol=None, *,
                             gen: torch.Generator | None = None) -> dict:
    """Inertia of ∇²L(θ) when its rank is small, from about 2·rank Hessian-vector products.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,).
        rank_hint: Expected rank (the probe count starts at rank_hint + OVERSAMPLE and doubles
            while the sampled range is full).
        rtol: Relative inertia tolerance (default N·eps).
        gen: Generator of the probes.

    Returns:
        {inertia, tol, gap (the smaller of the eigenvalue gap and the gap of the rank cut of
        ∇²L Ω), rtol, top_eigenvalues / bottom_eigenvalues (10 each), max_abs_eigenvalue,
        decided, method "low_rank", rank_range (rank decision of ∇²L Ω: rank, tol, gap,
        decided), n_hvp, residual ‖∇²L Q − Q T‖_F / ‖T‖_F}.
    """
    N = problem.n_params
    block = make_hvp_block(problem, theta)
    p, n_hvp = min(N, max(1, rank_hint) + OVERSAMPLE), 0
    while True:
        omega = torch.randn(N, p, generator=gen, dtype=torch.float64).to(theta)
        Y = apply_in_chunks(block, omega)
        n_hvp += p
        Q, R = torch.linalg.qr(Y)
        U, s, _ = torch.linalg.svd(R)
        dec = numerical_rank(s, shape=(N, p), dtype=problem.dtype)
        if dec.rank < p or p == N:
            break
        p = min(N, 2 * p)
    r = dec.rank
    Qr = Q @ U[:, :r]
    HQ = apply_in_chunks(block, Qr)
    n_hvp += r
    T = Qr.T @ HQ
    T = 0.5 * (T + T.T)
    lam = torch.linalg.eigvalsh(T)
    norm_t = float(torch.linalg.norm(T))
    residual = float(torch.linalg.norm(HQ - Qr @ T)) / norm_t if norm_t > 0 else 0.0
    full = torch.sort(torch.cat([lam, lam.new_zeros(N - r)])).values
    inert = inertia_from_eigenvalues(full, rtol, dtype=problem.dtype, n=N)
    # the zero/non-zero cut is the rank decision of ∇²L Ω: its gap bounds the inertia's
    return {"inertia": inert.as_list(), "tol": inert.tol, "gap": min(inert.gap, dec.gap),
            "rtol": inert.rtol, "top_eigenvalues": full.flip(0)[:10].tolist(),
            "bottom_eigenvalues": full[:10].tolist(),
            "max_abs_eigenvalue": float(lam.abs().max()) if r else 0.0,
            "decided": inert.decided and dec.decided, "method": "low_rank",
            "rank_range": {"rank": r, "tol": dec.tol, "gap": dec.gap, "decided": dec.decided},
            "n_hvp": n_hvp, "residual": residual}


def locus_measurement(problem: Problem, theta: Tensor, rank_hint: int, rtol=None) -> dict:
    """Loss, criticality (``analyze``'s test), low-rank Hessian counts and kind at θ.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,), a point where ∇²L has rank about ``rank_hint``.
        rank_hint: Expected rank of ∇²L.
        rtol: Relative inertia tolerance.

    Returns:
        {loss, grad_norm, criticality {grad_norm, tol, scale, rtol, critical}, measured
        {inertia, tol, gap, rtol, decided, method, n_hvp, residual}, kind}.
    """
    lin = linearize(problem, theta, where="locate(problem, theta)", validate=False)
    x = lin.outputs
    grad_norm = float(torch.linalg.norm(problem.grad(theta)))
    crit = criticality(problem, theta, x, grad_norm, lin.sigma_max)
    low = low_rank_hessian_inertia(problem, theta, rank_hint, rtol)
    minimizes = perfect_fit(problem, x).holds and problem.loss_fn.is_convex
    counts = Inertia(*low["inertia"], low["tol"], low["gap"], low["rtol"], low["decided"])
    return {"loss": float(problem.loss(theta)), "grad_norm": grad_norm, "criticality": crit,
            "measured": {**{k: low[k] for k in ("inertia", "tol", "gap", "rtol", "decided",
                                                "method", "n_hvp", "residual")},
                         "top_eigenvalues": low["top_eigenvalues"],
                         "bottom_eigenvalues": low["bottom_eigenvalues"],
                         "max_abs_eigenvalue": low["max_abs_eigenvalue"]},
            "kind": classify(crit.critical, minimizes, counts)[0]}
