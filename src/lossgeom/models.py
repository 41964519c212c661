"""Multilayer perceptrons for tests, demos and sweeps."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_option
from .layers import ACTIVATION_MODULES, Square

ACTIVATIONS = tuple(ACTIVATION_MODULES)
"""Hidden activations ``mlp`` accepts (the registry's names, ``lossgeom.layers``)."""

__all__ = ["ACTIVATIONS", "Square", "mlp"]


def mlp(
    widths: list[int] | tuple[int, ...],
    activation: str = "tanh",
    bias: bool | str = True,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """Fully connected network d → h₁ → … → k with a linear output layer.

    Args:
        widths: [d, h₁, …, k], at least two positive integers.
        activation: Hidden activation, one of ``ACTIVATIONS``.
        bias: True (every layer), False (none) or "output" (output layer only).
        generator: RNG for PyTorch's default ``nn.Linear`` initialisation (default: global RNG).
        dtype: Parameter dtype.

    Returns:
        An ``nn.Sequential`` of Linear and activation modules; parameters are named
        ``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ….

    Raises:
        ValueError: For fewer than two widths, non-positive widths, or unknown options.

    Example:
        >>> import lossgeom as lg
        >>> sum(p.numel() for p in lg.mlp([3, 6, 1], bias=False).parameters())
        24
    """
    where = f"mlp({list(widths)!r})"
    widths = list(widths)
    if len(widths) < 2 or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in widths):
        raise ValueError(f"{where}: widths must be a list [d, h1, ..., k] of at least two positive "
                         f"integers, got {widths!r}.")
    check_option(where, "activation", activation, ACTIVATIONS)
    if bias not in (True, False, "output"):
        raise ValueError(f"{where}: bias must be True, False or 'output', got {bias!r}.")
    layers: list[nn.Module] = []
    last = len(widths) - 2
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        use_bias = bias is True or (bias == "output" and i == last)
        lin = nn.Linear(a, b, bias=use_bias, dtype=dtype)
        if generator is not None:
            bound = 1.0 / a**0.5  # nn.Linear's default: U(−1/√fan_in, 1/√fan_in) for W and b
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=generator)
                if use_bias:
                    lin.bias.uniform_(-bound, bound, generator=generator)
        layers.append(lin)
        if i < last:
            layers.append(ACTIVATION_MODULES[activation]())
    return nn.Sequential(*layers)
