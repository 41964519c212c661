"""Sweep benchmarks: the cost of the sweep machinery, as ratios timed in the same run.

1. Overhead per run: ``run_one(config)`` (record, hashing, versions, warnings capture) against
   building the problem, reaching the point and calling ``lg.analyze`` directly, for runs of
   about a second (target: ≤ 10 %).
2. Local pool: the same runs on 1 and on 2 worker processes, store writes included (target:
   near-linear speed-up on this 2-core machine; worker start-up is counted).
3. Dask: a LocalCluster of 2 single-threaded workers against the local pool of 2 (target:
   within 1.3×).

Before timing, every backend's records are checked to agree (run ids, ranks, inertias).
Run: ``python benchmarks/sweep.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import lossgeom as lg
from lossgeom.problem_specs import problem_from_config
from lossgeom.reach import find_critical_point
from lossgeom.sweep import run_one, spec_from_dict
from lossgeom.sweep.backends import DaskBackend, LocalBackend
from lossgeom.sweep.store import Store, read_records
from lossgeom.sweep.worker import PROBLEM_KEYS, drive


def spec(seeds: int, steps: int):
    return spec_from_dict({
        "sweep": {"name": "bench", "seeds": seeds},
        "model": {"widths": [[3, 8, 1], [3, 16, 1]], "activation": ["tanh", "relu"]},
        "analysis": {"target": "minimum", "steps": steps, "polish": "gauss_newton"},
    })


def direct(config) -> dict:
    """The same work as run_one without the sweep machinery."""
    problem = problem_from_config({k: config[k] for k in PROBLEM_KEYS})
    theta, _ = find_critical_point(problem, steps=config["steps"], target="minimum",
                                   polish=config["polish"], lr=config["lr"])
    return lg.analyze(problem, theta, method=config["method"]).to_dict()


def overhead(configs, reps: int) -> tuple[float, float]:
    run_one(configs[0])  # warm-up (lazy imports)
    t_sweep, t_direct = [], []
    for _ in range(reps):
        for cfg in configs:
            t0 = time.perf_counter()
            direct(cfg)
            t_direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_one(cfg)
            t_sweep.append(time.perf_counter() - t0)
    return statistics.median(t_direct), statistics.median(t_sweep)


def timed_sweep(backend, configs, folder: str, tag: str, workers: int
                ) -> tuple[float, float, list[dict]]:
    """(wall seconds including worker start-up, steady-state runs per second, records)."""
    db = os.path.join(folder, f"{tag}.sqlite")
    arrivals: list[float] = []
    t0 = time.perf_counter()
    with Store(db) as store:
        drive(configs, backend, store, progress=False,
              on_record=lambda rec: arrivals.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    # once every worker has finished its first run, start-up is over
    rate = (len(arrivals) - workers) / (arrivals[-1] - arrivals[workers - 1])
    return wall, rate, read_records(db)


def geometry(records) -> dict:
    return {r["run_id"]: (r["status"], r["report"] and r["report"]["jacobian"]["rank"],
                          r["report"] and tuple(r["report"]["hessian"]["inertia"]))
            for r in records}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds, steps = (2, 1500) if args.quick else (4, 3000)
    configs = spec(seeds, steps).configs()

    d, s = overhead(configs[:4], 1 if args.quick else 3)
    rows = [("run_one vs direct analyze (median per run)", f"{d:.3f} s", f"{s:.3f} s",
             f"{s / d:.3f}", "<= 1.10")]

    with tempfile.TemporaryDirectory() as folder:
        t1, q1, r1 = timed_sweep(LocalBackend(1), configs, folder, "local1", 1)
        t2, q2, r2 = timed_sweep(LocalBackend(2), configs, folder, "local2", 2)
        with DaskBackend(workers=2) as backend:
            td, qd, rd = timed_sweep(backend, configs, folder, "dask2", 2)
    assert geometry(r1) == geometry(r2) == geometry(rd), "backends disagree"
    n = len(configs)
    rows.append((f"local pool, {n} runs, wall: 1 vs 2 workers", f"{t1:.1f} s", f"{t2:.1f} s",
                 f"{t1 / t2:.2f}x speed-up", "near 2x"))
    rows.append(("  the same after worker start-up (runs/s)", f"{q1:.2f}", f"{q2:.2f}",
                 f"{q2 / q1:.2f}x speed-up", "near 2x"))
    rows.append(("Dask LocalCluster (2) vs local pool (2), wall", f"{t2:.1f} s", f"{td:.1f} s",
                 f"{td / t2:.2f}", "<= 1.3"))
    rows.append(("  the same after worker start-up (s/run)", f"{1 / q2:.2f}", f"{1 / qd:.2f}",
                 f"{q2 / qd:.2f}", "<= 1.3"))

    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'baseline':>9}  {'measured':>9}  {'ratio':>16}  target")
    for name, base, meas, ratio, target in rows:
        print(f"{name:<{width}}  {base:>9}  {meas:>9}  {ratio:>16}  {target}")


if __name__ == "__main__":
    main()
