"""The JSON keys of every report type: all of release 0.1's are still there, and only the
documented additions are new (keys only grow)."""

import json
from pathlib import Path

import pytest
from report_keys import paths, samples

BEFORE = json.loads((Path(__file__).parent / "data" / "report_keys_0.1.json").read_text())

CERTIFICATE = {"hessian.certificate"} | {f"hessian.certificate.{k}" for k in (
    "kind", "residual", "subspace_dim", "n_matvec", "failure_probability")}
DEGENERACY = {"degeneracy"} | {f"degeneracy.{k}" for k in (
    "rel_eps", "count_above", "count_low", "count_high", "confidence", "method",
    "max_abs_eigenvalue", "n")}
RANK_DETAILS = {"min_gap", "reason", "rtol", "sigma_max", "sigma_next", "sigma_r"}
ADDED = {
    "Report": {"blocks", "degeneracy", "model_dtype", "routes", "criticality.floor",
               "hessian.reason", "jacobian.min_gap"} | CERTIFICATE | DEGENERACY,
    "InfoLossReport": {f"jacobian.{k}" for k in RANK_DETAILS} | {"layers[].note"},
    "SolutionManifold": {f"rank_jacobian.{k}" for k in RANK_DETAILS},
    "LocusReport": {"criticality.floor", "measured.n_matvec", "measured.residual"},
    "SliceReport": {"criticality.floor"},
    "OutputVelocity": {"rank.min_gap"},
}
ADDED["Report(lanczos)"] = ADDED["Report"]


@pytest.fixture(scope="module")
def now():
    return {name: paths(obj.to_dict()) for name, obj in samples()}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_every_old_key_is_kept(now, name):
    assert set(BEFORE[name]) <= now[name], sorted(set(BEFORE[name]) - now[name])


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_new_keys_are_the_documented_additions(now, name):
    assert now[name] - set(BEFORE[name]) <= ADDED.get(name, set()), sorted(
        now[name] - set(BEFORE[name]) - ADDED.get(name, set()))
