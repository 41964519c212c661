"""Pure and spurious critical points of linear networks, and the landscapes of spec §4.6–§4.7.

L = ℓ ∘ μ with μ(θ) = W̄ = W_h ⋯ W_1 and ℓ a smooth loss on R^{d_h×d_0}. A critical point θ of L
is **pure** if W̄ is a critical point of ℓ restricted to the functional space M_r, and
**spurious** otherwise (spec §4.2). Every critical θ maps to a critical point of ℓ on the
stratum of its own rank e = rank W̄ (spec §4.4), so the test reduces to:

* filling (M_r = R^{d_h×d_0}): pure ⇔ ∇ℓ(W̄) = 0;
* non-filling, e = r (a smooth point of M_r): pure ⇔ P_T ∇ℓ(W̄) = 0 (always true at a critical θ);
* non-filling, e < r (a singular point, Sing M_r = M_{r-1}): under the "tangent_cone"
  convention pure ⇔ ∇ℓ(W̄) = 0 (the tangent cone of a determinantal variety spans the whole
  space); under "all_singular" every singular point counts as critical, so pure.

NOTE [stationarity tolerances]
    θ is critical when ‖∇L(θ)‖ ≤ grad_tol, default CRITICAL_RTOL·s_ℓ·s_μ with
    s_ℓ = max(1, ‖∇ℓ(W̄)‖_F) and s_μ = max(1, (Σ_i ‖W_{>i}‖₂² ‖W_{<i}‖₂²)^½): since
    ‖∇_{W_i}L‖_F ≤ ‖W_{>i}‖₂‖∇ℓ‖_F‖W_{<i}‖₂, the tolerance is relative to the largest gradient
    the same ∇ℓ could produce, with a unit floor for points where it vanishes. A functional
    gradient (∇ℓ or P_T∇ℓ) counts as zero when its norm is ≤ CRITICAL_RTOL·max(1, ‖W̄‖_F,
    ‖∇ℓ(W̄)‖_F). Both tolerances are keywords and both are reported.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations, product as cartesian
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._checks import check_finite, check_option, check_rtol
from ..linalg import Inertia, RankDecision, inertia, numerical_rank
from ..linalg.tolerances import CRITICAL_RTOL, default_rank_rtol
from ..losses import LOSS_NAMES, Loss
from ._functional import (
    DifferentialRank,
    FunctionalSpace,
    _differential,
    _partial_products,
    _product,
    _staircase,
    _tangent_space,
    as_weights,
    check_widths,
    functional_space,
    widths_of,
)

__all__ = [
    "CONVENTIONS",
    "BadMinimaResult",
    "CriticalCluster",
    "EckartYoungLandscape",
    "EckartYoungPoint",
    "FunctionalLoss",
    "LinearCritical",
    "SingularValueTieWarning",
    "WeightedFrobeniusExample",
    "bad_minima_experiment",
    "classify",
    "data_loss",
    "eckart_young_landscape",
    "eckart_young_points",
    "fibre_point",
    "frobenius_loss",
    "functional_loss",
    "weighted_frobenius_example",
    "weighted_frobenius_loss",
]

CONVENTIONS = ("tangent_cone", "all_singular")
"""Singular-point conventions of spec §4.2: a singular W̄ ∈ Sing M_r counts as critical for ℓ|M
iff ∇ℓ(W̄) = 0 ("tangent_cone"), or always ("all_singular")."""

NUMERICAL_CROSS_CHECK_MAX = 1_000_000
"""``cross_check="auto"`` materialises dμ when d_h·d_0·d_θ is at most this many entries."""


# ---------------------------------------------------------------------------------------------
# losses on the functional space
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunctionalLoss:
    """A smooth loss ℓ: R^{d_h×d_0} → R on end-to-end matrices; calling it gives ∇ℓ(W).

    Attributes:
        loss: W (d_h, d_0) ↦ ℓ(W), a scalar tensor; a pure torch function (``torch.func``
            transforms it).
        name: Short description used in reports.
        shape: (d_h, d_0) the loss expects, or None when any shape works.
    """

    loss: Callable[[Tensor], Tensor]
    name: str = "custom"
    shape: tuple[int, int] | None = None

    def value(self, W: Tensor) -> float:
        """ℓ(W) as a float."""
        return float(self.loss(torch.as_tensor(W, dtype=torch.float64)))

    def gradient(self, W: Tensor) -> Tensor:
        """∇ℓ(W), shape (d_h, d_0), float64 (reverse-mode autograd)."""
        return torch.func.grad(self.loss)(torch.as_tensor(W, dtype=torch.float64))

    def __call__(self, W: Tensor) -> Tensor:
        """∇ℓ(W): a FunctionalLoss is a valid ``loss_grad_fn`` for ``classify``."""
        return self.gradient(W)


def _matrix(where: str, name: str, A) -> Tensor:
    if not isinstance(A, Tensor | np.ndarray):
        raise TypeError(f"{where}: {name} must be a torch.Tensor or numpy array, got "
                        f"{type(A).__name__}.")
    t = torch.as_tensor(A).detach().to(torch.float64, copy=True).cpu()
    if t.ndim != 2 or 0 in t.shape:
        raise ValueError(f"{where}: {name} has shape {tuple(t.shape)}; a non-empty matrix is "
                         "expected.")
    check_finite(where, name, t)
    return t


def frobenius_loss(Q) -> FunctionalLoss:
    """ℓ(W) = ‖W − Q‖²_F (no factor ½), the quadratic loss of spec §4.6.

    Args:
        Q: Target matrix, shape (d_h, d_0).

    Returns:
        A FunctionalLoss with ∇ℓ(W) = 2(W − Q).

    Raises:
        TypeError: If Q is not a tensor or array.
        ValueError: If Q is not a finite non-empty matrix.

    Example:
        >>> import torch
        >>> from lossgeom.linear import frobenius_loss
        >>> frobenius_loss(torch.eye(2)).value(torch.zeros(2, 2))
        2.0
    """
    Qt = _matrix("frobenius_loss(Q)", "Q", Q)
    return FunctionalLoss(lambda W: ((W - Qt) ** 2).sum(), "frobenius", tuple(Qt.shape))


def weighted_frobenius_loss(Q, weights) -> FunctionalLoss:
    """ℓ(W) = Σ_ab Λ_ab (W_ab − Q_ab)², a smooth convex loss (strictly convex when Λ > 0).

    Args:
        Q: Target matrix, shape (d_h, d_0).
        weights: Entry weights Λ ≥ 0, shape (d_h, d_0).

    Returns:
        A FunctionalLoss with ∇ℓ(W) = 2 Λ ∘ (W − Q).

    Raises:
        TypeError: If Q or Λ is not a tensor or array.
        ValueError: If the shapes differ, an entry is not finite, or Λ has a negative entry.
    """
    where = "weighted_frobenius_loss(Q, weights)"
    Qt, Lt = _matrix(where, "Q", Q), _matrix(where, "weights", weights)
    if Qt.shape != Lt.shape:
        raise ValueError(f"{where}: weights have shape {tuple(Lt.shape)} but Q has shape "
                         f"{tuple(Qt.shape)}; they must match.")
    if bool((Lt < 0).any()):
        raise ValueError(f"{where}: weights must be >= 0 for a convex loss, got min "
                         f"{float(Lt.min()):g}.")
    return FunctionalLoss(lambda W: (Lt * (W - Qt) ** 2).sum(), "weighted_frobenius",
                          tuple(Qt.shape))


def data_loss(inputs, targets, loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
              reduction: str = "sum") -> FunctionalLoss:
    """ℓ(W) = C(X Wᵀ, Y): a lossgeom loss on the outputs of the linear map W on data.

    Rows are samples, as everywhere in lossgeom: outputs (n, d_h) = X (n, d_0) · Wᵀ. For MSE
    with reduction "sum" this is ‖W Xᵀ − Yᵀ‖²_F, the ‖WX − Y‖² of spec §4.1 with columns as
    samples.

    Args:
        inputs: X, shape (n, d_0).
        targets: Y, shape (n, d_h); for "softmax_ce" also integer labels (n,).
        loss: "mse", "bce", "ce_prob", "softmax_ce", or a callable C(outputs, targets).
        reduction: "sum" or "mean" (PyTorch's convention, see ``lossgeom.Problem``).

    Returns:
        A FunctionalLoss on W of shape (d_h, d_0).

    Raises:
        TypeError: If inputs or targets are not tensors or arrays.
        ValueError: For unknown loss or reduction names, shape mismatches, or non-finite data.

    Example:
        >>> import torch
        >>> from lossgeom.linear import data_loss
        >>> X = torch.eye(3, dtype=torch.float64)
        >>> data_loss(X, X).value(torch.zeros(3, 3))  # ‖0 − I‖²_F
        3.0
    """
    where = "data_loss(inputs, targets, loss)"
    check_option(where, "reduction", reduction, ("sum", "mean"))
    if callable(loss) and not isinstance(loss, str):
        C = Loss("custom", reduction, loss)
    else:
        check_option(where, "loss", loss, LOSS_NAMES)
        C = Loss(loss, reduction)
    X = _matrix(where, "inputs", inputs)
    if not isinstance(targets, Tensor | np.ndarray):
        raise TypeError(f"{where}: targets must be a torch.Tensor or numpy array, got "
                        f"{type(targets).__name__}.")
    Y = torch.as_tensor(targets).detach().cpu()
    if C.name == "softmax_ce" and Y.ndim == 1 and not Y.is_floating_point():
        raise ValueError(f"{where}: integer labels need the number of classes; pass one-hot "
                         "targets (n, k) (torch.nn.functional.one_hot(labels, k)).")
    Y = Y.to(torch.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"{where}: targets have shape {tuple(Y.shape)} but inputs have "
                         f"{X.shape[0]} rows; expected targets (n, d_h) = ({X.shape[0]}, d_h).")
    check_finite(where, "targets", Y)
    return FunctionalLoss(lambda W: C(X @ W.T, Y), f"data:{C.name}", (Y.shape[1], X.shape[1]))


def functional_loss(fn: Callable[[Tensor], Tensor], *, name: str = "custom",
                    shape: tuple[int, int] | None = None) -> FunctionalLoss:
    """Wrap a smooth scalar loss ℓ(W) so that ``classify`` gets its gradient by autograd.

    Args:
        fn: W (d_h, d_0) ↦ ℓ(W), a scalar tensor written in torch operations.
        name: Short description used in reports.
        shape: (d_h, d_0) the loss expects, if fixed.

    Returns:
        A FunctionalLoss.

    Raises:
        TypeError: If ``fn`` is not callable.

    Example:
        >>> import torch
        >>> from lossgeom.linear import functional_loss
        >>> functional_loss(lambda W: (W ** 2).sum())(torch.ones(2, 2)).tolist()
        [[2.0, 2.0], [2.0, 2.0]]
    """
    if not callable(fn):
        raise TypeError(f"functional_loss(fn): fn must be callable W -> scalar, got "
                        f"{type(fn).__name__}.")
    return FunctionalLoss(fn, name, None if shape is None else tuple(int(s) for s in shape))


# ---------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearCritical:
    """Whether θ is critical for L = ℓ ∘ μ, and whether it is pure or spurious (spec §4.2–4.4).

    Attributes:
        is_critical: ‖∇L(θ)‖ ≤ grad_tol.
        rank_product: e = rank W̄ (numerical, see ``rank_decision``).
        r: min_i d_i.
        pure: True (pure), False (spurious), None when θ is not critical.
        differential_rank: rank dμ(θ) by the staircase formula (spec §4.3).
        dim_functional_space: dim M_r = r(d_0 + d_h − r).
        convention: "tangent_cone" or "all_singular" (spec §4.2).
        grad_norm: ‖∇L(θ)‖ = ‖dμ(θ)ᵀ ∇ℓ(W̄)‖.
        grad_tol: Criticality tolerance used (NOTE [stationarity tolerances]).
        loss_grad_norm: ‖∇ℓ(W̄)‖_F.
        stratum_grad_norm: ‖P_T ∇ℓ(W̄)‖_F on the rank-e stratum; ≈ 0 at every critical θ (§4.4).
        tested_norm: The norm the purity decision compared: ‖∇ℓ‖ (filling, or e < r under
            "tangent_cone"), ‖P_T ∇ℓ‖ (non-filling, e = r); None when nothing was compared.
        stationarity_tol: Tolerance for ``tested_norm``.
        filling: r = min(d_0, d_h).
        smooth_point: W̄ is a smooth point of M_r (filling, or e = r).
        maximal_differential: rank dμ = dim M_r.
        kind: "pure", "spurious" or "noncritical".
        reason: One sentence saying why.
        widths: (d_0, …, d_h).
        n_params: d_θ.
        rank_decision: RankDecision of W̄ (tolerance and gap).
        differential: The DifferentialRank with the factor ranks u_i, v_i.
        differential_numerical: RankDecision of the materialised dμ, or None if skipped.
    """

    is_critical: bool
    rank_product: int
    r: int
    pure: bool | None
    differential_rank: int
    dim_functional_space: int
    convention: str
    grad_norm: float
    grad_tol: float
    loss_grad_norm: float
    stratum_grad_norm: float
    tested_norm: float | None
    stationarity_tol: float
    filling: bool
    smooth_point: bool
    maximal_differential: bool
    kind: str
    reason: str
    widths: tuple[int, ...]
    n_params: int
    rank_decision: RankDecision = field(repr=False)
    differential: DifferentialRank = field(repr=False)
    differential_numerical: RankDecision | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """Plain-dict form (floats may be inf in the rank gaps)."""
        out = {k: getattr(self, k) for k in (
            "is_critical", "rank_product", "r", "pure", "differential_rank",
            "dim_functional_space", "convention", "grad_norm", "grad_tol", "loss_grad_norm",
            "stratum_grad_norm", "tested_norm", "stationarity_tol", "filling", "smooth_point",
            "maximal_differential", "kind", "reason", "n_params")}
        out["widths"] = list(self.widths)
        out["rank_decision"] = self.rank_decision.to_dict()
        out["differential"] = self.differential.to_dict()
        out["differential_numerical"] = (None if self.differential_numerical is None
                                         else self.differential_numerical.to_dict())
        return out


def classify(weights, loss_grad_fn: Callable[[Tensor], Tensor], *,
             convention: str = "tangent_cone", rtol: float | None = None,
             grad_tol: float | None = None, stationarity_tol: float | None = None,
             cross_check: bool | str = "auto") -> LinearCritical:
    """Is θ critical for L = ℓ ∘ μ, and is it pure or spurious? (spec §4.8).

    Steps: ∇L(θ) = dμ(θ)ᵀ ∇ℓ(W̄) (matrix-free); if ‖∇L‖ > grad_tol the point is reported as
    not critical and purity is not classified. Otherwise e = rank W̄ is decided with a gap,
    rank dμ is computed by the staircase formula (and, for small nets, by the singular values
    of dμ), and purity follows the rules in the module docstring.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).
        loss_grad_fn: W (d_h, d_0) ↦ ∇ℓ(W) (d_h, d_0). Use ``data_loss(X, Y)``,
            ``frobenius_loss(Q)`` or ``functional_loss(ℓ)`` to build one from data or from ℓ.
        convention: "tangent_cone" (default) or "all_singular" for singular points of M_r.
        rtol: Relative tolerance of the rank decisions, in (0, 1).
        grad_tol: Criticality tolerance on ‖∇L‖ (default: NOTE [stationarity tolerances]).
        stationarity_tol: Tolerance on ‖∇ℓ(W̄)‖ or ‖P_T ∇ℓ(W̄)‖ (default: same NOTE).
        cross_check: Also compute rank dμ from the materialised Jacobian: True, False, or
            "auto" (when d_h·d_0·d_θ ≤ 1e6).

    Returns:
        A LinearCritical.

    Raises:
        TypeError: If weights are not matrices or loss_grad_fn is not callable.
        ValueError: If the shapes do not chain, a value is not finite, loss_grad_fn returns a
            wrong shape, the convention is unknown, or a tolerance is out of range.

    Example:
        >>> import torch
        >>> from lossgeom.linear import classify, frobenius_loss
        >>> Q = torch.diag(torch.tensor([4., 3., 2., 1.], dtype=torch.float64))
        >>> zero = [torch.zeros(2, 4), torch.zeros(4, 2)]   # θ = 0, widths (4, 2, 4)
        >>> c = classify(zero, frobenius_loss(Q))
        >>> c.is_critical, c.rank_product, c.pure          # spurious: ∇ℓ(0) = −2Q ≠ 0
        (True, 0, False)
    """
    where = "classify(weights, loss_grad_fn)"
    Ws = as_weights(where, weights)
    check_option(where, "convention", convention, CONVENTIONS)
    check_rtol(where, rtol)
    if not callable(loss_grad_fn):
        raise TypeError(f"{where}: loss_grad_fn must be callable W -> ∇ℓ(W), got "
                        f"{type(loss_grad_fn).__name__}. Build one with data_loss(X, Y), "
                        "frobenius_loss(Q) or functional_loss(fn).")
    for name, tol in (("grad_tol", grad_tol), ("stationarity_tol", stationarity_tol)):
        if tol is not None and not float(tol) >= 0.0:
            raise ValueError(f"{where}: {name} must be >= 0, got {tol!r}.")
    if cross_check not in (True, False, "auto"):
        raise ValueError(f"{where}: cross_check must be True, False or 'auto', got "
                         f"{cross_check!r}.")
    d = widths_of(Ws)
    fs: FunctionalSpace = functional_space(d)
    Wbar = _product(Ws)
    G = loss_grad_fn(Wbar.clone())
    if not isinstance(G, Tensor | np.ndarray):
        raise TypeError(f"{where}: loss_grad_fn returned {type(G).__name__}; expected a tensor "
                        f"of shape {tuple(Wbar.shape)}.")
    G = torch.as_tensor(G).detach().to(torch.float64).cpu()
    if tuple(G.shape) != tuple(Wbar.shape):
        raise ValueError(f"{where}: loss_grad_fn returned shape {tuple(G.shape)} but "
                         f"W̄ = W_h⋯W_1 has shape {tuple(Wbar.shape)}; ∇ℓ(W̄) must match W̄.")
    check_finite(where, "loss_grad_fn(W̄)", G)

    after, before = _partial_products(Ws)
    grads = [A.T @ G @ B.T for A, B in zip(after, before, strict=True)]
    grad_norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    g_norm = float(torch.linalg.norm(G))
    w_norm = float(torch.linalg.norm(Wbar))
    if grad_tol is None:
        s_mu = math.sqrt(sum((float(torch.linalg.matrix_norm(A, 2)) *
                              float(torch.linalg.matrix_norm(B, 2))) ** 2
                             for A, B in zip(after, before, strict=True)))
        grad_tol = CRITICAL_RTOL * max(1.0, g_norm) * max(1.0, s_mu)
    if stationarity_tol is None:
        stationarity_tol = CRITICAL_RTOL * max(1.0, w_norm, g_norm)
    grad_tol, stationarity_tol = float(grad_tol), float(stationarity_tol)

    rank_dec = numerical_rank(Wbar, rtol)
    e = rank_dec.rank
    stair = _staircase(Ws, rtol)
    numerical = None
    if cross_check is True or (cross_check == "auto" and
                               Wbar.numel() * fs.n_params <= NUMERICAL_CROSS_CHECK_MAX):
        numerical = numerical_rank(_differential(Ws).materialise(), rtol)
    tangent = _tangent_space(Wbar, rank_dec, None, where)
    stratum_norm = float(torch.linalg.norm(tangent.project(G)))
    smooth = fs.filling or e == fs.r

    is_critical = grad_norm <= grad_tol
    tested: float | None = None
    if not is_critical:
        pure, kind = None, "noncritical"
        reason = (f"not critical: ‖∇L‖ = {grad_norm:.3g} > grad_tol = {grad_tol:.3g}; purity is "
                  "defined only at critical points")
    elif fs.filling:
        tested = g_norm
        pure = g_norm <= stationarity_tol
        reason = (f"filling (M_r is all of R^{d[-1]}x{d[0]}): pure iff ∇ℓ(W̄) = 0; "
                  f"‖∇ℓ(W̄)‖ = {g_norm:.3g} {'<=' if pure else '>'} {stationarity_tol:.3g}")
    elif e == fs.r:
        tested = stratum_norm
        pure = stratum_norm <= stationarity_tol
        reason = (f"smooth point of M_{fs.r} (rank W̄ = r = {e}): pure iff P_T ∇ℓ(W̄) = 0; "
                  f"‖P_T ∇ℓ(W̄)‖ = {stratum_norm:.3g} {'<=' if pure else '>'} "
                  f"{stationarity_tol:.3g}")
    elif convention == "all_singular":
        pure = True
        reason = (f"singular point of M_{fs.r} (rank W̄ = {e} < r = {fs.r}); convention "
                  "all_singular counts every singular point as critical")
    else:
        tested = g_norm
        pure = g_norm <= stationarity_tol
        reason = (f"singular point of M_{fs.r} (rank W̄ = {e} < r = {fs.r}); tangent-cone "
                  f"convention: pure iff ∇ℓ(W̄) = 0; ‖∇ℓ(W̄)‖ = {g_norm:.3g} "
                  f"{'<=' if pure else '>'} {stationarity_tol:.3g}")
    if is_critical:
        kind = "pure" if pure else "spurious"
    return LinearCritical(
        is_critical=is_critical, rank_product=e, r=fs.r, pure=pure,
        differential_rank=stair.rank, dim_functional_space=fs.dim, convention=convention,
        grad_norm=grad_norm, grad_tol=grad_tol, loss_grad_norm=g_norm,
        stratum_grad_norm=stratum_norm, tested_norm=tested, stationarity_tol=stationarity_tol,
        filling=fs.filling, smooth_point=smooth, maximal_differential=stair.rank == fs.dim,
        kind=kind, reason=reason, widths=d, n_params=fs.n_params, rank_decision=rank_dec,
        differential=stair, differential_numerical=numerical,
    )


# ---------------------------------------------------------------------------------------------
# quadratic loss: the Eckart–Young landscape
# ---------------------------------------------------------------------------------------------
class SingularValueTieWarning(UserWarning):
    """Singular values of Q tie, so ‖W − Q‖²_F has a non-finite critical set on M_r."""


class EckartYoungPoint(NamedTuple):
    """A critical point W_I = Σ_{i∈I} σ_i u_i v_iᵀ of ‖W − Q‖²_F on the rank-|I| matrices.

    Attributes:
        index_set: I, 0-based indices into σ_1 ≥ σ_2 ≥ … (sorted ascending).
        loss: ‖W_I − Q‖²_F = Σ_{i∉I} σ_i² (no factor ½).
        morse_index: #{(i, j) : i ∈ I, j ∉ I, σ_j > σ_i, σ_j > 0}: the index of ∇²L at any θ on
            the fibre μ⁻¹(W_I) (spec §4.6).
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
            (dim M_r − index, index, d_θ − dim M_r) (spec §4.6); None when rank Q < r.
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
        """Plain-dict form."""
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
    """Consecutive runs of σ_0..σ_{m-1} (descending) within ``tol`` of their neighbour."""
    groups: list[list[int]] = []
    for i in range(m):
        if groups and float(sigma[groups[-1][-1]] - sigma[i]) <= tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _representatives(groups: list[list[int]], size: int, limit: int, where: str
                     ) -> list[tuple[int, ...]]:
    """Index sets of the given size, one per tie family: the first k_g indices of group g."""
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

    def point(I: tuple[int, ...]) -> EckartYoungPoint:
        inside = set(I)
        loss = float(sum(s for i, s in enumerate(sq) if i not in inside))
        index = sum(1 for i in I for j in range(m)
                    if j not in inside and float(sigma[j] - sigma[i]) > tie_tol)
        return EckartYoungPoint(I, loss, index)

    reps = _representatives(groups, e, max_points, where)
    points = sorted((point(I) for I in reps), key=lambda p: (p.loss, p.index_set))
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
    """Every critical point of ℓ(W) = ‖W − Q‖²_F on the rank-r matrices (spec §4.6).

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
        >>> [(p.loss, p.morse_index) for p in eckart_young_points(Q, 2)]  # spec §4.6 table
        [(5.0, 0), (10.0, 1), (13.0, 2), (17.0, 2), (20.0, 3), (25.0, 4)]
    """
    out = _ey_core("eckart_young_points(Q, r)", Q, r, tie_rtol, max_points)
    return list(out[11])


def eckart_young_landscape(Q, r: int, widths=None, *, tie_rtol: float | None = None,
                           max_points: int = 100_000) -> EckartYoungLandscape:
    """The whole Eckart–Young landscape: pure points, spurious values, predicted inertia.

    For an architecture with r = min width, the critical values of L = ‖μ(θ) − Q‖²_F are
    {‖Q‖² − Σ_{i∈I} σ_i² : |I| ≤ r} (spec §4.6). At a pure point (|I| = r) the inertia of
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
    # Only at rank r (a smooth point with maximal dμ) is the inertia (dim M_r − ind, ind, fibre);
    # for rank Q < r the single point Q is singular and no closed form is claimed.
    inert = tuple((fs.dim - p.morse_index, p.morse_index, fs.n_params - fs.dim) if e == r
                  else None for p in points)
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


def _generator(rng) -> torch.Generator:
    if isinstance(rng, torch.Generator):
        return rng
    if rng is None or (isinstance(rng, int | np.integer) and not isinstance(rng, bool)):
        g = torch.Generator()
        g.manual_seed(0 if rng is None else int(rng))
        return g
    raise TypeError(f"rng must be a torch.Generator, an int seed or None, got {type(rng).__name__}.")


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
        >>> torch.allclose(product(Ws), torch.diag(torch.tensor([4., 0., 2., 0.], dtype=torch.float64)))
        True
    """
    where = "fibre_point(Q, index_set, widths)"
    Qt = _matrix(where, "Q", Q)
    d = check_widths(where, widths)
    if d[0] != Qt.shape[1] or d[-1] != Qt.shape[0]:
        raise ValueError(f"{where}: widths {d} do not match Q of shape {tuple(Qt.shape)}; "
                         f"expected d_0 = {Qt.shape[1]} and d_h = {Qt.shape[0]}.")
    I = tuple(int(i) for i in index_set)
    p = min(Qt.shape)
    if len(set(I)) != len(I) or any(not 0 <= i < p for i in I):
        raise ValueError(f"{where}: index_set {I} must hold distinct indices in [0, {p}).")
    if len(I) > min(d):
        raise ValueError(f"{where}: |I| = {len(I)} exceeds the smallest width {min(d)} of {d}; "
                         "μ cannot reach rank |I|.")
    g = _generator(rng)
    U, S, Vh = torch.linalg.svd(Qt, full_matrices=False)
    idx = torch.tensor(I, dtype=torch.long)
    root = S[idx].sqrt()
    B = U[:, idx] * root
    C = root[:, None] * Vh[idx]
    e = len(I)
    if len(d) == 2:
        return [B @ C]
    P = []
    for width in d[1:-1]:
        A = torch.randn(width, max(e, 1), generator=g, dtype=torch.float64)
        P.append(torch.linalg.qr(A).Q[:, :e])
    Ws = [P[0] @ C] + [P[i] @ P[i - 1].T for i in range(1, len(P))] + [B @ P[-1].T]
    return Ws


# ---------------------------------------------------------------------------------------------
# non-filling, non-quadratic convex loss: a bad local minimum (spec §4.7)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightedFrobeniusExample:
    """Spec §4.7: widths (2, 1, 2), ℓ(W) = Σ Λ_ab (W_ab − Q_ab)², Q = I₂, Λ = [[1, 2], [2, ½]].

    Attributes:
        widths: (2, 1, 2) (non-filling, M_1 = rank ≤ 1 matrices).
        Q: I₂.
        Lambda: [[1, 2], [2, 0.5]].
        loss: The FunctionalLoss ℓ.
        global_minimum: θ with W̄ = e₁e₁ᵀ: W_1 = (1, 0), W_2 = (1, 0)ᵀ.
        bad_minimum: θ with W̄ = e₂e₂ᵀ: W_1 = (0, 1), W_2 = (0, 1)ᵀ.
        saddle: θ = 0.
    """

    widths: tuple[int, ...]
    Q: Tensor
    Lambda: Tensor
    loss: FunctionalLoss
    global_minimum: tuple[Tensor, Tensor]
    bad_minimum: tuple[Tensor, Tensor]
    saddle: tuple[Tensor, Tensor]

    def points(self) -> dict[str, tuple[Tensor, Tensor]]:
        """The three named points, by name."""
        return {"global_minimum": self.global_minimum, "bad_minimum": self.bad_minimum,
                "saddle": self.saddle}


def weighted_frobenius_example() -> WeightedFrobeniusExample:
    """The bad-local-minimum construction of spec §4.7, ready to classify or analyze.

    Near e₂e₂ᵀ the local model of L is 1 + λ(s² + t²) − 2st with off-diagonal weight λ = 2 > 1,
    positive definite, so e₂e₂ᵀ is a strict local minimum of ℓ on M_1 (up to the rescaling
    (tW_1, W_2/t)), worse than e₁e₁ᵀ. It is pure (rank W̄ = r = 1), as theorem (T2) requires.

    Returns:
        A WeightedFrobeniusExample.

    Example:
        >>> from lossgeom.linear import product, weighted_frobenius_example
        >>> ex = weighted_frobenius_example()
        >>> [ex.loss.value(product(w)) for w in ex.points().values()]  # spec §4.7
        [0.5, 1.0, 1.5]
    """
    f64 = torch.float64
    Q = torch.eye(2, dtype=f64)
    Lam = torch.tensor([[1.0, 2.0], [2.0, 0.5]], dtype=f64)
    e1, e2 = torch.tensor([1.0, 0.0], dtype=f64), torch.tensor([0.0, 1.0], dtype=f64)
    return WeightedFrobeniusExample(
        (2, 1, 2), Q, Lam, weighted_frobenius_loss(Q, Lam),
        (e1[None, :].clone(), e1[:, None].clone()), (e2[None, :].clone(), e2[:, None].clone()),
        (torch.zeros(1, 2, dtype=f64), torch.zeros(2, 1, dtype=f64)))


@dataclass(frozen=True)
class CriticalCluster:
    """Runs that ended at the same critical value.

    Attributes:
        loss: Mean final loss of the runs in the cluster.
        count: Number of runs.
        kind: "minimum" (no negative Hessian eigenvalue), "saddle", or "undecided".
        inertia: [positive, negative, zero] of ∇²L at the representative run.
        inertia_tol: Tolerance of that inertia (rtol·max|λ|).
        inertia_gap: Its gap.
        pure: Purity of every run in the cluster (None if some run was not critical).
        rank_product: rank W̄ at the representative.
        representative: Index of the run with the smallest ‖∇L‖.
    """

    loss: float
    count: int
    kind: str
    inertia: tuple[int, int, int]
    inertia_tol: float
    inertia_gap: float
    pure: bool | None
    rank_product: int
    representative: int

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return {"loss": self.loss, "count": self.count, "kind": self.kind,
                "inertia": list(self.inertia), "inertia_tol": self.inertia_tol,
                "inertia_gap": self.inertia_gap, "pure": self.pure,
                "rank_product": self.rank_product, "representative": self.representative}


@dataclass(frozen=True)
class BadMinimaResult:
    """Outcome of gradient descent from random initialisations (spec §4.7).

    Attributes:
        widths: (d_0, …, d_h).
        filling: Whether the architecture is filling.
        loss_name: Name of the functional loss.
        runs, steps, lr, seed, init_scale: The experiment settings.
        final_loss: L at the end of each run, shape (runs,).
        grad_norm: ‖∇L‖ at the end of each run.
        converged: ‖∇L‖ ≤ grad_tol per run (see ``classify``).
        cluster: Cluster index of each run (−1 if not converged).
        clusters: CriticalCluster per distinct critical value, sorted by loss.
        best_loss: Lowest loss among the minima found (None if none).
        n_bad_minima: Runs ending at a minimum whose loss exceeds best_loss.
        n_not_converged: Runs not critical after ``steps``.
        seconds: Wall time.
    """

    widths: tuple[int, ...]
    filling: bool
    loss_name: str
    runs: int
    steps: int
    lr: float
    seed: int
    init_scale: float
    final_loss: tuple[float, ...]
    grad_norm: tuple[float, ...]
    converged: tuple[bool, ...]
    cluster: tuple[int, ...]
    clusters: tuple[CriticalCluster, ...]
    best_loss: float | None
    n_bad_minima: int
    n_not_converged: int
    seconds: float

    @property
    def fraction_bad(self) -> float:
        """Fraction of all runs that ended at a bad (non-lowest) minimum."""
        return self.n_bad_minima / self.runs

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return {"widths": list(self.widths), "filling": self.filling,
                "loss_name": self.loss_name, "runs": self.runs, "steps": self.steps,
                "lr": self.lr, "seed": self.seed, "init_scale": self.init_scale,
                "final_loss": list(self.final_loss), "grad_norm": list(self.grad_norm),
                "converged": list(self.converged), "cluster": list(self.cluster),
                "clusters": [c.to_dict() for c in self.clusters], "best_loss": self.best_loss,
                "n_bad_minima": self.n_bad_minima, "fraction_bad": self.fraction_bad,
                "n_not_converged": self.n_not_converged, "seconds": self.seconds}


def _positive_int(where: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}.")
    return int(v)


def bad_minima_experiment(runs: int = 200, *, steps: int = 4000, lr: float = 0.02,
                          seed: int = 0, init_scale: float = 1.0, widths=None,
                          loss: FunctionalLoss | None = None, convention: str = "tangent_cone",
                          value_rtol: float = 1e-6, rtol: float | None = None
                          ) -> BadMinimaResult:
    """Plain gradient descent on L = ℓ ∘ μ from N(0, init_scale²) starts; tally the endpoints.

    All runs advance together (one vectorised gradient per step). Each run is then checked
    with ``classify`` (critical? pure?); runs whose losses agree within value_rtol·max(1, |L|)
    form a cluster, and the Hessian ∇²L at the cluster's best-converged run (float64 autograd,
    ``inertia`` with its tolerance and gap) says minimum or saddle. Defaults reproduce spec
    §4.7: widths (2, 1, 2) and the weighted Frobenius loss, where a sizable fraction of runs ends
    at the bad minimum L = 1.0 instead of the global one L = 0.5.

    Args:
        runs: Number of random initialisations.
        steps: Gradient steps per run.
        lr: Step size.
        seed: Seed of the initialisations.
        init_scale: Standard deviation of the initial entries.
        widths: Architecture (d_0, …, d_h); default that of the §4.7 example.
        loss: FunctionalLoss ℓ with a torch-differentiable ``loss``; default the §4.7 loss.
        convention: Singular-point convention passed to ``classify``.
        value_rtol: Relative tolerance for grouping final losses.
        rtol: Relative tolerance of the rank and inertia decisions.

    Returns:
        A BadMinimaResult.

    Raises:
        TypeError: If loss is not a FunctionalLoss.
        ValueError: For non-positive runs, steps, lr or init_scale, invalid widths, a loss whose
            shape does not match the widths, or an unknown convention.

    Example:
        >>> from lossgeom.linear import bad_minima_experiment
        >>> res = bad_minima_experiment(runs=20, steps=3000, seed=0)
        >>> sorted({round(c.loss, 6) for c in res.clusters if c.kind == "minimum"})
        [0.5, 1.0]
    """
    where = "bad_minima_experiment(runs)"
    runs = _positive_int(where, "runs", runs)
    steps = _positive_int(where, "steps", steps)
    check_option(where, "convention", convention, CONVENTIONS)
    check_rtol(where, rtol)
    for name, v in (("lr", lr), ("init_scale", init_scale), ("value_rtol", value_rtol)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{where}: {name} must be a positive finite number, got {v!r}.")
    if loss is None or widths is None:
        ex = weighted_frobenius_example()
        loss = ex.loss if loss is None else loss
        widths = ex.widths if widths is None else widths
    if not isinstance(loss, FunctionalLoss):
        raise TypeError(f"{where}: loss must be a FunctionalLoss (data_loss, frobenius_loss, "
                        f"weighted_frobenius_loss, functional_loss), got {type(loss).__name__}.")
    d = check_widths(where, widths)
    if loss.shape is not None and tuple(loss.shape) != (d[-1], d[0]):
        raise ValueError(f"{where}: loss expects W of shape {tuple(loss.shape)} but widths {d} "
                         f"give (d_h, d_0) = {(d[-1], d[0])}.")
    fs = functional_space(d)
    start = time.perf_counter()
    sizes = [a * b for a, b in zip(d[1:], d[:-1], strict=True)]

    def total(theta: Tensor) -> Tensor:
        Ws, off = [], 0
        for (a, b), size in zip(zip(d[1:], d[:-1], strict=True), sizes, strict=True):
            Ws.append(theta[off:off + size].reshape(a, b))
            off += size
        return loss.loss(_product(Ws))

    g = _generator(seed)
    theta = init_scale * torch.randn(runs, fs.n_params, generator=g, dtype=torch.float64)
    grad_fn = torch.func.vmap(torch.func.grad(total))
    with torch.no_grad():
        for _ in range(steps):
            theta = theta - lr * grad_fn(theta)
    finite = torch.isfinite(theta).all(dim=1)
    final = torch.func.vmap(total)(torch.where(finite[:, None], theta, 0.0))
    final = torch.where(finite, final, torch.tensor(math.inf, dtype=torch.float64))

    def weights_of(th: Tensor) -> list[Tensor]:
        out, off = [], 0
        for (a, b), size in zip(zip(d[1:], d[:-1], strict=True), sizes, strict=True):
            out.append(th[off:off + size].reshape(a, b))
            off += size
        return out

    results: list[LinearCritical | None] = []
    for i in range(runs):
        results.append(classify(weights_of(theta[i]), loss, convention=convention, rtol=rtol,
                                cross_check=False) if bool(finite[i]) else None)
    converged = tuple(bool(c is not None and c.is_critical) for c in results)
    grad_norm = tuple(math.inf if c is None else c.grad_norm for c in results)

    order = sorted((i for i in range(runs) if converged[i]), key=lambda i: float(final[i]))
    groups: list[list[int]] = []
    for i in order:
        v = float(final[i])
        if groups and abs(v - float(final[groups[-1][0]])) <= value_rtol * max(1.0, abs(v)):
            groups[-1].append(i)
        else:
            groups.append([i])
    cluster = [-1] * runs
    clusters: list[CriticalCluster] = []
    hess_fn = torch.func.hessian(total)
    for c_idx, members in enumerate(groups):
        rep = min(members, key=lambda i: grad_norm[i])
        inr: Inertia = inertia(hess_fn(theta[rep]), rtol)
        kind = ("undecided" if not inr.decided else
                "minimum" if inr.negative == 0 else "saddle")
        pures = {results[i].pure for i in members}
        for i in members:
            cluster[i] = c_idx
        clusters.append(CriticalCluster(
            float(final[members].mean()), len(members), kind, tuple(inr.as_list()), inr.tol,
            inr.gap, pures.pop() if len(pures) == 1 else None, results[rep].rank_product, rep))
    minima = [c for c in clusters if c.kind == "minimum"]
    best = min((c.loss for c in minima), default=None)
    n_bad = sum(c.count for c in minima
                if best is not None and c.loss > best + value_rtol * max(1.0, abs(best)))
    return BadMinimaResult(
        d, fs.filling, loss.name, runs, steps, float(lr), int(seed), float(init_scale),
        tuple(final.tolist()), grad_norm, converged, tuple(cluster), tuple(clusters), best,
        n_bad, runs - sum(converged), time.perf_counter() - start)
