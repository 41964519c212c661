"""Closed-form Hessian ranks of deep linear networks against measured ranks (§5)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lossgeom as lg
from lossgeom import linear as ll
from lossgeom.report import jsonable

F64 = torch.float64


def measured_ranks(widths, n, r, loss="mse", bias=False, seed=0):
    """Independent oracle: H_L by torch.func.hessian, H_o = Jᵀ∇²ₓC J, H_f = ∇²⟨stop(∇ₓC), x(θ)⟩.

    Ranks cut at tol = N·eps·max(‖H_o‖, ‖H_f‖, ‖H_L‖) (a shared scale, so a part that vanishes
    identically is not ranked against its own round-off).
    """
    g = torch.Generator().manual_seed(seed)
    X = (torch.randn(n, r, generator=g, dtype=F64)
         @ torch.randn(r, widths[0], generator=g, dtype=F64))
    K = widths[-1]
    Y = (torch.randn(n, K, generator=g, dtype=F64) if loss == "mse"
         else torch.softmax(torch.randn(n, K, generator=g, dtype=F64), dim=-1))
    shapes = []
    for a, b in zip(widths[1:], widths[:-1], strict=True):
        shapes.append((a, b))
        if bias:
            shapes.append((a,))
    sizes = [torch.Size(s).numel() for s in shapes]
    theta = torch.cat([torch.randn(s, generator=g, dtype=F64).reshape(-1) / s[-1] ** 0.5
                       for s in shapes])

    def outputs(th):
        parts, h, i = list(torch.split(th, sizes)), X, 0
        for _ in range(len(widths) - 1):
            h = h @ parts[i].reshape(shapes[i]).T
            i += 1
            if bias:
                h = h + parts[i]
                i += 1
        return h

    def C(x):
        if loss == "mse":
            return 0.5 * ((x - Y) ** 2).sum()  # Singh's MSE-half; the factor does not change ranks
        return -(Y * torch.log_softmax(x, dim=-1)).sum()

    H = torch.func.hessian(lambda th: C(outputs(th)))(theta)
    J = torch.func.jacrev(lambda th: outputs(th).reshape(-1))(theta)
    x = outputs(theta).detach()
    HC = torch.func.hessian(lambda z: C(z.reshape(n, K)))(x.reshape(-1))
    Ho = J.T @ HC @ J
    gx = torch.func.grad(C)(x)
    Hf = torch.func.hessian(lambda th: (gx * outputs(th)).sum())(theta)
    N = theta.numel()
    rtol = N * torch.finfo(F64).eps
    sv = {name: torch.linalg.eigvalsh(0.5 * (A + A.T)).abs()  # σ = |λ| for symmetric A
          for name, A in (("outer", Ho), ("functional", Hf), ("total", H))}
    scale = max(float(s.max()) for s in sv.values())
    out = {}
    for name, s in sv.items():
        d = lg.numerical_rank(s, rtol, atol=rtol * scale, shape=(N, N))
        assert d.decided, (name, d)
        out[name] = d.rank
    return out, N


def test_singh_oracle_150_175_250():
    """§5.3 / §7 item 12 [Q]: widths [25, 5, 10, 10], data rank 25, MSE."""
    f = ll.hessian_rank_formula([25, 5, 10, 10], 25)
    assert (f["outer"], f["functional"], f["total"]) == (150, 175, 250)
    assert f["n_params"] == 275 and f["q"] == 5 and f["s"] == 10


def test_singh_oracle_measured_with_torch_hessian():
    ranks, N = measured_ranks([25, 5, 10, 10], n=50, r=25)
    assert N == 275
    assert ranks == {"outer": 150, "functional": 175, "total": 250}


CASES = [([4, 3, 2], 10, 4), ([4, 3, 2], 10, 2), ([3, 5, 4, 2], 8, 3), ([5, 2, 3], 4, 4),
         ([6, 4, 4, 3], 12, 5), ([3, 2, 2, 2, 3], 10, 3), ([5, 6, 2], 3, 3), ([3, 4], 10, 3)]


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("widths,n,r", CASES, ids=[f"{w}-n{n}-r{r}" for w, n, r in CASES])
def test_formula_equals_measured_no_bias(widths, n, r, loss):
    ranks, N = measured_ranks(widths, n, r, loss)
    f = ll.hessian_rank_formula(widths, r, loss)
    assert f["n_params"] == N
    assert (f["outer"], f["functional"], f["total"]) == (ranks["outer"], ranks["functional"],
                                                         ranks["total"])


BIAS_CASES = [([4, 3, 2], 10, 4), ([4, 3, 2], 10, 2), ([3, 5, 4, 2], 8, 3), ([6, 4, 4, 3], 12, 5),
              ([3, 4], 10, 3), ([4, 2, 3], 9, 3)]


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("widths,n,r", BIAS_CASES, ids=[f"{w}-n{n}-r{r}" for w, n, r in BIAS_CASES])
def test_formula_equals_measured_with_bias_where_closed_form(widths, n, r, loss):
    """§5.4 (n > r, so 1 ∉ col X): H_o always; H_f, H_L at depth ≤ 2; None beyond."""
    ranks, N = measured_ranks(widths, n, r, loss, bias=True)
    f = ll.hessian_rank_formula(widths, r, loss, bias=True, n_samples=n)
    assert f["n_params"] == N
    assert f["outer"] == ranks["outer"]
    if len(widths) <= 3:
        assert (f["functional"], f["total"]) == (ranks["functional"], ranks["total"])
    else:
        assert f["functional"] is None and f["total"] is None and "measure" in f["reason"]


def test_bias_with_ones_in_column_space_has_no_closed_form():
    f = ll.hessian_rank_formula([5, 2, 3], 4, bias=True, n_samples=4)
    assert f["outer"] is f["functional"] is f["total"] is None
    assert "1 lies in col X" in f["reason"]


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(1, 30), min_size=2, max_size=6), st.integers(0, 30),
       st.sampled_from(["mse", "softmax_ce", "ce"]))
def test_formula_consistency(widths, r, loss):
    r = min(r, widths[0])
    f = ll.hessian_rank_formula(widths, r, loss)
    K = widths[-1] - (loss != "mse")
    assert f["k_effective"] == K
    assert 0 <= f["outer"] <= f["n_params"] and 0 <= f["total"] <= f["n_params"]
    q, s = f["q"], f["s"]
    if len(widths) > 2:  # §5.2: rank H_L = rank H_o + rank H_f − q(2s − q)
        assert f["total"] == f["outer"] + f["functional"] - q * (2 * s - q)
    else:
        assert f["functional"] == 0 and f["total"] == f["outer"]
    assert ll.hessian_rank_formula(widths, r, "ce") == ll.hessian_rank_formula(widths, r,
                                                                               "softmax_ce")


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"widths": [3, 0, 2], "data_rank": 2}, ValueError, "non-positive"),
    ({"widths": [3, 2], "data_rank": 4}, ValueError, "exceeds the input width"),
    ({"widths": [3, 2], "data_rank": -1}, ValueError, ">= 0"),
    ({"widths": [3, 2], "data_rank": 2, "loss": "bce"}, ValueError, "unknown loss 'bce'"),
    ({"widths": [3, 2], "data_rank": 2, "bias": "output"}, TypeError, "bias must be True"),
    ({"widths": [3, 2], "data_rank": 2, "n_samples": 1}, ValueError, "below data_rank"),
])
def test_formula_rejects_bad_input(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        ll.hessian_rank_formula(**kwargs)


def test_comparison_linear_agrees_nonlinear_reported_with_tolerance_and_gap():
    comp = ll.hessian_rank_comparison([6, 4, 4, 3], 12, activations=("linear", "tanh", "relu"))
    f = ll.hessian_rank_formula([6, 4, 4, 3], 6)
    assert comp.formula["outer"] == f["outer"] and comp.n_params == f["n_params"]
    rows = {(r.activation, r.part): r for r in comp.rows}
    assert len(rows) == 9
    for part in ("outer", "functional", "total"):
        lin = rows[("linear", part)]
        assert lin.agrees and lin.decided and lin.gap > 1e6  # §1.4: linear gaps ≳ 1e6
        assert lin.gap_at_formula == pytest.approx(lin.gap)
        for act in ("tanh", "relu"):
            row = rows[(act, part)]
            assert row.tol > 0 and row.gap > 0 and 0 <= row.measured <= comp.n_params
    # the measured tanh rank is not the linear formula here: agreement is not claimed
    assert any(not rows[("tanh", p)].agrees for p in ("outer", "functional", "total"))
    json.dumps(jsonable(comp.to_dict()))


def test_comparison_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown activation"):
        ll.hessian_rank_comparison([3, 2, 2], 4, activations=("swish",))
    with pytest.raises(ValueError, match="exceeds min"):
        ll.hessian_rank_comparison([3, 2, 2], 4, data_rank=4)
