"""The quadratic loss ‖W_h⋯W_1 − Q‖²_F: Eckart–Young critical points and Morse indices (§4.6).

With Q = Σ_i σ_i u_i v_iᵀ, the critical points of ℓ(W) = ‖W − Q‖²_F on the rank-e matrices are
W_I = Σ_{i∈I} σ_i u_i v_iᵀ, |I| = e. For an architecture with r = min width, the pure critical
points of L = ℓ ∘ μ map to |I| = r, the spurious ones to |I| < r. The Morse index of ∇²L on the
fibre μ⁻¹(W_I) is #{(i, j) : i ∈ I, j ∉ I, σ_j > σ_i}; its nullity is the fibre dimension.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product as cartesian
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._checks import generator
from ..analysis import analyze
from ..linalg import RankDecision, numerical_rank
from ..models import mlp
from ..problem import Problem
from ..tolerances import default_rank_rtol
from ._classify import classify
from ._functional import functional_space
from ._objectives import frobenius_loss
from ._weights import _matrix, check_widths, flatten_weights

__all__ = ["EckartYoungLandscape", "EckartYoungPoint", "FibreCheck", "SingularValueTieWarning",
           "eckart_young_check", "eckart_young_landscape", "eckart_young_points", "fibre_point"]


class SingularValueTieWarning(UserWarning):
    """Singular values of Q tie, so ‖W − Q‖²_F has a non-finite critical set on M_r."""


class EckartYoungPoint(NamedTuple):
    """A critical point W_I = Σ_{i∈I} σ_i u_i v_iᵀ of ‖W − Q‖²_F on the rank-|I| matrices.

    Attributes:
        index_set: I, 0-based indices into σ_1 ≥ σ_2 ≥ … (sorted ascending).
        loss: ‖W_I − Q‖²_F = Σ_{i∉I} σ_i² (no factor ½).
        morse_index: #{(i, j) : i ∈ I, j ∉ I, σ_j > σ_i, σ_j > 0}: the index of ∇²L at any θ on
            the fibre μ⁻¹(W_I) (§4.6).
    """

    index_set: tuple[int, ...]
    loss: float
    morse_index: int


@dataclass(frozen=True)
class EckartYoungLandscape:
    """All critical values of L(θ) = ‖W_h⋯W_1 − Q‖²_F for an architecture with r = min width.

    Attributes:
        sigma: Singular values of Q, descending, shape (min(Q.shape),).
        rank_q: RankDecision of Q (m = number of nonzero σ).
        r: The rank bound of the functional space.
        widths: (d_0, …, d_h) used for the predicted inertia.
        points: The pure critical points (|I| = min(r, m)), sorted by loss.
        spurious: (I, loss) for |I| < min(r, m): critical values of L reached only at spurious
            critical points (saddles), sorted by loss; includes I = () (θ = 0, L = ‖Q‖²_F).
        predicted_inertia: Per point, (positive, negative, zero) of ∇²L on its fibre:
            (dim M_r − index − t, index, d_θ − dim M_r + t) (§4.6), where t counts tied
            pairs σ_i = σ_j with i ∈ I, j ∉ I (0 without ties); None when rank Q < r.
        ties: Groups of tied singular values (0-based indices, size ≥ 2).
        finite: False when a tie makes the critical set a union of continuous families.
        tie_tol: Absolute tolerance used to detect ties.
        loss_at_zero: L(0) = ‖Q‖²_F.
    """

    sigma: tuple[float, ...]
    rank_q: RankDecision
    r: int
    widths: tuple[int, ...]
    points: tuple[EckartYoungPoint, ...]
    spurious: tuple[tuple[tuple[int, ...], float], ...]
    predicted_inertia: tuple[tuple[int, int, int] | None, ...]
    ties: tuple[tuple[int, ...], ...]
    finite: bool
    tie_tol: float
    loss_at_zero: float

    def to_dict(self) -> dict:
        """Plain-dict form of the fields.

        Returns:
            A dict of plain Python values (floats may be inf; see ``report.jsonable``).
        """
        return {
            "sigma": list(self.sigma), "rank_q": self.rank_q.to_dict(), "r": self.r,
            "widths": list(self.widths),
            "points": [{"index_set": list(p.index_set), "loss": p.loss,
                        "morse_index": p.morse_index,
                        "predicted_inertia": None if inr is None else list(inr)}
                       for p, inr in zip(self.points, self.predicted_inertia, strict=True)],
            "spurious": [{"index_set": list(i), "loss": v} for i, v in self.spurious],
            "ties": [list(t) for t in self.ties], "finite": self.finite,
            "tie_tol": self.tie_tol, "loss_at_zero": self.loss_at_zero,
        }


def _check_rank_arg(where: str, r, Q: Tensor) -> int:
    if isinstance(r, bool) or not isinstance(r, int | np.integer):
        raise TypeError(f"{where}: r must be an integer, got {type(r).__name__}.")
    if not 1 <= int(r) <= min(Q.shape):
        raise ValueError(f"{where}: r = {int(r)} must lie in [1, min(Q.shape)] = "
                         f"[1, {min(Q.shape)}] for Q of shape {tuple(Q.shape)}.")
    return int(r)


def _tie_groups(sigma: Tensor, m: int, tol: float) -> list[list[int]]:
    """Group σ_0..σ_{m-1} (descending) into runs whose neighbours lie within ``tol``.

    Returns:
        The groups of 0-based indices, in order.
    """
    groups: list[list[int]] = []
    for i in range(m):
        if groups and float(sigma[groups[-1][-1]] - sigma[i]) <= tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _representatives(groups: list[list[int]], size: int, limit: int, where: str
                     ) -> list[tuple[int, ...]]:
    """Index sets of the given size, one per tie family: the first k_g indices of group g.

    Returns:
        The representative index sets.

    Raises:
        ValueError: If there are more than ``limit`` of them.
    """
    count = _count_families([len(g) for g in groups], size)
    if count > limit:
        raise ValueError(f"{where}: there are {count} critical points with |I| = {size}, above "
                         f"max_points = {limit}. Use a smaller Q or r, or raise max_points.")
    out = []
    for ks in cartesian(*[range(len(g) + 1) for g in groups]):
        if sum(ks) == size:
            out.append(tuple(sorted(i for g, k in zip(groups, ks, strict=True) for i in g[:k])))
    return out


def _count_families(sizes: list[int], size: int) -> int:
    ways = [1] + [0] * size  # number of count vectors (k_g ≤ |g|) with Σ k_g = s
    for g in sizes:
        ways = [sum(ways[s - k] for k in range(min(g, s) + 1)) for s in range(size + 1)]
    return ways[size]


def _ey_core(where: str, Q, r, tie_rtol, max_points):
    Qt = _matrix(where, "Q", Q)
    r = _check_rank_arg(where, r, Qt)
    if tie_rtol is not None and not 0.0 <= float(tie_rtol) < 1.0:
        raise ValueError(f"{where}: tie_rtol must lie in [0, 1), got {tie_rtol!r}.")
    sigma = torch.linalg.svdvals(Qt)
    rank_q = numerical_rank(sigma, shape=tuple(Qt.shape))
    m = rank_q.rank
    tie_rtol_ = default_rank_rtol(tuple(Qt.shape)) if tie_rtol is None else float(tie_rtol)
    tie_tol = tie_rtol_ * float(sigma[0]) if sigma.numel() else 0.0
    groups = _tie_groups(sigma, m, tie_tol)
    ties = tuple(tuple(g) for g in groups if len(g) > 1)
    e = min(r, m)
    finite = not (ties and 0 < e < m)
    sq = (sigma ** 2).tolist()
    total = float(sum(sq))

    def point(subset: tuple[int, ...]) -> EckartYoungPoint:
        inside = set(subset)
        loss = float(sum(s for i, s in enumerate(sq) if i not in inside))
        index = sum(1 for i in subset for j in range(m)
                    if j not in inside and float(sigma[j] - sigma[i]) > tie_tol)
        return EckartYoungPoint(subset, loss, index)

    reps = _representatives(groups, e, max_points, where)
    points = sorted((point(subset) for subset in reps), key=lambda p: (p.loss, p.index_set))
    if not finite:
        warnings.warn(
            f"{where}: singular values of Q tie within tol = {tie_tol:.3g} (groups "
            f"{[list(t) for t in ties]}, 0-based). The critical set of ‖W − Q‖²_F on rank-{e} "
            "matrices is then not finite: index sets that split a tie group form continuous "
            "families with one loss. Returning one representative per family (the lowest "
            "indices of each group); losses are exact, Morse indices count strictly larger "
            "singular values, and each family adds zero eigenvalues beyond the fibre.",
            SingularValueTieWarning, stacklevel=3)
    return Qt, r, sigma, rank_q, m, e, groups, ties, finite, tie_tol, total, points, point


def eckart_young_points(Q, r: int, *, tie_rtol: float | None = None,
                        max_points: int = 100_000) -> list[EckartYoungPoint]:
    """Every critical point of ℓ(W) = ‖W − Q‖²_F on the rank-r matrices (§4.6).

    With Q = Σ_{i≤m} σ_i u_i v_iᵀ (σ_1 > … > σ_m > 0) these are W_I = Σ_{i∈I} σ_i u_i v_iᵀ,
    |I| = r: C(m, r) points with loss Σ_{i∉I} σ_i² and Morse index
    #{(i, j) : i ∈ I, j ∉ I, j ≤ m, σ_j > σ_i}. If rank Q = m < r the only one is Q itself
    (|I| = m, loss 0).

    Ties σ_i = σ_j (within tie_rtol·σ_1) make the critical set not finite; a
    ``SingularValueTieWarning`` says so and one representative per family is returned.

    Args:
        Q: Target matrix, shape (d_h, d_0).
        r: Rank of the stratum, 1 ≤ r ≤ min(Q.shape).
        tie_rtol: Relative tolerance for ties, in [0, 1); default max(Q.shape)·eps.
        max_points: Refuse to enumerate more than this many index sets.

    Returns:
        A list of EckartYoungPoint(index_set, loss, morse_index), sorted by loss.

    Raises:
        TypeError: If Q is not a tensor or array, or r not an integer.
        ValueError: If Q is not a finite matrix, r is outside [1, min(Q.shape)], tie_rtol is
            out of range, or there are more than max_points points.

    Example:
        >>> import torch
        >>> from lossgeom.linear import eckart_young_points
        >>> Q = torch.diag(torch.tensor([4., 3., 2., 1.], dtype=torch.float64))
        >>> [(p.loss, p.morse_index) for p in eckart_young_points(Q, 2)]  # §4.6 table
        [(5.0, 0), (10.0, 1), (13.0, 2), (17.0, 2), (20.0, 3), (25.0, 4)]
    """
    out = _ey_core("eckart_young_points(Q, r)", Q, r, tie_rtol, max_points)
    return list(out[11])


def eckart_young_landscape(Q, r: int, widths=None, *, tie_rtol: float | None = None,
                           max_points: int = 100_000) -> EckartYoungLandscape:
    """The whole Eckart–Young landscape: pure points, spurious values, predicted inertia.

    For an architecture with r = min width, the critical values of L = ‖μ(θ) − Q‖²_F are
    {‖Q‖² − Σ_{i∈I} σ_i² : |I| ≤ r} (§4.6). At a pure point (|I| = r) the inertia of
    ∇²L on the fibre is (dim M_r − index, index, d_θ − dim M_r).

    Args:
        Q: Target matrix, shape (d_h, d_0).
        r: Rank bound, 1 ≤ r ≤ min(Q.shape).
        widths: (d_0, …, d_h) with d_0 = Q.shape[1], d_h = Q.shape[0], min width r; default
            (d_0, r, d_h).
        tie_rtol: Relative tolerance for ties (see ``eckart_young_points``).
        max_points: Refuse to enumerate more than this many index sets per size.

    Returns:
        An EckartYoungLandscape.

    Raises:
        TypeError: If Q is not a tensor or array, or r or widths are not integers.
        ValueError: As ``eckart_young_points``, or if widths do not match Q and r.

    Example:
        >>> import torch
        >>> from lossgeom.linear import eckart_young_landscape
        >>> Q = torch.diag(torch.tensor([4., 3., 2., 1.], dtype=torch.float64))
        >>> ls = eckart_young_landscape(Q, 2)
        >>> ls.predicted_inertia[0], ls.loss_at_zero  # (12, 0, 4): nullity r² = 4
        ((12, 0, 4), 30.0)
    """
    where = "eckart_young_landscape(Q, r, widths)"
    (Qt, r, sigma, rank_q, m, e, groups, ties, finite, tie_tol, total, points,
     point) = _ey_core(where, Q, r, tie_rtol, max_points)
    d = _check_ey_widths(where, widths, Qt, r)
    fs = functional_space(d)
    spurious = []
    for size in range(e):
        spurious += [(p.index_set, p.loss)
                     for p in map(point, _representatives(groups, size, max_points, where))]
    spurious.sort(key=lambda t: (t[1], t[0]))

    # A tied pair (i ∈ I, j ∉ I, σ_i = σ_j) turns one positive eigenvalue into a zero: the
    # Grassmannian family through W_I has that many extra flat directions.

    def tied_pairs(subset: tuple[int, ...]) -> int:
        return sum(1 for i in subset for j in range(m)
                   if j not in subset and abs(float(sigma[i] - sigma[j])) <= tie_tol)

    # Only at rank r (a smooth point with maximal dμ) is the inertia (dim M_r − ind, ind, fibre);
    # for rank Q < r the single point Q is singular and no closed form is claimed.
    inert = tuple((fs.dim - p.morse_index - tied_pairs(p.index_set), p.morse_index,
                   fs.n_params - fs.dim + tied_pairs(p.index_set)) if e == r else None
                  for p in points)
    return EckartYoungLandscape(tuple(sigma.tolist()), rank_q, r, d, tuple(points),
                                tuple(spurious), inert, ties, finite, tie_tol, total)


def _check_ey_widths(where: str, widths, Q: Tensor, r: int) -> tuple[int, ...]:
    if widths is None:
        return (int(Q.shape[1]), r, int(Q.shape[0]))
    d = check_widths(where, widths)
    if d[0] != Q.shape[1] or d[-1] != Q.shape[0]:
        raise ValueError(f"{where}: widths {d} do not match Q of shape {tuple(Q.shape)}; "
                         f"expected d_0 = {Q.shape[1]} and d_h = {Q.shape[0]}.")
    if min(d) != r:
        raise ValueError(f"{where}: widths {d} have min width {min(d)} but r = {r}; the "
                         "functional space of these widths is M_{min width}.")
    return d


def fibre_point(Q, index_set: Sequence[int], widths, *, rng=None) -> list[Tensor]:
    """Weights θ with μ(θ) = W_I = Σ_{i∈I} σ_i u_i v_iᵀ: a point on the fibre μ⁻¹(W_I).

    With B = U_I Σ_I^½ (d_h, e), C = Σ_I^½ V_Iᵀ (e, d_0) and random P_i (d_i, e) with
    orthonormal columns: W_1 = P_1 C, W_i = P_i P_{i-1}ᵀ, W_h = B P_{h-1}ᵀ. Such θ is a
    critical point of L = ‖μ(θ) − Q‖²_F (∇ℓ(W_I) is normal to Col and Row of every factor), so
    ``lossgeom.analyze`` can confirm the inertia predicted by ``eckart_young_landscape``.

    Args:
        Q: Target matrix, shape (d_h, d_0).
        index_set: I, distinct 0-based indices into the singular values (descending).
        widths: (d_0, …, d_h) with d_0 = Q.shape[1], d_h = Q.shape[0], every d_i ≥ |I|.
        rng: torch.Generator, int seed, or None (seed 0).

    Returns:
        [W_1, …, W_h], float64.

    Raises:
        TypeError: If Q is not a tensor or array, widths not integers, or rng invalid.
        ValueError: If widths do not match Q, I has repeated or out-of-range indices, or a
            width is smaller than |I|.

    Example:
        >>> import torch
        >>> from lossgeom.linear import fibre_point, product
        >>> Q = torch.diag(torch.tensor([4., 3., 2., 1.], dtype=torch.float64))
        >>> Ws = fibre_point(Q, (0, 2), (4, 2, 4), rng=1)
        >>> W_I = torch.diag(torch.tensor([4., 0., 2., 0.], dtype=torch.float64))
        >>> torch.allclose(product(Ws), W_I)
        True
    """
    where = "fibre_point(Q, index_set, widths)"
    Qt = _matrix(where, "Q", Q)
    d = check_widths(where, widths)
    if d[0] != Qt.shape[1] or d[-1] != Qt.shape[0]:
        raise ValueError(f"{where}: widths {d} do not match Q of shape {tuple(Qt.shape)}; "
                         f"expected d_0 = {Qt.shape[1]} and d_h = {Qt.shape[0]}.")
    subset = tuple(int(i) for i in index_set)
    p = min(Qt.shape)
    if len(set(subset)) != len(subset) or any(not 0 <= i < p for i in subset):
        raise ValueError(f"{where}: index_set {subset} must hold distinct indices in [0, {p}).")
    if len(subset) > min(d):
        raise ValueError(f"{where}: |I| = {len(subset)} exceeds the smallest width {min(d)} of "
                         f"{d}; "
                         "μ cannot reach rank |I|.")
    g = generator(where, rng, none_seed=0)
    U, S, Vh = torch.linalg.svd(Qt, full_matrices=False)
    idx = torch.tensor(subset, dtype=torch.long)
    root = S[idx].sqrt()
    B = U[:, idx] * root
    C = root[:, None] * Vh[idx]
    e = len(subset)
    if len(d) == 2:
        return [B @ C]
    P = []
    for width in d[1:-1]:
        A = torch.randn(width, max(e, 1), generator=g, dtype=torch.float64)
        P.append(torch.linalg.qr(A).Q[:, :e])
    Ws = [P[0] @ C] + [P[i] @ P[i - 1].T for i in range(1, len(P))] + [B @ P[-1].T]
    return Ws


class FibreCheck(NamedTuple):
    """Predicted against measured inertia of ∇²L at a point on the fibre μ⁻¹(W_I).

    Attributes:
        index_set: I.
        loss: Σ_{i∉I} σ_i² (closed form).
        measured_loss: L(θ) at the constructed θ.
        morse_index: The closed-form index.
        predicted: (positive, negative, zero) = (dim M_r − index, index, d_θ − dim M_r).
        measured: The inertia of ∇²L(θ) from ``lossgeom.analyze``.
        tol: Its eigenvalue tolerance.
        gap: Its gap.
        kind: The ``analyze`` kind.
        pure: ``classify`` purity at θ.
        agrees: measured == predicted and the measured inertia was decided.
    """

    index_set: tuple[int, ...]
    loss: float
    measured_loss: float
    morse_index: int
    predicted: tuple[int, int, int] | None
    measured: tuple[int, int, int]
    tol: float
    gap: float
    kind: str
    pure: bool | None
    agrees: bool | None


def eckart_young_check(Q, r: int, widths=None, *, rng=None, rtol: float | None = None,
                       tie_rtol: float | None = None) -> tuple[EckartYoungLandscape,
                                                               list[FibreCheck]]:
    """Confirm the Eckart–Young landscape numerically: one θ per fibre, ``analyze`` its Hessian.

    For each pure critical point W_I, ``fibre_point`` builds θ with μ(θ) = W_I, and
    ``lossgeom.analyze`` on L(θ) = ‖μ(θ) − Q‖²_F (inputs I_{d_0}, targets Qᵀ, MSE-sum) gives
    the inertia of ∇²L, compared with (dim M_r − index, index, d_θ − dim M_r).

    Args:
        Q: Target matrix, shape (d_h, d_0).
        r: Rank bound, 1 ≤ r ≤ min(Q.shape).
        widths: (d_0, …, d_h) with min width r; default (d_0, r, d_h).
        rng: torch.Generator, int seed or None, for ``fibre_point``.
        rtol: Relative tolerance of the inertia decisions (``analyze``).
        tie_rtol: Relative tolerance for singular-value ties.

    Returns:
        (landscape, checks): the EckartYoungLandscape and one FibreCheck per point.

    Raises:
        TypeError: As ``eckart_young_landscape``.
        ValueError: As ``eckart_young_landscape``.
    """
    ls = eckart_young_landscape(Q, r, widths, tie_rtol=tie_rtol)
    Qt = _matrix("eckart_young_check(Q, r)", "Q", Q)
    problem = Problem(mlp(list(ls.widths), activation="linear", bias=False),
                      torch.eye(Qt.shape[1], dtype=torch.float64), Qt.T.contiguous())
    g = generator("eckart_young_check(Q, r)", rng, none_seed=0)
    loss = frobenius_loss(Qt)
    checks = []
    for p, pred in zip(ls.points, ls.predicted_inertia, strict=True):
        Ws = fibre_point(Qt, p.index_set, ls.widths, rng=g)
        rep = analyze(problem, flatten_weights(Ws), rtol=rtol).to_dict()
        h = rep["hessian"]
        measured = tuple(int(x) for x in h["inertia"])
        decided = bool(h.get("decided", True))
        pure = classify(Ws, loss, rtol=rtol).pure
        checks.append(FibreCheck(p.index_set, p.loss, float(rep["loss"]), p.morse_index, pred,
                                 measured, float(h["tol"]), float(h["gap"]), str(rep["kind"]),
                                 pure, None if pred is None else (measured == pred and decided)))
    return ls, checks
