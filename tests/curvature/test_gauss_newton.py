"""Gauss–Newton term G = Jᵀ∇²ₓC J and residual term R: H = G + R, closed forms at fits."""

from __future__ import annotations

import pytest
import torch
from cases import ALL64, EXACT_FIT_MSE, softmax_soft_label_fit, tanh_251_exact_fit
from oracles import (
    block_diagonal,
    loss_output_hessian_blocks,
    reference_hessian,
    reference_jacobian,
)

import lossgeom as lg
from lossgeom.curvature import (
    gauss_newton_operator,
    make_gauss_newton_product,
    make_residual_product,
    residual_operator,
)
from lossgeom.errors import DenseTooLargeError

F64 = torch.float64


def _scale(problem, theta):
    return float(lg.hessian(problem, theta).abs().max()) + 1e-300


@pytest.mark.parametrize("name", sorted(ALL64))
def test_hessian_is_gauss_newton_plus_residual(name):
    """§1.1: ∇²L = Jᵀ∇²ₓC J + Σₐ ∂C/∂xₐ ∇²xₐ (R is computed independently of H)."""
    problem, theta = ALL64[name]()
    H, G, R = (lg.hessian(problem, theta), lg.gauss_newton(problem, theta),
               lg.residual_hessian(problem, theta))
    assert G.dtype == R.dtype == F64
    assert torch.equal(G, G.T) and torch.equal(R, R.T)
    assert torch.allclose(G + R, H, rtol=0, atol=1e-11 * _scale(problem, theta))


@pytest.mark.parametrize("name", sorted(ALL64))
def test_gauss_newton_matches_closed_form_output_hessian(name):
    """G = Jᵀ W J with W from the theory's closed forms for built-in losses, else torch.func.hessian."""
    problem, theta = ALL64[name]()
    J = reference_jacobian(problem.output_fn, theta)
    x = problem.output_fn(theta).detach()
    lf = problem.loss_fn
    if lf.is_builtin:
        W = block_diagonal(loss_output_hessian_blocks(lf.name, x, problem.targets, lf.reduction))
    else:
        W = torch.func.hessian(lambda z: lf(z.reshape(x.shape), problem.targets))(x.reshape(-1))
    G = lg.gauss_newton(problem, theta)
    ref = J.T @ W @ J
    assert torch.allclose(G, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max() + 1e-300))


@pytest.mark.parametrize("name", sorted(ALL64))
def test_gauss_newton_is_psd_for_convex_losses(name):
    problem, theta = ALL64[name]()
    assert problem.loss_fn.is_convex
    lam = torch.linalg.eigvalsh(lg.gauss_newton(problem, theta))
    assert float(lam.min()) >= -1e-12 * float(lam.abs().max())


@pytest.mark.parametrize("name", sorted(EXACT_FIT_MSE))
def test_mse_perfect_fit_hessian_is_two_JtJ(name):
    """§6.1 Claim 3 / §7 row 13: at an MSE-sum perfect fit ∇²L = 2JᵀJ and R = 0."""
    problem, theta = EXACT_FIT_MSE[name]()
    J = reference_jacobian(problem.output_fn, theta)
    H = reference_hessian(problem.loss_at, theta)
    scale = float(H.abs().max())
    assert torch.allclose(H, 2 * J.T @ J, rtol=0, atol=1e-10 * scale)
    assert float(lg.residual_hessian(problem, theta).abs().max()) <= 1e-10 * scale
    assert torch.allclose(lg.gauss_newton(problem, theta), 2 * J.T @ J, rtol=0, atol=1e-12 * scale)


def test_residual_vanishes_at_softmax_soft_label_fit():
    """§6.4: at softmax(f(xᵢ)) = yᵢ, ∇ₓC = 0 so R = 0 and ∇²L = G."""
    problem, theta = softmax_soft_label_fit()
    R = lg.residual_hessian(problem, theta)
    H = lg.hessian(problem, theta)
    assert float(R.abs().max()) <= 1e-10 * float(H.abs().max())


def test_residual_is_the_dominant_term_for_onehot_softmax():
    """§6.4: one-hot labels at a random point: G has rank 4, H rank 22 (R dominates)."""
    problem, theta = ALL64["softmax_onehot_random_point"]()
    G, R = lg.gauss_newton(problem, theta), lg.residual_hessian(problem, theta)
    g_inert, r_inert = lg.inertia(G, rtol=1e-9), lg.inertia(R, rtol=1e-9)
    assert g_inert.as_list() == [4, 0, 29]
    assert r_inert.negative > 0 and r_inert.positive > 0     # R is indefinite
    h_inert = lg.inertia(G + R, rtol=1e-9)
    assert h_inert.positive + h_inert.negative == 22


@pytest.mark.parametrize("name", ["tanh_random_point", "softmax_onehot_random_point",
                                  "ce_prob_onehot_random_point", "callable_batch_coupled",
                                  "bce_random_point"])
def test_operators_match_dense(name):
    problem, theta = ALL64[name]()
    G, R = lg.gauss_newton(problem, theta), lg.residual_hessian(problem, theta)
    Gop, Rop = gauss_newton_operator(problem, theta), residual_operator(problem, theta)
    V = torch.randn(problem.n_params, 3, generator=torch.Generator().manual_seed(11), dtype=F64)
    scale = _scale(problem, theta)
    for dense, op in ((G, Gop), (R, Rop)):
        assert op.symmetric and op.shape == dense.shape
        assert torch.allclose(op.torch_matmat(V), dense @ V, rtol=0, atol=1e-11 * scale)
        assert torch.allclose(op.torch_matvec(V[:, 0]), dense @ V[:, 0], rtol=0,
                              atol=1e-11 * scale)
        assert torch.allclose(op.materialise(), dense, rtol=0, atol=1e-11 * scale)
    gp, rp = make_gauss_newton_product(problem, theta), make_residual_product(problem, theta)
    assert torch.allclose(gp(V[:, 1]) + rp(V[:, 1]), lg.hvp(problem, theta, V[:, 1]), rtol=0,
                          atol=1e-11 * scale)
    assert Gop.psd and not Rop.psd


def test_custom_loss_gauss_newton_uses_autograd_output_hessian():
    """A callable loss C(x, y) = Σ (x − y)⁴: no closed-form blocks, G still = Jᵀ ∇²ₓC J."""
    base, theta = tanh_251_exact_fit()
    problem = lg.Problem(base.model, base.inputs, base.targets + 0.3,
                         loss=lambda x, y: ((x - y) ** 4).sum())
    J = reference_jacobian(problem.output_fn, theta)
    r = (problem.output_fn(theta) - problem.targets).reshape(-1).detach()
    W = torch.diag(12 * r**2)
    assert torch.allclose(lg.gauss_newton(problem, theta), J.T @ W @ J, rtol=1e-10, atol=1e-12)
    H = lg.hessian(problem, theta)
    assert torch.allclose(lg.gauss_newton(problem, theta) + lg.residual_hessian(problem, theta),
                          H, rtol=0, atol=1e-11 * float(H.abs().max()))


def test_dense_terms_refused_above_budget():
    problem, theta = ALL64["tanh_random_point"]()
    N = problem.n_params
    with pytest.raises(DenseTooLargeError, match="gauss_newton_operator"):
        lg.gauss_newton(problem, theta, max_bytes=8 * N * N - 1)
    with pytest.raises(DenseTooLargeError, match="residual_operator"):
        lg.residual_hessian(problem, theta, max_bytes=8 * N * N - 1)
