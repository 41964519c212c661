"""Growth rates of the loci with the width (§3.6): formulas against measured counts."""

import json

import pytest

from lossgeom.loci import growth_formulas, growth_table

from .helpers import SPEC_INERTIA_RTOL


@pytest.mark.parametrize("bias", [True, False])
def test_measured_counts_match_formulas_for_small_widths(bias):
    """N, dim M, dim S_i, dim C_{i,j} and non-zero counts: formula = measured (generic data)."""
    table = growth_table(4, [4, 6], n_inputs=3, n_outputs=1, n_samples=4, bias=bias,
                         rtol=SPEC_INERTIA_RTOL, seed=1)
    for row in table.rows:
        m = row.measured
        assert m is not None and m["n_params"] == row.n_params
        assert m["dims"] == row.dims, row.width
        assert m["nonzero"] == row.nonzero, (row.width, m["inertia"])
        assert all(m["decided"].values())
        for fam, frac in row.zero_fraction.items():
            assert frac == pytest.approx(1 - row.nonzero[fam] / row.n_params)
    json.dumps(table.to_dict())


def test_vector_outputs_and_unfittable_width():
    """k = 2: ρ_i = min(n_{i−1}, k, n − 1); w + 1 < n leaves M unmeasured with a reason."""
    table = growth_table(3, [2, 5], n_inputs=2, n_outputs=2, n_samples=5, rtol=SPEC_INERTIA_RTOL)
    narrow, wide = table.rows
    assert narrow.measured["dims"]["M"] is None and "cannot interpolate" in narrow.skipped[0]
    assert narrow.measured["nonzero"]["S_1"] == narrow.nonzero["S_1"] == 2 + 2 * 2 * 2
    assert wide.measured["nonzero"] == wide.nonzero == {"M": 10, "S_1": 22, "S_2": 22, "C": 2}


def test_codimension_growth_classes_from_differences():
    """Second differences of codim in w: zero for M and S_1 (n_0 fixed), 2(ℓ−2)-ish > 0 for i ≥ 2."""
    ws = [4, 5, 6, 7]
    table = growth_table(5, ws, measure_max_params=0)
    for fam, growth in table.codimension_growth.items():
        key = "C_{1,2}" if fam == "C" else fam
        codim = [r.n_params - r.dims[key] for r in table.rows]
        second = [codim[i + 2] - 2 * codim[i + 1] + codim[i] for i in range(len(ws) - 2)]
        first = [codim[i + 1] - codim[i] for i in range(len(ws) - 1)]
        if growth == "constant":
            assert set(first) == {0}
        elif growth == "linear":
            assert set(second) == {0} and first[0] > 0
        else:
            assert min(second) > 0
    assert table.codimension_growth["S_1"] == "linear" and "S_1" in table.notes[2]
    assert all(r.measured is None and "formulas only" in r.skipped[0] for r in table.rows)


def test_zero_fraction_tends_to_one():
    table = growth_table(4, [8, 64, 512], measure_max_params=0)
    for fam in table.families:
        fractions = [r.zero_fraction[fam] for r in table.rows]
        assert fractions == sorted(fractions) and fractions[-1] > 0.99


def test_growth_bad_input():
    with pytest.raises(ValueError, match="widths must be a non-empty list"):
        growth_table(3, [])
    with pytest.raises(ValueError, match="depth must be an int ≥ 2"):
        growth_formulas(1, 3, 2, 1, 4)
    with pytest.raises(ValueError, match="unknown activation"):
        growth_table(3, [2], activation="swish")
    with pytest.raises(TypeError, match="bias must be True"):
        growth_table(3, [2], bias="output")


def test_operator_route_matches_dense_route():
    """Gram/Gauss–Newton at the fit and the randomized low-rank route at star and core points
    give the same counts as dense Hessians (the route used for N beyond dense_max_params)."""
    kwargs = {"n_inputs": 2, "n_outputs": 2, "n_samples": 4, "rtol": SPEC_INERTIA_RTOL, "seed": 3}
    dense = growth_table(4, [5], **kwargs)
    oper = growth_table(4, [5], dense_max_params=0, **kwargs)
    d, o = dense.rows[0].measured, oper.rows[0].measured
    assert set(d["method"].values()) == {"dense"}
    assert o["method"] == {"M": "gauss_newton", "S_1": "krylov", "S_2": "krylov",
                           "S_3": "krylov", "C": "krylov"}
    assert o["inertia"] == d["inertia"] and o["nonzero"] == dense.rows[0].nonzero
    assert all(o["decided"].values())
