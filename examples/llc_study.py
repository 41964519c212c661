"""The four Aoyagi–Watanabe cases of reduced-rank regression: λ against what the Hessian certifies.

For x ↦ BAx (no bias) with true map 0 on n Gaussian inputs, each row compares, for one (M, H, N):

* the exact learning coefficient λ (``lossgeom.linear.rlct``, §9.2), the global value, attained at
  θ = 0 where the loss is homogeneous; the Hessian vanishes there, so its certified bound is 0;
* the SGLD estimate localised at θ = 0 (mean ± std over chains);
* a less singular minimum, A = 0 with B generic: the certified bound rank ∇²L / 2 = M·min(H, N)/2
  from ``analyze``, which is exact there (the minimum set is locally a manifold), and the SGLD
  estimate localised at it;
  at the default nβ and localisation that estimate falls below the bound where θ = 0 lies within
  the sampled neighbourhood (case 3: bound 6, estimate ≈ 2): λ is an nβ → ∞ limit, the estimate
  measures a neighbourhood;
* the regular value N_params / 2, and nβ·μ_min, the smallest Hessian eigenvalue kept in the rank on
  the scale of L_n times the inverse temperature: SGLD resolves the curvature only where it is ≫ 1.

Run: ``python examples/llc_study.py`` (under a minute on two cores); ``main(quick=True)`` takes a
few seconds with short chains, for the tests.
"""

from __future__ import annotations

import sys
import warnings

import torch
from rich.console import Console
from rich.table import Table

import lossgeom as lg
from lossgeom.linear import rlct
from lossgeom.llc import LLCSamplingWarning, estimate_llc, llc_bounds

F64 = torch.float64
CASES = {1: (5, 3, 5), 2: (2, 2, 6), 3: (6, 2, 2), 4: (2, 5, 2)}
"""One (M, H, N) per case of §9.2 with true rank 0; case 1 with M + H + N odd (the parity term)."""


def reduced_rank_problem(M: int, H: int, N: int, n: int, seed: int = 0) -> lg.Problem:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, M, generator=g, dtype=F64)
    return lg.Problem(lg.mlp([M, H, N], "linear", bias=False, generator=g), X,
                      torch.zeros(n, N, dtype=F64))


def less_singular_minimum(problem: lg.Problem, seed: int = 1) -> torch.Tensor:
    """A = 0, B with N(0, 1/H) entries (rank min(H, N)): a zero-loss point."""
    g = torch.Generator().manual_seed(seed)
    parts = problem.unflatten(problem.theta)
    A, B = (parts[name] for name in problem.param_names)
    return torch.cat([torch.zeros_like(A).reshape(-1),
                      (torch.randn(B.shape, generator=g, dtype=F64) / B.shape[1] ** 0.5).reshape(-1)])


def main(quick: bool = False, console: Console | None = None) -> list[dict]:
    """Build the table; returns one dict per case (the printed numbers)."""
    n = 1000
    sampling = dict(n_chains=2, n_draws=100, n_burnin=20) if quick else {}
    rows = []
    for case, widths in CASES.items():
        problem = reduced_rank_problem(*widths, n=n)
        zero = torch.zeros(problem.n_params, dtype=F64)
        far = less_singular_minimum(problem)
        with warnings.catch_warnings():
            if quick:  # short chains do not mix; the table is a smoke test then
                warnings.simplefilter("ignore", LLCSamplingWarning)
            at_zero = estimate_llc(problem, zero, rng=case, **sampling)
            at_far = estimate_llc(problem, far, rng=100 + case, **sampling)
        b_zero, b_far = llc_bounds(lg.analyze(problem, zero)), llc_bounds(lg.analyze(problem, far))
        mu = b_far.smallest_kept_eigenvalue
        rows.append(dict(
            case=case, widths=widths, n_params=problem.n_params, exact=rlct(widths, 0),
            bound_zero=b_zero.lower, sgld_zero=at_zero.mean, sgld_zero_std=at_zero.std,
            bound_less_singular=b_far.lower, sgld_less_singular=at_far.mean,
            sgld_less_singular_std=at_far.std, regular=problem.n_params / 2,
            resolution=None if mu is None else at_far.nbeta * at_far.loss_scale * mu,
            mixed=at_zero.mixed and at_far.mixed,
            seconds=at_zero.seconds + at_far.seconds))

    table = Table(title=f"Reduced-rank regression, true rank 0, n = {n}, nβ = n/log n "
                        f"({'quick' if quick else 'default'} SGLD settings)")
    for col in ("case", "(M, H, N)", "exact λ", "rank H/2 at 0", "SGLD at 0",
                "rank H/2 at A=0", "SGLD at A=0", "N/2", "nβ·μ_min", "mixed", "s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["case"]), str(r["widths"]), f"{r['exact']:g}", f"{r['bound_zero']:g}",
            f"{r['sgld_zero']:.2f} ± {r['sgld_zero_std']:.2f}", f"{r['bound_less_singular']:g}",
            f"{r['sgld_less_singular']:.2f} ± {r['sgld_less_singular_std']:.2f}",
            f"{r['regular']:g}", "—" if r["resolution"] is None else f"{r['resolution']:.3g}",
            "yes" if r["mixed"] else "no", f"{r['seconds']:.1f}")
    (console or Console(width=150)).print(table)
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
