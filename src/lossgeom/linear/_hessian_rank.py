"""Closed-form Hessian ranks of deep linear networks (§5) and their measured counterparts.

f_θ(x) = W_L ⋯ W_1 x with widths (d = M_0, M_1, …, M_{L-1}, K = M_L), data of rank r. The loss
Hessian splits as H_L = H_o + H_f (§1.1): the outer-product (Gauss–Newton) term
H_o = Jᵀ ∇²ₓC J and the functional term H_f = Σ_a ∂C/∂x_a ∇²_θ x_a. With
q = min(r, K, M_1, …, M_{L-1}) and s = min(r, K), at a generic θ (§5.2):

    rank H_o = q(r + K − q)
    rank H_f = 2q Σ_{l=1}^{L-1} M_l + 2qs − Lq²
    rank H_L = 2q Σ_{l=1}^{L-1} M_l + q(r + K) − Lq²

(hidden widths only in the sums). Softmax cross-entropy replaces K by K − 1. Depth L = 1 is
linear in θ, so H_f = 0 and H_L = H_o.

NOTE [bias ranks]
    With a bias in every layer and 1 ∉ col X (generic data with n > r), §5.4 gives
    rank H_o = q(r + K − q) + K; at depth 2 the first-layer bias is an augmented input, so H_f
    and H_L follow the no-bias formulas with r + 1, plus K for H_L (b_2). Depth ≥ 3: no closed
    form for H_f and H_L (``None`` with a reason; measure them). When 1 ∈ col X (for generic data,
    n = r) the theory's "collapse to the no-bias value" is not exact (widths (5, 2, 3), n = r = 4
    give rank H_o = 11, not 10), so no closed form is returned then either.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_option, check_rtol
from ..curvature import gauss_newton, hessian, residual_hessian
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
        raise TypeError(f"{where}: {name} must be an integer, got {type(v).__name__}.")
    if int(v) < 0:
        raise ValueError(f"{where}: {name} must be >= 0, got {int(v)}.")
    return int(v)


def _no_bias(r: int, K: int, hidden: Sequence[int], L: int) -> tuple[int, int, int]:
    q = min([r, K, *hidden])
    s = min(r, K)
    outer = q * (r + K - q)
    if L == 1:
        return outer, 0, outer
    m = sum(hidden)
    return outer, 2 * q * m + 2 * q * s - L * q * q, 2 * q * m + q * (r + K) - L * q * q


def hessian_rank_formula(widths, data_rank: int, loss: str = "mse", bias: bool = False, *,
                         n_samples: int | None = None) -> dict:
    """Closed-form ranks of H_o, H_f and H_L = ∇²L for a deep linear network (§5.2, §5.4).

    Args:
        widths: (d, M_1, …, M_{L-1}, K), positive integers.
        data_rank: r = rank X (0 ≤ r ≤ d).
        loss: "mse", or "softmax_ce" (alias "ce"), which replaces K by K − 1.
        bias: True for a bias in every layer (NOTE [bias ranks]); False for none.
        n_samples: n, if known. With bias, n = r means 1 ∈ col X for generic data, where no
            closed form is claimed; default None assumes n > r.

    Returns:
        A dict with keys "outer" (rank H_o), "functional" (rank H_f), "total" (rank H_L), each
        an int or None where no closed form is known, "q", "s", "k_effective" (K or K − 1),
        "n_params" (N) and "reason" (why a value is None, or which rule was used).

    Raises:
        TypeError: If widths or data_rank are not integers, or bias is not a bool.
        ValueError: For invalid widths, data_rank outside [0, d], n_samples < data_rank, or an
            unknown loss.

    Example:
        >>> from lossgeom.linear import hessian_rank_formula
        >>> f = hessian_rank_formula([25, 5, 10, 10], data_rank=25)  # §5.3
        >>> f["outer"], f["functional"], f["total"]
        (150, 175, 250)
    """
    where = "hessian_rank_formula(widths, data_rank)"
    d = check_widths(where, widths)
    r = _nonneg_int(where, "data_rank", data_rank)
    if r > d[0]:
        raise ValueError(f"{where}: data_rank = {r} exceeds the input width d = {d[0]}; rank X "
                         "<= min(n, d).")
    check_option(where, "loss", loss, HESSIAN_RANK_LOSSES)
    if not isinstance(bias, bool):
        raise TypeError(f"{where}: bias must be True (every layer) or False, got {bias!r}; "
                        "output-only biases have no closed form here.")
    if n_samples is not None:
        n = _nonneg_int(where, "n_samples", n_samples)
        if n < r:
            raise ValueError(f"{where}: n_samples = {n} is below data_rank = {r}; rank X <= n.")
    K = d[-1] - (1 if loss in ("softmax_ce", "ce") else 0)
    hidden, L = d[1:-1], len(d) - 1
    q, s = min([r, K, *hidden]), min(r, K)
    n_params = sum(a * b for a, b in zip(d[1:], d[:-1], strict=True)) + (sum(d[1:]) if bias else 0)
    out = {"outer": None, "functional": None, "total": None, "q": q, "s": s, "k_effective": K,
           "n_params": n_params, "reason": ""}
    if not bias:
        o, f, t = _no_bias(r, K, hidden, L)
        out.update(outer=o, functional=f, total=t,
                   reason="no bias: §5.2" + (" (depth 1: H_f = 0)" if L == 1 else ""))
        return out
    if n_samples is not None and n_samples == r:
        out["reason"] = ("bias with n = rank X: 1 lies in col X for generic data, and no closed "
                         "form is claimed there; measure the ranks (numerical rank with "
                         "tolerance and gap)")
        return out
    outer = q * (r + K - q) + K
    if L == 1:
        out.update(outer=outer, functional=0, total=outer,
                   reason="bias, depth 1: rank H_o = (r + 1)K, H_f = 0 (1 ∉ col X assumed)")
    elif L == 2:
        _, f, t = _no_bias(r + 1, K, hidden, L)
        out.update(outer=outer, functional=f, total=t + K,
                   reason="bias, depth 2: H_o = q(r+K-q) + K; H_f, H_L from the augmented input "
                          "r + 1, H_L plus K (§5.4; 1 ∉ col X assumed)")
    else:
        out.update(outer=outer,
                   reason=f"bias, depth {L} >= 3: H_o = q(r+K-q) + K (§5.4; 1 ∉ col X "
                          "assumed); no closed form for H_f and H_L, measure them")
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
        formula: The closed-form rank (the linear-network formula; None where there is none).
        measured: The numerical rank.
        tol: Tolerance of the rank cut (max(atol, rtol·σ_max)).
        gap: σ_rank / σ_{rank+1} at the cut.
        decided: gap ≥ min_gap.
        sigma_r: Smallest singular value kept.
        sigma_next: Largest singular value dropped.
        agrees: measured == formula (None when formula is None).
        gap_at_formula: σ_f / σ_{f+1} at the formula's cut f (how clearly the spectrum
            separates there; None when there is no formula or no σ_{f+1}).
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
        bias: Biases in every layer.
        n_params: N.
        formula: The ``hessian_rank_formula`` dict.
        rows: One HessianRankRow per (activation, part).
        rtol: Relative rank tolerance used.
        atol: Absolute floor of the cuts: rtol · max(‖H_o‖₂, ‖H_f‖₂, ‖H_L‖₂) per network, so a
            part that is zero up to round-off is not counted as full rank.
        seconds: Wall time.
    """

    widths: tuple[int, ...]
    n_samples: int
    data_rank: int
    loss: str
    bias: bool
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


def _rank_row(activation: str, part: str, formula, decision: RankDecision, s: torch.Tensor
              ) -> HessianRankRow:
    gap_f = None
    if formula is not None and 0 < formula < s.numel():
        below = float(s[formula])
        gap_f = float(s[formula - 1]) / below if below > 0 else math.inf
    return HessianRankRow(activation, part, formula, decision.rank, decision.tol, decision.gap,
                          decision.decided, decision.sigma_r, decision.sigma_next,
                          None if formula is None else decision.rank == formula, gap_f)


def hessian_rank_comparison(widths, n_samples: int, *, activations: Sequence[str] = (
        "linear", "tanh", "relu"), loss: str = "mse", bias: bool = False,
        data_rank: int | None = None, seed: int = 0, rtol: float | None = None
        ) -> HessianRankComparison:
    """Measure rank H_o, H_f, H_L on random data and compare with ``hessian_rank_formula``.

    For each activation: an ``mlp(widths, activation, bias)`` with seeded PyTorch-default
    initialisation, Gaussian inputs X (n, d) of rank ``data_rank`` (via a rank-r product),
    Gaussian targets (mse) or soft labels (softmax_ce), loss reduction "sum". H_o, H_f and H_L
    are the dense ``gauss_newton``, ``residual_hessian`` and ``hessian`` of the core engine;
    each rank comes with its tolerance and gap. For tanh and ReLU the agreement with the
    linear formula is approximate and tolerance-dependent (§5.5).

    Args:
        widths: (d, M_1, …, K).
        n_samples: n ≥ 1.
        activations: Hidden activations to compare (names of ``lossgeom.mlp``).
        loss: "mse" or "softmax_ce" (alias "ce").
        bias: Biases in every layer.
        data_rank: r = rank X, default min(n, d).
        seed: Seed of weights and data.
        rtol: Relative rank tolerance in (0, 1); default max(N, N)·eps.

    Returns:
        A HessianRankComparison.

    Raises:
        TypeError: For non-integer widths, n_samples or data_rank.
        ValueError: For invalid widths, n_samples < 1, data_rank outside [0, min(n, d)], unknown
            loss or activation names, or rtol out of range.
        DenseTooLargeError: If N is too large for the dense Hessians.
    """
    where = "hessian_rank_comparison(widths, n_samples)"
    d = check_widths(where, widths)
    n = _nonneg_int(where, "n_samples", n_samples)
    if n < 1:
        raise ValueError(f"{where}: n_samples must be >= 1, got {n}.")
    r = min(n, d[0]) if data_rank is None else _nonneg_int(where, "data_rank", data_rank)
    if r > min(n, d[0]):
        raise ValueError(f"{where}: data_rank = {r} exceeds min(n, d) = {min(n, d[0])}.")
    check_option(where, "loss", loss, HESSIAN_RANK_LOSSES)
    loss_name = "softmax_ce" if loss == "ce" else loss
    check_rtol(where, rtol)
    acts = tuple(activations)
    for a in acts:
        check_option(where, "activation", a, ACTIVATIONS)
    start = time.perf_counter()
    formula = hessian_rank_formula(d, r, loss_name, bool(bias), n_samples=n)
    g = torch.Generator().manual_seed(int(seed))
    X = (torch.randn(n, r, generator=g, dtype=torch.float64)
         @ torch.randn(r, d[0], generator=g, dtype=torch.float64))
    if loss_name == "mse":
        Y = torch.randn(n, d[-1], generator=g, dtype=torch.float64)
    else:
        Y = torch.softmax(torch.randn(n, d[-1], generator=g, dtype=torch.float64), dim=-1)
    rows: list[HessianRankRow] = []
    rtol_used = rtol
    for a in acts:
        model = mlp(list(d), activation=a, bias=bool(bias),
                    generator=torch.Generator().manual_seed(int(seed) + 1))
        problem = Problem(model, X, Y, loss=loss_name)
        theta = problem.theta
        mats = {"outer": gauss_newton(problem, theta),
                "functional": residual_hessian(problem, theta),
                "total": hessian(problem, theta)}
        N = problem.n_params
        rtol_used = default_rank_rtol((N, N)) if rtol is None else float(rtol)
        # symmetric matrices: σ = |λ| (eigvalsh is several times cheaper than an SVD)
        svals = {k: torch.linalg.eigvalsh(0.5 * (v + v.T)).abs().sort(descending=True).values
                 for k, v in mats.items()}
        scale = max(float(s[0]) if s.numel() else 0.0 for s in svals.values())
        for part in PARTS:
            dec = numerical_rank(svals[part], rtol_used, atol=rtol_used * scale, shape=(N, N))
            rows.append(_rank_row(a, part, formula[part], dec, svals[part]))
    return HessianRankComparison(d, n, r, loss_name, bool(bias), int(formula["n_params"]),
                                 formula, tuple(rows), float(rtol_used),
                                 time.perf_counter() - start)
