"""Gradient flows in parameter and output space (§2; Chen & Muñoz Ewald, arXiv 2408.01517).

The standard flow ∂ₛθ = −∇_θC, the adapted flow ∂ₛθ = −J⁺∇ₓC and the family V_α between them
(``vector_field``); their output velocities J V_α = −[(1 − α)J Jᵀ + αP]∇ₓC (``output_velocity``);
the output metrics (2.44)/(2.45) (``output_metric``, ``bundle_metric``); integration in natural
time or in the interpolation time τ of the L2 time change, where the adapted flow moves the
outputs on the straight line x₀ → y (``integrate`` → ``Trajectory``); the rank-loss propagator and
deviation from the line (``propagator``, ``line_deviation``, ``path_projector``); the cross-entropy
equilibria and conserved output sums (``ce_equilibrium``, ``output_sums``, ``label_entropy``,
``ce_sample_hessian``); and the check that all α share their equilibria (``shared_equilibria``).

Flows need activations with Lipschitz derivatives: ReLU is refused (``mollify`` replaces it by a
softplus with a temperature). The cost's normalisation is an explicit argument of every function
(NOTE [cost normalisation] in ``lossgeom.flows._common``).

References:
    T. Chen, P. Muñoz Ewald, "Gradient flow in parameter space is equivalent to linear
    interpolation in output space", arXiv:2408.01517.
"""

from ..curvature.linearization import GRAM_MAX_OUTPUTS
from ._common import NORMALIZATIONS, SOLVERS, cost_normalization, mollify
from ._cross_entropy import ce_equilibrium, ce_sample_hessian, label_entropy, output_sums
from ._equilibria import EquilibriumCheck, shared_equilibria
from ._field import OutputVelocity, output_velocity, vector_field
from ._integrate import METHODS, FlowStoppedError, integrate
from ._metric import BundleMetric, bundle_metric, output_metric
from ._rank_loss import line_deviation, path_projector, propagator
from ._trajectory import Trajectory

__all__ = [
    # fields and output space
    "vector_field", "output_velocity", "OutputVelocity", "output_metric", "bundle_metric",
    "BundleMetric",
    # integration
    "integrate", "Trajectory", "FlowStoppedError", "shared_equilibria", "EquilibriumCheck",
    # rank loss
    "propagator", "line_deviation", "path_projector",
    # cross-entropy
    "ce_equilibrium", "label_entropy", "ce_sample_hessian", "output_sums",
    # smoothness and options
    "mollify", "cost_normalization", "METHODS", "SOLVERS", "NORMALIZATIONS", "GRAM_MAX_OUTPUTS",
]
