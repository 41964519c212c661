"""Input validators shared by every public function; one message format.

Messages read ``where: what is wrong (expected vs received). How to fix.``
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from .errors import DenseTooLargeError

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Default memory budget for one dense float64 matrix (2 GiB)."""


def format_bytes(n: float) -> str:
    """Human-readable byte count, e.g. ``'7.5 GiB'``."""
    if abs(n) < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


def check_option(where: str, name: str, value, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError listing them.

    Raises:
        ValueError: If ``value`` is not one of ``allowed``.
    """
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{where}: unknown {name} {value!r}. Expected one of: {', '.join(map(repr, allowed))}."
        )
    return value


def check_finite(where: str, name: str, x: torch.Tensor | np.ndarray, hint: str = "") -> None:
    """Raise ValueError naming the count and first index of non-finite entries of ``x``.

    Raises:
        ValueError: If ``x`` holds NaN or inf.
    """
    t = torch.as_tensor(x)
    if not (t.is_floating_point() or t.is_complex()):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        count = int(bad.sum())
        first = tuple(int(i) for i in torch.nonzero(bad)[0]) if t.ndim else ()
        first_s = f"({', '.join(map(str, first))})" if len(first) != 1 else f"({first[0]},)"
        raise ValueError(
            f"{where}: {name} contain{'s' if name[-1] != 's' else ''} {count} non-finite "
            f"value{'s' if count != 1 else ''} (first at index {first_s}). "
            + (hint or f"Repair {name} before calling.")
        )


def check_vector(where: str, name: str, v, n: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Validate a flat vector of length ``n``; return it as a tensor of ``dtype``.

    Raises:
        TypeError: If ``v`` is not a tensor or array.
        ValueError: If ``v`` is not of shape (n,) or not finite.
    """
    if not isinstance(v, torch.Tensor | np.ndarray):
        raise TypeError(
            f"{where}: {name} must be a torch.Tensor or numpy array of shape ({n},), "
            f"got {type(v).__name__}."
        )
    t = torch.as_tensor(v)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(
            f"{where}: {name} has shape {tuple(t.shape)}, expected ({n},) (one entry per parameter). "
            "Flatten with problem.theta-style ordering (named_parameters(), row-major)."
        )
    t = t.to(dtype=dtype, device=device)
    check_finite(where, name, t)
    return t


def check_rtol(where: str, rtol: float | None, name: str = "rtol") -> None:
    """Raise ValueError unless ``rtol`` is None or in the open interval (0, 1).

    Raises:
        ValueError: If ``rtol`` lies outside (0, 1).
    """
    if rtol is not None and not (0.0 < float(rtol) < 1.0):
        raise ValueError(f"{where}: {name} must lie in (0, 1), got {rtol!r}.")


def check_seconds(where: str, name: str, seconds) -> float:
    """``seconds`` as a float, when it is a finite positive number of seconds.

    Raises:
        ValueError: If ``seconds`` is not a finite number > 0.

    Example:
        >>> check_seconds("f()", "max_seconds", 2)
        2.0
    """
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0.0) or isinstance(seconds, bool):
        raise ValueError(f"{where}: {name} must be a positive number of seconds, got {seconds!r}.")
    return value


def check_atol(where: str, atol: float | None) -> None:
    """Raise ValueError if ``atol`` is negative.

    Raises:
        ValueError: If ``atol`` < 0.
    """
    if atol is not None and not float(atol) >= 0.0:
        raise ValueError(f"{where}: atol must be >= 0, got {atol!r}.")


def check_dense_budget(where: str, what: str, shape: tuple[int, ...], max_bytes: int, route: str) -> None:
    """Raise DenseTooLargeError if a float64 array of ``shape`` exceeds ``max_bytes``.

    Raises:
        DenseTooLargeError: If 8·prod(shape) bytes exceed ``max_bytes``.
    """
    need = 8 * int(np.prod(shape, dtype=np.float64))
    if need > max_bytes:
        dims = " x ".join(str(s) for s in shape)
        raise DenseTooLargeError(
            f"{where}: a dense {what} needs {format_bytes(need)} ({dims}, float64), above "
            f"max_bytes = {format_bytes(max_bytes)}. {route}"
        )


def generator(where: str, rng, *, none_seed: int | None = None) -> torch.Generator | None:
    """A torch.Generator from ``rng`` (a Generator, an int seed, or None).

    None gives torch's global RNG (returned as None), or a generator seeded with ``none_seed``
    when one is given (reproducible defaults).

    Raises:
        TypeError: For anything else.
    """
    if isinstance(rng, torch.Generator):
        return rng
    if rng is None and none_seed is None:
        return None
    if rng is None or (isinstance(rng, int | np.integer) and not isinstance(rng, bool)):
        return torch.Generator().manual_seed(int(none_seed if rng is None else rng))
    raise TypeError(f"{where}: rng must be a torch.Generator, an int seed or None, got "
                    f"{type(rng).__name__}.")
