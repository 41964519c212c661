"""Deep linear networks: functional space, pure and spurious critical points, Hessian ranks.

μ(θ) = W_h ⋯ W_1 maps parameters to the functional space M_r (all matrices of rank ≤ r =
min width). ``classify`` decides whether a critical point of L = ℓ ∘ μ is pure (W̄ critical
for ℓ on M_r) or spurious; ``eckart_young_points`` lists the critical points of the quadratic
loss; ``hessian_rank_formula`` gives the closed-form Hessian ranks. Math: spec §4 and §5.
"""

from ._critical import (
    CONVENTIONS,
    BadMinimaResult,
    CriticalCluster,
    EckartYoungLandscape,
    EckartYoungPoint,
    FunctionalLoss,
    LinearCritical,
    SingularValueTieWarning,
    WeightedFrobeniusExample,
    bad_minima_experiment,
    classify,
    data_loss,
    eckart_young_landscape,
    eckart_young_points,
    fibre_point,
    frobenius_loss,
    functional_loss,
    weighted_frobenius_example,
    weighted_frobenius_loss,
)
from ._functional import (
    DifferentialRank,
    FunctionalSpace,
    TangentSpace,
    differential,
    differential_rank,
    differential_rank_details,
    differential_rank_numerical,
    flatten_weights,
    functional_space,
    is_filling,
    partial_products,
    product,
    tangent_space,
    unflatten_weights,
)
from ._hessian_rank import (
    HessianRankComparison,
    HessianRankRow,
    hessian_rank_comparison,
    hessian_rank_formula,
)

__all__ = [
    # the product map and the functional space
    "product", "differential", "partial_products", "differential_rank",
    "differential_rank_details", "differential_rank_numerical", "is_filling",
    "functional_space", "tangent_space", "flatten_weights", "unflatten_weights",
    "DifferentialRank", "FunctionalSpace", "TangentSpace",
    # losses on the functional space
    "FunctionalLoss", "frobenius_loss", "weighted_frobenius_loss", "data_loss",
    "functional_loss",
    # pure and spurious critical points
    "classify", "LinearCritical", "CONVENTIONS",
    # Eckart–Young landscape
    "eckart_young_points", "eckart_young_landscape", "fibre_point", "EckartYoungPoint",
    "EckartYoungLandscape", "SingularValueTieWarning",
    # bad minima
    "weighted_frobenius_example", "WeightedFrobeniusExample", "bad_minima_experiment",
    "BadMinimaResult", "CriticalCluster",
    # Hessian ranks
    "hessian_rank_formula", "hessian_rank_comparison", "HessianRankComparison",
    "HessianRankRow",
]
