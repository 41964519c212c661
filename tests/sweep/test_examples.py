import glob
import importlib.util
import os
import shutil

import pytest

import lossgeom.sweep as sweep
from lossgeom.plots.sweep import save_sweep_figures
from lossgeom.sweep.store import read_excluded
from lossgeom.sweep.summary import summarize
from lossgeom.sweep.worker import run_one

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples", "sweeps")
SPECS = sorted(glob.glob(os.path.join(EXAMPLES, "*.toml")))
NEEDS_CHECKPOINTS = "digits_checkpoints.toml"


def _spec(name):
    return sweep.load(os.path.join(EXAMPLES, name))


@pytest.mark.parametrize("path", [p for p in SPECS if not p.endswith(NEEDS_CHECKPOINTS)],
                         ids=os.path.basename)
def test_example_specs_load_and_expand(path):
    spec = sweep.load(path)
    assert spec.n_runs == len(set(spec.run_ids())) > 0
    assert spec.description  # each states its expected outcome
    if path.endswith("_quick.toml"):  # about a minute on 2 workers
        full = sweep.load(path.replace("_quick.toml", ".toml"))
        assert spec.n_runs <= spec.max_runs <= 200 and spec.n_runs < full.n_runs <= full.max_runs
        assert set(spec.configs()[0]) == set(full.configs()[0])
    if "hebbar" in path and "data_seed" not in spec.varying and spec.axes["data_seed"] == (None,):
        # fresh cube data per seed: the seeds whose four labels are equal are left out
        assert spec.excluded and all(e["reason"] == "constant labels" for e in spec.excluded)
        assert not set(spec.excluded_data_seeds) & {c["data_seed"] for c in spec.configs()}


@pytest.mark.parametrize("name, seed", [("hebbar_2a_quick.toml", 0), ("hebbar_2b_quick.toml", 0),
                                        ("hebbar_3_quick.toml", 1)])
def test_quick_protocol_specs_run(name, seed):
    # the first config with this seed (tanh, or ReLU 3-1-8-1 for hebbar_3_quick, first widths)
    rec = run_one(next(c for c in _spec(name).configs() if c["seed"] == seed))
    assert rec["status"] == "done", rec["error"]
    rep = rec["report"]
    assert rep["perfect_fit"]["holds"] and rep["kind"] == "global_minimum"
    # §6.1: at an exact MSE fit rank ∇²L = rank J
    assert rep["hessian"]["rank"] == rep["jacobian"]["rank"]
    if name.startswith("hebbar_2b"):
        assert len(rec["extras"]["heldout_outputs"]["outputs"]) == 4
    if name.startswith("hebbar_3"):
        info = rec["extras"]["information_loss"]
        assert info["n_samples"] == 4 and len(info["layers"]) == 2


def test_linear_spec_measured_rank_equals_the_formula(tmp_path):
    spec = _spec("linear_hessian_rank.toml")
    records = []
    for cfg, run_id in zip(spec.configs(), spec.run_ids(), strict=True):
        rec = run_one(cfg)
        assert rec["status"] == "done", rec["error"]
        formula = rec["extras"]["hessian_rank_formula"]
        assert formula["data_rank"] == 6  # n = 10 Gaussian samples in d = 6
        assert rec["report"]["hessian"]["decided"]
        assert rec["report"]["hessian"]["rank"] == formula["total"]  # §5.2
        records.append({**rec, "run_id": run_id})
    written = save_sweep_figures(records, tmp_path)
    assert "linear_rank.png" in {os.path.basename(p) for p in written}


def test_growth_spec_has_nk_nonzero_eigenvalues_at_fits():
    spec = _spec("growth_rates.toml")
    records = []
    for cfg in spec.configs():
        if cfg["widths"][1] > 8:  # the widest runs live in the full sweep
            continue
        rec = run_one(cfg)
        assert rec["status"] == "done", rec["error"]
        rep = rec["report"]
        assert rep["hessian"]["inertia"] == [3, 0, rep["n_params"] - 3]  # §3.6, n·k = 3
        records.append(rec)
    for row in summarize(records):  # zero-eigenvalue fraction 1 − nk/N, rising with the width
        assert row["zero_fraction"] == pytest.approx(1 - 3 / row["n_params"], rel=1e-12)


def test_digits_checkpoint_spec(tmp_path):
    script = os.path.join(EXAMPLES, "make_digits_checkpoints.py")
    module_spec = importlib.util.spec_from_file_location("make_digits_checkpoints", script)
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)
    paths, losses = mod.main(str(tmp_path / "digits_checkpoints"), epochs=mod.EPOCHS)
    assert losses[-1] < losses[0]
    shutil.copy(os.path.join(EXAMPLES, NEEDS_CHECKPOINTS), tmp_path)
    spec = sweep.load(tmp_path / NEEDS_CHECKPOINTS)
    assert [c["checkpoint"] for c in spec.configs()] == paths
    first, last = run_one(spec.configs()[0]), run_one(spec.configs()[-1])
    for rec, loss in ((first, losses[0]), (last, losses[-1])):
        assert rec["status"] == "done", rec["error"]
        assert rec["report"]["loss"] == pytest.approx(loss, rel=1e-10)
    # training removes negative curvature: fewer negative Hessian eigenvalues at the end
    assert last["report"]["hessian"]["inertia"][1] < first["report"]["hessian"]["inertia"][1]
    written = save_sweep_figures([first, last], tmp_path / "figs")
    assert {os.path.basename(p) for p in written} == {"checkpoints.png", "inertia.png",
                                                      "failures.png"}


@pytest.mark.slow
def test_quick_2a_reproduces_the_trend(tmp_path):
    """Oracle checklist 24 (§7): ReLU rank-deficient fraction falls with N; tanh ≈ 0."""
    st = sweep.run(os.path.join(EXAMPLES, "hebbar_2a_quick.toml"), db=tmp_path / "s.sqlite",
                   progress=False)
    assert st.remaining == 0
    records = sweep.results(tmp_path / "s.sqlite")
    rows = {(r["group"]["widths"][1], r["group"]["activation"]): r for r in summarize(records)}
    relu = [rows[h, "relu"]["rank_deficient_fraction"] for h in (2, 4, 8, 16)]
    assert relu[0] > 0 and relu[0] >= relu[-1] and relu[-1] <= 0.2
    assert sum(rows[h, "tanh"]["rank_deficient"] for h in (2, 4, 8, 16)) <= 1
    written = save_sweep_figures(records, tmp_path / "figs")
    assert {os.path.basename(p) for p in written} == {"rank.png", "inertia.png", "failures.png"}


@pytest.mark.slow
def test_quick_2b_generalization_becomes_consistent(tmp_path):
    sweep.run(os.path.join(EXAMPLES, "hebbar_2b_quick.toml"), db=tmp_path / "s.sqlite",
              progress=False)
    rows = summarize(sweep.results(tmp_path / "s.sqlite"))
    for activation in ("tanh", "relu"):
        held = [r["heldout"] for r in rows if r["group"]["activation"] == activation]
        assert held[-1]["spread"] < held[0]["spread"]
        assert held[-1]["modal_share"] >= held[0]["modal_share"]
        for h in held:  # Experiment 1: a correlation, or the reason there is none
            assert (h["pattern_dim_correlation"] is None) == bool(h["pattern_dim_correlation_reason"])


@pytest.mark.slow
def test_quick_3_early_information_loss_is_more_often_rank_deficient(tmp_path):
    path = os.path.join(EXAMPLES, "hebbar_3_quick.toml")
    st = sweep.run(path, db=tmp_path / "s.sqlite", progress=False)
    assert (st.remaining, st.excluded) == (0, 20)
    records = sweep.results(tmp_path / "s.sqlite")
    rows = {r["label"]: r for r in summarize(records, excluded=read_excluded(tmp_path / "s.sqlite"))}
    first, last = rows["widths=3-1-8-1"], rows["widths=3-8-1-1"]
    assert first["skipped_seeds"] == last["skipped_seeds"] == 10
    assert first["rank_deficient_fraction"] > last["rank_deficient_fraction"]
