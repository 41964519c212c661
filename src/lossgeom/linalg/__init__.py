"""Linear algebra with stated tolerances: rank, inertia, null space, spectra, operators."""

from ._inertia import Inertia, inertia
from .operators import CurvatureOperator
from .rank import RankDecision, null_space, numerical_rank, rank_from_gram
from .spectrum import Eigenpairs, extreme_eigenpairs

__all__ = [
    "CurvatureOperator",
    "Eigenpairs",
    "Inertia",
    "RankDecision",
    "extreme_eigenpairs",
    "inertia",
    "null_space",
    "numerical_rank",
    "rank_from_gram",
]
