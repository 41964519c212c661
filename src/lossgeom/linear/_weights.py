"""Weights of a deep linear network: validation, widths, and the flat parameter vector θ.

A network with widths d = (d_0, …, d_h) has weights W_i of shape (d_i, d_{i-1}). Parameters are
flattened as θ = (vec W_1, …, vec W_h), each W_i row-major: the order of ``lossgeom.mlp(widths,
activation="linear", bias=False)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_finite

__all__ = ["as_weights", "check_widths", "flatten_weights", "unflatten_weights", "widths_of"]


def check_widths(where: str, widths) -> tuple[int, ...]:
    """Validate a width list (d_0, …, d_h): at least two positive integers.

    Args:
        where: The call as the user wrote it, for messages.
        widths: Sequence of layer widths.

    Returns:
        The widths as a tuple of Python ints.

    Raises:
        TypeError: If ``widths`` is not a sequence of integers.
        ValueError: If it has fewer than two entries or a non-positive entry.
    """
    if isinstance(widths, str | bytes) or not isinstance(widths, Sequence | np.ndarray):
        raise TypeError(f"{where}: widths must be a sequence of integers (d_0, ..., d_h), "
                        f"got {type(widths).__name__}.")
    out = []
    for i, w in enumerate(widths):
        if isinstance(w, bool) or not isinstance(w, int | np.integer):
            raise TypeError(f"{where}: widths[{i}] = {w!r} is not an integer; widths must be "
                            "positive integers (d_0, ..., d_h).")
        out.append(int(w))
    if len(out) < 2:
        raise ValueError(f"{where}: widths {tuple(out)} has {len(out)} entr"
                         f"{'y' if len(out) == 1 else 'ies'}; a network needs at least an input "
                         "and an output width (d_0, d_1).")
    bad = [(i, w) for i, w in enumerate(out) if w <= 0]
    if bad:
        i, w = bad[0]
        raise ValueError(f"{where}: widths {tuple(out)} has a non-positive entry d_{i} = {w}; "
                         "every width must be >= 1.")
    return tuple(out)


def as_weights(where: str, weights) -> list[torch.Tensor]:
    """Validate weights [W_1, …, W_h] and return float64 copies.

    Args:
        where: The call as the user wrote it, for messages.
        weights: Sequence of matrices W_i, shape (d_i, d_{i-1}), torch tensors or numpy arrays.

    Returns:
        Detached float64 tensors, one per layer (the caller's tensors are not touched).

    Raises:
        TypeError: If ``weights`` is not a non-empty sequence of real matrices.
        ValueError: If a W_i is not 2-D, has a zero dimension, the shapes do not chain, or an
            entry is NaN or inf.
    """
    if isinstance(weights, torch.Tensor | np.ndarray) or not isinstance(weights, Sequence):
        raise TypeError(f"{where}: weights must be a list [W_1, ..., W_h] of matrices, got "
                        f"{type(weights).__name__}.")
    if len(weights) == 0:
        raise ValueError(f"{where}: weights is empty; pass [W_1, ..., W_h] with h >= 1.")
    out: list[torch.Tensor] = []
    for i, W in enumerate(weights, start=1):
        if not isinstance(W, torch.Tensor | np.ndarray):
            raise TypeError(f"{where}: W_{i} must be a torch.Tensor or numpy array, got "
                            f"{type(W).__name__}.")
        t = torch.as_tensor(W)
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{where}: W_{i} has dtype {t.dtype}; real floating weights expected.")
        if t.ndim != 2:
            raise ValueError(f"{where}: W_{i} has shape {tuple(t.shape)}; each W_i must be a "
                             "matrix of shape (d_i, d_{i-1}).")
        if 0 in t.shape:
            raise ValueError(f"{where}: W_{i} has shape {tuple(t.shape)} with a zero width; "
                             "every width must be >= 1.")
        t = t.detach().to(dtype=torch.float64, copy=True).cpu()
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            first = tuple(int(j) for j in torch.nonzero(bad)[0])
            raise ValueError(f"{where}: W_{i} contains {int(bad.sum())} non-finite value"
                             f"{'s' if int(bad.sum()) != 1 else ''} (first at index {first}). "
                             "Repair the weights before calling.")
        if out and t.shape[1] != out[-1].shape[0]:
            raise ValueError(
                f"{where}: W_{i} has shape {tuple(t.shape)} but W_{i - 1} has shape "
                f"{tuple(out[-1].shape)}; shapes must chain (W_i: (d_i, d_{{i-1}})).")
        out.append(t)
    return out


def widths_of(weights: Sequence[torch.Tensor]) -> tuple[int, ...]:
    """Widths of validated weights.

    Returns:
        (d_0, …, d_h).
    """
    return (int(weights[0].shape[1]),) + tuple(int(W.shape[0]) for W in weights)


def flatten_weights(weights) -> torch.Tensor:
    """θ = (vec W_1, …, vec W_h), each row-major, shape (d_θ,), float64.

    This is the parameter order of ``lossgeom.mlp(widths, activation="linear", bias=False)``.

    Args:
        weights: [W_1, …, W_h].

    Returns:
        The flat parameter vector, shape (Σ d_i d_{i-1},).

    Raises:
        TypeError: If ``weights`` is not a list of real matrices.
        ValueError: If the shapes do not chain or an entry is not finite.

    Example:
        >>> import torch
        >>> from lossgeom.linear import flatten_weights, unflatten_weights
        >>> theta = flatten_weights([torch.ones(3, 2), torch.ones(1, 3)])
        >>> theta.shape, [tuple(W.shape) for W in unflatten_weights(theta, (2, 3, 1))]
        (torch.Size([9]), [(3, 2), (1, 3)])
    """
    Ws = as_weights("flatten_weights(weights)", weights)
    return torch.cat([W.reshape(-1) for W in Ws])


def unflatten_weights(theta, widths) -> list[torch.Tensor]:
    """Split θ (d_θ,) into [W_1, …, W_h] with W_i of shape (d_i, d_{i-1}), float64.

    Args:
        theta: Flat parameters, shape (Σ d_i d_{i-1},).
        widths: (d_0, …, d_h).

    Returns:
        The weight matrices (copies).

    Raises:
        TypeError: If ``theta`` is not a tensor or array, or ``widths`` not integers.
        ValueError: If θ is not 1-D of the right length, or not finite.
    """
    where = "unflatten_weights(theta, widths)"
    d = check_widths(where, widths)
    if not isinstance(theta, torch.Tensor | np.ndarray):
        raise TypeError(f"{where}: theta must be a torch.Tensor or numpy array, got "
                        f"{type(theta).__name__}.")
    t = torch.as_tensor(theta).detach().to(torch.float64, copy=True).cpu()
    n = sum(a * b for a, b in zip(d[1:], d[:-1], strict=True))
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{where}: theta has shape {tuple(t.shape)}, expected ({n},) = "
                         f"Σ d_i d_(i-1) for widths {d}.")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: theta contains non-finite values.")
    out, off = [], 0
    for a, b in zip(d[1:], d[:-1], strict=True):
        out.append(t[off:off + a * b].reshape(a, b).clone())
        off += a * b
    return out


def _matrix(where: str, name: str, A) -> Tensor:
    if not isinstance(A, Tensor | np.ndarray):
        raise TypeError(f"{where}: {name} must be a torch.Tensor or numpy array, got "
                        f"{type(A).__name__}.")
    t = torch.as_tensor(A).detach().to(torch.float64, copy=True).cpu()
    if t.ndim != 2 or 0 in t.shape:
        raise ValueError(f"{where}: {name} has shape {tuple(t.shape)}; a non-empty matrix is "
                         "expected.")
    check_finite(where, name, t)
    return t
