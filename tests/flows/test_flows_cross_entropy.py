"""Cross-entropy (§2.7, §7 rows 4 and 18): equilibria, conserved sums, Hessians, one-hot labels."""

import math

import numpy as np
import pytest
import torch
from flow_cases import F64, tanh_problem

import lossgeom as lg
from lossgeom.flows import ce_equilibrium, ce_sample_hessian, integrate, label_entropy, output_sums

Y = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], dtype=F64)
EPS = torch.finfo(F64).eps


def test_equilibrium_row4_and_fibres_row18():
    x0 = ce_equilibrium(Y[:1], torch.zeros(1, dtype=F64))
    assert x0[0].tolist() == pytest.approx([0.475705, -0.035120, -0.440585], abs=5e-7)
    x3 = ce_equilibrium(Y[:1], torch.tensor([3.0], dtype=F64))
    assert torch.allclose(x3, x0 + 1.0, rtol=0, atol=1e-15)            # x*(c = 3) = x*(0) + 𝟏
    for x in (x0, x3):
        assert torch.allclose(torch.softmax(x, dim=1), Y[:1], rtol=0, atol=1e-15)
        ce = -(Y[:1] * torch.log_softmax(x, dim=1)).sum()
        assert float(ce) == pytest.approx(1.029653, abs=5e-7)            # H(y₁), every c
    assert float(label_entropy(Y)[0]) == pytest.approx(1.029653, abs=5e-7)
    sums = torch.tensor([0.7, -2.0], dtype=F64)
    assert torch.allclose(output_sums(ce_equilibrium(Y, sums)), sums, rtol=0, atol=1e-14)
    assert ce_equilibrium(np.asarray(Y), np.zeros(2)).dtype == F64


def test_hessians_row18():
    """Per-sample H(x₁(0)) has eigenvalues {0, .118553, .370904}; the cost (1/N)Σℓ halves them."""
    x = torch.tensor([1.0, 0.0, -1.0], dtype=F64)
    H = ce_sample_hessian(x)
    assert torch.linalg.eigvalsh(H).tolist() == pytest.approx([0.0, 0.118553, 0.370904], abs=5e-7)
    assert float((H @ torch.ones(3, dtype=F64)).abs().max()) <= 4 * EPS  # kernel span{𝟏}, to roundoff
    p = lg.Problem(lambda prm, X: X @ prm["x"].reshape(2, 3), torch.eye(2, dtype=F64), Y,
                   loss="softmax_ce", params={"x": torch.cat([x, x])})
    blocks = p.loss_fn.output_hessian_blocks(p.outputs(), p.targets) / 2  # C = (1/2)Σℓ
    assert torch.linalg.eigvalsh(blocks[0]).tolist() == pytest.approx([0.0, 0.059277, 0.185452],
                                                                      abs=5e-7)
    assert torch.allclose(ce_sample_hessian(torch.stack([x, x])), torch.stack([H, H]))


def test_output_space_flow_converges_on_its_fibre():
    """J = 𝟙 (x = θ): RK45 to s = 60 reaches x* within 6e-4 (§2.7), sums kept exactly."""
    p = lg.Problem(lambda prm, X: X @ prm["x"].reshape(2, 3), torch.eye(2, dtype=F64), Y,
                   loss="softmax_ce",
                   params={"x": torch.tensor([1.0, 0.0, -1.0, 0.5, 0.5, -2.0], dtype=F64)})
    traj = integrate(p, None, alpha=1.0, t_end=60.0, normalization="sample_mean", n_eval=3,
                     track_rank=False)
    sums = output_sums(traj)
    assert float((sums - sums[0]).abs().max()) <= 1e-13
    target = ce_equilibrium(Y, sums[0])
    assert float((traj.outputs[-1] - target).abs().max()) <= 6.5e-4
    assert traj.interpolation_time is None and traj.deviation is None and traj.rate is None


def test_network_adapted_flow_conserves_sums_standard_does_not():
    """tanh 2-5-3 (QN = 6): adapted flow keeps ⟨𝟏, xⱼ⟩ and approaches x*; the standard flow drifts."""
    q = tanh_problem((2, 5, 3), n=2, seed=3, loss="softmax_ce", targets=Y)
    adapted = integrate(q, None, alpha=1.0, t_end=40.0, normalization="sample_mean", n_eval=5,
                        rtol=1e-10, atol=1e-12)
    assert adapted.rank_jacobian.tolist() == [6] * 5
    sums = output_sums(adapted)
    assert float((sums - sums[0]).abs().max()) <= 1e-8
    dist = (adapted.outputs - ce_equilibrium(Y, sums[0])).flatten(1).norm(dim=1)
    assert bool((dist[1:] < dist[:-1]).all()) and float(dist[-1]) < 0.02   # spec: 7e-3 at s = 40
    standard = integrate(q, None, alpha=0.0, t_end=5.0, normalization="sample_mean", n_eval=2,
                         track_rank=False)
    drift = output_sums(standard)[-1] - output_sums(standard)[0]
    assert float(drift.abs().max()) > 1e-2


def test_one_hot_labels_have_no_finite_minimiser():
    with pytest.raises(ValueError, match=r"sample 0, class 1.*no finite minimiser"):
        ce_equilibrium(torch.tensor([[1.0, 0.0, 0.0]], dtype=F64), torch.zeros(1, dtype=F64))
    labels = torch.tensor([0, 2])
    q = tanh_problem((2, 4, 3), n=2, seed=5, loss="softmax_ce", targets=labels)
    traj = integrate(q, None, alpha=1.0, t_end=0.5, n_eval=2, track_rank=False)
    assert "no finite minimiser" in traj.message


@pytest.mark.parametrize("targets, sums, match", [
    (Y, torch.zeros(3, dtype=F64), r"sums must have shape \(2,\)"),
    (Y, torch.tensor([0.0, math.nan], dtype=F64), "sums contain 1 non-finite"),
    (Y * 2, torch.zeros(2, dtype=F64), "rows must sum to 1"),
    (torch.tensor([[1.2, -0.2]], dtype=F64), torch.zeros(1, dtype=F64), "entry .0, 1. is -0.2"),
    (Y[0], torch.zeros(1, dtype=F64), r"shape \(n, k\)"),
])
def test_equilibrium_bad_input(targets, sums, match):
    with pytest.raises(ValueError, match=r"ce_equilibrium\(targets_prob, sums\): .*" + match):
        ce_equilibrium(targets, sums)


def test_type_errors():
    with pytest.raises(TypeError, match="must be a torch.Tensor or numpy array"):
        ce_equilibrium([[0.5, 0.5]], torch.zeros(1, dtype=F64))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, k\)"):
        output_sums(torch.zeros(3, dtype=F64))
