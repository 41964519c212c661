"""Real models at the researcher's desk: CNNs on digits, a transformer encoder on token ids,
LayerNorm and BatchNorm networks, frozen backbones.

``lg.analyze(problem, θ, method="dense")`` is checked against dense float64 references that share
no code with lossgeom's curvature routes: J row by row with ``torch.autograd.grad``, ∇²L by double
backward one unit vector at a time, then ``torch.linalg.svdvals`` / ``eigvalsh``. Tolerances: the
report's own rank and inertia tolerances must separate the reference spectra the same way (same
counts), and the top eigenvalues agree to TOP_RTOL·max|λ|. Where a model has exact symmetries
(translations of θ that leave L unchanged for every θ, so ∇²L ξ = 0 everywhere), the zero count is
at least their number: a theorem, not a measurement.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from models import (
    F64,
    autograd_hessian,
    autograd_jacobian,
    backbone,
    bn_convnet,
    digits,
    encoder,
    gaussian,
    layernorm_mlp,
    lenet,
    max_rel,
    one_hot,
    tokens,
)
from torch import nn

import lossgeom as lg

TOP_RTOL = 1e-9        # eigvalsh of two float64 Hessians that agree to ~1e-15 entrywise
NULL_RTOL = 1e-12      # ‖∇²L ξ‖∞ / max|∇²L| for an exact symmetry direction ξ


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: a second intra-op thread only adds contention (tens of times slower
    on a loaded machine), so this module runs single-threaded and restores the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the models, at seeded non-critical points ---------------------------------------------------
def _lenet_tanh_max():
    X, y = digits(n=24, classes=4, seed=0)
    return lg.Problem(lenet(activation="tanh", pool="max", seed=0), X, y, loss="softmax_ce")


def _lenet_relu_avg():
    X, y = digits(n=24, classes=4, seed=1)
    return lg.Problem(lenet(activation="relu", pool="avg", seed=1), X, y, loss="softmax_ce")


def _encoder():
    return lg.Problem(encoder(seed=0), tokens(n=6, length=5, vocab=7, seed=0),
                      gaussian(6, 3, seed=1))


def _layernorm_mlp():
    """n·k = 60 > N = 42: rank J is cut by the 4 LayerNorm symmetries of x, not by n·k."""
    return lg.Problem(layernorm_mlp(seed=0), gaussian(30, 3, seed=2), gaussian(30, 2, seed=3))


def _bn_eval():
    X, y = digits(n=12, classes=2, seed=2)
    return lg.Problem(bn_convnet(seed=0), X, one_hot(y, 2))


def _bn_train_coupled():
    X, y = digits(n=12, classes=2, seed=3)
    return lg.Problem(bn_convnet(seed=1, training=True), X, one_hot(y, 2), batch_coupled=True)


MODELS = {"lenet_tanh_maxpool": _lenet_tanh_max, "lenet_relu_avgpool": _lenet_relu_avg,
          "encoder": _encoder, "layernorm_mlp": _layernorm_mlp, "batchnorm_eval": _bn_eval,
          "batchnorm_train_coupled": _bn_train_coupled}


@functools.cache
def _reference(name: str):
    problem = MODELS[name]()
    theta = problem.theta
    return (problem, theta, autograd_hessian(problem.loss_at, theta),
            autograd_jacobian(problem.output_fn, theta))


@functools.cache
def _report(name: str):
    problem, theta, _, _ = _reference(name)
    return lg.analyze(problem, theta, method="dense").to_dict()


def _counts(lam: torch.Tensor, tol: float) -> list[int]:
    pos, neg = int((lam > tol).sum()), int((lam < -tol).sum())
    return [pos, neg, lam.numel() - pos - neg]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_rank_of_j_matches_the_autograd_reference(name):
    _, _, _, J = _reference(name)
    jac = _report(name)["jacobian"]
    s = torch.linalg.svdvals(J)
    r, tol = jac["rank"], jac["tol"]
    assert jac["decided"] is True
    assert int((s > tol).sum()) == r
    assert r == s.numel() or float(s[r]) < 1e-3 * float(s[r - 1])   # the reference sees the gap too


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hessian_inertia_and_top_eigenvalues_match_double_backward(name):
    _, _, H, _ = _reference(name)
    hess = _report(name)["hessian"]
    assert hess["method"] == "dense" and hess["decided"] is True
    lam = torch.linalg.eigvalsh(0.5 * (H + H.T))
    assert _counts(lam, hess["tol"]) == hess["inertia"]
    top = lam.flip(0)[: len(hess["top_eigenvalues"])]
    scale = float(lam.abs().max())
    assert torch.allclose(torch.tensor(hess["top_eigenvalues"], dtype=F64), top, rtol=0,
                          atol=TOP_RTOL * scale)
    # the cut sits in a real gap of the reference spectrum, not on an eigenvalue
    a = lam.abs().sort().values
    z = hess["inertia"][2]
    assert a[z] > 1e3 * (a[z - 1] if z else 0.0)


def test_reports_record_a_full_problem():
    for name in MODELS:
        problem, *_ = _reference(name)
        report = _report(name)
        assert report["n_params"] == problem.n_params
        assert report["dtype"] == "float64"


# -- exact symmetries: translations of θ that leave L unchanged ---------------------------------
def _directions(problem: lg.Problem, parts: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Columns ξ (N, m) built from {parameter name: tensor of its shape} pieces."""
    sl = problem.param_slices
    cols = []
    for piece in parts:
        xi = torch.zeros(problem.n_params, dtype=F64)
        for name, t in piece.items():
            xi[sl[name]] = t.reshape(-1)
        cols.append(xi)
    return torch.stack(cols, dim=1)


def _check_null(name: str, Z: torch.Tensor, of_outputs: bool) -> None:
    """Z's columns are symmetries of L (and of x itself when ``of_outputs``): ∇²L Z = 0, so the
    zero count is at least rank Z; for x, also J Z = 0 and rank J ≤ N − rank Z."""
    problem, theta, H, J = _reference(name)
    m = Z.shape[1]
    assert torch.linalg.matrix_rank(Z) == m
    scale = float(H.abs().max())
    assert float((H @ Z).abs().max()) <= NULL_RTOL * scale                 # the reference
    HZ = torch.stack([lg.hvp(problem, theta, z) for z in Z.T], dim=1)     # lossgeom's products
    assert float(HZ.abs().max()) <= NULL_RTOL * scale
    report = _report(name)
    assert report["hessian"]["inertia"][2] >= m
    if of_outputs:
        assert float((J @ Z).abs().max()) <= NULL_RTOL * float(J.abs().max())
        assert report["jacobian"]["rank"] <= problem.n_params - m


def test_softmax_shift_symmetries_of_the_cnn_are_null_directions():
    """softmax_ce is invariant under logits + c·1: the head bias along 1 and adding one vector to
    every row of the head weight are translations (1 + 24 directions)."""
    problem = _reference("lenet_tanh_maxpool")[0]
    k, width = problem.param_shapes[problem.param_names.index("head.weight")]
    parts = [{"head.bias": torch.ones(k, dtype=F64)}]
    parts += [{"head.weight": torch.ones(k, 1, dtype=F64) * torch.eye(width, dtype=F64)[j]}
              for j in range(width)]
    _check_null("lenet_tanh_maxpool", _directions(problem, parts), of_outputs=False)


def test_translation_symmetries_of_the_encoder_are_null_directions():
    """Exact translations of the encoder: embedding rows + c with positions − c (d directions); any
    key bias (softmax over keys ignores a shift common to all keys: d); the attention output bias
    and the second feed-forward bias along 1 (each removed by the LayerNorm that follows: 1 + 1)."""
    problem = _reference("encoder")[0]
    V, d = problem.param_shapes[problem.param_names.index("embed.weight")]
    L = problem.param_shapes[problem.param_names.index("pos")][0]
    eye = torch.eye(d, dtype=F64)
    parts = [{"embed.weight": torch.ones(V, 1, dtype=F64) * eye[j],
              "pos": -torch.ones(L, 1, dtype=F64) * eye[j]} for j in range(d)]
    for j in range(d):
        bias = torch.zeros(3 * d, dtype=F64)
        bias[d + j] = 1.0
        parts.append({"block.self_attn.in_proj_bias": bias})
    parts.append({"block.self_attn.out_proj.bias": torch.ones(d, dtype=F64)})
    parts.append({"block.linear2.bias": torch.ones(d, dtype=F64)})
    _check_null("encoder", _directions(problem, parts), of_outputs=True)
    assert problem.n_params == 723 and problem.inputs.dtype == torch.long


def test_layernorm_symmetries_are_null_directions():
    """LayerNorm removes the feature mean: first-layer bias along 1 and W₁ + 1cᵀ (1 + d directions)."""
    problem = _reference("layernorm_mlp")[0]
    h, d = problem.param_shapes[0]
    parts = [{"0.bias": torch.ones(h, dtype=F64)}]
    parts += [{"0.weight": torch.ones(h, 1, dtype=F64) * torch.eye(d, dtype=F64)[j]} for j in range(d)]
    _check_null("layernorm_mlp", _directions(problem, parts), of_outputs=True)
    assert _report("layernorm_mlp")["jacobian"]["rank"] == problem.n_params - 4   # and no other cut


def test_batchnorm_in_training_mode_cancels_the_conv_bias():
    """With batch statistics, a per-channel shift of the conv bias is subtracted again (3 directions)."""
    problem = _reference("batchnorm_train_coupled")[0]
    parts = [{"conv.bias": torch.eye(3, dtype=F64)[c]} for c in range(3)]
    _check_null("batchnorm_train_coupled", _directions(problem, parts), of_outputs=True)


# -- BatchNorm: eval uses running statistics, training couples the batch --------------------------
def test_batchnorm_eval_matches_the_model_and_is_per_sample():
    problem = _reference("batchnorm_eval")[0]
    with torch.no_grad():
        assert torch.allclose(problem.outputs(), problem.model(problem.inputs), rtol=1e-13)
    assert problem.per_sample and not problem.batch_coupled


def test_batchnorm_in_training_mode_is_refused_with_both_fixes():
    X, y = digits(n=12, classes=2, seed=3)
    model = bn_convnet(seed=1, training=True)
    with pytest.raises(ValueError) as err:
        lg.Problem(model, X, one_hot(y, 2))
    msg = str(err.value)
    assert msg.startswith("Problem(model, inputs, targets): bn (BatchNorm2d in training mode)")
    assert "depends on the whole batch" in msg
    assert "model.eval()" in msg and "batch_coupled=True" in msg


def test_batchnorm_without_running_statistics_is_refused_even_in_eval_mode():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False),
                          nn.Linear(4, 1)).double().eval()
    with pytest.raises(ValueError, match=r"track_running_stats=False.*batch_coupled=True"):
        lg.Problem(model, gaussian(5, 3, seed=0), gaussian(5, 1, seed=1))
    problem = lg.Problem(model, gaussian(5, 3, seed=0), gaussian(5, 1, seed=1), batch_coupled=True)
    assert not problem.per_sample


def test_batch_coupled_problem_is_the_full_batch_training_map():
    X, y = digits(n=12, classes=2, seed=3)
    model = bn_convnet(seed=1, training=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    problem = lg.Problem(model, X, one_hot(y, 2), batch_coupled=True)
    assert problem.batch_coupled and not problem.per_sample
    twin = copy.deepcopy(model)                       # the training-mode forward updates stats
    with torch.no_grad():
        assert torch.allclose(problem.outputs(), twin(X), rtol=1e-13, atol=1e-14)
    X2 = X.clone()
    X2[1:] *= 1.5                                     # every sample but the first changes
    moved = lg.Problem(bn_convnet(seed=1, training=True), X2, one_hot(y, 2), batch_coupled=True)
    assert not torch.allclose(moved.outputs()[0], problem.outputs()[0])   # sample 0 sees the batch
    _, theta, _, J = _reference("batchnorm_train_coupled")
    assert max_rel(lg.jacobian(problem, theta), J) < 1e-10
    lg.analyze(problem, method="dense")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())   # stats untouched
    assert model.training


# -- stochastic modules ---------------------------------------------------------------------------
@pytest.mark.parametrize("model, what", [
    (nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 1)), r"1 \(Dropout\(p=0.2\)"),
    (nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, batch_first=True), "Dropout"),
    (nn.MultiheadAttention(4, 2, dropout=0.1, batch_first=True), "MultiheadAttention"),
], ids=["dropout", "encoder_layer_default_dropout", "attention_dropout"])
def test_active_dropout_is_refused_naming_model_eval(model, what):
    model.double().train()
    with pytest.raises(ValueError, match=what) as err:
        lg.Problem(model, gaussian(4, 3, 4, seed=0) if not isinstance(model, nn.Sequential)
                   else gaussian(4, 3, seed=0), gaussian(4, 1, seed=1))
    assert "model.eval()" in str(err.value) and "stochastic" in str(err.value)


# -- frozen backbones ------------------------------------------------------------------------------
def test_frozen_backbone_by_requires_grad_and_by_select_agree_with_the_full_hessian_block():
    X, Y = gaussian(7, 3, seed=4), gaussian(7, 2, seed=5)
    full = lg.Problem(backbone(seed=0), X, Y)
    H_full = autograd_hessian(full.loss_at, full.theta)
    J_full = autograd_jacobian(full.output_fn, full.theta)
    head = torch.cat([torch.arange(full.n_params)[full.param_slices[n]]
                      for n in ("head.weight", "head.bias")])
    frozen = lg.Problem(backbone(seed=0, freeze=True), X, Y)
    chosen = lg.Problem(backbone(seed=0), X, Y, select=["head"])
    picked = lg.Problem(backbone(seed=0), X, Y, select=lambda name, t: name.startswith("head."))
    for p in (frozen, chosen, picked):
        assert p.param_names == ("head.weight", "head.bias") and p.n_params == 14
        assert p.frozen_names == ("body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias")
        assert p.n_frozen == 18 + 6 + 36 + 6
        assert torch.equal(p.theta, full.theta[head])
        assert max_rel(lg.hessian(p), H_full[head][:, head]) < 1e-12
        assert max_rel(lg.jacobian(p), J_full[:, head]) < 1e-12
        assert max_rel(lg.ntk_gram(p), J_full[:, head] @ J_full[:, head].T) < 1e-12
        report = lg.analyze(p, method="dense").to_dict()
        lam = torch.linalg.eigvalsh(H_full[head][:, head])
        assert _counts(lam, report["hessian"]["tol"]) == report["hessian"]["inertia"]
        assert "frozen=4 tensors (66 entries)" in repr(p)
