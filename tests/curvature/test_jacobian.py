"""Behavioral Jacobian J (n·k, N): dense, operator, blocks and the NTK Gram matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import ALL64, SMOOTH, callable_batch_coupled, gaussian, linear_net, tanh_random_point
from oracles import fd_jacobian, reference_jacobian, relative_error

import lossgeom as lg
from lossgeom.curvature import make_jvp, make_vjp
from lossgeom.curvature._jacobian import jacobian_blocks
from lossgeom.errors import DenseTooLargeError

F64 = torch.float64


@pytest.mark.parametrize("name", sorted(ALL64))
def test_jacobian_matches_autograd_reference(name):
    problem, theta = ALL64[name]()
    J = lg.jacobian(problem, theta)
    assert J.shape == (problem.n_samples * problem.n_outputs, problem.n_params)
    assert J.dtype == F64
    ref = reference_jacobian(problem.output_fn, theta)
    assert torch.allclose(J, ref, rtol=1e-12, atol=1e-13 * float(ref.abs().max()))


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_jacobian_matches_central_differences(name):
    """central differences in float64, h = eps^(1/3)·max(1, |θ|∞), rtol ≈ 1e-6."""
    problem, theta = SMOOTH[name]()
    J = lg.jacobian(problem, theta)
    fd = fd_jacobian(problem.output_fn, theta)
    assert relative_error(J, fd) < 1e-6


def test_rows_are_sample_major():
    """Row block i (k rows) holds the gradients of sample i's outputs (docs/architecture.md)."""
    problem, theta = tanh_random_point()
    J = lg.jacobian(problem, theta)
    k = problem.n_outputs
    for i in range(problem.n_samples):
        xi = problem.inputs[i]
        Ji = torch.autograd.functional.jacobian(
            lambda t, xi=xi: problem.sample_output_fn(t, xi), theta)
        assert torch.allclose(J[i * k:(i + 1) * k], Ji, rtol=1e-12, atol=1e-14)


def test_linear_model_jacobian_is_the_data():
    X = gaussian(5, 3, seed=3)
    model = torch.nn.Linear(3, 1, bias=False).double()
    problem = lg.Problem(model, X, torch.zeros(5, 1, dtype=F64))
    assert torch.equal(lg.jacobian(problem), X)


def test_gradient_is_J_transpose_output_gradient():
    """§1.1: ∇L = Jᵀ ∇ₓC."""
    for name in ("tanh_random_point", "softmax_onehot_random_point", "bce_random_point",
                 "ce_prob_onehot_random_point", "callable_batch_coupled"):
        problem, theta = ALL64[name]()
        J = lg.jacobian(problem, theta)
        gx = problem.output_grad(theta).reshape(-1)
        assert torch.allclose(problem.grad(theta), J.T @ gx, rtol=1e-12, atol=1e-13), name


@pytest.mark.parametrize("name", sorted(ALL64))
def test_operator_matches_dense(name):
    problem, theta = ALL64[name]()
    J = lg.jacobian(problem, theta)
    op = lg.jacobian_operator(problem, theta)
    m, N = J.shape
    g = torch.Generator().manual_seed(5)
    v, u = torch.randn(N, generator=g, dtype=F64), torch.randn(m, generator=g, dtype=F64)
    V, U = torch.randn(N, 3, generator=g, dtype=F64), torch.randn(m, 2, generator=g, dtype=F64)
    atol = 1e-12 * float(J.abs().max())
    assert torch.allclose(op.torch_matvec(v), J @ v, rtol=1e-12, atol=atol)
    assert torch.allclose(op.torch_rmatvec(u), J.T @ u, rtol=1e-12, atol=atol)
    assert torch.allclose(op.torch_matmat(V), J @ V, rtol=1e-12, atol=atol)
    assert torch.allclose(op.torch_rmatmat(U), J.T @ U, rtol=1e-12, atol=atol)
    np.testing.assert_allclose(op.matvec(v.numpy()), (J @ v).numpy(), rtol=1e-12, atol=atol)
    np.testing.assert_allclose(op.rmatvec(u.numpy()), (J.T @ u).numpy(), rtol=1e-12, atol=atol)
    assert torch.allclose(op.materialise(), J, rtol=1e-12, atol=atol)


def test_factories_are_the_operator_products():
    problem, theta = tanh_random_point()
    J = lg.jacobian(problem, theta)
    v = torch.linspace(-1, 1, problem.n_params, dtype=F64)
    u = torch.linspace(1, 2, J.shape[0], dtype=F64)
    assert torch.allclose(make_jvp(problem, theta)(v), J @ v, rtol=1e-12)
    assert torch.allclose(make_vjp(problem, theta)(u), J.T @ u, rtol=1e-12)


@pytest.mark.parametrize("name", ["tanh_random_point", "callable_batch_coupled",
                                  "softmax_onehot_random_point"])
def test_ntk_gram_is_J_Jt_also_in_parameter_blocks(name):
    problem, theta = ALL64[name]()
    J = lg.jacobian(problem, theta)
    K = lg.ntk_gram(problem, theta)
    assert torch.allclose(K, J @ J.T, rtol=1e-12, atol=1e-13 * float(K.abs().max()))
    assert torch.equal(K, K.T)
    m = J.shape[0]
    # a budget of a few columns forces one block per parameter tensor
    Kb = lg.ntk_gram(problem, theta, work_bytes=8 * m * 2)
    assert torch.allclose(Kb, K, rtol=1e-12, atol=1e-13 * float(K.abs().max()))


def test_jacobian_blocks_are_columns_of_J():
    problem, theta = tanh_random_point()
    J = lg.jacobian(problem, theta)
    offsets = np.cumsum((0,) + problem.param_numels)
    for idx in ([0], [1, 2], [3]):
        cols = torch.cat([torch.arange(int(offsets[i]), int(offsets[i + 1])) for i in idx])
        assert torch.allclose(jacobian_blocks(problem, theta, idx), J[:, cols], rtol=1e-12)
    # tiny working memory: one sample per chunk, same result
    assert torch.allclose(jacobian_blocks(problem, theta, [0, 1, 2, 3], work_bytes=1), J,
                          rtol=1e-12)


def test_batch_coupled_model_uses_whole_batch_route():
    problem, theta = callable_batch_coupled()
    assert problem.per_sample is False
    J = lg.jacobian(problem, theta)
    ref = reference_jacobian(problem.output_fn, theta)
    assert torch.allclose(J, ref, rtol=1e-12, atol=1e-14)
    assert lg.numerical_rank(J).rank == lg.numerical_rank(ref).rank


def test_per_sample_flag_for_ordinary_models():
    assert tanh_random_point()[0].per_sample is True
    assert linear_net()[0].per_sample is True


def test_dense_jacobian_refused_above_budget():
    problem, theta = tanh_random_point()
    m, N = problem.n_samples * problem.n_outputs, problem.n_params
    with pytest.raises(DenseTooLargeError) as err:
        lg.jacobian(problem, theta, max_bytes=8 * m * N - 1)
    assert "jacobian_operator" in str(err.value) and "jacobian(problem, theta)" in str(err.value)
    assert lg.jacobian(problem, theta, max_bytes=8 * m * N).shape == (m, N)


def test_default_theta_is_problem_theta_and_not_aliased():
    problem, _ = tanh_random_point()
    assert torch.equal(lg.jacobian(problem), lg.jacobian(problem, problem.theta))
    t = problem.theta
    t += 1.0
    assert not torch.equal(problem.theta, t)


@pytest.mark.parametrize("widths,activation,bias", [
    ([3, 5, 4, 2], "tanh", True), ([3, 6, 1], "relu", False), ([4, 5, 3], "softplus", "output"),
    ([2, 3, 3, 2], "square", True), ([2, 4, 1], "linear", True)])
def test_layerwise_ntk_equals_jacobian_gram(widths, activation, bias):
    """K = Σ_l (ΔΔᵀ) ⊙ (AAᵀ + 1) for an MLP equals J Jᵀ from per-sample Jacobians."""
    gen = torch.Generator().manual_seed(3)
    model = lg.mlp(widths, activation, bias, generator=gen)
    X = torch.randn(7, widths[0], generator=gen, dtype=torch.float64)
    p = lg.Problem(model, X, torch.randn(7, widths[-1], generator=gen, dtype=torch.float64))
    J = lg.jacobian(p)
    K = lg.ntk_gram(p, method="layerwise")
    assert torch.allclose(K, J @ J.T, rtol=1e-12, atol=1e-12 * float((J @ J.T).abs().max()))


def test_layerwise_ntk_refuses_other_models():
    p = lg.Problem(lambda params, x: x @ params["w"], torch.ones(2, 1), torch.zeros(2, 1),
                   params={"w": torch.ones(1, 1, dtype=torch.float64)})
    with pytest.raises(ValueError, match="layerwise"):
        lg.ntk_gram(p, method="layerwise")
    assert lg.ntk_gram(p).shape == (2, 2)   # auto falls back to the Jacobian route
