"""Walking on the solution manifold and its dimension (§1.2, §3.1)."""

import dataclasses
import json

import pytest
import torch

import lossgeom as lg
from lossgeom.loci import solution_manifold, star_point
from lossgeom.manifold import tangent_basis, walk

from .helpers import SPEC_INERTIA_RTOL, gaussian_problem

F64 = torch.float64


@pytest.fixture(scope="module")
def fitted():
    problem = gaussian_problem([3, 8, 1], n=4, seed=21)
    return problem, lg.fit_last_layer(problem)


def test_walk_50_steps_keeps_outputs_and_rank(fitted):
    """Issue oracle: 50 steps on a tanh net, output drift ≤ 1e-8, rank J constant, L flat."""
    problem, theta = fitted
    w = walk(problem, theta, steps=50, step_size=0.1, inertia_every=25, rtol=SPEC_INERTIA_RTOL)
    assert w.completed and w.stopped_reason == "" and len(w.steps) == 51
    assert w.level_set == "solution manifold" and w.route == "svd"
    assert w.max_drift <= 1e-8 and w.rank_constant and all(s.rank_decided for s in w.steps)
    assert w.max_loss_change <= 1e-20
    x0 = problem.outputs(theta)
    assert float((problem.outputs(w.theta) - x0).abs().max()) <= 1e-12      # recomputed
    assert w.steps[-1].distance > 2.0            # it moved: about half the arc length or more
    assert w.steps[-1].distance <= w.steps[-1].arc_length
    measured = [s for s in w.steps if s.inertia is not None]
    assert [s.step for s in measured] == [0, 25, 50]
    assert all(s.inertia == [4, 0, 37] for s in measured)     # zeros = N − rank J = 41 − 4
    json.dumps(w.to_dict())
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.completed = False


def test_operator_route_matches_dense_route(fitted):
    """J⁺r and the ker-J projector: Gram/operator route = thin-SVD route = null_space basis."""
    problem, theta = fitted
    dense = lg.linearize(problem, theta, route="svd")
    m = problem.n_samples * problem.n_outputs
    oper = lg.linearize(problem, theta, route="gram", max_bytes=8 * m * m)  # K fits, J does not
    assert dense.rank == oper.rank == 4 and oper.jacobian is None
    g = torch.Generator().manual_seed(0)
    v = torch.randn(problem.n_params, dtype=F64, generator=g)
    r = torch.randn(4, dtype=F64, generator=g)
    assert torch.allclose(dense.kernel_project(v), oper.kernel_project(v), atol=1e-10)
    assert torch.allclose(dense.pinv(r), oper.pinv(r), atol=1e-10)
    Z, decision = tangent_basis(problem, theta)
    assert Z.shape == (41, 37) and decision.rank == 4
    assert torch.allclose(dense.kernel_project(v), Z @ (Z.T @ v), atol=1e-12)
    J = torch.autograd.functional.jacobian(lambda t: problem.output_fn(t).reshape(-1), theta)
    assert torch.allclose(dense.pinv(r), torch.linalg.pinv(J) @ r, atol=1e-10)
    w = walk(problem, theta, steps=3, route="operator", inertia_every=0)
    assert w.route == "gram" and w.completed and w.max_drift <= 1e-8


def test_walk_from_non_fitted_point_keeps_the_behavior(fitted):
    problem, _ = fitted
    theta = problem.theta
    w = walk(problem, theta, steps=10, step_size=0.2, inertia_every=0, keep_path=True)
    assert w.level_set == "behavior level set" and not w.perfect_fit.holds
    assert w.completed and w.max_drift <= 1e-8 and w.max_loss_change <= 1e-12
    assert w.path.shape == (11, problem.n_params) and torch.equal(w.path[-1], w.theta)


def test_walk_stops_when_retraction_fails_and_keeps_the_walk(fitted):
    problem, theta = fitted
    w = walk(problem, theta, steps=5, step_size=0.1, inertia_every=0, drift_tol=1e-300,
             max_halvings=1)
    assert not w.completed and len(w.steps) == 1
    assert "retraction did not converge at step 1" in w.stopped_reason
    assert "drift_tol = 1e-300" in w.stopped_reason and "the walk so far is kept" in \
        w.stopped_reason


def test_walk_bad_input():
    problem = gaussian_problem([2, 2, 1], n=9, seed=22)           # N = 9 = n·k: ker J = {0}
    with pytest.raises(ValueError, match=r"walk\(problem, theta\): ker J = \{0\}"):
        walk(problem, steps=2)
    problem = gaussian_problem([3, 8, 1], n=4, seed=21)
    for kwargs, match in (({"steps": -1}, "steps must be an int >= 0"),
                          ({"step_size": 0.0}, "step_size must be a finite number > 0"),
                          ({"route": "fast"}, "unknown route 'fast'"),
                          ({"drift_tol": -1.0}, "drift_tol must be > 0"),
                          ({"rtol": 3.0}, "rtol must lie in")):
        with pytest.raises(ValueError, match=match):
            walk(problem, **kwargs)


def test_solution_manifold_refuses_non_minima():
    problem = gaussian_problem([3, 4, 5, 4, 1], seed=23)
    with pytest.raises(lg.NotCriticalError, match=r"solution_manifold\(problem, theta\): θ is "
                                                   r"not critical") as info:
        solution_manifold(problem, problem.theta)
    assert info.value.grad_norm > info.value.tol
    with pytest.raises(ValueError, match="critical but not a perfect fit"):
        solution_manifold(problem, star_point(problem, 1, rng=0))      # a saddle of L
    m = solution_manifold(problem, lg.fit_last_layer(problem), rtol=SPEC_INERTIA_RTOL)
    assert m.dimension == m.generic_dimension == 70 - 5 and m.zeros_match
