"""Last-layer slices and the all-layer isotropic bound (§3.5), checked by second routes."""

import math

import pytest
import torch

import lossgeom as lg
from lossgeom.loci import last_layer_slice, star_point, wide_zero_bound, width_regime

from .helpers import SPEC_INERTIA_RTOL, gaussian_problem

F64 = torch.float64


def augmented_activations(problem, theta, widths):
    """Ã = [A_{ℓ−1}; 1ᵀ] written out with explicit tanh layers (not lossgeom.loci)."""
    p = problem.unflatten(theta)
    a = problem.inputs
    for m in range(len(widths) - 2):
        a = torch.tanh(a @ p[f"{2 * m}.weight"].T + p[f"{2 * m}.bias"])
    return torch.cat([a.T, torch.ones(1, a.shape[0], dtype=F64)])


def test_kernel_basis_orthonormal_leaves_outputs_unchanged_and_rank_q():
    """B has orthonormal columns spanning {V : V Ã = 0}; rank Q = k·rank Ã from Q = ÃÃᵀ ⊗ I_k."""
    widths = [3, 7, 2]
    problem = gaussian_problem(widths, n=4, seed=11)
    theta = problem.theta
    s = last_layer_slice(problem, theta)
    B = s.kernel_basis
    assert B.shape == (problem.n_params, s.dim_ker_q) == (problem.n_params, 2 * (8 - 4))
    assert torch.allclose(B.T @ B, torch.eye(s.dim_ker_q, dtype=F64), atol=1e-13)
    J = torch.autograd.functional.jacobian(lambda t: problem.output_fn(t).reshape(-1), theta)
    assert float((J @ B).abs().max()) <= 1e-13                      # directions of ker J
    A = augmented_activations(problem, theta, widths)
    Q = torch.kron(torch.eye(2, dtype=F64), A @ A.T)                # Q(V) = ‖VÃ‖² on rows of V
    assert int(lg.numerical_rank(Q).rank) == s.rank_q == 2 * s.rank_augmented["rank"] == 8
    assert s.full_rank and s.regime == "very" and s.wide_enough


def test_level_set_is_flat_at_a_non_critical_point_too():
    """L is constant on θ + ker Q at any θ (ker Q leaves every output fixed)."""
    problem = gaussian_problem([2, 9, 1], n=5, seed=12)
    s = last_layer_slice(problem, problem.theta, n_probes=6, probe_size=5.0)
    assert not s.critical and s.level_set["constant"] and s.level_set["n_probes"] == 6
    assert s.level_set["max_output_change"] <= 1e-13
    assert not s.cor_5_16["applies"] and "not critical" in s.cor_5_16["reason"]


def test_decreasing_line_of_cor_5_9():
    """rank Ã = n: L(θ + t(θ* − θ)) = (1 − t)² L(θ), strictly decreasing to a global minimum."""
    problem = gaussian_problem([3, 6, 1], n=4, seed=13)
    theta = problem.theta
    s = last_layer_slice(problem, theta)
    line = s.decreasing_line
    assert s.full_rank and line["strictly_decreasing"] and line["final_loss"] <= 1e-20
    L0 = float(problem.loss(theta))
    for t, value in zip(line["t"], line["loss"], strict=True):
        assert math.isclose(value, (1 - t) ** 2 * L0, rel_tol=1e-10, abs_tol=1e-13)
    target = s.line_target
    assert float(problem.loss(target)) <= 1e-20
    changed = (target - theta).abs() > 0
    assert changed[-7:].all() and not changed[:-7].any()           # only the output layer moves
    at_min = last_layer_slice(problem, target)
    assert at_min.decreasing_line is None and "already a global minimum" in \
        at_min.decreasing_line_reason


def test_not_full_rank_has_no_line_and_positive_fibre_minimum():
    problem = gaussian_problem([3, 2, 1], n=6, seed=14)            # rank Ã ≤ 3 < n = 6
    s = last_layer_slice(problem, problem.theta)
    assert not s.full_rank and s.decreasing_line is None and s.fibre_minimum > 0
    assert s.regime == "mildly" and s.dim_ker_q == 0 and s.kernel_basis.shape[1] == 0


def test_fibre_minimum_by_least_squares():
    """The fibre minimum equals min_V ‖V Ã − Yᵀ‖² from torch.linalg.lstsq (second route)."""
    widths = [3, 3, 2]
    problem = gaussian_problem(widths, n=6, seed=15)
    s = last_layer_slice(problem, problem.theta)
    A = augmented_activations(problem, problem.theta, widths)
    V = torch.linalg.lstsq(A.T, problem.targets).solution.T
    assert math.isclose(s.fibre_minimum, float(((V @ A - problem.targets.T) ** 2).sum()),
                        rel_tol=1e-10)


def test_isotropy_of_ker_q_at_a_saddle():
    """Bᵀ ∇²L B = 0 for the ker Q basis, also where ∇²L is indefinite."""
    problem = gaussian_problem([3, 5, 3], n=4, seed=16)
    theta = star_point(problem, 1, rng=0)
    s = last_layer_slice(problem, theta, rtol=SPEC_INERTIA_RTOL)
    H = torch.autograd.functional.hessian(problem.loss_at, theta)
    assert float((s.kernel_basis.T @ H @ s.kernel_basis).abs().max()) <= 1e-12
    assert s.inertia[1] > 0 and s.semidefinite is False


def test_require_critical_raises_not_critical_error():
    problem = gaussian_problem([3, 6, 1], n=4, seed=17)
    with pytest.raises(lg.NotCriticalError, match=r"last_layer_slice\(problem, theta\): θ is not "
                                                   r"critical \(‖∇L‖ = ") as info:
        last_layer_slice(problem, problem.theta, require_critical=True)
    assert info.value.grad_norm > info.value.tol > 0


def test_slice_options_rejected():
    problem = gaussian_problem([3, 6, 1], n=4, seed=17)
    with pytest.raises(ValueError, match="n_probes"):
        last_layer_slice(problem, n_probes=-1)
    with pytest.raises(ValueError, match="probe_size"):
        last_layer_slice(problem, probe_size=0.0)
    with pytest.raises(ValueError, match="rank_rtol must lie in"):
        last_layer_slice(problem, rank_rtol=2.0)


def test_non_mse_loss_has_no_fibre_quadratic():
    X = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    problem = lg.Problem(lg.mlp([3, 6, 3]), X, torch.tensor([0, 1, 2, 1]), loss="softmax_ce")
    s = last_layer_slice(problem)
    assert not s.fibre_quadratic and s.fibre_minimum is None and s.decreasing_line is None
    assert s.level_set["constant"]


@pytest.mark.parametrize("widths,n,regime", [([3, 2, 1], 6, "mildly"), ([3, 5, 5, 1], 4, "very"),
                                             ([2, 9, 9, 1], 3, "extremely wide"),
                                             ([3, 1, 1], 8, "not wide")])
def test_width_regimes(widths, n, regime):
    assert width_regime(widths, n) == regime


def test_wide_bound_basis_keeps_every_activation_and_is_isotropic():
    problem = gaussian_problem([2, 7, 6, 2], bias=True, n=3, seed=18)
    theta = problem.theta
    b = wide_zero_bound(problem, theta)
    B = b.basis
    assert B.shape == (problem.n_params, b.m)
    assert b.m == sum(row["n_out"] * (row["n_in"] - row["rank"]) for row in b.layers)
    assert [row["rank"] for row in b.layers] == [2, 3, 3]
    assert torch.allclose(B.T @ B, torch.eye(b.m, dtype=F64), atol=1e-13)
    step = B @ torch.randn(b.m, dtype=F64, generator=torch.Generator().manual_seed(0))
    moved = theta + 3.0 * step / torch.linalg.norm(step)
    assert float((problem.outputs(moved) - problem.outputs(theta)).abs().max()) <= 1e-13
    H = torch.autograd.functional.hessian(problem.loss_at, theta)
    assert float((B.T @ H @ B).abs().max()) <= 1e-12 * float(H.abs().max())
    assert b.isotropy_residual <= 1e-13 and b.holds
    assert b.n_zero_eigenvalues >= b.bound and b["bound"] == 2 * b.m - problem.n_params
    with pytest.raises(KeyError):
        b["nope"]
