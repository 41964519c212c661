"""Hessian ∇²L(θ), shape (N, N): products, operator and dense matrix.

Two product routes (``HvpMode``):
* ``reverse`` (default): reverse-over-reverse on a first-order graph built once per (problem, θ);
  each product is one extra backward pass. Blocks use ``is_grads_batched=True`` (vmap).
* ``forward``: forward-over-reverse ``jvp(grad(L))``; no graph is kept between products.

NOTE [transform compositions]
    Not every composition of torch.func transforms is right. In torch 2.13, ``jacrev(jacrev(L))``,
    ``jacfwd(jacrev(L))`` and ``torch.func.hessian(L)`` give wrong second derivatives through
    ``LayerNorm`` (a small LayerNorm MLP: entries off by 1.12 in the LayerNorm-weight × first-layer
    block, where plain double backward agrees with central differences), while ``jacrev(grad L)``
    and ``jacfwd(grad L)`` are right: what fails is differentiating through the inner ``jacrev``
    of a scalar, a *vmapped* pullback. The routes here never differentiate through a vmap: ``grad``
    for the first derivative, then ``jvp`` or ``vjp`` of it, with ``vmap`` only outermost (over
    directions), and plain ``torch.autograd`` double backward. Each is
    checked per layer type against autograd double backward and central differences of the
    gradient. Where forward mode does not work through a model (``Problem.forward_ad`` is False:
    a custom ``autograd.Function`` without ``jvp``, an op without a forward rule), the forward
    routes become reverse-over-reverse ``vmap(vjp(grad L))``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import torch
from torch import Tensor
from torch.func import grad, jvp, vjp, vmap

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget, check_vector
from ..linalg.operators import CurvatureOperator
from ..problem import Problem

__all__ = ["HvpMode", "hessian", "hessian_operator", "hvp", "make_hvp", "make_hvp_block"]

DENSE_CHUNK = 256
"""Columns per vmapped forward-over-reverse pass when a dense Hessian is assembled."""


class HvpMode(StrEnum):
    """How a Hessian-vector product is formed.

    REVERSE: reverse-over-reverse reusing the first-order graph; the cheapest product on CPU
        (one backward pass each) but keeps the graph alive while the operator lives.
    FORWARD: forward-over-reverse ``jvp(grad)``; keeps nothing between products, costs a
        forward and a backward pass each; use it when memory for the graph is short. Where forward
        mode does not work through the model it falls back to ``vjp(grad)`` (reverse-over-reverse,
        which keeps the first-order graph).
    """

    REVERSE = "reverse"
    FORWARD = "forward"


HVP_BATCH_BYTES = 4 * 1024**2
"""Columns of a block go through one batched double backward while they fill at most this many
bytes; beyond, in slices of that size. Per vector, a batched pass is cheaper for small N and
dearer for large N (memory traffic of b copies of every intermediate): measured on 2 cores, tanh
MLP at N ≈ 1.1e6, 1.49 gradients for one HVP, 2.13 per vector in pairs, 3.7 in blocks of 64;
deep linear at N ≈ 1.2e5, 1.03 per vector in blocks of 4, 1.17 in blocks of 64."""


def _second_order(f: Callable[[Tensor], Tensor], theta: Tensor, mode: HvpMode,
                  forward_ad: bool = True
                  ) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(v ↦ ∇²f v, V (N, b) ↦ ∇²f V) for a scalar function f of θ.

    FORWARD with ``forward_ad=False`` is reverse-over-reverse by ``torch.func``: the pullback of
    ``grad(f)`` built once, vmapped over the columns of a block.
    """
    if HvpMode(mode) is HvpMode.FORWARD:
        g = grad(f)
        if not forward_ad:
            _, pull = vjp(g, theta)

            def one(v: Tensor) -> Tensor:
                return pull(v.to(theta.dtype))[0]
        else:
            def one(v: Tensor) -> Tensor:
                return jvp(g, (theta,), (v.to(theta.dtype),))[1]

        return one, lambda V: vmap(one, in_dims=1, out_dims=1)(V)

    t = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(t), t, create_graph=True)
    if not g.requires_grad:  # f is at most linear in θ: its Hessian is zero
        return torch.zeros_like, torch.zeros_like

    def one(v: Tensor) -> Tensor:
        v = v.to(theta.dtype)
        (hv,) = torch.autograd.grad(g, t, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv.detach()

    def batched(V: Tensor) -> Tensor:
        if V.shape[1] == 1:
            return one(V[:, 0])[:, None]
        (hv,) = torch.autograd.grad(g, t, V.T.contiguous(), retain_graph=True,
                                    is_grads_batched=True, allow_unused=True)
        return torch.zeros_like(V) if hv is None else hv.detach().T

    def block(V: Tensor) -> Tensor:
        V = V.to(theta.dtype)
        step = max(1, HVP_BATCH_BYTES // (V.element_size() * max(V.shape[0], 1)))
        if V.shape[1] <= step:
            return batched(V)
        return torch.cat([batched(V[:, j:j + step]) for j in range(0, V.shape[1], step)], dim=1)

    return one, block


def make_hvp(problem: Problem, theta: Tensor, mode: HvpMode | str = HvpMode.REVERSE
             ) -> Callable[[Tensor], Tensor]:
    """Factory of v (N,) ↦ ∇²L(θ) v (N,); forward mode only where ``problem.forward_ad``."""
    return _second_order(problem.loss_at, theta, HvpMode(mode), problem.forward_ad)[0]


def make_hvp_block(problem: Problem, theta: Tensor, mode: HvpMode | str = HvpMode.REVERSE
                   ) -> Callable[[Tensor], Tensor]:
    """Factory of V (N, b) ↦ ∇²L(θ) V (N, b), one batched pass per block."""
    return _second_order(problem.loss_at, theta, HvpMode(mode), problem.forward_ad)[1]


def hvp(problem: Problem, theta: Tensor | None, v: Tensor, *,
        mode: HvpMode | str = HvpMode.REVERSE) -> Tensor:
    """Hessian-vector product ∇²L(θ) v, shape (N,).

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); None for ``problem.theta``.
        v: Direction (N,).
        mode: "reverse" or "forward" (see ``HvpMode``).

    Returns:
        ∇²L(θ) v, float64.

    Raises:
        ValueError: If θ or v has the wrong length or non-finite entries.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> lg.hvp(p, None, torch.tensor([1., 0.], dtype=torch.float64)).tolist()  # 2XᵀX e₁
        [4.0, 2.0]
    """
    where = "hvp(problem, theta, v)"
    theta = problem.check_theta(where, theta)
    v = check_vector(where, "v", v, problem.n_params, dtype=theta.dtype, device=theta.device)
    return make_hvp(problem, theta, mode)(v)


def hessian_operator(problem: Problem, theta: Tensor | None = None, *,
                     mode: HvpMode | str = HvpMode.REVERSE) -> CurvatureOperator:
    """∇²L(θ) as a symmetric scipy LinearOperator (N, N), for ``eigsh`` and friends.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        mode: "reverse" or "forward" (see ``HvpMode``).

    Returns:
        A symmetric CurvatureOperator; ``n_matvec`` counts products.

    Raises:
        ValueError: If θ has the wrong length or non-finite entries.
    """
    theta = problem.check_theta("hessian_operator(problem, theta)", theta)
    one, block = _second_order(problem.loss_at, theta, HvpMode(mode), problem.forward_ad)
    return CurvatureOperator((problem.n_params,) * 2, one, matmat=block, symmetric=True,
                             device=theta.device, name="hessian")


def hessian(problem: Problem, theta: Tensor | None = None, *,
            max_bytes: int = DEFAULT_MAX_BYTES, mode: HvpMode | str | None = None) -> Tensor:
    """Dense loss Hessian ∇²L(θ), shape (N, N).

    Built from blocks of Hessian-vector products and symmetrised (``dense_second_order``). For
    large N use ``hessian_operator``.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        max_bytes: Refuse above this many bytes for the (N, N) float64 matrix.
        mode: Columns by "forward" (``jvp(grad)``) or "reverse" (``vjp(grad)``) products; None:
            forward where ``problem.forward_ad``, else reverse. "forward" on a Problem whose
            forward mode is unavailable or unsound (``problem.ad_notes``) runs reverse.

    Returns:
        The symmetric Hessian, shape (N, N), float64.

    Raises:
        DenseTooLargeError: If N·N·8 bytes exceeds ``max_bytes``.
        ValueError: If θ has the wrong length or non-finite entries.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> problem = lg.Problem(model, X, torch.zeros(3, 1, dtype=torch.float64))
        >>> torch.allclose(lg.hessian(problem, problem.theta), 2 * X.T @ X)  # MSE-sum: 2XᵀX
        True
    """
    where = "hessian(problem, theta)"
    theta = problem.check_theta(where, theta)
    N = problem.n_params
    check_dense_budget(where, "Hessian", (N, N), max_bytes,
                       "Use hessian_operator(problem, theta) with scipy.sparse.linalg.eigsh, or "
                       "analyze(..., method=\"operator\").")
    if mode is None or not problem.forward_ad:   # forward only where the probe found it sound
        mode = HvpMode.FORWARD if problem.forward_ad else HvpMode.REVERSE
    H = dense_second_order(problem.loss_at, theta, mode=mode)
    return 0.5 * (H + H.T)


def dense_second_order(f: Callable[[Tensor], Tensor], theta: Tensor, *,
                       mode: HvpMode | str | None = None) -> Tensor:
    """Unsymmetrised dense Hessian of a scalar f at θ, shape (N, N).

    Columns are Hessian-vector products with the unit vectors, vmapped over chunks of
    ``DENSE_CHUNK`` columns: reverse-over-reverse ``vjp(grad f)`` with the pullback built once
    (the default: it needs only double backward, which every differentiable op has), or
    forward-over-reverse ``jvp(grad f)`` (the route of ``torch.func.hessian`` without its
    ``jacrev`` inner derivative, NOTE [transform compositions]), for callers that know forward mode
    is sound for f (``Problem.forward_ad``). The two take about the same time on CPU.

    Args:
        f: Scalar function of θ (N,).
        theta: Point, shape (N,).
        mode: "reverse" (default when None) or "forward".

    Returns:
        ∇²f(θ), shape (N, N), not symmetrised (its asymmetry measures rounding).

    Example:
        >>> import torch
        >>> t = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> f = lambda x: x[0] ** 2 * x[1]                # ∇²f = [[2 x₁, 2 x₀], [2 x₀, 0]]
        >>> dense_second_order(f, t).tolist()
        [[4.0, 2.0], [2.0, 0.0]]
        >>> dense_second_order(f, t, mode="forward").tolist()
        [[4.0, 2.0], [2.0, 0.0]]
    """
    N = theta.numel()
    g = grad(f)
    eye = torch.eye(N, dtype=theta.dtype, device=theta.device)
    chunk = min(N, DENSE_CHUNK)
    if mode is not None and HvpMode(mode) is HvpMode.FORWARD:
        def column(v: Tensor) -> Tensor:
            return jvp(g, (theta,), (v,))[1]

        return vmap(column, in_dims=1, out_dims=1, chunk_size=chunk)(eye)
    _, pull = vjp(g, theta)
    return vmap(lambda v: pull(v)[0], in_dims=1, out_dims=1, chunk_size=chunk)(eye)
