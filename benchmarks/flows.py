"""Cost of the adapted field V₁ = −J⁺∇ₓC as a ratio to one gradient, and a full linear-time run.

Usage: .venv/bin/python benchmarks/flows.py [--quick] [--threads 1] [--repeats 3]

Correctness first: at every size the Gram and LSMR routes are compared (relative difference
printed), and at n·k = 64 the Gram route is compared with the dense SVD route. Then the table of
median times ÷ the median time of one full-batch gradient (``problem.grad``) measured in the same
process. tanh MLPs [8, h, h, 1] with n samples (k = 1, so n·k = n), float64.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import lossgeom as lg
from lossgeom.curvature import linearization as _local
from lossgeom.flows import integrate, vector_field
from lossgeom.flows._field import apply_flow_matrix

WIDTH_FOR_N = {1_000: 27, 10_000: 95, 100_000: 311}   # N = h² + 12h + 1 for widths [8, h, h, 1]
LSMR_TOL = 1e-8   # looser than the library default 1e-10
LSMR_CAP = 1000   # iterations; beyond, the table says "> cap" (the Gram route is far ahead there)


def make_problem(n: int, h: int, seed: int = 0) -> lg.Problem:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=g, dtype=torch.float64)
    Y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = lg.mlp([8, h, h, 1], "tanh", generator=torch.Generator().manual_seed(seed + 1))
    return lg.Problem(model, X, Y)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def lsmr_products(p: lg.Problem) -> int:
    local = lg.linearize(p, p.theta, route="lsmr", lsmr_tol=LSMR_TOL)
    g = p.loss_fn.output_grad(local.outputs, p.targets).reshape(-1)
    apply_flow_matrix(local, g, 1.0, "field")
    return local.op.n_matvec


def field_table(sizes: list[int], outputs: list[int], repeats: int) -> None:
    print("\nOne adapted-field evaluation V₁ = −J⁺∇ₓC, time ÷ one gradient (median of "
          f"{repeats}; LSMR timed once, lsmr_tol = {LSMR_TOL:g}, capped at {LSMR_CAP} "
          "iterations)")
    header = (f"{'n·k':>5} {'N':>7} {'grad ms':>8} {'gram ×':>8} {'lsmr ×':>8} {'svd ×':>8} "
              f"{'LSMR products':>14} {'|gram−lsmr|/|gram|':>19} {'|gram−svd|/|svd|':>17}")
    print(header)
    print("-" * len(header))
    for m in outputs:
        for N in sizes:
            p = make_problem(m, WIDTH_FOR_N[N])
            th = p.theta
            _local.LSMR_ITERATIONS_PER_DIM = max(1, LSMR_CAP // min(m, p.n_params))
            t_grad = median_time(lambda p=p, th=th: p.grad(th), repeats)
            t_gram = median_time(lambda p=p, th=th: vector_field(p, th, 1.0, solver="gram"),
                                 repeats)
            v_gram = vector_field(p, th, 1.0, solver="gram")
            try:
                t_lsmr = median_time(lambda p=p, th=th: vector_field(
                    p, th, 1.0, solver="lsmr", lsmr_tol=LSMR_TOL), 1) / t_grad
                v_lsmr = vector_field(p, th, 1.0, solver="lsmr", lsmr_tol=LSMR_TOL)
                diff = f"{float((v_gram - v_lsmr).norm() / v_gram.norm()):19.1e}"
                lsmr_cell, products = f"{t_lsmr:8.1f}", lsmr_products(p)
            except ValueError:  # LSMR hit its iteration cap
                lsmr_cell, products, diff = "> cap", f"> {LSMR_CAP}", "—"
            svd_cell, svd_diff = "—", "—"
            if m * N <= 64 * 100_000:  # a dense J of at most 51 MiB
                t_svd = median_time(lambda p=p, th=th: vector_field(p, th, 1.0, solver="svd"),
                                    repeats)
                v_svd = vector_field(p, th, 1.0, solver="svd")
                svd_cell = f"{t_svd / t_grad:8.1f}"
                svd_diff = f"{float((v_gram - v_svd).norm() / v_svd.norm()):.1e}"
            print(f"{m:>5} {p.n_params:>7} {1e3 * t_grad:>8.2f} {t_gram / t_grad:>8.1f} "
                  f"{lsmr_cell:>8} {svd_cell:>8} {products:>14} {diff:>19} {svd_diff:>17}")


def linear_time_run(n: int, N: int) -> None:
    p = make_problem(n, WIDTH_FOR_N[N])
    t = time.perf_counter()
    traj = integrate(p, None, alpha=1.0, t_end=1.0, time="linear", n_eval=21)
    seconds = time.perf_counter() - t
    print(f"\nLinear-time adapted flow, tanh [8, {WIDTH_FOR_N[N]}, {WIDTH_FOR_N[N]}, 1], "
          f"N = {p.n_params}, n·k = {n}, τ ∈ [0, 1], RK45 (rtol 1e-8, atol 1e-10), 21 records")
    print(f"  {seconds:.1f} s (target < 30 s), {traj.n_steps} steps, {traj.n_field_evals} field "
          f"evaluations, max |x(τ) − line| = {traj.max_deviation():.1e}, "
          f"loss {float(traj.loss[0]):.3g} → {float(traj.loss[-1]):.1e}, "
          f"rank J {int(traj.rank_jacobian.min())}–{int(traj.rank_jacobian.max())}, status "
          f"{traj.status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N ∈ {1e3, 1e4} only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64")
    field_table(sizes, [64, 640], args.repeats)
    linear_time_run(64, 10_000)


if __name__ == "__main__":
    main()
