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


class Unexpected(BaseException):
    """An exception outside the ``Exception`` hierarchy, as a misbehaving library might raise."""


def raise_in_analysis(config):
    """Run ``run_one`` with an analysis that raises for seeds 1, 2 and 3 (three kinds of error).

    Seed 1: RuntimeError; seed 2: SystemExit; seed 3: a BaseException subclass. The patch is
    applied inside the worker process, so it works under spawn and Dask alike.
    """
    import lossgeom.sweep.worker as worker

    errors = {1: RuntimeError("unexpected: boom"), 2: SystemExit("analysis called exit()"),
              3: Unexpected("not an Exception")}
    real = worker.analyze

    def analyze(problem, theta, **kw):
        if config["seed"] in errors:
            raise errors[config["seed"]]
        return real(problem, theta, **kw)

    worker.analyze = analyze
    try:
        return run_one(config)
    finally:
        worker.analyze = real


def kill_worker_mid_run(config):
    """SIGKILL the worker process half-way through the runs of seed 1 (always) and seed 2 (once).

    The problem is built and descent has started before the kill; seed 2 leaves a marker file
    (path in $LOSSGEOM_TEST_CRASH_MARKER) on its first attempt, so its retry finishes.
    """
    import signal

    from lossgeom.problem_specs import problem_from_config

    if config["seed"] in (1, 2):
        problem = problem_from_config({k: config[k] for k in ("widths", "activation", "source",
                                                              "n", "data_seed", "seed")})
        problem.grad()  # work in progress when the process dies
        marker = os.environ[MARKER_ENV]
        if config["seed"] == 1 or not os.path.exists(marker):
            if config["seed"] == 2:
                open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return run_one(config)
