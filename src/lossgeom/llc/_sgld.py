"""SGLD estimates of the local learning coefficient (module NOTEs in ``lossgeom.llc``)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._checks import check_option, generator
from ..losses import Loss
from ..problem import Problem
from ..results import Result, internal
from ._devinterp import import_devinterp, sample_devinterp

__all__ = [
    "BACKENDS", "DEFAULT_LOCALIZATION", "DEFAULT_N_BURNIN", "DEFAULT_N_CHAINS", "DEFAULT_N_DRAWS",
    "DEFAULT_STEP", "EXPLODE_FACTOR", "MAX_DRIFT", "MAX_RHAT", "LLCEstimate",
    "LLCSamplingWarning", "default_nbeta", "empirical_loss", "estimate_llc", "split_rhat",
]

BACKENDS = ("lossgeom", "devinterp")

DEFAULT_N_CHAINS = 4
DEFAULT_N_DRAWS = 2000
DEFAULT_N_BURNIN = 500
DEFAULT_STEP = 3e-4
DEFAULT_LOCALIZATION = 1.0

MAX_RHAT = 1.1
"""A run counts as mixed only if the split-R̂ of the loss traces is at most this (Gelman et al.)."""

MAX_DRIFT = 0.4
"""... and if the estimate from the last third of the draws (all chains kept) differs from the one
from the first third by at most this fraction of λ̂: more means the traces still trend."""

EXPLODE_FACTOR = 10.0
"""A chain whose estimate exceeds EXPLODE_FACTOR · N/2 (ten times the largest value λ takes at a
minimum) or whose loss is not finite has diverged; it is left out of the mean and std."""


class LLCSamplingWarning(UserWarning):
    """An SGLD run diverged or did not mix: its estimate of λ is not to be trusted as it stands."""


# -- SGLD estimate --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LLCEstimate(Result):
    """An SGLD estimate λ̂ = nβ (E[L_n(w)] − L_n(θ*)) of the local learning coefficient.

    Attributes:
        mean: λ̂ averaged over the chains that did not diverge (nan if none is left).
        std: Standard deviation of the per-chain estimates over those chains (ddof 1; nan with
            fewer than two).
        n_chains: Number of chains run.
        n_draws: Draws per chain (after burn-in), one per SGLD step.
        n_burnin: SGLD steps per chain discarded before the first draw.
        step: SGLD step size ε.
        nbeta: Inverse temperature nβ.
        localization: Strength γ of the pull towards θ*.
        backend: "lossgeom" (chains batched with vmap) or "devinterp".
        batch_size: Minibatch size, or None for full-batch gradients.
        init_loss: L_n(θ*), the reference of the estimate.
        loss_scale: L_n = loss_scale · (the Problem's loss) for the built-in losses (NOTE
            [empirical loss L_n] in the module docstring).
        per_chain: λ̂ of each chain, shape (n_chains,).
        trace: L_n at every draw, shape (n_chains, n_draws) (the minibatch loss when
            ``batch_size`` is set, as devinterp records it).
        r_hat: Split-R̂ of the loss traces over the chains kept (≈ 1 when the chains agree).
        drift: (λ̂ from the last third of the draws − λ̂ from the first third) / |mean|, over the
            chains kept (near 0 once the chains have reached equilibrium).
        diverged: Indices of chains whose loss became non-finite or exploded.
        mixed: True when no chain diverged, r_hat ≤ max_rhat and |drift| ≤ max_drift.
        warnings: Human-readable diagnostics (also issued as LLCSamplingWarning).
        seconds: Wall-clock time of the sampling.
    """

    mean: float
    std: float
    n_chains: int
    n_draws: int
    n_burnin: int
    step: float
    nbeta: float
    localization: float
    backend: str
    batch_size: int | None
    init_loss: float
    loss_scale: float
    per_chain: np.ndarray
    trace: np.ndarray = internal()
    r_hat: float
    drift: float
    diverged: list[int]
    mixed: bool
    warnings: list[str]
    seconds: float

    @property
    def interval(self) -> tuple[float, float]:
        """(mean − std, mean + std)."""
        return self.mean - self.std, self.mean + self.std


def default_nbeta(n: int) -> float:
    """The default inverse temperature nβ = n / log n (Watanabe's WBIC temperature, β = 1/log n).

    Args:
        n: Number of training samples, n ≥ 2.

    Returns:
        n / log n.

    Raises:
        ValueError: For n < 2 (log n ≤ 0).

    Example:
        >>> round(default_nbeta(100), 4)      # 100 / log 100
        21.7147
    """
    if n < 2:
        raise ValueError(f"default_nbeta(n={n}): n / log n needs n >= 2 samples. Pass nbeta "
                         "explicitly.")
    return n / math.log(n)


def empirical_loss(problem: Problem) -> tuple[Loss, float]:
    """The loss L_n that SGLD samples and its scale against the Problem's loss.

    Args:
        problem: The model, data and loss.

    Returns:
        (loss, scale): ``loss(x, y)`` is L_n in PyTorch's "mean" convention (see NOTE [empirical
        loss L_n]); for the built-in losses L_n(θ) = scale · problem.loss(θ).

    Example:
        >>> import torch, lossgeom as lg
        >>> X, Y = torch.ones(4, 2, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)
        >>> p = lg.Problem(lg.mlp([2, 3], bias=False), X, Y)    # mse, reduction "sum"
        >>> empirical_loss(p)[1] == 1 / (4 * 3)
        True
    """
    lf = problem.loss_fn
    if not lf.is_builtin:
        return lf, 1.0
    mean = Loss(lf.name, "mean")
    n, k = problem.n_samples, problem.n_outputs
    return mean, mean.scale(n, k) / lf.scale(n, k)


def split_rhat(trace: np.ndarray) -> float:
    """Split-R̂ of traces of shape (chains, draws) (Gelman et al., Bayesian Data Analysis, 11.4).

    Each chain is cut into halves; with m half-chains of length n, W the mean within-half
    variance and B/n the variance of the half means, R̂ = √(((n − 1)/n · W + B/n) / W).
    A chain still trending has halves with different means, so R̂ > 1 even for one chain.

    Args:
        trace: Array (chains, draws), draws ≥ 4.

    Returns:
        R̂ (nan for fewer than 4 draws or a constant trace).

    Example:
        >>> t = np.array([[0., 1, 0, 1, 2, 3, 2, 3]])    # halves 0/1 and 2/3: W = 1/3, B/n = 2
        >>> round(split_rhat(t), 6) == round(math.sqrt((3 / 4 * 1 / 3 + 2) / (1 / 3)), 6)
        True
    """
    trace = np.asarray(trace, dtype=float)
    c, d = trace.shape
    half = d // 2
    if half < 2 or c == 0:
        return math.nan
    halves = np.concatenate([trace[:, :half], trace[:, d - half:]], axis=0)
    means = halves.mean(axis=1)
    W = float(halves.var(axis=1, ddof=1).mean())
    B_over_n = float(means.var(ddof=1))
    if not W > 0:
        return math.nan
    return math.sqrt(((half - 1) / half * W + B_over_n) / W)


def _check_positive_int(where: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{where}: {name} must be an integer, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum} (got {value}). Pass a larger "
                         f"{name}.")
    return int(value)


def _check_positive_float(where: str, name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__}.")
    value = float(value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{where}: {name} must be a finite number {'>= 0' if allow_zero else '> 0'}"
                         f" (got {value!r}). Pass a {'non-negative' if allow_zero else 'positive'}"
                         f" {name}.")
    return value


def _device_generator(where: str, rng, device: torch.device) -> torch.Generator | None:
    """A generator on ``device`` derived from ``rng`` (None: torch's global RNG)."""
    gen = generator(where, rng)
    if gen is None or gen.device == device:
        return gen
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return torch.Generator(device=device).manual_seed(seed)


def estimate_llc(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    n_chains: int = DEFAULT_N_CHAINS,
    n_draws: int = DEFAULT_N_DRAWS,
    step: float = DEFAULT_STEP,
    nbeta: float | None = None,
    localization: float = DEFAULT_LOCALIZATION,
    n_burnin: int = DEFAULT_N_BURNIN,
    batch_size: int | None = None,
    backend: str = "lossgeom",
    rng: torch.Generator | int | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_rhat: float = MAX_RHAT,
    max_drift: float = MAX_DRIFT,
) -> LLCEstimate:
    """SGLD estimate of the local learning coefficient λ at θ* (§9), as devinterp computes it.

    Each chain starts at θ* and runs
    w ← w − (ε/2)(nβ ∇L_n(w) + γ (w − θ*)) + N(0, ε I),
    recording L_n(w) before every step after the burn-in; λ̂ = nβ (mean of the draws − L_n(θ*))
    per chain, averaged over chains. L_n is the per-sample mean loss (module NOTE [empirical loss
    L_n]); its gradient is full-batch unless ``batch_size`` is given. The "lossgeom" backend runs
    all chains at once with ``torch.func.vmap`` over an (n_chains, N) stack; "devinterp" runs
    devinterp 1.3.2's ``estimate_learning_coeff_with_summary`` (its SGLD, chains one after
    another) on the same L_n, nβ, step and localisation.

    The defaults (4 chains × 2000 draws after 500 burn-in steps, ε = 3e-4, γ = 1, nβ = n/log n)
    were tuned on reduced-rank regression x ↦ BAx with true map 0 localised at θ = 0, n = 1000
    Gaussian inputs, (M, H, N) = (5, 3, 5), (4, 2, 4), (2, 2, 6), (6, 2, 2), (2, 5, 2) (the four
    cases of §9.2, λ from 2 to 6.5, N from 16 to 30): over seeds, both backends land within about
    15 % of the exact λ, and every run of the most variable case (2, 2, 6) within 25 %; with three
    chains one devinterp run in 18 fell 33 % off. The finite temperature alone costs up to 11 %
    there (long chains at ε = 1e-4 give 0.89 λ for (5, 3, 5)). A smaller step under-mixes (ε = 1e-4
    without burn-in falls 25–50 % short, and is flagged); ε = 1e-3 biases λ̂ up by up to 20 %;
    much larger steps diverge (flagged). Check ``mixed`` and ``warnings``, and rerun with more
    draws, burn-in or another step when they object.

    Args:
        problem: The model, data and loss.
        theta: The point θ* (N,), normally a certified minimum; default ``problem.theta``.
        n_chains: Number of chains, ≥ 1.
        n_draws: Draws per chain, ≥ 1.
        step: SGLD step size ε > 0.
        nbeta: Inverse temperature nβ > 0; default n / log n (n training samples).
        localization: γ ≥ 0, the strength of the pull back to θ*.
        n_burnin: Steps per chain discarded before the first draw, ≥ 0.
        batch_size: Minibatch size (1 ≤ batch_size ≤ n) for the gradient, or None (full batch).
            Needs a per-sample model (``problem.per_sample``).
        backend: "lossgeom" or "devinterp" (``pip install "lossgeom[llc]"``).
        rng: torch.Generator, int seed, or None (torch's global RNG): the noise and minibatches.
        progress: Called as progress(done, total) while sampling (lossgeom: steps of all chains
            together; devinterp: draws over all chains).
        max_rhat: Largest split-R̂ of the loss traces still counted as mixed.
        max_drift: Largest |drift| (last-third vs first-third estimate, relative) still counted
            as mixed.

    Returns:
        An LLCEstimate; it warns (LLCSamplingWarning) when a chain diverged or the run did not mix.

    Raises:
        ValueError: For arguments out of range, an unknown backend, or minibatches on a model
            that is not per-sample.
        TypeError: For arguments of the wrong type.
        ImportError: For backend="devinterp" without devinterp installed.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.randn(200, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> p = lg.Problem(torch.nn.Linear(10, 1, bias=False).double(), X, torch.zeros(200, 1))
        >>> est = estimate_llc(p, torch.zeros(10, dtype=torch.float64), n_draws=500, n_burnin=100,
        ...                    step=1e-3, rng=0)
        >>> abs(est.mean / 5 - 1) < 0.1      # a regular minimum of N = 10 parameters: λ = N/2
        True
    """
    where = "estimate_llc(problem, theta)"
    if not isinstance(problem, Problem):
        raise TypeError(f"{where}: problem must be a lossgeom.Problem, got "
                        f"{type(problem).__name__}.")
    theta = problem.check_theta(where, theta)
    backend = check_option(where, "backend", backend, BACKENDS)
    n_chains = _check_positive_int(where, "n_chains", n_chains, 1)
    n_draws = _check_positive_int(where, "n_draws", n_draws, 1)
    n_burnin = _check_positive_int(where, "n_burnin", n_burnin, 0)
    step = _check_positive_float(where, "step", step)
    localization = _check_positive_float(where, "localization", localization, allow_zero=True)
    max_rhat = _check_positive_float(where, "max_rhat", max_rhat)
    max_drift = _check_positive_float(where, "max_drift", max_drift)
    n = problem.n_samples
    if nbeta is None:
        nbeta = default_nbeta(n)
    nbeta = _check_positive_float(where, "nbeta", nbeta)
    if batch_size is not None:
        batch_size = _check_positive_int(where, "batch_size", batch_size, 1)
        if batch_size > n:
            raise ValueError(f"{where}: batch_size must be at most the number of samples n = {n} "
                             f"(got {batch_size}). Pass batch_size <= {n}, or None for full batch.")
        if batch_size == n:
            batch_size = None
        elif not problem.per_sample:
            raise ValueError(f"{where}: minibatches need a model whose outputs on a subset of "
                             "inputs are the same rows of its batch outputs (problem.per_sample "
                             "is False). Pass batch_size=None (full batch).")
    if progress is not None and not callable(progress):
        raise TypeError(f"{where}: progress must be a callable (done, total) ↦ None, got "
                        f"{type(progress).__name__}.")
    if backend == "devinterp":
        import_devinterp(where)  # fail before any work

    loss, scale = empirical_loss(problem)
    with torch.no_grad():
        init_loss = float(loss(problem.output_fn(theta), problem.targets))
    if not math.isfinite(init_loss):
        raise ValueError(f"{where}: L_n(θ*) = {init_loss} is not finite. Start from a point where "
                         "the loss is finite.")
    settings = dict(n_chains=n_chains, n_draws=n_draws, n_burnin=n_burnin, step=step,
                    nbeta=nbeta, localization=localization, batch_size=batch_size)
    start = time.perf_counter()
    if backend == "lossgeom":
        trace = _sample_lossgeom(problem, theta, loss, rng=rng, progress=progress, where=where,
                                 **settings)
    else:
        trace = sample_devinterp(problem, theta, loss, init_loss, rng=rng, progress=progress,
                                  where=where, **settings)
    seconds = time.perf_counter() - start
    return _summarise(trace, init_loss, scale, problem.n_params, backend, seconds, max_rhat,
                      max_drift, settings)


# -- the lossgeom sampler ------------------------------------------------------------------------
def _sample_lossgeom(problem: Problem, theta: Tensor, loss: Loss, *, n_chains: int, n_draws: int,
                     n_burnin: int, step: float, nbeta: float, localization: float,
                     batch_size: int | None, rng, progress, where: str) -> np.ndarray:
    """Loss traces (n_chains, n_draws) of SGLD chains batched over a (n_chains, N) stack."""
    gen = _device_generator(where, rng, theta.device)
    X, Y = problem.inputs, problem.targets
    n, C, N = problem.n_samples, n_chains, theta.numel()

    scale = empirical_loss(problem)[1]
    if batch_size is None:
        def value(w: Tensor) -> Tensor:
            return scale * problem.loss_at(w)  # L_n (module NOTE)

        def draw() -> tuple[Tensor, ...]:
            return ()
    else:
        rows = torch.func.vmap(problem.sample_output_fn, in_dims=(None, 0))

        def value(w: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
            return loss(rows(w, xb), yb)

        def draw() -> tuple[Tensor, ...]:  # an independent minibatch per chain
            keys = torch.rand((C, n), generator=gen, device=theta.device)
            idx = keys.topk(batch_size, dim=1).indices
            return X[idx], Y[idx]

    batched = torch.func.vmap(value)
    route = {"vmap": True}

    def grads(W: Tensor) -> tuple[Tensor, Tensor]:
        """(∇L_n, L_n) of every chain: one batched forward, one backward of the sum."""
        data = draw()
        W = W.detach().requires_grad_(True)
        if route["vmap"]:
            try:
                v = batched(W, *data)
            except (RuntimeError, NotImplementedError, ValueError):  # a model vmap cannot batch
                route["vmap"] = False
        if not route["vmap"]:
            v = torch.stack([value(W[c], *(d[c] for d in data)) for c in range(C)])
        (g,) = torch.autograd.grad(v.sum(), W, allow_unused=True)
        return (torch.zeros_like(W) if g is None else g), v.detach()

    W = theta.expand(C, N).clone()
    trace = torch.full((C, n_draws), math.nan, dtype=theta.dtype, device=theta.device)
    alive = torch.ones(C, dtype=torch.bool, device=theta.device)
    root = math.sqrt(step)
    total = n_burnin + n_draws
    for t in range(total):
        g, v = grads(W)
        if t >= n_burnin:
            trace[:, t - n_burnin] = v.detach()
        alive &= torch.isfinite(v) & torch.isfinite(g).all(dim=1)
        noise = torch.randn((C, N), generator=gen, dtype=theta.dtype, device=theta.device)
        moved = W - (0.5 * step) * (nbeta * g + localization * (W - theta)) + root * noise
        W = torch.where(alive[:, None], moved, W)  # a diverged chain stays where it broke
        if progress is not None:
            progress(t + 1, total)
    return trace.cpu().numpy().astype(np.float64)


# -- the devinterp sampler -----------------------------------------------------------------------


# -- diagnostics ---------------------------------------------------------------------------------
def _summarise(trace: np.ndarray, init_loss: float, scale: float, n_params: int, backend: str,
               seconds: float, max_rhat: float, max_drift: float, settings: dict) -> LLCEstimate:
    nbeta = settings["nbeta"]
    C, T = trace.shape
    with np.errstate(all="ignore"):
        per_chain = nbeta * (trace.mean(axis=1) - init_loss)
    limit = EXPLODE_FACTOR * n_params / 2
    diverged = [c for c in range(C)
                if not np.isfinite(trace[c]).all() or not per_chain[c] <= limit]
    kept = [c for c in range(C) if c not in diverged]
    notes: list[str] = []
    if diverged:
        notes.append(f"{len(diverged)} of {C} chains diverged (non-finite loss, or an estimate "
                     f"above {EXPLODE_FACTOR:g} · N/2 = {limit:g}): chains {diverged}. They are left "
                     f"out of the mean; lower the step (now {settings['step']:g}).")
    good = per_chain[kept]
    mean = float(good.mean()) if kept else math.nan
    std = float(good.std(ddof=1)) if len(kept) > 1 else math.nan
    r_hat = split_rhat(trace[kept]) if kept else math.nan
    drift = math.nan
    if kept:
        third = max(1, T // 3)
        first = nbeta * (float(trace[kept, :third].mean()) - init_loss)
        last = nbeta * (float(trace[kept, T - third:].mean()) - init_loss)
        drift = ((last - first) / abs(mean) if mean else
                 0.0 if last == first else math.copysign(math.inf, last - first))
    if kept and not (r_hat <= max_rhat):  # nan (too few draws) fails too
        notes.append(f"split-R̂ of the loss traces is {r_hat:.3g} > {max_rhat:g}: the chains "
                     "disagree or still trend; take more draws or burn-in, or a larger step.")
    if kept and not (abs(drift) <= max_drift):
        notes.append(f"the traces still trend: the estimate from the last third of the draws "
                     f"differs from the one from the first third by {drift:+.0%} of λ̂ (more "
                     f"than {max_drift:.0%}); take more burn-in or a larger step.")
    mixed = not notes
    if notes:
        warnings.warn(f"estimate_llc ({backend}): " + " ".join(notes), LLCSamplingWarning,
                      stacklevel=3)
    return LLCEstimate(
        mean=mean, std=std, backend=backend, init_loss=init_loss, loss_scale=scale,
        per_chain=per_chain, trace=trace, r_hat=r_hat, drift=drift, diverged=diverged,
        mixed=mixed, warnings=notes, seconds=seconds, **settings)
