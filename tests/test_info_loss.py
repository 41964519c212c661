"""information_loss against the constructions of §6.2."""

import pytest
import torch
from cases import relu_dead_pattern

import lossgeom as lg


def test_dead_pattern_groups_and_bound():
    p, theta = relu_dead_pattern()
    r = lg.information_loss(p, theta)
    layer = r.layers[0]
    assert layer.groups == [[2, 3]]
    assert layer.dead_samples == [2, 3]
    assert layer.distinct_activations == 3
    assert layer.n_params_upto == 9
    # G columns 3 and 4 are identical: rank 3, and the tightened bound reaches it
    J = lg.jacobian(p, theta)
    assert torch.equal(J[2], J[3])
    assert r.rank_jacobian == 3 == layer.rank_bound
    assert r.rank_locally_constant and r.warning == ""
    report = lg.analyze(p, theta)
    assert report.hessian.inertia == [3, 0, 10]


def test_bound_is_an_upper_bound_on_random_nets():
    torch.manual_seed(3)
    for act in ("relu", "tanh"):
        model = lg.mlp([2, 3, 2, 1], act)
        X = torch.randn(6, 2, dtype=torch.float64)
        p = lg.Problem(model, X, torch.randn(6, 1, dtype=torch.float64))
        r = lg.information_loss(p)
        assert len(r.layers) == 2
        for layer in r.layers:
            assert r.rank_jacobian <= layer.rank_bound
        d = r.to_dict()
        assert set(d) >= {"rank_jacobian", "n_samples", "layers"}
        assert set(d["layers"][0]) >= {"layer", "distinct_activations", "groups", "dead_units",
                                       "n_params_upto", "rank_bound"}


@pytest.mark.filterwarnings("ignore:rank J changes nearby")
def test_threshold_example_tanh():
    """§6.2 threshold: f = v tanh(w x) + c at w = 0; inputs {1,2} rank 2, {1,2,3} rank 2."""
    model = lg.mlp([1, 1, 1], "tanh")
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[2].weight.fill_(0.7)
        model[2].bias.fill_(0.1)
    for xs, rank in (([1.0, 2.0], 2), ([1.0, 2.0, 3.0], 2)):
        X = torch.tensor(xs, dtype=torch.float64)[:, None]
        p = lg.Problem(model, X, torch.zeros(len(xs), 1))
        r = lg.information_loss(p)
        assert r.rank_jacobian == rank
        assert r.layers[0].groups == [list(range(len(xs)))]
        assert r.rank_jacobian <= r.layers[0].rank_bound


def test_rank_change_nearby_warns():
    """At w = 0 with a bias-free hidden layer, rank J rises when w moves off zero."""
    model = lg.mlp([1, 1, 1], "tanh", bias="output")
    with torch.no_grad():
        model[0].weight.zero_()
        model[2].weight.zero_()
    X = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    p = lg.Problem(model, X, torch.zeros(3, 1))
    with pytest.warns(UserWarning, match="rank J changes nearby"):
        r = lg.information_loss(p)
    assert not r.rank_locally_constant
    assert max(r.rank_nearby) > r.rank_jacobian


def test_rejects_non_sequential():
    p = lg.Problem(lambda params, x: x @ params["w"], torch.ones(2, 1),
                   torch.zeros(2, 1), params={"w": torch.ones(1, 1)})
    with pytest.raises(ValueError, match="nn.Sequential"):
        lg.information_loss(p)
