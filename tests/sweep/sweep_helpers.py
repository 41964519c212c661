"""Shared helpers of the sweep tests: tiny specs and run functions that kill their worker.

The run functions are top-level in an importable module so that spawned worker processes can
unpickle them (spawn passes the parent's sys.path to the children).
"""

import os
import textwrap

from lossgeom.sweep.worker import run_one

MARKER_ENV = "LOSSGEOM_TEST_CRASH_MARKER"


def write_spec(folder, body: str, name: str = "spec.toml") -> str:
    """Write a TOML spec (dedented) into ``folder`` and return its path as a string."""
    path = os.path.join(os.fspath(folder), name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(body))
    return path


TINY = """
[sweep]
name = "tiny"
seeds = [0, 1]
[model]
widths = [3, 4, 1]
activation = ["tanh", "relu"]
[data]
source = "cube"
n = 4
[analysis]
target = "global_minimum"
"""
"""Four runs of a 3-4-1 net on the §6.3 cube data; each takes milliseconds."""


def crash_in_worker(config):
    """Kill the worker process for seed 1 always, and for seed 2 on its first attempt only.

    The first attempt of seed 2 leaves a marker file (path in $LOSSGEOM_TEST_CRASH_MARKER).
    """
    if config["seed"] == 1:
        os._exit(3)
    if config["seed"] == 2:
        marker = os.environ[MARKER_ENV]
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
    return run_one(config)
