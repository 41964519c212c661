"""CurvatureOperator: torch and scipy products, counting, materialise, budget, declared structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import ALL64, float32_exact_fit, gen
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import lossgeom as lg
from lossgeom.curvature import gauss_newton_operator, residual_operator
from lossgeom.errors import DenseTooLargeError
from lossgeom.linalg import CurvatureOperator

F64 = torch.float64


def _rect(m=5, n=7, seed=0):
    A = torch.randn(m, n, generator=gen(seed), dtype=F64)
    op = CurvatureOperator((m, n), lambda v: A @ v, lambda u: A.T @ u,
                           matmat=lambda V: A @ V, rmatmat=lambda U: A.T @ U, name="rect")
    return A, op


def test_torch_products_match_matrix_and_are_counted():
    A, op = _rect()
    v, u = torch.randn(7, dtype=F64), torch.randn(5, dtype=F64)
    V, U = torch.randn(7, 3, dtype=F64), torch.randn(5, 4, dtype=F64)
    assert torch.allclose(op.torch_matvec(v), A @ v)
    assert torch.allclose(op.torch_rmatvec(u), A.T @ u)
    assert torch.allclose(op.torch_matmat(V), A @ V)
    assert torch.allclose(op.torch_rmatmat(U), A.T @ U)
    assert op.n_matvec == 1 + 1 + 3 + 4


def test_scipy_products_match_matrix():
    A, op = _rect()
    An = A.numpy()
    v, u = np.random.default_rng(0).standard_normal(7), np.random.default_rng(1).standard_normal(5)
    V = np.random.default_rng(2).standard_normal((7, 3))
    assert isinstance(op, LinearOperator) and op.shape == (5, 7) and op.dtype == np.float64
    np.testing.assert_allclose(op.matvec(v), An @ v, rtol=1e-13)
    np.testing.assert_allclose(op.rmatvec(u), An.T @ u, rtol=1e-13)
    np.testing.assert_allclose(op.matmat(V), An @ V, rtol=1e-13)
    np.testing.assert_allclose(op @ v, An @ v, rtol=1e-13)
    np.testing.assert_allclose(op.T @ u, An.T @ u, rtol=1e-13)
    np.testing.assert_allclose(op.H.matmat(np.eye(5)), An.T, rtol=1e-13)
    np.testing.assert_allclose(op.matvec(v.reshape(-1, 1)).ravel(), An @ v, rtol=1e-13)


def test_column_loop_defaults_without_batched_products():
    A = torch.randn(4, 6, generator=gen(1), dtype=F64)
    op = CurvatureOperator((4, 6), lambda v: A @ v, lambda u: A.T @ u)
    assert torch.allclose(op.torch_matmat(torch.eye(6, dtype=F64)), A)
    assert torch.allclose(op.torch_rmatmat(torch.eye(4, dtype=F64)), A.T)
    assert op.n_matvec == 10


def test_materialise_matches_and_refuses_above_budget():
    A, op = _rect()
    assert torch.allclose(op.materialise(), A)
    assert torch.allclose(op.materialise(block=2), A)
    with pytest.raises(DenseTooLargeError) as err:
        op.materialise(max_bytes=8 * 5 * 7 - 1)
    msg = str(err.value)
    assert isinstance(err.value, MemoryError) and isinstance(err.value, ValueError)
    assert "rect" in msg and "280 B" in msg and "operator" in msg


def test_symmetric_operator_defaults_transpose_to_itself():
    S = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=F64)
    op = CurvatureOperator((2, 2), lambda v: S @ v, symmetric=True)
    u = torch.tensor([1.0, -1.0], dtype=F64)
    assert torch.allclose(op.torch_rmatvec(u), S @ u)
    assert op.H is op or np.allclose(op.H.matvec(u.numpy()), S.numpy() @ u.numpy())


def test_missing_transpose_and_bad_shapes():
    op = CurvatureOperator((3, 2), lambda v: torch.zeros(3, dtype=F64))
    with pytest.raises(NotImplementedError):
        op.torch_rmatvec(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="square"):
        CurvatureOperator((3, 2), lambda v: v, symmetric=True)


# -- declared structure of the curvature operators ---------------------------------------------------
def _operators(problem, theta):
    return {
        "hessian": lg.hessian_operator(problem, theta),
        "gauss_newton": gauss_newton_operator(problem, theta),
        "residual_hessian": residual_operator(problem, theta),
    }


@pytest.mark.parametrize("name", sorted(ALL64))
def test_declared_symmetry_and_psd_hold(name):
    """uᵀAv = vᵀAu for symmetric operators; vᵀGv ≥ −tol for psd ones."""
    problem, theta = ALL64[name]()
    N = problem.n_params
    g = gen(123)
    U, V = torch.randn(N, 6, generator=g, dtype=F64), torch.randn(N, 6, generator=g, dtype=F64)
    ops = _operators(problem, theta)
    # one scale for all three terms: |uᵀHv| ≤ ‖H‖ ‖u‖ ‖v‖ (R may vanish at a fit)
    HV = ops["hessian"].torch_matmat(V)
    scale = float(torch.linalg.norm(HV) * torch.linalg.norm(U)) + 1e-300
    for op_name, op in ops.items():
        assert op.symmetric, op_name
        AV, AU = op.torch_matmat(V), op.torch_matmat(U)
        lhs, rhs = (U * AV).sum(0), (V * AU).sum(0)
        assert torch.allclose(lhs, rhs, rtol=0, atol=1e-11 * scale), op_name
        if op.psd:
            quad = (V * AV).sum(0)
            assert bool((quad >= -1e-11 * scale).all()), op_name
    # the Gauss–Newton term of a built-in (convex) loss is declared psd
    assert _operators(problem, theta)["gauss_newton"].psd == problem.loss_fn.is_convex


def test_jacobian_operator_is_not_symmetric_and_has_shape_nk_by_n():
    problem, theta = ALL64["tanh_random_point"]()
    op = lg.jacobian_operator(problem, theta)
    assert op.shape == (problem.n_samples * problem.n_outputs, problem.n_params)
    assert not op.symmetric
    # the scipy transpose is an operator of the transposed shape
    assert op.T.shape == (op.shape[1], op.shape[0])
    J = lg.jacobian(problem, theta)
    np.testing.assert_allclose(aslinearoperator(op).T.matmat(np.eye(op.shape[0])), J.T.numpy(),
                               rtol=1e-12, atol=1e-14)


def test_operators_of_a_float32_problem_return_their_declared_dtype():
    problem, theta = float32_exact_fit()
    v = np.ones(problem.n_params)
    for op in (lg.hessian_operator(problem, theta), lg.jacobian_operator(problem, theta)):
        assert op.dtype == np.float64
        assert op.matvec(v).dtype == op.dtype
