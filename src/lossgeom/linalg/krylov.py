"""Certified spectrum of a symmetric operator of small rank: block Krylov with a posterior bound.

A symmetric A (n, n) known only through blocks of products V (n, b) ↦ A V (batched
Hessian-vector products, for instance) often has rank r ≪ n: star and core points of deep
networks (§3.4), deep linear networks (§5.2), any point of a very wide network (§3.5). Its
non-zero eigenvalues are then those of a small r × r matrix, and rank and inertia can be
certified without an n × n eigendecomposition.

NOTE [invariant-subspace certificate]
    Q (n, m) has orthonormal columns, T = QᵀAQ (m, m), R = AQ − QT = (I − QQᵀ)AQ and
    P = I − QQᵀ. In the basis [Q, Q⊥],

        A = [[T, R̃ᵀ], [R̃, S]],  R̃ = Q⊥ᵀR,  S = Q⊥ᵀ(PA)Q⊥,

    so A differs from T ⊕ S by a matrix of norm ‖R‖₂ ≤ ‖R‖_F, and by Weyl's inequality the sorted
    eigenvalues of A lie within ‖R‖_F of those of T ⊕ S. Every eigenvalue of S is at most
    ‖PA‖ ≤ β in magnitude, where β = 10·√(2/π)·maxᵢ ‖P A ωᵢ‖ for q fresh Gaussian vectors ωᵢ
    drawn after Q is fixed: by Halko, Martinsson and Tropp (2011), Lemma 4.1, this holds with
    probability at least 1 − 10^(−q). Hence, with tol = rtol·max|λ(T)|, if

        max(β, max |λ(T)| counted zero) + ‖R‖_F ≤ tol < min |λ(T)| counted non-zero − ‖R‖_F,

    then #{λ(A) > tol} = #{λ(T) > tol}, #{λ(A) < −tol} = #{λ(T) < −tol}, and every other
    eigenvalue of A is at most tol in magnitude. The reported gap is the ratio across the cut,
    (min |λ(T)| kept − ‖R‖_F) / (max(β, max |λ(T)| dropped) + ‖R‖_F); the counts are *decided*
    when both inequalities hold and the gap is at least ``tolerances.MIN_GAP``. When Q spans
    the whole space there is nothing outside it: β = 0 and the certificate is deterministic.

NOTE [range growth]
    Q grows by a block Krylov process started on A Ω (Ω Gaussian, so Q stays inside ran A): each
    new block A Q_new is orthogonalised against Q by two passes of classical Gram–Schmidt, and
    its singular directions above rtol·‖A‖ (``numerical_rank`` with that absolute cut, ‖A‖
    estimated by the largest ‖A q‖ seen) join the basis. When a block brings nothing new, q
    fresh Gaussian probes test the rest of the space: directions of (I − QQᵀ)AΩ' above the cut
    (eigenvalues the Krylov process missed, e.g. of multiplicity above the block size) join
    the basis and the Krylov process resumes from them; when the probes find nothing, they
    give β. A probe direction u whose product A u is itself below the cut is rounding noise of
    the products, not a missed eigenvalue: growth stops there and β is reported as measured
    (the enlarged basis keeps the bound valid, since (I − Q'Q'ᵀ)A = (I − Q'Q'ᵀ)(I − QQᵀ)A for
    Q ⊂ Q'). Nothing n × n is formed; the memory is Q itself (n·m·8 bytes).

    Each basis column costs one product. T needs no more: the Gram–Schmidt coefficients Qᵀ(A Q_J)
    of each new block fill its columns J on the rows present at the time, and symmetry fills
    the rest. The residual needs none either: A Q_J = Q·(coefficients) + (kept directions) + D_J,
    the kept directions join Q, so the columns J of AQ − QT are (I − QQᵀ)D_J and
    ‖AQ − QT‖_F² ≤ Σ_J ‖D_J‖_F², the sum of the squared singular values dropped at every cut.

References:
    N. Halko, P.-G. Martinsson, J. A. Tropp. Finding structure with randomness: probabilistic
    algorithms for constructing approximate matrix decompositions. SIAM Review 53 (2011).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_rtol, check_seconds, format_bytes, generator
from ..results import Certificate, Result, internal
from ..tolerances import MIN_GAP, default_inertia_rtol
from .rank import numerical_rank

__all__ = ["LowRankSpectrum", "low_rank_spectrum"]

OUTSIDE_BOUND_FACTOR = 10.0 * math.sqrt(2.0 / math.pi)
"""The constant of Halko–Martinsson–Tropp (2011), Lemma 4.1: ‖B‖ ≤ 10·√(2/π)·maxᵢ ‖B ωᵢ‖ for q
independent standard Gaussian ωᵢ, with probability at least 1 − 10^(−q)."""

DEFAULT_BLOCK = 32
"""Columns per block of products (the Krylov block size and the chunk handed to ``matmat``)."""

SLAB_COLUMNS = 512
"""Basis columns per allocation (the basis grows by slabs and is never copied)."""

DEFAULT_OVERSAMPLE = 10
"""Fresh Gaussian probes behind the outside bound: failure probability 10^(−10)."""

Products = Callable[[Tensor], Tensor] | Tensor | LinearOperator


class BlockProducts:
    """V (n, b) float64 ↦ A V (n, b) float64 for a callable, a dense tensor or a LinearOperator.

    Products are computed ``chunk`` columns at a time in ``dtype`` on ``device``; their count is
    kept in ``n_matvec``. Each result is checked for shape and finiteness.
    """

    def __init__(self, where: str, op: Products, n: int, *, dtype: torch.dtype, device,
                 chunk: int, batched: bool = True):
        self.where, self.n, self.dtype, self.chunk = where, n, dtype, chunk
        self.device = torch.device(device) if device is not None else None
        self.n_matvec = 0
        if isinstance(op, Tensor):
            if op.shape != (n, n):
                raise ValueError(f"{where}: a dense operator must have shape ({n}, {n}), got "
                                 f"{tuple(op.shape)}. Pass the matrix of the size n you give.")
            if self.device is None:
                self.device = op.device
            mat = op.to(dtype)
            self._call = lambda V: mat @ V
        elif isinstance(op, LinearOperator):
            if op.shape != (n, n):
                raise ValueError(f"{where}: the LinearOperator has shape {op.shape}, expected "
                                 f"({n}, {n}).")
            self._call = lambda V: torch.as_tensor(
                op.matmat(V.detach().cpu().numpy().astype(np.float64)))
        elif callable(op):
            self._call = op if batched else (
                lambda V: torch.stack([op(V[:, j]) for j in range(V.shape[1])], dim=1))
        else:
            raise TypeError(f"{where}: the operator must be a callable V (n, b) -> A V, a square "
                            f"torch.Tensor or a scipy LinearOperator, got {type(op).__name__}.")
        if self.device is None:
            self.device = torch.device("cpu")

    def __call__(self, V: Tensor) -> Tensor:
        """A V for V (n, b) float64, returned as float64 on ``self.device``."""
        b = V.shape[1]
        if b == 0:
            return torch.zeros_like(V)
        out = [self._one(V[:, j:j + self.chunk]) for j in range(0, b, self.chunk)]
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    def _one(self, V: Tensor) -> Tensor:
        Y = self._call(V.to(dtype=self.dtype, device=self.device))
        if not isinstance(Y, Tensor):
            Y = torch.as_tensor(np.asarray(Y))
        if tuple(Y.shape) != tuple(V.shape):
            raise ValueError(f"{self.where}: the operator returned shape {tuple(Y.shape)} for a "
                             f"block of shape {tuple(V.shape)}; it must map (n, b) to (n, b). "
                             "Pass batched=False for a function of one vector.")
        Y = Y.to(dtype=torch.float64, device=V.device)
        if not bool(torch.isfinite(Y).all()):
            raise ValueError(f"{self.where}: the operator returned non-finite values for a block "
                             f"of {V.shape[1]} vectors. Check the model and data for overflow.")
        self.n_matvec += V.shape[1]
        return Y


def check_size(where: str, name: str, value, minimum: int = 1) -> int:
    """An int ≥ ``minimum``, else TypeError / ValueError naming ``name``.

    Raises:
        TypeError: If ``value`` is not an integer.
        ValueError: If ``value`` < ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{where}: {name} must be an integer, got {type(value).__name__}.")
    if int(value) < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}.")
    return int(value)


def check_dtype(where: str, dtype) -> torch.dtype:
    """A floating torch dtype, else TypeError.

    Raises:
        TypeError: If ``dtype`` is not a floating torch dtype.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{where}: dtype must be a floating torch dtype (torch.float64, "
                        f"torch.float32), got {dtype!r}.")
    return dtype


def gaussian_rows(b: int, n: int, gen: torch.Generator | None, device) -> Tensor:
    """Draw b standard Gaussian vectors as the rows of a (b, n) float64 block, drawn on the CPU."""
    return torch.randn(b, n, generator=gen, dtype=torch.float64).to(device)


class Basis:
    """Orthonormal columns Q (n, m), float64, stored by rows in slabs of ``slab`` columns.

    Slabs are allocated as the basis grows and never copied, so the memory is n·m·8 bytes plus
    one partly filled slab. Also records the coefficient blocks Qᵀ(A Q_J) met while the basis
    grows, from which T = QᵀAQ is assembled without further products (NOTE [range growth]).
    """

    def __init__(self, n: int, device, slab: int, limit: int):
        self.n, self.m, self.slab, self.limit, self.device = n, 0, max(1, slab), limit, device
        self.slabs: list[Tensor] = []
        self.blocks: list[tuple[int, int, Tensor]] = []   # (first column, rows filled, Qᵀ A Q_J)

    def _parts(self) -> list[Tensor]:
        """The filled rows of each slab (views), in order."""
        out, left = [], self.m
        for S in self.slabs:
            take = min(left, S.shape[0])
            if take:
                out.append(S[:take])
            left -= take
        return out

    @property
    def Qt(self) -> Tensor:
        """Qᵀ, shape (m, n) (a copy when the basis spans several slabs)."""
        parts = self._parts()
        if not parts:
            return torch.zeros(0, self.n, dtype=torch.float64, device=self.device)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def project(self, Wt: Tensor) -> tuple[Tensor, Tensor]:
        """Rows of ((I − QQᵀ) W)ᵀ and QᵀW (m, b) for a block given by its rows Wᵀ (b, n).

        Two passes of classical Gram–Schmidt, each over all slabs; rows keep every product
        contiguous.
        """
        parts = self._parts()
        if not parts:
            return Wt, Wt.new_zeros(0, Wt.shape[0])
        total = None
        for _ in range(2):
            C = torch.cat([Wt @ P.T for P in parts], dim=1)          # (b, m)
            offset = 0
            for P in parts:
                Wt = torch.addmm(Wt, C[:, offset:offset + P.shape[0]], P, alpha=-1.0)
                offset += P.shape[0]
            total = C if total is None else total + C
        return Wt, total.T

    def append(self, Ut: Tensor) -> int:
        """Add orthonormal columns given as rows Uᵀ (c, n), at most ``limit`` columns in all.

        Returns:
            The index of the first new column.
        """
        start, rows = self.m, Ut
        while rows.shape[0]:
            allocated = sum(S.shape[0] for S in self.slabs)
            room = allocated - self.m
            if room == 0:
                room = max(1, min(self.slab, self.limit - allocated))
                self.slabs.append(torch.empty(room, self.n, dtype=torch.float64,
                                              device=self.device))
            S, at = self._slab_at(self.m)
            take = min(room, rows.shape[0], S.shape[0] - at)
            S[at:at + take] = rows[:take]
            rows, self.m = rows[take:], self.m + take
        return start

    def _slab_at(self, j: int) -> tuple[Tensor, int]:
        """The slab holding column j (< allocated columns) and the row of j inside it."""
        for S in self.slabs[:-1]:
            if j < S.shape[0]:
                return S, j
            j -= S.shape[0]
        return self.slabs[-1], j

    def record(self, start: int, C: Tensor) -> None:
        """Keep C = Qᵀ A Q_J (rows: the current basis) for the columns J from ``start``."""
        self.blocks.append((start, C.shape[0], C))

    def compression(self) -> tuple[Tensor, float]:
        """(T = QᵀAQ symmetrised, asymmetry) from the recorded blocks.

        A block Qᵀ A Q_J fills the rows of the columns present when it was recorded; every other
        entry is its mirror image (T[i, j] = T[j, i] for symmetric A). Entries recorded both ways
        (the diagonal blocks) give the asymmetry ‖T − Tᵀ‖_F/‖T‖_F on them.
        """
        m = self.m
        raw = torch.zeros(m, m, dtype=torch.float64, device=self.device)
        filled = torch.zeros(m, m, dtype=torch.bool, device=self.device)
        for start, rows, C in self.blocks:
            raw[:rows, start:start + C.shape[1]] = C
            filled[:rows, start:start + C.shape[1]] = True
        both = filled & filled.T
        T = torch.where(filled, raw, raw.T)
        norm = float(torch.linalg.vector_norm(raw[both])) if m else 0.0
        asym = float(torch.linalg.vector_norm((raw - raw.T)[both])) / norm if norm > 0 else 0.0
        return 0.5 * (T + T.T), asym


def block_rank(s: Tensor, *, rtol: float, atol: float, dtype: torch.dtype) -> int:
    """Numerical rank of a block with singular values s at the absolute cut ``atol``."""
    return numerical_rank(s, rtol=rtol, atol=atol, shape=(1, 1), dtype=dtype).rank


def singular_directions(Wt: Tensor, rank_of: Callable[[Tensor], int]) -> tuple[Tensor, Tensor]:
    """Singular values s of a tall block W = (Wᵀ)ᵀ and orthonormal rows Uᵀ (r, n), r = rank_of(s).

    The rows span the r leading left singular directions of W.
    R comes from a Householder QR (R only, the cheaper half), s and V from the SVD of R (b, b);
    then U = Wᵀ-rows combined by Σ⁻¹Vᵀ, re-orthonormalised by a Cholesky QR step (U is already
    orthonormal to about eps·σ₁/σ_r, so the step is stable).
    """
    R = torch.linalg.qr(Wt.T, mode="r")[1]
    _, s, Vh = torch.linalg.svd(R)
    r = rank_of(s)
    if r == 0:
        return Wt.new_zeros(0, Wt.shape[1]), s
    Ut = (Vh[:r] / s[:r, None]) @ Wt
    L = torch.linalg.cholesky(Ut @ Ut.T)
    return torch.linalg.solve_triangular(L, Ut, upper=False), s


@dataclass(frozen=True, eq=False)
class LowRankSpectrum(Result):
    """The spectrum of a symmetric A (n, n) on a subspace, with the certificate that covers the rest.

    Attributes:
        eigenvalues: Eigenvalues of T = QᵀAQ, ascending, shape (m,), float64. When ``decided``,
            the spectrum of A is these (to within ``residual``) together with n − m eigenvalues of
            magnitude at most ``tol``.
        rank: positive + negative when decided, else None.
        inertia: (positive, negative, zero) counts of A when decided, else None.
        tol: The cut rtol·max|λ(T)|.
        rtol: The relative tolerance used.
        gap: (min |λ(T)| kept − residual) ÷ (max(outside_bound, max |λ(T)| dropped) + residual);
            inf when nothing is kept or nothing can be dropped.
        residual: Upper bound on ‖AQ − QT‖_F from the parts of the products A Q_J dropped at each
            cut (NOTE [range growth]; 0 when m = 0).
        outside_bound: β ≥ ‖(I − QQᵀ)A‖ with probability ≥ 1 − failure_probability (0 when Q spans
            the space; None when the basis was abandoned before the probes).
        subspace_dim: m, the number of basis columns.
        n: The dimension of A.
        n_matvec: Products with A used (columns of blocks).
        failure_probability: 10^(−q) for q probes behind the bound; 0 when deterministic; None
            when no bound was measured.
        decided: True when the counts are certified (NOTE [invariant-subspace certificate]).
        reason: Why the counts are not certified, naming the option that would help ("" when
            decided).
        max_abs_eigenvalue: max |λ(T)| (≤ ‖A‖; within ``residual`` of ‖A‖ when decided).
        asymmetry: ‖T − Tᵀ‖_F / ‖T‖_F before symmetrisation (a check that A is symmetric).
        dtype: The dtype the products were computed in.
        method: "krylov".
        basis: Q (n, m) when ``keep_basis=True`` (not in ``to_dict``).
        basis_eigenvectors: Eigenvectors of T (m, m), so that Ritz vectors are basis @ these
            (only with ``keep_basis=True``; not in ``to_dict``).
    """

    eigenvalues: Tensor
    rank: int | None
    inertia: tuple[int, int, int] | None
    tol: float
    rtol: float
    gap: float
    residual: float
    outside_bound: float | None
    subspace_dim: int
    n: int
    n_matvec: int
    failure_probability: float | None
    decided: bool
    reason: str
    max_abs_eigenvalue: float
    asymmetry: float
    dtype: str
    method: str = "krylov"
    basis: Tensor | None = internal(default=None)
    basis_eigenvectors: Tensor | None = internal(default=None)

    def top_eigenvalues(self, k: int = 10) -> list[float]:
        """Up to k largest eigenvalues of A, descending.

        Decided: eig T together with n − m zeros (the eigenvalues outside span Q are zero at
        tolerance ``tol``). Undecided: the largest Ritz values, lower bounds on the largest
        eigenvalues of A by Cauchy interlacing (λᵢ(T) ≤ λᵢ(A)).

        Args:
            k: How many.

        Returns:
            A list of at most k floats.
        """
        return self._extremes(k)[0]

    def bottom_eigenvalues(self, k: int = 10) -> list[float]:
        """Up to k smallest eigenvalues of A, ascending (see ``top_eigenvalues``).

        Args:
            k: How many.

        Returns:
            A list of at most k floats.
        """
        return self._extremes(k)[1]

    def _extremes(self, k: int) -> tuple[list[float], list[float]]:
        lam = self.eigenvalues
        if self.decided and self.n > self.subspace_dim:
            pad = lam.new_zeros(min(k, self.n - self.subspace_dim))
            lam = torch.sort(torch.cat([lam, pad])).values
        return lam.flip(0)[:k].tolist(), lam[:k].tolist()

    def at_floor(self) -> LowRankSpectrum:
        """This spectrum re-cut just above the floor its own evidence sets, when a gap allows.

        The floor is outside_bound + residual: every eigenvalue outside span Q and every
        perturbation of λ(T) is below it, so no cut under it can be certified (the products'
        rounding usually sets it). Where the eigenvalues of T above the floor are separated from it
        by at least ``MIN_GAP``, the cut moves into that gap, at the geometric mean of its ends,
        and the counts are decided there; otherwise the spectrum is returned as it is.
        """
        if self.decided or self.outside_bound is None:
            return self
        floor = self.outside_bound + self.residual
        a = torch.sort(self.eigenvalues.abs(), descending=True).values
        above = a[a > MIN_GAP * floor]
        if floor <= 0.0 or above.numel() == 0:
            return self
        below = a[a <= MIN_GAP * floor]
        low = max(floor, float(below[0])) if below.numel() else floor
        tol = math.sqrt(float(above[-1]) * low)
        gap, counts, reason = _decide(self.eigenvalues, tol, self.outside_bound, self.residual,
                                      self.n)
        if reason:
            return self
        return dataclasses.replace(
            self, tol=tol, rtol=tol / self.max_abs_eigenvalue, gap=gap, decided=True, reason="",
            inertia=counts, rank=counts[0] + counts[1])

    def certificate(self) -> Certificate:
        """The Certificate of a report: kind "invariant_subspace" when decided, else "none"."""
        return Certificate("invariant_subspace" if self.decided else "none", self.residual,
                           self.subspace_dim, self.n_matvec, self.failure_probability)


def low_rank_spectrum(
    matmat: Products,
    n: int,
    *,
    dtype: torch.dtype = torch.float64,
    device=None,
    rtol: float | None = None,
    max_rank: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    block: int = DEFAULT_BLOCK,
    oversample: int = DEFAULT_OVERSAMPLE,
    rng: torch.Generator | int | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_basis: bool = False,
    max_seconds: float | None = None,
) -> LowRankSpectrum:
    """Certified rank, inertia and non-zero spectrum of a symmetric A of small rank, from products.

    Grows an orthonormal basis Q of the numerical range of A by block Krylov steps with full
    reorthogonalisation (NOTE [range growth]), then T = QᵀAQ is decided in float64 and the
    counts are certified by the residual ‖AQ − QT‖_F and a posterior bound β on ‖(I − QQᵀ)A‖
    from ``oversample`` fresh Gaussian probes (NOTE [invariant-subspace certificate]). About
    rank + block + oversample products and 2·n·rank² flops. It gives up with ``decided=False``
    and a reason, never with a wrong count, when the basis would exceed ``max_rank`` columns or
    ``max_bytes``, or when ``max_seconds`` run out before the basis stops growing.

    Args:
        matmat: V (n, b) ↦ A V (n, b) for a symmetric A (batched Hessian-vector products, for
            instance), a dense symmetric tensor (n, n), or a scipy LinearOperator.
        n: The dimension of A.
        dtype: The dtype the products are computed in (vectors are cast to it; decisions run in
            float64; the default rtol uses its eps).
        device: Where the vectors live (default: the tensor's device, else the CPU).
        rtol: Relative inertia tolerance in (0, 1): tol = rtol·max|λ|; default n·eps(dtype).
            Products assembled with more rounding need more (the spec's checks use 1e-9).
        max_rank: Give up when the basis would exceed this many columns (default: n).
        max_bytes: Give up when the float64 basis (n·m·8 bytes) would exceed this.
        block: Columns per block of products (Krylov block size).
        oversample: Fresh Gaussian probes q behind the outside bound (failure probability
            10^(−q)).
        rng: torch.Generator, int seed, or None (a generator seeded with 0: reproducible).
        progress: Called as progress(done, total) in products after each block; total is an
            estimate that may grow.
        keep_basis: Keep Q and the eigenvectors of T in the result.
        max_seconds: Give up when this much wall time has passed and the basis still grows
            (checked after each block; default: no limit).

    Returns:
        A LowRankSpectrum.

    Raises:
        TypeError: If matmat is not a callable, tensor or LinearOperator, dtype is not a floating
            dtype, rng is invalid, or a size is not an integer.
        ValueError: If n, block, oversample, max_rank or max_bytes are below 1, rtol lies outside
            (0, 1), max_seconds is not positive, or the products have the wrong shape or
            non-finite values.

    Example:
        >>> import torch
        >>> from lossgeom.linalg.krylov import low_rank_spectrum
        >>> u = torch.ones(50, dtype=torch.float64) / 50 ** 0.5
        >>> A = 3.0 * torch.outer(u, u)          # rank 1, eigenvalue 3
        >>> s = low_rank_spectrum(lambda V: A @ V, 50)
        >>> s.inertia, round(s.eigenvalues[-1].item(), 12), s.decided
        ((1, 0, 49), 3.0, True)
    """
    where = "low_rank_spectrum(matmat, n)"
    n = check_size(where, "n", n)
    dtype = check_dtype(where, dtype)
    check_rtol(where, rtol)
    block = check_size(where, "block", block)
    q = check_size(where, "oversample", oversample)
    max_bytes = check_size(where, "max_bytes", max_bytes)
    if max_rank is not None:
        max_rank = check_size(where, "max_rank", max_rank)
    if progress is not None and not callable(progress):
        raise TypeError(f"{where}: progress must be a callable (done, total) or None, got "
                        f"{type(progress).__name__}.")
    deadline = None if max_seconds is None else \
        time.monotonic() + check_seconds(where, "max_seconds", max_seconds)
    gen = generator(where, rng, none_seed=0)
    apply = BlockProducts(where, matmat, n, dtype=dtype, device=device, chunk=block)
    dev = apply.device
    rtol_ = default_inertia_rtol(n, dtype) if rtol is None else float(rtol)
    byte_cap = max_bytes // (8 * n)
    cap = min(n, max_rank if max_rank is not None else n, byte_cap)
    basis = Basis(n, dev, SLAB_COLUMNS, cap)

    def report(upcoming: int) -> None:
        if progress is not None:
            progress(apply.n_matvec, apply.n_matvec + upcoming + q)

    norm_est = 0.0

    def note_norms(Wt: Tensor, scale: Tensor | None = None) -> None:
        nonlocal norm_est
        norms = torch.linalg.vector_norm(Wt, dim=1)
        if scale is not None:
            norms = norms / scale
        if norms.numel():
            norm_est = max(norm_est, float(norms.max()))

    def apply_rows(Vt: Tensor) -> Tensor:
        return apply(Vt.T).T.contiguous()

    def max_row_norm(Wt: Tensor) -> float:
        return float(torch.linalg.vector_norm(Wt, dim=1).max())

    omega = gaussian_rows(min(block, n), n, gen, dev)
    W = apply_rows(omega)                     # blocks are held by their rows: (b, n)
    note_norms(W, torch.linalg.vector_norm(omega, dim=1))
    # kind: "start" (A Ω), "krylov" (A Q_J for the columns J added last), "probe" (A Ω' fresh)
    kind, start, probe_norm, pending, res2, reason = "start", 0, None, None, 0.0, ""
    while True:
        report(W.shape[0])
        image_norm = max_row_norm(W)
        W, C = basis.project(W)
        if kind == "krylov":
            basis.record(start, C)
        cut = rtol_ * norm_est
        U, s = singular_directions(W, partial(block_rank, rtol=rtol_, atol=cut, dtype=dtype))
        r_new = U.shape[0]
        if kind == "krylov":
            if basis.m == n or (pending is not None and image_norm <= cut):
                # Q spans the space, or A u is below the cut for the directions u the probes
                # found: those were the products' rounding, not a missed eigenvalue
                res2 += float((s * s).sum())
                probe_norm = 0.0 if basis.m == n else pending
                break
            pending = None
            res2 += float((s[r_new:] ** 2).sum())
        if r_new == 0:
            if kind == "probe":                 # the fresh probes find nothing: the certificate
                probe_norm = max_row_norm(W)
                break
            W, kind = apply_rows(gaussian_rows(q, n, gen, dev)), "probe"
            continue
        if basis.m + r_new > cap:
            reason = _budget_reason(n, basis.m, r_new, max_rank, max_bytes, byte_cap)
        elif deadline is not None and time.monotonic() > deadline:
            reason = (f"max_seconds={max_seconds:g} ran out after {apply.n_matvec} products with "
                      f"the basis at {basis.m} columns and still growing ({r_new} new directions); "
                      "raise max_seconds")
        if reason:                            # give up: what was not added counts as residual
            if kind == "krylov":
                res2 += float((s[:r_new] ** 2).sum())
            break
        if kind == "probe":
            pending = max_row_norm(W)
        Unew = U[:r_new]
        start = basis.append(Unew)
        W, kind = apply_rows(Unew), "krylov"
        note_norms(W)

    m = basis.m
    T, asymmetry = basis.compression()
    if keep_basis:
        lam, vecs = torch.linalg.eigh(T)
    else:
        lam, vecs = torch.linalg.eigvalsh(T), None
    residual = math.sqrt(res2)
    amax = float(lam.abs().max()) if m else 0.0
    bound = None if probe_norm is None else OUTSIDE_BOUND_FACTOR * probe_norm
    if basis.m == n:
        bound, fail = 0.0, 0.0
    else:
        fail = None if bound is None else 10.0 ** (-q)
    tol = rtol_ * amax
    gap, counts, why = _decide(lam, tol, bound, residual, n)
    reason = reason or why
    decided = not reason
    if progress is not None:
        progress(apply.n_matvec, apply.n_matvec)
    counts = counts if decided else None
    return LowRankSpectrum(
        eigenvalues=lam, rank=sum(counts[:2]) if decided else None, inertia=counts, tol=tol,
        rtol=rtol_,
        gap=gap, residual=residual, outside_bound=bound, subspace_dim=m, n=n,
        n_matvec=apply.n_matvec, failure_probability=fail, decided=decided, reason=reason,
        max_abs_eigenvalue=amax, asymmetry=asymmetry, dtype=str(dtype).replace("torch.", ""),
        basis=basis.Qt.T.clone() if keep_basis else None, basis_eigenvectors=vecs)


def _budget_reason(n: int, m: int, r_new: int, max_rank, max_bytes: int, byte_cap: int) -> str:
    """Why the basis was abandoned, naming the option to raise."""
    need = m + r_new
    if max_rank is not None and need > max_rank and max_rank <= byte_cap:
        return (f"the numerical range has more than max_rank = {max_rank} directions (basis "
                f"{m} columns, {r_new} more found); raise max_rank, or use the degeneracy profile")
    return (f"a basis of {need} columns needs {format_bytes(8.0 * n * need)} (n = {n}, float64), "
            f"above max_bytes = {format_bytes(max_bytes)}; raise max_bytes, or use the degeneracy "
            "profile")


def _decide(lam: Tensor, tol: float, bound: float | None, residual: float, n: int
            ) -> tuple[float, tuple[int, int, int], str]:
    """(gap, counts, reason) of the cut at ``tol`` (NOTE [invariant-subspace certificate])."""
    a = lam.abs()
    kept, dropped = a[a > tol], a[a <= tol]
    kept_min = float(kept.min()) if kept.numel() else math.inf
    drop_max = float(dropped.max()) if dropped.numel() else 0.0
    below = max(bound if bound is not None else math.inf, drop_max) + residual
    above = kept_min - residual
    gap = math.inf if (math.isinf(above) or below == 0.0) else max(above, 0.0) / below
    amax = float(a.max()) if a.numel() else 0.0
    pos, neg = int((lam > tol).sum()), int((lam < -tol).sum())
    reason = _certificate_reason(bound, residual, drop_max, kept_min, tol, gap, amax)
    return gap, (pos, neg, n - pos - neg), reason


def _certificate_reason(bound: float | None, residual: float, drop_max: float, kept_min: float,
                        tol: float, gap: float, amax: float) -> str:
    """"" when the certificate holds, else what fails and which option would help."""
    suggest = ""
    if amax > 0:
        worst = max(bound or 0.0, drop_max) + residual
        suggest = f" (e.g. rtol = {min(0.5, 10 * worst / amax):.1g})"
    if bound is not None and bound + residual > tol:
        return (f"the bound on eigenvalues outside the subspace, {bound:.3g} (plus residual "
                f"{residual:.3g}), exceeds tol = {tol:.3g}: they could be counted wrongly; the "
                f"products' rounding may set this floor: pass a larger rtol{suggest}")
    if drop_max + residual > tol:
        return (f"the residual ‖AQ − QT‖_F = {residual:.3g} moves eigenvalues counted zero above "
                f"tol = {tol:.3g}; pass a larger rtol{suggest}")
    if kept_min - residual <= tol:
        return (f"the residual ‖AQ − QT‖_F = {residual:.3g} moves eigenvalues counted non-zero "
                f"below tol = {tol:.3g}; pass a larger rtol{suggest}")
    if gap < MIN_GAP:
        return (f"gap {gap:.3g} across the cut at tol = {tol:.3g} is below MIN_GAP = {MIN_GAP:g}: "
                "eigenvalues lie near the tolerance; pass an rtol inside a gap of the spectrum")
    return ""
