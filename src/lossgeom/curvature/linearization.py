"""The behavior map linearised at one θ: the one place that decides rank J and applies J, Jᵀ, J⁺.

``linearize(problem, θ)`` validates θ once and returns a ``Linearization`` that owns, computed on
first use and then kept: the outputs x(θ) (n, k); J as a dense matrix when it fits, else as an
operator (JVP/VJP); the NTK Gram matrix K = J Jᵀ (layer by layer for MLPs, in parameter blocks
otherwise); the rank decision of J with its tolerance and gap; σ_max(J); a thin SVD J = W S Vᵀ
(with V implicit as Jᵀ W S⁻¹ where J is not held); and the products the analyses need: J⁺u, the
projectors onto ran J and ker J, an orthonormal basis of ker J, and the metric solves of the flows.

NOTE [linearization routes]
    ``Route`` says how J⁺ and the rank are obtained; the route taken is recorded.

    * ``svd``: J dense, J = W S Vᵀ by a thin SVD (through Jᵀ = QR for wide J). The most accurate:
      singular values to eps·σ_max, null-space bases orthonormal to round-off.
    * ``gram``: eigendecomposition K = U Λ Uᵀ, σ = √λ, J⁺u = Jᵀ U Λ⁻¹ Uᵀ u. K squares the
      conditioning: an eigenvector of K is accurate to about m·eps·(σ_max/σ)², and the right
      singular vector Jᵀu/σ built from it to m·eps·(σ_max/σ)³, so this route is taken only while
      that is below ``GRAM_ACCURACY`` for every kept σ. A dense J that is worse
      conditioned goes to ``svd``; a J that is not held gets its small singular triplets from an
      SVD of Jᵀ U₀ on the eigenvectors U₀ of K below that threshold (route ``gram+svd``, one VJP
      per column of U₀, projected off the trusted directions), as far as ``max_bytes`` allows.
    * ``lsmr``: no factorisation; J⁺u by ``scipy.sparse.linalg.lsmr`` on the Jacobian operator
      (n·k too large for an (n·k)² Gram matrix). The rank decision is still available on request.

    ``Route.AUTO`` takes ``svd`` when n·k ≥ N and J fits, ``gram`` while n·k ≤ ``GRAM_MAX_OUTPUTS``,
    ``lsmr`` beyond.
"""

from __future__ import annotations

import dataclasses
import math
from enum import StrEnum
from functools import cached_property

import numpy as np
import torch
from scipy.sparse.linalg import lsmr
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget, check_option, check_rtol
from ..linalg.operators import CurvatureOperator
from ..linalg.rank import numerical_rank, rank_from_gram
from ..problem import Problem
from ..results import RankDecision
from ..tolerances import GRAM_ACCURACY, eps, gram_floor
from ._jacobian import has_layerwise_ntk, jacobian_blocks, jacobian_operator, ntk_gram

__all__ = [
    "DENSE_JACOBIAN_BYTES", "GRAM_MAX_OUTPUTS", "LSMR_TOL", "Linearization", "NonFiniteError",
    "Route", "linearize",
]

GRAM_MAX_OUTPUTS = 2048
"""``Route.AUTO`` takes the Gram route while n·k ≤ this and LSMR beyond.

Measured (benchmarks/flows.py, tanh MLPs, 1 thread): the Gram route beats LSMR at every size
tried, 4–35× at n·k = 64 (N = 1e3–1e5), and at n·k = 640 LSMR did not reach tol 1e-8 within
1000 iterations (cond J ≈ 1e3–1e5). The crossover is therefore where the Gram matrix stops being
affordable: at 2048 outputs it holds 32 MiB and its eigh takes about 3 s."""

DENSE_JACOBIAN_BYTES = 256 * 1024**2
"""J is held dense (one vmap(jacrev) pass, products by matmul) up to this many bytes; beyond, K is
accumulated over parameter blocks (or layer by layer) and Jᵀu is a VJP."""

LSMR_TOL = 1e-10
"""Default ``atol = btol`` of LSMR: relative residual of the normal equations."""

LSMR_ITERATIONS_PER_DIM = 20
"""LSMR may take up to this many times min(n·k, N) iterations (each a JVP and a VJP)."""

POWER_ITERATIONS = 30
"""Power iterations on JᵀJ for σ_max(J) when no factorisation is at hand (criticality scales)."""


class Route(StrEnum):
    """How J is factorised (NOTE [linearization routes]).

    AUTO: by cost, see the note.
    SVD: dense J and its thin SVD; most accurate; needs n·k·N·8 bytes.
    GRAM: eigendecomposition of K = J Jᵀ (n·k × n·k); J never whole; refined by SVD where K's
        squared conditioning would lose digits.
    LSMR: iterative J⁺u on the operator; for n·k beyond the Gram matrix's budget.
    """

    AUTO = "auto"
    SVD = "svd"
    GRAM = "gram"
    LSMR = "lsmr"


class NonFiniteError(ValueError):
    """The outputs, the Jacobian or the Gram matrix are not finite at the requested θ."""


# NOTE [gram product]
#     K = J @ J.T with J.T a view of J sends MKL to its A·Aᵀ (syrk) kernel, which with two OpenMP
#     threads on a loaded machine was measured at 28 ms for a 6 × 27 J (6 µs single-threaded);
#     multiplying by a contiguous copy of Jᵀ takes the gemm path and costs one O(n·k·N) copy.


def _thin_svd(J: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD J = W diag(S) Vᵀ as (W, S, V); a wide J goes through Jᵀ = QR (6× faster)."""
    if J.shape[0] <= J.shape[1]:
        Q, R = torch.linalg.qr(J.T)
        UR, S, VRh = torch.linalg.svd(R)
        return VRh.T, S, Q @ UR
    W, S, Vh = torch.linalg.svd(J, full_matrices=False)
    return W, S, Vh.T


class Linearization:
    """x(θ) and every product with J at one θ (module docstring; build with ``linearize``).

    Attributes:
        problem: The Problem.
        theta: θ (N,), validated once.
        outputs: x(θ), shape (n, k).
        requested: The Route asked for.
        rtol: Relative rank tolerance (None: the default of ``numerical_rank``).
        max_bytes: Memory budget of dense matrices.
        where: The public call, for messages.
    """

    def __init__(self, problem: Problem, theta: Tensor, *, route: Route, rtol: float | None,
                 max_bytes: int, lsmr_tol: float, where: str):
        self.problem, self.theta, self.requested = problem, theta, route
        self.rtol, self.max_bytes, self.lsmr_tol, self.where = rtol, max_bytes, lsmr_tol, where
        self.m, self.N = problem.n_samples * problem.n_outputs, problem.n_params
        with torch.no_grad():
            x = problem.output_fn(theta)
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteError(f"{where}: the outputs x(θ) are not finite at this θ.")
        self.outputs = x
        self._route: str | None = None

    # -- what the route resolves to -------------------------------------------------------------
    @cached_property
    def solve_route(self) -> Route:
        """The Route J⁺ products take (AUTO resolved)."""
        if self.requested is not Route.AUTO:
            return self.requested
        if self.m >= self.N and self._dense_fits:
            return Route.SVD
        return Route.GRAM if self.m <= GRAM_MAX_OUTPUTS else Route.LSMR

    @property
    def route(self) -> str:
        """The route taken: "svd", "gram", "gram+svd" or "lsmr" (after the first product)."""
        if self._route is None:
            if self.solve_route is Route.LSMR:
                return "lsmr"
            _ = self._factors
        return self._route

    @property
    def _dense_fits(self) -> bool:
        return 8 * self.m * self.N <= min(self.max_bytes, DENSE_JACOBIAN_BYTES)

    # -- J, K and the operator ------------------------------------------------------------------
    @cached_property
    def op(self) -> CurvatureOperator:
        """J as a CurvatureOperator (n·k, N): JVPs and VJPs, never materialised."""
        return jacobian_operator(self.problem, self.theta, validate=False)

    @cached_property
    def jacobian(self) -> Tensor | None:
        """The dense J (n·k, N) when it is held (fits ``DENSE_JACOBIAN_BYTES``), else None.

        Raises:
            NonFiniteError: If J has non-finite entries.
        """
        route = self.solve_route
        if route is Route.SVD:
            check_dense_budget(self.where, "Jacobian (route 'svd')", (self.m, self.N),
                               self.max_bytes, "Use route 'gram' or 'lsmr'.")
        elif not self._dense_fits or has_layerwise_ntk(self.problem):
            return None
        J = jacobian_blocks(self.problem, self.theta, list(range(len(self.problem.param_numels))))
        if not bool(torch.isfinite(J).all()):
            raise NonFiniteError(f"{self.where}: the Jacobian J = ∂x/∂θ has non-finite entries.")
        return J

    @cached_property
    def gram_matrix(self) -> Tensor:
        """K = J Jᵀ (n·k, n·k), symmetric positive semidefinite.

        Raises:
            NonFiniteError: If K has non-finite entries.
        """
        J = self.jacobian
        if J is not None:
            K = J @ J.T.contiguous()  # NOTE [gram product]
        else:
            check_dense_budget(self.where, "NTK Gram matrix", (self.m, self.m), self.max_bytes,
                               "Use route 'lsmr' (no factorisation of J).")
            # the Gram matrix is built in blocks of J within what max_bytes leaves beside K
            work = max(8 * self.N, self.max_bytes - 8 * self.m * self.m)
            K = ntk_gram(self.problem, self.theta, validate=False, work_bytes=work)
        if not bool(torch.isfinite(K).all()):
            raise NonFiniteError(f"{self.where}: the Gram matrix J Jᵀ has non-finite entries.")
        return 0.5 * (K + K.T)

    # -- factorisation and the rank decision ------------------------------------------------------
    @cached_property
    def _factors(self) -> tuple[RankDecision, Tensor, Tensor, int, Tensor | None]:
        """(decision, W, S, n_implicit, V_tail): J = W S Vᵀ, V = [Jᵀ W₀ S₀⁻¹ | V_tail]."""
        dtype = self.problem.dtype
        J = self.jacobian
        if self.solve_route is Route.SVD:
            return self._svd_factors(J)
        K = self.gram_matrix
        lam, U = torch.linalg.eigh(K)
        sig = lam.clamp_min(0.0).sqrt()               # σ(J) from K, ascending
        threshold = self._accuracy_threshold(float(sig[-1]) if self.m else 0.0)
        unresolved = int((sig < threshold).sum())
        if J is not None:
            d = rank_from_gram(K, self.N, self.rtol, dtype=dtype, eig=(lam, U))
            kept_small = bool(((sig > d.tol) & (sig < threshold)).any())
            if kept_small or "floor" in d.reason or d.method == "gram+svd":
                return self._svd_factors(J)
            self._route = "gram"
            return d, U.flip(1), sig.flip(0), self.m, None
        if self.requested is Route.AUTO and self._dense_fits and unresolved:
            # directions K cannot resolve need an SVD; a J this small is cheaper to form whole
            # (one batched pass) than to refine by products (two passes per refined column)
            return self._svd_factors(None)
        box: dict[str, Tensor] = {}
        op = self.op

        def refine(U0: Tensor) -> Tensor:
            box["U0"], box["B"] = U0, op.torch_rmatmat(U0)
            return box["B"]

        budget_cols = max(0, self.max_bytes // (3 * 8 * max(self.N, 1)))  # Jᵀ U₀, its Q and P
        trust = threshold if unresolved <= budget_cols else None
        d = rank_from_gram(K, self.N, self.rtol, dtype=dtype, refine=refine, eig=(lam, U),
                           trust_above=trust, forward=op.torch_matmat, max_refine=budget_cols)
        W, S = U.flip(1), sig.flip(0)
        if not box:
            self._route = "gram"
            return d, W, S, self.m, None
        U0, B = box["U0"], box["B"].to(W.dtype)  # Jᵀ U₀ = P S_B Zᵀ: left U₀ Z, right P
        Qb, Rb = torch.linalg.qr(B)     # B is tall (N × c): QR, then the small SVD of R
        Ur, SB, Zh = torch.linalg.svd(Rb)
        P = Qb @ Ur
        n_imp = self.m - U0.shape[1]
        self._route = "gram+svd"
        return d, torch.cat([W[:, :n_imp], U0 @ Zh.T], dim=1), torch.cat([S[:n_imp], SB]), n_imp, P

    def _accuracy_threshold(self, smax: float) -> float:
        """σ below which K's eigenvectors lose digits beyond ``GRAM_ACCURACY`` (NOTE above)."""
        e = eps(self.problem.dtype)
        return max(smax * (max(self.m, 1) * e / GRAM_ACCURACY) ** (1.0 / 3.0),
                   100.0 * gram_floor(self.m, smax, self.problem.dtype))

    def _dense_jacobian(self) -> Tensor:
        """J, materialised (and kept) even where the route would not hold it."""
        if self.jacobian is None:
            check_dense_budget(self.where, "Jacobian", (self.m, self.N), self.max_bytes,
                               "Use route 'gram' or 'lsmr'.")
            self.__dict__["jacobian"] = jacobian_blocks(
                self.problem, self.theta, list(range(len(self.problem.param_numels))))
        return self.jacobian

    def _svd_factors(self, J: Tensor | None):
        J = self._dense_jacobian() if J is None else J
        W, S, V = _thin_svd(J.to(torch.float64))
        d = numerical_rank(S, self.rtol, shape=tuple(J.shape), dtype=self.problem.dtype)
        self._route = "svd"
        return dataclasses.replace(d, method="svd"), W, S, 0, V

    @property
    def decision(self) -> RankDecision:
        """The rank decision of J (tolerance, gap, method, decided, reason)."""
        return self._factors[0]

    @property
    def rank(self) -> int:
        """Rank J."""
        return self.decision.rank

    @property
    def singular_values(self) -> Tensor:
        """σ(J), descending (min(n·k, ·) values; route-dependent count), float64."""
        return self._factors[2]

    @cached_property
    def sigma_max(self) -> float:
        """σ_max(J): from the factorisation when one exists, else by power iteration on JᵀJ."""
        if "_factors" in self.__dict__:
            return self.decision.sigma_max
        v = torch.randn(self.N, generator=torch.Generator().manual_seed(0),
                        dtype=self.theta.dtype).to(self.theta.device)
        v, sigma = v / torch.linalg.norm(v), 0.0
        for _ in range(POWER_ITERATIONS):
            w = self.jt(self.jv(v))
            norm = float(torch.linalg.norm(w))
            if norm == 0.0:
                break
            sigma, v = math.sqrt(norm), w / norm
        return sigma

    @property
    def left_vectors(self) -> Tensor:
        """W (n·k, p): left singular vectors of J, columns ordered as ``singular_values``."""
        return self._factors[1]

    @property
    def kept(self) -> Tensor:
        """Which singular values lie above the rank tolerance, (p,) bool."""
        return self._factors[2] > self.decision.tol

    _kept = kept

    # -- products -------------------------------------------------------------------------------
    def jv(self, v: Tensor) -> Tensor:
        """J v, (N,) → (n·k,)."""
        J = self.jacobian if self.solve_route is not Route.LSMR else None
        return J @ v if J is not None else self.op.torch_matvec(v)

    def jt(self, u: Tensor) -> Tensor:
        """Jᵀ u, (n·k,) → (N,)."""
        J = self.jacobian if self.solve_route is not Route.LSMR else None
        return J.T @ u if J is not None else self.op.torch_rmatvec(u)

    def gram(self, u: Tensor) -> Tensor:
        """K u = J Jᵀ u, (n·k,) → (n·k,)."""
        if self.solve_route is Route.LSMR:
            return self.jv(self.jt(u))
        return self.gram_matrix @ u

    def pinv(self, u: Tensor) -> Tensor:
        """J⁺ u, the minimum-norm solution of J v = P u, (n·k,) → (N,)."""
        if self.solve_route is Route.LSMR:
            return self._lsmr(u, 0.0)
        _, W, S, m0, V_tail = self._factors
        kept = self._kept
        c = torch.where(kept, (W.T @ u) / torch.where(kept, S, 1.0), 0.0)
        out = torch.zeros(self.N, dtype=u.dtype, device=u.device)
        if m0 > 0 and bool(kept[:m0].any()):
            out = out + self.jt(W[:, :m0] @ (c[:m0] / torch.where(kept[:m0], S[:m0], 1.0)))
        if V_tail is not None:
            out = out + V_tail @ c[m0:]
        return out

    def project(self, u: Tensor) -> Tensor:
        """P u = J J⁺ u, the orthogonal projection onto ran J, (n·k,) → (n·k,)."""
        if self.solve_route is Route.LSMR:
            return self.jv(self.pinv(u))
        Wk = self._factors[1][:, self._kept]
        return Wk @ (Wk.T @ u)

    def kernel_project(self, v: Tensor) -> Tensor:
        """V − J⁺ J v, the orthogonal projection onto ker J, (N,) → (N,)."""
        _, _, _, m0, V_tail = self._factors if self.solve_route is not Route.LSMR else (0,) * 5
        if self.solve_route is not Route.LSMR and m0 == 0:
            Vk = V_tail[:, self._kept]
            return v - Vk @ (Vk.T @ v)
        return v - self.pinv(self.jv(v))

    def null_space(self) -> Tensor:
        """Orthonormal basis of ker J, shape (N, N − rank J), from a full SVD of the dense J.

        Raises:
            DenseTooLargeError: If J or the N × N basis does not fit ``max_bytes``.
        """
        check_dense_budget(self.where, "null-space basis", (self.N, self.N), self.max_bytes,
                           "Project onto ker J with Linearization.kernel_project instead.")
        Vh = torch.linalg.svd(self._dense_jacobian().to(torch.float64), full_matrices=True)[2]
        return Vh[self.rank:].T.contiguous()

    def metric_solve(self, u: Tensor, alpha: float) -> Tensor:
        """[(1 − α) 𝟙 + α K]⁺ u (factorised routes); at α = 1 the cut K⁺ of the rank decision."""
        _, W, S, _, _ = self._factors
        c, s2 = W.T @ u, S**2
        if alpha < 1.0:
            return W @ (c / ((1.0 - alpha) + alpha * s2)) + (u - W @ c) / (1.0 - alpha)
        kept = self._kept
        return W[:, kept] @ (c[kept] / s2[kept])

    def metric_param(self, u: Tensor, alpha: float) -> Tensor:
        """Jᵀ [(1 − α) 𝟙 + α K]⁺ u, (n·k,) → (N,); J⁺u at α = 1 and Jᵀu at α = 0."""
        if alpha == 0.0:
            return self.jt(u)
        if alpha == 1.0:
            return self.pinv(u)
        if self.solve_route is Route.LSMR:
            # min ‖√α J v − u‖² + (1 − α)‖v‖²  ⇒  v = √α Jᵀ (αK + (1 − α)𝟙)⁻¹ u
            return self._lsmr(u, alpha) / alpha**0.5
        return self.jt(self.metric_solve(u, alpha))

    def left_factors(self) -> tuple[Tensor, Tensor]:
        """(W, S): left singular vectors (n·k, p) and singular values (p,) of J, descending."""
        _, W, S, _, _ = self._factors
        return W, S

    def scaled_decision(self, B: Tensor, rtol: float | None = None) -> tuple[RankDecision, Tensor]:
        """Rank decision and singular values of blockdiag(B) J, B of shape (n, k, k).

        Used for (∇²ₓC)^½ J, whose singular values squared are the nonzero eigenvalues of the
        Gauss–Newton matrix G = Jᵀ ∇²ₓC J: deciding on them avoids squaring the conditioning.
        ``rtol`` is the relative tolerance on those singular values (default: this
        Linearization's).
        """
        rtol = self.rtol if rtol is None else rtol
        n, k = self.problem.n_samples, self.problem.n_outputs
        Bd = torch.block_diag(*B.to(torch.float64)) if n * k > 0 else B.new_zeros(0, 0)
        J = self.jacobian
        if J is not None:
            S = torch.linalg.svdvals(Bd @ J.to(torch.float64))
            d = numerical_rank(S, rtol, shape=(self.m, self.N), dtype=self.problem.dtype)
            return dataclasses.replace(d, method="svd"), S
        KB = Bd @ self.gram_matrix.to(torch.float64) @ Bd.T
        KB = 0.5 * (KB + KB.T)
        lam, U = torch.linalg.eigh(KB)
        op = self.op
        d = rank_from_gram(KB, self.N, rtol, dtype=self.problem.dtype, eig=(lam, U),
                           refine=lambda U0: op.torch_rmatmat(Bd.T @ U0))
        return d, lam.flip(0).clamp_min(0.0).sqrt()

    def _lsmr(self, u: Tensor, alpha: float) -> Tensor:
        b = u.detach().cpu().numpy().astype(np.float64)
        A, damp = (self.op, 0.0) if alpha == 0.0 else (self.op * alpha**0.5, (1.0 - alpha) ** 0.5)
        maxiter = LSMR_ITERATIONS_PER_DIM * min(self.op.shape)
        x, istop, itn, *_, conda, _ = lsmr(A, b, damp=damp, atol=self.lsmr_tol, btol=self.lsmr_tol,
                                           conlim=1.0 / self.lsmr_tol**2, maxiter=maxiter)
        if istop == 7:
            raise ValueError(
                f"{self.where}: LSMR did not converge in {itn} iterations (estimated cond(J) "
                f"{conda:.3g}, tol {self.lsmr_tol:g}). Loosen lsmr_tol or use route 'gram' "
                "(the n·k × n·k Gram matrix).")
        return torch.as_tensor(x, dtype=u.dtype, device=u.device)


def linearize(problem: Problem, theta: Tensor | None = None, *, route: str | Route = Route.AUTO,
              rtol: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
              lsmr_tol: float = LSMR_TOL, where: str = "linearize(problem, theta)",
              validate: bool = True) -> Linearization:
    """The behavior map x(θ) linearised at θ (module docstring).

    Args:
        problem: The model, data and loss.
        theta: Flat parameters (N,); default ``problem.theta``.
        route: "auto", "svd", "gram" or "lsmr" (see ``Route``).
        rtol: Relative tolerance of the rank decision of J (default max(n·k, N)·eps).
        max_bytes: Memory budget of any dense matrix.
        lsmr_tol: ``atol = btol`` of LSMR on the "lsmr" route.
        where: The public call, for messages.
        validate: Check θ (set False when the caller already validated it).

    Returns:
        A Linearization; its parts are computed on first use.

    Raises:
        ValueError: For an unknown route, invalid θ or rtol.
        NonFiniteError: For non-finite outputs.
        DenseTooLargeError: When a route needs a dense matrix beyond ``max_bytes``.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=True).double(), X, torch.zeros(2, 1))
        >>> lin = linearize(p)
        >>> lin.rank, tuple(lin.null_space().shape)          # N = 3, n·k = 2
        (2, (3, 1))
    """
    check_rtol(where, rtol)
    route_ = Route(check_option(where, "route", str(route), [r.value for r in Route]))
    if validate:
        theta = problem.check_theta(where, theta)
    elif theta is None:
        theta = problem.theta
    return Linearization(problem, theta, route=route_, rtol=rtol, max_bytes=max_bytes,
                         lsmr_tol=lsmr_tol, where=where)
