"""The main job: the information-loss experiments of §6.3 on an embedded default, in seconds.

Writes ``report.json`` (with the seconds per stage under "timings") and PNG figures to an output
folder:

1. exact fits of 3-4-1 tanh and ReLU nets (N = 21, ≈ "20 params / 4 data pts") on 4 points of
   {−1, 1}³: rank J, Hessian inertia, manifold dimension N − rank J;
2. the ReLU dead-pattern example of §6.2: two inputs with every hidden unit off share their
   whole behavioral gradient, so rank J = 3 < 4 and the Hessian inertia is (3, 0, 10);
3. softmax cross-entropy on logits at a soft-label fit (2-5-3, n = 2): rank ∇²L = rank J − n,
   the rank identity fails (§6.4);
4. the overparameterization trend (Experiment 2a, quick mode): the fraction of exact fits with
   rank J < n against N for tanh and ReLU (Adam 0.02, then Gauss–Newton polish), all 288 runs
   trained as one vectorised ensemble (NOTE [trend host]);
5. gradient flows (§2): the standard, interpolating and adapted flows from one start, in the
   linear time τ; only the adapted flow moves the outputs on the straight line x₀ → y;
6. a deep linear network (§4.7): the weighted-Frobenius example's global minimum, bad local
   minimum and spurious saddle, classified.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
from matplotlib.figure import Figure
from torch import nn

from . import flows, linear
from ._timing import stage
from .analysis import analyze
from .datasets import cube_split
from .info_loss import information_loss
from .linalg.rank import RankDecision, numerical_rank
from .models import mlp
from .plots import save_figure
from .plots.flows import flow_figures
from .plots.spectrum import spectrum_figure
from .problem import Problem
from .reach import fit_last_layer, polish_many, train_many
from .report import Report, jsonable

__all__ = ["DEMO_STAGES", "DemoResult", "TrendCell", "run_demo", "run_trend", "trend_figure"]

TREND_WIDTHS = (2, 3, 4, 6, 8, 12)
TREND_SEEDS = 24
TREND_STEPS = 2000
FIT_TOL = 1e-9          # §6.3: max |r| ≥ 1e-9 after polishing is "not fitted"
POLISH_TOL = 1e-12      # §6.3: Gauss–Newton polishing until max |r| < 1e-12
POLISH_STEPS = 30
DEMO_STAGES = 7
"""Calls of ``run_demo``'s ``progress``: exact fits, three trend phases, flows, linear, figures."""
RANK_RTOL = 1e-8        # §6.3: rank J from the SVD with tolerance 1e-8·s₁


@dataclass(frozen=True)
class TrendCell:
    """One (activation, width) cell of Experiment 2a.

    Attributes:
        activation: "tanh" or "relu".
        width: Hidden width h of the 3-h-1 nets.
        n_params: N = 5h + 1.
        fitted: Runs with max |r| < 1e-9 after the polish.
        rank_deficient: Fitted runs with rank J < n = 4.
        not_fitted: Runs left out as not fitted.
        min_gap: Smallest gap σ_r/σ_{r+1} of the rank cuts of the fitted runs (nan if none).
    """

    activation: str
    width: int
    n_params: int
    fitted: int
    rank_deficient: int
    not_fitted: int
    min_gap: float

    @property
    def fraction(self) -> float:
        """Share of fitted runs with rank J < n (nan when nothing fitted)."""
        return self.rank_deficient / self.fitted if self.fitted else float("nan")


@dataclass(frozen=True)
class DemoResult:
    """Reports and trend cells of the demo, plus the files written and the time per stage.

    Attributes:
        reports: Name → Report of the exact-fit cases.
        info_loss: The dead-pattern case's ``InfoLossReport.to_dict()``.
        trend: The Experiment 2a cells, tanh first.
        flows: ``Trajectory.summary()`` of the standard, interpolating and adapted flows.
        linear: Point name → classification of the deep linear example.
        files: Paths written (figures, then report.json).
        timings: Stage → wall seconds, in the order run, ending with "total".
    """

    reports: dict[str, Report]
    info_loss: dict
    trend: list[TrendCell]
    flows: list[dict] = field(default_factory=list)
    linear: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (what report.json holds)."""
        return jsonable({
            "reports": {k: r.to_dict() for k, r in self.reports.items()},
            "information_loss": self.info_loss,
            "trend": [{**c.__dict__, "fraction": c.fraction} for c in self.trend],
            "flows": self.flows,
            "linear": self.linear,
            "timings": self.timings,
        })


def _cube_problem(width: int, activation: str, seed: int) -> Problem:
    X, Y, _ = cube_split(seed)
    model = mlp([3, width, 1], activation, True, generator=torch.Generator().manual_seed(seed))
    return Problem(model, X, Y)


def _dead_pattern_problem() -> Problem:
    """§6.2: ReLU 2-3-1, x₃ and x₄ switch every hidden unit off."""
    model = mlp([2, 3, 1], "relu")
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        model[2].bias.fill_(0.3)
    X = torch.tensor([[1.0, 0.5, -1.0, -2.0], [0.2, 1.0, -1.0, -0.5]], dtype=torch.float64).T
    # x₃, x₄ share h₁ = 0, so any fit gives them one output: label them alike
    return Problem(model, X, torch.tensor([1.0, -1.0, 0.5, 0.5], dtype=torch.float64))


def _softmax_problem() -> Problem:
    """§6.4: tanh 2-5-3, n = 2, soft labels (fitted exactly on the output layer)."""
    model = mlp([2, 5, 3], "tanh", generator=torch.Generator().manual_seed(1))
    X = torch.tensor([[0.5, -1.0], [1.5, 0.3]], dtype=torch.float64)
    Y = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=torch.float64)
    return Problem(model, X, Y, loss="softmax_ce")


FLOW_ALPHAS = (0.0, 0.5, 1.0)


def run_flows() -> list:
    """§2.5: flows of a tanh 2-6-2 net on 3 Gaussian points in linear time τ.

    τ ∈ [0, 0.99] for α < 1 (the field is singular at τ = 1), [0, 1] for α = 1, where the outputs
    follow the straight line to y.
    """
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    Y = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    problem = Problem(mlp([2, 6, 2], "tanh", generator=gen), X, Y)
    return [flows.integrate(problem, None, alpha=a, t_end=1.0 if a == 1.0 else 0.99,
                            time="linear", n_eval=40) for a in FLOW_ALPHAS]


def run_linear() -> dict:
    """§4.7: classify the three named points of the weighted-Frobenius example."""
    ex = linear.weighted_frobenius_example()
    out = {}
    for name, weights in ex.points().items():
        c = linear.classify(list(weights), ex.loss)
        out[name] = {"loss": ex.loss.value(linear.product(list(weights))), **c.to_dict()}
    return out


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the body with one torch intra-op thread, then restore the previous count.

    NOTE [demo threads]
        Every tensor of the demo is tiny (the trend's largest is 288 × 121): splitting its
        operations over threads costs more than it saves, and on a loaded machine the threads'
        barriers make the vectorised trend many times slower (measured: Adam 224 s on two
        threads against 11 s on one, same load).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _SplitActivation(nn.Module):
    """tanh on the first ``split`` hidden units, ReLU on the rest (the trend's host network)."""

    def __init__(self, split: int):
        super().__init__()
        self.split = split

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(…, 2·split) → (…, 2·split): tanh on the first half of the units, ReLU on the rest."""
        return torch.cat((torch.tanh(z[..., :self.split]), torch.relu(z[..., self.split:])), -1)


def _host_gradient(units: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                            torch.Tensor]:
    """∇L per run of the host net under MSE-sum, by hand: θ (S, N), X (S, n, 3), Y (S, n, 1) → (S, N).

    Forward zₛ = Xₛ W₁ₛᵀ + b₁ₛ, aₛ = (tanh | ReLU)(zₛ), xₛ = aₛ W₂ₛᵀ + b₂ₛ as batched matrix
    products over the S runs; backward with δ = ∇ₓC = 2(x − y): ∇W₂ = δᵀa, ∇b₂ = Σᵢ δᵢ,
    δz = (δ W₂) ⊙ σ'(z) with σ' = 1 − tanh² or [z > 0], ∇W₁ = δzᵀ X, ∇b₁ = Σᵢ δzᵢ. The numbers
    of ``vmap(grad(L))`` on the host Problem up to rounding (a test compares them run by run), at
    a third of its per-step cost (NOTE [trend host]).
    """
    hidden = 2 * units
    sizes = (3 * hidden, hidden, hidden, 1)

    def gradient(theta: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        S = theta.shape[0]
        W1, b1, W2, b2 = torch.split(theta, sizes, dim=1)
        W1, W2 = W1.reshape(S, hidden, 3), W2.reshape(S, 1, hidden)
        z = torch.baddbmm(b1[:, None, :], X, W1.transpose(1, 2))             # (S, n, 2u)
        t, r = torch.tanh(z[..., :units]), torch.relu(z[..., units:])
        a = torch.cat((t, r), -1)
        delta = 2 * (torch.baddbmm(b2[:, None, :], a, W2.transpose(1, 2)) - Y)  # (S, n, 1)
        da = delta * W2                                                        # (S, n, 2u)
        dz = torch.cat((da[..., :units] * (1 - t * t), da[..., units:] * (r > 0)), -1)
        return torch.cat((torch.bmm(dz.transpose(1, 2), X).reshape(S, -1), dz.sum(1),
                          torch.bmm(delta.transpose(1, 2), a).reshape(S, -1), delta.sum(1)), 1)

    return gradient


@dataclass(frozen=True)
class _TrendRun:
    """One run of the trend: where its 3-h-1 net sits in the host θ, and what it reached."""

    activation: str
    width: int
    seed: int
    index: torch.Tensor          # host coordinates of (W₁, b₁, W₂, b₂), in the 3-h-1 θ's order
    theta: torch.Tensor          # the 3-h-1 θ (5h + 1,): the start, later the polished point
    max_residual: float = float("nan")
    rank: RankDecision | None = None


def _host_index(width: int, offset: int, units: int) -> torch.Tensor:
    """Host coordinates of a 3-h-1 net placed in hidden units offset … offset + h − 1.

    Host θ (10·units + 1,): W₁ (2·units, 3) row-major, b₁ (2·units,), W₂ (1, 2·units), b₂ (1,);
    a 3-h-1 θ is W₁ (h, 3), b₁ (h,), W₂ (1, h), b₂ (1,) in the same order.
    """
    rows = torch.arange(offset, offset + width)
    return torch.cat((torch.arange(3 * offset, 3 * (offset + width)), 6 * units + rows,
                      8 * units + rows, torch.tensor([10 * units])))


def _trend_runs(widths, seeds: int, steps: int, timings: dict[str, float] | None = None,
                progress: Callable[[str], None] | None = None) -> list[_TrendRun]:
    """Experiment 2a runs, every width and activation in one ensemble (NOTE [trend host]).

    NOTE [trend host]
        All 3-h-1 nets of the trend, tanh and ReLU, train as one ensemble of a single host net
        3-2u-1, u = max h: hidden units 0 … u − 1 are tanh, u … 2u − 1 ReLU, and a run of width h
        occupies h of them; every other unit has W₁ row, b₁ and W₂ entry 0, held there
        (``frozen``) through Adam and the Gauss–Newton polish. Such a unit outputs 0
        (tanh 0 = ReLU 0 = 0) and contributes W₂ⱼ·σ(zⱼ) = 0, so the host computes the 3-h-1 net,
        its gradient and its Jacobian on the run's coordinates exactly (up to the order of
        floating-point sums). One batched step then serves all 2·|widths|·seeds runs, where a
        vmap per cell pays PyTorch's per-step dispatch overhead once per cell; the Adam phase
        takes its gradient from ``_host_gradient`` (the host's backward pass written out in
        batched matrix products), the numbers of ``vmap(grad)`` at a third of the cost per step.
    """
    timings = {} if timings is None else timings
    say = progress or (lambda _msg: None)
    units = max(widths)
    runs, X, Y = [], [], []
    for activation, offset in (("tanh", 0), ("relu", units)):
        for h in widths:
            for s in range(seeds):
                seed = 1000 * h + s
                x, y, _ = cube_split(seed)
                model = mlp([3, h, 1], activation, True, generator=torch.Generator().manual_seed(seed))
                theta = torch.cat([t.detach().reshape(-1) for t in model.parameters()])
                runs.append(_TrendRun(activation, h, seed, _host_index(h, offset, units), theta))
                X.append(x)
                Y.append(y)
    X, Y = torch.stack(X), torch.stack(Y)
    host = Problem(nn.Sequential(nn.Linear(3, 2 * units), _SplitActivation(units),
                                 nn.Linear(2 * units, 1)).double(), X[0], Y[0])
    start = torch.zeros(len(runs), host.n_params, dtype=torch.float64)
    frozen = torch.ones_like(start, dtype=torch.bool)
    for i, run in enumerate(runs):
        start[i, run.index] = run.theta
        frozen[i, run.index] = False
    with stage(timings, "trend: Adam"):
        trained = train_many(host, start, steps=steps, inputs=X, targets=Y, frozen=frozen,
                             gradient=_host_gradient(units))
    say(f"trend: Adam, {len(runs)} runs")
    with stage(timings, "trend: Gauss–Newton polish"):
        polished, residual = polish_many(host, trained, inputs=X, targets=Y, tol=POLISH_TOL,
                                         steps=POLISH_STEPS, frozen=frozen)
    say("trend: Gauss–Newton polish")
    with stage(timings, "trend: rank J"):
        jac = torch.func.vmap(torch.func.vmap(torch.func.jacrev(host.sample_output_fn),
                                              in_dims=(None, 0)))(polished, X)
        out = []
        for i, run in enumerate(runs):
            res = float(residual[i])
            rank = numerical_rank(jac[i].reshape(-1, host.n_params)[:, run.index],
                                  rtol=RANK_RTOL) if res < FIT_TOL else None
            out.append(replace(run, theta=polished[i, run.index], max_residual=res, rank=rank))
    say("trend: rank J")
    return out


def run_trend(widths=TREND_WIDTHS, seeds: int = TREND_SEEDS, steps: int = TREND_STEPS,
              progress: Callable[[str], None] | None = None,
              timings: dict[str, float] | None = None) -> list[TrendCell]:
    """Experiment 2a (§6.3) in quick mode: fraction of rank-deficient fits per cell.

    Per cell (activation, h) ``seeds`` runs, each on its own cube split and initialisation
    (seed 1000·h + s): Adam (lr 0.02, ``steps`` steps), Gauss–Newton polish θ ← θ − J⁺ r to
    max |r| < 1e-12, "not fitted" when max |r| ≥ 1e-9 after it; rank J from the SVD of the 4 × N
    Jacobian cut at 1e-8·σ₁. Every run trains in one vectorised ensemble (NOTE [trend host]).

    Args:
        widths: Hidden widths h of the 3-h-1 nets.
        seeds: Runs per cell.
        steps: Adam steps per run.
        progress: Called with a short label after each phase.
        timings: Filled with seconds per phase ("trend: Adam", "trend: Gauss–Newton polish",
            "trend: rank J").

    Returns:
        One TrendCell per (activation, width), tanh first.
    """
    with _one_thread():  # NOTE [demo threads]
        runs = _trend_runs(tuple(widths), seeds, steps, timings, progress)
    cells = []
    for activation in ("tanh", "relu"):
        for h in widths:
            cell = [r for r in runs if r.activation == activation and r.width == h]
            fits = [r for r in cell if r.rank is not None]
            cells.append(TrendCell(activation, h, 5 * h + 1, len(fits),
                                   sum(r.rank.rank < 4 for r in fits), len(cell) - len(fits),
                                   min((r.rank.gap for r in fits), default=float("nan"))))
    return cells


def trend_figure(cells: list[TrendCell]) -> Figure:
    """Fraction of exact fits with rank J < n against N, one line per activation."""
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.add_subplot()
    for act, color in (("tanh", "tab:blue"), ("relu", "tab:red")):
        cs = [c for c in cells if c.activation == act]
        ax.plot([c.n_params for c in cs], [c.fraction for c in cs], "o-", color=color,
                label=f"{act} ({sum(c.fitted for c in cs)} fits)")
    ax.set_xscale("log")
    ns = sorted({c.n_params for c in cells})
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("N (parameters), 3-h-1 nets on 4 points of {−1,1}³")
    ax.set_ylabel("fraction of fits with rank J < n")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Information loss: rank-deficient solutions vs width")
    ax.legend()
    return fig


def run_demo(out_dir: str | os.PathLike = "demo-output", *, seeds: int = TREND_SEEDS,
             steps: int = TREND_STEPS, progress: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo and write report.json and figures to ``out_dir``.

    Args:
        out_dir: Output folder (created).
        seeds: Seeds per trend cell.
        steps: Adam steps per trend run.
        progress: Called with a short label after each stage.

    Returns:
        A DemoResult (files listed in ``files``, seconds per stage in ``timings``, also written
        to report.json under "timings").
    """
    with _one_thread():  # NOTE [demo threads]
        return _run_demo(out_dir, seeds, steps, progress)


def _run_demo(out_dir: str | os.PathLike, seeds: int, steps: int,
              progress: Callable[[str], None] | None) -> DemoResult:
    t0 = time.perf_counter()
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    reports: dict[str, Report] = {}
    with stage(timings, "exact fits"):
        for act in ("tanh", "relu"):
            p = _cube_problem(4, act, 0)
            reports[f"cube_{act}_3-4-1"] = analyze(p, fit_last_layer(p))
        dead = _dead_pattern_problem()
        theta_dead = fit_last_layer(dead)
        reports["relu_dead_pattern_2-3-1"] = analyze(dead, theta_dead)
        info = information_loss(dead, theta_dead).to_dict()
        sm = _softmax_problem()
        reports["softmax_ce_soft_labels_2-5-3"] = analyze(sm, fit_last_layer(sm))
    say("exact fits, dead pattern, softmax")
    trend = run_trend(seeds=seeds, steps=steps, progress=progress, timings=timings)
    with stage(timings, "gradient flows"):
        trajectories = run_flows()
    say("gradient flows")
    with stage(timings, "linear network"):
        lin = run_linear()
    say("linear network")

    files = []
    with stage(timings, "figures"):
        for name in ("cube_tanh_3-4-1", "relu_dead_pattern_2-3-1", "softmax_ce_soft_labels_2-5-3"):
            files.append(save_figure(spectrum_figure(reports[name], title=name),
                                     os.path.join(out_dir, f"spectrum_{name}.png")))
        files.append(save_figure(trend_figure(trend), os.path.join(out_dir, "trend.png")))
        for name, fig in flow_figures(trajectories).items():
            files.append(save_figure(fig, os.path.join(out_dir, f"flow_{name}.png")))
    say("figures")
    timings["total"] = time.perf_counter() - t0
    result = DemoResult(reports, info, trend, [t.summary() for t in trajectories], lin, files,
                        timings)
    path = os.path.join(out_dir, "report.json")
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(result.to_dict(), f, indent=1)
    os.replace(tmp, path)
    files.append(path)
    return result
