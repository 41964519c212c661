"""The project's zero-eigenvalue bound over all layers of a wide network (§3.5).

V_k = {V : V A_k = 0} ⊂ R^{n_{k+1} × n_k} (A_k the activations of layer k on the data, A_0 = X)
moves W_{k+1} without changing any activation on the data, so L is constant on θ + ⊕V_k and ⊕V_k
is an isotropic subspace of ∇²L(θ), of dimension m = Σ_k n_{k+1}(n_k − rank A_k). Hence, at every θ,
#{λ = 0} ≥ 2m − N (positive and negative indices are each at most N − m), and #{λ = 0} ≥ m where
∇²L is semidefinite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_rtol
from ..analysis import analyze
from ..curvature._hessian import make_hvp_block
from ..linalg.rank import null_space, numerical_rank
from ..problem import Problem
from ..report import Report
from ..results import Result, internal
from ._network import hidden_activations, network_layout

__all__ = ["WideZeroBound", "wide_zero_bound"]


PROBE_CHUNK = 64
"""Probe vectors per batched Hessian-vector pass (bounds the memory of one vmap)."""


def apply_in_chunks(block, V: Tensor) -> Tensor:
    """block(V) computed PROBE_CHUNK columns at a time (V: (N, b))."""
    if V.shape[1] == 0:                 # rank 0: ∇²L = 0 (a core in convention A)
        return torch.zeros_like(V)
    return torch.cat([block(V[:, j:j + PROBE_CHUNK]) for j in range(0, V.shape[1], PROBE_CHUNK)],
                     dim=1)


@dataclass(frozen=True)
class WideZeroBound(Result):
    """The project's zero-eigenvalue bound over all layers (§3.5).

    Mapping-style access ``bound["m"]`` works for the contract's keys m, bound and
    n_zero_eigenvalues (and every other field).

    Attributes:
        m: Σ_k n_{k+1}(n_k − rank A_k), the dimension of ⊕V_k.
        bound: 2m − N, a lower bound on the zero count at every θ.
        n_zero_eigenvalues: Measured zeros (``analyze``'s inertia; None if undecided).
        n_params: N.
        layers: Per weight matrix W_{k+1}: {layer (k+1), n_in (n_k), n_out (n_{k+1}), rank (of A_k),
            rank_tol, rank_gap, dim (n_{k+1}(n_k − rank A_k))}.
        inertia: Measured [positive, negative, zero].
        tol: Eigenvalue tolerance of the count.
        gap: Its gap.
        rtol: Its relative tolerance.
        semidefinite: No negative (or no positive) eigenvalue; None if undecided.
        bound_semidefinite: m where the Hessian is semidefinite (then zeros ≥ m), else None.
        holds: n_zero_eigenvalues ≥ bound (and ≥ m at semidefinite points); None if undecided.
        isotropy_residual: ‖Bᵀ ∇²L B‖ / ‖∇²L‖ from Hessian-vector products (0 up to round-off).
        basis: Orthonormal basis of ⊕V_k in parameter coordinates, shape (N, m).
    """

    m: int
    bound: int
    n_zero_eigenvalues: int | None
    n_params: int
    layers: list[dict]
    inertia: list
    tol: float
    gap: float | None
    rtol: float
    semidefinite: bool | None
    bound_semidefinite: int | None
    holds: bool | None
    isotropy_residual: float | None
    basis: Tensor = internal()


def wide_zero_bound(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    rtol: float | None = None,
    rank_rtol: float | None = None,
    method: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> WideZeroBound:
    """M = Σ n_{k+1}(n_k − rank A_k), the bound 2m − N, and the measured zero count.

    Args:
        problem: An MLP problem (``lossgeom.mlp``).
        theta: Flat parameters (N,); default ``problem.theta``.
        rtol: Relative inertia tolerance of ``analyze`` (the Report's tolerance is the one used).
        rank_rtol: Relative tolerance of the ranks of A_k; default max(shape)·eps.
        method: Route of ``analyze``.
        max_bytes: Memory budget of dense matrices.

    Returns:
        A WideZeroBound (``result["m"]``, ``result["bound"]``, ``result["n_zero_eigenvalues"]``).

    Raises:
        TypeError: For a model that is not an nn.Sequential MLP.
        ValueError: For invalid θ or tolerances.

    Example:
        >>> import torch, lossgeom as lg
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(3, 2, generator=g, dtype=torch.float64)
        >>> p = lg.Problem(lg.mlp([2, 12, 12, 1], bias=False, generator=g), X,
        ...                torch.randn(3, 1, generator=g, dtype=torch.float64))
        >>> b = wide_zero_bound(p)                   # §3.5, first row: m = 117, 84 zeros
        >>> b["m"], b["bound"], b["n_zero_eigenvalues"], b.holds
        (117, 54, 84, True)
    """
    where = "wide_zero_bound(problem, theta)"
    check_rtol(where, rtol)
    check_rtol(where, rank_rtol, "rank_rtol")
    layout = network_layout(problem, where)
    theta = problem.check_theta(where, theta)
    acts = hidden_activations(layout, problem, theta)
    blocks, layers, m = [], [], 0
    for layer, A in zip(layout.layers, acts, strict=True):
        At = A.T.cpu().to(torch.float64)                           # A_k, (n_k, n)
        dec = numerical_rank(At, rank_rtol)
        Z = null_space(At.T, rank_rtol)                            # ker A_kᵀ, (n_k, n_k − r)
        dim = layer.n_out * Z.shape[1]
        block = torch.zeros(layout.n_params, dim, dtype=torch.float64)
        for p in range(layer.n_out):
            start = layer.weight.start + p * layer.n_in
            block[start:start + layer.n_in, p * Z.shape[1]:(p + 1) * Z.shape[1]] = Z
        blocks.append(block)
        layers.append({"layer": layer.index, "n_in": layer.n_in, "n_out": layer.n_out,
                       "rank": dec.rank, "rank_tol": dec.tol, "rank_gap": dec.gap, "dim": dim})
        m += dim
    basis = torch.cat(blocks, dim=1)
    N = layout.n_params
    report = analyze(problem, theta, method=method, rtol=rtol, max_bytes=max_bytes)
    inert = report.hessian.inertia.as_list()
    n_zero = inert[2]
    semidef = None if None in inert else (inert[1] == 0 or inert[0] == 0)
    holds = None if n_zero is None else (n_zero >= 2 * m - N and (not semidef or n_zero >= m))
    iso = _isotropy_residual(problem, theta, basis, report) if m else 0.0
    return WideZeroBound(
        m=m, bound=2 * m - N, n_zero_eigenvalues=n_zero, n_params=N, layers=layers,
        inertia=list(inert), tol=report.hessian.tol, gap=report.hessian.gap,
        rtol=report.hessian.rtol, semidefinite=semidef,
        bound_semidefinite=m if semidef else None, holds=holds, isotropy_residual=iso,
        basis=basis.to(theta),
    )


def _isotropy_residual(problem: Problem, theta: Tensor, basis: Tensor, report: Report) -> float:
    """‖Bᵀ H B‖_2 / max|λ(H)| with H B from batched Hessian-vector products."""
    B = basis.to(theta)
    HB = apply_in_chunks(make_hvp_block(problem, theta), B)
    scale = max([abs(v) for v in report.hessian.top_eigenvalues[:1]
                 + report.hessian.bottom_eigenvalues[:1]] + [0.0])
    value = float(torch.linalg.matrix_norm(B.T @ HB, ord=2))
    return value / scale if scale > 0 else value
