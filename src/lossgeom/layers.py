"""The one layer registry: what lossgeom may assume of each module type, and one walker.

``describe(module)`` answers, for any ``nn.Module``, the questions the analyses ask:

* role — elementwise activation, affine, convolution, pooling, attention, normalisation,
  embedding, dropout, reshape, or unknown;
* ``smooth`` — infinitely differentiable everywhere (Hessians exist and are continuous; the loci
  theorems of §3 assume it at 0);
* ``lipschitz_derivative`` — the derivative is Lipschitz continuous (the flows of §2.1 need it;
  ELU qualifies only with α = 1, ReLU never);
* ``per_sample`` — sample i's output depends on sample i's input only (False for BatchNorm in
  training mode, which normalises over the batch);
* ``dead_units`` — an elementwise map whose derivative can vanish on a whole range (ReLU-like),
  so §6.2's dead-unit tightening applies.

Unknown module types are described as ``Role.UNKNOWN`` with every property False: callers refuse
or skip, they never guess. ``sequential_stages`` is the one walker over ``nn.Sequential`` models:
it cuts the model after each module with parameters and its parameter-free followers.

Example:
    >>> from torch import nn
    >>> describe(nn.Tanh()).smooth, describe(nn.ReLU()).lipschitz_derivative
    (True, False)
    >>> [s.name for s in sequential_stages(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))]
    ['0', '2']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = [
    "ACTIVATION_MODULES", "LayerKind", "Role", "Square", "Stage", "StageTrace", "describe",
    "follower_derivative", "forward_stages", "sequential_stages",
]


class Square(nn.Module):
    """Elementwise σ(z) = z²."""

    def forward(self, z: Tensor) -> Tensor:
        """z², same shape as z."""
        return z * z


class Role(StrEnum):
    """What a module does to its input."""

    ACTIVATION = "activation"
    AFFINE = "affine"
    CONVOLUTION = "convolution"
    POOLING = "pooling"
    ATTENTION = "attention"
    NORMALIZATION = "normalization"
    EMBEDDING = "embedding"
    DROPOUT = "dropout"
    RESHAPE = "reshape"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class LayerKind:
    """What lossgeom may assume of one module (module docstring).

    Attributes:
        role: The module's Role.
        name: Short lower-case name ("tanh", "linear", "conv", …; the class name otherwise).
        smooth: C^∞ everywhere.
        lipschitz_derivative: The derivative is Lipschitz continuous.
        per_sample: Output i depends on input i only.
        dead_units: Elementwise with a derivative that vanishes on an interval (ReLU-like).
    """

    role: Role
    name: str
    smooth: bool
    lipschitz_derivative: bool
    per_sample: bool = True
    dead_units: bool = False

    @property
    def elementwise(self) -> bool:
        """An elementwise activation."""
        return self.role is Role.ACTIVATION


def _act(name: str, smooth: bool, lipschitz: bool, dead: bool = False) -> LayerKind:
    return LayerKind(Role.ACTIVATION, name, smooth, lipschitz, True, dead)


_KINDS: dict[type[nn.Module], LayerKind] = {
    # analytic activations
    nn.Tanh: _act("tanh", True, True), nn.Sigmoid: _act("sigmoid", True, True),
    nn.Softplus: _act("softplus", True, True), nn.GELU: _act("gelu", True, True),
    nn.SiLU: _act("silu", True, True), nn.Mish: _act("mish", True, True),
    nn.Identity: _act("linear", True, True), Square: _act("square", True, True),
    nn.LogSigmoid: _act("logsigmoid", True, True), nn.Tanhshrink: _act("tanhshrink", True, True),
    # C¹ with a Lipschitz derivative, not C² at 0
    nn.ELU: _act("elu", False, True), nn.CELU: _act("celu", False, True),
    nn.Softsign: _act("softsign", False, True),
    # kinks or jumps of the derivative
    nn.ReLU: _act("relu", False, False, True), nn.ReLU6: _act("relu6", False, False, True),
    nn.LeakyReLU: _act("leaky_relu", False, False), nn.PReLU: _act("prelu", False, False),
    nn.RReLU: _act("rrelu", False, False), nn.SELU: _act("selu", False, False),
    nn.Hardtanh: _act("hardtanh", False, False, True),
    nn.Hardsigmoid: _act("hardsigmoid", False, False, True),
    nn.Hardswish: _act("hardswish", False, False, True),
    nn.Hardshrink: _act("hardshrink", False, False, True),
    nn.Softshrink: _act("softshrink", False, False, True),
    nn.Threshold: _act("threshold", False, False, True),
    # layers with parameters or structure
    nn.Linear: LayerKind(Role.AFFINE, "linear", True, True),
    nn.Bilinear: LayerKind(Role.AFFINE, "bilinear", True, True),
    nn.modules.conv._ConvNd: LayerKind(Role.CONVOLUTION, "conv", True, True),
    nn.modules.pooling._AvgPoolNd: LayerKind(Role.POOLING, "avg_pool", True, True),
    nn.modules.pooling._AdaptiveAvgPoolNd: LayerKind(Role.POOLING, "avg_pool", True, True),
    nn.modules.pooling._MaxPoolNd: LayerKind(Role.POOLING, "max_pool", False, False),
    nn.modules.pooling._AdaptiveMaxPoolNd: LayerKind(Role.POOLING, "max_pool", False, False),
    nn.MultiheadAttention: LayerKind(Role.ATTENTION, "attention", True, True),
    nn.TransformerEncoderLayer: LayerKind(Role.ATTENTION, "transformer_layer", False, False),
    nn.LayerNorm: LayerKind(Role.NORMALIZATION, "layer_norm", True, True),
    nn.GroupNorm: LayerKind(Role.NORMALIZATION, "group_norm", True, True),
    nn.modules.batchnorm._BatchNorm: LayerKind(Role.NORMALIZATION, "batch_norm", True, True),
    nn.Embedding: LayerKind(Role.EMBEDDING, "embedding", True, True),
    nn.modules.dropout._DropoutNd: LayerKind(Role.DROPOUT, "dropout", True, True),
    nn.Flatten: LayerKind(Role.RESHAPE, "flatten", True, True),
    nn.Unflatten: LayerKind(Role.RESHAPE, "unflatten", True, True),
}

ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
    "gelu": nn.GELU, "linear": nn.Identity, "square": Square,
}
"""Activation names accepted by ``lossgeom.mlp`` and the sweeps, and the modules they build."""


def describe(module: nn.Module) -> LayerKind:
    """The LayerKind of ``module``, looked up by type (the most specific registered base wins).

    Instance attributes refine it: ELU and CELU have a Lipschitz derivative only with α = 1
    (ELU) — CELU is C¹ for every α; BatchNorm in training mode is not per-sample.
    """
    for cls in type(module).__mro__:
        kind = _KINDS.get(cls)
        if kind is not None:
            break
    else:
        return LayerKind(Role.UNKNOWN, type(module).__name__.lower(), False, False, False)
    if isinstance(module, nn.ELU) and module.alpha != 1.0:
        kind = replace(kind, lipschitz_derivative=False)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
        kind = replace(kind, per_sample=False)
    return kind


@dataclass(frozen=True)
class Stage:
    """One layer of an ``nn.Sequential``: a module with parameters and its parameter-free followers.

    Attributes:
        index: 1-based position among the stages.
        name: The parametrized module's name in the Sequential ("0", "2", …).
        module: The parametrized module.
        followers: The parameter-free modules after it (activations, pooling, reshapes).
        prefix: Parameter-free modules before the first stage (only on stage 1).
    """

    index: int
    name: str
    module: nn.Module
    followers: tuple[nn.Module, ...]
    prefix: tuple[nn.Module, ...] = ()

    @property
    def kinds(self) -> tuple[LayerKind, ...]:
        """LayerKind of the module and of each follower."""
        return (describe(self.module),) + tuple(describe(m) for m in self.followers)


def sequential_stages(model: nn.Module) -> list[Stage]:
    """Cut an ``nn.Sequential`` after each module with parameters (and its parameter-free followers).

    Args:
        model: The model.

    Returns:
        The stages in order; empty if the model has no parameters.

    Raises:
        TypeError: If ``model`` is not an ``nn.Sequential``.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"the model must be an nn.Sequential to be split into layers, got "
                        f"{type(model).__name__}.")
    stages: list[Stage] = []
    prefix: list[nn.Module] = []
    for name, module in model.named_children():
        if any(True for _ in module.parameters()):
            stages.append(Stage(len(stages) + 1, name, module, (), tuple(prefix) if not stages else ()))
        elif stages:
            last = stages[-1]
            stages[-1] = replace(last, followers=last.followers + (module,))
        else:
            prefix.append(module)
    return stages


@dataclass(frozen=True)
class StageTrace:
    """What one stage saw and produced in ``forward_stages``.

    Attributes:
        inputs: The stage's input (the previous stage's output).
        pre: The parametrized module's output z.
        post: The output after the followers, h = followers(z).
    """

    inputs: Tensor
    pre: Tensor
    post: Tensor


def forward_stages(stages: list[Stage], params: dict[str, Tensor], x: Tensor, *,
                   perturb: list[Tensor] | None = None) -> list[StageTrace]:
    """Run the stages on x with the parameters ``params`` (names as in the Sequential).

    Args:
        stages: From ``sequential_stages``.
        params: Parameter tensors keyed "<stage name>.<parameter name>" (``Problem.unflatten``).
        x: Inputs (n, …).
        perturb: Optional tensors added to each stage's pre-activation z (for sensitivities).

    Returns:
        One StageTrace per stage.
    """
    h, out = x, []
    for stage in stages:
        for m in stage.prefix:
            h = m(h)
        prefix = stage.name + "."
        own = {k[len(prefix):]: v for k, v in params.items()
               if k.startswith(prefix) and v is not None}
        z = functional_call(stage.module, own, (h,))
        if perturb is not None:
            z = z + perturb[stage.index - 1]
        post = z
        for m in stage.followers:
            post = m(post)
        out.append(StageTrace(h, z, post))
        h = post
    return out


def follower_derivative(stage: Stage, z: Tensor) -> Tensor:
    """∂h/∂z of elementwise followers at z (same shape), the derivative behind dead units.

    Raises:
        ValueError: If a follower is not an elementwise activation.
    """
    if not all(describe(m).elementwise for m in stage.followers):
        raise ValueError(f"stage {stage.name}: its followers "
                         f"{[type(m).__name__ for m in stage.followers]} are not all elementwise.")
    if not stage.followers:
        return torch.ones_like(z)
    return torch.func.jvp(nn.Sequential(*stage.followers), (z,), (torch.ones_like(z),))[1]
