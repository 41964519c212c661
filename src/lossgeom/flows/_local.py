"""The behavior map linearised at one θ: Jᵀu, J⁺u, P u = J J⁺u and K u = J Jᵀu on output vectors.

NOTE [pseudo-inverse routes]
    J⁺u is the minimum-norm solution of J v = P u; it is never formed as an (N, n·k) matrix.

    * ``gram`` (n·k small, the default): K = J Jᵀ (n·k × n·k), eigendecomposition K = U Λ Uᵀ, rank
      decided by ``rank_from_gram``; J⁺u = Jᵀ U_r Λ_r⁻¹ U_rᵀ u (one VJP, or a product with the dense
      J when it fits in ``DENSE_JACOBIAN_BYTES``). When the rank cut falls below the Gram floor
      (NOTE [gram floor]) and J is dense, the decision and the solve switch to an SVD of J for that
      point (route ``svd``); when J is not dense, the small singular values are re-measured by an
      SVD of Jᵀ U₀ (route ``gram+svd``).
    * ``svd``: J = W S Vᵀ by a dense SVD (of R in Jᵀ = QR for wide J); J⁺u = V_r S_r⁻¹ W_rᵀ u.
      The most accurate, and 2–5× the cost of the Gram route (benchmarks/flows.py).
    * ``lsmr`` (n·k large): ``scipy.sparse.linalg.lsmr`` on ``jacobian_operator`` (JVPs and VJPs),
      started at 0, so it converges to the minimum-norm least-squares solution J⁺u. No rank
      decision is made on this route.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import lsmr
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_dense_budget, check_option
from ..curvature._jacobian import (
    has_layerwise_ntk,
    jacobian_blocks,
    jacobian_operator,
    ntk_gram,
)
from ..linalg.operators import CurvatureOperator
from ..linalg.rank import RankDecision, numerical_rank, rank_from_gram
from ..problem import Problem

SOLVERS = ("auto", "gram", "svd", "lsmr")

GRAM_MAX_OUTPUTS = 2048
"""``solver="auto"`` takes the Gram route while n·k ≤ this and LSMR beyond.

Measured (benchmarks/flows.py, tanh MLPs, 1 thread): the Gram route beats LSMR at every size
tried, 4–35× at n·k = 64 (N = 1e3–1e5), and at n·k = 640 LSMR did not reach tol 1e-8 within
1000 iterations (cond J ≈ 1e3–1e5) while the Gram route cost 130–210 gradients. LSMR's cost is
iterations × (JVP + VJP), set by cond J; the Gram route's is a per-sample Jacobian plus an
(n·k)² matrix and its O((n·k)³) eigendecomposition. The crossover is therefore where the Gram
matrix stops being affordable: at 2048 outputs it holds 32 MiB and its eigh takes about 3 s."""

DENSE_JACOBIAN_BYTES = 256 * 1024**2
"""The Gram route keeps J dense (one vmap(jacrev) pass, products by matmul) up to this many bytes;
beyond, K is accumulated over parameter blocks and Jᵀu is a VJP."""

LSMR_TOL = 1e-10
"""Default ``atol = btol`` of LSMR: relative residual of the normal equations."""

LSMR_ITERATIONS_PER_DIM = 20
"""LSMR may take up to this many times min(n·k, N) iterations (each a JVP and a VJP). In exact
arithmetic min(n·k, N) suffice; in floating point LSMR converges like CG on JᵀJ, at a rate set by
cond(J) (about 400 iterations for cond 35 and tol 1e-10, measured in benchmarks/flows.py)."""


# NOTE [gram product]
#     K = J @ J.T with J.T a view of J sends MKL to its A·Aᵀ (syrk) kernel, which with two OpenMP
#     threads on a loaded machine was measured at 28 ms for a 6 × 27 J (6 µs single-threaded);
#     multiplying by a contiguous copy of Jᵀ takes the gemm path and costs one O(n·k·N) copy.


class NonFiniteError(ValueError):
    """The outputs or the Jacobian are not finite at the requested θ."""


class _BelowGramFloor(Exception):
    """Raised by the refine hook of ``rank_from_gram``: switch to the SVD of the dense J."""


def _refuse(_u0: Tensor) -> Tensor:
    raise _BelowGramFloor


@dataclass(eq=False)
class Linearisation:
    """x(θ) and the products with J at one θ (see NOTE [pseudo-inverse routes]).

    Attributes:
        outputs: x(θ), shape (n, k).
        route: "gram", "svd", "gram+svd" or "lsmr".
        decision: Rank decision for J, or None on the LSMR route.
        W: Left singular vectors (n·k, p) (dense routes), columns ordered as ``S``.
        S: Singular values (p,).
        kept: Which singular values lie above the rank tolerance, (p,) bool.
        n_implicit: Columns of W whose right singular vectors are Jᵀ Wᵢ / Sᵢ (not stored).
        V_tail: Right singular vectors (N, p − n_implicit) of the other columns.
        J: The dense Jacobian (n·k, N), or None when it is not held.
        K: The Gram matrix J Jᵀ (n·k, n·k) of the Gram routes, else None.
        op: ``jacobian_operator`` at θ when J is not dense (LSMR, blocked Gram), else None.
        lsmr_tol: ``atol = btol`` of LSMR.
        where: The public call, for messages.
    """

    outputs: Tensor
    route: str
    decision: RankDecision | None
    W: Tensor | None
    S: Tensor | None
    kept: Tensor | None
    n_implicit: int
    V_tail: Tensor | None
    J: Tensor | None
    K: Tensor | None
    op: CurvatureOperator | None
    lsmr_tol: float
    where: str

    # -- products with J ------------------------------------------------------------------------
    def jt(self, u: Tensor) -> Tensor:
        """Jᵀ u, (n·k,) → (N,)."""
        return self.J.T @ u if self.J is not None else self.op.torch_rmatvec(u)

    def jv(self, v: Tensor) -> Tensor:
        """J v, (N,) → (n·k,)."""
        return self.J @ v if self.J is not None else self.op.torch_matvec(v)

    def gram(self, u: Tensor) -> Tensor:
        """K u = J Jᵀ u, (n·k,) → (n·k,)."""
        return self.K @ u if self.K is not None else self.jv(self.jt(u))

    # -- pseudo-inverse, projector, metric solves ---------------------------------------------------
    def pinv(self, u: Tensor) -> Tensor:
        """J⁺ u, the minimum-norm solution of J v = P u, (n·k,) → (N,)."""
        if self.route == "lsmr":
            return self._lsmr(u, 0.0)
        c = torch.where(self.kept, (self.W.T @ u) / torch.where(self.kept, self.S, 1.0), 0.0)
        out = torch.zeros(self._n_params(), dtype=u.dtype, device=u.device)
        m0 = self.n_implicit
        if m0 > 0 and bool(self.kept[:m0].any()):
            s = torch.where(self.kept[:m0], self.S[:m0], 1.0)
            out = out + self.jt(self.W[:, :m0] @ (c[:m0] / s))
        if self.V_tail is not None:
            out = out + self.V_tail @ c[m0:]
        return out

    def project(self, u: Tensor) -> Tensor:
        """P u = J J⁺ u, the orthogonal projection onto ran J, (n·k,) → (n·k,)."""
        if self.route == "lsmr":
            return self.jv(self.pinv(u))
        Wk = self.W[:, self.kept]
        return Wk @ (Wk.T @ u)

    def metric_solve(self, u: Tensor, alpha: float) -> Tensor:
        """[(1 − α) 𝟙 + α K]⁺ u (dense routes); at α = 1 the cut K⁺ of the rank decision."""
        c = self.W.T @ u
        s2 = self.S**2
        if alpha < 1.0:
            return self.W @ (c / ((1.0 - alpha) + alpha * s2)) + (u - self.W @ c) / (1.0 - alpha)
        return self.W[:, self.kept] @ (c[self.kept] / s2[self.kept])

    def metric_param(self, u: Tensor, alpha: float) -> Tensor:
        """Jᵀ [(1 − α) 𝟙 + α K]⁺ u, (n·k,) → (N,); equals J⁺u at α = 1 and Jᵀu at α = 0."""
        if alpha == 0.0:
            return self.jt(u)
        if alpha == 1.0:
            return self.pinv(u)
        if self.route == "lsmr":
            # min ‖√α J v − u‖² + (1 − α)‖v‖²  ⇒  v = √α Jᵀ (αK + (1 − α)𝟙)⁻¹ u
            return self._lsmr(u, alpha) / alpha**0.5
        return self.jt(self.metric_solve(u, alpha))

    # -- helpers --------------------------------------------------------------------------------
    def _n_params(self) -> int:
        return self.J.shape[1] if self.J is not None else self.op.shape[1]

    def _lsmr(self, u: Tensor, alpha: float) -> Tensor:
        b = u.detach().cpu().numpy().astype(np.float64)
        if alpha == 0.0:
            A, damp = self.op, 0.0
        else:
            A = self.op * alpha**0.5
            damp = (1.0 - alpha) ** 0.5
        maxiter = LSMR_ITERATIONS_PER_DIM * min(self.op.shape)
        x, istop, itn, *_, conda, _normx = lsmr(A, b, damp=damp, atol=self.lsmr_tol,
                                                 btol=self.lsmr_tol, conlim=1.0 / self.lsmr_tol**2,
                                                 maxiter=maxiter)
        if istop == 7:
            raise ValueError(
                f"{self.where}: LSMR did not converge in {itn} iterations (estimated cond(J) "
                f"{conda:.3g}, tol {self.lsmr_tol:g}). Loosen lsmr_tol or use solver='gram' "
                "(the n·k × n·k Gram matrix).")
        return torch.as_tensor(x, dtype=u.dtype, device=u.device)

    def rank_dict(self) -> dict | None:
        """The rank decision as a plain dict (None on the LSMR route)."""
        if self.decision is None:
            return None
        d = self.decision
        return {"rank": d.rank, "tol": d.tol, "gap": d.gap, "method": d.method,
                "decided": d.decided, "sigma_max": d.sigma_max, "sigma_r": d.sigma_r,
                "sigma_next": d.sigma_next, "rtol": d.rtol, "reason": d.reason}


def choose_route(where: str, solver: str, m: int) -> str:
    """The route ``solver`` resolves to for n·k = m outputs."""
    check_option(where, "solver", solver, SOLVERS)
    if solver == "auto":
        return "gram" if m <= GRAM_MAX_OUTPUTS else "lsmr"
    return solver


def _thin_svd(J: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD J = W diag(S) Vᵀ, returned as (W, S, V).

    A wide J goes through Jᵀ = QR and R = U_R S V_Rᵀ, so that J = V_R S (Q U_R)ᵀ: the same
    singular values to round-off, and 6× faster than a direct SVD of a 64 × 1e5 J.
    """
    if J.shape[0] <= J.shape[1]:
        Q, R = torch.linalg.qr(J.T)
        UR, S, VRh = torch.linalg.svd(R)
        return VRh.T, S, Q @ UR
    W, S, Vh = torch.linalg.svd(J, full_matrices=False)
    return W, S, Vh.T


def _from_svd(J: Tensor, rank_rtol, dtype, common: dict) -> Linearisation:
    W, S, V = _thin_svd(J)
    d = numerical_rank(S, rank_rtol, shape=tuple(J.shape), dtype=dtype)
    d = RankDecision(**{**d.to_dict(), "method": "svd"})
    return Linearisation(route="svd", decision=d, W=W, S=S, kept=S > d.tol, n_implicit=0,
                         V_tail=V, J=J, K=None, op=None, **common)


def linearise(problem: Problem, theta: Tensor, *, solver: str = "auto",
              rank_rtol: float | None = None, lsmr_tol: float = LSMR_TOL,
              where: str = "linearise(problem, theta)") -> Linearisation:
    """Build the products with J at θ along the route ``solver`` resolves to.

    Raises:
        ValueError: For an unknown solver.
        NonFiniteError: For non-finite outputs, Jacobian or Gram entries.
    """
    n, k, N = problem.n_samples, problem.n_outputs, problem.n_params
    m = n * k
    route = choose_route(where, solver, m)
    with torch.no_grad():
        x = problem.output_fn(theta)
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"{where}: the outputs x(θ) are not finite at this θ.")
    common = {"outputs": x, "lsmr_tol": float(lsmr_tol), "where": where}
    if route == "lsmr":
        op = jacobian_operator(problem, theta)
        return Linearisation(route="lsmr", decision=None, W=None, S=None, kept=None,
                             n_implicit=0, V_tail=None, J=None, K=None, op=op, **common)
    dtype = problem.dtype
    if route == "svd":
        check_dense_budget(where, "Jacobian (solver='svd')", (m, N), DEFAULT_MAX_BYTES,
                           "Use solver='gram' or solver='lsmr'.")
    if route == "svd" or (8 * m * N <= DENSE_JACOBIAN_BYTES and not has_layerwise_ntk(problem)):
        J = jacobian_blocks(problem, theta, list(range(len(problem.param_numels))))
        if not bool(torch.isfinite(J).all()):
            raise NonFiniteError(f"{where}: the Jacobian J = ∂x/∂θ has non-finite entries at "
                                 "this θ.")
        if route == "svd":
            return _from_svd(J, rank_rtol, dtype, common)
        K = J @ J.T.contiguous()  # NOTE [gram product]
        K = 0.5 * (K + K.T)
        lam, U = torch.linalg.eigh(K)
        try:
            d = rank_from_gram(K, N, rank_rtol, dtype=dtype, refine=_refuse, eig=(lam, U))
        except _BelowGramFloor:
            return _from_svd(J, rank_rtol, dtype, common)
        S = lam.flip(0).clamp_min(0.0).sqrt()
        return Linearisation(route="gram", decision=d, W=U.flip(1), S=S, kept=S > d.tol,
                             n_implicit=m, V_tail=None, J=J, K=K, op=None, **common)

    # J too large to hold, or an MLP whose Gram matrix is built layer by layer: Gram matrix,
    # VJPs, SVD of Jᵀ U₀ below the floor
    K = ntk_gram(problem, theta)
    if not bool(torch.isfinite(K).all()):
        raise NonFiniteError(f"{where}: the Gram matrix J Jᵀ has non-finite entries at this θ.")
    op = jacobian_operator(problem, theta)
    lam, U = torch.linalg.eigh(K)
    box: dict[str, Tensor] = {}

    def refine(U0: Tensor) -> Tensor:
        box["U0"], box["B"] = U0, op.torch_rmatmat(U0)
        return box["B"]

    d = rank_from_gram(K, N, rank_rtol, dtype=dtype, refine=refine, eig=(lam, U))
    W, S = U.flip(1), lam.flip(0).clamp_min(0.0).sqrt()
    n_imp, V_tail, route = m, None, "gram"
    if box:  # Jᵀ U₀ = P_B S_B Z_Bᵀ: left vectors U₀ Z_B, right vectors P_B, values S_B
        U0, B = box["U0"], box["B"].to(W.dtype)
        PB, SB, ZBh = torch.linalg.svd(B, full_matrices=False)
        n_imp = m - U0.shape[1]
        W = torch.cat([W[:, :n_imp], U0 @ ZBh.T], dim=1)
        S = torch.cat([S[:n_imp], SB])
        V_tail, route = PB, "gram+svd"
    return Linearisation(route=route, decision=d, W=W, S=S, kept=S > d.tol, n_implicit=n_imp,
                         V_tail=V_tail, J=None, K=K, op=op, **common)
