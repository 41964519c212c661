import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lossgeom.sweep as sweep
from lossgeom.sweep.spec import DEFAULTS, config_hash

from .sweep_helpers import TINY, write_spec


def test_expansion_grid_times_seeds(tmp_path):
    spec = sweep.load(write_spec(tmp_path, """
        [sweep]
        name = "grid"
        seeds = 3
        [model]
        widths = [[3, 2, 1], [3, 4, 1]]
        activation = ["tanh", "relu"]
        bias = true
        [data]
        source = "cube"
        [analysis]
        target = "minimum"
        steps = 10
    """))
    configs = spec.configs()
    assert spec.n_runs == len(configs) == 2 * 2 * 3
    assert spec.varying == ["widths", "activation"]
    assert spec.seeds == (0, 1, 2)
    # seeds vary fastest, then the last axis
    assert [c["seed"] for c in configs[:3]] == [0, 1, 2]
    assert [(c["widths"], c["activation"]) for c in configs[::3]] == [
        ([3, 2, 1], "tanh"), ([3, 2, 1], "relu"), ([3, 4, 1], "tanh"), ([3, 4, 1], "relu")]
    # every (grid point, seed) once
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == spec.n_runs
    c = configs[0]
    assert c["data_seed"] == c["seed"] and c["steps"] == 10
    assert c["lr"] == DEFAULTS["lr"] and c["polish"] == DEFAULTS["polish"]
    assert spec.default_db == os.path.join(str(tmp_path), "sweep.sqlite")


def test_canonical_config_leaves_out_options_that_do_not_apply(tmp_path):
    spec = sweep.load(write_spec(tmp_path, TINY))
    c = spec.configs()[0]
    assert set(c) == {"widths", "activation", "bias", "source", "n", "data_seed", "seed", "loss",
                      "reduction", "target", "method", "steps"}
    as_is = sweep.spec_from_dict({"analysis": {"target": "as_is", "information_loss": True,
                                               "spectrum": False, "rtol": 1e-8}})
    c = as_is.configs()[0]
    assert "steps" not in c and "spectrum" not in c
    assert c["information_loss"] is True and c["rtol"] == 1e-8


def test_run_id_is_sha256_of_canonical_json_and_key_order_free(tmp_path):
    spec = sweep.load(write_spec(tmp_path, TINY))
    for cfg, rid in zip(spec.configs(), spec.run_ids(), strict=True):
        text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        assert rid == hashlib.sha256(text.encode()).hexdigest()
        shuffled = dict(reversed(list(cfg.items())))
        assert config_hash(shuffled) == rid
    assert len(set(spec.run_ids())) == spec.n_runs
    # a changed value changes the id
    cfg = spec.configs()[0]
    assert config_hash({**cfg, "seed": cfg["seed"] + 1}) != config_hash(cfg)


def test_run_ids_stable_across_processes_and_independent_of_table_order(tmp_path):
    path = write_spec(tmp_path, TINY)
    # the same spec with its tables and keys in another order
    other = write_spec(tmp_path, """
        [analysis]
        target = "global_minimum"
        [data]
        n = 4
        source = "cube"
        [model]
        activation = ["tanh", "relu"]
        widths = [3, 4, 1]
        [sweep]
        seeds = [0, 1]
        name = "tiny"
    """, name="other.toml")
    here = sweep.load(path).run_ids()
    code = f"import lossgeom.sweep as s; print(' '.join(s.load({path!r}).run_ids()))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.split()
    assert there == here
    assert sweep.load(other).run_ids() == here


def test_relative_paths_resolve_against_the_spec_folder(tmp_path):
    sub = tmp_path / "specs"
    sub.mkdir()
    np.savez(tmp_path / "data.npz", inputs=np.ones((3, 2)), targets=np.zeros((3, 1)))
    spec = sweep.load(write_spec(sub, """
        [model]
        widths = [2, 3, 1]
        [data]
        source = "../data.npz"
    """))
    assert spec.configs()[0]["source"] == str(tmp_path / "data.npz")


@pytest.mark.parametrize("body, fragments", [
    ("[sweep]\nname = \"x\"\nseeds = [0 1]\n", ["malformed TOML", "line 3"]),
    ("[model]\nwidths = [3, 4, 1]\nwidht = 3\n", ["unknown key 'widht'", "[model]", "line 3",
                                                   "widths"]),
    ("[modle]\nwidths = [3, 4, 1]\n", ["unknown table [modle]", "line 1"]),
    ("[model]\nactivation = []\n", ["empty grid axis", "activation", "line 2"]),
    ("[sweep]\nseeds = []\n", ["seeds", "line 2"]),
    ("[model]\nwidths = [[3, 0, 1]]\n", ["bad widths [3, 0, 1]", "line 2"]),
    ("[model]\nwidths = [3]\n", ["bad widths [3]", "at least two"]),
    ("[model]\nwidths = [3.5, 4, 1]\n", ["bad widths"]),
    ("[model]\nactivation = [\"tanh\", \"relu6\"]\n", ["unknown activation 'relu6'", "'relu'",
                                                       "line 2"]),
    ("[analysis]\nloss = \"hinge\"\n", ["unknown loss 'hinge'", "'mse'", "line 2"]),
    ("[analysis]\ntarget = \"saddle\"\n", ["unknown target 'saddle'", "'global_minimum'"]),
    ("[model]\nwidths = [2, 4, 1]\n", ["do not fit source 'cube'", "Start the widths with 3"]),
    ("[data]\nn = 9\n", ["the cube has 8 points"]),
    ("[analysis]\ntarget = \"global_minimum\"\npolish = \"newton\"\n",
     ["polish applies only to target = \"minimum\"", "line 3"]),
    ("[analysis]\nrtol = 2.0\n", ["rtol must be a number in (0, 1)"]),
    ("[analysis]\ncheckpoint = \"missing.pt\"\n", ["no checkpoint at", "missing.pt"]),
    ("[data]\nsource = \"nothere.npz\"\n", ["no data file at"]),
    ("[model]\nactivation = [\"tanh\", \"tanh\"]\n", ["repeated values"]),
])
def test_bad_specs_name_the_key_and_line(tmp_path, body, fragments):
    path = write_spec(tmp_path, body)
    with pytest.raises(ValueError) as info:
        sweep.load(path)
    msg = str(info.value)
    assert msg.startswith(f"load({path!r})")
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_missing_file_and_wrong_types(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        sweep.load(tmp_path / "none.toml")
    with pytest.raises(TypeError, match="a spec is a dict of tables"):
        sweep.spec_from_dict([1, 2])
    with pytest.raises(TypeError, match="spec must be a SweepSpec"):
        sweep.run(42)


def test_more_runs_than_max_runs_needs_yes(tmp_path):
    path = write_spec(tmp_path, """
        [sweep]
        seeds = 5
        max_runs = 4
    """)
    with pytest.raises(ValueError, match=r"expands to 5 runs, above its max_runs = 4.*--yes"):
        sweep.run(path, db=tmp_path / "s.sqlite", progress=False)
    assert not (tmp_path / "s.sqlite").exists()
