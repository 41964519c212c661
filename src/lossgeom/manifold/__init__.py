"""The solution manifold {θ : x(θ) = x(θ₀)}: its dimension and walks along ker J (§1.2, §3.1)."""

from ._solution import SolutionManifold, solution_manifold
from ._walk import WALK_ROUTES, ManifoldWalk, WalkStep, tangent_basis, walk

__all__ = [
    "WALK_ROUTES", "ManifoldWalk", "SolutionManifold", "WalkStep", "solution_manifold",
    "tangent_basis", "walk",
]
