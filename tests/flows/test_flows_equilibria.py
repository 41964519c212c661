"""Shared equilibria across α (§2.3, (2.43)) along integrated paths and at an exact minimum."""

import json

import pytest
import torch
from flow_cases import tanh_problem

import lossgeom as lg
from lossgeom.flows import shared_equilibria, vector_field


def test_every_alpha_reaches_a_common_kind_of_equilibrium():
    """From one θ₀, α ∈ {0, .5, 1} all drive ‖∇L‖ down, and at each end point every V_β is as
    small as the gradient there (V_β = 0 ⇔ ∇_θC = 0)."""
    p = tanh_problem((2, 6, 1), n=3, seed=13)
    check = shared_equilibria(p, None, (0.0, 0.5, 1.0), t_end=8.0, n_eval=3)
    assert check.alphas == (0.0, 0.5, 1.0) and len(check.trajectories) == 3
    start = {b: float(vector_field(p, None, b).norm()) for b in check.alphas}
    for row in check.rows:
        assert row["status"] == "completed"
        assert row["loss"] < 1e-4 * row["loss_start"]
        assert row["grad_norm"] < 1e-2 * row["grad_norm_start"]
        for b, norm in row["field_norms"].items():
            assert norm < 1e-2 * start[float(b)], (row["alpha"], b)
    assert json.loads(json.dumps(check.to_dict()))["rows"][2]["alpha"] == 1.0


def test_exact_minimum_is_an_equilibrium_of_every_member():
    p = tanh_problem((2, 6, 1), n=3, seed=14)
    theta = lg.fit_last_layer(p)
    assert float(p.loss(theta)) < 1e-20
    for family in ("field", "metric"):
        for alpha in (0.0, 0.3, 0.7, 1.0):
            assert float(vector_field(p, theta, alpha, family=family).norm()) < 1e-10
    check = shared_equilibria(p, theta, (0.0, 1.0), t_end=1.0, n_eval=2, rtol=1e-10, atol=1e-14)
    assert all(row["critical"] for row in check.rows)


def test_stopped_runs_are_kept_and_bad_alphas_refused():
    p = tanh_problem((2, 4, 1), n=3, seed=15)
    check = shared_equilibria(p, None, (1.0,), t_end=1.0, n_eval=3, max_steps=1)
    assert check.rows[0]["status"] == "max_steps"
    with pytest.raises(ValueError, match="alphas is empty"):
        shared_equilibria(p, None, (), t_end=1.0)
    with pytest.raises(ValueError, match="alpha must lie in"):
        shared_equilibria(p, None, (0.0, 2.0), t_end=1.0)
    seen = []
    shared_equilibria(p, None, (0.0, 1.0), t_end=0.2, n_eval=2,
                      progress=lambda a, t: seen.append((a, t)))
    assert {a for a, _ in seen} == {0.0, 1.0} and torch.tensor([t for _, t in seen]).max() == 0.2
