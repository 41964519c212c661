"""Curvature benchmarks: costs as ratios to one full-batch gradient, timed in the same run.

Workloads follow the published peer comparisons (PyHessian, curvlinops, torch.func): MLPs
64 → w1 → w2 → k with tanh on standardized sklearn digits, MSE (mean over n·k entries), briefly
trained with Adam; float64 up to N ≈ 1e4, float32 at N ≈ 1e5. Every timed quantity is first
checked for correctness against a second route. Run: `python benchmarks/curvature.py [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.func import grad, jvp

import lossgeom as lg
from lossgeom.curvature._hessian import make_hvp, make_hvp_block
from lossgeom.curvature._jacobian import jacobian_blocks
from lossgeom.datasets import load_data
from lossgeom.linalg import extreme_eigenpairs, rank_from_gram

torch.set_num_threads(2)

# PyHessian's default top-10 (tol 1e-3 power iteration), times ÷ grad on this machine class,
# from the peer baseline (section d): workload → (ratio, max relative error).
PYHESSIAN_TOP10 = {1066: (926, 3e-2), 4650: (697, 2e-2), 10002: (730, 1e-2)}


def workload(w1: int, w2: int, n: int, k: int, dtype=torch.float64, seed: int = 0):
    X, Y = load_data("digits", n, seed=seed)
    if k == 1:
        Y = torch.argmax(Y, dim=1, keepdim=True).to(torch.float64)
        Y = (Y - Y.mean()) / Y.std()
    model = lg.mlp([64, w1, w2, k], "tanh", generator=torch.Generator().manual_seed(seed),
                   dtype=dtype)
    problem = lg.Problem(model, X, Y, reduction="mean", dtype=dtype)
    theta = problem.theta.requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        problem.loss_at(theta).backward()
        opt.step()
    return problem, theta.detach()


def timeit(fn, reps: int = 5, min_time: float = 0.2) -> float:
    fn()
    inner, t0 = 1, time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    if once < min_time / 10:
        inner = max(1, int(min_time / 10 / max(once, 1e-7)))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def bench_hvp(problem, theta, unit):
    N = problem.n_params
    v = torch.randn(N, dtype=theta.dtype)
    V = torch.randn(N, 10, dtype=theta.dtype)
    hv_rev = make_hvp(problem, theta, "reverse")
    block = make_hvp_block(problem, theta, "reverse")
    ref = jvp(grad(problem.loss_at), (theta,), (v,))[1]
    scale = float(ref.abs().max())
    rtol = 1e-8 if theta.dtype == torch.float64 else 1e-3
    assert float((hv_rev(v) - ref).abs().max()) <= rtol * scale
    assert float((block(V)[:, 3] - hv_rev(V[:, 3])).abs().max()) <= rtol * scale

    def fresh_double_backward():
        t = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(problem.loss_at(t), t, create_graph=True)
        torch.autograd.grad(g, t, v)

    t_rev = timeit(lambda: hv_rev(v))
    t_fwd = timeit(lambda: jvp(grad(problem.loss_at), (theta,), (v,)))
    t_dbl = timeit(fresh_double_backward)
    t_blk = timeit(lambda: block(V)) / 10
    return t_rev / unit, t_blk / unit, t_fwd / unit, t_dbl / unit


def pyhessian_top10(problem, theta):
    """PyHessian's default top-10 (power iteration, tol 1e-3) on the same model and data, in the
    same process; None when the optional ``bench`` extra (PyHessian) is not installed."""
    try:
        from pyhessian import hessian as PyHessian
    except ImportError:
        return None
    import copy

    model = copy.deepcopy(problem.model)
    with torch.no_grad():
        for p, v in zip(model.parameters(), problem.unflatten(theta).values(), strict=True):
            p.copy_(v)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    h = PyHessian(model, torch.nn.MSELoss(), data=(problem.inputs, problem.targets), cuda=False)
    values, _ = h.eigenvalues(top_n=10)
    return time.perf_counter() - t0, torch.tensor(sorted(values, reverse=True), dtype=torch.float64)


def bench_top10(problem, theta, unit, dense_ok: bool):
    op = lg.hessian_operator(problem, theta)
    t0 = time.perf_counter()
    top = extreme_eigenpairs(op, 10, "LA", tol=1e-12)
    t_top = time.perf_counter() - t0
    err = float("nan")
    t_dense = float("nan")
    if dense_ok:
        t0 = time.perf_counter()
        H = lg.hessian(problem, theta)
        lam = torch.linalg.eigvalsh(H).flip(0)[:10]
        t_dense = time.perf_counter() - t0
        err = float(((top.values - lam).abs() / lam.abs().max()).max())
    peer = pyhessian_top10(problem, theta)
    peer_cell = "—"
    if peer is not None:
        t_peer, vals = peer
        ref = top.values if not dense_ok else lam
        peer_err = float(((vals - ref).abs() / ref.abs().max()).max())
        peer_cell = f"{t_peer / unit:.0f}× (err {peer_err:.0e}), same run"
    return t_top / unit, top.n_matvec, err, t_dense / unit, peer_cell


def bench_rank(problem, theta, unit):
    """rank J by the Gram route vs its floor (J rows + eigvalsh) and vs the dense Hessian."""
    m = problem.n_samples * problem.n_outputs
    all_params = list(range(len(problem.param_numels)))

    def floor():
        J = jacobian_blocks(problem, theta, all_params)
        return torch.linalg.eigvalsh(J @ J.T)

    def route():
        op = lg.jacobian_operator(problem, theta)
        K = lg.ntk_gram(problem, theta)
        return rank_from_gram(K, problem.n_params, refine=op.torch_rmatmat)

    d = route()
    J = jacobian_blocks(problem, theta, all_params)
    svd = lg.numerical_rank(J)
    assert d.rank == svd.rank, (d, svd)
    t_route = timeit(route, reps=3, min_time=0.05)
    t_floor = timeit(floor, reps=3, min_time=0.05)
    return d.rank, m, t_route / unit, t_route / t_floor


def main(quick: bool, skip_hvp: bool = False) -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{'quick' if quick else 'full'} run\n")
    print("## HVP and top-10 eigenvalues (k = 10, n = 256), ratios to one gradient\n")
    row("workload", "dtype", "grad", "HVP (reused graph)", "HVP per vector, block of 10",
        "jvp(grad)", "fresh double backward", "top-10 eigsh", "HVPs", "top-10 rel. err",
        "PyHessian top-10", "dense H + eigvalsh")
    row(*["---"] * 12)
    sizes = [(12, 12), (40, 40), (72, 64)] if not quick else [(12, 12), (40, 40)]
    if skip_hvp:
        sizes, quick_hvp_done = [], True
    else:
        quick_hvp_done = False
    for w1, w2 in sizes:
        problem, theta = workload(w1, w2, 256, 10)
        N = problem.n_params
        unit = timeit(lambda p=problem, t=theta: grad(p.loss_at)(t))
        rev, blk, fwd, dbl = bench_hvp(problem, theta, unit)
        top, nmv, err, dense, peer_cell = bench_top10(problem, theta, unit, N <= 5000)
        ph = PYHESSIAN_TOP10.get(N)
        row(f"N={N}", "float64", f"{unit * 1e3:.2f} ms", f"{rev:.2f}×", f"{blk:.2f}×",
            f"{fwd:.2f}×", f"{dbl:.2f}×", f"{top:.0f}×", nmv, f"{err:.1e}",
            peer_cell if peer_cell != "—" else (f"{ph[0]}× (err {ph[1]:.0e}), baseline file"
                                                 if ph else "—"), f"{dense:.0f}×")
    if not quick and not quick_hvp_done:
        problem, theta = workload(280, 280, 256, 10, dtype=torch.float32)
        unit = timeit(lambda: grad(problem.loss_at)(theta))
        rev, blk, fwd, dbl = bench_hvp(problem, theta, unit)
        row(f"N={problem.n_params}", "float32", f"{unit * 1e3:.2f} ms", f"{rev:.2f}×",
            f"{blk:.2f}×", f"{fwd:.2f}×", f"{dbl:.2f}×", "—", "—", "—", "—", "—")

    print("\n## rank J (k = 1), Gram route vs its floor (J rows + eigvalsh(K))\n")
    row("workload", "n·k", "rank J", "rank J ÷ grad", "route ÷ floor")
    row(*["---"] * 5)
    cases = [(12, 12, 64), (12, 12, 100), (72, 64, 256), (72, 64, 1024)]
    if not quick:
        cases += [(280, 280, 64), (72, 64, 1797)]
    for w1, w2, n in cases:
        problem, theta = workload(w1, w2, n, 1)
        unit = timeit(lambda p=problem, t=theta: grad(p.loss_at)(t))
        rank, m, ratio, vs_floor = bench_rank(problem, theta, unit)
        row(f"N={problem.n_params} n={n}", m, rank, f"{ratio:.1f}×", f"{vs_floor:.2f}×")

    print("\n## analyze, end to end\n")
    row("workload", "dtype", "N", "n·k", "seconds", "jacobian route", "hessian route", "kind")
    row(*["---"] * 8)
    runs = [(12, 12, 64, torch.float64), (72, 64, 64, torch.float64)]
    if not quick:
        runs.append((280, 280, 64, torch.float32))
    for w1, w2, n, dtype in runs:
        problem, theta = workload(w1, w2, n, 10, dtype=dtype)
        t0 = time.perf_counter()
        r = lg.analyze(problem, theta)
        dt = time.perf_counter() - t0
        row(f"{w1}×{w2}", str(dtype).removeprefix("torch."), problem.n_params, 10 * n,
            f"{dt:.1f}", r.jacobian.method, r.hessian.method, r.kind)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads only")
    parser.add_argument("--skip-hvp", action="store_true", help="only rank J and analyze")
    args = parser.parse_args()
    main(args.quick, args.skip_hvp)
    sys.exit(0)
