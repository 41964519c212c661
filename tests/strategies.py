"""Hypothesis strategies for matrices with a chosen rank, gap, condition number and inertia.

A = U diag(σ) Vᵀ with random orthogonal U, V (QR of a seeded Gaussian matrix, signs
fixed) and chosen rank, gap and condition number; symmetric matrices Q diag(λ) Qᵀ with chosen
inertia and gap. Each strategy returns the matrix together with the values it was built from, so
a property can assert exact counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

F64 = torch.float64


def random_orthogonal(n: int, seed: int) -> torch.Tensor:
    """A Haar-distributed orthogonal (n, n) matrix from the QR of a seeded Gaussian matrix."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))
    return torch.as_tensor(q, dtype=F64)


@dataclass(frozen=True)
class LowRank:
    """A = U diag(σ) Vᵀ, shape (m, n), with σ sorted descending (length min(m, n)).

    ``rank`` values are kept (σ₁ = ``scale`` down to σ_r = scale / cond); the others are at most
    σ_r / ``gap`` (exact zeros when ``exact_zeros``).
    """

    A: torch.Tensor
    sigma: torch.Tensor
    rank: int
    gap: float
    cond: float
    scale: float
    exact_zeros: bool

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.A.shape)

    @property
    def sigma_r(self) -> float:
        return float(self.sigma[self.rank - 1]) if self.rank else float("nan")

    @property
    def sigma_next(self) -> float:
        return float(self.sigma[self.rank]) if self.rank < self.sigma.numel() else 0.0

    @property
    def straddle_rtol(self) -> float:
        """A relative tolerance in the middle (geometrically) of the gap at the true rank.

        With exact zeros the computed dropped values are round-off (≲ 1e-14·σ₁ here), so the
        cut is put between that level and σ_r.
        """
        if self.rank == 0:
            return 1e-7
        ratio = self.sigma_r / float(self.sigma[0])
        if self.exact_zeros or self.rank == self.sigma.numel():
            return math.sqrt(ratio * 1e-13)
        return ratio / math.sqrt(self.gap)


@st.composite
def low_rank_matrices(draw, max_dim: int = 8, min_gap: float = 1e6, max_gap: float = 1e10,
                      max_cond: float = 1e4, allow_full: bool = True, min_rank: int = 0):
    """Strategy for ``LowRank`` with rank r, kept-value condition number ≤ max_cond and a gap
    σ_r/σ_{r+1} in [min_gap, max_gap] (dropped values exactly zero in some draws)."""
    lo_dim = 1 if allow_full else 2
    m = draw(st.integers(lo_dim, max_dim))
    n = draw(st.integers(lo_dim, max_dim))
    p = min(m, n)
    rank = draw(st.integers(min(min_rank, p - (0 if allow_full else 1)), p if allow_full else p - 1))
    cond = draw(st.floats(1.0, max_cond))
    gap = draw(st.floats(min_gap, max_gap))
    scale = 2.0 ** draw(st.integers(-20, 20))
    exact_zeros = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kept = scale * np.geomspace(1.0, 1.0 / cond, rank) if rank else np.zeros(0)
    n_drop = p - rank
    if exact_zeros or rank == 0:
        dropped = np.zeros(n_drop)
    else:
        top = kept[-1] / gap
        dropped = top * np.sort(rng.uniform(0.0, 1.0, n_drop))[::-1]
        if n_drop:
            dropped[0] = top  # the gap is exactly the chosen one
    sigma = torch.as_tensor(np.concatenate([kept, dropped]), dtype=F64)
    U = random_orthogonal(m, seed)[:, :p]
    V = random_orthogonal(n, seed + 1)[:, :p]
    A = (U * sigma) @ V.T
    return LowRank(A, sigma, rank, gap, cond, scale, exact_zeros or rank == 0)


@st.composite
def singular_value_lists(draw, max_len: int = 12):
    """Non-negative singular values (any order) with at least one positive entry."""
    values = draw(st.lists(st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False),
                           min_size=1, max_size=max_len))
    values[0] = max(values[0], 1e-3)
    return torch.tensor(values, dtype=F64)


@dataclass(frozen=True)
class SymmetricInertia:
    """S = Q diag(λ) Qᵀ (N, N) with ``positive``/``negative`` eigenvalues of magnitude in
    [scale/cond, scale] and ``zero`` eigenvalues of magnitude ≤ (scale/cond)/gap (or exactly 0)."""

    S: torch.Tensor
    eigenvalues: torch.Tensor
    positive: int
    negative: int
    zero: int
    gap: float
    cond: float
    scale: float

    @property
    def n(self) -> int:
        return self.positive + self.negative + self.zero


@st.composite
def symmetric_with_inertia(draw, max_dim: int = 9, min_gap: float = 1e6, max_gap: float = 1e10,
                           max_cond: float = 1e4):
    """Strategy for ``SymmetricInertia`` with chosen counts, condition number and gap."""
    pos = draw(st.integers(0, max_dim))
    neg = draw(st.integers(0, max_dim - pos))
    zero = draw(st.integers(0 if pos + neg else 1, max_dim - pos - neg))
    cond = draw(st.floats(1.0, max_cond))
    gap = draw(st.floats(min_gap, max_gap))
    scale = 2.0 ** draw(st.integers(-20, 20))
    exact_zeros = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lo = scale / cond
    mags = lambda c: np.exp(rng.uniform(np.log(lo), np.log(scale), c)) if c else np.zeros(0)  # noqa: E731
    p_vals, n_vals = mags(pos), -mags(neg)
    if pos + neg:
        # pin the extremes so that max|λ| = scale and the smallest nonzero magnitude = lo
        allv = np.concatenate([p_vals, n_vals])
        allv[np.argmax(np.abs(allv))] = np.sign(allv[np.argmax(np.abs(allv))]) * scale
        if allv.size > 1:
            i_min = np.argmin(np.abs(allv))
            allv[i_min] = np.sign(allv[i_min]) * lo
        p_vals, n_vals = allv[:pos], allv[pos:]
    if exact_zeros or pos + neg == 0:
        z_vals = np.zeros(zero)
    else:
        smallest = float(np.min(np.abs(np.concatenate([p_vals, n_vals]))))
        z_vals = (smallest / gap) * rng.uniform(-1.0, 1.0, zero)
        if zero:
            z_vals[0] = smallest / gap
    lam = torch.as_tensor(np.concatenate([p_vals, n_vals, z_vals]), dtype=F64)
    N = lam.numel()
    Q = random_orthogonal(N, seed)
    S = (Q * lam) @ Q.T
    S = 0.5 * (S + S.T)
    return SymmetricInertia(S, lam, pos, neg, zero, gap, cond, scale)
