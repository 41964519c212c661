"""lossgeom: certified geometry of neural-network loss landscapes at and around critical points.

Everything in the public API (``../api.md``) is importable from the top level::

    import lossgeom as lg
"""

from . import flows, linear, loci, manifold, sweep
from .analysis import analyze
from .curvature import (
    gauss_newton,
    hessian,
    hessian_operator,
    hvp,
    jacobian,
    jacobian_operator,
    ntk_gram,
    residual_hessian,
)
from .errors import DenseTooLargeError, NotCriticalError, UnsafeCheckpointError
from .info_loss import InfoLossReport, information_loss
from .linalg import Inertia, RankDecision, inertia, null_space, numerical_rank
from .models import mlp
from .problem import Problem
from .reach import find_critical_point, fit_last_layer
from .report import Report

__version__ = "0.1.0"

__all__ = [
    # problems and models
    "Problem", "mlp",
    # curvature
    "jacobian", "jacobian_operator", "ntk_gram", "hessian", "hvp", "hessian_operator",
    "gauss_newton", "residual_hessian",
    # linear algebra
    "numerical_rank", "inertia", "null_space", "RankDecision", "Inertia",
    # critical-point analysis
    "analyze", "Report", "find_critical_point", "fit_last_layer",
    # information loss
    "information_loss", "InfoLossReport",
    # submodules
    "flows", "linear", "loci", "manifold", "sweep",
    # errors
    "DenseTooLargeError", "NotCriticalError", "UnsafeCheckpointError",
]
