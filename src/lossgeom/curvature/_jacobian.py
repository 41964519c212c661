"""The behavioral Jacobian J = ∂x/∂θ, shape (n·k, N): products, dense blocks and the NTK Gram.

Row block i of J (k rows) holds the gradients of sample i's outputs: the behavioral gradients.
Per-sample Jacobians come from ``vmap(jacrev(f_single))`` over samples (k reverse passes each),
chunked so that memory stays bounded; the Gram matrix K = J Jᵀ is accumulated over parameter
blocks when the whole of J would not fit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import jacrev, jvp, vjp, vmap

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget, check_option
from ..layers import Stage, describe, forward_stages, sequential_stages
from ..linalg.operators import CurvatureOperator
from ..problem import Problem

__all__ = [
    "has_layerwise_ntk", "jacobian", "jacobian_operator", "jacobian_blocks",
    "make_jvp", "make_vjp", "ntk_gram",
]

PRODUCT_CHUNK = 32
"""Vectors per vmapped JVP/VJP pass of ``jacobian_operator`` blocks (bounds their memory)."""

WORK_BYTES = 256 * 1024**2
"""Working-memory budget for one chunk of per-sample Jacobians (256 MiB)."""


def make_jvp(problem: Problem, theta: Tensor) -> Callable[[Tensor], Tensor]:
    """Factory of v (N,) ↦ J v (n·k,).

    Forward-mode AD (``torch.func.jvp``) where ``problem.forward_ad``; otherwise the double-vjp
    identity J v = ∂/∂u ⟨Jᵀ u, v⟩: the pullback u ↦ Jᵀ u is linear, so its own pullback at any u
    (here u = 0) is v ↦ J v. Both graphs are built once and reused by every product (and by
    ``vmap`` over a block of directions).
    """
    if problem.forward_ad:
        def matvec(v: Tensor) -> Tensor:
            return jvp(problem.output_fn, (theta,), (v.to(theta.dtype),))[1].reshape(-1)

        return matvec

    out, pullback = vjp(problem.output_fn, theta)
    _, transpose = vjp(lambda u: pullback(u)[0], torch.zeros_like(out))

    def matvec_reverse(v: Tensor) -> Tensor:
        return transpose(v.to(theta.dtype))[0].reshape(-1)

    return matvec_reverse


def make_vjp(problem: Problem, theta: Tensor) -> Callable[[Tensor], Tensor]:
    """Factory of u (n·k,) ↦ Jᵀ u (N,); the forward graph is built once and reused."""
    out, pullback = vjp(problem.output_fn, theta)
    shape = out.shape

    def rmatvec(u: Tensor) -> Tensor:
        return pullback(u.to(theta.dtype).reshape(shape))[0]

    return rmatvec


def jacobian_operator(problem: Problem, theta: Tensor | None = None, *,
                      validate: bool = True) -> CurvatureOperator:
    """J as a scipy LinearOperator (n·k, N): matvec by JVP, rmatvec by VJP, blocks by vmap.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        validate: Check θ (False when the caller already did).

    Returns:
        A CurvatureOperator of shape (n·k, N), float64.

    Raises:
        ValueError: If θ has the wrong length or non-finite entries.
    """
    if validate or theta is None:
        theta = problem.check_theta("jacobian_operator(problem, theta)", theta)
    mv, rmv = make_jvp(problem, theta), make_vjp(problem, theta)
    return CurvatureOperator(
        (problem.n_samples * problem.n_outputs, problem.n_params), mv, rmv,
        matmat=lambda V: vmap(mv, in_dims=1, out_dims=1, chunk_size=PRODUCT_CHUNK)(V),
        rmatmat=lambda U: vmap(rmv, in_dims=1, out_dims=1, chunk_size=PRODUCT_CHUNK)(U),
        device=theta.device, name="jacobian",
    )


def _param_groups(problem: Problem, max_cols: int) -> list[list[int]]:
    """Consecutive parameter tensors grouped so each group has at most ``max_cols`` entries."""
    groups, current, size = [], [], 0
    for i, numel in enumerate(problem.param_numels):
        if current and size + numel > max_cols:
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += numel
    groups.append(current)
    return groups


def jacobian_blocks(problem: Problem, theta: Tensor, indices: list[int],
                    work_bytes: int = WORK_BYTES) -> Tensor:
    """Columns of J for the parameter tensors ``indices`` (in order), shape (n·k, N_group).

    Per-sample ``vmap(jacrev)`` over chunks of samples whose Jacobian fits ``work_bytes``; for a
    Problem that is not per-sample (``problem.per_sample`` False, e.g. ``batch_coupled``), one
    whole-batch ``jacrev`` chunked over output rows. Reverse mode only, so it works wherever
    ``problem.forward_ad`` is False. Parameters outside ``indices``, frozen parameters and buffers
    are held fixed.
    """
    params = problem.unflatten(theta)
    names = [problem.param_names[i] for i in indices]
    fixed = {k: v for k, v in params.items() if k not in names}
    sub = {k: params[k] for k in names}
    n, k = problem.n_samples, problem.n_outputs
    cols = sum(problem.param_numels[i] for i in indices)
    itemsize = theta.element_size()

    if problem.per_sample:
        def single(p: dict[str, Tensor], x: Tensor) -> Tensor:
            return problem._call({**fixed, **p}, x.unsqueeze(0))[0]

        per_sample = itemsize * k * cols * 3  # output rows plus autograd temporaries
        chunk = max(1, min(n, work_bytes // max(per_sample, 1)))
        jac = vmap(jacrev(single), in_dims=(None, 0), chunk_size=chunk)(sub, problem.inputs)
        return torch.cat([jac[nm].reshape(n * k, -1) for nm in names], dim=1)

    def full(p: dict[str, Tensor]) -> Tensor:
        return problem._call({**fixed, **p}, problem.inputs).reshape(-1)

    jac = jacrev(full, chunk_size=max(1, min(n * k, work_bytes // (itemsize * cols * max(n, 1)))))(sub)
    return torch.cat([jac[nm].reshape(n * k, -1) for nm in names], dim=1)


def jacobian(problem: Problem, theta: Tensor | None = None, *,
             max_bytes: int = DEFAULT_MAX_BYTES) -> Tensor:
    """Dense behavioral Jacobian J = ∂x/∂θ, shape (n·k, N); row block i = sample i.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        max_bytes: Refuse above this many bytes for the float64 matrix.

    Returns:
        J, float64 (the Problem's dtype).

    Raises:
        DenseTooLargeError: If n·k·N·8 bytes exceed ``max_bytes``.
        ValueError: If θ has the wrong length or non-finite entries.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> p = lg.Problem(model, X, torch.zeros(3, 1, dtype=torch.float64))
        >>> torch.equal(lg.jacobian(p, p.theta), X)   # a linear model's J is its data
        True
    """
    where = "jacobian(problem, theta)"
    theta = problem.check_theta(where, theta)
    m, N = problem.n_samples * problem.n_outputs, problem.n_params
    check_dense_budget(where, "Jacobian", (m, N), max_bytes,
                       "Use jacobian_operator(problem, theta) or ntk_gram(problem, theta).")
    return jacobian_blocks(problem, theta, list(range(len(problem.param_numels))))


def _layerwise_stages(problem: Problem) -> list[Stage] | None:
    """The stages of a layerwise-NTK model, else None.

    The model must be an nn.Sequential of Linear layers, each followed by elementwise activations
    only (``lossgeom.layers``), acting per sample on (n, d) inputs, with exactly the Linear
    weights and biases as parameters.
    """
    model = problem.model
    if not (isinstance(model, nn.Sequential) and problem.per_sample and problem.inputs.ndim == 2):
        return None
    stages = sequential_stages(model)
    if any(not isinstance(s.module, nn.Linear) or s.prefix
           or not all(describe(m).elementwise for m in s.followers) for s in stages):
        return None
    names = [f"{s.name}.{p}" for s in stages for p in ("weight", "bias")
             if getattr(s.module, p, None) is not None]
    return stages if tuple(names) == tuple(problem.param_names) else None


def has_layerwise_ntk(problem: Problem) -> bool:
    """True if ``ntk_gram`` can build K layer by layer, without forming J."""
    return _layerwise_stages(problem) is not None


def _layerwise_gram(problem: Problem, theta: Tensor, stages: list[Stage]) -> Tensor:
    """K = Σ_l (Δ_l Δ_lᵀ) ⊙ (A_l A_lᵀ + [bias]) for a Sequential MLP, without forming J.

    For a Linear layer z = W a + b, the row (i, c) of J restricted to (W, b) is (δ_ic ⊗ a_i, δ_ic)
    with δ_ic = ∂x_ic/∂z_i, so ⟨J_ic, J_jc'⟩ = (δ_ic·δ_jc')(a_i·a_j + 1). The δ's of all layers
    come from k batched backward passes through perturbations added to each z_l.
    """
    params = problem.unflatten(theta)
    n, k = problem.n_samples, problem.n_outputs
    eps = [torch.zeros(n, s.module.out_features, dtype=theta.dtype, device=theta.device)
           for s in stages]
    inputs = [t.inputs.detach() for t in forward_stages(stages, params, problem.inputs)]
    _, pull = vjp(lambda e: forward_stages(stages, params, problem.inputs, perturb=e)[-1].post, eps)
    basis = torch.eye(k, dtype=theta.dtype, device=theta.device)
    deltas = vmap(lambda c: pull(c.expand(n, k))[0])(basis)    # per layer: (k, n, d_out)
    K = torch.zeros(n * k, n * k, dtype=theta.dtype, device=theta.device)
    for stage, a, d in zip(stages, inputs, deltas, strict=True):
        D = d.permute(1, 0, 2).reshape(n * k, -1)             # rows (i, c), sample-major
        A = a.repeat_interleave(k, dim=0)                      # a_i repeated for each output c
        gram_a = A @ A.T + (1.0 if stage.module.bias is not None else 0.0)
        K += (D @ D.T) * gram_a
    return K


def ntk_gram(problem: Problem, theta: Tensor | None = None, *,
             work_bytes: int = WORK_BYTES, method: str = "auto", validate: bool = True) -> Tensor:
    """Empirical NTK Gram matrix K = J Jᵀ, shape (n·k, n·k).

    method="layerwise" (the "auto" choice for ``nn.Sequential`` MLPs of Linear layers and
    elementwise activations, such as ``lossgeom.mlp``) never forms J: per Linear layer it uses
    K_l = (Δ Δᵀ) ⊙ (A Aᵀ + 1) from the layer inputs A and backpropagated output sensitivities Δ,
    at a cost of k backward passes plus O((n·k)²·(d_in + d_out)). method="jacobian" accumulates
    over parameter blocks, K = Σ_b J_b J_bᵀ, holding at most ``work_bytes`` of J at once.

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        work_bytes: Memory for one block of Jacobian columns.
        method: "auto", "layerwise" or "jacobian".
        validate: Check θ (False when the caller already did).

    Returns:
        K, symmetric positive semidefinite, float64.

    Raises:
        ValueError: If θ has the wrong length or non-finite entries.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(2, 1))
        >>> lg.ntk_gram(p).tolist()
        [[1.0, 1.0], [1.0, 2.0]]
    """
    where = "ntk_gram(problem, theta)"
    if validate or theta is None:
        theta = problem.check_theta(where, theta)
    check_option(where, "method", method, ("auto", "layerwise", "jacobian"))
    linear = _layerwise_stages(problem) if method != "jacobian" else None
    if method == "layerwise" and linear is None:
        raise ValueError(f"{where}: method=\"layerwise\" needs an nn.Sequential of Linear layers "
                         "and elementwise activations on (n, d) inputs; use method=\"jacobian\".")
    if linear is not None:
        K = _layerwise_gram(problem, theta, linear)
        return 0.5 * (K + K.T)
    n, k, N = problem.n_samples, problem.n_outputs, problem.n_params
    m, itemsize = n * k, theta.element_size()
    per_sample = 3 * itemsize * k * N          # a row block of J plus autograd temporaries
    if problem.per_sample and per_sample <= work_bytes:
        return _sample_block_gram(problem, theta, max(1, work_bytes // (2 * per_sample)))
    max_cols = max(1, work_bytes // (itemsize * m))
    K = torch.zeros(m, m, dtype=theta.dtype, device=theta.device)
    for group in _param_groups(problem, max_cols):
        Jb = jacobian_blocks(problem, theta, group, work_bytes)
        K += Jb @ Jb.T
    return 0.5 * (K + K.T)


def _sample_block_gram(problem: Problem, theta: Tensor, chunk: int) -> Tensor:
    """K = J Jᵀ from row blocks J_S of ``chunk`` samples each (J is never whole).

    With forward mode (``problem.forward_ad``) each block is computed once and its columns of K
    come from JVPs on the full batch, K[:, S] = J J_Sᵀ: one evaluation of J plus n·k JVPs. Without
    it two row blocks are held, K_ST = J_S J_Tᵀ for S ≤ T, and a block is recomputed once per
    block before it: about (number of blocks + 1)/2 evaluations of J.
    """
    n, k = problem.n_samples, problem.n_outputs
    every = list(range(len(problem.param_numels)))
    starts = list(range(0, n, chunk))

    def rows(a: int) -> Tensor:
        return _sample_rows(problem, theta, starts[a], min(n, starts[a] + chunk), every)

    def cols(a: int) -> slice:
        return slice(starts[a] * k, min(n, starts[a] + chunk) * k)

    K = torch.zeros(n * k, n * k, dtype=theta.dtype, device=theta.device)
    if problem.forward_ad:
        forward = jacobian_operator(problem, theta, validate=False)
        for a in range(len(starts)):
            K[:, cols(a)] = forward.torch_matmat(rows(a).T).to(K.dtype)
        return 0.5 * (K + K.T)
    for a in range(len(starts)):
        JS = rows(a)
        K[cols(a), cols(a)] = JS @ JS.T.contiguous()  # NOTE [gram product] in linearization
        for b in range(a + 1, len(starts)):
            K[cols(a), cols(b)] = JS @ rows(b).T.contiguous()
            K[cols(b), cols(a)] = K[cols(a), cols(b)].T
    return 0.5 * (K + K.T)


def _sample_rows(problem: Problem, theta: Tensor, start: int, stop: int, indices: list[int]
                 ) -> Tensor:
    """Rows of J for samples start..stop−1 (all k outputs each), shape ((stop − start)·k, N)."""
    params = problem.unflatten(theta)
    names = [problem.param_names[i] for i in indices]
    fixed = {nm: v for nm, v in params.items() if nm not in names}

    def single(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return problem._call({**fixed, **p}, x.unsqueeze(0))[0]

    jac = vmap(jacrev(single), in_dims=(None, 0))({nm: params[nm] for nm in names},
                                                  problem.inputs[start:stop])
    rows = (stop - start) * problem.n_outputs
    return torch.cat([jac[nm].reshape(rows, -1) for nm in names], dim=1)
