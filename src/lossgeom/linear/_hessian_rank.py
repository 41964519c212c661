"""Closed-form Hessian ranks of deep linear networks (§5) and their measured counterparts.

f_θ(x) = W_L(⋯(W_1 x + b_1)⋯) + b_L with widths (d = M_0, M_1, …, M_{L-1}, K = M_L) on n
samples, X (d × n) of rank r. The loss Hessian splits as H_L = H_o + H_f (§1.1): the outer
product (Gauss–Newton) term H_o = Jᵀ ∇²ₓC J and the functional term H_f = Σ_a ∂C/∂x_a ∇²_θ x_a.
Ranks at a generic θ, for generic data and targets. Softmax cross-entropy replaces K by K − 1
throughout (the softmax Hessian kills 1 and the gradient has zero sum). Depth L = 1 is linear in
θ, so H_f = 0 and H_L = H_o.

No bias (§5.2). With q = min(r, K, M_1, …, M_{L-1}), s = min(r, K), m = M_1 + ⋯ + M_{L-1}:

    rank H_o = q(r + K − q),   rank H_f = 2qm + 2qs − Lq²,   rank H_L = 2qm + q(r + K) − Lq².

Biases in every layer (NOTE [bias ranks]). Only r̃ = rank [Xᵀ 1] matters (r + 1 for generic
data with n > r, r when n = r): an affine change of the input coordinates is a linear change
of θ. With q' = min(K, d, M_1, …, M_{L-1}), s̃ = min(r̃, K), q̃ = min(s̃, M_1, …, M_{L-1}):

    rank H_o = q' r̃ + (K − q') min(q' + 1, r̃)
    rank H_f = 2q̃(s̃ + m) − Lq̃² + (L − 2)q̃ + 2 Σ_{l > j} (M_l − q̃)   [sum only if q̃ < s̃]
    rank H_L = rank H_o + rank H_f − q̃(2s̃ − q̃ − 1)

where j is the last hidden layer of width q̃. Output bias only: H_o as with biases in every
layer, H_f as without bias, rank H_L = rank H_o + rank H_f − q(2s − q) + q·[r̃ = r].

NOTE [bias ranks]
    The derivation, its proof sketch and the grid of architectures it was verified on are in
    docs/linear_hessian_rank.md. In short: F = [μ, c] X̃ with X̃ = [X; 1ᵀ], μ = W_L⋯W_1 and c the
    total bias, so ran J = {δμ X + δc 1ᵀ} with δμ in the tangent space of the rank-q' matrices
    and δc free (b_L): that gives H_o exactly. H_f is the Hessian of θ ↦ ⟨Δ X̃ᵀ, [μ, c]⟩, which
    by affine changes of input and output coordinates depends on the residual Δ only through
    s̃; the hidden biases b_2, …, b_{L-1} each pair off 2M_l directions. The last count (and
    the overlap q̃(2s̃ − q̃ − 1) of ran H_o and ran H_f in H_L) is established by measurement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import DEFAULT_MAX_BYTES, check_option, check_rtol
from ..curvature import hessian, residual_hessian
from ..curvature.linearization import linearize
from ..linalg import RankDecision, numerical_rank
from ..models import ACTIVATIONS, mlp
from ..problem import Problem
from ..tolerances import default_rank_rtol
from ._weights import check_widths

__all__ = [
    "HESSIAN_RANK_LOSSES",
    "HessianRankComparison",
    "HessianRankRow",
    "hessian_rank_comparison",
    "hessian_rank_formula",
]

HESSIAN_RANK_LOSSES = ("mse", "softmax_ce", "ce")
"""Losses with closed-form Hessian ranks; "ce" is an alias of "softmax_ce"."""

PARTS = ("outer", "functional", "total")
"""The three Hessians: H_o (outer product), H_f (functional), H_L = H_o + H_f (total)."""


def _nonneg_int(where: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise TypeError(f"{where}: {name} must be an integer (got {type(v).__name__}). Pass an "
                        "int.")
    if int(v) < 0:
        raise ValueError(f"{where}: {name} must be >= 0 (got {int(v)}). Pass a count.")
    return int(v)


def _check_bias(where: str, bias) -> bool | str:
    if isinstance(bias, bool) or (isinstance(bias, str) and bias == "output"):
        return bias
    if isinstance(bias, np.bool_):
        return bool(bias)
    raise ValueError(f"{where}: unknown bias {bias!r} (expected True for every layer, False for "
                     "none or \"output\" for the output layer only). Pass one of those.")


def _no_bias(r: int, K: int, hidden: Sequence[int], L: int) -> tuple[int, int, int]:
    """§5.2: (rank H_o, rank H_f, rank H_L) without bias."""
    q = min([r, K, *hidden])
    s = min(r, K)
    outer = q * (r + K - q)
    if L == 1:
        return outer, 0, outer
    m = sum(hidden)
    return outer, 2 * q * m + 2 * q * s - L * q * q, 2 * q * m + q * (r + K) - L * q * q


def _outer_with_output_bias(d: int, K: int, hidden: Sequence[int], r_aug: int) -> int:
    """Rank H_o = dim{δμ X + δc 1ᵀ} = q' r̃ + (K − q') min(q' + 1, r̃) (NOTE [bias ranks])."""
    qp = min([K, d, *hidden])
    return qp * r_aug + (K - qp) * min(qp + 1, r_aug)


def _functional_with_bias(K: int, hidden: Sequence[int], r_aug: int) -> tuple[int, int, int]:
    """(rank H_f, q̃, s̃) with biases in every layer, depth ≥ 2 (NOTE [bias ranks])."""
    L = len(hidden) + 1
    s_aug = min(K, r_aug)
    q = min([s_aug, *hidden])
    functional = 2 * q * (s_aug + sum(hidden)) - L * q * q + (L - 2) * q
    if q < s_aug:  # the last bottleneck j is a hidden layer: the layers above it gain
        j = max(i for i, m in enumerate(hidden) if m == q)
        functional += 2 * sum(m - q for m in hidden[j + 1:])
    return functional, q, s_aug


def hessian_rank_formula(widths, data_rank: int, loss: str = "mse", bias: bool | str = False, *,
                         n_samples: int | None = None, augmented_rank: int | None = None
                         ) -> dict:
    """Closed-form ranks of H_o, H_f and H_L = ∇²L for a deep linear network (§5.2, §5.4).

    At a generic θ, for generic data and targets. Without bias (§5.2), with q = min(r, K,
    M_1, …, M_{L-1}) and s = min(r, K): rank H_o = q(r + K − q), rank H_f = 2q Σ M_l + 2qs −
    Lq², rank H_L = 2q Σ M_l + q(r + K) − Lq² (hidden widths in the sums). With biases the
    ranks depend on r̃ = rank [Xᵀ 1] as well (module docstring, NOTE [bias ranks]): with
    biases in every layer only r̃ matters. Softmax cross-entropy replaces K by K − 1.

    Args:
        widths: (d, M_1, …, M_{L-1}, K), positive integers.
        data_rank: r = rank X (0 ≤ r ≤ d).
        loss: "mse", or "softmax_ce" (alias "ce"), which replaces K by K − 1.
        bias: False (no bias), True (every layer) or "output" (output layer only).
        n_samples: n. With a bias, r̃ = r + 1 when n > r and r̃ = r when n = r (generic data:
            1 lies in the row space of X exactly when X has full column rank n). Default None:
            n > r.
        augmented_rank: r̃ = rank of the n × (d + 1) matrix [X 1] (samples as rows), if known;
            overrides the generic value from n_samples (for example r̃ = r for data with a
            constant feature). Used only with a bias.

    Returns:
        A dict with keys "outer" (rank H_o), "functional" (rank H_f), "total" (rank H_L), each
        an int; "q" = min(r, K, M_1, …) and "s" = min(r, K) (with K the effective K);
        "k_effective" (K or K − 1); "augmented_rank" (r̃, None without bias); "n_params" (N);
        "reason" (the rule used).

    Raises:
        TypeError: If widths, data_rank, n_samples or augmented_rank are not integers.
        ValueError: For invalid widths, data_rank outside [0, d], n_samples < data_rank,
            augmented_rank not in {r, r + 1} or above n, an unknown loss or bias.

    Example:
        >>> from lossgeom.linear import hessian_rank_formula
        >>> f = hessian_rank_formula([25, 5, 10, 10], data_rank=25)  # §5.3
        >>> f["outer"], f["functional"], f["total"]
        (150, 175, 250)
        >>> f = hessian_rank_formula([5, 2, 3], 4, bias=True, n_samples=4)  # 1 in row X
        >>> f["outer"], f["functional"], f["total"]
        (11, 12, 17)
    """
    where = "hessian_rank_formula(widths, data_rank)"
    d = check_widths(where, widths)
    r = _nonneg_int(where, "data_rank", data_rank)
    if r > d[0]:
        raise ValueError(f"{where}: data_rank = {r} exceeds the input width d = {d[0]} (rank X "
                         "<= min(n, d)). Pass the rank of the data matrix.")
    check_option(where, "loss", loss, HESSIAN_RANK_LOSSES)
    bias = _check_bias(where, bias)
    n = None
    if n_samples is not None:
        n = _nonneg_int(where, "n_samples", n_samples)
        if n < 1:
            raise ValueError(f"{where}: n_samples must be >= 1 (got {n}). Pass the number of "
                             "samples, or None.")
        if n < r:
            raise ValueError(f"{where}: n_samples = {n} is below data_rank = {r} (rank X <= n). "
                             "Pass the number of samples.")
    if augmented_rank is None:
        r_aug = r if n is not None and n == r else r + 1
    else:
        r_aug = _nonneg_int(where, "augmented_rank", augmented_rank)
        if r_aug not in (r, r + 1) or r_aug < 1 or (n is not None and r_aug > n):
            raise ValueError(f"{where}: augmented_rank = {r_aug} is impossible for data_rank = "
                             f"{r}" + ("" if n is None else f" and n_samples = {n}") +
                             " (expected r or r + 1, at most n and at least 1). Pass "
                             "rank [X 1] or leave it None.")
    K = d[-1] - (1 if loss in ("softmax_ce", "ce") else 0)
    hidden, L = d[1:-1], len(d) - 1
    q, s = min([r, K, *hidden]), min(r, K)
    n_bias = {False: 0, True: sum(d[1:]), "output": d[-1]}[bias]
    n_params = sum(a * b for a, b in zip(d[1:], d[:-1], strict=True)) + n_bias
    out = {"outer": None, "functional": None, "total": None, "q": q, "s": s, "k_effective": K,
           "augmented_rank": None if bias is False else r_aug, "n_params": n_params,
           "reason": ""}
    o, f, t = _no_bias(r, K, hidden, L)
    if bias is False:
        out.update(outer=o, functional=f, total=t,
                   reason="no bias: §5.2" + (" (depth 1: H_f = 0)" if L == 1 else ""))
        return out
    outer = _outer_with_output_bias(d[0], K, hidden, r_aug)
    rule = f"r̃ = rank [X 1] = {r_aug}" + (" (1 in row X)" if r_aug == r else "")
    if L == 1:
        out.update(outer=outer, functional=0, total=outer,
                   reason=f"bias, depth 1: rank H_o = K r̃, H_f = 0; {rule}")
    elif bias is True:
        functional, qb, sb = _functional_with_bias(K, hidden, r_aug)
        out.update(outer=outer, functional=functional,
                   total=outer + functional - qb * (2 * sb - qb - 1),
                   reason=f"bias in every layer: H_o = q'r̃ + (K - q')min(q' + 1, r̃), H_f and "
                          f"H_L from s̃ = {sb}, q̃ = {qb}; {rule}")
    else:
        out.update(outer=outer, functional=f,
                   total=outer + f - q * (2 * s - q) + (q if r_aug == r else 0),
                   reason=f"output bias: H_o = q'r̃ + (K - q')min(q' + 1, r̃), H_f as without "
                          f"bias (§5.2); {rule}")
    return out


# ---------------------------------------------------------------------------------------------
# formula against measured ranks
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HessianRankRow:
    """One Hessian part of one network: the formula next to the measured rank.

    Attributes:
        activation: Hidden activation of the network ("linear", "tanh", "relu", …).
        part: "outer" (H_o), "functional" (H_f) or "total" (H_L).
        formula: The closed-form rank (the linear-network formula).
        measured: The numerical rank.
        tol: Tolerance of the rank cut (max(atol, rtol·σ_max)), in the units of the matrix the
            route decides: singular values of J or of (∇²C)^½ J for "outer", |eigenvalues| of
            the Hessian part otherwise.
        gap: σ_rank / σ_{rank+1} at the cut (of the same matrix as ``tol``).
        decided: gap ≥ min_gap.
        sigma_r: Smallest singular value kept.
        sigma_next: Largest singular value dropped.
        agrees: measured == formula (None when formula is None).
        gap_at_formula: σ_f / σ_{f+1} at the formula's cut f (how clearly the spectrum
            separates there; None when there is no formula or no σ_{f+1}).
        route: Which matrix was cut and how: "J: svd" (rank H_o = rank J for MSE, since
            H_o = Jᵀ(2I)J), "(∇²C)^½ J: svd" (softmax CE: R J with per-sample factors
            RᵢᵀRᵢ = ∇²Cᵢ),
            "…: gram" or "…: gram+svd" when J is too large for memory, "H_f: eigenvalues" or
            "H_L: eigenvalues" (dense symmetric Hessian, σ = |λ|).
    """

    activation: str
    part: str
    formula: int | None
    measured: int
    tol: float
    gap: float
    decided: bool
    sigma_r: float | None
    sigma_next: float | None
    agrees: bool | None
    gap_at_formula: float | None = None
    route: str = ""

    def to_dict(self) -> dict:
        """Plain-dict form of the fields.

        Returns:
            A dict of plain Python values (floats may be inf; see ``report.jsonable``).
        """
        return dict(self.__dict__)


@dataclass(frozen=True)
class HessianRankComparison:
    """Formula against measured ranks of H_o, H_f, H_L for nets with several activations.

    Attributes:
        widths: (d, M_1, …, K).
        n_samples: n.
        data_rank: r = rank X.
        loss: Loss name ("mse" or "softmax_ce").
        bias: False, True (every layer) or "output".
        n_params: N.
        formula: The ``hessian_rank_formula`` dict.
        rows: One HessianRankRow per (activation, part).
        rtol: Relative tolerance of the H_f and H_L cuts; their absolute floor is rtol ·
            max(‖H_o‖₂, ‖H_f‖₂, ‖H_L‖₂) per network, so a part that is zero up to round-off is
            not counted as full rank. The H_o cut uses rtol if given, else max(n·k, N)·eps, on
            the singular values of J (or (∇²C)^½ J).
        seconds: Wall time.
    """

    widths: tuple[int, ...]
    n_samples: int
    data_rank: int
    loss: str
    bias: bool | str
    n_params: int
    formula: dict
    rows: tuple[HessianRankRow, ...]
    rtol: float
    seconds: float

    def to_dict(self) -> dict:
        """Plain-dict form of the fields.

        Returns:
            A dict of plain Python values (floats may be inf; see ``report.jsonable``).
        """
        return {"widths": list(self.widths), "n_samples": self.n_samples,
                "data_rank": self.data_rank, "loss": self.loss, "bias": self.bias,
                "n_params": self.n_params, "formula": dict(self.formula),
                "rows": [r.to_dict() for r in self.rows], "rtol": self.rtol,
                "seconds": self.seconds}


def _rank_row(activation: str, part: str, formula, decision: RankDecision, s: torch.Tensor,
              route: str) -> HessianRankRow:
    gap_f = None
    if formula is not None and 0 < formula < s.numel():
        below = float(s[formula])
        gap_f = float(s[formula - 1]) / below if below > 0 else math.inf
    return HessianRankRow(activation, part, formula, decision.rank, decision.tol, decision.gap,
                          decision.decided, decision.sigma_r, decision.sigma_next,
                          None if formula is None else decision.rank == formula, gap_f, route)


def _softmax_factor(problem: Problem, theta: torch.Tensor) -> torch.Tensor:
    """Per-sample factors Rᵢ (n, k, k) with RᵢᵀRᵢ = ∇²Cᵢ for softmax cross-entropy.

    ∇²Cᵢ = wᵢ(diag pᵢ − pᵢpᵢᵀ) with wᵢ = (reduction scale)·Σ_c y_ic, and diag p − ppᵀ = AAᵀ with
    Aᵀ = diag(√p)(I − 1pᵀ) exactly when Σp = 1, so Rᵢ = √wᵢ Aᵢᵀ and Rᵢ1 = 0 up to eps. (A
    symmetric root from eigh would turn the round-off on the kernel vector 1, some 10·eps·‖∇²Cᵢ‖,
    into a spurious singular value √(10 eps)·‖J‖ of the product.)
    """
    n, k = problem.n_samples, problem.n_outputs
    p = torch.softmax(problem.outputs(theta), dim=-1)
    w = problem.loss_fn.scale(n, k) * problem.targets.sum(dim=-1)
    eye = torch.eye(k, dtype=p.dtype)
    return (w.clamp_min(0).sqrt()[:, None, None] * p.sqrt()[:, :, None]
            * (eye - p[:, None, :]))


def _outer_rank(problem: Problem, theta: torch.Tensor, rtol: float | None
                ) -> tuple[RankDecision, torch.Tensor, str, float]:
    """Rank H_o from J, never from H_o = Jᵀ∇²C J, whose eigenvalues square J's conditioning.

    MSE: ∇²C = 2sI, so rank H_o = rank J. Softmax CE: rank H_o = rank R J with R the block
    diagonal of the per-sample factors of ``_softmax_factor`` (RᵀR = ∇²C). Both come from the
    Linearization of θ (an SVD of J where it is held, the Gram route with its refinement else).

    Returns:
        (decision, descending singular values of the matrix cut, route, ‖H_o‖₂).
    """
    m, N = problem.n_samples * problem.n_outputs, problem.n_params
    fits = 8 * m * N <= DEFAULT_MAX_BYTES  # every singular value, not only those above the floor
    lin = linearize(problem, theta, route="svd" if fits else "gram", rtol=rtol,
                    where="hessian_rank_comparison(...)", validate=False)
    if problem.loss_fn.name == "mse":
        blocks = problem.loss_fn.output_hessian_blocks(lin.outputs, problem.targets)
        c = float(blocks[0, 0, 0])  # ∇²C = c I
        dec = lin.decision
        return dec, lin.singular_values, f"J: {dec.method}", c * dec.sigma_max ** 2
    dec, s = lin.scaled_decision(_softmax_factor(problem, theta), rtol)
    return dec, s, f"(∇²C)^½ J: {dec.method}", dec.sigma_max ** 2


def _comparison_problem(d: tuple[int, ...], n: int, r: int, loss: str, bias: bool | str,
                        activation: str, seed: int) -> Problem:
    """The seeded problem of ``hessian_rank_comparison``: X = A B (rank r), mlp weights."""
    g = torch.Generator().manual_seed(int(seed))
    X = (torch.randn(n, r, generator=g, dtype=torch.float64)
         @ torch.randn(r, d[0], generator=g, dtype=torch.float64))
    if loss == "mse":
        Y = torch.randn(n, d[-1], generator=g, dtype=torch.float64)
    else:
        Y = torch.softmax(torch.randn(n, d[-1], generator=g, dtype=torch.float64), dim=-1)
    model = mlp(list(d), activation=activation, bias=bias,
                generator=torch.Generator().manual_seed(int(seed) + 1))
    return Problem(model, X, Y, loss=loss)


def hessian_rank_comparison(widths, n_samples: int, *, activations: Sequence[str] = (
        "linear", "tanh", "relu"), loss: str = "mse", bias: bool | str = False,
        data_rank: int | None = None, seed: int = 0, rtol: float | None = None
        ) -> HessianRankComparison:
    """Measure rank H_o, H_f, H_L on random data and compare with ``hessian_rank_formula``.

    For each activation: an ``mlp(widths, activation, bias)`` with seeded PyTorch-default
    initialisation, Gaussian inputs X (n, d) of rank ``data_rank`` (via a rank-r product),
    Gaussian targets (mse) or soft labels (softmax_ce), loss reduction "sum". rank H_o is
    decided on the singular values of J (MSE: H_o = Jᵀ(2I)J) or of (∇²C)^½ J (softmax CE),
    never on the eigenvalues of H_o, which square the conditioning of J (a σ(J) ratio of 1e-8
    becomes an eigenvalue ratio of 1e-16, below round-off). H_f and H_L are the dense
    ``residual_hessian`` and ``hessian`` of the core engine, cut on |eigenvalues|. Each rank
    comes with its tolerance, gap and route. For tanh and ReLU the agreement with the linear
    formula is approximate and tolerance-dependent (§5.5).

    Args:
        widths: (d, M_1, …, K).
        n_samples: n ≥ 1.
        activations: Hidden activations to compare (names of ``lossgeom.mlp``).
        loss: "mse" or "softmax_ce" (alias "ce").
        bias: False, True (every layer) or "output" (output layer only).
        data_rank: r = rank X, default min(n, d).
        seed: Seed of weights and data.
        rtol: Relative rank tolerance in (0, 1); default max(N, N)·eps for H_f and H_L and
            max(n·k, N)·eps for the singular values behind H_o.

    Returns:
        A HessianRankComparison.

    Raises:
        TypeError: For non-integer widths, n_samples or data_rank.
        ValueError: For invalid widths, n_samples < 1, data_rank outside [0, min(n, d)], unknown
            loss, bias or activation names, or rtol out of range.
        DenseTooLargeError: If N is too large for the dense Hessians.
    """
    where = "hessian_rank_comparison(widths, n_samples)"
    d = check_widths(where, widths)
    n = _nonneg_int(where, "n_samples", n_samples)
    if n < 1:
        raise ValueError(f"{where}: n_samples must be >= 1 (got {n}). Pass the number of "
                         "samples.")
    r = min(n, d[0]) if data_rank is None else _nonneg_int(where, "data_rank", data_rank)
    if r > min(n, d[0]):
        raise ValueError(f"{where}: data_rank = {r} exceeds min(n, d) = {min(n, d[0])} (rank X "
                         "<= min(n, d)). Lower data_rank.")
    check_option(where, "loss", loss, HESSIAN_RANK_LOSSES)
    loss_name = "softmax_ce" if loss == "ce" else loss
    bias = _check_bias(where, bias)
    check_rtol(where, rtol)
    acts = tuple(activations)
    for a in acts:
        check_option(where, "activation", a, ACTIVATIONS)
    start = time.perf_counter()
    formula = hessian_rank_formula(d, r, loss_name, bias, n_samples=n)
    rows: list[HessianRankRow] = []
    rtol_used = rtol
    for a in acts:
        problem = _comparison_problem(d, n, r, loss_name, bias, a, seed)
        theta = problem.theta
        N = problem.n_params
        rtol_used = default_rank_rtol((N, N)) if rtol is None else float(rtol)
        outer, s_outer, route, norm_outer = _outer_rank(problem, theta, rtol)
        # symmetric matrices: σ = |λ| (eigvalsh is several times cheaper than an SVD)
        svals = {k: torch.linalg.eigvalsh(0.5 * (v + v.T)).abs().sort(descending=True).values
                 for k, v in (("functional", residual_hessian(problem, theta)),
                              ("total", hessian(problem, theta)))}
        scale = max([norm_outer, *(float(s[0]) if s.numel() else 0.0 for s in svals.values())])
        rows.append(_rank_row(a, "outer", formula["outer"], outer, s_outer, route))
        for part, label in (("functional", "H_f"), ("total", "H_L")):
            dec = numerical_rank(svals[part], rtol_used, atol=rtol_used * scale, shape=(N, N))
            rows.append(_rank_row(a, part, formula[part], dec, svals[part],
                                  f"{label}: eigenvalues"))
    return HessianRankComparison(d, n, r, loss_name, bias, int(formula["n_params"]),
                                 formula, tuple(rows), float(rtol_used),
                                 time.perf_counter() - start)
