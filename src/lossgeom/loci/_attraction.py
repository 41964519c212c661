"""Is the core locus attracting? Gradient descent from small perturbations of core points.

§3.4(d): a locus Z of critical points is *attracting* if gradient flow from a set of positive
measure converges to Z; whether the core C is attracting is open in the source. On C the Hessian
has no negative eigenvalue (Theorem 3.2), so the saddle-escape results do not apply; the Hessian
vanishes on every direction out of C except b_ℓ, so the gradient there is of second order in the
distance and escape, if any, is slow.

The experiment: for each perturbation size s and run r, draw a core point θ_C ∈ C_{i,j} (random
free coordinates) and a direction ξ (Gaussian, ‖ξ‖ = 1), start at θ₀ = θ_C + s ξ and run gradient
descent θ ← θ − η_r ∇L(θ) for ``steps`` steps, all runs of one size batched with ``vmap``. A run's
step η_r halves whenever a step would raise L (or make it non-finite) and the step is then
skipped, so the descent is monotone and no run diverges. A run *escaped* when its loss fell below
L(θ_C)·(1 − escape_rtol) — it left the plateau of the constant fit — otherwise it *stayed*; the
final distance to C_{i,j} (the norm of the pinned coordinates' deviation) is reported next to the
initial one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import grad, vmap

from .._checks import check_rtol, generator
from ..curvature._hessian import hessian_operator
from ..problem import Problem
from ..results import Result
from ._construct import _hidden_indices, core_point, locus_constraints
from ._locate import _output_hessian_sum
from ._network import network_layout, optimal_constant

__all__ = ["AttractionResult", "attraction"]


@dataclass(frozen=True)
class AttractionResult(Result):
    """Outcome of gradient descent from perturbed core points, per perturbation size.

    Attributes:
        layers: The core's hidden layers [i, j].
        scales: Perturbation sizes s.
        runs: Runs per size.
        steps: Gradient steps per run.
        learning_rate: Initial step η (each run halves its own on a rejected step).
        escape_rtol: A run escaped when L_T < L(θ_C)(1 − escape_rtol).
        stayed_fraction: Per size, the fraction of runs that stayed near C.
        escaped_fraction: Per size, the fraction that escaped.
        initial_distance: Per size, the median distance to C_{i,j} at the start.
        final_distance: Per size, the median distance to C_{i,j} after ``steps``.
        loss_drop: Per size, the median relative loss drop (L(θ_C) − L_T)/L(θ_C).
        core_loss: Per size, the median loss at the core points.
        per_run: Per size, a list of {initial_distance, final_distance, core_loss, start_loss,
            final_loss, step_size (the run's last η), outcome} for every run.
    """

    layers: list[int]
    scales: list[float]
    runs: int
    steps: int
    learning_rate: float
    escape_rtol: float
    stayed_fraction: list[float]
    escaped_fraction: list[float]
    initial_distance: list[float]
    final_distance: list[float]
    loss_drop: list[float]
    core_loss: list[float]
    per_run: list[list[dict]]


def _median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _hessian_norm(problem: Problem, theta: torch.Tensor, gen, iterations: int = 30) -> float:
    """‖∇²L(θ)‖₂ by power iteration on Hessian-vector products (0 for a vanishing Hessian)."""
    op = hessian_operator(problem, theta)
    v = torch.randn(problem.n_params, generator=gen, dtype=torch.float64).to(theta)
    norm = 0.0
    for _ in range(iterations):
        hv = op.torch_matvec(v / torch.linalg.norm(v))
        norm = float(torch.linalg.norm(hv))
        if norm == 0.0:
            break
        v = hv
    return norm


def attraction(
    problem: Problem,
    i: int,
    j: int,
    *,
    scales: Sequence[float] = (1e-3, 1e-2, 1e-1),
    runs: int = 8,
    steps: int = 2000,
    learning_rate: float | None = None,
    escape_rtol: float = 1e-3,
    rng: torch.Generator | int | None = 0,
    progress: Callable[[int, int], None] | None = None,
) -> AttractionResult:
    """Fraction of gradient-descent runs from perturbed core points that stay near C_{i,j}.

    See the module docstring. The default initial step is η = 1/max(‖∇²L(θ_C)‖₂, λ_max(Σ_x ∇²ℓ_x))
    at the first core point (‖·‖₂ by power iteration on Hessian-vector products); in convention
    (A) ∇²L vanishes on C and Σ_x ∇²ℓ_x sets the curvature scale of the loss in the outputs.

    Args:
        problem: An MLP problem with at least two hidden layers, biases in all or no layers.
        i: A hidden layer.
        j: Another hidden layer, j ≠ i.
        scales: Perturbation norms s > 0.
        runs: Runs per size.
        steps: Gradient-descent steps per run.
        learning_rate: Initial step η > 0; default 1/‖∇²L(θ_C)‖ (see above).
        escape_rtol: Relative loss drop that counts as an escape, in (0, 1).
        rng: Seed or generator of core points and perturbations.
        progress: Called as progress(done, len(scales)) after each size.

    Returns:
        An AttractionResult.

    Raises:
        ValueError: For invalid layers, sizes, counts, step size or escape_rtol.
        TypeError: For a model that is not an nn.Sequential MLP, or an invalid rng.

    Example:
        >>> import torch, lossgeom as lg
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = (torch.randn(5, s, generator=g, dtype=torch.float64) for s in (3, 1))
        >>> p = lg.Problem(lg.mlp([3, 4, 5, 4, 1]), X, Y)
        >>> r = attraction(p, 1, 2, scales=[1e-3], runs=2, steps=100)
        >>> r.stayed_fraction                  # tiny perturbations do not leave the plateau
        [1.0]
    """
    where = f"attraction(problem, {i!r}, {j!r})"
    check_rtol(where, escape_rtol, "escape_rtol")
    layout = network_layout(problem, where)
    layers = _hidden_indices(where, layout.n_hidden, [i, j], minimum=2, what="a core C_{i,j}")
    scales = [float(s) for s in scales]
    if not scales or any(not (math.isfinite(s) and s > 0) for s in scales):
        raise ValueError(f"{where}: scales must be finite numbers > 0, got {scales!r}.")
    for name, value in (("runs", runs), ("steps", steps)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {name} must be an int >= 1, got {value!r}.")
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"{where}: learning_rate must be a finite number > 0, got "
                         f"{learning_rate!r}.")
    gen = generator(where, rng)
    c_star = optimal_constant(problem, where) if layout.convention == "B" else None
    mask, values = locus_constraints(layout, layers, c_star)
    mask, values = mask.to(problem.device), values.to(problem.device, problem.dtype)
    N = problem.n_params

    cores = [[core_point(problem, *layers, rng=gen) for _ in range(runs)] for _ in scales]
    if learning_rate is None:
        first = cores[0][0]
        out_top = float(torch.linalg.eigvalsh(
            _output_hessian_sum(problem, problem.output_fn(first).detach()))[-1])
        learning_rate = 1.0 / max(_hessian_norm(problem, first, gen), out_top)
    gradient = vmap(grad(problem.loss_at))
    loss = vmap(problem.loss_at)

    out = {key: [] for key in ("stayed", "escaped", "d0", "dT", "drop", "core", "per_run")}
    for done, (s, core_list) in enumerate(zip(scales, cores, strict=True), start=1):
        core = torch.stack(core_list)
        xi = torch.randn(runs, N, generator=gen, dtype=torch.float64).to(core)
        theta = core + s * xi / torch.linalg.norm(xi, dim=1, keepdim=True)
        d0 = torch.linalg.norm((theta - values)[:, mask], dim=1)
        eta = torch.full((runs, 1), float(learning_rate), dtype=theta.dtype, device=theta.device)
        with torch.no_grad():
            current = start = loss(theta)
            for _ in range(steps):
                cand = theta - eta * gradient(theta)
                value = loss(cand)
                ok = torch.isfinite(value) & (value <= current)
                theta = torch.where(ok[:, None], cand, theta)
                current = torch.where(ok, value, current)
                eta = torch.where(ok[:, None], eta, eta / 2)
            L_core, L_T = loss(core), current
        dT = torch.linalg.norm((theta - values)[:, mask], dim=1)
        rows = []
        for r in range(runs):
            lc, lt = float(L_core[r]), float(L_T[r])
            outcome = "escaped" if lt < lc * (1 - escape_rtol) else "stayed"
            rows.append({"initial_distance": float(d0[r]), "final_distance": float(dT[r]),
                         "core_loss": lc, "start_loss": float(start[r]), "final_loss": lt,
                         "step_size": float(eta[r, 0]), "outcome": outcome})
        for key in ("stayed", "escaped"):
            out[key].append(sum(row["outcome"] == key for row in rows) / runs)
        out["d0"].append(_median([row["initial_distance"] for row in rows]))
        out["dT"].append(_median([row["final_distance"] for row in rows]))
        out["drop"].append(_median([(row["core_loss"] - row["final_loss"])
                                    / max(row["core_loss"], math.ulp(0.0)) for row in rows]))
        out["core"].append(_median([row["core_loss"] for row in rows]))
        out["per_run"].append(rows)
        if progress is not None:
            progress(done, len(scales))
    return AttractionResult(layers, scales, runs, steps, float(learning_rate), escape_rtol,
                            out["stayed"], out["escaped"], out["d0"], out["dT"],
                            out["drop"], out["core"], out["per_run"])
