"""Learning-coefficient benchmark: SGLD estimates against the certified rank route, per gradient.

For each workload, times (medians where cheap) as multiples of one full-batch gradient
``problem.grad`` measured in the same run:

* ``lg.analyze`` (rank J, Gauss–Newton and Hessian spectra, classification) → rank H / 2;
* ``estimate_llc`` at its defaults, backend "lossgeom" (chains batched with vmap) and "devinterp"
  (devinterp 1.3.2, chains one after another), with the peak resident memory each adds;
* the spread (std across chains) of λ̂ against the number of draws, and the length from which
  it stays below 10 % of λ, from prefixes of one long run per backend.

Correctness first: on reduced-rank regression the estimate is checked against the exact λ of
``lossgeom.linear.rlct``. Run: ``python benchmarks/llc.py [--quick]`` (≈ 5 min on an idle
2-core box; --quick ≈ 1 min).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import time
import warnings

import torch

import lossgeom as lg
from lossgeom.datasets import load_data
from lossgeom.linear import rlct
from lossgeom.llc import LLCSamplingWarning, estimate_llc, llc_bounds

torch.set_num_threads(1)  # tiny workloads: a second thread only adds synchronisation
F64 = torch.float64
HAS_DEVINTERP = importlib.util.find_spec("devinterp") is not None


def peak_rss_reset() -> None:
    """Reset the peak resident set size (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_kib(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return math.nan


def measured(fn):
    """(result, seconds, extra peak memory in MiB) of one call."""
    peak_rss_reset()
    base = rss_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, (rss_kib("VmHWM") - base) / 1024


def timeit(fn, reps: int = 7) -> float:
    fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        samples.append((time.perf_counter() - t0) / 10)
    return statistics.median(samples)


def reduced_rank(M, H, N, n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, M, generator=g, dtype=F64)
    p = lg.Problem(lg.mlp([M, H, N], "linear", bias=False, generator=g), X,
                   torch.zeros(n, N, dtype=F64))
    return p, torch.zeros(p.n_params, dtype=F64), rlct((M, H, N), 0)


def digits_mlp(n=256, width=16, seed=0):
    """Tanh 64-16-10 on digits (N = 1 210), MSE mean, trained briefly with Adam: not a certified minimum,
    so it times the routes only."""
    X, Y = load_data("digits", n, seed=seed)
    model = lg.mlp([64, width, 10], "tanh", generator=torch.Generator().manual_seed(seed))
    p = lg.Problem(model, X, Y, reduction="mean")
    theta = p.theta.requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        p.loss_at(theta).backward()
        opt.step()
    return p, theta.detach(), None


PREFIXES = (250, 500, 1000, 2000, 4000, 8000)


def prefix_stats(est, lam_ref: float) -> list[tuple[int, float, float]]:
    """(draws d, λ̂/λ, std of the per-chain λ̂ / λ) over the first d draws of each chain."""
    out = []
    for d in PREFIXES:
        if d > est.n_draws:
            break
        per = est.nbeta * (est.trace[:, :d].mean(axis=1) - est.init_loss)
        out.append((d, float(per.mean()) / lam_ref, float(per.std(ddof=1)) / lam_ref))
    return out


def stays_below(stats, level: float = 0.1) -> int | None:
    """Smallest prefix from which the relative spread stays below ``level``."""
    first = None
    for d, _, spread in stats:
        if spread < level:
            first = d if first is None else first
        else:
            first = None
    return first


def row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def main(quick: bool) -> None:
    warnings.simplefilter("ignore", LLCSamplingWarning)
    backends = ["lossgeom"] + (["devinterp"] if HAS_DEVINTERP else [])
    workloads = {"RRR (5,3,5), n=1000, N=30": reduced_rank(5, 3, 5)}
    if not quick:
        workloads["tanh 64-16-10 digits, n=256, N=1210"] = digits_mlp()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} (2-core box shared with other work)\n")
    row("workload", "route", "seconds", "× grad", "peak +MiB", "λ̂ (± std) / rank H/2 / exact")
    row(*["---"] * 6)
    for name, (problem, theta, exact) in workloads.items():
        unit = timeit(lambda p=problem, t=theta: p.grad(t))
        report, t_an, m_an = measured(lambda p=problem, t=theta: lg.analyze(p, t))
        bounds = llc_bounds(report)
        row(name, "grad", f"{unit:.2e}", "1", "—", "—")
        row(name, f"analyze ({report.hessian.method})", f"{t_an:.2f}", f"{t_an / unit:.0f}",
            f"{abs(m_an):.0f}", f"rank H/2 = {bounds.lower} ({report.kind})")
        for backend in backends:
            est, t, m = measured(lambda p=problem, t=theta, b=backend: estimate_llc(
                p, t, backend=b, rng=0))
            tail = f"{est.mean:.3g} ± {est.std:.2g}" + (
                f" (exact {exact:g}, {est.mean / exact - 1:+.0%})" if exact else "")
            row(name, f"estimate_llc {backend} ({est.n_chains}×{est.n_draws}+{est.n_burnin})",
                f"{t:.2f}", f"{t / unit:.0f}", f"{abs(m):.0f}", tail)
            if exact is not None:
                assert abs(est.mean / exact - 1) < 0.3, (backend, est.mean, exact)

    long = 2000 if quick else 8000
    print(f"\nSpread of λ̂ across 4 chains vs draws per chain (defaults otherwise; prefixes of one "
          f"run of {long} draws): λ̂/λ and std/λ; the last column is the length from which "
          "std < 10 % of λ holds for every longer prefix:\n")
    row("workload", "backend", *[f"{d} draws" for d in PREFIXES if d <= long], "std < 10 % from",
        "seconds")
    row(*["---"] * (4 + sum(d <= long for d in PREFIXES)))
    for widths in [(5, 3, 5), (2, 5, 2)]:
        problem, theta, exact = reduced_rank(*widths)
        for backend in backends:
            est = estimate_llc(problem, theta, backend=backend, n_draws=long, rng=1)
            stats = prefix_stats(est, exact)
            d = stays_below(stats)
            row(f"RRR {widths}, λ = {exact:g}", backend,
                *[f"{m:.2f} / {sd:.2f}" for _, m, sd in stats], d if d else f"> {long}",
                f"{est.seconds:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
