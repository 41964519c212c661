"""The local learning coefficient λ beside the certified Hessian rank (§9).

At a local minimum θ* of an analytic loss, the splitting lemma bounds the local learning
coefficient (the real log canonical threshold of K(θ) = L(θ) − L(θ*) near θ*) by the Hessian rank
(§9.1):

    rank ∇²L(θ*) / 2  ≤  λ  ≤  N / 2,

with λ = rank/2 exactly where the minimum set is locally a manifold of dimension N − rank
("minimally singular"); λ − rank/2 is the degeneracy that no Hessian sees. ``llc_bounds`` reads
these bounds off a certified ``Report``; ``estimate_llc`` estimates λ itself by SGLD, as devinterp
does (and, with ``backend="devinterp"``, by devinterp's own estimator on the same problem).

NOTE [empirical loss L_n]
    Both backends sample the tempered, localised posterior

        p(w) ∝ exp(−nβ L_n(w) − γ/2 ‖w − θ*‖²)

    and estimate λ̂ = nβ (E[L_n(w)] − L_n(θ*)), where L_n is the per-sample *average* loss in
    PyTorch's "mean" convention, whatever the Problem's reduction: L_n = C(x(θ), y) with
    reduction="mean", i.e. Σ(x − y)²/(n·k) for mse (``F.mse_loss``, the criterion devinterp's
    examples use), the mean over n·k entries for bce, and the mean over n samples for ce_prob and
    softmax_ce (``F.cross_entropy``). For a Problem with reduction="sum", L_n is its loss times
    ``LLCEstimate.loss_scale`` = 1/(n·k) (mse, bce) or 1/n (ce_prob, softmax_ce); with
    reduction="mean" the two coincide. A custom loss callable is taken as L_n itself and must
    be an average over samples. λ does not depend on the scale of L_n, but the estimate at a
    finite nβ does: nβ·loss_scale is the effective inverse temperature.

NOTE [finite temperature]
    λ is a limit nβ → ∞; SGLD at a finite nβ measures a neighbourhood of θ*, of radius set by nβ
    and the localisation 1/√γ. Two consequences make an estimate sit below the certified bound
    rank/2: curvature below about 1/(nβ) (on the scale of L_n) looks flat, so such directions are
    explored out to the localisation radius; and a more singular point within that radius pulls the
    estimate towards its smaller coefficient. Reduced-rank regression at A = 0 with B generic shows
    the second: the Hessian certifies rank/2 = 6 for (M, H, N) = (6, 2, 2), nβ times the smallest
    kept eigenvalue is 15, yet the default run returns ≈ 2, the value at θ = 0, about |B| ≈ 1.4
    away. ``llc_bounds`` reports the smallest kept eigenvalue beside the bounds; compare both.
"""

from ._bounds import MINIMUM_KINDS, LLCBounds, llc_bounds
from ._sgld import (
    BACKENDS,
    DEFAULT_LOCALIZATION,
    DEFAULT_N_BURNIN,
    DEFAULT_N_CHAINS,
    DEFAULT_N_DRAWS,
    DEFAULT_STEP,
    EXPLODE_FACTOR,
    MAX_DRIFT,
    MAX_RHAT,
    LLCEstimate,
    LLCSamplingWarning,
    default_nbeta,
    empirical_loss,
    estimate_llc,
    split_rhat,
)
from ._study import AOYAGI_CASES, AoyagiCase, AoyagiStudy, aoyagi_study, reduced_rank_problem

__all__ = [
    "AOYAGI_CASES", "BACKENDS", "DEFAULT_LOCALIZATION", "DEFAULT_N_BURNIN", "DEFAULT_N_CHAINS",
    "DEFAULT_N_DRAWS", "DEFAULT_STEP", "EXPLODE_FACTOR", "MAX_DRIFT", "MAX_RHAT", "MINIMUM_KINDS",
    "AoyagiCase", "AoyagiStudy", "LLCBounds", "LLCEstimate", "LLCSamplingWarning", "aoyagi_study",
    "default_nbeta", "empirical_loss", "estimate_llc", "llc_bounds", "reduced_rank_problem",
    "split_rhat",
]
