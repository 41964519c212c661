"""Output metrics (2.44) and the bundle metric (2.45) on ran J (§2.4)."""

import pytest
import torch
from flow_cases import F64, dense_parts, tanh_problem

from lossgeom.errors import DenseTooLargeError
from lossgeom.flows import bundle_metric, output_metric, output_velocity


@pytest.mark.parametrize("family", ["field", "metric"])
def test_full_rank_metric_is_the_gradient_metric(family):
    """rank J = n·k: g_α(∂ₛx, e) = −⟨∇ₓC, e⟩ for all e, i.e. g_α ∂ₛx = −∇ₓC."""
    p = tanh_problem((2, 6, 2), n=3, seed=7)
    _, K, _, _, g = dense_parts(p)
    eye = torch.eye(6, dtype=F64)
    for alpha in (0.0, 0.3, 0.7, 1.0):
        G = output_metric(p, None, alpha, family=family)
        v = output_velocity(p, None, alpha, family=family).velocity.flatten()
        assert torch.allclose(G @ v, -g, rtol=1e-9, atol=1e-12)
        assert torch.allclose(G, G.T, rtol=0, atol=1e-12 * float(G.norm()))
        assert float(torch.linalg.eigvalsh(G).min()) > 0
        expected = (torch.linalg.inv((1 - alpha) * K + alpha * eye) if family == "field"
                    else (1 - alpha) * torch.linalg.inv(K) + alpha * eye)
        assert torch.allclose(G, expected, rtol=1e-9, atol=1e-12)
    assert torch.allclose(output_metric(p, None, 1.0, family=family), eye, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", ["field", "metric"])
def test_bundle_metric_rank_deficient(family):
    """rank J = 4 < 6 (duplicated input): ∂ₛx ∈ E and g_α(∂ₛx, e) = −⟨∇ₓC, e⟩ for e ∈ E (2.45)."""
    p = tanh_problem((2, 6, 2), n=3, seed=7, duplicate=(0, 2))
    with pytest.raises(ValueError, match=r"rank 4 < n·k = 6.*bundle_metric"):
        output_metric(p, None, 0.5, family=family)
    _, _, P, _, g = dense_parts(p)
    for alpha in (0.0, 0.4, 1.0):
        b = bundle_metric(p, None, alpha, family=family)
        E = b.basis
        assert E.shape == (6, 4) and b.rank["rank"] == 4 and b.rank["decided"]
        assert torch.allclose(E.T @ E, torch.eye(4, dtype=F64), atol=1e-12)
        assert torch.allclose(E @ E.T, P, atol=1e-10)
        v = output_velocity(p, None, alpha, family=family).velocity.flatten()
        assert float((v - E @ (E.T @ v)).norm()) <= 1e-10 * float(v.norm())     # ∂ₛx ∈ E
        assert torch.allclose(E.T @ b.matrix @ v, -(E.T @ g), rtol=1e-9, atol=1e-12)
        assert torch.allclose(E.T @ b.matrix @ E, b.coordinates, atol=1e-10)
    assert torch.allclose(bundle_metric(p, None, 1.0, family=family).matrix, P, atol=1e-10)
    assert bundle_metric(p, None, 0.5).to_dict()["rank"]["rank"] == 4


def test_metric_errors():
    p = tanh_problem((2, 6, 2), n=3, seed=7)
    with pytest.raises(ValueError, match="alpha must lie in"):
        output_metric(p, None, 1.2)
    with pytest.raises(DenseTooLargeError, match="output_velocity"):
        bundle_metric(p, None, 0.5, max_bytes=100)
    with pytest.raises(TypeError, match="must be a lossgeom.Problem"):
        output_metric("problem", None, 0.5)
