"""Seeded data sources: Gaussian, the {−1, 1}³ cube of §6.3, scikit-learn's digits and iris, .npz.

Every loader returns float64 ``(inputs (n, d), targets (n, k))`` tensors; integer class labels
are one-hot encoded unless ``labels=True``.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch
from torch import Tensor

from ._checks import check_option

SOURCES = ("random", "cube", "digits", "iris")

__all__ = ["SOURCES", "cube_points", "cube_split", "load_data", "random_data"]


def random_data(n: int, d: int, k: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Standard Gaussian inputs (n, d) and targets (n, k), seeded."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, k, generator=g, dtype=torch.float64))


def cube_points() -> Tensor:
    """The 8 points of {−1, 1}³ in lexicographic order, shape (8, 3)."""
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=3)), dtype=torch.float64)


def cube_split(seed: int = 0, n_train: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """§6.3 protocol data: ``n_train`` distinct cube points with {0, 1} labels.

    Returns:
        (train_inputs (n_train, 3), train_targets (n_train, 1), heldout_inputs (8 − n_train, 3)).
    """
    rng = np.random.default_rng(seed)
    pts = cube_points()
    perm = torch.as_tensor(rng.permutation(8))
    labels = torch.as_tensor(rng.integers(0, 2, size=(n_train, 1)), dtype=torch.float64)
    return pts[perm[:n_train]], labels, pts[perm[n_train:]]


def _one_hot(labels: np.ndarray, k: int) -> Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels).long(), k).to(torch.float64)


def _sklearn(name: str, n: int, seed: int, labels: bool) -> tuple[Tensor, Tensor]:
    from sklearn import datasets as skd  # bundled with scikit-learn: no download

    bunch = skd.load_digits() if name == "digits" else skd.load_iris()
    X = np.asarray(bunch.data, dtype=np.float64)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    y = np.asarray(bunch.target)
    if n > len(X):
        raise ValueError(f"load_data({name!r}): n = {n} exceeds the {len(X)} samples available.")
    idx = np.random.default_rng(seed).choice(len(X), size=n, replace=False)
    k = int(y.max()) + 1
    t = torch.as_tensor(y[idx]) if labels else _one_hot(y[idx], k)
    return torch.as_tensor(X[idx]), t


def load_data(source: str, n: int = 4, *, d: int | None = None, k: int | None = None,
              seed: int = 0, labels: bool = False) -> tuple[Tensor, Tensor]:
    """Inputs and targets from a named source or a .npz file.

    Args:
        source: "random" (needs d, k), "cube" (§6.3 training split, d = 3, k = 1),
            "digits" (d = 64, k = 10), "iris" (d = 4, k = 3), or a path to a .npz file holding
            arrays "inputs" (n, d…) and "targets" (n, k) or (n,).
        n: Number of samples (ignored for .npz files).
        d: Input dimension for "random".
        k: Output dimension for "random".
        seed: Seed of the draw.
        labels: Return integer class labels (n,) instead of one-hot targets (digits, iris).

    Returns:
        (inputs, targets) as float64 tensors (labels as int64).

    Raises:
        ValueError: For an unknown source, a missing or malformed file, or n out of range.

    Example:
        >>> from lossgeom.datasets import load_data
        >>> X, Y = load_data("iris", 5)
        >>> tuple(X.shape), tuple(Y.shape)
        ((5, 4), (5, 3))
    """
    where = f"load_data({source!r})"
    if isinstance(source, str) and source.endswith(".npz"):
        if not os.path.exists(source):
            raise ValueError(f"{where}: no such file.")
        with np.load(source, allow_pickle=False) as f:
            missing = {"inputs", "targets"} - set(f.files)
            if missing:
                raise ValueError(f"{where}: the file lacks arrays {sorted(missing)}; it must hold "
                                 "'inputs' (n, d...) and 'targets' (n, k) or (n,).")
            X, Y = torch.as_tensor(f["inputs"]), torch.as_tensor(f["targets"])
        return X.to(torch.float64), (Y.to(torch.float64) if Y.is_floating_point() else Y)
    check_option(where, "source", source, SOURCES + ("FILE.npz",))
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}: n must be a positive integer, got {n!r}.")
    if source == "random":
        if d is None or k is None:
            raise ValueError(f"{where}: random data needs the input and output widths d and k.")
        return random_data(n, d, k, seed)
    if source == "cube":
        if n > 8:
            raise ValueError(f"{where}: the cube has 8 points, n = {n} requested.")
        X, Y, _ = cube_split(seed, n)
        return X, Y
    return _sklearn(source, n, seed, labels)
