"""Named, seeded test cases: each a function returning ``(problem, theta)``.

Every case is small (N ≤ 40, n·k ≤ 12 unless stated) so that dense matrices, finite differences
and autograd oracles stay cheap. Cases are built once and cached; each call returns a fresh copy
of θ, so a test may modify the θ it receives. Problems hold no mutable state that the library
changes, so sharing them between tests is safe.

Spec references (docs/theory.md) are given where a case reproduces a worked example.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor, nn

import lossgeom as lg
from lossgeom.reach import fit_last_layer

F64 = torch.float64

Case = tuple[lg.Problem, Tensor]


def gen(seed: int) -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(seed)


def gaussian(*shape: int, seed: int) -> Tensor:
    """Standard normal float64 tensor of the given shape, seeded."""
    return torch.randn(*shape, generator=gen(seed), dtype=F64)


def _cached(build: Callable[[], Case]) -> Callable[[], Case]:
    cached = lru_cache(maxsize=None)(build)

    def case() -> Case:
        problem, theta = cached()
        return problem, theta.clone()

    case.__name__ = build.__name__
    case.__doc__ = build.__doc__
    return case


# -- exact fits (MSE) ------------------------------------------------------------------------------
@_cached
def tiny_tanh_exact_fit() -> Case:
    """Tanh 2-3-1 with biases (N = 13), n = 3, output layer fitted exactly (MSE-sum)."""
    X, Y = gaussian(3, 2, seed=10), gaussian(3, 1, seed=11)
    problem = lg.Problem(lg.mlp([2, 3, 1], generator=gen(12)), X, Y)
    return problem, fit_last_layer(problem)


@_cached
def tanh_361_exact_fit() -> Case:
    """§3.1 / §7 row 5: tanh 3-6-1 without bias (N = 24), n = 4, exact fit; inertia (4, 0, 20)."""
    X, Y = gaussian(4, 3, seed=0), gaussian(4, 1, seed=1)
    problem = lg.Problem(lg.mlp([3, 6, 1], bias=False, generator=gen(2)), X, Y)
    return problem, fit_last_layer(problem)


@_cached
def tanh_251_exact_fit() -> Case:
    """§6.1: tanh 2-5-1 with biases (N = 21), n = 4, exact fit; ∇²L = 2GGᵀ, inertia (4, 0, 17)."""
    X, Y = gaussian(4, 2, seed=20), gaussian(4, 1, seed=21)
    problem = lg.Problem(lg.mlp([2, 5, 1], generator=gen(22)), X, Y)
    return problem, fit_last_layer(problem)


@_cached
def bias_output_exact_fit() -> Case:
    """Tanh 2-4-1 with a bias on the output layer only (N = 13), n = 3, exact fit."""
    X, Y = gaussian(3, 2, seed=30), gaussian(3, 1, seed=31)
    problem = lg.Problem(lg.mlp([2, 4, 1], bias="output", generator=gen(32)), X, Y)
    return problem, fit_last_layer(problem)


@_cached
def relu_dead_pattern() -> Case:
    """§6.2: ReLU 2-3-1 with biases (N = 13); inputs 3 and 4 share the all-dead pattern.

    W₁ = [[1, 0], [0, 1], [1, 1]], b₁ = 0, W₂ = (1, −2, .5), b₂ = .3; the targets are the outputs
    (an exact fit). rank G = 3 (not 4) and the inertia at the fit is (3, 0, 10).
    """
    model = lg.mlp([2, 3, 1], "relu")
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        model[2].bias.fill_(0.3)
    X = torch.tensor([[1.0, 0.5, -1.0, -2.0], [0.2, 1.0, -1.0, -0.5]], dtype=F64).T
    with torch.no_grad():
        Y = model(X)
    problem = lg.Problem(model, X, Y)
    return problem, problem.theta


# -- random (noncritical) points -------------------------------------------------------------------
@_cached
def tanh_random_point() -> Case:
    """Tanh 2-4-2 with biases (N = 22), n = 3, k = 2, at its initialisation: not critical."""
    X, Y = gaussian(3, 2, seed=40), gaussian(3, 2, seed=41)
    problem = lg.Problem(lg.mlp([2, 4, 2], generator=gen(42)), X, Y)
    return problem, problem.theta


@_cached
def mse_mean_random_point() -> Case:
    """The tanh 2-4-2 case with reduction="mean" (MSE divided by n·k)."""
    X, Y = gaussian(3, 2, seed=40), gaussian(3, 2, seed=41)
    problem = lg.Problem(lg.mlp([2, 4, 2], generator=gen(42)), X, Y, reduction="mean")
    return problem, problem.theta


@_cached
def linear_net() -> Case:
    """Deep linear 3-2-2 network without bias (N = 10), n = 5, at a random point (MSE-sum)."""
    X, Y = gaussian(5, 3, seed=50), gaussian(5, 2, seed=51)
    problem = lg.Problem(lg.mlp([3, 2, 2], "linear", bias=False, generator=gen(52)), X, Y)
    return problem, problem.theta


# -- softmax cross-entropy on logits (§6.4) ---------------------------------------------------
@_cached
def softmax_soft_label_fit() -> Case:
    """§6.4: tanh 2-5-3 with biases (N = 33), n = 2, soft labels fitted exactly.

    softmax(f(xᵢ)) = yᵢ; rank J = 6 and rank ∇²L = rank J − n = 4.
    """
    X = gaussian(2, 2, seed=60)
    Y = torch.softmax(gaussian(2, 3, seed=61), dim=-1)
    problem = lg.Problem(lg.mlp([2, 5, 3], generator=gen(62)), X, Y, loss="softmax_ce")
    return problem, fit_last_layer(problem)


@_cached
def softmax_onehot_random_point() -> Case:
    """§6.4: tanh 2-5-3 (N = 33), n = 2, integer labels, random point.

    rank J = 6, Gauss–Newton rank 4, full Hessian rank 22 of 33.
    """
    X = gaussian(2, 2, seed=70)
    problem = lg.Problem(lg.mlp([2, 5, 3], generator=gen(71)), X, torch.tensor([0, 2]),
                         loss="softmax_ce")
    return problem, problem.theta


# -- probability outputs ----------------------------------------------------------------------------
def _probability_model(k: int, seed: int) -> nn.Module:
    head = nn.Softmax(dim=-1) if k > 1 else nn.Sigmoid()
    return nn.Sequential(lg.mlp([2, 3, k], generator=gen(seed)), head)


@_cached
def bce_fit() -> Case:
    """Sigmoid output 2-3-1 (N = 13), n = 3, bce, targets = outputs (a perfect fit)."""
    model = _probability_model(1, 80)
    X = gaussian(3, 2, seed=81)
    with torch.no_grad():
        Y = model(X)
    problem = lg.Problem(model, X, Y, loss="bce")
    return problem, problem.theta


@_cached
def bce_random_point() -> Case:
    """Sigmoid output 2-3-1 (N = 13), n = 3, bce with targets in (0, 1), reduction="mean"."""
    model = _probability_model(1, 80)
    X = gaussian(3, 2, seed=81)
    Y = torch.tensor([[0.2], [0.9], [0.5]], dtype=F64)
    problem = lg.Problem(model, X, Y, loss="bce", reduction="mean")
    return problem, problem.theta


@_cached
def ce_prob_fit() -> Case:
    """Softmax output 2-3-3 (N = 21), n = 2, ce_prob, targets = outputs (positive entries)."""
    model = _probability_model(3, 90)
    X = gaussian(2, 2, seed=91)
    with torch.no_grad():
        Y = model(X)
    problem = lg.Problem(model, X, Y, loss="ce_prob")
    return problem, problem.theta


@_cached
def ce_prob_onehot_random_point() -> Case:
    """Softmax output 2-3-3 (N = 21), n = 2, ce_prob with one-hot targets at a random point."""
    model = _probability_model(3, 90)
    X = gaussian(2, 2, seed=91)
    Y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    problem = lg.Problem(model, X, Y, loss="ce_prob")
    return problem, problem.theta


# -- callable models --------------------------------------------------------------------------------
def two_layer_tanh(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """f(θ, x) = W₂ tanh(W₁ x + b₁) + b₂ as a plain function of a parameter dict."""
    return torch.tanh(inputs @ params["w1"].T + params["b1"]) @ params["w2"].T + params["b2"]


def batch_centred_tanh(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """Like ``two_layer_tanh`` but the hidden layer is centred over the batch.

    Each output depends on every sample, so per-sample evaluation (vmap) does not reproduce the
    batch: the whole-batch Jacobian route is exercised.
    """
    h = torch.tanh(inputs @ params["w1"].T + params["b1"])
    return (h - h.mean(dim=0, keepdim=True)) @ params["w2"].T + params["b2"]


def _callable_params(seed: int, d: int = 2, h: int = 3, k: int = 2) -> dict[str, Tensor]:
    return {"w1": gaussian(h, d, seed=seed), "b1": gaussian(h, seed=seed + 1),
            "w2": gaussian(k, h, seed=seed + 2), "b2": gaussian(k, seed=seed + 3)}


@_cached
def callable_model() -> Case:
    """A callable f(params, inputs) (N = 17), n = 3, k = 2, MSE-sum, random point."""
    X, Y = gaussian(3, 2, seed=100), gaussian(3, 2, seed=101)
    problem = lg.Problem(two_layer_tanh, X, Y, params=_callable_params(102))
    return problem, problem.theta


@_cached
def callable_batch_coupled() -> Case:
    """A callable whose outputs couple the samples (N = 17), n = 4, k = 2, random point."""
    X, Y = gaussian(4, 2, seed=110), gaussian(4, 2, seed=111)
    problem = lg.Problem(batch_centred_tanh, X, Y, params=_callable_params(112))
    return problem, problem.theta


@_cached
def float32_exact_fit() -> Case:
    """The tanh 2-5-1 exact fit evaluated in float32 (θ rounded from the float64 fit)."""
    _, theta64 = tanh_251_exact_fit()
    X, Y = gaussian(4, 2, seed=20), gaussian(4, 1, seed=21)
    problem = lg.Problem(lg.mlp([2, 5, 1], generator=gen(22)), X, Y, dtype=torch.float32)
    return problem, theta64.to(torch.float32)


# -- §5: deep linear network ------------------------------------------------------------------
def deep_linear_singh(widths=(25, 5, 10, 10), n: int = 50, seed: int = 0) -> Case:
    """§5.3: linear network without bias, Gaussian data, weights N(0, 1/fan_in), MSE-sum.

    MSE-sum is 2 × the MSE-half of the theory's setting: ranks are scale-free.
    """
    g = gen(seed)
    X = torch.randn(n, widths[0], generator=g, dtype=F64)
    Y = torch.randn(n, widths[-1], generator=g, dtype=F64)
    model = lg.mlp(list(widths), "linear", bias=False)
    with torch.no_grad():
        for layer in model[::2]:
            fan_in = layer.weight.shape[1]
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=F64) / fan_in**0.5)
    problem = lg.Problem(model, X, Y)
    return problem, problem.theta


# -- registries ----------------------------------------------------------------------------------
EXACT_FIT_MSE = {
    "tiny_tanh_exact_fit": tiny_tanh_exact_fit,
    "tanh_361_exact_fit": tanh_361_exact_fit,
    "tanh_251_exact_fit": tanh_251_exact_fit,
    "bias_output_exact_fit": bias_output_exact_fit,
    "relu_dead_pattern": relu_dead_pattern,
}

SMOOTH = {
    "tiny_tanh_exact_fit": tiny_tanh_exact_fit,
    "tanh_251_exact_fit": tanh_251_exact_fit,
    "bias_output_exact_fit": bias_output_exact_fit,
    "tanh_random_point": tanh_random_point,
    "mse_mean_random_point": mse_mean_random_point,
    "linear_net": linear_net,
    "softmax_soft_label_fit": softmax_soft_label_fit,
    "softmax_onehot_random_point": softmax_onehot_random_point,
    "bce_fit": bce_fit,
    "bce_random_point": bce_random_point,
    "ce_prob_fit": ce_prob_fit,
    "ce_prob_onehot_random_point": ce_prob_onehot_random_point,
    "callable_model": callable_model,
    "callable_batch_coupled": callable_batch_coupled,
}
"""Float64 cases whose loss is smooth at θ (finite differences apply)."""

NONCRITICAL = {name: SMOOTH[name] for name in (
    "tanh_random_point", "mse_mean_random_point", "linear_net", "softmax_onehot_random_point",
    "bce_random_point", "ce_prob_onehot_random_point", "callable_model", "callable_batch_coupled")}
"""Float64 cases at points where ∇L is not small (relative finite-difference checks apply)."""

ALL64 = {**SMOOTH, "tanh_361_exact_fit": tanh_361_exact_fit, "relu_dead_pattern": relu_dead_pattern}
"""Every float64 case."""
