"""Fields V_α and output velocities: §2.2–§2.4 identities and the toy oracles (§7 rows 1, 2, 15, 16)."""

import math

import pytest
import torch
from flow_cases import F64, dense_parts, tanh_problem, toy_problem

import lossgeom as lg
from lossgeom.flows import mollify, output_velocity, vector_field

ALPHAS = [0.0, 0.3, 0.7, 1.0]


@pytest.mark.parametrize("solver", ["gram", "svd", "lsmr"])
def test_toy_fields_row2(solver):
    """§7 row 2: V₀ = (.5, 1.5, 1), V_.5 = (.25, 1, .75), V₁ = (0, .5, .5) with C = ¼|x − y|²."""
    p = toy_problem()
    expected = {0.0: [0.5, 1.5, 1.0], 0.5: [0.25, 1.0, 0.75], 1.0: [0.0, 0.5, 0.5]}
    for alpha, v in expected.items():
        got = vector_field(p, None, alpha, normalization="sample_mean", solver=solver)
        assert torch.allclose(got, torch.tensor(v, dtype=F64), rtol=0, atol=1e-14), (alpha, got)
    # the same cost stated as a number: C = 0.25·Σ(x − y)²
    assert torch.allclose(vector_field(p, None, 0.5, normalization=0.25),
                          torch.tensor(expected[0.5], dtype=F64), rtol=0, atol=1e-14)


def test_toy_output_velocities_row15():
    """§7 row 15 / (2.44): D V_α = −[(1 − α)DDᵀ + α𝟙]∇ₓC on the toy, and the theory's numbers."""
    p = toy_problem()
    K = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=F64)
    gx = torch.tensor([-0.5, -1.0], dtype=F64)
    for alpha in (0.0, 0.3, 0.5, 0.7, 1.0):
        ov = output_velocity(p, None, alpha, normalization="sample_mean")
        pred = -((1 - alpha) * K + alpha * torch.eye(2, dtype=F64)) @ gx
        assert torch.allclose(ov.velocity.flatten(), pred, rtol=0, atol=1e-14)
        assert torch.allclose(ov.predicted.flatten(), pred, rtol=0, atol=1e-14)
        metric = lg.flows.output_metric(p, None, alpha)   # g_α ∂ₛx = −∇ₓC
        assert torch.allclose(metric @ ov.velocity.flatten(), -gx, rtol=0, atol=1e-13)
    ov = output_velocity(p, None, 0.5, normalization="sample_mean")
    assert ov.velocity.flatten().tolist() == pytest.approx([1.25, 1.75], abs=1e-14)
    assert ov.standard.flatten().tolist() == pytest.approx([2.0, 2.5], abs=1e-14)   # DV₀
    assert ov.adapted.flatten().tolist() == pytest.approx([0.5, 1.0], abs=1e-14)    # DV₁ = −∇ₓC


@pytest.mark.parametrize("solver", ["gram", "lsmr"])
def test_toy_metric_family_row16(solver):
    """§7 row 16: V^met_.5 = (0.125, 0.75, 0.625) ≠ V_.5, D V^met_.5 = (0.875, 1.375)."""
    p = toy_problem()
    vm = vector_field(p, None, 0.5, family="metric", normalization="sample_mean", solver=solver)
    assert torch.allclose(vm, torch.tensor([0.125, 0.75, 0.625], dtype=F64), rtol=0, atol=1e-14)
    assert not torch.allclose(vm, vector_field(p, None, 0.5, normalization="sample_mean"))
    ov = output_velocity(p, None, 0.5, family="metric", normalization="sample_mean", solver=solver)
    assert ov.velocity.flatten().tolist() == pytest.approx([0.875, 1.375], abs=1e-13)
    assert torch.allclose(ov.predicted, ov.velocity, rtol=0, atol=1e-13)
    for alpha in (0.0, 1.0):   # the families share their endpoints
        assert torch.allclose(vector_field(p, None, alpha, family="metric"),
                              vector_field(p, None, alpha), rtol=0, atol=1e-14)


def test_shared_zero_set_rank_deficient_toy():
    """Same singular set (§2.3): at θ = (1, 0, 2), rank D = 1 and ∇ₓC ⊥ ran D ⇒ every V vanishes."""
    p = toy_problem(y=(2.0, -1.0), theta=(1.0, 0.0, 2.0))   # x = 0, ∇ₓC ∝ −y ⊥ (1, 2) = ran D
    assert float(p.grad(None).norm()) == 0.0
    for alpha in (0.0, 0.3, 0.5, 1.0):
        for family in ("field", "metric"):
            v = vector_field(p, None, alpha, family=family)
            assert float(v.norm()) <= 1e-15, (alpha, family, v)
    q = toy_problem(y=(1.0, 1.0), theta=(1.0, 0.0, 2.0))    # ∇ₓC has a component in ran D
    for alpha in (0.0, 0.5, 1.0):
        for family in ("field", "metric"):
            assert float(vector_field(q, None, alpha, family=family).norm()) > 0.1


def test_identities_row1_tanh_242():
    """§7 row 1 on a tanh 2-4-2 net with biases (N = 22, n·k = 6), dense SVD oracles."""
    p = tanh_problem((2, 4, 2), n=3, seed=1)
    assert (p.n_params, p.n_samples * p.n_outputs) == (22, 6)
    J, K, P, Jp, g = dense_parts(p)
    grad = J.T @ g
    scale = float(Jp.norm() * g.norm())
    local = lg.linearize(p, p.theta)
    for u in torch.eye(6, dtype=F64):   # D⁺ = Dᵀ(DDᵀ)⁺ column by column (Gram route vs SVD)
        assert float((local.pinv(u) - Jp @ u).norm()) <= 1e-13 * float(Jp.norm())
    GN_pinv = torch.linalg.pinv(J.T @ J, hermitian=True, rtol=1e-10)
    for alpha in ALPHAS:
        v = vector_field(p, None, alpha)
        ov = output_velocity(p, None, alpha)
        pred = -((1 - alpha) * K + alpha * P) @ g
        assert float((ov.velocity.flatten() - pred).norm()) <= 1e-13 * max(scale, float(K.norm() * g.norm()))
        # parameter-space form V_α = −[(1 − α)𝟙 + α(DᵀD)⁺]∇_θC; (DᵀD)⁺ squares cond(J), hence 1e-12
        pform = -((1 - alpha) * grad + alpha * (GN_pinv @ grad))
        assert float((v - pform).norm()) <= 1e-12 * max(scale, float(grad.norm()))


def test_finite_differences():
    """V₀ = −c∇L by central differences of L; J V by central differences of x along V."""
    p = tanh_problem((2, 5, 2), n=3, seed=2)
    theta = p.theta
    c = 1.0 / (2 * 3)   # sample_mean for mse-sum
    v0 = vector_field(p, theta, 0.0, normalization="sample_mean")
    h = torch.finfo(F64).eps ** (1 / 3) * max(1.0, float(theta.abs().max()))
    fd = torch.stack([(p.loss(theta + h * e) - p.loss(theta - h * e)) / (2 * h)
                      for e in torch.eye(p.n_params, dtype=F64)])
    assert torch.allclose(v0, -c * fd, rtol=1e-6, atol=1e-9)
    ov = output_velocity(p, theta, 0.6, normalization="sample_mean")
    V = vector_field(p, theta, 0.6, normalization="sample_mean")
    hv = h / float(V.norm())
    fd_x = (p.outputs(theta + hv * V) - p.outputs(theta - hv * V)) / (2 * hv)
    assert torch.allclose(ov.velocity, fd_x, rtol=1e-6, atol=1e-9)


def test_routes_agree():
    p = tanh_problem((3, 8, 2), n=4, seed=3)
    for family in ("field", "metric"):
        for alpha in (0.4, 1.0):
            ref = vector_field(p, None, alpha, family=family, solver="svd")
            for solver in ("gram", "lsmr", "auto"):
                got = vector_field(p, None, alpha, family=family, solver=solver)
                assert torch.allclose(got, ref, rtol=1e-8, atol=1e-10), (family, alpha, solver)


def test_adapted_vs_standard_output_velocity():
    """α = 0 moves x by −K∇ₓC (2.17), α = 1 by −P∇ₓC (2.27); P^⊥∇ₓC is what no flow can follow."""
    p = tanh_problem((2, 6, 2), n=3, seed=4)          # rank J = 6 = n·k: P = 𝟙
    J, K, P, _, g = dense_parts(p)
    ov0, ov1 = output_velocity(p, None, 0.0), output_velocity(p, None, 1.0)
    assert torch.allclose(ov0.velocity.flatten(), -K @ g, rtol=1e-12, atol=1e-12)
    assert torch.allclose(ov1.velocity.flatten(), -g, rtol=1e-10, atol=1e-12)
    assert float(ov1.projector_residual.norm()) <= 1e-12 * float(g.norm())
    q = tanh_problem((2, 6, 2), n=3, seed=4, duplicate=(1, 2))   # identical inputs: rank 4 < 6
    J, K, P, _, g = dense_parts(q)
    ov = output_velocity(q, None, 1.0)
    assert ov.rank["rank"] == 4 and ov.rank["decided"]
    r = ov.projector_residual.flatten()
    assert torch.allclose(r, (torch.eye(6, dtype=F64) - P) @ g, rtol=1e-9, atol=1e-12)
    assert float(r.norm()) > 0.1 * float(g.norm()) and float((J.T @ r).norm()) <= 1e-12
    assert torch.allclose(ov.velocity.flatten(), -P @ g, rtol=1e-9, atol=1e-12)
    assert ov.to_dict()["rank"]["rank"] == 4


def test_normalizations_scale_the_field():
    p = tanh_problem((2, 4, 1), n=3, seed=5)
    base = vector_field(p, None, 0.5)
    assert torch.allclose(vector_field(p, None, 0.5, normalization="sample_mean"), base / 6)
    assert torch.allclose(vector_field(p, None, 0.5, normalization=3.0), 3 * base)
    q = tanh_problem((2, 4, 1), n=3, seed=5, reduction="mean")   # Σ/(n·k): sample_mean = ×k/2
    assert torch.allclose(vector_field(q, None, 0.5, normalization="sample_mean"), base / 6)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan, math.inf])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match=r"vector_field\(problem, theta, alpha\): alpha must lie"):
        vector_field(toy_problem(), None, alpha)


def test_bad_options():
    p = toy_problem()
    with pytest.raises(TypeError, match="alpha must be a real number"):
        vector_field(p, None, "1")
    with pytest.raises(ValueError, match="unknown family 'metrik'"):
        vector_field(p, None, 0.5, family="metrik")
    with pytest.raises(ValueError, match="unknown normalization 'mean'"):
        vector_field(p, None, 0.5, normalization="mean")
    for bad in (-1.0, 0.0, math.inf):
        with pytest.raises(ValueError, match="finite factor c > 0"):
            vector_field(p, None, 0.5, normalization=bad)
    with pytest.raises(ValueError, match="unknown solver 'qr'"):
        vector_field(p, None, 0.5, solver="qr")
    with pytest.raises(ValueError, match=r"has shape \(2,\), expected \(3,\)"):
        vector_field(p, torch.ones(2, dtype=F64), 0.5)
    with pytest.raises(ValueError, match="non-finite"):
        vector_field(p, torch.tensor([1.0, math.nan, 1.0], dtype=F64), 0.5)
    custom = lg.Problem(lg.mlp([2, 3, 1]), torch.randn(3, 2, dtype=F64), torch.randn(3, 1, dtype=F64),
                        loss=lambda x, y: ((x - y) ** 4).sum())
    with pytest.raises(ValueError, match="sample_mean' needs a built-in loss"):
        vector_field(custom, None, 0.5, normalization="sample_mean")


def test_relu_refused_and_mollified():
    p = tanh_problem((2, 5, 1), n=3, seed=6, activation="relu")
    with pytest.raises(ValueError, match=r"'1' \(ReLU\).*Lipschitz.*mollify"):
        vector_field(p, None, 1.0)
    state = {k: v.clone() for k, v in p.model.state_dict().items()}
    smooth = mollify(p.model, temperature=0.01)
    assert all(torch.equal(v, p.model.state_dict()[k]) for k, v in state.items())   # untouched
    assert isinstance(p.model[1], torch.nn.ReLU) and isinstance(smooth[1], torch.nn.Softplus)
    q = lg.Problem(smooth, p.inputs, p.targets)
    assert float((q.outputs() - p.outputs()).abs().max()) <= 0.01 * math.log(2) * 5   # T·log2·width
    assert torch.isfinite(vector_field(q, None, 1.0)).all()
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        mollify(p.model, 0.0)
    with pytest.raises(TypeError, match="must be an nn.Module"):
        mollify(lambda x: x)
