"""Deep linear networks: functional space, pure and spurious critical points, Hessian ranks.

μ(θ) = W_h ⋯ W_1 maps parameters to the functional space M_r (all matrices of rank ≤ r =
min width). ``classify`` decides whether a critical point of L = ℓ ∘ μ is pure (W̄ critical
for ℓ on M_r) or spurious; ``eckart_young_points`` lists the critical points of the quadratic
loss; ``hessian_rank_formula`` gives the closed-form Hessian ranks. Math: §4 and §5.
"""

from ._bad_minima import (
    BadMinimaResult,
    CriticalCluster,
    WeightedFrobeniusExample,
    bad_minima_experiment,
    weighted_frobenius_example,
)
from ._classify import CONVENTIONS, LinearCritical, classify
from ._eckart_young import (
    EckartYoungLandscape,
    EckartYoungPoint,
    FibreCheck,
    SingularValueTieWarning,
    eckart_young_check,
    eckart_young_landscape,
    eckart_young_points,
    fibre_point,
)
from ._functional import (
    DifferentialRank,
    FunctionalSpace,
    differential,
    differential_rank,
    differential_rank_details,
    differential_rank_numerical,
    functional_space,
    is_filling,
    partial_products,
    product,
)
from ._hessian_rank import (
    HessianRankComparison,
    HessianRankRow,
    hessian_rank_comparison,
    hessian_rank_formula,
)
from ._objectives import (
    FunctionalLoss,
    data_loss,
    frobenius_loss,
    functional_loss,
    functional_problem,
    weighted_frobenius_loss,
)
from ._rlct import rlct
from ._tangent import TangentSpace, tangent_space
from ._weights import flatten_weights, unflatten_weights

__all__ = [
    # the product map and the functional space
    "product", "differential", "partial_products", "differential_rank",
    "differential_rank_details", "differential_rank_numerical", "is_filling",
    "functional_space", "tangent_space", "flatten_weights", "unflatten_weights",
    "DifferentialRank", "FunctionalSpace", "TangentSpace",
    # losses on the functional space
    "FunctionalLoss", "frobenius_loss", "weighted_frobenius_loss", "data_loss",
    "functional_loss", "functional_problem",
    # pure and spurious critical points
    "classify", "LinearCritical", "CONVENTIONS",
    # Eckart–Young landscape
    "eckart_young_points", "eckart_young_landscape", "eckart_young_check", "fibre_point",
    "EckartYoungPoint", "EckartYoungLandscape", "FibreCheck", "SingularValueTieWarning",
    # bad minima
    "weighted_frobenius_example", "WeightedFrobeniusExample", "bad_minima_experiment",
    "BadMinimaResult", "CriticalCluster",
    # Hessian ranks
    "hessian_rank_formula", "hessian_rank_comparison", "HessianRankComparison",
    "HessianRankRow",
    # learning coefficient
    "rlct",
]
