"""Contract checks for lossgeom.loci and lossgeom.manifold : θ validation, frozen
results, JSON, the caller's model untouched."""


import pytest
from contract_checks import check_call

import lossgeom as lg
from lossgeom import loci, manifold

from .helpers import gaussian_problem

CALLS = {
    "locate": lambda p, t: loci.locate(p, t),
    "last_layer_slice": lambda p, t: loci.last_layer_slice(p, t),
    "wide_zero_bound": lambda p, t: loci.wide_zero_bound(p, t),
    "distance_to_locus": lambda p, t: loci.distance_to_locus(p, t, 1),
    "solution_manifold": lambda p, t: loci.solution_manifold(p, lg.fit_last_layer(p, t)),
    "walk": lambda p, t: manifold.walk(p, t, steps=1, inertia_every=0),
    "tangent_basis": lambda p, t: manifold.tangent_basis(p, t)[0],
    "star_point": lambda p, t: loci.star_point(p, 1, base=t),
}


def problem():
    return gaussian_problem([2, 4, 3, 1], n=3, seed=31)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_valid_call_leaves_model_untouched(name):
    check_call(problem(), CALLS[name])


@pytest.mark.parametrize("name", sorted(CALLS))
def test_nan_theta_rejected_with_api_name(name):
    p = problem()
    bad = p.theta
    bad[2] = float("nan")
    api = {"solution_manifold": "fit_last_layer", "star_point": "star_point"}.get(name, name)
    with pytest.raises(ValueError, match=rf"{api}\(problem") as info:
        CALLS[name](p, bad)
    assert "non-finite" in str(info.value)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_wrong_length_theta_rejected(name):
    p = problem()
    with pytest.raises(ValueError, match=rf"shape \({p.n_params - 1},\)"):
        CALLS[name](p, p.theta[:-1])


def test_result_types_frozen_and_exported():
    for cls in (loci.LocusReport, loci.SliceReport, loci.WideZeroBound, loci.GrowthTable,
                loci.GrowthRow, loci.AttractionResult, loci.SolutionManifold,
                manifold.ManifoldWalk, manifold.WalkStep):
        assert cls.__dataclass_params__.frozen
    for name in loci.__all__:
        assert hasattr(loci, name)
    for name in manifold.__all__:
        assert hasattr(manifold, name)


def test_rtol_out_of_range_rejected():
    p = problem()
    for call in (lambda: loci.locate(p, rtol=1.5), lambda: loci.locate(p, locus_rtol=0.0),
                 lambda: loci.wide_zero_bound(p, rank_rtol=-1.0),
                 lambda: loci.growth_table(3, [2], rtol=2.0)):
        with pytest.raises(ValueError, match="must lie in"):
            call()
