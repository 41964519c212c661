"""The main job: the information-loss experiments of §6.3 on an embedded default, in a minute.

Writes ``report.json`` and PNG figures to an output folder:

1. exact fits of 3-4-1 tanh and ReLU nets (N = 21, ≈ "20 params / 4 data pts") on 4 points of
   {−1, 1}³: rank J, Hessian inertia, manifold dimension N − rank J;
2. the ReLU dead-pattern example of §6.2: two inputs with every hidden unit off share their
   whole behavioral gradient, so rank J = 3 < 4 and the Hessian inertia is (3, 0, 10);
3. softmax cross-entropy on logits at a soft-label fit (2-5-3, n = 2): rank ∇²L = rank J − n,
   the rank identity fails (§6.4);
4. the overparameterization trend (Experiment 2a, quick mode): the fraction of exact fits with
   rank J < n against N for tanh and ReLU (Adam 0.02, then Gauss–Newton polish);
5. gradient flows (§2): the standard, interpolating and adapted flows from one start, in the
   linear time τ; only the adapted flow moves the outputs on the straight line x₀ → y;
6. a deep linear network (§4.7): the weighted-Frobenius example's global minimum, bad local
   minimum and spurious saddle, classified.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure

from . import flows, linear
from .analysis import analyze
from .datasets import cube_split
from .errors import NotCriticalError
from .info_loss import information_loss
from .linalg.rank import numerical_rank
from .models import mlp
from .plots import save_figure
from .plots.flows import flow_figures
from .plots.spectrum import spectrum_figure
from .problem import Problem
from .reach import find_critical_point, fit_last_layer, train_many
from .report import Report, jsonable

__all__ = ["DemoResult", "TrendCell", "run_demo", "trend_figure"]

TREND_WIDTHS = (2, 3, 4, 6, 8, 12)
TREND_SEEDS = 24
TREND_STEPS = 2000
FIT_TOL = 1e-9          # §6.3: max |r| ≥ 1e-9 after polishing is "not fitted"
RANK_RTOL = 1e-8        # §6.3: rank J from the SVD with tolerance 1e-8·s₁


@dataclass(frozen=True)
class TrendCell:
    """One (activation, width) cell of Experiment 2a."""

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
    """Reports and trend cells of the demo, plus the files written."""

    reports: dict[str, Report]
    info_loss: dict
    trend: list[TrendCell]
    flows: list[dict] = field(default_factory=list)
    linear: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (what report.json holds)."""
        return jsonable({
            "reports": {k: r.to_dict() for k, r in self.reports.items()},
            "information_loss": self.info_loss,
            "trend": [{**c.__dict__, "fraction": c.fraction} for c in self.trend],
            "flows": self.flows,
            "linear": self.linear,
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


def _polished_rank(problem: Problem, theta: torch.Tensor) -> tuple[bool, int, float]:
    """Gauss–Newton polish, then (fitted, rank J, gap) per the §6.3 protocol."""
    try:
        theta, _ = find_critical_point(problem, theta, steps=0, polish="gauss_newton",
                                       tol=1e-13, polish_steps=30)
    except NotCriticalError as err:
        theta = err.theta
    r = problem.loss_fn.fit_residual(problem.output_fn(theta).detach(), problem.targets)
    if float(r.abs().max()) >= FIT_TOL:
        return False, -1, float("nan")
    from .curvature._jacobian import jacobian

    d = numerical_rank(jacobian(problem, theta), rtol=RANK_RTOL)
    return True, d.rank, d.gap


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


def run_trend(widths=TREND_WIDTHS, seeds: int = TREND_SEEDS, steps: int = TREND_STEPS,
              progress: Callable[[str], None] | None = None) -> list[TrendCell]:
    """Experiment 2a (§6.3) in quick mode: fraction of rank-deficient fits per cell."""
    cells = []
    for activation in ("tanh", "relu"):
        for h in widths:
            problems = [_cube_problem(h, activation, 1000 * h + s) for s in range(seeds)]
            thetas = train_many(problems, torch.stack([p.theta for p in problems]), steps=steps)
            fitted = deficient = 0
            gaps = []
            for p, th in zip(problems, thetas, strict=True):
                ok, rank, gap = _polished_rank(p, th)
                if ok:
                    fitted += 1
                    deficient += rank < p.n_samples
                    gaps.append(gap)
            cells.append(TrendCell(activation, h, problems[0].n_params, fitted, deficient,
                                   seeds - fitted, float(min(gaps)) if gaps else float("nan")))
            if progress:
                progress(f"{activation} h={h}")
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
        A DemoResult (files listed in ``files``).
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    say = progress or (lambda _msg: None)
    reports: dict[str, Report] = {}
    for act in ("tanh", "relu"):
        p = _cube_problem(4, act, 0)
        reports[f"cube_{act}_3-4-1"] = analyze(p, fit_last_layer(p))
        say(f"exact fit {act}")
    dead = _dead_pattern_problem()
    theta_dead = fit_last_layer(dead)
    reports["relu_dead_pattern_2-3-1"] = analyze(dead, theta_dead)
    info = information_loss(dead, theta_dead).to_dict()
    sm = _softmax_problem()
    reports["softmax_ce_soft_labels_2-5-3"] = analyze(sm, fit_last_layer(sm))
    say("dead pattern and softmax")
    trend = run_trend(seeds=seeds, steps=steps, progress=progress)
    trajectories = run_flows()
    say("gradient flows")
    lin = run_linear()
    say("linear network")

    files = []
    for name in ("cube_tanh_3-4-1", "relu_dead_pattern_2-3-1", "softmax_ce_soft_labels_2-5-3"):
        files.append(save_figure(spectrum_figure(reports[name], title=name),
                                 os.path.join(out_dir, f"spectrum_{name}.png")))
    files.append(save_figure(trend_figure(trend), os.path.join(out_dir, "trend.png")))
    for name, fig in flow_figures(trajectories).items():
        files.append(save_figure(fig, os.path.join(out_dir, f"flow_{name}.png")))
    result = DemoResult(reports, info, trend, [t.summary() for t in trajectories], lin, files)
    path = os.path.join(out_dir, "report.json")
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(result.to_dict(), f, indent=1)
    os.replace(tmp, path)
    files.append(path)
    return result
