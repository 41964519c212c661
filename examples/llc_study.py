"""The four Aoyagi–Watanabe cases of reduced-rank regression: λ against what the Hessian certifies.

For x ↦ BAx (no bias) with true map 0 on n Gaussian inputs, each row compares, for one (M, H, N):

* the exact learning coefficient λ (``lossgeom.linear.rlct``, §9.2), the global value, attained at
  θ = 0 where the loss is homogeneous; the Hessian vanishes there, so its certified bound is 0;
* the SGLD estimate localised at θ = 0 (mean ± std over chains);
* a less singular minimum, A = 0 with B generic: the certified bound rank ∇²L / 2 = M·min(H, N)/2
  from ``analyze``, which is exact there (the minimum set is locally a manifold), and the SGLD
  estimate localised at it;
  at the default nβ and localisation that estimate falls below the bound where θ = 0 lies within
  the sampled neighbourhood (case 3: bound 6, estimate ≈ 2): λ is an nβ → ∞ limit, the estimate
  measures a neighbourhood;
* the regular value N_params / 2, and nβ·μ_min, the smallest Hessian eigenvalue kept in the rank on
  the scale of L_n times the inverse temperature: SGLD resolves the curvature only where it is ≫ 1.

Run: ``python examples/llc_study.py [--quick]`` (under a minute on two cores; ``--quick`` takes a
few seconds with short chains). The same table: ``lossgeom linear llc-study``.
"""

from __future__ import annotations

import sys

import pandas as pd

from lossgeom.llc import aoyagi_study


def main(quick: bool = False) -> pd.DataFrame:
    """The study as a table, one row per case (also printed)."""
    frame = aoyagi_study(quick=quick).to_frame()
    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.precision", 3):
        print(frame)
    return frame


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
