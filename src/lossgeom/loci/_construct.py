"""Points of the star locus S_i, the cores C_{i,j} and the dead-pair family; locus dimensions.

Definitions (§3.3, corrected from the source text), for hidden layers i < j in 1, …, ℓ−1:

* (B) biases everywhere: S_i = {W_i = 0, b_i = 0; b_m = 0 (i < m ≤ ℓ−1); W_ℓ = 0, b_ℓ = c*}.
* (A) no biases: S_i = {W_i = 0, W_ℓ = 0}.
* C_{i,j} = S_i ∩ S_j; more generally S_{i₁…i_r} = S_{i₁} ∩ ⋯ ∩ S_{i_r} (the r-cores).
* Dead pair (not Cooper's star locus): hidden layers j, j+1 with W = 0 (and b = 0 in (B)), the
  output layer live and the constant output equal to c*.

Each locus is an affine coordinate subspace: a set of coordinates of θ pinned to fixed values
(zero, or c* for b_ℓ). Its dimension is the number of free coordinates, and the Euclidean distance
from θ to it is the norm of the pinned coordinates' deviation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import generator
from ..problem import Problem
from ._network import Layout, network_layout, optimal_constant

__all__ = [
    "core_point", "dead_pair_point", "distance_to_locus", "locus_constraints", "locus_dimension",
    "random_parameters", "star_point",
]


def _require_depth(where: str, n_hidden: int, minimum: int, what: str) -> None:
    if n_hidden < minimum:
        raise ValueError(
            f"{where}: the network has {n_hidden} hidden layer{'s' if n_hidden != 1 else ''}; "
            f"{what} needs at least {minimum} (depth ℓ ≥ {minimum + 1} affine layers). Use a "
            "deeper network.")


def _hidden_indices(where: str, n_hidden: int, indices, *, minimum: int, what: str) -> list[int]:
    """Validate 1-based hidden-layer indices: ints in [1, ℓ−1], distinct, sorted on return.

    Raises:
        TypeError: If ``indices`` is not an int or a sequence of ints.
        ValueError: If the net has fewer than ``minimum`` hidden layers, or an index is out of
            range or repeated.
    """
    if isinstance(indices, int) and not isinstance(indices, bool):
        indices = [indices]
    if not isinstance(indices, Sequence) or isinstance(indices, str) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise TypeError(f"{where}: hidden layers must be an int or a sequence of ints, got "
                        f"{indices!r}.")
    indices = list(indices)
    _require_depth(where, n_hidden, minimum, what)
    if not indices:
        raise ValueError(f"{where}: give at least one hidden layer index.")
    bad = [i for i in indices if not 1 <= i <= n_hidden]
    if bad:
        raise ValueError(f"{where}: hidden layer {bad[0]} is outside the network (expected 1 ≤ i ≤ "
                         f"{n_hidden}, the 1-based hidden layers; the output layer {n_hidden + 1} "
                         "is not a hidden layer).")
    if len(set(indices)) != len(indices):
        raise ValueError(f"{where}: hidden layers must be distinct, got {indices}. A core "
                         "C_{i,j} = S_i ∩ S_j needs two different hidden layers i ≠ j.")
    return sorted(indices)


def _require_convention(where: str, layout: Layout) -> str:
    if layout.convention is None:
        raise ValueError(f"{where}: the star and core loci are defined for biases in every layer "
                         "(convention B) or in none (convention A); this model has biases in some "
                         "layers only. Build it with lossgeom.mlp(widths, bias=True) or bias=False.")
    return layout.convention


def locus_constraints(layout: Layout, hidden_layers: Sequence[int], c_star: Tensor | None
                      ) -> tuple[Tensor, Tensor]:
    """Pinned coordinates of S_{i₁…i_r}: a mask (N,) and the pinned values (N,).

    Args:
        layout: Network layout with convention "A" or "B".
        hidden_layers: Sorted, validated 1-based hidden layers (one for S_i, two for C_{i,j}).
        c_star: Optimal constant output (k,), used for b_ℓ in convention B.

    Returns:
        (mask, values): mask[p] is True where θ_p is pinned; values[p] is its pinned value.
    """
    N = layout.n_params
    mask = torch.zeros(N, dtype=torch.bool)
    values = torch.zeros(N, dtype=torch.float64)
    first = hidden_layers[0]
    for i in hidden_layers:
        mask[layout.layers[i - 1].weight] = True
    out = layout.layers[-1]
    mask[out.weight] = True
    if layout.convention == "B":
        for m in range(first, layout.depth):
            mask[layout.layers[m - 1].bias] = True
        mask[out.bias] = True
        values[out.bias] = c_star.detach().cpu().to(torch.float64)
    return mask, values


def locus_dimension(widths: Sequence[int], hidden_layers: int | Sequence[int],
                    bias: bool = True) -> int:
    """Dimension of S_i (one index) or C_{i,j} = S_i ∩ S_j (two indices, more for r-cores).

    §3.3 [D]: (B) dim S_i = N − n_i(n_{i−1}+1) − Σ_{i<m≤ℓ−1} n_m − n_ℓ(n_{ℓ−1}+1);
    (A) dim S_i = N − n_i n_{i−1} − n_ℓ n_{ℓ−1}; each further zeroed hidden layer j > i removes
    n_j n_{j−1}: dim C_{i,j} = dim S_i − n_j n_{j−1}.

    Args:
        widths: [n_0, n_1, …, n_ℓ], at least three positive ints (one hidden layer).
        hidden_layers: A 1-based hidden layer i, or distinct layers (i, j, …).
        bias: True for convention (B) (biases in every layer), False for (A) (none).

    Returns:
        The dimension of the affine (B) or linear (A) subspace.

    Raises:
        ValueError: For invalid widths, or layers outside 1 … ℓ−1 or repeated.
        TypeError: For a non-bool ``bias`` or non-int layers.

    Example:
        >>> locus_dimension([3, 4, 5, 4, 1], 2), locus_dimension([3, 4, 5, 4, 1], (1, 2))
        (36, 20)
        >>> locus_dimension([3, 4, 5, 3, 2], 2, bias=False)   # §3.4, convention (A)
        27
    """
    where = f"locus_dimension({list(widths)!r}, {hidden_layers!r}, bias={bias!r})"
    if not isinstance(bias, bool):
        raise TypeError(f"{where}: bias must be True (convention B) or False (convention A).")
    widths = list(widths)
    if len(widths) < 3 or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0
                              for w in widths):
        raise ValueError(f"{where}: widths must be [n_0, n_1, ..., n_ℓ] with at least one hidden "
                         f"layer, all positive ints; got {widths!r}.")
    depth = len(widths) - 1
    layers = _hidden_indices(where, depth - 1, hidden_layers, minimum=1, what="a star locus")
    beta = int(bias)
    N = sum(widths[m] * (widths[m - 1] + beta) for m in range(1, depth + 1))
    i = layers[0]
    pinned = widths[i] * (widths[i - 1] + beta) + widths[depth] * (widths[depth - 1] + beta)
    pinned += beta * sum(widths[m] for m in range(i + 1, depth))
    pinned += sum(widths[j] * widths[j - 1] for j in layers[1:])
    return N - pinned


def random_parameters(layout: Layout, gen: torch.Generator | None,
                      dtype: torch.dtype = torch.float64) -> Tensor:
    """Gaussian θ: W_l entries N(0, 1/n_{l−1}) (variance-preserving), biases N(0, 1)."""
    theta = torch.empty(layout.n_params, dtype=dtype)
    for layer in layout.layers:
        w = torch.randn(layer.n_out * layer.n_in, generator=gen, dtype=dtype)
        theta[layer.weight] = w / layer.n_in ** 0.5
        if layer.bias is not None:
            theta[layer.bias] = torch.randn(layer.n_out, generator=gen, dtype=dtype)
    return theta


def _point(where: str, problem: Problem, hidden: int | Sequence[int], minimum: int, what: str,
           rng, base) -> Tensor:
    layout = network_layout(problem, where)
    conv = _require_convention(where, layout)
    layers = _hidden_indices(where, layout.n_hidden, hidden, minimum=minimum, what=what)
    if base is None:
        theta = random_parameters(layout, generator(where, rng), problem.dtype)
    else:
        theta = problem.check_theta(where, base, "base").detach().cpu().clone()
    c_star = optimal_constant(problem, where) if conv == "B" else None
    mask, values = locus_constraints(layout, layers, c_star)
    theta[mask] = values[mask].to(theta.dtype)           # assembled on the CPU
    return theta.to(problem.device)


def star_point(problem: Problem, i: int, *, rng: torch.Generator | int | None = None,
               base: Tensor | None = None) -> Tensor:
    """A point of the star locus S_i (§3.3), hidden layer i (1-based).

    (B): W_i = 0, b_i = 0, b_m = 0 for i < m ≤ ℓ−1, W_ℓ = 0, b_ℓ = c* (the best constant output,
    the mean label for mse); (A): W_i = 0, W_ℓ = 0. Every other coordinate is drawn at random
    (W_l entries N(0, 1/n_{l−1}), biases N(0, 1)), or copied from ``base``: the result is then
    the orthogonal projection of ``base`` onto S_i.

    Args:
        problem: An MLP problem (``lossgeom.mlp``) with biases in every layer or in none.
        i: Hidden layer, 1 ≤ i ≤ ℓ−1.
        rng: torch.Generator, int seed, or None (torch's global RNG).
        base: Optional θ (N,) whose free coordinates are kept.

    Returns:
        θ ∈ S_i, shape (N,).

    Raises:
        ValueError: For i outside the hidden layers, a model with biases in some layers only,
            or a loss whose best constant output is at infinity.
        TypeError: For a model that is not an nn.Sequential MLP, or an invalid rng.

    Example:
        >>> import torch, lossgeom as lg
        >>> _ = torch.manual_seed(0)
        >>> X, Y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
        >>> p = lg.Problem(lg.mlp([3, 4, 5, 4, 1]), X, Y)
        >>> theta = star_point(p, 2, rng=0)
        >>> float(p.grad(theta).norm()) < 1e-12     # Theorem 3.1: S is critical
        True
    """
    return _point(f"star_point(problem, {i!r})", problem, i, 1, "a star locus S_i", rng, base)


def core_point(problem: Problem, i: int, j: int, *, rng: torch.Generator | int | None = None,
               base: Tensor | None = None) -> Tensor:
    """A point of the core C_{i,j} = S_i ∩ S_j (§3.3), hidden layers i ≠ j (1-based).

    Layers min(i, j) and max(i, j) zeroed, the other conditions of S_{min(i,j)}; free coordinates
    random or copied from ``base`` (see ``star_point``).

    Args:
        problem: An MLP problem with at least two hidden layers and biases in all or no layers.
        i: A hidden layer.
        j: Another hidden layer, j ≠ i.
        rng: torch.Generator, int seed, or None (torch's global RNG).
        base: Optional θ (N,) whose free coordinates are kept.

    Returns:
        θ ∈ C_{i,j}, shape (N,).

    Raises:
        ValueError: For i == j, layers outside the hidden layers, a net with fewer than two hidden
            layers, or a model with biases in some layers only.
        TypeError: For a model that is not an nn.Sequential MLP, or an invalid rng.
    """
    return _point(f"core_point(problem, {i!r}, {j!r})", problem, [i, j], 2, "a core C_{i,j}",
                  rng, base)


def dead_pair_point(problem: Problem, j: int, *, rng: torch.Generator | int | None = None,
                    base: Tensor | None = None) -> Tensor:
    """A dead-pair critical point: hidden layers j and j+1 zeroed, the output layer live.

    Not Cooper's star locus (§3.3, "Not part of S"): W_j = W_{j+1} = 0 (and b_j = b_{j+1} = 0
    in (B)); every later activation is then constant over the data, and in (B) the output bias is
    set so that the constant output equals c*, which makes θ critical with W_ℓ ≠ 0.

    Args:
        problem: An MLP problem with at least two hidden layers and biases in all or no layers.
        j: First dead hidden layer, 1 ≤ j ≤ ℓ−2.
        rng: torch.Generator, int seed, or None (torch's global RNG).
        base: Optional θ (N,) whose free coordinates are kept.

    Returns:
        θ, shape (N,).

    Raises:
        ValueError: For j outside 1 … ℓ−2, a net with fewer than two hidden layers, or a model
            with biases in some layers only.
        TypeError: For a model that is not an nn.Sequential MLP, or an invalid rng.
    """
    where = f"dead_pair_point(problem, {j!r})"
    layout = network_layout(problem, where)
    conv = _require_convention(where, layout)
    _require_depth(where, layout.n_hidden, 2, "a dead pair of hidden layers")
    if not isinstance(j, int) or isinstance(j, bool) or not 1 <= j <= layout.n_hidden - 1:
        raise ValueError(f"{where}: the first dead layer must satisfy 1 ≤ j ≤ ℓ−2 = "
                         f"{layout.n_hidden - 1} (layers j and j+1 are both hidden), got {j!r}.")
    if base is None:
        theta = random_parameters(layout, generator(where, rng), problem.dtype)
    else:
        theta = problem.check_theta(where, base, "base").detach().cpu().clone()
    for m in (j, j + 1):
        theta[layout.layers[m - 1].weight] = 0.0
        if conv == "B":
            theta[layout.layers[m - 1].bias] = 0.0
    if conv == "B":
        out = layout.layers[-1]
        theta[out.bias] = 0.0
        constant = problem.output_fn(theta.to(problem.device)).detach()[0].cpu()
        theta[out.bias] = optimal_constant(problem, where).cpu().to(theta.dtype) - constant
    return theta.to(problem.device)


def distance_to_locus(problem: Problem, theta: Tensor, hidden_layers: int | Sequence[int]
                      ) -> float:
    """Euclidean distance from θ to S_{i₁…i_r} (S_i for one layer, C_{i,j} for two).

    The locus is an affine coordinate subspace, so the distance is the norm of the deviation of
    the pinned coordinates from their pinned values.

    Args:
        problem: An MLP problem with biases in all or no layers.
        theta: Flat parameters (N,).
        hidden_layers: One or more distinct 1-based hidden layers.

    Returns:
        The distance (0 exactly on the locus).

    Raises:
        ValueError: For invalid layers or θ, or a model with biases in some layers only.
    """
    where = f"distance_to_locus(problem, theta, {hidden_layers!r})"
    layout = network_layout(problem, where)
    conv = _require_convention(where, layout)
    theta = problem.check_theta(where, theta)
    layers = _hidden_indices(where, layout.n_hidden, hidden_layers, minimum=1, what="a locus")
    c_star = optimal_constant(problem, where) if conv == "B" else None
    mask, values = locus_constraints(layout, layers, c_star)
    return float(torch.linalg.norm((theta.cpu().to(torch.float64) - values)[mask]))
