"""Spectral density and trace of the loss Hessian ∇²L(θ) from batched Hessian-vector products.

Thin wrappers of ``linalg.slq`` on ``make_hvp_block(problem, θ)``: the products run in the
Problem's dtype on its device, one batched pass per block of probes, and nothing N × N is formed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..linalg.slq import (
    DEFAULT_PROBES,
    DEFAULT_STEPS,
    DEFAULT_TRACE_MATVEC,
    SpectralDensity,
    TraceEstimate,
    hutchpp_trace,
    spectral_density,
)
from ..problem import Problem
from ._hessian import make_hvp_block

__all__ = ["hessian_spectrum", "hessian_trace"]


def hessian_spectrum(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    n_probes: int = DEFAULT_PROBES,
    n_steps: int = DEFAULT_STEPS,
    rng: torch.Generator | int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of the spectrum of ∇²L(θ) (N × N, never formed).

    n_probes·n_steps Hessian-vector products in blocks of n_probes. ``count(a, b)`` of the
    result gives #{λ ∈ [a, b]} with an interval at its ``confidence``; ``trace`` estimates
    tr ∇²L.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        n_probes: Rademacher probes (≥ 2).
        n_steps: Lanczos steps per probe.
        rng: torch.Generator, int seed, or None (seeded with 0: reproducible).
        progress: Called as progress(done, total) in Hessian-vector products.

    Returns:
        A SpectralDensity of ∇²L(θ).

    Raises:
        ValueError: If θ has the wrong length or non-finite entries, or a size is out of range.
        TypeError: For an invalid rng or non-integer sizes.

    Example:
        >>> import torch, lossgeom as lg
        >>> from lossgeom.curvature._density import hessian_spectrum
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> d = hessian_spectrum(p, n_probes=3, n_steps=2)   # ∇²L = 2XᵀX, eigenvalues 7 ± √13
        >>> [round(x, 6) for x in d.nodes[0].tolist()]       # N = 2 steps: the nodes are exact
        [3.394449, 10.605551]
    """
    theta = problem.check_theta("hessian_spectrum(problem, theta)", theta)
    return spectral_density(make_hvp_block(problem, theta), problem.n_params, n_probes=n_probes,
                            n_steps=n_steps, rng=rng, progress=progress, dtype=theta.dtype,
                            device=theta.device)


def hessian_trace(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    n_matvec: int = DEFAULT_TRACE_MATVEC,
    rng: torch.Generator | int | None = None,
) -> TraceEstimate:
    """Trace of ∇²L(θ) by Hutch++ on batched Hessian-vector products.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        n_matvec: Hessian-vector products to spend (≥ 4).
        rng: torch.Generator, int seed, or None (seeded with 0: reproducible).

    Returns:
        TraceEstimate(estimate, standard_error).

    Raises:
        ValueError: If θ has the wrong length or non-finite entries, or n_matvec < 4.
        TypeError: For an invalid rng or a non-integer n_matvec.

    Example:
        >>> import torch, lossgeom as lg
        >>> from lossgeom.curvature._density import hessian_trace
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> round(hessian_trace(p, n_matvec=6).estimate, 9)   # N = 2: the sketch spans R²
        14.0
    """
    theta = problem.check_theta("hessian_trace(problem, theta)", theta)
    return hutchpp_trace(make_hvp_block(problem, theta), problem.n_params, n_matvec=n_matvec,
                         rng=rng, dtype=theta.dtype, device=theta.device)
