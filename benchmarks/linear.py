"""Deep-linear-network benchmarks: classification through operators and Hessian-rank tables.

1. ``classify`` on a depth-4 net with widths ~100 (d_θ ≈ 4e4) at a pure critical point, a
   spurious one and a non-critical point: dμ stays an operator (target < 5 s each); the dense
   Jacobian route it replaces would need d_h·d_0·d_θ·8 bytes.
2. ``hessian_rank_comparison`` for widths [25, 5, 10, 10], n = 50 (§5.3): formula against
   measured ranks for linear, tanh and ReLU nets (target < 10 s).

Each timed result is first checked: the operator gradient against autograd, the purity verdicts
against §4.4-§4.6, the linear-net ranks against 150/175/250.
Run: `python benchmarks/linear.py`.
"""

from __future__ import annotations

import os
import time

import torch

from lossgeom import linear as ll

torch.set_num_threads(2)
F64 = torch.float64


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def autograd_grad_norm(Ws, Q) -> float:
    params = [W.clone().requires_grad_(True) for W in Ws]
    out = params[0]
    for W in params[1:]:
        out = W @ out
    grads = torch.autograd.grad(((out - Q) ** 2).sum(), params)
    return float(torch.sqrt(sum((g * g).sum() for g in grads)))


def classification_benchmark() -> list[tuple]:
    widths = (100, 120, 60, 120, 100)  # non-filling: r = 60 < 100
    fs = ll.functional_space(widths)
    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(100, 100, generator=g, dtype=F64)).Q
    V = torch.linalg.qr(torch.randn(100, 100, generator=g, dtype=F64)).Q
    sigma = torch.linspace(10.0, 1.0, 100, dtype=F64)
    Q = U @ torch.diag(sigma) @ V.T
    loss = ll.frobenius_loss(Q)
    points = {
        "pure (W_I, |I| = r)": (ll.fibre_point(Q, tuple(range(60)), widths, rng=1), "pure"),
        "spurious (|I| = 40 < r)": (ll.fibre_point(Q, tuple(range(40)), widths, rng=2),
                                    "spurious"),
        "random θ": ([torch.randn(b, a, generator=g, dtype=F64) / a**0.5
                      for a, b in zip(widths[:-1], widths[1:], strict=True)], "noncritical"),
    }
    # one-time costs (first autograd/torch.func use) are paid on a tiny net, not timed
    ll.classify([torch.ones(2, 2, dtype=F64)], ll.frobenius_loss(torch.eye(2, dtype=F64)))
    rows = []
    for name, (Ws, expected) in points.items():
        c, seconds = timed(lambda Ws=Ws: ll.classify(Ws, loss))
        assert c.kind == expected, (name, c.kind, c.reason)
        ref = autograd_grad_norm(Ws, Q)
        assert abs(c.grad_norm - ref) <= 1e-8 * max(1.0, ref), (c.grad_norm, ref)
        if expected == "pure":
            assert c.differential_rank == fs.dim  # rank W̄ = r ⇒ dμ maximal (§4.3)
        rows.append((name, c.kind, c.rank_product, c.differential_rank, fs.dim, c.grad_norm,
                     c.grad_tol, seconds))
    return rows, fs


def hessian_rank_benchmark():
    comp, cold = timed(lambda: ll.hessian_rank_comparison([25, 5, 10, 10], 50))
    for r in comp.rows:
        if r.activation == "linear":
            assert r.agrees and r.decided, r
    assert (comp.formula["outer"], comp.formula["functional"], comp.formula["total"]) == (
        150, 175, 250)
    _, warm = timed(lambda: ll.hessian_rank_comparison([25, 5, 10, 10], 50))
    return comp, cold, warm


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    rows, fs = classification_benchmark()
    dense = 8 * fs.ambient_dim * fs.n_params / 2**30
    print(f"## classify: widths {fs.widths}, d_θ = {fs.n_params}, dim M_r = {fs.dim}, "
          f"r = {fs.r}; a dense dμ would need {dense:.1f} GiB\n")
    print("| point | kind | rank W̄ | rank dμ | dim M_r | ‖∇L‖ | tol | seconds (target < 5) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, e, rank, dim, gn, tol, sec in rows:
        print(f"| {name} | {kind} | {e} | {rank} | {dim} | {gn:.2e} | {tol:.2e} | {sec:.3f} |")
    comp, cold, warm = hessian_rank_benchmark()
    print(f"\n## hessian_rank_comparison: widths [25, 5, 10, 10], n = 50, N = {comp.n_params}, "
          f"{cold:.2f} s first call, {warm:.2f} s second call (target < 10)\n")
    print("| activation | part | formula | measured | tol | gap | gap at formula |")
    print("|---|---|---|---|---|---|---|")
    for r in comp.rows:
        gf = "—" if r.gap_at_formula is None else f"{r.gap_at_formula:.2e}"
        print(f"| {r.activation} | {r.part} | {r.formula} | {r.measured} | {r.tol:.2e} | "
              f"{r.gap:.2e} | {gf} |")


if __name__ == "__main__":
    main()
