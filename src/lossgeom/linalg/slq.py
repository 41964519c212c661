"""Degeneracy profiles past the certified range: stochastic Lanczos quadrature and Hutch++.

When the rank of a symmetric A (n, n) is too large for a certified low-rank spectrum
(``linalg.krylov``), its eigenvalue counts can still be bounded with stated confidence.

NOTE [quadrature brackets]
    For a probe v with ‖v‖² = n, s steps of Lanczos from v/√n (full reorthogonalisation) give a
    tridiagonal T whose eigenvalues θ₁ < … < θ_s (Ritz nodes) and squared first eigenvector
    components τ₁², …, τ_s² (weights, Σ τⱼ² = 1) are the s-point Gauss quadrature of the spectral
    measure μ_v = Σᵢ (vᵀuᵢ)²/n · δ_{λᵢ}, so that n·Σⱼ τⱼ² f(θⱼ) ≈ vᵀ f(A) v. For the step function
    F_v(x) = μ_v((−∞, x]) the Chebyshev–Markov–Stieltjes inequalities bracket the error: with
    Wₖ = τ₁² + … + τₖ² and θₖ ≤ x < θₖ₊₁, W_{k−1} ≤ F_v(x) ≤ W_{k+1}. The two nodes next to x are
    the quadrature's own uncertainty: the measure it stands for may lie on either side of x.
    A run that stops at an invariant subspace (β below ``tolerances.default_breakdown_rtol``)
    represents μ_v exactly, and then F_v(x) = Wₖ.

    For Rademacher v, E[vᵀ f(A) v] = tr f(A), so #{λ ∈ [a, b]} = E[n·(F_v(b) − F_v(a−))]. Each
    probe gives a lower and an upper value from the brackets; the interval reported by
    ``SpectralDensity.count`` is the one-sided Student-t bound of the lower values below and of
    the upper values above, each at level (1 + confidence)/2, so that it covers the count with
    probability about ``confidence`` over the probes (exact coverage would need normality of
    the per-probe values).

References:
    G. H. Golub, G. Meurant. Matrices, Moments and Quadrature with Applications (2010).
    S. Ubaru, J. Chen, Y. Saad. Fast estimation of tr(f(A)) via stochastic Lanczos quadrature.
    SIAM J. Matrix Anal. Appl. 38 (2017).
    R. A. Meyer, C. Musco, C. Musco, D. P. Woodruff. Hutch++: optimal stochastic trace
    estimation. SOSA (2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, generator
from ..results import Result, internal
from ..tolerances import DEFAULT_CONFIDENCE, default_breakdown_rtol
from .krylov import (
    BlockProducts,
    LowRankSpectrum,
    Products,
    check_dtype,
    check_size,
)

__all__ = [
    "CountEstimate",
    "DegeneracyProfile",
    "SpectralDensity",
    "TraceEstimate",
    "degeneracy_profile",
    "hutchpp_trace",
    "spectral_density",
]

DEFAULT_PROBES = 10
"""Rademacher probes of ``spectral_density``."""

DEFAULT_STEPS = 64
"""Lanczos steps per probe (Ritz nodes per probe) of ``spectral_density``."""

DEFAULT_TRACE_MATVEC = 120
"""Products of ``hutchpp_trace`` (a third each for the sketch, its image and the Hutchinson part)."""

DEFAULT_REL_EPS = (1e-2, 1e-4, 1e-6, 1e-8)
"""Relative thresholds ε of ``degeneracy_profile``: counts of |λ| > ε·|λ|max."""


class TraceEstimate(NamedTuple):
    """A stochastic trace estimate.

    Attributes:
        estimate: The estimate of tr A.
        standard_error: Its standard error (sample standard deviation of the per-probe values
            over √(probes)); 0 when the estimate is exact.
    """

    estimate: float
    standard_error: float


class CountEstimate(NamedTuple):
    """An eigenvalue count with its interval.

    Attributes:
        estimate: The quadrature estimate.
        low: Lower end of the interval.
        high: Upper end of the interval.
    """

    estimate: float
    low: float
    high: float


def _rademacher(n: int, b: int, gen: torch.Generator | None, device) -> Tensor:
    """Random signs ±1, shape (n, b), float64."""
    return (2.0 * torch.randint(0, 2, (n, b), generator=gen, dtype=torch.float64) - 1.0).to(device)


def _t_quantile(confidence: float, n_probes: int) -> float:
    """Two-sided Student-t quantile t_{p−1}((1 + confidence)/2)."""
    return float(student_t.ppf(0.5 * (1.0 + confidence), n_probes - 1))


@dataclass(frozen=True, eq=False)
class SpectralDensity(Result):
    """Stochastic Lanczos quadrature of the spectrum of a symmetric A (n, n).

    Attributes:
        nodes: Ritz nodes θ per probe, ascending, shape (n_probes, n_steps), float64; NaN past the
            step at which a run found an invariant subspace.
        weights: Quadrature weights τ² per probe (each row sums to 1; 0 where nodes are NaN).
        n: The dimension of A.
        n_probes: Rademacher probes.
        n_steps: Lanczos steps requested per probe (at most n).
        n_matvec: Products with A used.
        confidence: Level of the intervals of ``count``.
        trace: tr A estimated as the mean of vᵀAv (exact per probe in the quadrature), with its
            standard error.
        max_abs_eigenvalue: The largest |θ| over all probes (≤ ‖A‖; the extreme Ritz nodes
            converge first).
        dtype: The dtype the products were computed in.
        invariant: Per probe, True when its run stopped at an invariant subspace, so that its
            quadrature is exact (NOTE [quadrature brackets]); not in ``to_dict``.
    """

    nodes: Tensor
    weights: Tensor
    n: int
    n_probes: int
    n_steps: int
    n_matvec: int
    confidence: float
    trace: TraceEstimate
    max_abs_eigenvalue: float
    dtype: str
    invariant: Tensor = internal(default=None)

    def _cdf_brackets(self, x: float, strict: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Per probe (value, lower, upper) of μ_v((−∞, x]) (or (−∞, x) when strict)."""
        nodes, w = self.nodes, self.weights
        valid = torch.isfinite(nodes)
        inside = (nodes < x) if strict else (nodes <= x)
        inside &= valid
        value = (w * inside).sum(1)
        # weight of the last node inside and of the first node outside (nodes are ascending)
        k = inside.sum(1)
        count = valid.sum(1)
        last = torch.where(k > 0, w.gather(1, (k - 1).clamp_min(0)[:, None])[:, 0],
                           torch.zeros_like(value))
        first = torch.where(k < count, w.gather(1, k.clamp_max(w.shape[1] - 1)[:, None])[:, 0],
                            torch.zeros_like(value))
        exact = self.invariant
        lower = torch.where(exact, value, value - last)
        upper = torch.where(exact, value, value + first)
        return value, lower, upper

    def count(self, a: float, b: float) -> CountEstimate:
        """#{λ ∈ [a, b]} with an interval at level ``confidence`` (NOTE [quadrature brackets]).

        Args:
            a: Left end (may be -inf).
            b: Right end (may be inf), b ≥ a.

        Returns:
            CountEstimate(estimate, low, high), each in [0, n].

        Raises:
            ValueError: If a > b or either is NaN.
        """
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b) or a > b:
            raise ValueError(f"SpectralDensity.count(a, b): expected a <= b, got a = {a!r}, "
                             f"b = {b!r}. Pass the interval's ends in order.")
        fb, fb_lo, fb_hi = self._cdf_brackets(b, strict=False)
        ga, ga_lo, ga_hi = self._cdf_brackets(a, strict=True)
        n = float(self.n)
        value = n * (fb - ga)
        lower = n * (fb_lo - ga_hi).clamp_min(0.0)
        upper = n * (fb_hi - ga_lo).clamp_max(1.0)
        tq = _t_quantile(self.confidence, self.n_probes)
        root = math.sqrt(self.n_probes)
        low = float(lower.mean()) - tq * float(lower.std()) / root
        high = float(upper.mean()) + tq * float(upper.std()) / root
        est = float(value.mean())
        return CountEstimate(est, min(max(low, 0.0), est), max(min(high, n), est))

    def count_above(self, threshold: float) -> CountEstimate:
        """#{|λ| > threshold} = n − #{λ ∈ [−threshold, threshold]}, with its interval.

        Args:
            threshold: A non-negative magnitude.

        Returns:
            CountEstimate(estimate, low, high).

        Raises:
            ValueError: If threshold is negative or NaN.
        """
        if not float(threshold) >= 0.0:
            raise ValueError(f"SpectralDensity.count_above(threshold): threshold must be >= 0, "
                             f"got {threshold!r}.")
        inner = self.count(-float(threshold), float(threshold))
        return CountEstimate(self.n - inner.estimate, self.n - inner.high, self.n - inner.low)

    def density(self, grid: Tensor | np.ndarray | Sequence[float], width: float) -> Tensor:
        """Gaussian-smoothed eigenvalue density φ(t) = (1/p)·Σᵢ Σⱼ n·τᵢⱼ²·N(t; θᵢⱼ, width²).

        It integrates to n over the real line (eigenvalues per unit λ).

        Args:
            grid: Points t, shape (g,).
            width: Standard deviation of the Gaussian kernel, > 0.

        Returns:
            φ on the grid, shape (g,), float64.

        Raises:
            ValueError: If width is not positive or the grid is not 1-D and finite.
        """
        where = "SpectralDensity.density(grid, width)"
        width = float(width)
        if not width > 0.0 or math.isinf(width):
            raise ValueError(f"{where}: width must be a positive finite number, got {width!r}.")
        t = torch.as_tensor(np.asarray(grid, dtype=np.float64) if not isinstance(grid, Tensor)
                            else grid).to(torch.float64).reshape(-1)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{where}: the grid contains non-finite points.")
        valid = torch.isfinite(self.nodes)
        nodes = torch.where(valid, self.nodes, torch.zeros_like(self.nodes))[valid]
        w = self.weights[valid]
        z = (t[:, None] - nodes[None, :]) / width
        kernel = torch.exp(-0.5 * z * z) / (width * math.sqrt(2.0 * math.pi))
        return (self.n / self.n_probes) * (kernel * w[None, :]).sum(1)


@dataclass(frozen=True, eq=False)
class DegeneracyProfile(Result):
    """Counts of eigenvalues of magnitude above ε·|λ|max for a list of ε.

    Attributes:
        rel_eps: The relative thresholds ε.
        count_above: #{|λ| > ε·|λ|max} for each ε (a float for "slq": the quadrature estimate).
        count_low: Lower bound of each count.
        count_high: Upper bound of each count.
        confidence: Probability that every interval covers its count: 1 for an exact spectrum,
            1 − failure_probability for a certified low-rank spectrum, the density's level for
            "slq" (per interval).
        method: "exact" (dense eigenvalues, or a certified low-rank spectrum whose resolution is
            finer than every threshold), "bounds" (a low-rank spectrum whose residual, outside
            bound or missing certificate leaves a range: Cauchy interlacing below, Weyl above)
            or "slq" (stochastic Lanczos quadrature).
        max_abs_eigenvalue: |λ|max the thresholds are relative to.
        n: The dimension.
    """

    rel_eps: tuple[float, ...]
    count_above: tuple[float, ...]
    count_low: tuple[float, ...]
    count_high: tuple[float, ...]
    confidence: float
    method: str
    max_abs_eigenvalue: float
    n: int


def _lanczos_group(apply: BlockProducts, probes: Tensor, s: int, dtype,
                   done: Callable[[], None]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Run s Lanczos steps for the probes (n, p) at once (full reorthogonalisation).

    Returns (alpha (p, s), beta (p, s), length (p,), first (p,)): the tridiagonal entries (β[j]
    couples steps j and j+1), the number of steps each run kept, and vᵀAv / n per probe.
    """
    n, p = probes.shape
    device = probes.device
    basis = torch.empty(p, s, n, dtype=torch.float64, device=device)
    alpha = torch.zeros(p, s, dtype=torch.float64, device=device)
    beta = torch.zeros(p, s, dtype=torch.float64, device=device)
    length = torch.full((p,), s, dtype=torch.long, device=device)
    active = torch.ones(p, dtype=torch.bool, device=device)
    scale = torch.zeros(p, dtype=torch.float64, device=device)
    brk = default_breakdown_rtol(n, dtype)
    q = probes.T / math.sqrt(n)                                # (p, n), unit rows
    basis[:, 0] = q
    for j in range(s):
        idx = torch.nonzero(active)[:, 0]
        w = torch.zeros_like(q)
        w[idx] = apply(q[idx].T.contiguous()).T
        a = (q * w).sum(1)
        w = w - a[:, None] * q
        if j > 0:
            w = w - beta[:, j - 1, None] * basis[:, j - 1]
        B = basis[:, :j + 1]                                   # (p, j+1, n)
        for _ in range(2):
            c = torch.bmm(B, w[:, :, None])                    # (p, j+1, 1)
            w = w - torch.bmm(c.transpose(1, 2), B)[:, 0]     # cᵀB: rows of B read in order
        alpha[:, j] = torch.where(active, a, alpha[:, j])
        bnorm = torch.linalg.vector_norm(w, dim=1)
        scale = torch.maximum(scale, torch.maximum(a.abs(), bnorm))
        done()
        if j + 1 == s:
            break
        broken = active & (bnorm <= brk * scale)
        length = torch.where(broken, torch.full_like(length, j + 1), length)
        active = active & ~broken
        beta[:, j] = torch.where(active, bnorm, torch.zeros_like(bnorm))
        q = torch.where(active[:, None], w / torch.where(active, bnorm, 1.0)[:, None],
                        torch.zeros_like(w))
        basis[:, j + 1] = q
        if not bool(active.any()):
            break
    # runs that never broke down but ended at s steps keep length s; mark them not invariant
    return alpha, beta, length, alpha[:, 0]


def spectral_density(
    matmat_or_matvec: Products,
    n: int,
    *,
    n_probes: int = DEFAULT_PROBES,
    n_steps: int = DEFAULT_STEPS,
    rng: torch.Generator | int | None = None,
    progress: Callable[[int, int], None] | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
    batched: bool = True,
    confidence: float = DEFAULT_CONFIDENCE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of the spectrum of a symmetric A (NOTE [quadrature brackets]).

    n_probes Rademacher probes, each with n_steps Lanczos steps and full reorthogonalisation,
    run together in blocks of products. Cost: n_probes·n_steps products and
    O(n_probes·n_steps²·n) flops; memory n_probes·n_steps·n·8 bytes, processed in groups of
    probes that fit ``max_bytes``.

    Args:
        matmat_or_matvec: V (n, b) ↦ A V for a symmetric A (or v (n,) ↦ A v with batched=False),
            a dense symmetric tensor (n, n), or a scipy LinearOperator.
        n: The dimension of A.
        n_probes: Rademacher probes, ≥ 2 (the intervals need a sample variance).
        n_steps: Lanczos steps per probe, ≥ 1 (capped at n).
        rng: torch.Generator, int seed, or None (a generator seeded with 0: reproducible).
        progress: Called as progress(done, total) in products.
        dtype: The dtype the products are computed in.
        device: Where the vectors live (default: the tensor's device, else the CPU).
        batched: False when a callable takes one vector (n,).
        confidence: Level of the count intervals, in (0, 1).
        max_bytes: Memory budget of the Lanczos bases of one group of probes.

    Returns:
        A SpectralDensity.

    Raises:
        TypeError: For an operator that is not a callable, tensor or LinearOperator, a bad dtype or
            rng, or non-integer sizes.
        ValueError: If n < 1, n_probes < 2, n_steps < 1, confidence outside (0, 1), or the products
            have the wrong shape or non-finite values.

    Example:
        >>> import torch
        >>> from lossgeom.linalg.slq import spectral_density
        >>> A = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))  # eigenvalues 1..20
        >>> d = spectral_density(A, 20, n_probes=4, n_steps=20)           # exact quadrature
        >>> [round(v, 9) for v in d.count(4.5, 10.5)], round(d.trace.estimate, 9)
        ([6.0, 6.0, 6.0], 210.0)
    """
    where = "spectral_density(matmat_or_matvec, n)"
    n = check_size(where, "n", n)
    n_probes = check_size(where, "n_probes", n_probes, 2)
    n_steps = min(check_size(where, "n_steps", n_steps), n)
    dtype = check_dtype(where, dtype)
    max_bytes = check_size(where, "max_bytes", max_bytes)
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"{where}: confidence must lie in (0, 1), got {confidence!r}.")
    if progress is not None and not callable(progress):
        raise TypeError(f"{where}: progress must be a callable (done, total) or None.")
    gen = generator(where, rng, none_seed=0)
    apply = BlockProducts(where, matmat_or_matvec, n, dtype=dtype, device=device,
                          chunk=n_probes, batched=batched)
    dev = apply.device
    group = max(1, min(n_probes, max_bytes // (8 * n * n_steps)))
    total = n_probes * n_steps

    def done() -> None:
        if progress is not None:
            progress(apply.n_matvec, total)

    nodes = torch.full((n_probes, n_steps), math.nan, dtype=torch.float64)
    weights = torch.zeros(n_probes, n_steps, dtype=torch.float64)
    invariant = torch.zeros(n_probes, dtype=torch.bool)
    quad = torch.zeros(n_probes, dtype=torch.float64)
    probes = _rademacher(n, n_probes, gen, dev)
    for g0 in range(0, n_probes, group):
        p = min(group, n_probes - g0)
        alpha, beta, length, first = _lanczos_group(apply, probes[:, g0:g0 + p], n_steps, dtype,
                                                    done)
        alpha, beta, length = alpha.cpu(), beta.cpu(), length.cpu()
        for i in range(p):
            L = int(length[i])
            T = torch.diag(alpha[i, :L]) + torch.diag(beta[i, :L - 1], 1) + \
                torch.diag(beta[i, :L - 1], -1)
            theta, U = torch.linalg.eigh(T)
            nodes[g0 + i, :L] = theta
            weights[g0 + i, :L] = U[0] ** 2
            invariant[g0 + i] = L < n_steps or n_steps == n
        quad[g0:g0 + p] = first.cpu() * n
    se = float(quad.std()) / math.sqrt(n_probes)
    finite = nodes[torch.isfinite(nodes)]
    amax = float(finite.abs().max()) if finite.numel() else 0.0
    return SpectralDensity(nodes=nodes, weights=weights, n=n, n_probes=n_probes, n_steps=n_steps,
                           n_matvec=apply.n_matvec, confidence=float(confidence),
                           trace=TraceEstimate(float(quad.mean()), se), max_abs_eigenvalue=amax,
                           dtype=str(dtype).replace("torch.", ""), invariant=invariant)


def hutchpp_trace(
    matmat: Products,
    n: int,
    *,
    n_matvec: int = DEFAULT_TRACE_MATVEC,
    rng: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
    batched: bool = True,
) -> TraceEstimate:
    """Trace of A by Hutch++: an exact trace on a sketched range plus Hutchinson on the rest.

    With s = n_matvec // 3 and g = n_matvec − 2s: Q = orth(A S) for a Rademacher S (n, s),
    tr A ≈ tr(QᵀAQ) + (1/g)·Σᵢ gᵢᵀ(I − QQᵀ)A(I − QQᵀ)gᵢ for Rademacher gᵢ. The standard error is
    the sample standard deviation of the g Hutchinson terms over √g (the first term is exact).

    Args:
        matmat: V (n, b) ↦ A V for a symmetric A, a dense symmetric tensor, or a LinearOperator.
        n: The dimension of A.
        n_matvec: Products to spend, ≥ 4.
        rng: torch.Generator, int seed, or None (a generator seeded with 0: reproducible).
        dtype: The dtype the products are computed in.
        device: Where the vectors live.
        batched: False when a callable takes one vector (n,).

    Returns:
        TraceEstimate(estimate, standard_error).

    Raises:
        TypeError: For an operator of the wrong type, a bad dtype or rng, or non-integer sizes.
        ValueError: If n < 1, n_matvec < 4, or the products have the wrong shape or non-finite
            values.

    Example:
        >>> import torch
        >>> from lossgeom.linalg.slq import hutchpp_trace
        >>> u = torch.linspace(-1, 1, 30, dtype=torch.float64)
        >>> A = torch.outer(u, u)                                # rank 1: the sketch is exact
        >>> est = hutchpp_trace(A, 30, n_matvec=12)
        >>> round(est.estimate, 10) == round(float(u @ u), 10), est.standard_error < 1e-12
        (True, True)
    """
    where = "hutchpp_trace(matmat, n)"
    n = check_size(where, "n", n)
    m = check_size(where, "n_matvec", n_matvec, 4)
    dtype = check_dtype(where, dtype)
    gen = generator(where, rng, none_seed=0)
    s = min(m // 3, n)
    g = m - 2 * s
    apply = BlockProducts(where, matmat, n, dtype=dtype, device=device, chunk=max(s, g),
                          batched=batched)
    dev = apply.device
    Y = apply(_rademacher(n, s, gen, dev))
    Q, _ = torch.linalg.qr(Y)
    top = float(torch.trace(Q.T @ apply(Q)))
    if s == n:
        return TraceEstimate(top, 0.0)
    G = _rademacher(n, g, gen, dev)
    G = G - Q @ (Q.T @ G)
    AG = apply(G)
    AG = AG - Q @ (Q.T @ AG)
    terms = (G * AG).sum(0)
    return TraceEstimate(top + float(terms.mean()), float(terms.std()) / math.sqrt(g))


def degeneracy_profile(
    density_or_spectrum: SpectralDensity | LowRankSpectrum | Tensor | np.ndarray,
    rel_eps: Sequence[float] = DEFAULT_REL_EPS,
) -> DegeneracyProfile:
    """Counts #{|λ| > ε·|λ|max} for each ε, with low/high bounds and the method behind them.

    * eigenvalues (a 1-D tensor or array, e.g. a dense ``eigvalsh``): "exact", low = high.
    * a LowRankSpectrum: low = #{|λ(T)| > c} (Cauchy interlacing, always valid) and high =
      #{|λ(T)| > c − residual} plus n − m when outside_bound + residual > c (Weyl), for
      c = ε·max_abs_eigenvalue; "exact" when every low equals its high, else "bounds".
    * a SpectralDensity: "slq", the intervals of ``SpectralDensity.count_above``, |λ|max the
      largest |Ritz node|.

    Args:
        density_or_spectrum: A SpectralDensity, a LowRankSpectrum, or eigenvalues (n,).
        rel_eps: Relative thresholds ε in (0, 1).

    Returns:
        A DegeneracyProfile.

    Raises:
        TypeError: For another input type.
        ValueError: For thresholds outside (0, 1), or eigenvalues that are not 1-D and finite.

    Example:
        >>> import torch
        >>> from lossgeom.linalg.slq import degeneracy_profile
        >>> lam = torch.tensor([1.0, -1e-3, 1e-5, 1e-7, 0.0], dtype=torch.float64)
        >>> degeneracy_profile(lam).count_above          # |λ| > 1e-2, 1e-4, 1e-6, 1e-8
        (1, 2, 3, 4)
    """
    where = "degeneracy_profile(density_or_spectrum, rel_eps)"
    eps_list = tuple(float(e) for e in rel_eps)
    if not eps_list or not all(0.0 < e < 1.0 for e in eps_list):
        raise ValueError(f"{where}: every rel_eps must lie in (0, 1), got {list(rel_eps)!r}.")
    obj = density_or_spectrum
    if isinstance(obj, SpectralDensity):
        amax = obj.max_abs_eigenvalue
        counts = [obj.count_above(e * amax) for e in eps_list]
        return DegeneracyProfile(eps_list, tuple(c.estimate for c in counts),
                                 tuple(c.low for c in counts), tuple(c.high for c in counts),
                                 obj.confidence, "slq", amax, obj.n)
    if isinstance(obj, LowRankSpectrum):
        return _profile_low_rank(obj, eps_list)
    if isinstance(obj, Tensor | np.ndarray):
        lam = torch.as_tensor(obj).to(torch.float64)
        if lam.ndim != 1 or not bool(torch.isfinite(lam).all()):
            raise ValueError(f"{where}: eigenvalues must be a finite 1-D array, got shape "
                             f"{tuple(lam.shape)}. Pass torch.linalg.eigvalsh(H).")
        amax = float(lam.abs().max()) if lam.numel() else 0.0
        counts = tuple(int((lam.abs() > e * amax).sum()) for e in eps_list)
        return DegeneracyProfile(eps_list, counts, counts, counts, 1.0, "exact", amax,
                                 lam.numel())
    raise TypeError(f"{where}: expected a SpectralDensity, a LowRankSpectrum or eigenvalues (n,), "
                    f"got {type(obj).__name__}.")


def _profile_low_rank(s: LowRankSpectrum, eps_list: tuple[float, ...]) -> DegeneracyProfile:
    """Interlacing (low) and Weyl (high) counts for a LowRankSpectrum."""
    a = s.eigenvalues.abs()
    amax, delta, m = s.max_abs_eigenvalue, s.residual, s.subspace_dim
    low, high = [], []
    for e in eps_list:
        c = e * amax
        low.append(int((a > c).sum()))
        if s.outside_bound is None:
            high.append(s.n)
            continue
        hi = int((a > c - delta).sum())
        if s.outside_bound + delta > c:
            hi += s.n - m
        high.append(min(hi, s.n))
    exact = low == high
    confidence = 1.0 if s.failure_probability is None else 1.0 - s.failure_probability
    return DegeneracyProfile(eps_list, tuple(low) if exact else tuple(0.5 * (lo + hi) for lo, hi
                                                                      in zip(low, high, strict=True)),
                             tuple(low), tuple(high), confidence, "exact" if exact else "bounds",
                             amax, s.n)
