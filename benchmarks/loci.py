"""Critical-loci benchmarks: the growth-rate table up to N ≈ 2e4 and one walking step at N ≈ 1e5.

Targets (issue 6): the growth table with measured counts up to N ≈ 2e4 in under 2 minutes, the
counts beyond N = 5e3 from the Gram / Gauss–Newton / low-rank operator routes (no dense N × N
eigendecomposition); one step of ``lossgeom.manifold.walk`` at N ≈ 1e5, n·k = 64 in under 2 s.
Correctness first: every measured count must equal its §3.6 formula, and the walk must keep
its outputs within drift_tol with rank J constant. Times are also given as ratios to one
full-batch gradient, and the low-rank route is compared with the dense route at the same N.
Run: `python benchmarks/loci.py [--quick]`.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import lossgeom as lg
from lossgeom.datasets import random_data
from lossgeom.loci import growth_table
from lossgeom.manifold import walk

torch.set_num_threads(2)


def gradient_time(problem, theta, reps: int = 5) -> float:
    problem.grad(theta)
    t = time.perf_counter()
    for _ in range(reps):
        problem.grad(theta)
    return (time.perf_counter() - t) / reps


def growth(widths: list[int], dense_max: int) -> bool:
    print(f"\n## growth table: ℓ = 4, n_0 = 3, k = 1, n = 5, widths {widths}")
    print(f"{'w':>5} {'N':>7} {'route (S, C)':>14} {'seconds':>9} {'÷ grad':>8}  formula = measured")
    ok, total = True, 0.0
    for w in widths:
        t = time.perf_counter()
        table = growth_table(4, [w], rtol=1e-9, measure_max_params=10**6,
                             dense_max_params=dense_max)
        dt = time.perf_counter() - t
        total += dt
        row = table.rows[0]
        m = row.measured
        X, Y = random_data(5, 3, 1, 0)
        p = lg.Problem(lg.mlp([3, w, w, w, 1], generator=torch.Generator().manual_seed(0)), X, Y)
        ratio = dt / gradient_time(p, p.theta)
        same = m["nonzero"] == row.nonzero and m["dims"] == row.dims and all(m["decided"].values())
        ok &= same
        print(f"{w:>5} {row.n_params:>7} {m['method']['S_1'] + ', ' + m['method']['C']:>14} "
              f"{dt:>9.2f} {ratio:>8.0f}  {same}")
    print(f"total {total:.1f} s (target < 120 s)")
    return ok and total < 120


def route_comparison(w: int) -> None:
    print(f"\n## dense vs low-rank route at the same width w = {w}")
    times = {}
    for name, dense_max in (("dense", 10**9), ("operator", 0)):
        t = time.perf_counter()
        table = growth_table(4, [w], rtol=1e-9, measure_max_params=10**6,
                             dense_max_params=dense_max)
        times[name] = time.perf_counter() - t
        print(f"{name:>9}: {times[name]:7.2f} s, N = {table.rows[0].n_params}, non-zero "
              f"{table.rows[0].measured['nonzero']}")
    print(f"speed-up of the operator routes: {times['dense'] / times['operator']:.1f}×")


def walking(width: int, n: int) -> bool:
    X, Y = random_data(n, 8, 1, 0)
    problem = lg.Problem(lg.mlp([8, width, width, 1], generator=torch.Generator().manual_seed(0)),
                         X, Y)
    theta = lg.fit_last_layer(problem)
    g = gradient_time(problem, theta)
    print(f"\n## walk: N = {problem.n_params}, n·k = {n}, one gradient {g * 1e3:.1f} ms")
    ok = True
    for route in ("operator", "dense"):
        walk(problem, theta, steps=1, inertia_every=0, route=route)          # warm-up
        t = time.perf_counter()
        w = walk(problem, theta, steps=3, inertia_every=0, route=route)
        per_step = (time.perf_counter() - t) / 3
        good = w.completed and w.max_drift <= w.drift_tol and w.rank_constant
        ok &= good and (route != "operator" or per_step < 2.0)
        print(f"{route:>9}: {per_step:6.2f} s per step ({per_step / g:5.0f}× a gradient), "
              f"max drift {w.max_drift:.1e}, rank J {w.initial_rank} constant {w.rank_constant}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        ok = growth([4, 8, 16], dense_max=200) & walking(40, 16)
        route_comparison(8)
    else:
        ok = growth([4, 8, 16, 32, 64, 100], dense_max=1500) & walking(310, 64)
        route_comparison(24)
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
