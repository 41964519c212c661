"""Problem: flat θ, evaluation, validation of every bad input (docs/routes.md), checkpoints, and the
caller's model left exactly as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cases import gaussian, gen, two_layer_tanh
from torch import nn

import lossgeom as lg
from lossgeom.errors import UnsafeCheckpointError
from lossgeom.reach import fit_last_layer

F64 = torch.float64
NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: a second intra-op thread only adds contention on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n=4, d=2, k=1, seed=0):
    return gaussian(n, d, seed=seed), gaussian(n, k, seed=seed + 1)


# -- construction and evaluation ----------------------------------------------------------------
def test_theta_is_a_flat_float64_copy_in_named_parameters_order():
    model = lg.mlp([2, 3, 2], generator=gen(0), dtype=torch.float32)
    X, Y = _data(k=2)
    problem = lg.Problem(model, X, Y)
    expected = torch.cat([p.detach().reshape(-1).double() for _, p in model.named_parameters()])
    assert problem.theta.dtype == F64 and torch.equal(problem.theta, expected)
    assert problem.param_names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert (problem.n_params, problem.n_samples, problem.n_outputs) == (17, 4, 2)
    t = problem.theta
    t.zero_()
    assert not torch.equal(problem.theta, t)            # a copy each time
    parts = problem.unflatten(expected)
    for (name, p), (name2, q) in zip(model.named_parameters(), parts.items(), strict=True):
        assert name == name2 and torch.equal(q, p.detach().double())


def test_outputs_loss_and_grad_match_the_model():
    model = lg.mlp([2, 3, 2], generator=gen(1))
    X, Y = _data(k=2)
    problem = lg.Problem(model, X, Y)
    with torch.no_grad():
        out = model(X)
    assert torch.allclose(problem.outputs(), out, rtol=1e-14)
    assert torch.allclose(problem.loss(), ((out - Y) ** 2).sum(), rtol=1e-14)
    loss = ((model(X) - Y) ** 2).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert torch.allclose(problem.grad(), torch.cat([g.reshape(-1) for g in grads]), rtol=1e-12)
    assert torch.allclose(problem.output_grad(), 2 * (out - Y), rtol=1e-13)


def test_outputs_at_other_theta_and_one_dimensional_outputs():
    model = nn.Sequential(nn.Linear(2, 1).double(), nn.Flatten(0))      # returns (n,)
    X, Y = _data()
    problem = lg.Problem(model, X, Y[:, 0])
    assert problem.n_outputs == 1 and problem.targets.shape == (4, 1)
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    assert torch.allclose(problem.outputs(theta)[:, 0], X @ theta[:2] + 0.5)


def test_callable_model_requires_params_and_matches_module():
    params = {"w1": gaussian(3, 2, seed=3), "b1": gaussian(3, seed=4), "w2": gaussian(1, 3, seed=5),
              "b2": gaussian(1, seed=6)}
    X, Y = _data()
    problem = lg.Problem(two_layer_tanh, X, Y, params=params)
    assert problem.n_params == 13 and problem.param_names == ("w1", "b1", "w2", "b2")
    assert torch.allclose(problem.outputs(), two_layer_tanh(params, X))
    with pytest.raises(TypeError, match="needs params"):
        lg.Problem(two_layer_tanh, X, Y)
    with pytest.raises(TypeError, match="only for a callable"):
        lg.Problem(lg.mlp([2, 3, 1]), X, Y, params=params)


def test_integer_labels_become_one_hot_for_softmax_ce():
    X, _ = _data()
    problem = lg.Problem(lg.mlp([2, 3, 3]), X, torch.tensor([0, 2, 1, 2]), loss="softmax_ce")
    assert torch.equal(problem.labels, torch.tensor([0, 2, 1, 2]))
    assert torch.equal(problem.targets, torch.nn.functional.one_hot(problem.labels, 3).double())


def test_float32_problem_computes_in_float32():
    X, Y = _data()
    problem = lg.Problem(lg.mlp([2, 3, 1]), X, Y, dtype=torch.float32)
    assert problem.theta.dtype == torch.float32 and problem.inputs.dtype == torch.float32
    assert problem.outputs().dtype == torch.float32 and problem.grad().dtype == torch.float32
    assert lg.jacobian(problem).dtype == torch.float32


def test_with_targets_revalidates_shapes():
    X, Y = _data()
    problem = lg.Problem(lg.mlp([2, 3, 1]), X, Y)
    other = problem.with_targets(Y + 1)
    assert torch.equal(other.targets, Y + 1) and torch.equal(problem.targets, Y)
    with pytest.raises(ValueError, match="targets have shape"):
        problem.with_targets(torch.zeros(4, 2, dtype=F64))


def test_with_targets_rejects_non_finite_targets():
    X, Y = _data()
    problem = lg.Problem(lg.mlp([2, 3, 1]), X, Y)
    with pytest.raises(ValueError, match="non-finite"):
        problem.with_targets(torch.full((4, 1), NAN, dtype=F64))


# -- bad input (docs/routes.md) ------------------------------------------------------------------
def _bad_problem_inputs():
    X, Y = _data()
    X3 = gaussian(4, 2, seed=9)
    nan_X = X.clone()
    nan_X[2, 1] = NAN
    inf_Y = Y.clone()
    inf_Y[1, 0] = INF
    net1, net3 = lg.mlp([2, 3, 1]), lg.mlp([2, 3, 3])
    probs = nn.Sequential(lg.mlp([2, 3, 3]), nn.Softmax(dim=-1))
    sig = nn.Sequential(lg.mlp([2, 3, 1]), nn.Sigmoid())
    raw = lg.mlp([2, 3, 1], generator=gen(0))            # outputs outside (0, 1)
    full = lambda shape, value: torch.full(shape, value, dtype=F64)  # noqa: E731
    ce, sm, bce = {"loss": "ce_prob"}, {"loss": "softmax_ce"}, {"loss": "bce"}
    VE, TE = ValueError, TypeError
    return [
        ("inputs nan", (net1, nan_X, Y), {}, VE,
         r"inputs contain 1 non-finite value \(first at index \(2, 1\)\)"),
        ("targets inf", (net1, X, inf_Y), {}, VE, "targets contain 1 non-finite"),
        ("targets width", (net1, X, full((4, 2), 0.0)), {}, VE,
         r"targets have shape \(4, 2\) but the model returns \(4, 1\)"),
        ("sample count", (net1, X, full((3, 1), 0.0)), {}, VE, "4 samples but targets have 3"),
        ("empty inputs", (net1, torch.zeros(0, 2, dtype=F64), torch.zeros(0, 1)), {}, VE, "n >= 1"),
        ("unknown loss", (net1, X, Y), {"loss": "hinge"}, VE, "'mse', 'bce', 'ce_prob', 'softmax_ce'"),
        ("unknown reduction", (net1, X, Y), {"reduction": "avg"}, VE, "'sum', 'mean'"),
        ("bad dtype", (net1, X, Y), {"dtype": torch.int64}, TE, "floating"),
        ("labels too large", (net3, X3, torch.tensor([0, 1, 3, 0])), sm, VE, r"\[0, 3\)"),
        ("labels negative", (net3, X3, torch.tensor([0, -1, 2, 0])), sm, VE, r"\[0, 3\)"),
        ("float labels, k > 1", (net3, X3, torch.tensor([0.0, 1, 2, 0], dtype=F64)), {}, VE,
         "targets have shape"),
        ("softmax off simplex", (net3, X3, full((4, 3), 0.5)), sm, VE, "probability rows"),
        ("ce_prob off simplex", (probs, X3, full((4, 3), 0.2)), ce, VE, "probability rows"),
        ("ce_prob negative entry", (probs, X3, torch.tensor([[1.5, -0.5, 0.0]] * 4, dtype=F64)), ce,
         VE, "probability rows"),
        ("bce above one", (sig, X, full((4, 1), 1.5)), bce, VE, r"\[0, 1\]"),
        ("bce below zero", (sig, X, full((4, 1), -0.1)), bce, VE, r"\[0, 1\]"),
        ("bce outputs outside (0, 1)", (raw, X, full((4, 1), 0.5)), bce, VE, "loss is nan"),
        ("model not callable", (3, X, Y), {}, TE, "nn.Module or a callable"),
        ("inputs a list", (net1, [[1.0, 2.0]] * 4, Y), {}, TE, "inputs must be"),
        ("targets a list", (net1, X, [1.0] * 4), {}, TE, "targets must be"),
        ("no parameters", (nn.Flatten(), X, Y), {}, VE, "no parameters"),
    ]


@pytest.mark.parametrize("label, args, kwargs, exc, match", _bad_problem_inputs(),
                         ids=[c[0] for c in _bad_problem_inputs()])
def test_problem_rejects_bad_input(label, args, kwargs, exc, match):
    with pytest.raises(exc, match=match) as err:
        lg.Problem(*args, **kwargs)
    if isinstance(err.value, ValueError | TypeError) and match:
        assert str(err.value).startswith("Problem(model, inputs, targets):")


def test_inputs_the_model_cannot_take_are_a_value_error():
    X, Y = _data()
    with pytest.raises(ValueError, match=r"Problem\(model, inputs, targets\)"):
        lg.Problem(lg.mlp([3, 3, 1]), X, Y)


def test_problem_rejects_non_finite_parameters():
    model = lg.mlp([2, 3, 1])
    with torch.no_grad():
        model[0].weight[1, 0] = NAN
    X, Y = _data()
    with pytest.raises(ValueError, match=r"parameters contain 1 non-finite value \(first at index \(2,\)\)"):
        lg.Problem(model, X, Y)


def test_problem_rejects_non_finite_outputs():
    model = lg.mlp([2, 3, 1], "linear")
    with torch.no_grad():
        model[0].weight.fill_(1e308)
    X, Y = _data()
    with pytest.raises(ValueError, match="model outputs contain"):
        lg.Problem(model, X, Y)


@pytest.mark.parametrize("module, what", [
    (nn.Dropout(0.5), "Dropout"),
    (nn.AlphaDropout(0.2), "AlphaDropout"),
    (nn.BatchNorm1d(3, dtype=F64), "BatchNorm1d in training mode"),
])
def test_stochastic_modules_in_training_mode_are_rejected(module, what):
    model = nn.Sequential(nn.Linear(2, 3, dtype=F64), module, nn.Linear(3, 1, dtype=F64))
    X, Y = _data()
    with pytest.raises(ValueError, match=what) as err:
        lg.Problem(model, X, Y)
    assert "eval()" in str(err.value)
    assert model.training                         # the check did not switch the model's mode
    lg.Problem(model.eval(), X, Y)                # in eval mode they are deterministic


def test_nondeterministic_callable_is_rejected():
    params = {"w": torch.zeros(2, 1, dtype=F64)}
    X, Y = _data()

    def noisy(p, x):
        return x @ p["w"] + torch.randn(x.shape[0], 1, dtype=F64)

    with pytest.raises(ValueError, match="deterministic"):
        lg.Problem(noisy, X, Y, params=params)


def test_batchnorm_in_eval_mode_uses_its_running_statistics():
    bn = nn.BatchNorm1d(3, dtype=F64)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    model = nn.Sequential(nn.Linear(2, 3, dtype=F64), bn, nn.Tanh(), nn.Linear(3, 1, dtype=F64))
    model.eval()
    X, Y = _data()
    problem = lg.Problem(model, X, Y)
    with torch.no_grad():
        assert torch.allclose(problem.outputs(), model(X), rtol=1e-14)
    assert problem.n_params == 9 + 6 + 4       # buffers are not parameters


@pytest.mark.parametrize("call, match", [
    (lambda p, N: p.outputs(torch.zeros(N + 1, dtype=F64)), r"expected \(\d+,\)"),
    (lambda p, N: p.loss(torch.zeros(1, N, dtype=F64)), r"shape \(1, \d+\)"),
    (lambda p, N: p.grad(torch.full((N,), NAN, dtype=F64)), "non-finite"),
    (lambda p, N: p.grad(torch.full((N,), INF, dtype=F64)), "non-finite"),
    (lambda p, N: lg.jacobian(p, torch.full((N,), NAN, dtype=F64)), "jacobian"),
    (lambda p, N: lg.hessian(p, torch.zeros(N - 1, dtype=F64)), "hessian"),
    (lambda p, N: lg.hvp(p, None, torch.zeros(N - 1, dtype=F64)), "v has shape"),
    (lambda p, N: lg.hvp(p, None, torch.full((N,), NAN, dtype=F64)), "v contains"),
    (lambda p, N: lg.ntk_gram(p, torch.full((N,), INF, dtype=F64)), "ntk_gram"),
    (lambda p, N: lg.gauss_newton(p, torch.zeros(N + 2, dtype=F64)), "gauss_newton"),
    (lambda p, N: lg.residual_hessian(p, torch.full((N,), NAN, dtype=F64)), "residual_hessian"),
    (lambda p, N: lg.analyze(p, torch.full((N,), NAN, dtype=F64)), "analyze"),
    (lambda p, N: lg.analyze(p, method="fast"), "'auto', 'dense', 'operator'"),
    (lambda p, N: lg.analyze(p, rtol=1.5), r"\(0, 1\)"),
    (lambda p, N: lg.find_critical_point(p, target="maximum"), "'minimum', 'any'"),
    (lambda p, N: lg.find_critical_point(p, polish="bfgs"), "'newton', 'gauss_newton', 'none'"),
    (lambda p, N: lg.fit_last_layer(p, torch.full((N,), NAN, dtype=F64)), "fit_last_layer"),
])
def test_bad_theta_v_and_options_are_rejected_with_the_api_name(call, match):
    X, Y = _data()
    problem = lg.Problem(lg.mlp([2, 3, 1]), X, Y)
    with pytest.raises(ValueError, match=match):
        call(problem, problem.n_params)


def test_theta_of_wrong_type_is_a_type_error():
    X, Y = _data()
    problem = lg.Problem(lg.mlp([2, 3, 1]), X, Y)
    with pytest.raises(TypeError, match="hessian"):
        lg.hessian(problem, [0.0] * problem.n_params)


@pytest.mark.parametrize("kwargs, match", [
    ({"widths": [2]}, "at least two positive"),
    ({"widths": [2, 0, 1]}, "at least two positive"),
    ({"widths": [2, 2.5, 1]}, "at least two positive"),
    ({"widths": [2, 3, 1], "activation": "swish"}, "'tanh', 'relu', 'sigmoid'"),
    ({"widths": [2, 3, 1], "bias": "hidden"}, "True, False or 'output'"),
])
def test_mlp_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lg.mlp(**kwargs)


def test_mlp_structure_and_seeding():
    a = lg.mlp([3, 6, 1], bias=False)
    assert sum(p.numel() for p in a.parameters()) == 24
    b = lg.mlp([2, 4, 1], bias="output")
    assert [n for n, _ in b.named_parameters()] == ["0.weight", "2.weight", "2.bias"]
    c1, c2 = lg.mlp([2, 4, 1], generator=gen(5)), lg.mlp([2, 4, 1], generator=gen(5))
    assert all(torch.equal(p, q) for p, q in zip(c1.parameters(), c2.parameters(), strict=True))
    assert all(p.dtype == F64 for p in c1.parameters())
    bound = 1 / math.sqrt(2)
    assert float(c1[0].weight.detach().abs().max()) <= bound
    for act in ("tanh", "relu", "sigmoid", "softplus", "gelu", "linear", "square"):
        m = lg.mlp([2, 3, 1], act, generator=gen(0))
        z = m[0](torch.ones(1, 2, dtype=F64))
        expected = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
                    "softplus": torch.nn.functional.softplus, "gelu": torch.nn.functional.gelu,
                    "linear": lambda t: t, "square": lambda t: t * t}[act](z)
        assert torch.allclose(m[1](z), expected)


# -- checkpoints ------------------------------------------------------------------------------------
class _Evil:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Evil.ran = True
    return "ran"


def test_state_dict_checkpoint_loads_without_touching_the_template(tmp_path):
    source = lg.mlp([2, 3, 1], generator=gen(7))
    template = lg.mlp([2, 3, 1], generator=gen(8))
    before = {k: v.clone() for k, v in template.state_dict().items()}
    X, Y = _data()
    for payload, fname in ((source.state_dict(), "sd.pt"),
                           ({"state_dict": source.state_dict(), "epoch": 3}, "wrapped.pt")):
        path = tmp_path / fname
        torch.save(payload, path)
        problem = lg.Problem.from_checkpoint(path, template, X, Y)
        assert torch.equal(problem.theta, lg.Problem(source, X, Y).theta)
    assert all(torch.equal(before[k], v) for k, v in template.state_dict().items())
    assert template.training


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    X, Y = _data()
    path = tmp_path / "evil.pt"
    torch.save({"0.weight": _Evil()}, path)
    with pytest.raises(UnsafeCheckpointError, match="weights_only=True") as err:
        lg.Problem.from_checkpoint(path, lg.mlp([2, 3, 1]), X, Y)
    assert isinstance(err.value, ValueError)
    assert not _Evil.ran
    whole = tmp_path / "model.pt"
    torch.save(lg.mlp([2, 3, 1]), whole)                     # a pickled nn.Module
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        lg.Problem.from_checkpoint(whole, lg.mlp([2, 3, 1]), X, Y)


def test_checkpoint_errors(tmp_path):
    X, Y = _data()
    torch.save(lg.mlp([2, 3, 1]).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match=r"missing \['4.bias', '4.weight'\]"):
        lg.Problem.from_checkpoint(tmp_path / "sd.pt", lg.mlp([2, 3, 3, 1]), X, Y)
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(3, 2\) in the checkpoint"):
        lg.Problem.from_checkpoint(tmp_path / "sd.pt", lg.mlp([2, 4, 1]), X, Y)
    with pytest.raises(ValueError, match=r"unexpected \['0.bias', '2.bias'\]"):
        lg.Problem.from_checkpoint(tmp_path / "sd.pt", lg.mlp([2, 3, 1], bias=False), X, Y)
    with pytest.raises(FileNotFoundError):
        lg.Problem.from_checkpoint(tmp_path / "missing.pt", lg.mlp([2, 3, 1]), X, Y)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UnsafeCheckpointError):
        lg.Problem.from_checkpoint(tmp_path / "junk.pt", lg.mlp([2, 3, 1]), X, Y)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        lg.Problem.from_checkpoint(tmp_path / "list.pt", lg.mlp([2, 3, 1]), X, Y)


# -- the caller's model is never changed ----------------------------------------------------------------
def _snapshot(model: nn.Module):
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "dtypes": {k: v.dtype for k, v in model.state_dict().items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "ids": {n: id(p) for n, p in model.named_parameters()},
    }


def _assert_same(a, b, where):
    assert a["dtypes"] == b["dtypes"], where
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"]), where
    assert a["requires_grad"] == b["requires_grad"], where
    for k in a["grad"]:
        ga, gb = a["grad"][k], b["grad"][k]
        assert (ga is None) == (gb is None), where
        assert ga is None or torch.equal(ga, gb), where
    assert a["training"] == b["training"], where
    assert a["ids"] == b["ids"], where


def test_model_is_unchanged_by_every_call(tmp_path):
    """state dict, requires_grad, .grad and the training flag stay as given."""
    bn = nn.BatchNorm1d(3)
    model = nn.Sequential(nn.Linear(2, 3), bn, nn.Tanh(), nn.Linear(3, 1))   # float32 module
    bn.eval()                             # eval BN inside a model whose other modules train
    model[0].bias.requires_grad_(False)   # a frozen parameter
    model[3].weight.grad = torch.full_like(model[3].weight, 0.5)             # a stale gradient
    X, Y = _data()
    ref = _snapshot(model)
    problem = lg.Problem(model, X, Y)
    theta = problem.theta
    v = torch.ones(problem.n_params, dtype=F64)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    calls = {
        "outputs": lambda: problem.outputs(theta),
        "loss": lambda: problem.loss(theta),
        "grad": lambda: problem.grad(theta),
        "output_grad": lambda: problem.output_grad(theta),
        "jacobian": lambda: lg.jacobian(problem, theta),
        "jacobian_operator": lambda: lg.jacobian_operator(problem, theta).rmatvec(np.ones(4)),
        "ntk_gram": lambda: lg.ntk_gram(problem, theta),
        "hessian": lambda: lg.hessian(problem, theta),
        "hvp": lambda: lg.hvp(problem, theta, v),
        "hessian_operator": lambda: lg.hessian_operator(problem, theta).matvec(v.numpy()),
        "gauss_newton": lambda: lg.gauss_newton(problem, theta),
        "residual_hessian": lambda: lg.residual_hessian(problem, theta),
        "analyze": lambda: lg.analyze(problem, theta),
        "analyze_operator": lambda: lg.analyze(problem, theta, method="operator"),
        "fit_last_layer": lambda: fit_last_layer(problem, theta),
        "find_critical_point": lambda: lg.find_critical_point(problem, theta, steps=5,
                                                              polish_steps=1),
        "with_targets": lambda: problem.with_targets(Y * 2).loss(),
        "from_checkpoint": lambda: lg.Problem.from_checkpoint(tmp_path / "sd.pt", model, X, Y),
    }
    for name, call in calls.items():
        try:
            call()
        except lg.NotCriticalError:
            pass                           # find_critical_point with 1 polish step may stop early
        _assert_same(ref, _snapshot(model), name)
    assert torch.equal(problem.theta, theta)


# -- parameter selection, frozen constants, tied weights -------------------------------------------
class _Blocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(31)])
        self.head = nn.Linear(2, 1)

    def forward(self, x):
        for b in self.blocks:
            x = torch.tanh(b(x))
        return self.head(x)


def test_param_slices_locate_each_tensor_in_theta():
    model = lg.mlp([2, 3, 1], generator=gen(2))
    problem = lg.Problem(model, *_data())
    sl = problem.param_slices
    assert list(sl) == list(problem.param_names)
    assert sl["0.weight"] == slice(0, 6) and sl["2.bias"] == slice(12, 13)
    for name, p in model.named_parameters():
        assert torch.equal(problem.theta[sl[name]].view(p.shape), p.detach())


def test_select_prefixes_name_module_paths_not_string_prefixes():
    X, Y = _data()
    problem = lg.Problem(_Blocks().double(), X, Y, select=["blocks.3", "head."])
    assert problem.param_names == ("blocks.3.weight", "blocks.3.bias", "head.weight", "head.bias")
    assert problem.n_params == 9 and problem.n_frozen == 30 * 6
    assert problem.frozen_names[:2] == ("blocks.0.weight", "blocks.0.bias")
    only = lg.Problem(_Blocks().double(), X, Y, select="head.bias")          # one full name
    assert only.param_names == ("head.bias",) and only.n_params == 1
    assert set(only.constants) == {n for n, _ in _Blocks().named_parameters()} - {"head.bias"}
    as_set = lg.Problem(_Blocks().double(), X, Y, select={"head"})
    assert as_set.param_names == ("head.weight", "head.bias")


def test_frozen_parameters_stay_constants_at_their_values():
    X, Y = _data()
    model = lg.mlp([2, 3, 1], generator=gen(3))
    model[0].weight.requires_grad_(False)
    problem = lg.Problem(model, X, Y)
    assert problem.param_names == ("0.bias", "2.weight", "2.bias") and problem.n_frozen == 6
    with torch.no_grad():
        assert torch.allclose(problem.outputs(), model(X), rtol=1e-14)
    theta = problem.theta + 0.1
    with torch.no_grad():
        model_b = lg.mlp([2, 3, 1], generator=gen(3))
        for name, p in model_b.named_parameters():
            if name in problem.param_slices:
                p.copy_(theta[problem.param_slices[name]].view(p.shape))
        assert torch.allclose(problem.outputs(theta), model_b(X), rtol=1e-14)
    assert "frozen=1 tensor (6 entries)" in repr(problem)


@pytest.mark.parametrize("select, exc, match", [
    (["body."], ValueError, r"matches none of the model's parameters: \['0.weight', '0.bias'"),
    (lambda name, t: False, ValueError, "the select function matches none"),
    (["0", "blocks.9"], ValueError, r"select prefixes \['blocks.9'\] match no parameter"),
    (3, TypeError, "select must be None, a list of parameter-name prefixes, or a callable"),
    ([1, 2], TypeError, "select must be"),
    ([], ValueError, "select is empty"),
])
def test_bad_select_is_refused_listing_the_parameter_names(select, exc, match):
    with pytest.raises(exc, match=match) as err:
        lg.Problem(lg.mlp([2, 3, 1]), *_data(), select=select)
    assert str(err.value).startswith("Problem(model, inputs, targets):")


def test_every_parameter_frozen_is_refused():
    model = lg.mlp([2, 3, 1]).requires_grad_(False)
    with pytest.raises(ValueError, match="every parameter has requires_grad=False"):
        lg.Problem(model, *_data())
    assert lg.Problem(model, *_data(), select=["2"]).n_params == 4   # explicit select wins


def test_tied_weights_enter_theta_once_and_their_gradient_sums_both_uses():
    from models import autograd_hessian, max_rel, tied_embedding, tokens

    model = tied_embedding(seed=0)
    X = tokens(n=6, length=3, vocab=5, seed=4)
    Y = gaussian(6, 5, seed=5)
    problem = lg.Problem(model, X, Y)
    assert problem.param_names == ("embed.weight",) and problem.n_params == 15
    loss = ((model(X) - Y) ** 2).sum()
    (g,) = torch.autograd.grad(loss, [model.embed.weight])      # autograd sums both uses
    assert torch.allclose(problem.grad(), g.reshape(-1), rtol=1e-12)
    H = lg.hessian(problem)
    assert max_rel(H, autograd_hessian(problem.loss_at, problem.theta)) < 1e-12
    by_alias = lg.Problem(model, X, Y, select=["unembed"])        # the second name selects it too
    assert by_alias.param_names == ("embed.weight",) and torch.equal(by_alias.theta, problem.theta)


# -- dtypes ------------------------------------------------------------------------------------------
def test_model_dtype_is_recorded_next_to_the_working_dtype():
    X, Y = _data()
    model = lg.mlp([2, 3, 1], generator=gen(4), dtype=torch.float32)
    copied = lg.Problem(model, X, Y)
    assert (copied.model_dtype, copied.dtype) == (torch.float32, F64)
    assert "model_dtype=torch.float32" in repr(copied)
    kept = lg.Problem(model, X, Y, dtype=None)
    assert (kept.model_dtype, kept.dtype) == (torch.float32, torch.float32)
    assert kept.theta.dtype == torch.float32 and kept.inputs.dtype == torch.float32
    assert lg.hessian(kept).dtype == torch.float32 and "model_dtype" not in repr(kept)
    native = lg.Problem(lg.mlp([2, 3, 1]), X, Y, dtype=None)
    assert native.model_dtype == native.dtype == F64


# -- devices -----------------------------------------------------------------------------------------
def test_meta_models_and_data_are_refused_naming_what_to_do():
    X, Y = _data()
    with torch.device("meta"):
        model = lg.mlp([2, 3, 1])
    with pytest.raises(ValueError, match=r"parameter '0.weight' \(and 3 more\) lives on the meta "
                                         r"device.*model.to_empty\(device=\"cpu\"\)"):
        lg.Problem(model, X, Y)
    with pytest.raises(ValueError, match="inputs are on the meta device"):
        lg.Problem(lg.mlp([2, 3, 1]), X.to("meta"), Y)
    with pytest.raises(ValueError, match="device=\"meta\" holds no values"):
        lg.Problem(lg.mlp([2, 3, 1]), X, Y, device="meta")


def test_device_argument_places_theta_data_and_products():
    X, Y = _data()
    problem = lg.Problem(lg.mlp([2, 3, 1]), X, Y, device="cpu")
    assert problem.device == torch.device("cpu") and problem.theta.device.type == "cpu"
    with pytest.raises(ValueError, match="is not a torch device"):
        lg.Problem(lg.mlp([2, 3, 1]), X, Y, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="is not available here"):
            lg.Problem(lg.mlp([2, 3, 1]), X, Y, device="cuda:0")


# -- token ids and output shapes -----------------------------------------------------------------------
class _Bag(nn.Module):
    def __init__(self, per_token: bool = False):
        super().__init__()
        self.embed = nn.Embedding(5, 3, dtype=F64)
        self.head = nn.Linear(3, 2, dtype=F64)
        self.per_token = per_token

    def forward(self, x):
        h = self.head(torch.tanh(self.embed(x)))
        return h if self.per_token else h.mean(dim=1)


def test_token_ids_stay_integers_and_only_theta_is_differentiated():
    ids = torch.tensor([[0, 1, 4], [2, 2, 3], [4, 0, 1]])
    problem = lg.Problem(_Bag(), ids, gaussian(3, 2, seed=0))
    assert problem.inputs.dtype == torch.long and torch.equal(problem.inputs, ids)
    assert problem.per_sample and problem.forward_ad
    assert lg.jacobian(problem).shape == (6, 15 + 8)
    ints = lg.Problem(lg.mlp([2, 3, 1]), torch.tensor([[1, 0], [0, 1], [1, 1]]), torch.zeros(3))
    assert ints.inputs.dtype == F64                               # no embedding: numbers, not ids


def test_token_ids_of_the_wrong_dtype_or_range_are_refused():
    Y = gaussian(3, 2, seed=0)
    with pytest.raises(TypeError, match=r"embeds token ids \(embed: Embedding\(5, 3\)\) but the "
                                        r"inputs are torch.float64.*torch.long"):
        lg.Problem(_Bag(), torch.zeros(3, 3, dtype=F64), Y)
    with pytest.raises(ValueError, match=r"token ids range over \[0, 7\].*\(embed: 5\) rows"):
        lg.Problem(_Bag(), torch.tensor([[0, 1, 7], [2, 2, 3], [4, 0, 1]]), Y)


def test_outputs_that_are_not_n_by_k_are_refused():
    ids = torch.tensor([[0, 1, 4], [2, 2, 3], [4, 0, 1]])
    with pytest.raises(ValueError, match=r"^Problem\(model, inputs, targets\): the model returned "
                                         r"shape \(3, 3, 2\) for 3 inputs; expected \(n, k\) or "
                                         r"\(n,\)\. Pool or flatten"):
        lg.Problem(_Bag(per_token=True), ids, gaussian(3, 2, seed=0))


# -- attention kernels and the forward-mode probe ---------------------------------------------------
def test_math_attention_disables_the_fused_routes_and_restores_them():
    from lossgeom.problem import math_attention

    before = torch.backends.mha.get_fastpath_enabled()
    with math_attention():
        assert torch.backends.mha.get_fastpath_enabled() is False
    assert torch.backends.mha.get_fastpath_enabled() is before


def test_fused_attention_would_break_second_derivatives_but_problem_routes_around_it():
    """Without the math backend the CPU flash kernel has no double backward; through the Problem
    (every evaluation under math_attention) the Hessian matches plain double backward."""
    from models import attention_net, autograd_hessian, max_rel, tokens

    model = attention_net(seed=0)
    X = tokens(n=3, length=4, vocab=5, seed=0)
    problem = lg.Problem(model, X, gaussian(3, 2, seed=1))
    t = problem.theta.requires_grad_(True)
    with pytest.raises(RuntimeError, match="flash_attention"):
        params = problem.unflatten(t)
        out = torch.func.functional_call(model, params, (X,))
        (g,) = torch.autograd.grad(((out - problem.targets) ** 2).sum(), t, create_graph=True)
        torch.autograd.grad(g.sum(), t)
    H = lg.hessian(problem)
    assert max_rel(H, autograd_hessian(problem.loss_at, problem.theta)) < 1e-10


class _BadForwardTanh(torch.autograd.Function):
    """tanh whose forward-mode rule is off by a factor 2 (backward is right)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)

    @staticmethod
    def jvp(ctx, t):
        (y,) = ctx.saved_tensors
        return 2 * t * (1 - y * y)


class _OldStyleTanh(torch.autograd.Function):
    """A custom Function without setup_context: torch.func cannot transform it at all."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class _Apply(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x)


def test_probe_falls_back_to_reverse_mode_when_forward_mode_is_wrong():
    from models import autograd_hessian, autograd_jacobian, max_rel

    from lossgeom.curvature._hessian import dense_second_order

    model = nn.Sequential(nn.Linear(2, 3), _Apply(_BadForwardTanh), nn.Linear(3, 1)).double()
    X, Y = _data()
    problem = lg.Problem(model, X, Y)
    assert problem.forward_ad is False and "disagrees with reverse mode" in problem.ad_notes
    assert "forward_ad=False" in repr(problem)
    theta = problem.theta
    H = autograd_hessian(problem.loss_at, theta)
    assert max_rel(lg.hessian(problem), H) < 1e-12
    assert max_rel(lg.hessian(problem, mode="forward"), H) < 1e-12     # asked for, not used
    wrong = dense_second_order(problem.loss_at, theta, mode="forward")  # the faulty rule itself
    assert max_rel(wrong, H) > 1e-2
    J = autograd_jacobian(problem.output_fn, theta)
    v = torch.ones(problem.n_params, dtype=F64)
    assert max_rel(lg.jacobian_operator(problem).torch_matvec(v), J @ v) < 1e-12
    G = lg.gauss_newton(problem)
    assert max_rel(G, 2 * J.T @ J) < 1e-12
    assert max_rel(G + lg.residual_hessian(problem), H) < 1e-12
    hess = lg.analyze(problem, method="dense").to_dict()["hessian"]     # the dense route is sound
    lam = torch.linalg.eigvalsh(H)
    tol = hess["tol"]
    assert hess["inertia"] == [int((lam > tol).sum()), int((lam < -tol).sum()),
                               int((lam.abs() <= tol).sum())]
    assert torch.allclose(torch.tensor(hess["top_eigenvalues"], dtype=F64),
                          lam.flip(0)[: len(hess["top_eigenvalues"])], rtol=1e-10)


def test_probe_falls_back_when_a_custom_loss_has_no_forward_rule():
    """F.mse_loss(reduction="mean") under jvp(grad) fails in torch ("ZeroTensors are immutable")."""
    from models import autograd_hessian, max_rel

    X, Y = _data()
    problem = lg.Problem(lg.mlp([2, 3, 1], generator=gen(5)), X, Y,
                         loss=lambda x, y: torch.nn.functional.mse_loss(x, y))
    assert problem.forward_ad is False and "forward-mode AD is unavailable" in problem.ad_notes
    ref = autograd_hessian(problem.loss_at, problem.theta)
    assert max_rel(lg.hessian(problem), ref) < 1e-12
    v = gaussian(problem.n_params, seed=6)
    assert max_rel(lg.hvp(problem, None, v, mode="forward"), ref @ v) < 1e-12


def test_models_torch_func_cannot_differentiate_are_refused():
    model = nn.Sequential(nn.Linear(2, 3), _Apply(_OldStyleTanh), nn.Linear(3, 1)).double()
    with pytest.raises(ValueError, match="torch.func cannot differentiate the model in reverse mode.*"
                                         "setup_context"):
        lg.Problem(model, *_data())


def test_checkpoint_passes_selection_on(tmp_path):
    source = lg.mlp([2, 3, 1], generator=gen(7))
    torch.save(source.state_dict(), tmp_path / "sd.pt")
    problem = lg.Problem.from_checkpoint(tmp_path / "sd.pt", lg.mlp([2, 3, 1]), *_data(),
                                         select=["2"])
    assert problem.param_names == ("2.weight", "2.bias")
    assert torch.equal(problem.theta, torch.cat([source[2].weight.detach().reshape(-1),
                                                 source[2].bias.detach()]))
