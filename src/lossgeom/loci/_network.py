"""The layered structure of a fully connected problem: widths, bias convention, activation, slots.

Every function of ``lossgeom.loci`` reads the model as f = A_ℓ ∘ σ ∘ A_{ℓ−1} ∘ ⋯ ∘ σ ∘ A_1 with
affine layers A_l = (W_l, b_l), W_l of shape (n_l, n_{l−1}), and one hidden activation σ
(§3.3). The model must be an ``nn.Sequential`` alternating ``nn.Linear`` and activation modules,
as ``lossgeom.mlp`` builds it. Layer indices are 1-based: hidden layers are 1, …, ℓ−1 and the
output layer is ℓ.

Bias conventions (§3.3): "B" — a bias in every layer (the source's setting); "A" — no bias
at all. A model with biases in some layers only has convention None: the star and core loci are
not defined for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..layers import describe, sequential_stages
from ..problem import Problem
from ..results import Result
from ..tolerances import CRITICAL_RTOL, eps

__all__ = [
    "ActivationInfo", "Layer", "Layout", "hidden_activations", "network_layout",
    "optimal_constant",
]


@dataclass(frozen=True)
class Layer:
    """One affine layer A_l of the network and where its parameters sit in θ.

    Attributes:
        index: 1-based layer number l (the output layer is ℓ).
        n_in: n_{l−1}.
        n_out: n_l.
        weight: Slice of θ holding W_l (n_out, n_in), row-major.
        bias: Slice of θ holding b_l (n_out,), or None without a bias.
    """

    index: int
    n_in: int
    n_out: int
    weight: slice
    bias: slice | None


@dataclass(frozen=True)
class ActivationInfo(Result):
    """What the loci theorems assume of σ, measured on the model's own activation module.

    Attributes:
        name: "tanh", "relu", … (the module's class name, lower-case, when not a built-in).
        value_at_zero: σ(0).
        slope_at_zero: σ'(0) (autograd; for a kink, autograd's one-sided convention).
        smooth: False for activations with a kink or a jump in a derivative at 0.
    """

    name: str
    value_at_zero: float
    slope_at_zero: float
    smooth: bool

    @property
    def vanishes_at_zero(self) -> bool:
        """σ(0) = 0 (to the dtype's epsilon)."""
        return abs(self.value_at_zero) <= eps(torch.float64)

    @property
    def flat_at_zero(self) -> bool:
        """σ'(0) = 0 (to the dtype's epsilon)."""
        return abs(self.slope_at_zero) <= eps(torch.float64)


@dataclass(frozen=True, eq=False)
class Layout:
    """Widths, layers, convention and activation of an MLP problem.

    Attributes:
        widths: (n_0, n_1, …, n_ℓ).
        layers: The ℓ affine layers, in order.
        convention: "B" (every layer has a bias), "A" (none has), or None (mixed).
        activation: Properties of σ at 0.
        sigma: The activation module itself (applied elementwise).
        n_params: N.
    """

    widths: tuple[int, ...]
    layers: tuple[Layer, ...]
    convention: str | None
    activation: ActivationInfo
    sigma: nn.Module
    n_params: int

    @property
    def depth(self) -> int:
        """ℓ, the number of affine layers."""
        return len(self.layers)

    @property
    def n_hidden(self) -> int:
        """ℓ − 1, the number of hidden layers."""
        return len(self.layers) - 1

    @property
    def beta(self) -> int:
        """1 if the output layer has a bias, else 0."""
        return int(self.layers[-1].bias is not None)

    def weight(self, theta: Tensor, index: int) -> Tensor:
        """W_l (n_l, n_{l−1}) of layer l = ``index`` as a view of θ."""
        layer = self.layers[index - 1]
        return theta[layer.weight].view(layer.n_out, layer.n_in)

    def bias(self, theta: Tensor, index: int) -> Tensor | None:
        """b_l (n_l,) as a view of θ, or None."""
        layer = self.layers[index - 1]
        return None if layer.bias is None else theta[layer.bias]


def _activation_info(sigma: nn.Module) -> ActivationInfo:
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        value = sigma(z)
        (slope,) = torch.autograd.grad(value.sum(), z)
    kind = describe(sigma)
    return ActivationInfo(kind.name, float(value.detach()[0]), float(slope[0]), kind.smooth)


def network_layout(problem: Problem, where: str) -> Layout:
    """Read the layered structure of ``problem.model``.

    Args:
        problem: A Problem whose model is an ``nn.Sequential`` of ``nn.Linear`` layers with one
            activation module between consecutive layers (``lossgeom.mlp``).
        where: Call signature used in error messages.

    Returns:
        The Layout.

    Raises:
        TypeError: If the model is not such an ``nn.Sequential``.
        ValueError: If the activations differ between layers, or the inputs are not (n, n_0).
    """
    model = problem.model
    hint = "Build the model with lossgeom.mlp(widths, activation, bias)."
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"{where}: the loci functions need an nn.Sequential MLP (Linear, "
                        f"activation, Linear, …), got {type(model).__name__}. {hint}")
    stages = sequential_stages(model)
    shapes = [type(m).__name__ for m in model]
    if (not stages or stages[0].prefix or stages[-1].followers
            or not all(isinstance(st.module, nn.Linear) for st in stages)
            or not all(len(st.followers) == 1 and describe(st.followers[0]).elementwise
                       for st in stages[:-1])):
        raise TypeError(f"{where}: the model must alternate nn.Linear and activation modules "
                        f"and end with nn.Linear; got {shapes}. {hint}")
    linears = [(st.name, st.module) for st in stages]
    acts = [st.followers[0] for st in stages[:-1]]
    if len({repr(m) for m in acts}) > 1:
        raise ValueError(f"{where}: the hidden layers use different activations "
                         f"{sorted({repr(m) for m in acts})}; the loci theorems assume one σ. "
                         f"{hint}")
    offsets, pos = {}, 0
    for name, numel in zip(problem.param_names, problem.param_numels, strict=True):
        offsets[name] = slice(pos, pos + numel)
        pos += numel
    layers = []
    for index, (nm, lin) in enumerate(linears, start=1):
        w, b = offsets.get(f"{nm}.weight"), offsets.get(f"{nm}.bias")
        if w is None or (lin.bias is not None and b is None):
            raise TypeError(f"{where}: parameter {nm}.weight of the model is not among the "
                            f"Problem's parameters {list(problem.param_names)}. {hint}")
        layers.append(Layer(index, lin.in_features, lin.out_features, w, b))
    widths = (layers[0].n_in,) + tuple(layer.n_out for layer in layers)
    if problem.inputs.ndim != 2 or problem.inputs.shape[1] != widths[0]:
        raise ValueError(f"{where}: inputs have shape {tuple(problem.inputs.shape)}; expected "
                         f"(n, {widths[0]}) for input width n_0 = {widths[0]}.")
    with_bias = [layer.bias is not None for layer in layers]
    convention = "B" if all(with_bias) else ("A" if not any(with_bias) else None)
    sigma = acts[0] if acts else nn.Identity()
    return Layout(widths, tuple(layers), convention, _activation_info(sigma), sigma,
                  problem.n_params)


def hidden_activations(layout: Layout, problem: Problem, theta: Tensor) -> list[Tensor]:
    """Activations on the training inputs [A_0, A_1, …, A_{ℓ−1}], each (n, n_k); A_0 = X.

    Args:
        layout: From ``network_layout``.
        problem: The Problem.
        theta: Flat parameters (N,).

    Returns:
        ℓ tensors, sample-major (row i = sample i; §3.5 writes the transposes A_k (n_k, n)).

    Raises:
        ValueError: If the layer-by-layer forward pass does not reproduce the model's outputs.
    """
    a = problem.inputs.to(theta.dtype)
    out = [a]
    for layer in layout.layers:
        b = layout.bias(theta, layer.index)
        z = a @ layout.weight(theta, layer.index).T + (0.0 if b is None else b)
        a = z if layer.index == layout.depth else layout.sigma(z)
        if layer.index < layout.depth:
            out.append(a)
    x = problem.output_fn(theta)
    scale = max(1.0, float(x.abs().max()))
    if float((a - x).abs().max()) > math.sqrt(eps(theta.dtype)) * scale:  # half the digits
        raise ValueError("network_layout: the layer-by-layer forward pass does not reproduce the "
                         "model's outputs; the model is not a plain Linear/activation stack.")
    return out


def optimal_constant(problem: Problem, where: str) -> Tensor:
    """c* = argmin_c Σ_x ℓ_x(c), the best constant output, shape (k,).

    Closed forms: the mean target for mse, bce and ce_prob; log of the mean target (up to an
    additive constant) for softmax_ce. A custom loss is minimized by Newton's method on c.

    Raises:
        ValueError: If the minimum is at infinity (softmax_ce with a class that never occurs)
            or Newton's method does not reach ‖∇_c C‖ ≤ tol.
    """
    lf, y = problem.loss_fn, problem.targets
    mean = y.mean(dim=0)
    if lf.name in ("mse", "bce", "ce_prob"):
        return mean
    if lf.name == "softmax_ce":
        if bool((mean <= 0).any()):
            raise ValueError(f"{where}: with softmax_ce the best constant logits are log of the "
                             f"mean target {mean.tolist()}, which has zero entries (minimum at "
                             "infinity). Use targets in which every class occurs.")
        return torch.log(mean)
    n = y.shape[0]

    def c_loss(c: Tensor) -> Tensor:
        return lf(c.expand(n, -1), y)

    c = mean.clone()
    scale = max(1.0, float(torch.linalg.norm(torch.func.grad(c_loss)(torch.zeros_like(c)))))
    tol = CRITICAL_RTOL * scale
    for _ in range(100):
        g = torch.func.grad(c_loss)(c)
        if float(torch.linalg.norm(g)) <= tol:
            return c
        H = torch.func.jacfwd(torch.func.grad(c_loss))(c)
        c = c - torch.linalg.lstsq(H, g[:, None], driver="gelsd").solution[:, 0]
    raise ValueError(f"{where}: Newton's method did not find the best constant output of the "
                     f"custom loss (‖∇_c C‖ = {float(torch.linalg.norm(g)):.3g} > {tol:.3g}).")
