"""The product map μ, its differential dμ and the functional space M_r (§4.1, §4.3, §4.8)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lossgeom as lg
from lossgeom import linear as ll

F64 = torch.float64


def random_rank_weights(widths, ranks, seed):
    """W_i = A_i B_i with inner dimension ranks[i]: rank W_i = ranks[i] (Gaussian factors)."""
    rng = np.random.default_rng(seed)
    Ws = []
    for (a, b), k in zip(zip(widths[1:], widths[:-1], strict=True), ranks, strict=True):
        A = rng.standard_normal((a, k))
        B = rng.standard_normal((k, b))
        Ws.append(torch.as_tensor(A @ B, dtype=F64))
    return Ws


@st.composite
def rank_patterns(draw, max_depth=4, max_width=4):
    depth = draw(st.integers(2, max_depth))
    widths = draw(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1))
    ranks = [draw(st.integers(0, min(a, b))) for a, b in zip(widths[1:], widths[:-1], strict=True)]
    seed = draw(st.integers(0, 2**31 - 1))
    return tuple(widths), ranks, seed


def jacobian_of_product(Ws):
    """Independent oracle: the dense Jacobian of θ ↦ vec(W_h⋯W_1) by reverse-mode autograd."""
    theta = ll.flatten_weights(Ws)
    widths = (Ws[0].shape[1],) + tuple(W.shape[0] for W in Ws)

    def mu(t):
        out, off = None, 0
        for a, b in zip(widths[1:], widths[:-1], strict=True):
            W = t[off:off + a * b].reshape(a, b)
            off += a * b
            out = W if out is None else W @ out
        return out.reshape(-1)

    return torch.func.jacrev(mu)(theta)


def kronecker_jacobian(Ws):
    """Second oracle: block i of J is W_{>i} ⊗ W_{<i}ᵀ (row-major vec(A X B) = (A ⊗ Bᵀ) vec X)."""
    d0, dh = Ws[0].shape[1], Ws[-1].shape[0]
    blocks = []
    for i in range(len(Ws)):
        after = torch.eye(dh, dtype=F64)
        for W in reversed(Ws[i + 1:]):
            after = after @ W
        before = torch.eye(d0, dtype=F64)
        for W in Ws[:i]:
            before = W @ before
        A, B = after, before.T
        kron = (A[:, None, :, None] * B[None, :, None, :]).reshape(
            A.shape[0] * B.shape[0], A.shape[1] * B.shape[1])
        blocks.append(kron)
    return torch.cat(blocks, dim=1)


# -- product and validation -------------------------------------------------------------------
def test_product_matches_matrix_chain():
    Ws = random_rank_weights((3, 4, 2, 5), [3, 2, 2], seed=1)
    assert torch.allclose(ll.product(Ws), Ws[2] @ Ws[1] @ Ws[0], rtol=1e-14, atol=0)
    assert ll.product(Ws).dtype == F64


def test_non_chaining_shapes_rejected_with_both_shapes():
    W1, W2 = torch.zeros(5, 2), torch.zeros(3, 4)
    with pytest.raises(ValueError) as exc:
        ll.classify([W1, W2], lambda W: W)
    assert str(exc.value) == (
        "classify(weights, loss_grad_fn): W_2 has shape (3, 4) but W_1 has shape (5, 2); "
        "shapes must chain (W_i: (d_i, d_{i-1})).")
    with pytest.raises(ValueError, match=r"product\(weights\): W_2 has shape \(3, 4\)"):
        ll.product([W1, W2])


@pytest.mark.parametrize("widths", [(2, 0, 2), (3, -1, 2), (4,), ()])
def test_bad_widths_rejected(widths):
    with pytest.raises(ValueError, match=r"is_filling\(widths\)"):
        ll.is_filling(widths)
    with pytest.raises(ValueError, match=r"functional_space\(widths\)"):
        ll.functional_space(widths)


@pytest.mark.parametrize("widths", [(2, 1.5, 2), "232", (2, True, 2)])
def test_non_integer_widths_rejected(widths):
    with pytest.raises(TypeError, match="widths"):
        ll.is_filling(widths)


def test_non_finite_and_non_matrix_weights_rejected():
    W = torch.ones(2, 2, dtype=F64)
    W[1, 0] = float("inf")
    with pytest.raises(ValueError,
                       match=r"W_1 contains 1 non-finite value \(first at index \(1, 0\)\)"):
        ll.differential_rank([W])
    with pytest.raises(ValueError, match="W_2 has shape"):
        ll.differential_rank([torch.ones(2, 2), torch.ones(2)])
    with pytest.raises(TypeError, match="list"):
        ll.product(torch.ones(2, 2))
    with pytest.raises(ValueError, match="empty"):
        ll.product([])
    with pytest.raises(ValueError, match="zero width"):
        ll.product([torch.ones(0, 2)])


def test_caller_weights_untouched():
    W = torch.ones(2, 3, dtype=torch.float32, requires_grad=True)
    ll.classify([W, torch.ones(3, 2)], lambda A: torch.zeros(3, 3))
    assert W.dtype == torch.float32 and W.requires_grad and W.grad is None


def test_flatten_order_is_that_of_lg_mlp_linear():
    torch.manual_seed(0)
    model = lg.mlp([3, 4, 2], activation="linear", bias=False)
    X = torch.randn(5, 3, dtype=F64)
    p = lg.Problem(model, X, torch.zeros(5, 2, dtype=F64))
    Ws = ll.unflatten_weights(p.theta, (3, 4, 2))
    assert torch.equal(ll.flatten_weights(Ws), p.theta)
    assert torch.allclose(p.outputs(p.theta), X @ ll.product(Ws).T, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match=r"expected \(20,\)"):
        ll.unflatten_weights(p.theta[:-1], (3, 4, 2))


# -- the differential as an operator ----------------------------------------------------------
def test_differential_operator_matches_autograd_jacobian():
    Ws = random_rank_weights((3, 4, 2, 5), [3, 1, 2], seed=2)
    D = ll.differential(Ws)
    J = jacobian_of_product(Ws)
    assert D.shape == tuple(J.shape)
    torch.manual_seed(0)
    v, u = torch.randn(J.shape[1], dtype=F64), torch.randn(J.shape[0], dtype=F64)
    V, U = torch.randn(J.shape[1], 3, dtype=F64), torch.randn(J.shape[0], 4, dtype=F64)
    assert torch.allclose(D.torch_matvec(v), J @ v, rtol=1e-12, atol=1e-12)
    assert torch.allclose(D.torch_rmatvec(u), J.T @ u, rtol=1e-12, atol=1e-12)
    assert torch.allclose(D.torch_matmat(V), J @ V, rtol=1e-12, atol=1e-12)
    assert torch.allclose(D.torch_rmatmat(U), J.T @ U, rtol=1e-12, atol=1e-12)
    assert np.allclose(D @ v.numpy(), (J @ v).numpy(), rtol=1e-12, atol=1e-12)  # scipy export
    assert np.allclose(D.T @ u.numpy(), (J.T @ u).numpy(), rtol=1e-12, atol=1e-12)
    assert torch.allclose(D.materialise(), J, rtol=1e-12, atol=1e-12)
    assert torch.allclose(kronecker_jacobian(Ws), J, rtol=1e-12, atol=1e-12)


# -- rank of the differential: closed form against numerical rank ----------------------------
@settings(deadline=None, max_examples=200)
@given(rank_patterns())
def test_staircase_formula_equals_numerical_rank_of_dmu(pattern):
    """§4.3 / §7 item 9: Σ(u_i − u_{i−1})v_i = rank dμ on random rank patterns."""
    widths, ranks, seed = pattern
    Ws = random_rank_weights(widths, ranks, seed)
    details = ll.differential_rank_details(Ws)
    numerical = lg.numerical_rank(kronecker_jacobian(Ws))
    assert numerical.decided, numerical
    assert details.rank == numerical.rank == ll.differential_rank(Ws)
    assert details.decided
    assert ll.differential_rank_numerical(Ws).rank == numerical.rank
    fs = ll.functional_space(widths)
    assert details.rank <= fs.dim
    assert details.u[-1] == widths[-1] and details.v[0] == widths[0]
    # the product's rank is cut at its round-off floor eps·max(d)·Π‖W_i‖₂: ranks [2, 1, 1] can
    # give a product whose singular values are all round-off, which a relative cut reads as full
    floor = torch.finfo(torch.float64).eps * max(widths) * math.prod(
        float(torch.linalg.matrix_norm(W, ord=2)) for W in Ws)
    e = lg.numerical_rank(ll.product(Ws), atol=floor).rank
    if e == fs.r:  # rank W̄ = r ⇒ dμ maximal (§4.3)
        assert details.maximal
    if not fs.filling and e < fs.r:  # non-filling, rank-deficient ⇒ never maximal
        assert not details.maximal
    if fs.filling:  # onto iff some i has rank W_{>i} = d_h and rank W_{<i} = d_0
        onto = any(u == widths[-1] and v == widths[0]
                   for u, v in zip(details.u, details.v, strict=True))
        assert (details.rank == widths[0] * widths[-1]) == onto


def test_filling_example_232_has_maximal_rank_at_zero_product():
    """§4.3: (2,3,2), W_1 = [[1,0],[0,1],[0,0]], W_2 = [[0,0,1],[0,0,2]]: W̄ = 0, rank 4."""
    W1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=F64)
    W2 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]], dtype=F64)
    assert ll.is_filling((2, 3, 2))
    assert torch.count_nonzero(ll.product([W1, W2])) == 0
    assert ll.differential_rank([W1, W2]) == 4
    assert lg.numerical_rank(jacobian_of_product([W1, W2])).rank == 4
    assert ll.functional_space((2, 3, 2)).dim == 4


@pytest.mark.parametrize("widths,n_params,dim", [
    ((3, 2, 3), 12, 8), ((3, 1, 3), 6, 5), ((2, 3, 2), 12, 4), ((4, 2, 3, 4), 26, 12)])
def test_generic_ranks_of_spec_43(widths, n_params, dim):
    fs = ll.functional_space(widths)
    assert (fs.n_params, fs.dim) == (n_params, dim)
    full = [min(a, b) for a, b in zip(widths[1:], widths[:-1], strict=True)]
    Ws = random_rank_weights(widths, full, 7)
    assert ll.differential_rank(Ws) == dim
    assert lg.numerical_rank(jacobian_of_product(Ws)).rank == dim
    assert fs.generic_fibre_dim == n_params - dim
    if len(widths) == 3 and widths[1] == fs.r:  # h = 2, hidden width r: the GL_r orbit, r²
        assert fs.generic_fibre_dim == fs.r**2


def test_rank_deficient_non_filling_323_stays_below_8():
    for seed in range(20):
        Ws = random_rank_weights((3, 2, 3), [1, 2], seed)
        assert ll.differential_rank(Ws) <= 7
        assert lg.numerical_rank(jacobian_of_product(Ws)).rank == ll.differential_rank(Ws)


def test_filling_predicate():
    assert ll.is_filling((3, 5, 2)) and ll.is_filling((2, 2)) and ll.is_filling((4, 3, 3, 2))
    assert not ll.is_filling((3, 1, 3)) and not ll.is_filling((4, 2, 3, 4))


# -- tangent space of the rank stratum (§4.1, §4.8) ---------------------------------------
def test_tangent_projector_properties_and_image_of_dmu():
    Ws = random_rank_weights((4, 2, 5), [2, 2], seed=3)
    Wbar = ll.product(Ws)
    T = ll.tangent_space(Wbar)
    assert T.rank == 2 and T.dim == 2 * (4 + 5 - 2) and T.rank_decision.decided
    torch.manual_seed(1)
    A, B = torch.randn(5, 4, dtype=F64), torch.randn(5, 4, dtype=F64)
    PA = T.project(A)
    assert torch.allclose(T.project(PA), PA, atol=1e-13)  # idempotent
    assert torch.allclose(PA + T.project_normal(A), A, atol=1e-13)
    assert abs(float((PA * B).sum() - (A * T.project(B)).sum())) < 1e-12  # self-adjoint
    assert torch.allclose(T.U_perp.T @ PA @ T.V_perp, torch.zeros(3, 2, dtype=F64), atol=1e-13)
    P = T.operator().materialise()
    assert lg.numerical_rank(P).rank == T.dim
    assert torch.allclose(P, P.T, atol=1e-13)
    # at rank r the image of dμ is exactly T (§4.3): P_T J = J
    J = jacobian_of_product(Ws)
    assert torch.allclose(P @ J, J, atol=1e-12)


def test_tangent_space_rejects_bad_rank():
    with pytest.raises(ValueError, match=r"rank = 3 must be an integer in \[0, 2\]"):
        ll.tangent_space(torch.eye(2, dtype=F64), rank=3)
