"""The four Aoyagi–Watanabe cases of reduced-rank regression: exact λ beside what the Hessian sees.

For x ↦ BAx (two linear layers, no bias) with true map 0 on n Gaussian inputs, one row per
(M, H, N) compares the exact learning coefficient (``linear.rlct``, §9.2), attained at θ = 0
where the loss is homogeneous and the Hessian vanishes, with its SGLD estimate localised there;
and, at the less singular minimum A = 0 with B generic, the certified bound rank ∇²L / 2 (exact
there: the minimum set is locally a manifold) with the estimate localised at that point.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ..analysis import analyze
from ..linear._rlct import rlct
from ..models import mlp
from ..problem import Problem
from ..results import Result
from ._bounds import LLCBounds, llc_bounds
from ._sgld import LLCEstimate, LLCSamplingWarning, estimate_llc

__all__ = ["AOYAGI_CASES", "AoyagiCase", "AoyagiStudy", "aoyagi_study", "reduced_rank_problem"]

F64 = torch.float64

AOYAGI_CASES: Mapping[int, tuple[int, int, int]] = {1: (5, 3, 5), 2: (2, 2, 6), 3: (6, 2, 2),
                                                    4: (2, 5, 2)}
"""One (M, H, N) per case of §9.2 with true rank 0; case 1 with M + H + N odd (the parity term)."""

QUICK_SAMPLING = {"n_chains": 2, "n_draws": 100, "n_burnin": 20}
"""Short chains for a smoke run: they do not mix, so their sampling warnings are silenced."""


def reduced_rank_problem(widths: tuple[int, int, int], n: int = 1000, seed: int = 0) -> Problem:
    """X ↦ BAx with A (H, M), B (N, H), on n standard Gaussian inputs in R^M, targets 0 (n, N).

    >>> reduced_rank_problem((2, 1, 3), n=4).n_params
    5
    """
    M, H, N = widths
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, M, generator=g, dtype=F64)
    return Problem(mlp([M, H, N], "linear", bias=False, generator=g), X,
                   torch.zeros(n, N, dtype=F64))


def less_singular_minimum(problem: Problem, seed: int = 1) -> torch.Tensor:
    """θ with A = 0 and B of N(0, 1/H) entries (rank min(H, N)): a zero-loss point, shape (N,)."""
    g = torch.Generator().manual_seed(seed)
    A, B = (problem.unflatten(problem.theta)[name] for name in problem.param_names)
    return torch.cat([torch.zeros_like(A).reshape(-1),
                      (torch.randn(B.shape, generator=g, dtype=F64) / B.shape[1] ** 0.5)
                      .reshape(-1)])


@dataclass(frozen=True)
class AoyagiCase(Result):
    """One (M, H, N) of the study.

    Attributes:
        case: The case number of §9.2 (1–4).
        widths: (M, H, N).
        n_params: Number of parameters H·M + N·H.
        exact: The exact learning coefficient λ (the global one, attained at θ = 0).
        at_zero: SGLD estimate localised at θ = 0.
        bounds_at_zero: §9.1 bounds there (rank ∇²L = 0, so the lower bound is 0).
        at_less_singular: SGLD estimate localised at A = 0, B generic.
        bounds_at_less_singular: §9.1 bounds there; the lower bound M·min(H, N)/2 is λ itself.
        resolution: nβ · loss_scale · (smallest kept Hessian eigenvalue) at the less singular
            minimum: SGLD resolves that curvature only where this is ≫ 1 (None without a rank).
    """

    case: int
    widths: tuple[int, int, int]
    n_params: int
    exact: float
    at_zero: LLCEstimate
    bounds_at_zero: LLCBounds
    at_less_singular: LLCEstimate
    bounds_at_less_singular: LLCBounds
    resolution: float | None

    @property
    def mixed(self) -> bool:
        """Both chains' diagnostics passed."""
        return self.at_zero.mixed and self.at_less_singular.mixed


@dataclass(frozen=True)
class AoyagiStudy(Result):
    """The four cases, with the sampling settings they ran under.

    Attributes:
        n: Number of samples.
        quick: True when the chains were the short smoke-run ones (``QUICK_SAMPLING``).
        cases: One ``AoyagiCase`` per (M, H, N), in case order.
        seconds: Total sampling time.
    """

    n: int
    quick: bool
    cases: tuple[AoyagiCase, ...]
    seconds: float

    def to_frame(self):
        """A pandas DataFrame, one row per case (the columns of the printed table)."""
        import pandas as pd

        return pd.DataFrame([{
            "case": c.case, "widths": c.widths, "n_params": c.n_params, "exact": c.exact,
            "bound_zero": c.bounds_at_zero.lower, "sgld_zero": c.at_zero.mean,
            "sgld_zero_std": c.at_zero.std, "bound_less_singular": c.bounds_at_less_singular.lower,
            "sgld_less_singular": c.at_less_singular.mean,
            "sgld_less_singular_std": c.at_less_singular.std, "regular": c.n_params / 2,
            "resolution": c.resolution, "mixed": c.mixed,
            "seconds": c.at_zero.seconds + c.at_less_singular.seconds} for c in self.cases])


def aoyagi_study(*, n: int = 1000, quick: bool = False,
                 cases: Mapping[int, tuple[int, int, int]] = AOYAGI_CASES,
                 progress: Callable[[int, int], None] | None = None) -> AoyagiStudy:
    """Run the study: per case, two SGLD estimates (default settings) and two certified Reports.

    Args:
        n: Number of Gaussian inputs (nβ = n / log n).
        quick: Short chains (``QUICK_SAMPLING``; a smoke run, under-mixed by design).
        cases: {case number: (M, H, N)}; default the four of ``AOYAGI_CASES``.
        progress: Called as ``progress(done, total)`` after each case.

    Returns:
        An AoyagiStudy; about a minute on two cores with the defaults, seconds with ``quick``.
    """
    sampling = QUICK_SAMPLING if quick else {}
    rows = []
    for i, (case, widths) in enumerate(cases.items()):
        problem = reduced_rank_problem(widths, n=n)
        zero = torch.zeros(problem.n_params, dtype=F64)
        far = less_singular_minimum(problem)
        with warnings.catch_warnings():
            if quick:
                warnings.simplefilter("ignore", LLCSamplingWarning)
            at_zero = estimate_llc(problem, zero, rng=case, **sampling)
            at_far = estimate_llc(problem, far, rng=100 + case, **sampling)
        b_far = llc_bounds(analyze(problem, far))
        mu = b_far.smallest_kept_eigenvalue
        rows.append(AoyagiCase(
            case=case, widths=tuple(widths), n_params=problem.n_params, exact=rlct(widths, 0),
            at_zero=at_zero, bounds_at_zero=llc_bounds(analyze(problem, zero)),
            at_less_singular=at_far, bounds_at_less_singular=b_far,
            resolution=None if mu is None else at_far.nbeta * at_far.loss_scale * mu))
        if progress is not None:
            progress(i + 1, len(cases))
    return AoyagiStudy(n=n, quick=quick, cases=tuple(rows),
                       seconds=sum(c.at_zero.seconds + c.at_less_singular.seconds for c in rows))
