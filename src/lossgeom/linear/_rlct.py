"""The exact learning coefficient of reduced-rank regression (Aoyagi & Watanabe 2005), §9.2.

The model x ↦ B A x, A ∈ R^{H×M}, B ∈ R^{N×H} (no bias), fitted by MSE to a true map of rank r on
Gaussian inputs of full rank. Its learning coefficient λ (the real log canonical threshold of
K(θ) = L(θ) − L(θ*)) has a closed form in four cases of (M, H, N, r):

* case 1 (N + r ≤ M + H, M + r ≤ N + H, H + r ≤ M + N):
  λ = [2(H + r)(M + N) − (M − N)² − (H + r)²] / 8, plus 1/8 when M + H + N + r is odd;
* case 2 (M + H < N + r): λ = (HM − Hr + Nr) / 2;
* case 3 (N + H < M + r): λ = (HN − Hr + Mr) / 2;
* case 4 (M + N < H + r): λ = MN / 2.

Since r ≤ min(M, N, H), at most one of cases 2–4 holds, and case 1 is the complement of all three.
The value is global: the smallest local coefficient over the set of minima. For a true map of rank 0
the loss is homogeneous in (A, B), so the local coefficient at θ = 0 equals it.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

__all__ = ["rlct"]


def _aoyagi_case(M: int, H: int, N: int, r: int) -> int:
    """Which of the four cases of §9.2 holds (1–4)."""
    if M + H < N + r:
        return 2
    if N + H < M + r:
        return 3
    if M + N < H + r:
        return 4
    return 1


def _check_int(where: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be an integer, got bool.")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: {name} must be an integer, got {type(value).__name__}.") from None
    if value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value}.")
    return value


def rlct(widths: Sequence[int], true_rank: int, *, bias: bool = False) -> float:
    """Exact learning coefficient λ of reduced-rank regression x ↦ B A x (§9.2).

    Args:
        widths: (M, H, N): input width M, hidden width H, output width N (so A is H × M and
            B is N × H; N is the output width here, not the parameter count).
        true_rank: Rank r of the true map, 0 ≤ r ≤ min(M, H, N).
        bias: Must be False: no closed form is implemented for biased layers.

    Returns:
        λ as a float; N_params/2 = H(M + N)/2 is the regular value it never exceeds, and
        r = H gives H(M + N − H)/2, half the dimension of the rank-H matrices.

    Raises:
        ValueError: For a network that is not two-layer (len(widths) != 3), bias=True, widths
            below 1, or a true rank that is negative or above min(M, H, N).
        TypeError: For non-integer widths or rank.

    Example:
        >>> rlct((5, 3, 5), 0)          # case 1, M + H + N + r odd: (60 − 0 − 9 + 1)/8
        6.5
        >>> rlct((3, 2, 4), 2) == 2 * (3 + 4 - 2) / 2      # r = H: the regular value
        True
    """
    where = f"rlct(widths={list(widths) if isinstance(widths, Sequence) else widths!r}, " \
            f"true_rank={true_rank!r})"
    if not isinstance(widths, Sequence) or isinstance(widths, str):
        raise TypeError(f"{where}: widths must be a sequence (M, H, N) of integers, got "
                        f"{type(widths).__name__}.")
    if len(widths) != 3:
        raise ValueError(f"{where}: no closed form of the learning coefficient is implemented "
                         "beyond one hidden linear layer (expected widths (M, H, N), got "
                         f"{len(widths)} widths). Estimate it with lossgeom.llc.estimate_llc.")
    if bias:
        raise ValueError(f"{where}: no closed form of the learning coefficient is implemented for "
                         "biased layers (expected bias=False, got True). Estimate it with "
                         "lossgeom.llc.estimate_llc.")
    M, H, N = (_check_int(where, name, w, 1) for name, w in zip("MHN", widths, strict=True))
    r = _check_int(where, "true_rank", true_rank, 0)
    if r > H:
        raise ValueError(f"{where}: the true rank exceeds the hidden width (expected "
                         f"0 <= true_rank <= H = {H}, got {r}): the model cannot realise the true "
                         "map, and no closed form is implemented for that unrealisable case. "
                         "Widen the hidden layer or lower the rank.")
    if r > min(M, N):
        raise ValueError(f"{where}: an N × M = {N} × {M} map has rank at most {min(M, N)} (got "
                         f"true_rank = {r}). Lower the rank.")
    case = _aoyagi_case(M, H, N, r)
    if case == 2:
        return (H * M - H * r + N * r) / 2
    if case == 3:
        return (H * N - H * r + M * r) / 2
    if case == 4:
        return M * N / 2
    s = H + r
    value = (2 * s * (M + N) - (M - N) ** 2 - s ** 2) / 8
    if (M + H + N + r) % 2:
        value += 1 / 8
    return value
