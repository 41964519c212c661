"""Linear algebra with stated tolerances: rank, inertia, null space, spectra, operators."""

from ._inertia import Inertia, inertia
from .krylov import LowRankSpectrum, low_rank_spectrum
from .operators import CurvatureOperator
from .rank import RankDecision, null_space, numerical_rank, rank_from_gram
from .slq import (
    CountEstimate,
    DegeneracyProfile,
    SpectralDensity,
    TraceEstimate,
    degeneracy_profile,
    hutchpp_trace,
    spectral_density,
)
from .spectrum import Eigenpairs, extreme_eigenpairs

__all__ = [
    "CountEstimate",
    "CurvatureOperator",
    "DegeneracyProfile",
    "LowRankSpectrum",
    "SpectralDensity",
    "TraceEstimate",
    "degeneracy_profile",
    "hutchpp_trace",
    "low_rank_spectrum",
    "spectral_density",
    "Eigenpairs",
    "Inertia",
    "RankDecision",
    "extreme_eigenpairs",
    "inertia",
    "null_space",
    "numerical_rank",
    "rank_from_gram",
]
