"""Every curvature route through every layer type, against plain autograd and finite differences.

For each layer type (Linear, Conv2d, max and average pooling, Embedding, attention, LayerNorm,
BatchNorm in eval mode, and each activation) a tiny float64 model at a seeded non-critical point
(MSE-sum against random targets, so ∇²L = Jᵀ(2I)J + residual term with both parts non-zero) is
checked on: the dense Hessian (``lg.hessian``, both column routes), Hessian-vector products
(``lg.hvp`` and ``make_hvp_block`` in both ``HvpMode``s), the Jacobian (``lg.jacobian`` and
``make_jvp``), the NTK Gram (``lg.ntk_gram``) and Gauss–Newton (``lg.gauss_newton``, and
G + R = H with ``lg.residual_hessian``). References: double backward with one unit vector at a
time (``create_graph=True``) and central differences of the gradient in float64. Each check runs
with forward-mode AD in use and with it switched off (``problem.forward_ad = False``, the routes a
model without forward-mode rules takes), and on a model that genuinely has no forward-mode rule.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from models import (
    ACTIVATIONS,
    F64,
    attention_net,
    autograd_hessian,
    autograd_jacobian,
    bn_convnet,
    digits,
    fd_hessian,
    fd_jacobian,
    gaussian,
    layernorm_mlp,
    max_rel,
    no_forward_mlp,
    seeded,
    tokens,
)
from torch import nn

import lossgeom as lg
from lossgeom.curvature import HvpMode, make_hvp_block, make_jvp

AUTOGRAD_RTOL = 1e-10   # two exact float64 routes: rounding only
FD_RTOL = 1e-6          # central differences, h = eps^(1/3)·max(1, ‖θ‖∞): O(h²) + O(eps/h)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: a second intra-op thread only adds contention (tens of times slower
    on a loaded machine), so this module runs single-threaded and restores the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = seeded(seed)
    model.double()
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else p.numel()
            p.copy_((torch.rand(p.shape, generator=g, dtype=F64) * 2 - 1) * 1.5 / fan_in**0.5)
    return model


def _mlp_with(activation: str) -> nn.Module:
    return _init(nn.Sequential(nn.Linear(3, 4), ACTIVATIONS[activation](), nn.Linear(4, 2)), 1)


def _conv(pool: nn.Module | None) -> nn.Module:
    layers = [nn.Conv2d(1, 2, 2), nn.Tanh()] + ([pool] if pool is not None else [])
    width = 2 * (2 * 2 if pool is not None else 4 * 4)
    return _init(nn.Sequential(*layers, nn.Flatten(), nn.Linear(width, 2)), 2)


def _embedding() -> nn.Module:
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            return self.head(torch.tanh(self.embed(x).mean(dim=1)))

    model = _init(Bag(), 3)
    with torch.no_grad():
        model.embed.weight.mul_(3.0)
    return model


def _batchnorm1d_eval() -> nn.Module:
    model = _init(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)), 4)
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        model[1].running_var.copy_(torch.tensor([2.0, 0.5, 1.5, 1.0]))
    return model.eval()


def _images(n: int = 4) -> torch.Tensor:
    return digits(n=n, classes=10, seed=5)[0][:, :, 2:7, 2:7].contiguous()   # (n, 1, 5, 5)


CASES = {
    **{f"linear+{a}": (lambda a=a: (_mlp_with(a), gaussian(5, 3, seed=7))) for a in ACTIVATIONS},
    "conv2d": lambda: (_conv(None), _images()),
    "maxpool": lambda: (_conv(nn.MaxPool2d(2)), _images()),
    "avgpool": lambda: (_conv(nn.AvgPool2d(2)), _images()),
    "embedding": lambda: (_embedding(), tokens(n=5, length=3, vocab=5, seed=1)),
    "attention": lambda: (attention_net(seed=2), tokens(n=4, length=3, vocab=5, seed=2)),
    "layernorm": lambda: (layernorm_mlp(seed=3), gaussian(5, 3, seed=8)),
    "batchnorm1d_eval": lambda: (_batchnorm1d_eval(), gaussian(5, 3, seed=9)),
    "batchnorm2d_eval": lambda: (bn_convnet(seed=4), digits(n=4, classes=10, seed=6)[0]),
    "no_forward_rule": lambda: (no_forward_mlp(seed=5), gaussian(5, 2, seed=10)),
}
NATURALLY_REVERSE = {"no_forward_rule"}


@functools.cache
def _case(name: str):
    """(problem, θ, H_ref, J_ref) at the model's seeded parameters, MSE-sum to random targets."""
    model, X = CASES[name]()
    with torch.no_grad():
        k = model(X).shape[1]
    problem = lg.Problem(model, X, gaussian(X.shape[0], k, seed=11))
    theta = problem.theta
    return (problem, theta, autograd_hessian(problem.loss_at, theta),
            autograd_jacobian(problem.output_fn, theta))


def _problem(name: str, forward_ad: bool):
    problem, theta, H, J = _case(name)
    if not forward_ad:
        problem = copy.copy(problem)
        problem.forward_ad = False                     # the reverse-only routes
    return problem, theta, H, J


PARAMS = [(name, fwd) for name in CASES for fwd in (True, False)
          if not (fwd and name in NATURALLY_REVERSE)]
IDS = [f"{n}-{'forward' if f else 'reverse'}" for n, f in PARAMS]


def test_every_case_has_a_non_trivial_hessian_and_the_probe_agrees():
    for name in CASES:
        problem, _, H, _ = _case(name)
        assert float(H.abs().max()) > 1e-3, name
        assert problem.forward_ad is (name not in NATURALLY_REVERSE), (name, problem.ad_notes)
    assert "forward-mode AD is unavailable" in _case("no_forward_rule")[0].ad_notes


def test_references_agree_with_finite_differences():
    """The two references are independent: double backward against differences of the gradient."""
    for name in CASES:
        problem, theta, H, J = _case(name)
        assert max_rel(fd_hessian(problem.loss_at, theta), H) < FD_RTOL, name
        assert max_rel(fd_jacobian(problem.output_fn, theta), J) < FD_RTOL, name


@pytest.mark.parametrize("name, forward_ad", PARAMS, ids=IDS)
def test_dense_hessian_both_column_routes(name, forward_ad):
    problem, theta, H, _ = _problem(name, forward_ad)
    for mode in (None, "forward", "reverse"):
        if mode == "forward" and not forward_ad:
            continue
        Hl = lg.hessian(problem, theta, mode=mode)
        assert Hl.dtype == F64 and torch.equal(Hl, Hl.T)
        assert max_rel(Hl, H) < AUTOGRAD_RTOL, (name, mode)


@pytest.mark.parametrize("name, forward_ad", PARAMS, ids=IDS)
def test_hvp_single_and_blocks_in_both_modes(name, forward_ad):
    problem, theta, H, _ = _problem(name, forward_ad)
    N = problem.n_params
    V = torch.randn(N, 3, generator=seeded(12), dtype=F64)
    for mode in HvpMode:
        hv = lg.hvp(problem, theta, V[:, 0], mode=mode)
        assert max_rel(hv, H @ V[:, 0]) < AUTOGRAD_RTOL, (name, mode)
        HV = make_hvp_block(problem, theta, mode)(V)
        assert HV.shape == (N, 3) and max_rel(HV, H @ V) < AUTOGRAD_RTOL, (name, mode)


@pytest.mark.parametrize("name, forward_ad", PARAMS, ids=IDS)
def test_jacobian_products_and_gram(name, forward_ad):
    problem, theta, _, J = _problem(name, forward_ad)
    assert max_rel(lg.jacobian(problem, theta), J) < AUTOGRAD_RTOL, name
    V = torch.randn(problem.n_params, 2, generator=seeded(13), dtype=F64)
    jv = make_jvp(problem, theta)
    assert max_rel(jv(V[:, 0]), J @ V[:, 0]) < AUTOGRAD_RTOL, name
    op = lg.jacobian_operator(problem, theta)
    assert max_rel(op.torch_matmat(V), J @ V) < AUTOGRAD_RTOL, name
    K = lg.ntk_gram(problem, theta)
    assert max_rel(K, J @ J.T) < AUTOGRAD_RTOL, name


@pytest.mark.parametrize("name, forward_ad", PARAMS, ids=IDS)
def test_gauss_newton_and_residual_sum_to_the_hessian(name, forward_ad):
    problem, theta, H, J = _problem(name, forward_ad)
    G = lg.gauss_newton(problem, theta)
    assert max_rel(G, 2 * J.T @ J) < AUTOGRAD_RTOL, name           # MSE-sum: ∇²ₓC = 2I
    R = lg.residual_hessian(problem, theta)
    assert max_rel(G + R, H) < AUTOGRAD_RTOL, name
    assert float(R.abs().max()) > 1e-6 * float(H.abs().max()), name   # both terms present
