"""The product map μ of a deep linear network, its differential dμ and the functional space M_r.

§4.1, §4.3. A network with widths d = (d_0, …, d_h) has weights W_i of shape (d_i, d_{i-1})
and computes μ(θ) = W̄ = W_h ⋯ W_1, shape (d_h, d_0); θ = (vec W_1, …, vec W_h), row-major.

NOTE [staircase rank]
    dμ(θ)(δW) = Σ_i W_{>i} δW_i W_{<i} with W_{>i} = W_h ⋯ W_{i+1} (W_{>h} = I) and
    W_{<i} = W_{i-1} ⋯ W_1 (W_{<1} = I). Its image is Σ_i Col(W_{>i}) ⊗ Row(W_{<i}); the
    column spaces grow and the row spaces shrink with i, so the sum is a staircase and
    rank dμ = Σ_i (u_i − u_{i-1}) v_i with u_i = rank W_{>i}, u_0 := 0, v_i = rank W_{<i}.
    Only h + h small ranks are needed, never the (d_h·d_0, d_θ) Jacobian.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget, check_rtol
from ..linalg import CurvatureOperator, RankDecision, numerical_rank
from ..results import Result
from ._weights import as_weights, check_widths, widths_of

__all__ = [
    "DifferentialRank",
    "FunctionalSpace",
    "differential",
    "differential_rank",
    "differential_rank_details",
    "differential_rank_numerical",
    "functional_space",
    "is_filling",
    "partial_products",
    "product",
]


# ---------------------------------------------------------------------------------------------
# the product map and its differential
# ---------------------------------------------------------------------------------------------
def product(weights) -> torch.Tensor:
    """The end-to-end matrix μ(θ) = W̄ = W_h ⋯ W_1, shape (d_h, d_0), float64.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).

    Returns:
        W̄, shape (d_h, d_0), float64.

    Raises:
        TypeError: If ``weights`` is not a list of real matrices.
        ValueError: If the shapes do not chain or an entry is not finite.

    Example:
        >>> import torch
        >>> from lossgeom.linear import product
        >>> W1 = torch.tensor([[1., 0.], [0., 1.], [0., 0.]])
        >>> W2 = torch.tensor([[0., 0., 1.], [0., 0., 2.]])
        >>> product([W1, W2])  # §4.3 filling example: W̄ = 0
        tensor([[0., 0.],
                [0., 0.]], dtype=torch.float64)
    """
    Ws = as_weights("product(weights)", weights)
    return _product(Ws)


def _product(Ws: Sequence[torch.Tensor]) -> torch.Tensor:
    out = Ws[0]
    for W in Ws[1:]:
        out = W @ out
    return out


def partial_products(weights) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The factors W_{>i} = W_h ⋯ W_{i+1} and W_{<i} = W_{i-1} ⋯ W_1 of dμ, i = 1..h.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).

    Returns:
        (after, before): ``after[i-1]`` = W_{>i}, shape (d_h, d_i), with W_{>h} = I;
        ``before[i-1]`` = W_{<i}, shape (d_{i-1}, d_0), with W_{<1} = I. Float64.

    Raises:
        TypeError: If ``weights`` is not a list of real matrices.
        ValueError: If the shapes do not chain or an entry is not finite.
    """
    return _partial_products(as_weights("partial_products(weights)", weights))


def _partial_products(Ws: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    before = [torch.eye(Ws[0].shape[1], dtype=torch.float64)]
    for W in Ws[:-1]:
        before.append(W @ before[-1])
    after = [torch.eye(Ws[-1].shape[0], dtype=torch.float64)]
    for W in reversed(Ws[1:]):
        after.append(after[-1] @ W)
    after.reverse()
    return after, before


def differential(weights) -> CurvatureOperator:
    """dμ(θ) as a matrix-free operator of shape (d_h·d_0, d_θ).

    dμ(θ)(δθ) = vec Σ_i W_{>i} δW_i W_{<i} (row-major vec), and the transpose maps
    vec G ↦ (vec W_{>i}ᵀ G W_{<i}ᵀ)_i. So ∇L(θ) = dμ(θ)ᵀ vec ∇ℓ(W̄). Each product costs
    O(h·d³) flops for widths ≤ d; nothing of size d_h·d_0·d_θ is formed.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).

    Returns:
        A ``CurvatureOperator`` named "dmu" with torch and scipy products (matvec, rmatvec,
        matmat, rmatmat).

    Raises:
        TypeError: If ``weights`` is not a list of real matrices.
        ValueError: If the shapes do not chain or an entry is not finite.

    Example:
        >>> import torch
        >>> from lossgeom.linear import differential
        >>> W1, W2 = torch.eye(3, 2), torch.tensor([[0., 0., 1.], [0., 0., 2.]])
        >>> D = differential([W1, W2])
        >>> D.shape, torch.linalg.matrix_rank(D.materialise()).item()  # §4.3: rank 4
        ((4, 12), 4)
    """
    return _differential(as_weights("differential(weights)", weights))


def _differential(Ws: Sequence[torch.Tensor]) -> CurvatureOperator:
    d = widths_of(Ws)
    after, before = _partial_products(Ws)
    sizes = [a * b for a, b in zip(d[1:], d[:-1], strict=True)]
    n_theta, n_out = sum(sizes), d[-1] * d[0]

    def matmat(V: torch.Tensor) -> torch.Tensor:
        b = V.shape[1]
        out = torch.zeros(b, d[-1], d[0], dtype=torch.float64, device=V.device)
        off = 0
        for i, size in enumerate(sizes):
            dW = V[off:off + size].T.reshape(b, d[i + 1], d[i])
            out += after[i] @ dW @ before[i]
            off += size
        return out.reshape(b, n_out).T

    def rmatmat(U: torch.Tensor) -> torch.Tensor:
        b = U.shape[1]
        G = U.T.reshape(b, d[-1], d[0])
        blocks = [(after[i].T @ G @ before[i].T).reshape(b, -1) for i in range(len(sizes))]
        return torch.cat(blocks, dim=1).T

    return CurvatureOperator(
        (n_out, n_theta),
        lambda v: matmat(v.reshape(-1, 1)).reshape(-1),
        lambda u: rmatmat(u.reshape(-1, 1)).reshape(-1),
        matmat=matmat, rmatmat=rmatmat, name="dmu",
    )


# ---------------------------------------------------------------------------------------------
# the functional space
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunctionalSpace(Result):
    """The functional space M_r = {W ∈ R^{d_h×d_0} : rank W ≤ r} of an architecture (§4.1).

    Attributes:
        widths: (d_0, …, d_h).
        r: min_i d_i, the largest rank μ can reach.
        dim: dim M_r = r(d_0 + d_h − r).
        filling: r = min(d_0, d_h): M_r is all of R^{d_h×d_0}, a vector space.
        n_params: d_θ = Σ d_i d_{i-1}.
        ambient_dim: d_h·d_0.
        generic_fibre_dim: d_θ − dim M_r, the dimension of μ⁻¹(W̄) at a generic θ.
    """

    widths: tuple[int, ...]
    r: int
    dim: int
    filling: bool
    n_params: int
    ambient_dim: int
    generic_fibre_dim: int


def functional_space(widths) -> FunctionalSpace:
    """The functional space M_r of widths (d_0, …, d_h): r, dim M_r, filling, d_θ.

    Args:
        widths: (d_0, …, d_h), positive integers, at least two.

    Returns:
        A FunctionalSpace.

    Raises:
        TypeError: If ``widths`` is not a sequence of integers.
        ValueError: If it has fewer than two entries or a non-positive one.

    Example:
        >>> from lossgeom.linear import functional_space
        >>> fs = functional_space((4, 2, 3, 4))  # §4.3: d_θ = 26, dim M_2 = 12
        >>> fs.n_params, fs.dim, fs.filling
        (26, 12, False)
    """
    d = check_widths("functional_space(widths)", widths)
    r = min(d)
    n_params = sum(a * b for a, b in zip(d[1:], d[:-1], strict=True))
    dim = r * (d[0] + d[-1] - r)
    return FunctionalSpace(d, r, dim, r == min(d[0], d[-1]), n_params, d[0] * d[-1],
                           n_params - dim)


def is_filling(widths) -> bool:
    """True when the architecture can express every linear map: min_i d_i = min(d_0, d_h).

    Args:
        widths: (d_0, …, d_h), positive integers, at least two.

    Returns:
        Whether M_r = R^{d_h×d_0} (filling) rather than a determinantal variety.

    Raises:
        TypeError: If ``widths`` is not a sequence of integers.
        ValueError: If it has fewer than two entries or a non-positive one.

    Example:
        >>> from lossgeom.linear import is_filling
        >>> is_filling((2, 3, 2)), is_filling((2, 1, 2))
        (True, False)
    """
    d = check_widths("is_filling(widths)", widths)
    return min(d) == min(d[0], d[-1])


# ---------------------------------------------------------------------------------------------
# rank of the differential
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DifferentialRank(Result):
    """rank dμ(θ) by the staircase formula (NOTE [staircase rank]), with its evidence.

    Attributes:
        rank: Σ_i (u_i − u_{i-1}) v_i.
        u: (u_1, …, u_h), u_i = rank W_{>i} (u_h = d_h).
        v: (v_1, …, v_h), v_i = rank W_{<i} (v_1 = d_0).
        u_decisions: RankDecision of each W_{>i} (tolerance and gap).
        v_decisions: RankDecision of each W_{<i}.
        decided: Every factor rank was decided (gap ≥ min_gap).
        dim_functional_space: dim M_r.
        maximal: rank = dim M_r.
    """

    rank: int
    u: tuple[int, ...]
    v: tuple[int, ...]
    u_decisions: tuple[RankDecision, ...]
    v_decisions: tuple[RankDecision, ...]
    decided: bool
    dim_functional_space: int
    maximal: bool


def _factor_singular_values(after: Sequence[torch.Tensor], before: Sequence[torch.Tensor]
                            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Singular values of every W_{>i} and W_{<i}; the identities W_{>h}, W_{<1} need no SVD.

    Returns:
        (σ(W_{>i}) for i = 1..h, σ(W_{<i}) for i = 1..h), each descending.
    """
    sa = [torch.linalg.svdvals(A) for A in after[:-1]]
    sa.append(torch.ones(after[-1].shape[0], dtype=torch.float64))
    sb = [torch.ones(before[0].shape[0], dtype=torch.float64)]
    sb += [torch.linalg.svdvals(B) for B in before[1:]]
    return sa, sb


def _staircase(Ws: Sequence[torch.Tensor], rtol: float | None, parts=None, svals=None
               ) -> DifferentialRank:
    d = widths_of(Ws)
    after, before = _partial_products(Ws) if parts is None else parts
    sa, sb = _factor_singular_values(after, before) if svals is None else svals
    # a product of factors can cancel to round-off: cut it at eps·max(d)·Π‖W_j‖₂ as well, the
    # size of the rounding errors of the product, so its noise is never counted as rank
    norms = [float(torch.linalg.matrix_norm(W.to(torch.float64), ord=2)) for W in Ws]
    unit = torch.finfo(torch.float64).eps * max(d)
    h = len(Ws)
    u_dec = tuple(numerical_rank(s, rtol, unit * math.prod(norms[i + 1:]) if i + 1 < h else None,
                                 shape=tuple(A.shape), dtype=torch.float64)
                  for i, (s, A) in enumerate(zip(sa, after, strict=True)))
    v_dec = tuple(numerical_rank(s, rtol, unit * math.prod(norms[:i]) if i > 0 else None,
                                 shape=tuple(B.shape), dtype=torch.float64)
                  for i, (s, B) in enumerate(zip(sb, before, strict=True)))
    u = tuple(x.rank for x in u_dec)
    v = tuple(x.rank for x in v_dec)
    rank = sum((u[i] - (u[i - 1] if i else 0)) * v[i] for i in range(len(Ws)))
    r = min(d)
    dim = r * (d[0] + d[-1] - r)
    decided = all(x.decided for x in u_dec + v_dec)
    return DifferentialRank(rank, u, v, u_dec, v_dec, decided, dim, rank == dim)


def differential_rank_details(weights, rtol: float | None = None) -> DifferentialRank:
    """Rank of dμ(θ) = Σ_i (u_i − u_{i-1}) v_i (§4.3) with the factor ranks behind it.

    u_i = rank W_{>i} and v_i = rank W_{<i} are numerical ranks (``numerical_rank``, default
    rtol = max(shape)·eps), each reported with its tolerance and gap.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).
        rtol: Relative tolerance for the factor ranks, in (0, 1).

    Returns:
        A DifferentialRank.

    Raises:
        TypeError: If ``weights`` is not a list of real matrices.
        ValueError: If the shapes do not chain, an entry is not finite, or rtol is out of range.

    Example:
        >>> import torch
        >>> from lossgeom.linear import differential_rank_details
        >>> W2 = torch.tensor([[0., 0., 1.], [0., 0., 2.]])  # §4.3 filling example
        >>> dr = differential_rank_details([torch.eye(3, 2), W2])
        >>> dr.u, dr.v, dr.rank  # 1·2 + (2 − 1)·2
        ((1, 2), (2, 2), 4)
    """
    where = "differential_rank_details(weights, rtol)"
    check_rtol(where, rtol)
    return _staircase(as_weights(where, weights), rtol)


def differential_rank(weights, rtol: float | None = None) -> int:
    """Rank of dμ(θ) by the closed form Σ_i (u_i − u_{i-1}) v_i of §4.3.

    See ``differential_rank_details`` for the factor ranks with tolerances and gaps, and
    ``differential_rank_numerical`` for the cross-check by the singular values of dμ.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).
        rtol: Relative tolerance for the factor ranks u_i, v_i, in (0, 1).

    Returns:
        The rank of dμ(θ): (d_θ,) → R^{d_h×d_0}.

    Raises:
        TypeError: If ``weights`` is not a list of real matrices.
        ValueError: If the shapes do not chain, an entry is not finite, or rtol is out of range.

    Example:
        >>> import torch
        >>> from lossgeom.linear import differential_rank
        >>> g = torch.Generator().manual_seed(0)
        >>> W1, W2 = torch.randn(2, 3, generator=g), torch.randn(3, 2, generator=g)
        >>> differential_rank([W1, W2])  # generic (3, 2, 3): dim M_2 = 2·(3 + 3 − 2) = 8
        8
    """
    where = "differential_rank(weights, rtol)"
    check_rtol(where, rtol)
    return _staircase(as_weights(where, weights), rtol).rank


def differential_rank_numerical(weights, rtol: float | None = None, *,
                                max_bytes: int = DEFAULT_MAX_BYTES) -> RankDecision:
    """Rank of dμ(θ) from the singular values of the materialised Jacobian (d_h·d_0, d_θ).

    The independent cross-check of the staircase formula (§4.8 step 3). Dense, so only
    for small networks.

    Args:
        weights: [W_1, …, W_h], W_i of shape (d_i, d_{i-1}).
        rtol: Relative tolerance in (0, 1); default max(shape)·eps.
        max_bytes: Refuse above this many bytes for the dense Jacobian.

    Returns:
        A RankDecision (rank, tol, gap, …) of dμ(θ).

    Raises:
        TypeError: If ``weights`` is not a list of real matrices.
        ValueError: If the shapes do not chain, an entry is not finite, or rtol is out of range.
        DenseTooLargeError: If the Jacobian exceeds ``max_bytes``.

    Example:
        >>> import torch
        >>> from lossgeom.linear import differential_rank_numerical
        >>> W2 = torch.tensor([[0., 0., 1.], [0., 0., 2.]])
        >>> differential_rank_numerical([torch.eye(3, 2), W2]).rank
        4
    """
    where = "differential_rank_numerical(weights, rtol)"
    check_rtol(where, rtol)
    Ws = as_weights(where, weights)
    D = _differential(Ws)
    check_dense_budget(where, "Jacobian of μ", D.shape, max_bytes,
                       "Use differential_rank(weights), the closed form, instead.")
    return numerical_rank(D.materialise(max_bytes=max_bytes), rtol)
