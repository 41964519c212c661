"""The product map μ of a deep linear network, its differential dμ and the functional space M_r.

Spec §4.1, §4.3, §4.8. A network with widths d = (d_0, …, d_h) has weights W_i of shape
(d_i, d_{i-1}) and computes μ(θ) = W̄ = W_h ⋯ W_1, shape (d_h, d_0). Parameters are flattened
as θ = (vec W_1, …, vec W_h), each W_i row-major: the order of ``lossgeom.mlp(widths,
activation="linear", bias=False)``.

NOTE [staircase rank]
    dμ(θ)(δW) = Σ_i W_{>i} δW_i W_{<i} with W_{>i} = W_h ⋯ W_{i+1} (W_{>h} = I) and
    W_{<i} = W_{i-1} ⋯ W_1 (W_{<1} = I). Its image is Σ_i Col(W_{>i}) ⊗ Row(W_{<i}); the
    column spaces grow and the row spaces shrink with i, so the sum is a staircase and
    rank dμ = Σ_i (u_i − u_{i-1}) v_i with u_i = rank W_{>i}, u_0 := 0, v_i = rank W_{<i}.
    Only h + h small ranks are needed, never the (d_h·d_0, d_θ) Jacobian.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget, check_rtol
from ..linalg import CurvatureOperator, RankDecision, numerical_rank

__all__ = [
    "DifferentialRank",
    "FunctionalSpace",
    "TangentSpace",
    "as_weights",
    "differential",
    "differential_rank",
    "differential_rank_details",
    "differential_rank_numerical",
    "flatten_weights",
    "functional_space",
    "is_filling",
    "partial_products",
    "product",
    "tangent_space",
    "unflatten_weights",
]


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
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
    """Widths (d_0, …, d_h) of validated weights."""
    return (int(weights[0].shape[1]),) + tuple(int(W.shape[0]) for W in weights)


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
        >>> product([W1, W2])  # spec §4.3 filling example: W̄ = 0
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
        >>> D.shape, torch.linalg.matrix_rank(D.materialise()).item()  # spec §4.3: rank 4
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
class FunctionalSpace:
    """The functional space M_r = {W ∈ R^{d_h×d_0} : rank W ≤ r} of an architecture (spec §4.1).

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

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return {"widths": list(self.widths), "r": self.r, "dim": self.dim,
                "filling": self.filling, "n_params": self.n_params,
                "ambient_dim": self.ambient_dim, "generic_fibre_dim": self.generic_fibre_dim}


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
        >>> fs = functional_space((4, 2, 3, 4))  # spec §4.3: d_θ = 26, dim M_2 = 12
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
class DifferentialRank:
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

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return {"rank": self.rank, "u": list(self.u), "v": list(self.v),
                "u_decisions": [x.to_dict() for x in self.u_decisions],
                "v_decisions": [x.to_dict() for x in self.v_decisions],
                "decided": self.decided, "dim_functional_space": self.dim_functional_space,
                "maximal": self.maximal}


def _staircase(Ws: Sequence[torch.Tensor], rtol: float | None) -> DifferentialRank:
    d = widths_of(Ws)
    after, before = _partial_products(Ws)
    u_dec = tuple(numerical_rank(A, rtol) for A in after)
    v_dec = tuple(numerical_rank(B, rtol) for B in before)
    u = tuple(x.rank for x in u_dec)
    v = tuple(x.rank for x in v_dec)
    rank = sum((u[i] - (u[i - 1] if i else 0)) * v[i] for i in range(len(Ws)))
    r = min(d)
    dim = r * (d[0] + d[-1] - r)
    decided = all(x.decided for x in u_dec + v_dec)
    return DifferentialRank(rank, u, v, u_dec, v_dec, decided, dim, rank == dim)


def differential_rank_details(weights, rtol: float | None = None) -> DifferentialRank:
    """rank dμ(θ) = Σ_i (u_i − u_{i-1}) v_i (spec §4.3) with the factor ranks behind it.

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
        >>> dr = differential_rank_details([torch.eye(3, 2), torch.tensor([[0., 0., 1.], [0., 0., 2.]])])
        >>> dr.u, dr.v, dr.rank  # 1·2 + (2 − 1)·2
        ((1, 2), (2, 2), 4)
    """
    where = "differential_rank_details(weights, rtol)"
    check_rtol(where, rtol)
    return _staircase(as_weights(where, weights), rtol)


def differential_rank(weights, rtol: float | None = None) -> int:
    """rank dμ(θ) by the closed form Σ_i (u_i − u_{i-1}) v_i of spec §4.3.

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
    """rank dμ(θ) from the singular values of the materialised Jacobian (d_h·d_0, d_θ).

    The independent cross-check of the staircase formula (spec §4.8 step 3). Dense, so only
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
        >>> differential_rank_numerical([torch.eye(3, 2), torch.tensor([[0., 0., 1.], [0., 0., 2.]])]).rank
        4
    """
    where = "differential_rank_numerical(weights, rtol)"
    check_rtol(where, rtol)
    Ws = as_weights(where, weights)
    D = _differential(Ws)
    check_dense_budget(where, "Jacobian of μ", D.shape, max_bytes,
                       "Use differential_rank(weights), the closed form, instead.")
    return numerical_rank(D.materialise(max_bytes=max_bytes), rtol)


# ---------------------------------------------------------------------------------------------
# tangent and normal spaces of the rank stratum
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TangentSpace:
    """Tangent and normal spaces at W̄ of the stratum of matrices of rank e = rank W̄ (spec §4.1).

    T = {A : U_⊥ᵀ A V_⊥ = 0}, N = {U_⊥ Z V_⊥ᵀ}, with U (d_h, e), V (d_0, e) orthonormal bases of
    Col W̄ and Row W̄, and U_⊥ (d_h, d_h − e), V_⊥ (d_0, d_0 − e) of their complements.

    Attributes:
        rank: e.
        rank_decision: The RankDecision that fixed e (tolerance and gap).
        U: (d_h, e).
        V: (d_0, e).
        U_perp: (d_h, d_h − e).
        V_perp: (d_0, d_0 − e).
        dim: dim T = e(d_0 + d_h − e).
    """

    rank: int
    rank_decision: RankDecision
    U: torch.Tensor
    V: torch.Tensor
    U_perp: torch.Tensor
    V_perp: torch.Tensor
    dim: int

    def project(self, A: torch.Tensor) -> torch.Tensor:
        """P_T(A) = P_U A + A P_V − P_U A P_V, shape (d_h, d_0) (spec §4.8)."""
        A = torch.as_tensor(A, dtype=torch.float64)
        PUA = self.U @ (self.U.T @ A)
        return PUA + (A @ self.V) @ self.V.T - (PUA @ self.V) @ self.V.T

    def project_normal(self, A: torch.Tensor) -> torch.Tensor:
        """P_N(A) = U_⊥ U_⊥ᵀ A V_⊥ V_⊥ᵀ = A − P_T(A), shape (d_h, d_0)."""
        A = torch.as_tensor(A, dtype=torch.float64)
        return self.U_perp @ (self.U_perp.T @ A @ self.V_perp) @ self.V_perp.T

    def operator(self) -> CurvatureOperator:
        """P_T as a symmetric psd operator on vec(A) (row-major), shape (d_h·d_0, d_h·d_0)."""
        m, n = self.U.shape[0], self.V.shape[0]

        def mm(X: torch.Tensor) -> torch.Tensor:
            b = X.shape[1]
            A = X.T.reshape(b, m, n)
            PUA = self.U @ (self.U.T @ A)
            out = PUA + (A @ self.V) @ self.V.T - (PUA @ self.V) @ self.V.T
            return out.reshape(b, m * n).T

        return CurvatureOperator((m * n, m * n), lambda x: mm(x.reshape(-1, 1)).reshape(-1),
                                 matmat=mm, symmetric=True, psd=True, name="tangent_projector")


def tangent_space(W, rank: int | None = None, *, rtol: float | None = None) -> TangentSpace:
    """Tangent and normal spaces at W of its rank stratum, and the projector P_T (spec §4.8).

    Args:
        W: Matrix W̄, shape (d_h, d_0).
        rank: The stratum rank e; default the numerical rank of W (``numerical_rank``).
        rtol: Relative tolerance of that rank decision, in (0, 1).

    Returns:
        A TangentSpace; its ``project`` applies P_T(A) = P_U A + A P_V − P_U A P_V.

    Raises:
        TypeError: If W is not a tensor or array.
        ValueError: If W is not a finite matrix, or rank is outside [0, min(W.shape)].

    Example:
        >>> import torch
        >>> from lossgeom.linear import tangent_space
        >>> T = tangent_space(torch.diag(torch.tensor([1., 0.], dtype=torch.float64)))
        >>> T.rank, T.dim, T.project(torch.eye(2, dtype=torch.float64)).tolist()
        (1, 3, [[1.0, 0.0], [0.0, 0.0]])
    """
    where = "tangent_space(W, rank)"
    check_rtol(where, rtol)
    if not isinstance(W, torch.Tensor | np.ndarray):
        raise TypeError(f"{where}: W must be a torch.Tensor or numpy array, got {type(W).__name__}.")
    t = torch.as_tensor(W).detach().to(torch.float64).cpu()
    if t.ndim != 2:
        raise ValueError(f"{where}: W has shape {tuple(t.shape)}; a matrix (d_h, d_0) is expected.")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: W contains non-finite values.")
    decision = numerical_rank(t, rtol)
    return _tangent_space(t, decision, rank, where)


def _tangent_space(t: torch.Tensor, decision: RankDecision, rank: int | None, where: str
                   ) -> TangentSpace:
    m, n = t.shape
    e = decision.rank if rank is None else rank
    if isinstance(e, bool) or not isinstance(e, int | np.integer) or not 0 <= e <= min(m, n):
        raise ValueError(f"{where}: rank = {e!r} must be an integer in [0, {min(m, n)}] for W of "
                         f"shape {(m, n)}.")
    e = int(e)
    U, _, Vh = torch.linalg.svd(t, full_matrices=True)
    return TangentSpace(e, decision, U[:, :e].contiguous(), Vh[:e].T.contiguous(),
                        U[:, e:].contiguous(), Vh[e:].T.contiguous(), e * (m + n - e))
