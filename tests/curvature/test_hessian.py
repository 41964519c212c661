"""Loss Hessian: dense matrix, HVP (reverse and forward), operator, blocks; against autograd and
finite differences of the gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import ALL64, NONCRITICAL, SMOOTH, gaussian, mse_mean_random_point, tanh_random_point
from oracles import fd_directional, fd_jacobian, reference_hessian, relative_error

import lossgeom as lg
from lossgeom.curvature import HvpMode, make_hvp, make_hvp_block
from lossgeom.errors import DenseTooLargeError

F64 = torch.float64


@pytest.mark.parametrize("name", sorted(ALL64))
def test_dense_hessian_matches_autograd_reference(name):
    problem, theta = ALL64[name]()
    H = lg.hessian(problem, theta)
    assert H.shape == (problem.n_params,) * 2 and H.dtype == F64
    assert torch.equal(H, H.T)
    ref = reference_hessian(problem.loss_at, theta)
    assert torch.allclose(H, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max()))


@pytest.mark.parametrize("name", sorted(NONCRITICAL))
def test_gradient_matches_central_differences(name):
    problem, theta = NONCRITICAL[name]()
    g = problem.grad(theta)
    fd = fd_jacobian(lambda t: problem.loss_at(t).reshape(1), theta)[0]
    assert relative_error(g, fd) < 1e-6


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_hvp_matches_central_differences_of_gradients(name):
    """H v ≈ (∇L(θ + h v) − ∇L(θ − h v)) / 2h, float64, rtol ≈ 1e-6."""
    problem, theta = SMOOTH[name]()
    v = torch.randn(problem.n_params, generator=torch.Generator().manual_seed(7), dtype=F64)
    hv = lg.hvp(problem, theta, v)
    fd = fd_directional(lambda t: torch.func.grad(problem.loss_at)(t), theta, v)
    assert relative_error(hv, fd) < 1e-6


@pytest.mark.parametrize("columns_per_pass", [1, 2, 7])
def test_reverse_block_in_slices_is_the_dense_hessian_times_v(monkeypatch, columns_per_pass):
    """A block wider than HVP_BATCH_BYTES allows goes in slices (single HVPs at 1): ∇²L V."""
    import lossgeom.curvature._hessian as hs
    problem, theta = tanh_random_point()
    N = problem.n_params
    monkeypatch.setattr(hs, "HVP_BATCH_BYTES", 8 * N * columns_per_pass)
    V = torch.randn(N, 5, generator=torch.Generator().manual_seed(9), dtype=F64)
    H = reference_hessian(problem.loss_at, theta)
    HV = make_hvp_block(problem, theta, HvpMode.REVERSE)(V)
    assert HV.shape == (N, 5)
    assert torch.allclose(HV, H @ V, rtol=1e-10, atol=1e-12 * float(H.abs().max()))


@pytest.mark.parametrize("name", sorted(ALL64))
def test_forward_and_reverse_hvp_agree(name):
    problem, theta = ALL64[name]()
    V = torch.randn(problem.n_params, 3, generator=torch.Generator().manual_seed(8), dtype=F64)
    rev = make_hvp_block(problem, theta, HvpMode.REVERSE)(V)
    fwd = make_hvp_block(problem, theta, "forward")(V)
    atol = 1e-12 * float(rev.abs().max()) + 1e-300
    assert torch.allclose(rev, fwd, rtol=1e-10, atol=atol)
    for j in range(3):
        assert torch.allclose(lg.hvp(problem, theta, V[:, j], mode="forward"), fwd[:, j],
                              rtol=1e-10, atol=atol)
        assert torch.allclose(make_hvp(problem, theta)(V[:, j]), rev[:, j], rtol=1e-10, atol=atol)


@pytest.mark.parametrize("name", ["tanh_random_point", "softmax_onehot_random_point",
                                  "callable_batch_coupled", "relu_dead_pattern"])
def test_hessian_operator_matches_dense(name):
    problem, theta = ALL64[name]()
    H = lg.hessian(problem, theta)
    op = lg.hessian_operator(problem, theta)
    assert op.shape == H.shape and op.symmetric
    g = torch.Generator().manual_seed(9)
    v, V = torch.randn(H.shape[0], generator=g, dtype=F64), torch.randn(H.shape[0], 4, generator=g,
                                                                        dtype=F64)
    atol = 1e-12 * float(H.abs().max())
    assert torch.allclose(op.torch_matvec(v), H @ v, rtol=1e-10, atol=atol)
    assert torch.allclose(op.torch_rmatvec(v), H @ v, rtol=1e-10, atol=atol)
    assert torch.allclose(op.torch_matmat(V), H @ V, rtol=1e-10, atol=atol)
    np.testing.assert_allclose(op.matvec(v.numpy()), (H @ v).numpy(), rtol=1e-10, atol=atol)
    np.testing.assert_allclose(op.matmat(V.numpy()), (H @ V).numpy(), rtol=1e-10, atol=atol)
    assert torch.allclose(op.materialise(), H, rtol=1e-10, atol=atol)
    assert op.n_matvec == 1 + 1 + 4 + 1 + 4 + H.shape[0]
    fwd = lg.hessian_operator(problem, theta, mode="forward")
    assert torch.allclose(fwd.torch_matmat(V), H @ V, rtol=1e-10, atol=atol)


def test_linear_model_mse_hessian_closed_form():
    """MSE-sum on a linear model: ∇²L = 2XᵀX; reduction="mean" divides by n·k."""
    X = gaussian(6, 3, seed=4)
    Y = gaussian(6, 1, seed=5)
    model = torch.nn.Linear(3, 1, bias=False).double()
    H = lg.hessian(lg.Problem(model, X, Y))
    assert torch.allclose(H, 2 * X.T @ X, rtol=1e-13)
    Hm = lg.hessian(lg.Problem(model, X, Y, reduction="mean"))
    assert torch.allclose(Hm, 2 * X.T @ X / 6, rtol=1e-13)


def test_mean_reduction_scales_hessian_by_one_over_nk():
    problem_m, theta = mse_mean_random_point()
    problem_s, _ = tanh_random_point()
    n, k = problem_m.n_samples, problem_m.n_outputs
    assert torch.allclose(lg.hessian(problem_m, theta), lg.hessian(problem_s, theta) / (n * k),
                          rtol=1e-12, atol=1e-15)


def test_dense_hessian_refused_above_budget_naming_the_operator():
    problem, theta = tanh_random_point()
    N = problem.n_params
    with pytest.raises(DenseTooLargeError) as err:
        lg.hessian(problem, theta, max_bytes=8 * N * N - 1)
    msg = str(err.value)
    assert "hessian(problem, theta)" in msg and "hessian_operator" in msg
    assert f"{N} x {N}" in msg
    assert lg.hessian(problem, theta, max_bytes=8 * N * N).shape == (N, N)


def test_hvp_accepts_numpy_and_default_theta():
    problem, _ = tanh_random_point()
    v = np.linspace(-1, 1, problem.n_params)
    H = lg.hessian(problem)
    assert torch.allclose(lg.hvp(problem, None, v), H @ torch.as_tensor(v), rtol=1e-10,
                          atol=1e-13)


def test_hvp_leaves_inputs_untouched():
    problem, theta = tanh_random_point()
    theta = theta.requires_grad_(False)
    v = torch.ones(problem.n_params, dtype=F64)
    before_t, before_v = theta.clone(), v.clone()
    lg.hvp(problem, theta, v)
    lg.hessian_operator(problem, theta).torch_matvec(v)
    assert torch.equal(theta, before_t) and torch.equal(v, before_v)
    assert not theta.requires_grad and theta.grad is None
