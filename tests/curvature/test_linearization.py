"""The Linearization: one rank decision of J, J⁺ and ker J, on every route, against SVD oracles."""

import pytest
import torch

import lossgeom as lg

F64 = torch.float64


def linear_problem(singular_values, d=40, seed=0):
    """x = X θ with X (n, d) of the given singular values: J = X exactly."""
    g = torch.Generator().manual_seed(seed)
    s = torch.as_tensor(singular_values, dtype=F64)
    n = s.numel()
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(d, n, generator=g, dtype=F64))
    X = (U * s) @ V.T
    model = torch.nn.Linear(d, 1, bias=False).double()
    return lg.Problem(model, X, torch.zeros(n, 1, dtype=F64)), X


def held_and_not_held(problem, n_refined=None):
    """The same Linearization with J held (dense) and with only K and J-products in the budget.

    The second budget is K plus three N × n_refined blocks (Jᵀ U₀, its Q, the right vectors P),
    just under what J itself would take.
    """
    m, N = problem.n_samples * problem.n_outputs, problem.n_params
    c = m - 1 if n_refined is None else n_refined
    held = lg.linearize(problem, route="gram")
    not_held = lg.linearize(problem, route="gram",
                            max_bytes=min(8 * m * N - 1, 8 * m * m + 3 * 8 * N * c))
    assert held.jacobian is not None and not_held.jacobian is None
    return held, not_held


def test_ill_conditioned_null_space_agrees_with_svd():
    """σ_min/σ_max = 1e-7: ker J from the Linearization matches an SVD null space.

    The projector onto ker J built from raw eigenpairs of K = J Jᵀ (J⁺ = Jᵀ U Λ⁻¹ Uᵀ) loses about
    eps·cond² of accuracy (here ≈ 2e-3); the Linearization's routes keep eps·cond (the limit any
    SVD has: two SVD implementations differ by ≈ 2e-10 on this J).
    """
    spectrum = torch.cat([torch.logspace(0, -1, 14), torch.logspace(-4, -7, 4)])
    problem, X = linear_problem(spectrum, d=400)
    Z = lg.null_space(X)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(problem.n_params, generator=g, dtype=F64)
    exact = Z @ (Z.T @ v)
    held, not_held = held_and_not_held(problem, n_refined=5)   # the 4 small σ are re-measured
    assert held.route == "svd"      # ill-conditioned: SVD of J
    assert not_held.route == "gram+svd"
    assert held.rank == not_held.rank == 18
    assert torch.linalg.norm(held.kernel_project(v) - exact) <= 1e-9 * torch.linalg.norm(v)
    assert torch.linalg.norm(not_held.kernel_project(v) - exact) <= 1e-8 * torch.linalg.norm(v)
    # the raw Gram-eigenpair projector, for contrast
    lam, U = torch.linalg.eigh(X @ X.T)
    raw = v - X.T @ (U @ ((U.T @ (X @ v)) / lam))
    assert torch.linalg.norm(raw - exact) > 1e-5 * torch.linalg.norm(v)


def test_null_space_basis_is_orthonormal_and_in_the_kernel():
    problem, X = linear_problem(torch.logspace(0, -3, 5), d=12)
    Z = lg.linearize(problem).null_space()
    assert Z.shape == (12, 7)
    assert torch.allclose(Z.T @ Z, torch.eye(7, dtype=F64), atol=1e-13)
    assert float(torch.linalg.norm(X @ Z)) <= 1e-13


@pytest.mark.parametrize("spectrum", [[3.0, 2.0, 1.0, 0.5], [1.0, 1e-2, 1e-4, 0.0]])
def test_pinv_and_projectors_match_torch_on_every_route(spectrum):
    problem, X = linear_problem(spectrum, d=15)
    g = torch.Generator().manual_seed(2)
    u = torch.randn(len(spectrum), generator=g, dtype=F64)
    v = torch.randn(15, generator=g, dtype=F64)
    rank = sum(s > 0 for s in spectrum)
    P = torch.linalg.pinv(X, rtol=1e-10)
    for lin in (lg.linearize(problem, route="svd"), *held_and_not_held(problem)):
        assert lin.rank == rank and lin.decision.decided
        assert torch.allclose(lin.pinv(u), P @ u, atol=1e-9)
        assert torch.allclose(lin.project(u), X @ (P @ u), atol=1e-10)
        assert torch.allclose(lin.kernel_project(v), v - P @ (X @ v), atol=1e-9)
        assert lin.sigma_max == pytest.approx(spectrum[0], rel=1e-12)


def test_sigma_max_by_power_iteration_without_a_factorisation():
    problem, _ = linear_problem([4.0, 1.0, 0.25], d=10)
    lin = lg.linearize(problem)
    assert "_factors" not in lin.__dict__
    assert lin.sigma_max == pytest.approx(4.0, rel=1e-6)      # 30 power iterations, ratio 1/16


def test_lsmr_route_solves_without_a_rank_decision():
    problem, X = linear_problem([2.0, 1.0, 0.5], d=9)
    lin = lg.linearize(problem, route="lsmr")
    u = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    assert lin.route == "lsmr"
    assert torch.allclose(lin.pinv(u), torch.linalg.pinv(X) @ u, atol=1e-8)


def test_linearize_rejects_bad_input():
    problem, _ = linear_problem([1.0, 0.5], d=4)
    with pytest.raises(ValueError, match="unknown route 'fast'"):
        lg.linearize(problem, route="fast")
    with pytest.raises(ValueError, match="rtol must lie in"):
        lg.linearize(problem, rtol=2.0)
    with pytest.raises(ValueError, match="theta"):
        lg.linearize(problem, torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("forward_ad", [True, False])
def test_sample_block_gram_equals_j_jt_for_a_cnn(forward_ad):
    """K from row blocks of J (never whole) = J Jᵀ of the dense J, for a conv net: by JVPs on
    the full batch (forward mode), or by pairs of row blocks (reverse mode only)."""
    from models import digits, lenet, one_hot

    from lossgeom.curvature._jacobian import ntk_gram
    X, y = digits(n=10, classes=4)
    problem = lg.Problem(lenet(k=4), X, one_hot(y, 4))
    assert problem.forward_ad
    problem.forward_ad = forward_ad
    J = lg.jacobian(problem)
    one_row = 3 * 8 * problem.n_outputs * problem.n_params
    K = ntk_gram(problem, work_bytes=3 * one_row)               # blocks of 3 samples
    assert torch.allclose(K, J @ J.T, rtol=1e-12, atol=1e-12 * float(J.abs().max()) ** 2)


def test_cnn_perfect_fit_certified_without_holding_j():
    """A CNN fitted exactly: rank J = n·k decided, inertia (n·k, 0, N − n·k), J not held."""
    from models import digits, lenet, one_hot
    X, y = digits(n=6, classes=4)
    problem = lg.Problem(lenet(k=4), X, one_hot(y, 4))
    theta = lg.fit_last_layer(problem)
    m, N = problem.n_samples * problem.n_outputs, problem.n_params
    budget = 8 * m * m + 3 * 8 * 4 * N + 1                     # K and one sample's rows; not J
    r = lg.analyze(problem, theta, max_bytes=budget, dense_max_n=1)
    assert r.kind == "global_minimum"
    assert r.jacobian.rank == m and r.jacobian.decided and r.jacobian.method.startswith("gram")
    assert r.hessian.inertia == [m, 0, N - m] and r.hessian.decided
    assert r.hessian.certificate.kind == "gram"
    lin = lg.linearize(problem, theta, max_bytes=budget)
    assert lin.rank == m and lin.jacobian is None
