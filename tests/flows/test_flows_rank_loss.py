"""Rank loss (§2.6, §7 row 17): propagator U(τ), both forms of (2.58), projectors along a path."""

import numpy as np
import pytest
import torch
from flow_cases import F64, rotating_projector, tanh_problem
from scipy.integrate import solve_ivp

from lossgeom.flows import integrate, line_deviation, path_projector, propagator


def _direct_ode(projector, x0, y, taus):
    """(2.57) integrated directly: ∂_τx = −P(τ)(x − y)/(1 − τ)."""
    def rhs(tau, x):
        return -(np.asarray(projector(tau)) @ (x - y)) / (1.0 - tau)

    sol = solve_ivp(rhs, (0.0, taus[-1]), x0, method="DOP853", t_eval=taus, rtol=1e-13,
                    atol=1e-15)
    return sol.y.T


def test_rotating_projector_row17():
    """Rotating rank-3 projector in R⁵, τ up to 0.9: x − y = U(x₀ − y); both forms of (2.58)
    agree with the direct ODE."""
    P = rotating_projector(5, 3, seed=0)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(5, generator=g, dtype=F64).numpy()
    y = torch.randn(5, generator=g, dtype=F64).numpy()
    taus = np.array([0.0, 0.3, 0.6, 0.9])
    x = _direct_ode(P, x0, y, taus)
    U = propagator(P, taus, rtol=1e-13, atol=1e-15)
    assert torch.allclose(U[0], torch.eye(5, dtype=F64))
    assert np.abs(np.einsum("tij,j->ti", U.numpy(), x0 - y) - (x - y)).max() <= 1e-12
    lin = (1 - taus)[:, None] * x0 + taus[:, None] * y
    delta = x - lin
    assert np.linalg.norm(delta[-1]) > 0.5          # a real deviation from the line
    for form in ("propagator", "duhamel"):
        d = line_deviation(P, torch.as_tensor(x0), torch.as_tensor(y), taus, form=form,
                           rtol=1e-13, atol=1e-15).numpy()
        assert np.abs(d - delta).max() <= 1e-12, form
    # C non-increasing ⇒ |δ(τ)| ≤ τ|x₀ − y|
    assert (np.linalg.norm(delta, axis=1) <= taus * np.linalg.norm(x0 - y) + 1e-12).all()


def test_constant_projector_closed_forms():
    """ran J ≡ R: U(τ) = P^⊥ + (1 − τ)P and δ(τ) = τP^⊥(x₀ − y)."""
    Q, _ = torch.linalg.qr(torch.randn(4, 2, generator=torch.Generator().manual_seed(2),
                                       dtype=F64))
    P = Q @ Q.T
    eye = torch.eye(4, dtype=F64)
    taus = [0.1, 0.5, 0.95]
    U = propagator(lambda t: P, taus)
    for t, Ut in zip(taus, U, strict=True):
        assert torch.allclose(Ut, (eye - P) + (1 - t) * P, atol=1e-11)
    x0, y = torch.ones(4, dtype=F64), torch.arange(4, dtype=F64)
    for form in ("propagator", "duhamel"):
        d = line_deviation(lambda t: P, x0, y, taus, form=form)
        expected = torch.stack([t * (eye - P) @ (x0 - y) for t in taus])
        assert torch.allclose(d, expected, atol=1e-10), form


def test_path_projector_on_a_network_path():
    """Duplicated input (rank 4 < 6): P along the recorded path is constant, and the propagator
    built from it predicts the trajectory's outputs, x(τ) − y = U(τ)(x₀ − y)."""
    p = tanh_problem((2, 6, 2), n=3, seed=4, duplicate=(1, 2))
    traj = integrate(p, None, t_end=0.6, time="linear", method="DOP853", rtol=1e-11, atol=1e-13,
                     n_eval=7)
    P = path_projector(p, traj)
    assert torch.allclose(P(0.0), P(0.6), atol=1e-10) and abs(float(torch.trace(P(0.3))) - 4) < 1e-10
    taus = traj.times.numpy()
    U = propagator(P, taus, rtol=1e-10, atol=1e-12)
    r0 = (traj.outputs[0] - p.targets).reshape(-1)
    pred = torch.einsum("tij,j->ti", U, r0)
    assert torch.allclose(pred, (traj.outputs - p.targets).flatten(1), atol=1e-8)
    with pytest.raises(ValueError, match="outside the recorded range"):
        P(0.9)


def test_bad_input():
    P = rotating_projector(3, 1)
    with pytest.raises(ValueError, match=r"propagator\(projector, taus\): taus must be "
                                         r"non-decreasing in \[0, 1\)"):
        propagator(P, [0.5, 1.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        propagator(P, [0.5, 0.2])
    with pytest.raises(ValueError, match=r"square \(3, 3\) matrix"):
        line_deviation(lambda t: torch.eye(2), torch.zeros(3), torch.ones(3), [0.1])
    with pytest.raises(ValueError, match="unknown form 'third'"):
        line_deviation(P, torch.zeros(3), torch.ones(3), [0.1], form="third")
    ce = tanh_problem((2, 4, 3), n=2, seed=5, loss="softmax_ce",
                      targets=torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], dtype=F64))
    with pytest.raises(ValueError, match="mse-type flow"):
        path_projector(ce, integrate(ce, None, t_end=0.1, n_eval=2, track_rank=False))
