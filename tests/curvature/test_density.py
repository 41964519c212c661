"""Hessian spectral density and trace on a Problem (curvature._density) against the dense Hessian."""

from __future__ import annotations

import pytest
import torch

import lossgeom as lg
from lossgeom.curvature._density import hessian_spectrum, hessian_trace
from lossgeom.linalg.slq import degeneracy_profile

F64 = torch.float64


@pytest.fixture(scope="module")
def tanh_case():
    """A tanh MLP at its (generic, non-critical) initial point, N = 2 972, and its dense spectrum."""
    g = torch.Generator().manual_seed(0)
    widths, n = [16, 50, 40, 2], 64
    X = torch.randn(n, widths[0], generator=g, dtype=F64)
    Y = torch.randn(n, widths[-1], generator=g, dtype=F64)
    problem = lg.Problem(lg.mlp(widths, "tanh", True, generator=g), X, Y)
    theta = problem.theta
    assert float(problem.grad(theta).norm()) > 1.0          # not a critical point
    lam = torch.linalg.eigvalsh(lg.hessian(problem, theta))
    density = hessian_spectrum(problem, theta, n_probes=10, n_steps=64, rng=0)
    return problem, theta, lam, density


def count(lam, a, b):
    return int(((lam >= a) & (lam <= b)).sum())


@pytest.mark.parametrize("a_rel, b_rel", [
    (-1e-2, 1e-2), (-1e-4, 1e-4), (-1e-8, 1e-8),      # around zero
    (0.05, 0.3), (-0.3, -0.01), (0.3, 2.0),            # the bulk and the top
    (-2.0, 0.0), (0.0, 2.0),                           # each sign
])
def test_interval_counts_cover_the_dense_counts(tanh_case, a_rel, b_rel):
    problem, _, lam, d = tanh_case
    amax = float(lam.abs().max())
    a, b = a_rel * amax, b_rel * amax
    est, low, high = d.count(a, b)
    assert low <= count(lam, a, b) <= high
    assert 0 <= low <= est <= high <= problem.n_params


def test_extremes_and_trace(tanh_case):
    _, _, lam, d = tanh_case
    amax = float(lam.abs().max())
    assert d.max_abs_eigenvalue == pytest.approx(amax, rel=1e-8)   # extreme Ritz nodes converge
    assert abs(d.trace.estimate - float(lam.sum())) <= 3 * d.trace.standard_error
    assert d.n_matvec == 10 * 64


def test_hutchpp_trace_within_three_standard_errors(tanh_case):
    problem, theta, lam, _ = tanh_case
    est, se = hessian_trace(problem, theta, n_matvec=120, rng=0)
    assert se > 0 and abs(est - float(lam.sum())) <= 3 * se


def test_degeneracy_profile_covers_the_dense_profile(tanh_case):
    _, _, lam, d = tanh_case
    slq = degeneracy_profile(d)
    exact = degeneracy_profile(lam)
    assert slq.method == "slq" and exact.method == "exact"
    for lo, c, hi in zip(slq.count_low, exact.count_above, slq.count_high, strict=True):
        assert lo <= c <= hi


def test_mse_linear_model_closed_form():
    # ∇²L = 2XᵀX for MSE-sum on a linear model. With N = 3 and 3 steps the Krylov space of each
    # probe is all of R³: the Ritz nodes are the eigenvalues and the quadrature is exact
    X = torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], dtype=F64)
    problem = lg.Problem(torch.nn.Linear(3, 1, bias=False).double(), X,
                         torch.zeros(4, 1, dtype=F64))
    lam = torch.linalg.eigvalsh(2 * X.T @ X)
    d = hessian_spectrum(problem, n_probes=4, n_steps=3, rng=1)
    assert bool(d.invariant.all())
    for i in range(4):
        torch.testing.assert_close(d.nodes[i], lam, rtol=1e-10, atol=1e-10)
    mid = float(lam[1])
    _, low, high = d.count(mid - 1e-6, mid + 1e-6)
    assert low <= 1 <= high
    assert abs(d.trace.estimate - float(lam.sum())) <= 3 * d.trace.standard_error
    # Hutch++ with a sketch of 3 columns spans R³: the trace is exact
    assert hessian_trace(problem, n_matvec=9).estimate == pytest.approx(float(lam.sum()), rel=1e-12)


def test_theta_is_validated():
    problem = lg.Problem(torch.nn.Linear(2, 1).double(), torch.ones(3, 2, dtype=F64),
                         torch.zeros(3, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"hessian_spectrum\(problem, theta\)"):
        hessian_spectrum(problem, torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match=r"hessian_trace\(problem, theta\)"):
        hessian_trace(problem, torch.full((3,), float("nan"), dtype=F64))


def test_the_model_is_left_as_it_was():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    problem = lg.Problem(model, torch.randn(5, 2, dtype=F64), torch.randn(5, 1, dtype=F64))
    hessian_spectrum(problem, n_probes=2, n_steps=4)
    hessian_trace(problem, n_matvec=6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())
