"""lossgeom: certified geometry of neural-network loss landscapes at and around critical points.

Everything public is importable from the top level::

    import lossgeom as lg

The flow of the package is Problem → curvature core (``curvature``: the Linearization of x(θ),
Hessian and Gauss–Newton products) → decisions with stated tolerances (``linalg``, ``results``)
→ analyses (``analyze``, ``information_loss``, ``loci``, ``flows``, ``linear``, ``manifold``) →
front ends (CLI, plots, sweeps). The theory is in docs/theory.md, how each number is decided in
docs/routes.md, and the map of the folders in docs/architecture.md.
"""

from . import _moved, flows, linear, loci, manifold, sweep
from .analysis import analyze
from .curvature import (
    Linearization,
    gauss_newton,
    hessian,
    hessian_operator,
    hessian_spectrum,
    hessian_trace,
    hvp,
    jacobian,
    jacobian_operator,
    linearize,
    ntk_gram,
    residual_hessian,
)
from .errors import DenseTooLargeError, NotCriticalError, UnsafeCheckpointError
from .info_loss import InfoLossReport, information_loss
from .linalg import DegeneracyProfile, SpectralDensity, inertia, null_space, numerical_rank
from .llc import LLCBounds, LLCEstimate, estimate_llc, llc_bounds
from .models import mlp
from .problem import Problem
from .reach import find_critical_point, fit_last_layer
from .report import Report
from .results import Certificate, Criticality, Inertia, Kind, PerfectFit, RankDecision, RankIdentity

_moved.install()

__version__ = "0.2.0"

__all__ = [
    # problems and models
    "Problem", "mlp",
    # curvature
    "linearize", "Linearization", "jacobian", "jacobian_operator", "ntk_gram", "hessian", "hvp",
    "hessian_operator", "gauss_newton", "residual_hessian", "hessian_spectrum", "hessian_trace",
    # linear algebra with stated tolerances
    "numerical_rank", "inertia", "null_space", "RankDecision", "Inertia", "SpectralDensity",
    "DegeneracyProfile",
    # critical-point analysis
    "analyze", "Report", "Kind", "Criticality", "PerfectFit", "RankIdentity", "Certificate",
    "find_critical_point", "fit_last_layer",
    # information loss
    "information_loss", "InfoLossReport",
    # degeneracy beyond the Hessian: the local learning coefficient
    "llc_bounds", "estimate_llc", "LLCBounds", "LLCEstimate",
    # submodules
    "flows", "linear", "loci", "manifold", "sweep",
    # errors
    "DenseTooLargeError", "NotCriticalError", "UnsafeCheckpointError",
]
