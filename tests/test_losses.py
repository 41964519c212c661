"""Losses C(x, y): values, output gradients and output-Hessian blocks against torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from oracles import loss_output_hessian_blocks, loss_value

from lossgeom.losses import LOSS_NAMES, REDUCTIONS, Loss

F64 = torch.float64
N_SAMPLES, K = 4, 3


def _data(name: str, k: int = K, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if name == "mse":
        return (torch.randn(N_SAMPLES, k, generator=g, dtype=F64),
                torch.randn(N_SAMPLES, k, generator=g, dtype=F64))
    if name == "bce":
        return (torch.rand(N_SAMPLES, k, generator=g, dtype=F64) * 0.8 + 0.1,
                torch.rand(N_SAMPLES, k, generator=g, dtype=F64))
    if name == "ce_prob":
        return (torch.softmax(torch.randn(N_SAMPLES, k, generator=g, dtype=F64), -1),
                torch.softmax(torch.randn(N_SAMPLES, k, generator=g, dtype=F64), -1))
    # softmax_ce: logits and soft labels (rows summing to one)
    return (torch.randn(N_SAMPLES, k, generator=g, dtype=F64),
            torch.softmax(torch.randn(N_SAMPLES, k, generator=g, dtype=F64), -1))


CASES = [(name, red) for name in LOSS_NAMES for red in REDUCTIONS]


@pytest.mark.parametrize("name, reduction", CASES)
def test_value_matches_torch_functional(name, reduction):
    x, y = _data(name)
    got = Loss(name, reduction)(x, y)
    assert got.shape == () and got.dtype == F64
    assert torch.allclose(got, loss_value(name, x, y, reduction), rtol=1e-13)


@pytest.mark.parametrize("name, reduction", CASES)
def test_output_gradient_matches_autograd(name, reduction):
    x, y = _data(name)
    lf = Loss(name, reduction)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(loss_value(name, xr, y, reduction), xr)
    assert torch.allclose(lf.output_grad(x, y), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, reduction", CASES)
def test_output_hessian_blocks_match_closed_form_and_autograd(name, reduction):
    x, y = _data(name)
    lf = Loss(name, reduction)
    blocks = lf.output_hessian_blocks(x, y)
    assert blocks.shape == (N_SAMPLES, K, K)
    assert torch.allclose(blocks, loss_output_hessian_blocks(name, x, y, reduction), rtol=1e-12)
    full = torch.func.hessian(lambda z: loss_value(name, z.reshape(x.shape), y, reduction))(
        x.reshape(-1))
    assert torch.allclose(lf.output_hessian(x, y), full, rtol=1e-10, atol=1e-13)
    u = torch.randn(N_SAMPLES, K, generator=torch.Generator().manual_seed(3), dtype=F64)
    assert torch.allclose(lf.output_hvp(x, y, u).reshape(-1), full @ u.reshape(-1), rtol=1e-10,
                          atol=1e-13)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_mean_is_sum_times_scale(name):
    """api.md: "mean" follows PyTorch: mse/bce divide by n·k, ce_prob/softmax_ce by n."""
    x, y = _data(name)
    s, m = Loss(name, "sum"), Loss(name, "mean")
    factor = 1 / (N_SAMPLES * K) if name in ("mse", "bce") else 1 / N_SAMPLES
    assert m.scale(N_SAMPLES, K) == pytest.approx(factor) and s.scale(N_SAMPLES, K) == 1.0
    assert torch.allclose(m(x, y), factor * s(x, y), rtol=1e-14)
    assert torch.allclose(m.output_grad(x, y), factor * s.output_grad(x, y), rtol=1e-13)
    assert torch.allclose(m.output_hessian_blocks(x, y), factor * s.output_hessian_blocks(x, y),
                          rtol=1e-13)


def test_softmax_ce_integer_labels_equal_one_hot_and_torch_cross_entropy():
    x, _ = _data("softmax_ce")
    labels = torch.tensor([0, 2, 1, 2])
    onehot = F.one_hot(labels, K).to(F64)
    for red in REDUCTIONS:
        assert torch.allclose(Loss("softmax_ce", red)(x, onehot),
                              F.cross_entropy(x, labels, reduction=red), rtol=1e-13)


def test_softmax_block_has_ones_in_its_kernel():
    """§6.4: each block diag p − ppᵀ kills 1, so ∇²ₓC is singular on logits."""
    x, y = _data("softmax_ce")
    blocks = Loss("softmax_ce").output_hessian_blocks(x, y)
    ones = torch.ones(N_SAMPLES, K, 1, dtype=F64)
    assert float((blocks @ ones).abs().max()) < 1e-15
    lam = torch.linalg.eigvalsh(blocks)
    assert bool((lam[:, 1:] > 0).all())        # rank k − 1 per block (Lemma 2.6)


def test_spec_worked_example_softmax_output_hessian():
    """§2.7: x₁ = (1, 0, −1): eigenvalues of H(x₁) = diag σ − σσᵀ are {0, .118553, .370904}."""
    x = torch.tensor([[1.0, 0.0, -1.0]], dtype=F64)
    y = torch.tensor([[0.5, 0.3, 0.2]], dtype=F64)
    lam = torch.linalg.eigvalsh(Loss("softmax_ce").output_hessian_blocks(x, y)[0])
    assert torch.allclose(lam, torch.tensor([0.0, 0.118553, 0.370904], dtype=F64), atol=1e-6)


def test_structure_flags():
    assert all(Loss(n).is_builtin and Loss(n).is_convex for n in LOSS_NAMES)
    custom = Loss("custom", fn=lambda x, y: ((x - y) ** 4).sum())
    assert not custom.is_builtin and not custom.is_convex
    assert custom.output_hessian_blocks(*_data("mse")) is None
    assert [n for n in LOSS_NAMES if Loss(n).residual_vanishes_at_fit] == ["mse", "bce",
                                                                          "softmax_ce"]
    pos = torch.tensor([[0.2, 0.8]], dtype=F64)
    zero = torch.tensor([[0.0, 1.0]], dtype=F64)
    assert Loss("mse").hessian_positive_on_fit(zero) and Loss("bce").hessian_positive_on_fit(zero)
    assert Loss("ce_prob").hessian_positive_on_fit(pos)
    assert not Loss("ce_prob").hessian_positive_on_fit(zero)      # §1.3 caveat
    assert not Loss("softmax_ce").hessian_positive_on_fit(pos)    # §6.4
    assert not custom.hessian_positive_on_fit(pos)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_fit_residual_vanishes_exactly_at_the_minimiser(name):
    _, y = _data(name)
    x_star = torch.log(y) + 0.7 if name == "softmax_ce" else y.clone()
    if name == "bce":
        y = y.clamp(0.05, 0.95)
        x_star = y.clone()
    lf = Loss(name)
    assert float(lf.fit_residual(x_star, y).abs().max()) < 1e-14
    if lf.residual_vanishes_at_fit:
        assert float(lf.output_grad(x_star, y).abs().max()) < 1e-13
    if name == "softmax_ce":   # a shift by a constant per row is still a minimiser (§2.7)
        assert float(lf.fit_residual(x_star + 3.0, y).abs().max()) < 1e-14
    step = 0.05 * torch.arange(y.shape[1], dtype=F64)
    x_off = x_star + step if name != "ce_prob" else torch.softmax(torch.log(y) + step, -1)
    assert float(lf.fit_residual(x_off, y).abs().max()) > 1e-3


def test_bce_hessian_positive_for_hard_labels_inside_the_interval():
    """§1.3: y/p² + (1 − y)/(1 − p)² > 0 for y ∈ {0, 1} and p ∈ (0, 1)."""
    x = torch.tensor([[0.3, 0.9]], dtype=F64)
    y = torch.tensor([[0.0, 1.0]], dtype=F64)
    d = torch.diagonal(Loss("bce").output_hessian_blocks(x, y)[0])
    assert torch.allclose(d, torch.tensor([1 / 0.7**2, 1 / 0.9**2], dtype=F64))


def test_ce_prob_zero_target_with_zero_output_has_finite_derivatives():
    """C = −Σ y log x does not depend on x_c where y_c = 0: ∂C/∂x_c = ∂²C/∂x_c² = 0 there,
    also when x_c = 0 (a perfect fit to a one-hot target)."""
    x = torch.tensor([[0.3, 0.7, 0.0]], dtype=F64)
    y = x.clone()
    lf = Loss("ce_prob")
    assert torch.isfinite(lf(x, y))
    assert torch.allclose(lf.output_grad(x, y), torch.tensor([[-1.0, -1.0, 0.0]], dtype=F64))
    blocks = lf.output_hessian_blocks(x, y)
    assert bool(torch.isfinite(blocks).all())
    assert float(blocks[0, 2, 2]) == 0.0


def test_reference_outputs():
    y = torch.full((2, 4), 0.25, dtype=F64)
    assert torch.equal(Loss("mse").reference_outputs(y), torch.zeros_like(y))
    assert torch.equal(Loss("bce").reference_outputs(y), torch.full_like(y, 0.5))
    assert torch.equal(Loss("ce_prob").reference_outputs(y), torch.full_like(y, 0.25))
    assert torch.equal(Loss("softmax_ce").reference_outputs(y), torch.zeros_like(y))
