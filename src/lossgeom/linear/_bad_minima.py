"""A bad local minimum of a convex loss on a non-filling architecture, and GD tallies (§4.7).

With d = (2, 1, 2) the functional space is the rank ≤ 1 matrices (non-filling), and the weighted
Frobenius loss Σ Λ_ab (W_ab − Q_ab)² (smooth, strictly convex) has a bad local minimum on it.
``bad_minima_experiment`` runs gradient descent from random starts and tallies the endpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from .._checks import check_option, check_rtol, generator
from ..analysis import analyze
from ..results import Result
from ._classify import CONVENTIONS, LinearCritical, classify
from ._functional import _product, functional_space
from ._objectives import FunctionalLoss, functional_problem, weighted_frobenius_loss
from ._weights import check_widths

__all__ = ["BadMinimaResult", "CriticalCluster", "WeightedFrobeniusExample",
           "bad_minima_experiment", "weighted_frobenius_example"]


@dataclass(frozen=True)
class WeightedFrobeniusExample:
    """§4.7: widths (2, 1, 2), ℓ(W) = Σ Λ_ab (W_ab − Q_ab)², Q = I₂, Λ = [[1, 2], [2, ½]].

    Attributes:
        widths: (2, 1, 2) (non-filling, M_1 = rank ≤ 1 matrices).
        Q: I₂.
        Lambda: [[1, 2], [2, 0.5]].
        loss: The FunctionalLoss ℓ.
        global_minimum: θ with W̄ = e₁e₁ᵀ: W_1 = (1, 0), W_2 = (1, 0)ᵀ.
        bad_minimum: θ with W̄ = e₂e₂ᵀ: W_1 = (0, 1), W_2 = (0, 1)ᵀ.
        saddle: θ = 0.
    """

    widths: tuple[int, ...]
    Q: Tensor
    Lambda: Tensor
    loss: FunctionalLoss
    global_minimum: tuple[Tensor, Tensor]
    bad_minimum: tuple[Tensor, Tensor]
    saddle: tuple[Tensor, Tensor]

    def points(self) -> dict[str, tuple[Tensor, Tensor]]:
        """The three named points.

        Returns:
            {"global_minimum": θ, "bad_minimum": θ, "saddle": θ}, each θ = (W_1, W_2).
        """
        return {"global_minimum": self.global_minimum, "bad_minimum": self.bad_minimum,
                "saddle": self.saddle}


def weighted_frobenius_example() -> WeightedFrobeniusExample:
    """The bad-local-minimum construction of §4.7, ready to classify or analyze.

    Near e₂e₂ᵀ the local model of L is 1 + λ(s² + t²) − 2st with off-diagonal weight λ = 2 > 1,
    positive definite, so e₂e₂ᵀ is a strict local minimum of ℓ on M_1 (up to the rescaling
    (tW_1, W_2/t)), worse than e₁e₁ᵀ. It is pure (rank W̄ = r = 1), as theorem (T2) requires.

    Returns:
        A WeightedFrobeniusExample.

    Example:
        >>> from lossgeom.linear import product, weighted_frobenius_example
        >>> ex = weighted_frobenius_example()
        >>> [ex.loss.value(product(w)) for w in ex.points().values()]  # §4.7
        [0.5, 1.0, 1.5]
    """
    f64 = torch.float64
    Q = torch.eye(2, dtype=f64)
    Lam = torch.tensor([[1.0, 2.0], [2.0, 0.5]], dtype=f64)
    e1, e2 = torch.tensor([1.0, 0.0], dtype=f64), torch.tensor([0.0, 1.0], dtype=f64)
    return WeightedFrobeniusExample(
        (2, 1, 2), Q, Lam, weighted_frobenius_loss(Q, Lam),
        (e1[None, :].clone(), e1[:, None].clone()), (e2[None, :].clone(), e2[:, None].clone()),
        (torch.zeros(1, 2, dtype=f64), torch.zeros(2, 1, dtype=f64)))


@dataclass(frozen=True)
class CriticalCluster(Result):
    """Runs that ended at the same critical value.

    Attributes:
        loss: Mean final loss of the runs in the cluster.
        count: Number of runs.
        kind: "minimum" (no negative Hessian eigenvalue), "saddle", or "undecided".
        inertia: [positive, negative, zero] of ∇²L at the representative run.
        inertia_tol: Tolerance of that inertia (rtol·max|λ|).
        inertia_gap: Its gap.
        pure: Purity of every run in the cluster (None if some run was not critical).
        rank_product: rank W̄ at the representative.
        representative: Index of the run with the smallest ‖∇L‖.
        label: "lowest minimum", "bad minimum" (a minimum above the lowest one), "saddle" or
            "undecided".
    """

    loss: float
    count: int
    kind: str
    inertia: tuple[int, int, int]
    inertia_tol: float
    inertia_gap: float
    pure: bool | None
    rank_product: int
    representative: int
    label: str = ""


@dataclass(frozen=True)
class BadMinimaResult:
    """Outcome of gradient descent from random initialisations (§4.7).

    Attributes:
        widths: (d_0, …, d_h).
        filling: Whether the architecture is filling.
        loss_name: Name of the functional loss.
        runs, steps, lr, seed, init_scale: The experiment settings.
        final_loss: L at the end of each run, shape (runs,).
        grad_norm: ‖∇L‖ at the end of each run.
        converged: ‖∇L‖ ≤ grad_tol per run (see ``classify``).
        cluster: Cluster index of each run (−1 if not converged).
        clusters: CriticalCluster per distinct critical value, sorted by loss.
        best_loss: Lowest loss among the minima found (None if none).
        n_bad_minima: Runs ending at a minimum whose loss exceeds best_loss.
        n_not_converged: Runs not critical after ``steps``.
        seconds: Wall time.
    """

    widths: tuple[int, ...]
    filling: bool
    loss_name: str
    runs: int
    steps: int
    lr: float
    seed: int
    init_scale: float
    final_loss: tuple[float, ...]
    grad_norm: tuple[float, ...]
    converged: tuple[bool, ...]
    cluster: tuple[int, ...]
    clusters: tuple[CriticalCluster, ...]
    best_loss: float | None
    n_bad_minima: int
    n_not_converged: int
    seconds: float

    @property
    def fraction_bad(self) -> float:
        """Fraction of all runs that ended at a bad (non-lowest) minimum."""
        return self.n_bad_minima / self.runs

    def to_dict(self) -> dict:
        """Plain-dict form of the fields.

        Returns:
            A dict of plain Python values (floats may be inf; see ``report.jsonable``).
        """
        return {"widths": list(self.widths), "filling": self.filling,
                "loss_name": self.loss_name, "runs": self.runs, "steps": self.steps,
                "lr": self.lr, "seed": self.seed, "init_scale": self.init_scale,
                "final_loss": list(self.final_loss), "grad_norm": list(self.grad_norm),
                "converged": list(self.converged), "cluster": list(self.cluster),
                "clusters": [c.to_dict() for c in self.clusters], "best_loss": self.best_loss,
                "n_bad_minima": self.n_bad_minima, "fraction_bad": self.fraction_bad,
                "n_not_converged": self.n_not_converged, "seconds": self.seconds}


def _positive_int(where: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}.")
    return int(v)


def bad_minima_experiment(runs: int = 200, *, steps: int = 4000, lr: float = 0.02,
                          seed: int = 0, init_scale: float = 1.0, widths=None,
                          loss: FunctionalLoss | None = None, convention: str = "tangent_cone",
                          value_rtol: float = 1e-6, rtol: float | None = None
                          ) -> BadMinimaResult:
    """Plain gradient descent on L = ℓ ∘ μ from N(0, init_scale²) starts; tally the endpoints.

    All runs advance together (one vectorised gradient per step). Each run is then checked
    with ``classify`` (critical? pure?); runs whose losses agree within value_rtol·max(1, |L|)
    form a cluster, and ``lossgeom.analyze`` at the cluster's best-converged run (the inertia of
    ∇²L with its tolerance and gap, via ``functional_problem``) says minimum or saddle. Defaults
    reproduce §4.7: widths (2, 1, 2) and the weighted Frobenius loss, where a sizable
    fraction of runs ends at the bad minimum L = 1.0 instead of the global one L = 0.5.

    Args:
        runs: Number of random initialisations.
        steps: Gradient steps per run.
        lr: Step size.
        seed: Seed of the initialisations.
        init_scale: Standard deviation of the initial entries.
        widths: Architecture (d_0, …, d_h); default that of the §4.7 example.
        loss: FunctionalLoss ℓ with a torch-differentiable ``loss``; default the §4.7 loss.
        convention: Singular-point convention passed to ``classify``.
        value_rtol: Relative tolerance for grouping final losses.
        rtol: Relative tolerance of the rank and inertia decisions.

    Returns:
        A BadMinimaResult.

    Raises:
        TypeError: If loss is not a FunctionalLoss.
        ValueError: For non-positive runs, steps, lr or init_scale, invalid widths, a loss whose
            shape does not match the widths, or an unknown convention.

    Example:
        >>> from lossgeom.linear import bad_minima_experiment
        >>> res = bad_minima_experiment(runs=8, steps=1500, seed=0)
        >>> sorted({round(c.loss, 6) for c in res.clusters if c.kind == "minimum"})
        [0.5, 1.0]
    """
    where = "bad_minima_experiment(runs)"
    runs = _positive_int(where, "runs", runs)
    steps = _positive_int(where, "steps", steps)
    check_option(where, "convention", convention, CONVENTIONS)
    check_rtol(where, rtol)
    for name, v in (("lr", lr), ("init_scale", init_scale), ("value_rtol", value_rtol)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{where}: {name} must be a positive finite number, got {v!r}.")
    if loss is None or widths is None:
        ex = weighted_frobenius_example()
        loss = ex.loss if loss is None else loss
        widths = ex.widths if widths is None else widths
    if not isinstance(loss, FunctionalLoss):
        raise TypeError(f"{where}: loss must be a FunctionalLoss (data_loss, frobenius_loss, "
                        f"weighted_frobenius_loss, functional_loss), got {type(loss).__name__}.")
    d = check_widths(where, widths)
    if loss.shape is not None and tuple(loss.shape) != (d[-1], d[0]):
        raise ValueError(f"{where}: loss expects W of shape {tuple(loss.shape)} but widths {d} "
                         f"give (d_h, d_0) = {(d[-1], d[0])}.")
    fs = functional_space(d)
    start = time.perf_counter()
    sizes = [a * b for a, b in zip(d[1:], d[:-1], strict=True)]

    def total(theta: Tensor) -> Tensor:
        Ws, off = [], 0
        for (a, b), size in zip(zip(d[1:], d[:-1], strict=True), sizes, strict=True):
            Ws.append(theta[off:off + size].reshape(a, b))
            off += size
        return loss.loss(_product(Ws))

    g = generator(where, seed, none_seed=0)
    theta = init_scale * torch.randn(runs, fs.n_params, generator=g, dtype=torch.float64)
    batch_loss = torch.func.vmap(total)
    for _ in range(steps):
        # runs are independent, so the gradient of the summed loss is the per-run gradient
        x = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(batch_loss(x).sum(), x)
        theta = theta - lr * g
    theta = theta.detach()
    finite = torch.isfinite(theta).all(dim=1)
    final = torch.func.vmap(total)(torch.where(finite[:, None], theta, 0.0))
    final = torch.where(finite, final, torch.tensor(math.inf, dtype=torch.float64))

    def weights_of(th: Tensor) -> list[Tensor]:
        out, off = [], 0
        for (a, b), size in zip(zip(d[1:], d[:-1], strict=True), sizes, strict=True):
            out.append(th[off:off + size].reshape(a, b))
            off += size
        return out

    results: list[LinearCritical | None] = []
    for i in range(runs):
        results.append(classify(weights_of(theta[i]), loss, convention=convention, rtol=rtol,
                                cross_check=False) if bool(finite[i]) else None)
    converged = tuple(bool(c is not None and c.is_critical) for c in results)
    grad_norm = tuple(math.inf if c is None else c.grad_norm for c in results)

    order = sorted((i for i in range(runs) if converged[i]), key=lambda i: float(final[i]))
    groups: list[list[int]] = []
    for i in order:
        v = float(final[i])
        if groups and abs(v - float(final[groups[-1][0]])) <= value_rtol * max(1.0, abs(v)):
            groups[-1].append(i)
        else:
            groups.append([i])
    cluster = [-1] * runs
    clusters: list[CriticalCluster] = []
    problem = functional_problem(loss, d) if groups else None
    for c_idx, members in enumerate(groups):
        rep = min(members, key=lambda i: grad_norm[i])
        h = analyze(problem, theta[rep].clone(), rtol=rtol).to_dict()["hessian"]
        inr = tuple(int(x) for x in h["inertia"])
        kind = ("undecided" if not h.get("decided", True) else
                "minimum" if inr[1] == 0 else "saddle")
        pures = {results[i].pure for i in members}
        for i in members:
            cluster[i] = c_idx
        clusters.append(CriticalCluster(
            float(final[members].mean()), len(members), kind, inr, float(h["tol"]),
            float(h["gap"]), pures.pop() if len(pures) == 1 else None,
            results[rep].rank_product, rep))
    minima = [c for c in clusters if c.kind == "minimum"]
    best = min((c.loss for c in minima), default=None)

    def label(c: CriticalCluster) -> str:
        if c.kind != "minimum":
            return c.kind
        bad = best is not None and c.loss > best + value_rtol * max(1.0, abs(best))
        return "bad minimum" if bad else "lowest minimum"

    clusters = [replace(c, label=label(c)) for c in clusters]
    n_bad = sum(c.count for c in clusters if c.label == "bad minimum")
    return BadMinimaResult(
        d, fs.filling, loss.name, runs, steps, float(lr), int(seed), float(init_scale),
        tuple(final.tolist()), grad_norm, converged, tuple(cluster), tuple(clusters), best,
        n_bad, runs - sum(converged), time.perf_counter() - start)
