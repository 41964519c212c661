"""Contract suite: every public callable, called with valid and invalid arguments ."""


import pytest
import torch
from contract_checks import check_call

import lossgeom as lg


def make_problem():
    gen = torch.Generator().manual_seed(0)
    model = lg.mlp([2, 3, 1], "tanh", generator=gen)
    X = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 1, generator=gen, dtype=torch.float64)
    return lg.Problem(model, X, y)


# name -> (call(problem, theta), takes theta)
CALLS = {
    "jacobian": lambda p, t: lg.jacobian(p, t),
    "jacobian_operator": lambda p, t: lg.jacobian_operator(p, t),
    "ntk_gram": lambda p, t: lg.ntk_gram(p, t),
    "hessian": lambda p, t: lg.hessian(p, t),
    "hvp": lambda p, t: lg.hvp(p, t, torch.ones(p.n_params, dtype=torch.float64)),
    "hessian_operator": lambda p, t: lg.hessian_operator(p, t),
    "gauss_newton": lambda p, t: lg.gauss_newton(p, t),
    "residual_hessian": lambda p, t: lg.residual_hessian(p, t),
    "analyze": lambda p, t: lg.analyze(p, t),
    "find_critical_point": lambda p, t: lg.find_critical_point(p, t, steps=300,
                                                               polish="gauss_newton")[0],
    "fit_last_layer": lambda p, t: lg.fit_last_layer(p, t),
    "information_loss": lambda p, t: lg.information_loss(p, t),
    "linearize": lambda p, t: lg.linearize(p, t).decision,
    "hessian_spectrum": lambda p, t: lg.hessian_spectrum(p, t, n_probes=2, n_steps=5),
    "hessian_trace": lambda p, t: lg.hessian_trace(p, t, n_matvec=12)[0],
}
# names checked elsewhere in this file (constructors, matrix-level functions, types)
OTHER = {"Problem", "mlp", "numerical_rank", "inertia", "null_space", "RankDecision", "Inertia",
         "Report", "InfoLossReport", "DenseTooLargeError", "NotCriticalError",
         "UnsafeCheckpointError", "Linearization", "Kind", "Criticality", "PerfectFit",
         "RankIdentity", "Certificate", "SpectralDensity", "DegeneracyProfile",
         "LLCBounds", "LLCEstimate", "llc_bounds", "estimate_llc"}
SUBMODULES = {"loci", "flows", "linear", "sweep", "manifold"}


def test_every_public_name_is_listed():
    missing = set(lg.__all__) - set(CALLS) - OTHER - SUBMODULES
    assert not missing, f"public names without a contract entry: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_valid_call_float64_and_model_untouched(name):
    check_call(make_problem(), CALLS[name])


@pytest.mark.parametrize("name", sorted(CALLS))
def test_nan_theta_rejected_with_api_name(name):
    p = make_problem()
    bad = p.theta
    bad[1] = float("nan")
    with pytest.raises(ValueError, match=rf"{name}\(problem") as info:
        CALLS[name](p, bad)
    assert "non-finite" in str(info.value)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_wrong_length_theta_rejected(name):
    p = make_problem()
    with pytest.raises(ValueError, match=rf"{name}\(problem.*shape \({p.n_params - 1},\)"):
        CALLS[name](p, p.theta[:-1])


def test_matrix_level_functions_reject_nan():
    A = torch.eye(3, dtype=torch.float64)
    A[0, 0] = float("inf")
    for f in (lg.numerical_rank, lg.inertia, lg.null_space):
        with pytest.raises(ValueError, match="non-finite"):
            f(A)


def test_result_types_are_frozen():
    for cls in (lg.RankDecision, lg.Inertia, lg.Report, lg.InfoLossReport):
        assert cls.__dataclass_params__.frozen


def test_hvp_rejects_bad_vector():
    p = make_problem()
    with pytest.raises(ValueError, match=r"hvp\(problem, theta, v\): v has shape"):
        lg.hvp(p, p.theta, torch.ones(3, dtype=torch.float64))
    v = torch.ones(p.n_params, dtype=torch.float64)
    v[0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        lg.hvp(p, p.theta, v)


def test_dense_requests_over_budget_name_the_operator_route():
    p = make_problem()
    with pytest.raises(lg.DenseTooLargeError, match="hessian_operator"):
        lg.hessian(p, p.theta, max_bytes=100)
    with pytest.raises(MemoryError):
        lg.gauss_newton(p, p.theta, max_bytes=100)
    with pytest.raises(lg.DenseTooLargeError, match="jacobian_operator"):
        lg.jacobian(p, p.theta, max_bytes=10)
    with pytest.raises(lg.DenseTooLargeError, match="analyze"):
        lg.hessian(p, p.theta, max_bytes=100)
