"""Summaries of stored runs: Experiment 1's correlation column, and seeds a spec left out."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import lossgeom.sweep as sweep
from lossgeom.cli.sweep import app
from lossgeom.sweep import api
from lossgeom.sweep.store import Store, read_excluded
from lossgeom.sweep.summary import summarize
from lossgeom.sweep.worker import run_one

from .sweep_helpers import write_spec

N = 21  # 3-4-1 with biases


def _run(seed, pattern, rank, activation="relu"):
    """A stored fitted run whose held-out outputs threshold to ``pattern`` ("0110") at rank J."""
    outputs = [[0.9 if c == "1" else 0.1] for c in pattern]
    report = {"n_samples": 4, "n_outputs": 1, "n_params": N, "perfect_fit": {"holds": True},
              "jacobian": {"rank": rank, "decided": True},
              "hessian": {"inertia": [rank, 0, N - rank], "decided": True},
              "behavior_manifold_dim": N - rank, "kind": "global_minimum"}
    return {"run_id": f"{activation}{seed}", "status": "done", "report": report, "error": None,
            "config": {"widths": [3, 4, 1], "activation": activation, "seed": seed},
            "extras": {"heldout_outputs": {"inputs": [[0, 0, 0]] * 4, "outputs": outputs}}}


def _spearman(x, y):
    """Spearman's ρ by hand: Pearson correlation of average ranks."""
    def ranks(v):
        v = np.asarray(v, float)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for value in np.unique(v):  # ties share their mean rank
            r[v == value] = r[v == value].mean()
        return r
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


# ReLU: pattern A in 4 fits at rank 4 (dim 17), B in 2 fits at rank 3 (dim 18), C in 1 fit at
# ranks 2 (dim 19); tanh: every fit has rank 4, so N − rank J = 17 for every pattern.
RECORDS = ([_run(s, "0110", 4) for s in range(4)] + [_run(s, "1110", 3) for s in (4, 5)]
           + [_run(6, "0000", 2)] + [_run(s, p, 4, "tanh") for s, p in
                                     enumerate(["0110", "0110", "1110", "0001"])])


def test_experiment_1_correlation_is_filled_or_explained():
    rows = {r["group"]["activation"]: r for r in summarize(RECORDS)}
    relu, tanh = rows["relu"]["heldout"], rows["tanh"]["heldout"]
    table = {p["pattern"]: (p["count"], p["mean_manifold_dim"]) for p in relu["pattern_table"]}
    assert table == {"0110": (4, 17.0), "1110": (2, 18.0), "0000": (1, 19.0)}
    expected = _spearman([4, 2, 1], [17, 18, 19])
    assert expected == pytest.approx(-1.0)
    assert relu["pattern_dim_correlation"] == pytest.approx(expected, abs=1e-12)
    assert relu["pattern_dim_correlation_reason"] == ""
    assert tanh["pattern_dim_correlation"] is None
    assert tanh["pattern_dim_correlation_reason"] == "N − rank J = 17 in every pattern"
    assert tanh["patterns"] == 3 and tanh["modal_share"] == 0.5


def test_correlation_with_ties_matches_spearman_by_hand():
    records = ([_run(s, "0110", 4) for s in range(3)] + [_run(s, "1110", 3) for s in (3, 4, 5)]
               + [_run(6, "0000", 3), _run(7, "0000", 4)] + [_run(8, "1111", 2)])
    h = summarize(records)[0]["heldout"]
    freq = [p["count"] for p in h["pattern_table"]]
    dims = [p["mean_manifold_dim"] for p in h["pattern_table"]]
    assert freq == [3, 3, 2, 1] and dims == [17.0, 18.0, 17.5, 19.0]
    assert h["pattern_dim_correlation"] == pytest.approx(_spearman(freq, dims), abs=1e-12)


def test_report_table_prints_the_correlation_column(tmp_path):
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        store.plan([r["config"] for r in RECORDS], [r["run_id"] for r in RECORDS], name="2b")
        for r in RECORDS:
            store.put(r)
    res = CliRunner().invoke(app, ["report", str(db)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "corr(freq, N-rank J)" in res.stdout
    held_out_row = [line for line in res.stdout.splitlines() if "relu" in line][-1]
    cells = [c.strip() for c in held_out_row.split("│") if c.strip()]
    assert cells == ["relu", "7", cells[2], f"{4 / 7:.3g}", "3", "-1"]   # runs, spread, share, ρ
    assert "n/a for activation=tanh: N − rank J = 17 in every pattern." in text


# -- data seeds whose labels are constant ------------------------------------------------------
CONSTANT = [9, 17, 18, 19, 20, 41, 48, 49, 59]  # cube_split(seed, 4) gives four equal labels


def test_spec_skips_constant_label_seeds():
    spec = sweep.spec_from_dict({"sweep": {"seeds": 60}, "data": {"skip_constant_labels": True},
                                 "model": {"activation": ["tanh", "relu"]}})
    assert spec.n_runs == 2 * 51 and len(spec.excluded) == 2 * 9
    assert spec.excluded_data_seeds == CONSTANT
    for e in spec.excluded:  # the oracle: the data the run would train on
        y = sweep.spec_from_dict({"sweep": {"seeds": [e["config"]["seed"]]}}).configs()[0]
        from lossgeom.datasets import cube_split

        labels = cube_split(y["data_seed"], 4)[1].flatten().tolist()
        assert len(set(labels)) == 1 and e["reason"] == "constant labels"
    kept = {c["seed"] for c in spec.configs()}
    assert kept.isdisjoint(CONSTANT) and len(kept) == 51
    # the kept runs keep their ids: the filter does not enter the config
    plain = sweep.spec_from_dict({"sweep": {"seeds": 60}, "model": {"activation": ["tanh", "relu"]}})
    assert set(spec.run_ids()) < set(plain.run_ids()) and plain.n_runs == 120
    assert spec.to_dict()["excluded"] == 18


def test_skip_constant_labels_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"\[data\] skip_constant_labels .*must be true or false"):
        sweep.load(write_spec(tmp_path, """
            [data]
            skip_constant_labels = "yes"
        """))
    with pytest.raises(ValueError, match="every one of the 1 runs has constant training labels"):
        sweep.spec_from_dict({"sweep": {"seeds": [9]}, "data": {"skip_constant_labels": True}})


class _InProcess:
    def map_unordered(self, configs):
        return map(run_one, configs)

    def close(self):
        pass


def test_skipped_seeds_are_counted_in_status_and_report(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "make_backend", lambda *a, **k: _InProcess())
    path = write_spec(tmp_path, """
        [sweep]
        seeds = [8, 9, 10]
        [model]
        activation = ["tanh", "relu"]
        [data]
        source = "cube"
        skip_constant_labels = true
    """)
    st = sweep.run(path, progress=False)
    assert (st.ran, st.done, st.excluded, st.excluded_data_seeds) == (4, 4, 2, [9])
    db = tmp_path / "sweep.sqlite"
    assert [e["config"]["seed"] for e in read_excluded(db)] == [9, 9]
    rows = summarize(sweep.results(db), excluded=read_excluded(db))
    assert [(r["group"]["activation"], r["runs"], r["skipped_seeds"]) for r in rows] == [
        ("tanh", 2, 1), ("relu", 2, 1)]
    res = CliRunner().invoke(app, ["report", str(db)])
    assert res.exit_code == 0, res.output
    assert "skipped 1 data seed (2 runs) with constant labels in the training targets: 9" in \
        " ".join(res.stdout.split())
    st_json = json.loads(CliRunner().invoke(app, ["status", str(db), "--json"]).stdout)
    assert st_json["excluded"] == 2 and st_json["excluded_data_seeds"] == [9]
