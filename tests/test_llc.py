"""Local learning coefficient (§9): certified bounds from a Report, SGLD estimates, figure, example.

Oracles: the splitting-lemma bounds of §9.1 against rank J at a minimally singular minimum (the
zero-loss set is a manifold of dimension N − rank J there); the exact coefficient of reduced-rank
regression (``linear.rlct``, §9.2) for the SGLD estimates; and for the sampler itself the closed
form of SGLD on a quadratic loss (a linear AR(1) recursion whose covariance is known exactly).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import warnings
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import lossgeom as lg
from lossgeom.linear import rlct
from lossgeom.llc import (
    LLCBounds,
    LLCEstimate,
    LLCSamplingWarning,
    default_nbeta,
    empirical_loss,
    estimate_llc,
    llc_bounds,
    split_rhat,
)
from lossgeom.plots._save import save_figure
from lossgeom.plots.llc import llc_figure

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]
HAS_DEVINTERP = importlib.util.find_spec("devinterp") is not None
needs_devinterp = pytest.mark.skipif(not HAS_DEVINTERP, reason="devinterp (lossgeom[llc]) missing")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def jacobian_rank(report) -> int:
    """rank J from a Report, whether ``jacobian`` is a dict or a typed decision."""
    jac = report.jacobian
    return jac["rank"] if isinstance(jac, dict) else jac.rank


def reduced_rank_problem(M: int, H: int, N: int, n: int = 1000, seed: int = 0) -> lg.Problem:
    """x ↦ BAx (no bias) on n Gaussian inputs with true map 0 (targets exactly 0)."""
    X = torch.randn(n, M, generator=gen(seed), dtype=F64)
    return lg.Problem(lg.mlp([M, H, N], "linear", bias=False, generator=gen(seed + 1)), X,
                      torch.zeros(n, N, dtype=F64))


# -- llc_bounds ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def overparameterised_fit():
    """Tanh 3-6-1 without bias (N = 24), n = 4, output layer fitted exactly with MSE."""
    X = torch.randn(4, 3, generator=gen(20), dtype=F64)
    Y = torch.randn(4, 1, generator=gen(21), dtype=F64)
    problem = lg.Problem(lg.mlp([3, 6, 1], bias=False, generator=gen(22)), X, Y)
    theta = lg.fit_last_layer(problem)
    return problem, theta, lg.analyze(problem, theta)


def test_bounds_at_a_minimally_singular_minimum(overparameterised_fit):
    problem, theta, report = overparameterised_fit
    assert report.kind == "global_minimum"
    b = llc_bounds(report)
    rank_j = jacobian_rank(report)
    assert rank_j == 4  # n·k = 4 rows of full rank
    # minimally singular: the zero-loss set is a manifold of dimension N − rank J near θ*, so
    # λ = rank J / 2; the certified lower bound must be exactly that
    assert b.lower == rank_j / 2 == 2.0
    assert b.upper == problem.n_params / 2 == 12.0
    assert b.certified and b.rank_hessian == rank_j and b.n_params == 24
    assert "§9.1" in b.reason
    # the smallest kept eigenvalue, against eigenvalues of an independent dense Hessian
    lam = torch.linalg.eigvalsh(torch.func.hessian(problem.loss_at)(theta))
    floor = max(b.hessian_tol, lam.numel() * torch.finfo(F64).eps * float(lam.abs().max()))
    kept = lam[lam.abs() > floor]  # the dense oracle counted above its own roundoff
    assert kept.numel() == rank_j
    assert b.smallest_kept_eigenvalue == pytest.approx(float(kept.abs().min()), rel=1e-8)


def test_bounds_at_a_regular_minimum_coincide():
    """Least squares with n > N: a strict local minimum, nondegenerate, λ = N/2 exactly."""
    X = torch.randn(6, 3, generator=gen(30), dtype=F64)
    y = torch.randn(6, 1, generator=gen(31), dtype=F64)
    problem = lg.Problem(torch.nn.Linear(3, 1, bias=False).double(), X, y)
    theta = torch.linalg.lstsq(X, y).solution.reshape(-1)
    report = lg.analyze(problem, theta)
    assert report.kind == "strict_local_minimum"
    b = llc_bounds(report)
    assert b.lower == b.upper == 1.5
    # Hessian of Σ(Xw − y)² is 2XᵀX: its smallest eigenvalue is the smallest kept one
    assert b.smallest_kept_eigenvalue == pytest.approx(
        float(torch.linalg.eigvalsh(2 * X.T @ X).min()), rel=1e-10)


def test_no_bounds_at_a_saddle():
    """θ = 0 of a deep linear net with a nonzero target: critical, but a strict saddle."""
    X = torch.randn(5, 3, generator=gen(40), dtype=F64)
    Y = X @ torch.randn(3, 2, generator=gen(41), dtype=F64)
    problem = lg.Problem(lg.mlp([3, 2, 2], "linear", bias=False), X, Y)
    report = lg.analyze(problem, torch.zeros(problem.n_params, dtype=F64))
    assert report.kind == "strict_saddle"
    b = llc_bounds(report)
    assert b.lower is None and b.upper is None and not b.certified
    assert "saddle" in b.reason


def test_no_bounds_at_a_noncritical_point():
    X = torch.randn(5, 2, generator=gen(50), dtype=F64)
    problem = lg.Problem(lg.mlp([2, 3, 1], generator=gen(51)), X,
                         torch.randn(5, 1, generator=gen(52), dtype=F64))
    b = llc_bounds(lg.analyze(problem))
    assert b.lower is None and b.upper is None and "not critical" in b.reason


def test_no_bounds_where_the_rank_is_undecided(overparameterised_fit):
    _, _, report = overparameterised_fit
    undecided = dataclasses.replace(report, hessian=dataclasses.replace(
        report.hessian, decided=False, rank=None))
    b = llc_bounds(undecided)
    assert b.lower is None and b.upper is None and "undecided" in b.reason
    degenerate = dataclasses.replace(report, kind="degenerate")
    b = llc_bounds(degenerate)
    assert b.lower is None and "inconclusive" in b.reason


def test_bounds_read_only_the_named_fields(overparameterised_fit):
    """A typed kind (StrEnum equal to the old strings) and a bare stand-in give the same bounds."""
    _, _, report = overparameterised_fit

    class Kind(StrEnum):
        GLOBAL_MINIMUM = "global_minimum"
        NONSTRICT_LOCAL_MINIMUM = "nonstrict_local_minimum"

    h = report.hessian
    bare = SimpleNamespace(kind=Kind.NONSTRICT_LOCAL_MINIMUM, n_params=report.n_params,
                           hessian=SimpleNamespace(rank=h.rank, decided=h.decided, tol=h.tol,
                                                   top_eigenvalues=h.top_eigenvalues,
                                                   bottom_eigenvalues=h.bottom_eigenvalues,
                                                   spectrum=None))
    a, b = llc_bounds(dataclasses.replace(report, kind=Kind.GLOBAL_MINIMUM)), llc_bounds(bare)
    assert (a.lower, a.upper) == (b.lower, b.upper) == (2.0, 12.0)
    assert b.kind == "nonstrict_local_minimum"
    assert b.smallest_kept_eigenvalue == pytest.approx(a.smallest_kept_eigenvalue, rel=1e-12)
    json.dumps(a.to_dict())
    with pytest.raises(TypeError, match="expected a Report"):
        llc_bounds(object())


# -- the sampler against closed forms --------------------------------------------------------------
def quadratic_oracle(problem: lg.Problem, theta: torch.Tensor, est: LLCEstimate) -> float:
    """E[λ̂] for SGLD on a quadratic L_n = L_n(θ*) + ½ (w − θ*)ᵀ A (w − θ*), started at θ*.

    In A's eigenbasis each coordinate is an AR(1) process u ← ρ u + √ε ξ, ρ = 1 − ε p/2,
    p = nβ a + γ, so Var u_t = ε (1 − ρ^{2t}) / (1 − ρ²); λ̂ averages nβ/2 Σ a Var u_t over the draws.
    """
    loss, _ = empirical_loss(problem)
    A = torch.func.hessian(lambda w: loss(problem.output_fn(w), problem.targets))(theta)
    a = torch.linalg.eigvalsh(A).numpy()
    eps, nb, gam = est.step, est.nbeta, est.localization
    rho = 1 - eps * (nb * a + gam) / 2
    t = np.arange(est.n_burnin, est.n_burnin + est.n_draws)[:, None]
    var = eps * (1 - rho[None, :] ** (2 * t)) / (1 - rho[None, :] ** 2)
    return float((nb / 2 * (a[None, :] * var).sum(axis=1)).mean())


@pytest.fixture(scope="module")
def least_squares():
    X = torch.randn(200, 3, generator=gen(60), dtype=F64)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=F64) + 0.3 * torch.randn(
        200, 1, generator=gen(61), dtype=F64)
    problem = lg.Problem(torch.nn.Linear(3, 1, bias=False).double(), X, y)
    return problem, torch.linalg.lstsq(X, y).solution.reshape(-1)


def test_sgld_matches_the_ar1_closed_form_on_a_quadratic(least_squares):
    problem, theta = least_squares
    est = estimate_llc(problem, theta, n_chains=64, n_draws=600, n_burnin=0, step=2e-3, rng=1)
    expected = quadratic_oracle(problem, theta, est)
    se = est.per_chain.std(ddof=1) / math.sqrt(est.n_chains)
    assert abs(est.mean - expected) < 4 * se
    assert se < 0.05 * expected  # the comparison has teeth
    # with a long burn-in the estimate of a regular minimum approaches N/2 = 1.5
    assert abs(quadratic_oracle(problem, theta, dataclasses.replace(est, n_burnin=10_000))
               - 1.5) < 0.05


@needs_devinterp
def test_devinterp_backend_matches_the_same_closed_form(least_squares):
    problem, theta = least_squares
    est = estimate_llc(problem, theta, n_chains=8, n_draws=300, n_burnin=0, step=2e-3, rng=2,
                       backend="devinterp")
    expected = quadratic_oracle(problem, theta, est)
    se = est.per_chain.std(ddof=1) / math.sqrt(est.n_chains)
    assert abs(est.mean - expected) < 4 * se and se < 0.12 * expected


def test_empirical_loss_is_the_mean_criterion():
    X = torch.randn(5, 2, generator=gen(70), dtype=F64)
    Y = torch.randn(5, 3, generator=gen(71), dtype=F64)
    for reduction in ("sum", "mean"):
        p = lg.Problem(lg.mlp([2, 4, 3], generator=gen(72)), X, Y, reduction=reduction)
        loss, scale = empirical_loss(p)
        ln = float(loss(p.outputs(), p.targets))
        assert ln == pytest.approx(float(torch.nn.functional.mse_loss(p.outputs(), Y)), rel=1e-14)
        assert ln == pytest.approx(scale * float(p.loss()), rel=1e-14)
    labels = torch.tensor([0, 2, 1, 1, 0])
    p = lg.Problem(lg.mlp([2, 4, 3], generator=gen(72)), X, labels, loss="softmax_ce")
    loss, scale = empirical_loss(p)
    assert float(loss(p.outputs(), p.targets)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(p.outputs(), labels)), rel=1e-14)
    assert scale == 1 / 5
    assert default_nbeta(1000) == pytest.approx(1000 / math.log(1000))


def test_split_rhat_detects_a_trend():
    rng = np.random.default_rng(0)
    iid = rng.standard_normal((4, 2000))
    assert abs(split_rhat(iid) - 1) < 0.01
    trending = iid + np.linspace(0, 6, 2000)[None, :]  # half means 3 apart: R̂ ≈ 1.57
    assert split_rhat(trending) > 1.4
    assert math.isnan(split_rhat(iid[:, :3]))


# -- reduced-rank regression: estimates against the exact λ ------------------------------------
RRR_CASES = {"case 1 (odd)": (5, 3, 5), "case 2": (2, 2, 6), "case 3": (6, 2, 2),
             "case 4": (2, 5, 2)}


@pytest.mark.parametrize("backend", ["lossgeom",
                                     pytest.param("devinterp", marks=needs_devinterp)])
@pytest.mark.parametrize("name", list(RRR_CASES))
def test_default_estimate_near_the_exact_coefficient(name, backend):
    """True map 0, localised at θ = 0 (where the local coefficient equals the global one)."""
    widths = RRR_CASES[name]
    problem = reduced_rank_problem(*widths)
    exact = rlct(widths, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLCSamplingWarning)
        est = estimate_llc(problem, torch.zeros(problem.n_params, dtype=F64), backend=backend,
                           rng=3)
    assert abs(est.mean / exact - 1) < 0.3, (name, backend, est.mean, exact)
    assert est.diverged == [] and est.backend == backend
    assert est.trace.shape == (est.n_chains, est.n_draws) and np.isfinite(est.trace).all()
    # the singular minimum sits well below the regular value N/2
    assert est.mean < 0.75 * problem.n_params / 2


# -- diagnostics and errors ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["lossgeom",
                                     pytest.param("devinterp", marks=needs_devinterp)])
def test_a_huge_step_is_reported_as_diverged(backend):
    problem = reduced_rank_problem(2, 2, 2, n=100)
    with pytest.warns(LLCSamplingWarning, match="diverged"):
        est = estimate_llc(problem, torch.zeros(problem.n_params, dtype=F64), step=3.0,
                           n_chains=2, n_draws=50, n_burnin=0, backend=backend, rng=0)
    assert est.diverged and not est.mixed
    assert any("diverged" in w for w in est.warnings)
    assert math.isnan(est.mean) or len(est.diverged) < est.n_chains


def test_under_mixing_is_reported():
    """A tiny step without burn-in: the traces still climb from L_n(θ*) when sampling stops."""
    problem = reduced_rank_problem(4, 2, 4, n=300)
    with pytest.warns(LLCSamplingWarning, match="R̂|trend"):
        est = estimate_llc(problem, torch.zeros(problem.n_params, dtype=F64), step=2e-5,
                           n_draws=300, n_burnin=0, rng=0)
    assert not est.mixed and est.warnings


def test_reproducible_and_leaves_global_rng_alone(least_squares):
    problem, theta = least_squares
    kw = dict(n_chains=2, n_draws=50, n_burnin=10, rng=5)
    state = torch.get_rng_state()
    a, b = estimate_llc(problem, theta, **kw), estimate_llc(problem, theta, **kw)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(a.trace, b.trace)
    c = estimate_llc(problem, theta, **{**kw, "rng": 6})
    assert not np.array_equal(a.trace, c.trace)
    g1, g2 = gen(9), gen(9)
    np.testing.assert_array_equal(estimate_llc(problem, theta, **{**kw, "rng": g1}).trace,
                                  estimate_llc(problem, theta, **{**kw, "rng": g2}).trace)


@needs_devinterp
def test_devinterp_backend_reproducible_and_model_untouched(least_squares):
    problem, theta = least_squares
    model = problem.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    state = torch.get_rng_state()
    kw = dict(n_chains=2, n_draws=30, n_burnin=5, rng=5, backend="devinterp")
    a, b = estimate_llc(problem, theta, **kw), estimate_llc(problem, theta, **kw)
    np.testing.assert_array_equal(a.trace, b.trace)
    assert torch.equal(state, torch.get_rng_state())
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_minibatch_estimate(least_squares):
    problem, theta = least_squares
    est = estimate_llc(problem, theta, batch_size=50, n_chains=16, n_draws=600, n_burnin=300,
                       step=2e-3, rng=7)
    # gradient noise only adds variance around the same regular minimum: λ = N/2 = 1.5
    assert est.batch_size == 50 and abs(est.mean - 1.5) < 0.3


def test_progress_and_to_dict(least_squares):
    problem, theta = least_squares
    calls = []
    est = estimate_llc(problem, theta, n_chains=2, n_draws=20, n_burnin=5, rng=0,
                       progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (25, 25) and len(calls) == 25
    d = est.to_dict()
    assert "trace" not in d and d["n_chains"] == 2 and len(d["per_chain"]) == 2
    json.dumps(d)
    assert est.trace.shape == (2, 20)
    assert est.interval == (est.mean - est.std, est.mean + est.std)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"n_chains": 0}, ValueError, "n_chains must be >= 1"),
    ({"n_draws": 2.5}, TypeError, "n_draws must be an integer"),
    ({"n_burnin": -1}, ValueError, "n_burnin must be >= 0"),
    ({"step": 0.0}, ValueError, "step must be a finite number > 0"),
    ({"step": math.nan}, ValueError, "step must be a finite number"),
    ({"nbeta": -1.0}, ValueError, "nbeta must be a finite number > 0"),
    ({"localization": -0.1}, ValueError, "localization must be a finite number >= 0"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": 10_000}, ValueError, "at most the number of samples"),
    ({"backend": "pyro"}, ValueError, "backend"),
    ({"rng": "seed"}, TypeError, "rng must be"),
    ({"progress": 3}, TypeError, "progress must be a callable"),
    ({"theta": torch.zeros(2, dtype=F64)}, ValueError, "theta"),
])
def test_bad_arguments(least_squares, kwargs, exc, match):
    problem, theta = least_squares
    kwargs = {"theta": theta, **kwargs}
    with pytest.raises(exc, match=match):
        estimate_llc(problem, kwargs.pop("theta"), n_draws=kwargs.pop("n_draws", 5), **kwargs)


def test_not_a_problem():
    with pytest.raises(TypeError, match="problem must be a lossgeom.Problem"):
        estimate_llc(torch.nn.Linear(2, 1))


def test_missing_devinterp_names_the_extra(least_squares, monkeypatch):
    problem, theta = least_squares
    for name in ("devinterp", "devinterp.slt", "devinterp.slt.sampler"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "lossgeom\[llc\]"'):
        estimate_llc(problem, theta, backend="devinterp", n_draws=5)


# -- figure and example -------------------------------------------------------------------------
def test_figure(tmp_path, overparameterised_fit, least_squares):
    problem, theta = least_squares
    est = estimate_llc(problem, theta, n_chains=3, n_draws=40, n_burnin=5, rng=0)
    bounds = llc_bounds(lg.analyze(problem, theta))
    fig = llc_figure(est, bounds, exact=1.5)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any("rank H / 2 = 1.5" in s for s in labels) and any("exact" in s for s in labels)
    assert len(fig.axes[0].lines) == 3 + 1  # one trace per chain and the running mean
    assert Path(save_figure(fig, tmp_path / "llc.png")).stat().st_size > 0
    assert len(llc_figure(est).axes) == 2  # bounds and exact are optional
    assert isinstance(bounds, LLCBounds)


def test_example_quick_run():
    spec = importlib.util.spec_from_file_location("llc_study", ROOT / "examples" / "llc_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frame = module.main(quick=True)
    assert list(frame["case"]) == [1, 2, 3, 4]
    for r in frame.to_dict("records"):
        assert r["exact"] == rlct(r["widths"], 0)
        assert r["bound_zero"] == 0.0     # the Hessian vanishes at θ = 0
        # at A = 0 with B generic the minimum is minimally singular: λ = M·min(H, N)/2
        M, H, N = r["widths"]
        assert r["bound_less_singular"] == M * min(H, N) / 2
        assert r["bound_less_singular"] >= r["exact"]
        assert r["regular"] == (H * M + N * H) / 2


def test_llc_study_cli_json():
    from typer.testing import CliRunner

    from lossgeom.cli import app

    res = CliRunner().invoke(app, ["linear", "llc-study", "--quick", "--n", "200", "--json"])
    assert res.exit_code == 0, res.output
    study = json.loads(res.stdout)
    assert study["quick"] is True and study["n"] == 200
    assert [c["widths"] for c in study["cases"]] == [list(w) for w in lg.llc.AOYAGI_CASES.values()]
    for c in study["cases"]:
        assert c["exact"] == rlct(tuple(c["widths"]), 0)
        assert c["at_zero"]["n_draws"] == 100 and "trace" not in c["at_zero"]
        assert c["bounds_at_less_singular"]["lower"] == c["widths"][0] * min(c["widths"][1:]) / 2
