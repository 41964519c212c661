import json

import numpy as np
import torch

import lossgeom as lg
import lossgeom.sweep as sweep
from lossgeom.problem_specs import problem_from_config
from lossgeom.reach import reach
from lossgeom.sweep.worker import drive, run_one

from .sweep_helpers import TINY, write_spec


def _config(**kw):
    spec = sweep.spec_from_dict({"analysis": kw} if kw else {})
    return spec.configs()[0]


def test_run_one_matches_analyze_called_directly():
    cfg = _config()
    rec = run_one(cfg)
    assert rec["status"] == "done" and rec["error"] is None
    assert rec["run_id"] == sweep.config_hash(cfg) and rec["config"] == cfg
    # the oracle: the same steps by hand
    problem = problem_from_config({k: cfg[k] for k in ("widths", "activation", "bias", "source",
                                                       "n", "data_seed", "seed", "loss",
                                                       "reduction")})
    direct = lg.analyze(problem, reach(problem, "global_minimum")).to_dict()
    assert rec["report"]["jacobian"]["rank"] == direct["jacobian"]["rank"]
    assert rec["report"]["hessian"]["inertia"] == direct["hessian"]["inertia"]
    np.testing.assert_allclose(rec["report"]["hessian"]["top_eigenvalues"],
                               direct["hessian"]["top_eigenvalues"], rtol=1e-10)
    # §6.1: at an exact MSE fit rank ∇²L = rank J; N = 5h + 1 = 21 for h = 4
    assert rec["report"]["n_params"] == 21
    assert rec["report"]["hessian"]["rank"] == rec["report"]["jacobian"]["rank"]
    assert set(rec["versions"]) >= {"lossgeom", "torch", "numpy", "python"}
    json.dumps({k: v for k, v in rec.items() if k != "arrays"})  # plain JSON data


def test_extras_heldout_outputs_and_spectrum():
    cfg = _config(heldout_outputs=True, spectrum=True)
    rec = run_one(cfg)
    assert rec["status"] == "done", rec["error"]
    held = rec["extras"]["heldout_outputs"]
    assert np.asarray(held["inputs"]).shape == (4, 3)
    assert np.asarray(held["outputs"]).shape == (4, 1)
    # the held-out points are the cube points not used for training
    problem = problem_from_config({k: cfg[k] for k in ("widths", "activation", "bias", "source",
                                                       "n", "data_seed", "seed", "loss",
                                                       "reduction")})
    train = {tuple(x) for x in problem.inputs.tolist()}
    assert train.isdisjoint({tuple(x) for x in held["inputs"]}) and len(train) == 4
    # spectrum arrays agree with the Report's inertia and extremes
    lam = rec["arrays"]["hessian_eigenvalues"]
    assert lam.shape == (21,)
    top = rec["report"]["hessian"]["top_eigenvalues"]
    np.testing.assert_allclose(np.sort(lam)[::-1][: len(top)], top, rtol=1e-8,
                               atol=1e-12 * float(np.abs(lam).max()))
    # the stored spectrum is an independent dense eigendecomposition: count it above its own
    # roundoff floor (the Report's tol is in the units of its route, here J's σ cut squared)
    tol = max(rec["report"]["hessian"]["tol"], lam.size * np.finfo(float).eps * np.abs(lam).max())
    assert [int((lam > tol).sum()), int((lam < -tol).sum()), int((abs(lam) <= tol).sum())] == \
        rec["report"]["hessian"]["inertia"]
    sv = rec["arrays"]["jacobian_singular_values"]
    assert int((sv > rec["report"]["jacobian"]["tol"]).sum()) == rec["report"]["jacobian"]["rank"]


def test_failing_run_becomes_a_failed_record(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    cfg = {**_config(), "checkpoint": str(bad)}
    rec = run_one(cfg)
    assert rec["status"] == "failed" and rec["report"] is None
    assert rec["error"].startswith("UnsafeCheckpointError: Problem.from_checkpoint")


def test_checkpoint_runs_analyze_the_saved_parameters(tmp_path):
    cfg = _config(target="as_is")
    problem = problem_from_config({k: cfg[k] for k in ("widths", "activation", "bias", "source",
                                                       "n", "data_seed", "seed", "loss",
                                                       "reduction")})
    theta = problem.theta + 0.1
    torch.save({k: v.clone() for k, v in problem.unflatten(theta).items()}, tmp_path / "c.pt")
    rec = run_one({**cfg, "checkpoint": str(tmp_path / "c.pt")})
    assert rec["status"] == "done", rec["error"]
    assert rec["report"]["loss"] == float(problem.loss(theta))


class _ListBackend:
    """In-process backend: runs configs one after another (a test double for the driver)."""

    def map_unordered(self, configs):
        return map(run_one, configs)


class _ListStore:
    def __init__(self):
        self.records = []

    def put(self, record):
        self.records.append(record)


def test_driver_stores_every_record_and_counts(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    spec = sweep.load(write_spec(tmp_path, TINY))
    configs = spec.configs()
    configs[1] = {**configs[1], "checkpoint": str(bad)}
    store = _ListStore()
    counts = drive(configs, _ListBackend(), store, progress=False)
    assert counts == {"done": 3, "failed": 1}
    assert [r["status"] for r in store.records] == ["done", "failed", "done", "done"]


def test_the_name_run_is_the_function():
    import lossgeom.sweep.worker as module_or_function  # noqa: F401  (the submodule is loaded)
    from lossgeom.sweep.worker import run_one as again

    assert callable(sweep.run) and sweep.run.__module__ == "lossgeom.sweep.api"
    assert again is run_one


def test_no_exact_fit_is_stored_with_its_reason():
    """target = "global_minimum" where no point fits (n = 12 > N = 9): the failure says why."""
    cfg = sweep.spec_from_dict({"model": {"widths": [2, 2, 1]},
                                "data": {"source": "random", "n": 12},
                                "analysis": {"steps": 100}}).configs()[0]
    rec = run_one(cfg)
    assert rec["status"] == "failed" and rec["report"] is None
    assert rec["error"].startswith("NotCriticalError: reach(problem, 'global_minimum'): no exact "
                                   "fit: features of rank 3 < n = 12; residual ")
