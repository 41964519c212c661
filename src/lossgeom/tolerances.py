"""Every default tolerance rule of lossgeom, in one place.

NOTE [tolerances]
    Decisions run in float64, but the default relative tolerances use the machine epsilon of the
    dtype the numbers were *computed* in: a float32 Problem gets eps(float32). Each result
    records the tolerance it used.

    * rank:     tol = max(atol, rtol·σ_max), default rtol = max(m, n)·eps.
    * inertia:  tol = rtol·max|λ|, default rtol = N·eps.
    * gap:      a cut is *decided* when the ratio across it is at least ``MIN_GAP``.
    * gram floor (NOTE [gram floor]): eigenvalues of K = J Jᵀ carry an absolute error near
      m·eps·σ_max², so singular values below √(m·eps)·σ_max cannot be told from zero.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DEFAULT_CONFIDENCE",
    "COINCIDENCE_RTOL",
    "CRITICAL_FLOOR_EPS",
    "CRITICAL_RTOL",
    "GRAM_ACCURACY",
    "KERNEL_PROBE_DIRECTIONS",
    "KERNEL_PROBE_STEPS",
    "MIN_GAP",
    "NEARBY_RADIUS",
    "PERFECT_FIT_RTOL",
    "default_breakdown_rtol",
    "default_inertia_rtol",
    "default_rank_rtol",
    "eps",
    "gram_floor",
]

MIN_GAP = 1e3
"""A rank or inertia cut is certified (``decided=True``) when the ratio of the smallest value kept
to the largest value dropped is at least this (three orders of magnitude)."""

CRITICAL_RTOL = 1e-8
"""Relative criticality tolerance: ‖∇L‖ ≤ CRITICAL_RTOL · scale (``analysis.criticality``)."""

CRITICAL_FLOOR_EPS = 1e3
"""The criticality floor is CRITICAL_FLOOR_EPS·eps·σ_max(J)²·‖∇²ₓC‖₂·‖θ‖: a thousand times the
gradient that one rounding of outputs of size σ_max(J)·‖θ‖ produces (``analysis.criticality``)."""

PERFECT_FIT_RTOL = 1e-8
"""Relative perfect-fit tolerance: ‖∇ₓC‖ ≤ PERFECT_FIT_RTOL · output scale."""


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of a floating dtype (float64 for anything that is not floating)."""
    if not dtype.is_floating_point:
        dtype = torch.float64
    return float(torch.finfo(dtype).eps)


def default_rank_rtol(shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> float:
    """Default relative rank tolerance max(shape)·eps(dtype)."""
    return max(max(shape), 1) * eps(dtype)


def default_inertia_rtol(n: int, dtype: torch.dtype = torch.float64) -> float:
    """Default relative inertia tolerance N·eps(dtype)."""
    return max(n, 1) * eps(dtype)


def gram_floor(m: int, sigma_max: float, dtype: torch.dtype = torch.float64) -> float:
    """Smallest singular value of J that the Gram route resolves: √(m·eps)·σ_max.

    NOTE [gram floor]
        K = J Jᵀ (m × m) squares the conditioning of J. Its computed eigenvalues carry an absolute
        error of about m·eps·‖K‖ = m·eps·σ_max², so σᵢ = √λᵢ is meaningful only above
        √(m·eps)·σ_max. A rank cut below that floor is re-decided by an SVD of J or of Jᵀ U₀.
    """
    return math.sqrt(max(m, 1) * eps(dtype)) * sigma_max


GRAM_ACCURACY = 1e-8
"""Largest relative error m·eps·(σ_max/σ)³ accepted from the Gram route for a kept right singular
vector Jᵀu/σ of J (NOTE [linearization routes] in ``curvature.linearization``): below the σ where
it is exceeded, J⁺ and ker J come from an SVD of J (or of Jᵀ U₀) instead."""

COINCIDENCE_RTOL = 1e3
"""Activations hᵢ, hⱼ coincide when ‖hᵢ − hⱼ‖∞ ≤ COINCIDENCE_RTOL · eps(dtype) · max(1, max|h|)."""

NEARBY_RADIUS = 1e-4
"""Relative radius max(1, ‖θ‖∞)·NEARBY_RADIUS of the perturbations that probe whether rank J is
locally constant."""

KERNEL_PROBE_DIRECTIONS = 8
"""Directions of ker H probed by the Morse–Bott test of ``analyze`` (all of ker H when smaller)."""

KERNEL_PROBE_STEPS = (1e-2, 1e-3)
"""Relative step sizes (times max(1, ‖θ‖∞)) of the kernel probe: a quartic direction leaves a
gradient of about 4h³ ≥ 4e-9 after retraction, far above the criticality tolerance."""


def default_breakdown_rtol(n: int, dtype: torch.dtype = torch.float64) -> float:
    """Default Lanczos breakdown rtol n·eps(dtype).

    A run has found an invariant subspace when β_j ≤ rtol·max(|α|, β) seen so far (the inertia
    rule's resolution of a matrix of size n). Past that point the quadrature of the probe's
    spectral measure is exact.
    """
    return max(n, 1) * eps(dtype)


DEFAULT_CONFIDENCE = 0.95
"""Confidence level of the stochastic interval counts (stochastic Lanczos quadrature)."""
