"""Critical loci of deep networks (§3): star and core loci, last-layer slices, growth rates.

Walking along the solution manifold lives in ``lossgeom.manifold``.

Definitions follow §3.3 (corrected from the source text), in both bias conventions: (B)
biases in every layer, (A) no biases. Layer indices are 1-based; hidden layers are 1, …, ℓ−1.
"""

from ..manifold import SolutionManifold, solution_manifold
from ._attraction import AttractionResult, attraction
from ._construct import (
    core_point,
    dead_pair_point,
    distance_to_locus,
    locus_dimension,
    star_point,
)
from ._growth import GrowthRow, GrowthTable, growth_formulas, growth_table
from ._locate import LocusReport, locate
from ._slice import SliceReport, last_layer_slice, width_regime
from ._wide import WideZeroBound, wide_zero_bound

__all__ = [
    # star and core loci (§3.3–3.4)
    "star_point", "core_point", "dead_pair_point", "locus_dimension", "distance_to_locus",
    "locate", "LocusReport",
    # global-minimum manifold (§3.1)
    "solution_manifold", "SolutionManifold",
    # very wide networks (§3.5)
    "last_layer_slice", "SliceReport", "wide_zero_bound", "WideZeroBound", "width_regime",
    # growth rates (§3.6) and the attraction experiment (§3.4(d))
    "growth_formulas", "growth_table", "GrowthTable", "GrowthRow", "attraction",
    "AttractionResult",
]
