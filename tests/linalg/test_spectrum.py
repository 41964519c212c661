"""extreme_eigenpairs: dense eigh and Lanczos (eigsh) on operators agree, with residuals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import softmax_onehot_random_point, tanh_random_point
from strategies import random_orthogonal

import lossgeom as lg
from lossgeom.linalg import CurvatureOperator, extreme_eigenpairs

F64 = torch.float64


def _symmetric(N=40, seed=0):
    lam = torch.linspace(-3.0, 5.0, N, dtype=F64) ** 3
    Q = random_orthogonal(N, seed)
    S = (Q * lam) @ Q.T
    return 0.5 * (S + S.T), torch.sort(lam).values


def _operator(S):
    return CurvatureOperator(S.shape, lambda v: S @ v, matmat=lambda V: S @ V, symmetric=True,
                             name="dense_test")


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_dense_route_returns_ordered_extremes(which):
    S, lam = _symmetric()
    pairs = extreme_eigenpairs(S, 5, which)
    expected = lam.flip(0)[:5] if which == "LA" else lam[:5]
    assert pairs.method == "eigh" and pairs.n_matvec == 0
    assert torch.allclose(pairs.values, expected, rtol=1e-12, atol=1e-12)
    assert float(pairs.residuals.max()) < 1e-10 * float(lam.abs().max())


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_lanczos_matches_dense_eigenvalues(which):
    S, lam = _symmetric()
    op = _operator(S)
    pairs = extreme_eigenpairs(op, 5, which)
    expected = lam.flip(0)[:5] if which == "LA" else lam[:5]
    assert pairs.method == "eigsh" and pairs.converged
    assert torch.allclose(pairs.values, expected, rtol=1e-8, atol=1e-10 * float(lam.abs().max()))
    V = pairs.vectors
    assert torch.allclose(V.T @ V, torch.eye(5, dtype=F64), atol=1e-8)
    # residuals as reported are ‖S v − λ v‖
    res = torch.linalg.norm(S @ V - V * pairs.values, dim=0)
    assert torch.allclose(pairs.residuals, res, rtol=1e-6, atol=1e-12)
    assert pairs.n_matvec == op.n_matvec > 0


def test_lanczos_is_seeded_and_reproducible():
    S, _ = _symmetric()
    a = extreme_eigenpairs(_operator(S), 3, "LA", seed=1)
    b = extreme_eigenpairs(_operator(S), 3, "LA", seed=1)
    assert torch.equal(a.values, b.values)


def test_operator_with_k_near_n_is_materialised():
    S, lam = _symmetric(N=6)
    op = _operator(S)
    pairs = extreme_eigenpairs(op, 5, "SA")
    assert pairs.method == "eigh"
    assert pairs.n_matvec == 6                  # one product per column of the identity
    assert torch.allclose(pairs.values, lam[:5], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [tanh_random_point, softmax_onehot_random_point])
def test_hessian_extremes_by_lanczos_match_dense(case):
    """Lanczos extremes against dense eigenvalues to ~1e-8 relative."""
    problem, theta = case()
    H = lg.hessian(problem, theta)
    lam = torch.linalg.eigvalsh(H)
    scale = float(lam.abs().max())
    op = lg.hessian_operator(problem, theta)
    top = extreme_eigenpairs(op, 4, "LA")
    bottom = extreme_eigenpairs(op, 4, "SA")
    assert torch.allclose(top.values, lam.flip(0)[:4], rtol=0, atol=1e-8 * scale)
    assert torch.allclose(bottom.values, lam[:4], rtol=0, atol=1e-8 * scale)
    assert float(top.residuals.max()) < 1e-8 * scale


def test_bad_arguments():
    S, _ = _symmetric(N=5)
    with pytest.raises(ValueError, match="LA"):
        extreme_eigenpairs(S, 2, "LM")
    with pytest.raises(ValueError, match="square"):
        extreme_eigenpairs(torch.zeros(3, 4, dtype=F64), 1, "LA")


def test_numpy_values_are_float64():
    S, _ = _symmetric(N=30)
    pairs = extreme_eigenpairs(_operator(S), 2, "LA")
    assert pairs.values.dtype == F64 and pairs.vectors.dtype == F64
    assert isinstance(pairs.values, torch.Tensor)
    assert np.isfinite(pairs.residuals.numpy()).all()
