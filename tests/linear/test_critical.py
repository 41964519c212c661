"""Pure and spurious critical points, Eckart–Young landscape, bad minima (§4.2–§4.8)."""

import dataclasses
import json
import math
import warnings
from itertools import combinations

import numpy as np
import pytest
import torch

from lossgeom import linear as ll
from lossgeom.report import jsonable

F64 = torch.float64
SPEC_INERTIA_RTOL = 1e-9  # §1.4: sign counts at 1e-9·max|λ| for float64 autograd Hessians


def loss_of_theta(loss, widths):
    """θ ↦ ℓ(W_h⋯W_1) written out with explicit matrix products (oracle, not the library's μ)."""
    def L(theta):
        out, off = None, 0
        for a, b in zip(widths[1:], widths[:-1], strict=True):
            W = theta[off:off + a * b].reshape(a, b)
            off += a * b
            out = W if out is None else W @ out
        return loss(out)
    return L


def hessian_eigenvalues(loss, Ws):
    widths = (Ws[0].shape[1],) + tuple(W.shape[0] for W in Ws)
    theta = torch.cat([W.reshape(-1) for W in Ws])
    return torch.linalg.eigvalsh(torch.func.hessian(loss_of_theta(loss, widths))(theta))


def sign_counts(lam, rtol=SPEC_INERTIA_RTOL):
    tol = rtol * float(lam.abs().max())
    return int((lam > tol).sum()), int((lam < -tol).sum()), int((lam.abs() <= tol).sum())


def random_orthogonal(n, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return torch.as_tensor(q * np.sign(np.diag(r)), dtype=F64)


# -- the Eckart–Young landscape (§4.6, §7 item 10) ----------------------------------------
SIGMA = (4.0, 3.0, 2.0, 1.0)


@pytest.fixture
def Q44():
    S = torch.diag(torch.tensor(SIGMA, dtype=F64))
    return random_orthogonal(4, 0) @ S @ random_orthogonal(4, 1).T


def test_eckart_young_table_values_and_indices(Q44):
    points = ll.eckart_young_points(Q44, 2)
    assert [p.loss for p in points] == pytest.approx([5, 10, 13, 17, 20, 25], abs=1e-12)
    assert [p.morse_index for p in points] == [0, 1, 2, 2, 3, 4]
    assert sorted(p.index_set for p in points) == list(combinations(range(4), 2))
    U, S, Vh = torch.linalg.svd(Q44)
    for p in points:  # loss = ‖W_I − Q‖²_F from the SVD, no factor ½
        idx = list(p.index_set)
        W_I = U[:, idx] @ torch.diag(S[idx]) @ Vh[idx]
        assert p.loss == pytest.approx(float(((W_I - Q44) ** 2).sum()), abs=1e-12)
        assert isinstance(p, tuple) and p._fields == ("index_set", "loss", "morse_index")


def test_eckart_young_morse_index_equals_hessian_index_on_every_fibre(Q44):
    """Index and nullity of ∇²L at θ ∈ μ⁻¹(W_I) from eigenvalues of an autograd Hessian."""
    ls = ll.eckart_young_landscape(Q44, 2)
    frob = lambda W: ((W - Q44) ** 2).sum()  # noqa: E731
    for p, pred in zip(ls.points, ls.predicted_inertia, strict=True):
        Ws = ll.fibre_point(Q44, p.index_set, (4, 2, 4), rng=11)
        assert float(frob(ll.product(Ws))) == pytest.approx(p.loss, abs=1e-12)
        pos, neg, zero = sign_counts(hessian_eigenvalues(frob, Ws))
        assert neg == p.morse_index
        assert zero == 4  # fibre dimension r² for h = 2
        assert (pos, neg, zero) == pred
    assert ls.loss_at_zero == pytest.approx(30.0)
    theta0 = [torch.zeros(2, 4, dtype=F64), torch.zeros(4, 2, dtype=F64)]
    assert sign_counts(hessian_eigenvalues(frob, theta0)) == (8, 8, 0)  # §4.6: θ = 0


def test_eckart_young_inertia_confirmed_by_analyze_deeper_net():
    """lg.analyze at a point on each fibre of a depth-3 net (3, 2, 3, 4) matches the prediction."""
    Q = random_orthogonal(4, 2)[:, :3] @ torch.diag(torch.tensor([5.0, 2.0, 1.0], dtype=F64)) \
        @ random_orthogonal(3, 3).T
    _, checks = ll.eckart_young_check(Q, 2, (3, 2, 3, 4), rng=0)
    fs = ll.functional_space((3, 2, 3, 4))
    assert len(checks) == 3
    for c in checks:
        assert c.agrees, c
        assert c.measured[2] == fs.n_params - fs.dim
        assert c.measured_loss == pytest.approx(c.loss, abs=1e-12)
        assert c.pure is True
        # the fibres are manifolds of critical points: index 0 is a non-strict minimum
        assert c.kind == ("nonstrict_local_minimum" if c.morse_index == 0 else "strict_saddle")
    assert [c.measured[1] for c in checks] == [0, 1, 2]


def test_eckart_young_check_on_spec_table(Q44):
    _, checks = ll.eckart_young_check(Q44, 2, rng=5)
    assert [c.measured for c in checks] == [(12, 0, 4), (11, 1, 4), (10, 2, 4), (10, 2, 4),
                                            (9, 3, 4), (8, 4, 4)]
    assert all(c.agrees for c in checks)


def test_spurious_values_and_purity_of_eckart_young_points(Q44):
    ls = ll.eckart_young_landscape(Q44, 2)
    total = sum(s * s for s in SIGMA)
    expected = sorted([total] + [total - s * s for s in SIGMA])
    assert [v for _, v in ls.spurious] == pytest.approx(expected)
    loss = ll.frobenius_loss(Q44)
    for subset, _ in ls.spurious:  # |I| < r: spurious critical points (∇ℓ(W_I) = 2(W_I − Q) ≠ 0)
        Ws = ll.fibre_point(Q44, subset, (4, 2, 4), rng=1)
        c = ll.classify(Ws, loss)
        assert c.is_critical and c.pure is False and c.kind == "spurious"
        assert c.rank_product == len(subset)
        assert ll.classify(Ws, loss, convention="all_singular").pure is True


def test_singular_value_ties_warn_and_return_one_point_per_family():
    Q = torch.diag(torch.tensor([3.0, 2.0, 2.0, 1.0], dtype=F64))
    with pytest.warns(ll.SingularValueTieWarning, match="not finite"):
        points = ll.eckart_young_points(Q, 2)
    # families: {0}+one of the tied pair, the tied pair, {0,3}, one tied + {3}
    assert [p.loss for p in points] == pytest.approx([5.0, 8.0, 10.0, 13.0])
    assert [p.morse_index for p in points] == [0, 2, 2, 3]
    with pytest.warns(ll.SingularValueTieWarning):
        ls, checks = ll.eckart_young_check(Q, 2, rng=0)
    assert not ls.finite and ls.ties == ((1, 2),)
    assert all(c.agrees for c in checks), checks  # tied pairs add zero eigenvalues
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ll.eckart_young_points(torch.eye(3, dtype=F64), 3)) == 1  # nothing to split


def test_rank_of_q_below_r_gives_q_itself():
    Q = torch.zeros(3, 3, dtype=F64)
    Q[0, 0] = 2.0
    points = ll.eckart_young_points(Q, 2)
    assert points == [ll.EckartYoungPoint((0,), 0.0, 0)]


@pytest.mark.parametrize("r,exc,msg", [(0, ValueError, r"\[1, 4\]"), (5, ValueError, r"\[1, 4\]"),
                                        (1.5, TypeError, "integer")])
def test_eckart_young_rejects_bad_r(Q44, r, exc, msg):
    with pytest.raises(exc, match=msg):
        ll.eckart_young_points(Q44, r)


def test_eckart_young_rejects_non_finite_q(Q44):
    Q44[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"eckart_young_points\(Q, r\): Q contains 1 non-finite"):
        ll.eckart_young_points(Q44, 2)


# -- the weighted-Frobenius bad minimum (§4.7, §7 item 11) --------------------------------
def test_weighted_example_losses_and_hessians():
    ex = ll.weighted_frobenius_example()
    assert not ll.is_filling(ex.widths)
    Q, Lam = ex.Q, ex.Lambda
    ell = lambda W: (Lam * (W - Q) ** 2).sum()  # noqa: E731
    pts = ex.points()
    assert float(ell(ll.product(pts["global_minimum"]))) == pytest.approx(0.5)
    assert float(ell(ll.product(pts["bad_minimum"]))) == pytest.approx(1.0)
    assert float(ell(ll.product(pts["saddle"]))) == pytest.approx(1.5)
    eig = {k: hessian_eigenvalues(ell, list(v)) for k, v in pts.items()}
    assert eig["global_minimum"].tolist() == pytest.approx([0, 3, 4, 5], abs=1e-12)
    assert eig["bad_minimum"].tolist() == pytest.approx([0, 2, 2, 6], abs=1e-12)
    assert eig["saddle"].tolist() == pytest.approx([-2, -1, 1, 2], abs=1e-12)


def test_weighted_example_classification():
    ex = ll.weighted_frobenius_example()
    res = {k: ll.classify(list(v), ex.loss) for k, v in ex.points().items()}
    for name in ("global_minimum", "bad_minimum"):  # pure (rank = r), as theorem (T2) requires
        c = res[name]
        assert c.is_critical and c.pure is True and c.rank_product == c.r == 1
        assert c.differential_rank == c.dim_functional_space == 3 and c.maximal_differential
        assert c.differential_numerical.rank == 3
        assert c.stratum_grad_norm < 1e-12
    s = res["saddle"]  # θ = 0: strict saddle, spurious (∇ℓ(0) = −2Λ∘Q ≠ 0)
    assert s.is_critical and s.pure is False and s.kind == "spurious" and s.rank_product == 0
    assert s.loss_grad_norm == pytest.approx(math.sqrt(5))
    assert ll.classify(list(ex.saddle), ex.loss, convention="all_singular").pure is True


def test_noncritical_point_reports_grad_norm_not_purity():
    ex = ll.weighted_frobenius_example()
    W1, W2 = (w.clone() for w in ex.bad_minimum)
    W1[0, 0] += 0.1
    c = ll.classify([W1, W2], ex.loss)
    theta = torch.cat([W1.reshape(-1), W2.reshape(-1)]).requires_grad_(True)
    g = torch.autograd.grad(loss_of_theta(ex.loss.loss, (2, 1, 2))(theta), theta)[0]
    assert not c.is_critical and c.pure is None and c.kind == "noncritical"
    assert c.grad_norm == pytest.approx(float(g.norm()), rel=1e-12)
    assert "not critical" in c.reason


def test_classify_gradient_matches_autograd_at_random_points():
    torch.manual_seed(3)
    widths = (3, 2, 4, 2)
    Ws = [torch.randn(b, a, dtype=F64) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    Q = torch.randn(2, 3, dtype=F64)
    c = ll.classify(Ws, ll.frobenius_loss(Q))
    theta = torch.cat([W.reshape(-1) for W in Ws]).requires_grad_(True)
    L = loss_of_theta(lambda W: ((W - Q) ** 2).sum(), widths)(theta)
    assert c.grad_norm == pytest.approx(float(torch.autograd.grad(L, theta)[0].norm()), rel=1e-12)
    assert not c.is_critical


def test_filling_rank_deficient_points_pure_iff_unconstrained_minimum():
    """Filling (2, 3, 2): at rank W̄ < r a critical θ is pure iff ∇ℓ(W̄) = 0."""
    Q = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64)  # rank 1
    loss = ll.frobenius_loss(Q)
    U, S, Vh = torch.linalg.svd(Q)
    W1 = torch.zeros(3, 2, dtype=F64)
    W1[0] = math.sqrt(S[0]) * Vh[0]
    W2 = torch.zeros(2, 3, dtype=F64)
    W2[:, 0] = math.sqrt(S[0]) * U[:, 0]
    c = ll.classify([W1, W2], loss)  # W̄ = Q, global minimum at rank 1 < r = 2
    assert c.filling and c.rank_product == 1 and c.is_critical and c.pure is True
    c0 = ll.classify([torch.zeros(3, 2), torch.zeros(2, 3)], loss)  # W̄ = 0, ∇ℓ = −2Q
    assert c0.is_critical and c0.pure is False


def test_data_loss_classification_matches_frobenius_change_of_variables():
    """‖W Xᵀ − Yᵀ‖² with XᵀX ≻ 0: critical points of the data loss at the least-squares fit."""
    g = torch.Generator().manual_seed(4)
    X = torch.randn(20, 3, generator=g, dtype=F64)
    Y = torch.randn(20, 2, generator=g, dtype=F64)
    W_star = torch.linalg.lstsq(X, Y).solution.T  # (2, 3) unconstrained minimiser
    loss = ll.data_loss(X, Y)
    assert torch.allclose(loss(W_star), torch.zeros(2, 3, dtype=F64), atol=1e-11)
    U, S, Vh = torch.linalg.svd(W_star, full_matrices=False)
    Ws = [S.sqrt()[:, None] * Vh, U * S.sqrt()]  # widths (3, 2, 2), filling
    c = ll.classify(Ws, loss)
    assert c.filling and c.is_critical and c.pure is True
    assert ll.classify(Ws, ll.data_loss(X.numpy(), Y.numpy(), "mse", "mean")).is_critical


def test_functional_loss_wraps_scalar_losses():
    Q = torch.eye(2, dtype=F64)
    fl = ll.functional_loss(lambda W: ((W - Q) ** 4).sum())
    assert torch.allclose(fl(torch.zeros(2, 2, dtype=F64)), -4 * Q)
    with pytest.raises(TypeError, match="callable"):
        ll.functional_loss(3)


def test_classify_rejects_bad_inputs():
    Ws = [torch.ones(1, 2, dtype=F64), torch.ones(2, 1, dtype=F64)]
    with pytest.raises(ValueError, match="unknown convention 'cone'"):
        ll.classify(Ws, lambda W: W, convention="cone")
    with pytest.raises(ValueError, match=r"loss_grad_fn returned shape \(3, 3\)"):
        ll.classify(Ws, lambda W: torch.zeros(3, 3))
    with pytest.raises(ValueError, match="non-finite"):
        ll.classify(Ws, lambda W: W * float("nan"))
    with pytest.raises(TypeError, match="loss_grad_fn must be callable"):
        ll.classify(Ws, None)


def test_linear_critical_is_frozen_and_json_ready():
    ex = ll.weighted_frobenius_example()
    c = ll.classify(list(ex.bad_minimum), ex.loss)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.pure = False
    d = json.loads(json.dumps(jsonable(c.to_dict())))
    for key in ("is_critical", "rank_product", "r", "pure", "differential_rank",
                "dim_functional_space", "convention", "grad_norm"):
        assert key in d


# -- gradient descent: bad minima (non-filling) and purity (filling) ---------------------------
def test_gd_finds_bad_minimum_in_non_filling_case():
    """§4.7: a sizable fraction of GD runs ends at the bad minimum L = 1.0; all minima pure."""
    res = ll.bad_minima_experiment(runs=40, steps=2000, seed=1)
    minima = {round(c.loss, 6): c for c in res.clusters if c.kind == "minimum"}
    assert set(minima) == {0.5, 1.0}
    assert res.best_loss == pytest.approx(0.5)
    assert res.n_bad_minima == minima[1.0].count > 0
    assert minima[1.0].label == "bad minimum" and minima[0.5].label == "lowest minimum"
    for c in minima.values():
        assert c.pure is True and c.inertia == (3, 0, 1) and c.rank_product == 1
    assert res.n_not_converged == 0
    json.dumps(jsonable(res.to_dict()))


def test_gd_minima_are_pure_and_global_in_filling_case():
    """§4.5 (T1)/(T2): filling (2, 3, 2) + convex ℓ: every GD minimum is pure and global."""
    ex = ll.weighted_frobenius_example()
    res = ll.bad_minima_experiment(runs=30, steps=2000, seed=2, widths=(2, 3, 2), loss=ex.loss)
    assert res.filling and res.n_not_converged == 0 and res.n_bad_minima == 0
    assert [c.kind for c in res.clusters] == ["minimum"]
    (c,) = res.clusters
    assert c.pure is True and c.count == 30 and c.loss == pytest.approx(0.0, abs=1e-12)


def test_experiment_rejects_bad_settings():
    with pytest.raises(ValueError, match="runs must be a positive integer"):
        ll.bad_minima_experiment(runs=0)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        ll.bad_minima_experiment(runs=2, lr=float("nan"))
    with pytest.raises(ValueError, match=r"loss expects W of shape \(2, 2\)"):
        ll.bad_minima_experiment(runs=2, widths=(3, 1, 2))
