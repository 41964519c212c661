"""Star, core and dead-pair constructions, locus dimensions, predictions, bad input (§3.3–3.4)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lossgeom as lg
from lossgeom.loci import (
    core_point,
    dead_pair_point,
    distance_to_locus,
    growth_formulas,
    locate,
    locus_dimension,
    star_point,
)

from .helpers import SPEC_INERTIA_RTOL, dense_spectrum, gaussian_problem

F64 = torch.float64


def pinned_count(widths, layers, bias):
    """Count the pinned coordinates of S_{i₁…} by walking a model's named parameters."""
    model = lg.mlp(widths, "tanh", bias)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    first, ell = min(layers), len(linears)
    count = 0
    for index, lin in enumerate(linears, start=1):
        zeroed = index in layers or index == ell
        if zeroed:
            count += lin.weight.numel()
        if bias and (index == ell or index >= first):       # b_i, later hidden biases, b_ℓ = c*
            count += lin.bias.numel()
    return sum(p.numel() for p in model.parameters()) - count


@given(widths=st.lists(st.integers(1, 6), min_size=3, max_size=6), bias=st.booleans(),
       data=st.data())
def test_locus_dimension_formula_matches_pinned_coordinates(widths, bias, data):
    """§3.3 dimension formulas against a direct count on a model's parameters."""
    hidden = len(widths) - 2
    r = data.draw(st.integers(1, hidden))
    layers = sorted(data.draw(st.permutations(range(1, hidden + 1)))[:r])
    assert locus_dimension(widths, layers, bias=bias) == pinned_count(widths, layers, bias)


@given(depth=st.integers(2, 6), w=st.integers(1, 9), n0=st.integers(1, 5), k=st.integers(1, 3),
       n=st.integers(1, 8), bias=st.booleans())
def test_growth_closed_forms_match_general_formula(depth, w, n0, k, n, bias):
    """§3.6 closed forms (equal hidden widths) against the §3.3 formula."""
    widths = [n0] + [w] * (depth - 1) + [k]
    f = growth_formulas(depth, w, n0, k, n, bias)
    assert f["n_params"] == sum(p.numel() for p in lg.mlp(widths, bias=bias).parameters())
    for i in range(1, depth):
        assert f["dims"][f"S_{i}"] == locus_dimension(widths, i, bias=bias)
        for j in range(i + 1, depth):
            assert f["dims"][f"C_{{{i},{j}}}"] == locus_dimension(widths, (i, j), bias=bias)


@pytest.mark.parametrize("bias", [True, False])
def test_star_point_pins_exactly_the_locus(bias):
    problem = gaussian_problem([3, 4, 5, 4, 2], bias=bias, seed=1)
    theta = star_point(problem, 2, rng=0)
    p = problem.unflatten(theta)
    assert float(p["2.weight"].abs().max()) == 0.0 and float(p["6.weight"].abs().max()) == 0.0
    if bias:
        assert float(p["2.bias"].abs().max()) == float(p["4.bias"].abs().max()) == 0.0
        assert torch.equal(p["6.bias"], problem.targets.mean(dim=0))      # c* = mean label
        assert float(p["0.bias"].abs().min()) > 0.0                       # earlier biases free
    out = problem.outputs(theta)
    assert torch.allclose(out, (problem.targets.mean(0) if bias else 0.0) * torch.ones_like(out))
    assert distance_to_locus(problem, theta, 2) == 0.0
    assert distance_to_locus(problem, theta, [1, 2]) > 0.0


def test_base_gives_the_orthogonal_projection():
    """With base=θ, star_point is the nearest point of S_i: ‖θ − P θ‖ = distance, P idempotent."""
    problem = gaussian_problem([3, 4, 5, 4, 1], seed=2)
    theta = problem.theta
    proj = star_point(problem, 1, base=theta)
    assert math.isclose(float(torch.linalg.norm(theta - proj)),
                        distance_to_locus(problem, theta, 1), rel_tol=1e-14)
    assert torch.equal(star_point(problem, 1, base=proj), proj)
    other = star_point(problem, 1, rng=5)           # any point of S_i is at least as far
    assert float(torch.linalg.norm(theta - other)) >= distance_to_locus(problem, theta, 1)


def test_rng_reproducible_and_free_coordinates_random():
    problem = gaussian_problem([3, 4, 5, 4, 1], seed=2)
    assert torch.equal(star_point(problem, 1, rng=3), star_point(problem, 1, rng=3))
    assert not torch.equal(star_point(problem, 1, rng=3), star_point(problem, 1, rng=4))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(core_point(problem, 1, 2, rng=g),
                       core_point(problem, 2, 1, rng=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("widths,bias,i", [([3, 4, 5, 4, 1], True, 1), ([3, 5, 4, 3], True, 2),
                                           ([2, 3, 4, 3, 3], False, 2), ([3, 4, 5, 3, 2], False, 3)])
def test_predicted_spectrum_equals_dense_hessian(widths, bias, i):
    """S_i∖C: eigenvalues eig P and ±s(M_i)s(T_i) match an independent dense Hessian."""
    problem = gaussian_problem(widths, bias=bias, seed=7)
    theta = star_point(problem, i, rng=1)
    r = locate(problem, theta, rtol=SPEC_INERTIA_RTOL)
    lam = dense_spectrum(problem, theta)
    pred = torch.tensor(r.prediction["eigenvalues"], dtype=F64)
    pred = torch.sort(torch.cat([pred, torch.zeros(lam.numel() - pred.numel(), dtype=F64)]))
    assert float((pred.values - lam).abs().max()) <= 1e-12 * float(lam.abs().max())
    assert r.prediction["eigenvalue_error"] <= 1e-12 * float(lam.abs().max())


@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_core_eigenvalue_with_nonzero_sigma0(activation):
    """§3.4(c): σ(0) ≠ 0 (B): the core eigenvalue is 2n(1 + ‖a_{ℓ−1}‖²)."""
    problem = gaussian_problem([3, 4, 5, 4, 1], bias=True, activation=activation, seed=8)
    theta = core_point(problem, 1, 2, rng=0)
    r = locate(problem, theta, rtol=SPEC_INERTIA_RTOL)
    W3 = problem.unflatten(theta)["4.weight"]
    sigma = {"sigmoid": torch.sigmoid, "softplus": torch.nn.functional.softplus}[activation]
    a = sigma(W3 @ sigma(torch.zeros(5, dtype=F64)))     # constant last hidden activation
    expected = 2 * problem.n_samples * (1 + float(a @ a))
    lam = dense_spectrum(problem, theta)
    assert math.isclose(float(lam[-1]), expected, rel_tol=1e-12)
    assert math.isclose(r.prediction["eigenvalues"][0], expected, rel_tol=1e-12)
    assert r.measured["inertia"] == [1, 0, 69] and r.agrees
    star = locate(problem, star_point(problem, 2, rng=0), rtol=SPEC_INERTIA_RTOL)
    assert star.critical and star.prediction is None and "σ(0) = 0" in star.failed_assumptions


def test_relu_reports_assumption_instead_of_prediction():
    problem = gaussian_problem([3, 4, 5, 4, 1], bias=True, activation="relu", seed=4)
    for theta in (star_point(problem, 2, rng=0), core_point(problem, 1, 2, rng=0)):
        r = locate(problem, theta, rtol=SPEC_INERTIA_RTOL)
        assert r.prediction is None and r.predicted_critical is None
        assert "σ smooth at 0" in r.failed_assumptions and "not smooth" in r.prediction_reason


@pytest.mark.parametrize("bias", [True, False])
def test_dead_pair_is_critical_but_not_a_star_point(bias):
    """§3.3: layers j, j+1 dead with a live output layer: critical, not on S."""
    problem = gaussian_problem([3, 4, 5, 4, 2], bias=bias, seed=9)
    theta = dead_pair_point(problem, 1, rng=2)
    assert float(problem.unflatten(theta)["6.weight"].abs().min()) > 0.0
    r = locate(problem, theta, rtol=SPEC_INERTIA_RTOL)
    assert r.dead_pairs == [1] and r.star_layers == [] and r.locus == "dead pair (1, 2)"
    assert r.critical and r.predicted_critical and r.grad_norm <= 1e-13
    assert r.prediction is None and "not Cooper's star locus" in r.prediction_reason
    assert all(d > r.on_tol for d in r.distances.values())


def test_generic_point_lies_on_no_locus():
    problem = gaussian_problem([3, 4, 5, 4, 1], seed=4)
    r = locate(problem, problem.theta)
    assert r.locus == "none" and r.prediction is None and "nearest" in r.prediction_reason
    assert set(r.distances) == {"S_1", "S_2", "S_3", "C_{1,2}", "C_{1,3}", "C_{2,3}"}
    assert r.distances["C_{1,2}"] >= max(r.distances["S_1"], r.distances["S_2"])


def test_higher_core_and_shallow_core():
    problem = gaussian_problem([3, 4, 5, 4, 1], seed=4)
    theta = core_point(problem, 1, 3, rng=0)
    problem.unflatten(theta)["2.weight"][:] = 0.0                     # W_2 = 0 as well
    r = locate(problem, theta, rtol=SPEC_INERTIA_RTOL)
    assert r.locus == "S_{1,2,3}" and r.measured["inertia"] == [1, 0, 69] and r.agrees
    shallow = gaussian_problem([3, 4, 5, 1], seed=4)                 # ℓ = 3: C_{1,2} is a point
    assert locus_dimension([3, 4, 5, 1], (1, 2)) == 0
    assert torch.equal(core_point(shallow, 1, 2, rng=0), core_point(shallow, 1, 2, rng=1))


@pytest.mark.parametrize("call,match", [
    (lambda p: star_point(p, 0), r"star_point\(problem, 0\): hidden layer 0 is outside"),
    (lambda p: star_point(p, 4), r"hidden layer 4 is outside the network \(expected 1 ≤ i ≤ 3"),
    (lambda p: core_point(p, 2, 2), r"core_point\(problem, 2, 2\): hidden layers must be distinct"),
    (lambda p: core_point(p, 1, 5), r"hidden layer 5 is outside"),
    (lambda p: dead_pair_point(p, 3), r"dead_pair_point\(problem, 3\): .*1 ≤ j ≤ ℓ−2 = 2"),
    (lambda p: locus_dimension([3, 4, 1], (1, 1)), r"must be distinct"),
    (lambda p: locus_dimension([3, 1], 1), r"at least one hidden layer"),
    (lambda p: distance_to_locus(p, p.theta, 9), r"hidden layer 9 is outside"),
])
def test_bad_layer_indices(call, match):
    problem = gaussian_problem([3, 4, 5, 4, 1], seed=4)
    with pytest.raises(ValueError, match=match):
        call(problem)


def test_too_shallow_says_the_minimum_depth():
    problem = gaussian_problem([3, 6, 1], seed=4)
    with pytest.raises(ValueError, match=r"1 hidden layer; a core C_\{i,j\} needs at least 2 "
                                         r"\(depth ℓ ≥ 3"):
        core_point(problem, 1, 2)
    with pytest.raises(ValueError, match=r"dead pair of hidden layers needs at least 2"):
        dead_pair_point(problem, 1)


def test_type_errors_and_unsupported_models():
    problem = gaussian_problem([3, 4, 5, 4, 1], seed=4)
    with pytest.raises(TypeError, match="rng must be"):
        star_point(problem, 1, rng="seed")
    with pytest.raises(TypeError, match="int or a sequence"):
        locus_dimension([3, 4, 1], "1")
    mixed = lg.Problem(lg.mlp([3, 4, 5, 1], bias="output"), problem.inputs, problem.targets)
    with pytest.raises(ValueError, match="biases in some layers only"):
        star_point(mixed, 1)
    r = locate(mixed, mixed.theta)
    assert r.convention is None and r.prediction is None
    not_mlp = lg.Problem(torch.nn.Sequential(torch.nn.Linear(3, 1)).double(), problem.inputs,
                         problem.targets)
    with pytest.raises(ValueError, match=r"0 hidden layers; a star locus S_i needs at least 1"):
        star_point(not_mlp, 1)
    wrapped = lg.Problem(torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(3, 1))).double(),
                         problem.inputs, problem.targets)
    with pytest.raises(TypeError, match="alternate nn.Linear"):
        locate(wrapped, wrapped.theta)


def test_softmax_best_constant_at_infinity_is_refused():
    X = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 1, 1])                       # class 2 never occurs
    problem = lg.Problem(lg.mlp([3, 4, 5, 3]), X, labels, loss="softmax_ce")
    with pytest.raises(ValueError, match="minimum at infinity"):
        star_point(problem, 1)


def test_attraction_small_perturbations_stay_large_ones_escape():
    """§3.4(d) experiment: monotone descent; η₀ = 1/‖∇²L(θ_C)‖ = 1/(2n) on a (B) core."""
    from lossgeom.loci import attraction

    problem = gaussian_problem([3, 4, 5, 4, 1], seed=4)
    r = attraction(problem, 2, 1, scales=[1e-4, 0.5], runs=3, steps=150, rng=0)
    assert r.layers == [1, 2] and math.isclose(r.learning_rate, 1 / (2 * problem.n_samples),
                                               rel_tol=1e-6)
    assert r.stayed_fraction[0] == 1.0 and r.escaped_fraction[1] == 1.0
    assert r.final_distance[0] <= 2 * r.initial_distance[0]
    for rows in r.per_run:
        for row in rows:
            assert row["final_loss"] <= row["start_loss"]                    # monotone descent
            escaped = row["final_loss"] < row["core_loss"] * (1 - r.escape_rtol)
            assert row["outcome"] == ("escaped" if escaped else "stayed")
    assert all(math.isclose(row["initial_distance"], 1e-4, rel_tol=0.9) for row in r.per_run[0])
    with pytest.raises(ValueError, match="scales must be finite numbers > 0"):
        attraction(problem, 1, 2, scales=[0.0])
    with pytest.raises(ValueError, match="must be distinct"):
        attraction(problem, 1, 1)


@pytest.mark.parametrize("bias", [True, False])
def test_locate_operator_route_matches_dense(bias):
    """method="operator" (the large-N route on a locus): certified krylov counts and the
    criticality test agree with analyze's dense route."""
    problem = gaussian_problem([3, 4, 5, 4, 2], bias=bias, seed=10)
    for theta in (star_point(problem, 2, rng=0), core_point(problem, 1, 3, rng=0)):
        dense = locate(problem, theta, rtol=SPEC_INERTIA_RTOL, method="dense")
        oper = locate(problem, theta, rtol=SPEC_INERTIA_RTOL, method="operator")
        assert oper.measured["method"] == "krylov" and dense.measured["method"] == "dense"
        assert oper.measured["inertia"] == dense.measured["inertia"] == oper.prediction["inertia"]
        assert oper.measured["decided"] and oper.measured["residual"] <= 1e-10 * max(
            1.0, oper.measured["max_abs_eigenvalue"])
        assert (oper.critical, oper.kind) == (dense.critical, dense.kind)
        assert math.isclose(oper.measured["max_abs_eigenvalue"],
                            dense.measured["max_abs_eigenvalue"], rel_tol=1e-10, abs_tol=1e-14)
