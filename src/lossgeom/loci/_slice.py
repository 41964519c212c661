"""Last-layer slices of wide networks (§3.5, Props 5.7–Cor. 5.16).

Split θ = (θ', V) with V = [W_ℓ b_ℓ] (k × (n_{ℓ−1}+β)) the output layer. On the fibre θ' = const,
x = (V Ã)ᵀ with Ã = [A_{ℓ−1}; 1ᵀ] ((n_{ℓ−1}+β) × n, no ones row without an output bias), so for mse
L = ‖V Ã − Yᵀ‖²_F is a quadratic function of V (Prop. 5.7) with quadratic part Q(V) = ‖V Ã‖²_F.

* rank Q = k · rank Ã (Lemma 5.14, exact), dim ker Q = k (n_{ℓ−1} + β − rank Ã) ≥ k (n_{ℓ−1} − rank A_{ℓ−1}).
* ker Q = {V : V Ã = 0} leaves every output unchanged, so L is constant on θ + ker Q at *every* θ;
  at a critical point p that is the minimum set of the fibre quadratic (Thm 5.15).
* rank Ã = n (Lemma 5.8's full-rank set): the fibre minimum is 0, and the segment from θ to the
  nearest fibre minimizer θ* is a line to a global minimum on which L(t) = (1 − t)² L(θ) decreases
  strictly (Cor. 5.9).
* ker Q is isotropic for ∇²L, so ∇²L has at least 2·dim ker Q − N zero eigenvalues anywhere and at
  least dim ker Q at semidefinite points (Cor. 5.16, with the caveat of §3.5: for k > 1 it
  fails at indefinite points, e.g. star points).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_rtol, generator
from ..analysis import analyze, perfect_fit
from ..errors import NotCriticalError
from ..linalg.rank import null_space, numerical_rank
from ..problem import Problem
from ..report import Report
from ..results import Result, internal
from ..tolerances import default_rank_rtol
from ._network import Layout, hidden_activations, network_layout

__all__ = ["REGIMES", "SliceReport", "last_layer_slice", "width_regime"]

REGIMES = ("not wide", "mildly", "very", "extremely wide")
"""Width regimes of §3.2, in the API's spelling (see ``width_regime``)."""


def width_regime(widths: list[int] | tuple[int, ...], n_samples: int) -> str:
    """The width regime of §3.2 for widths [n_0, …, n_ℓ] and n samples.

    * "not wide": N ≤ n·k (not overparameterized).
    * "mildly": N > n·k, but some hidden layer has at most n units.
    * "very": every hidden layer wider than n (width linear in n; N quadratic in n).
    * "extremely wide": every hidden layer has at least n² units ("polynomial in n"; the
      paper's regime is asymptotic, n² is lossgeom's stated cut for a finite network).

    Args:
        widths: [n_0, n_1, …, n_ℓ] (biases counted in every layer for N).
        n_samples: n.

    Returns:
        One of ``REGIMES``.

    Example:
        >>> width_regime([2, 6, 6, 1], 4), width_regime([2, 12, 12, 1], 3)
        ('very', 'extremely wide')
    """
    widths = list(widths)
    N = sum(widths[m] * (widths[m - 1] + 1) for m in range(1, len(widths)))
    hidden = widths[1:-1]
    if N <= n_samples * widths[-1]:
        return "not wide"
    if not hidden or min(hidden) <= n_samples:
        return "mildly"
    if min(hidden) < n_samples ** 2:
        return "very"
    return "extremely wide"


@dataclass(frozen=True)
class SliceReport(Result):
    """The last-layer slice through θ (§3.5); tensors are left out of ``to_dict``.

    Attributes:
        n_params: N.
        n_samples: n.
        n_outputs: k.
        last_hidden_width: n_{ℓ−1}.
        output_bias: β = 1 with an output bias, else 0.
        rank_hidden: Rank decision of A_{ℓ−1} {rank, tol, gap, decided}.
        rank_augmented: Rank decision of Ã = [A_{ℓ−1}; 1ᵀ] {rank, tol, gap, decided}.
        full_rank: rank Ã = n (Lemma 5.8's full-rank set: the fibre minimum is 0).
        rank_q: k · rank Ã (Lemma 5.14).
        dim_ker_q: k (n_{ℓ−1} + β − rank Ã) (Thm 5.15).
        dim_ker_q_lower: k (n_{ℓ−1} − rank A_{ℓ−1}), the bound of Thm 5.15 without the ones row.
        uniform_dim: max(0, k (n_{ℓ−1} + β − n)) (Thm 5.17, uniform in the point).
        wide_enough: n_{ℓ−1} ≥ n (Cor. 5.9's width condition).
        regime: "not wide" | "mildly" | "very" | "extremely wide" (``width_regime``).
        loss: L(θ).
        fibre_quadratic: L is exactly quadratic on the fibre (mse; Prop. 5.7).
        fibre_minimum: min of L over the fibre (mse), else None.
        level_set: {constant, max_change, tol, n_probes, step_norm, max_output_change}: L and the
            outputs at random points θ + Bc of θ + ker Q.
        decreasing_line: Cor. 5.9 {t, loss, closed_form_error, strictly_decreasing, final_loss,
            length} along θ + t(θ* − θ), or None; ``decreasing_line_reason`` says why.
        decreasing_line_reason: Why the line is (not) given.
        critical: The criticality test of ``analyze``.
        grad_norm: ‖∇L(θ)‖.
        criticality: ``Report.criticality``.
        inertia: Measured Hessian inertia [positive, negative, zero] (None entries if undecided).
        inertia_tol: Its eigenvalue tolerance.
        inertia_gap: Its gap.
        inertia_rtol: Its relative tolerance.
        n_zero: Measured zero eigenvalues (inertia[2]).
        semidefinite: No negative (or no positive) eigenvalue; None if undecided.
        isotropic_bound: 2·dim ker Q − N (a lower bound on n_zero at every point).
        cor_5_16: {applies, holds, counterexample, reason}: n_zero ≥ dim ker Q is asserted only at
            critical semidefinite points; a critical indefinite point with fewer zeros is shown
            as a counterexample (k > 1, §3.5).
        kernel_basis: Orthonormal basis of ker Q in parameter coordinates, shape (N, dim ker Q).
        line_target: θ* (N,), the fibre minimizer nearest θ, or None.
    """

    n_params: int
    n_samples: int
    n_outputs: int
    last_hidden_width: int
    output_bias: int
    rank_hidden: dict
    rank_augmented: dict
    full_rank: bool
    rank_q: int
    dim_ker_q: int
    dim_ker_q_lower: int
    uniform_dim: int
    wide_enough: bool
    regime: str
    loss: float
    fibre_quadratic: bool
    fibre_minimum: float | None
    level_set: dict
    decreasing_line: dict | None
    decreasing_line_reason: str
    critical: bool
    grad_norm: float
    criticality: dict
    inertia: list
    inertia_tol: float
    inertia_gap: float | None
    inertia_rtol: float
    n_zero: int | None
    semidefinite: bool | None
    isotropic_bound: int
    cor_5_16: dict
    kernel_basis: Tensor = internal()
    line_target: Tensor | None = internal(default=None)


def _rank_entry(d) -> dict:
    return {"rank": d.rank, "tol": d.tol, "gap": d.gap, "decided": d.decided}


def _output_rows_basis(layout: Layout, Z: Tensor) -> Tensor:
    """Embed {e_p zᵀ : p < k, z ∈ cols(Z)} (rows of [W_ℓ b_ℓ]) into θ coordinates, (N, k·r)."""
    out = layout.layers[-1]
    k, h = out.n_out, out.n_in
    r = Z.shape[1]
    B = torch.zeros(layout.n_params, k * r, dtype=torch.float64)
    w0 = out.weight.start
    for p in range(k):
        cols = slice(p * r, (p + 1) * r)
        B[w0 + p * h: w0 + (p + 1) * h, cols] = Z[:h]
        if out.bias is not None:
            B[out.bias.start + p, cols] = Z[h]
    return B


def _level_set_check(problem: Problem, theta: Tensor, B: Tensor, gen, n_probes: int,
                     probe_size: float) -> dict:
    """L and outputs at θ + B c, c random with ‖B c‖ = probe_size."""
    N = problem.n_params
    L0 = float(problem.loss(theta))
    x0 = problem.outputs(theta)
    tol = (default_rank_rtol((problem.n_samples * problem.n_outputs, N), problem.dtype)
           * max(1.0, abs(L0)) * max(1.0, probe_size))
    if B.shape[1] == 0:
        return {"constant": True, "max_change": 0.0, "tol": tol, "n_probes": 0,
                "step_norm": probe_size, "max_output_change": 0.0}
    changes, out_changes = [], []
    for _ in range(n_probes):
        c = torch.randn(B.shape[1], generator=gen, dtype=torch.float64)
        step = (B @ c) * (probe_size / float(torch.linalg.norm(c)))
        moved = theta + step.to(theta)
        changes.append(abs(float(problem.loss(moved)) - L0))
        out_changes.append(float((problem.outputs(moved) - x0).abs().max()))
    return {"constant": max(changes) <= tol, "max_change": max(changes), "tol": tol,
            "n_probes": n_probes, "step_norm": probe_size, "max_output_change": max(out_changes)}


def _fibre(layout: Layout, problem: Problem, theta: Tensor, A_aug: Tensor
           ) -> tuple[float | None, Tensor | None]:
    """(fibre minimum, nearest fibre minimizer θ*) for mse; (None, None) otherwise."""
    if problem.loss_fn.name != "mse":
        return None, None
    out = layout.layers[-1]
    theta64 = theta.detach().cpu().to(torch.float64)
    V = layout.weight(theta64, layout.depth)
    if out.bias is not None:
        V = torch.cat([V, layout.bias(theta64, layout.depth)[:, None]], dim=1)
    Y = problem.targets.T.cpu().to(torch.float64)
    R = V @ A_aug - Y                                      # (k, n) residual on the fibre
    pinv = torch.linalg.pinv(A_aug, rtol=default_rank_rtol(tuple(A_aug.shape)))
    V_star = V - R @ pinv
    R_star = V_star @ A_aug - Y
    scale = problem.loss_fn.scale(problem.n_samples, problem.n_outputs)
    target = theta64.clone()
    h = out.n_in
    target[out.weight] = V_star[:, :h].reshape(-1)
    if out.bias is not None:
        target[out.bias] = V_star[:, h]
    return scale * float((R_star ** 2).sum()), target.to(theta)


def _decreasing_line(problem: Problem, theta: Tensor, target: Tensor | None, full_rank: bool,
                     n_points: int = 11) -> tuple[dict | None, str]:
    if target is None:
        return None, "the fibre is a quadratic only for mse (Prop. 5.7)"
    if not full_rank:
        return None, ("rank Ã < n: the fibre minimum need not be a global minimum (Cor. 5.9 "
                      "needs the full-rank set)")
    x0 = problem.outputs(theta)
    if perfect_fit(problem, x0).holds:
        return None, "θ is already a global minimum (perfect fit)"
    L0 = float(problem.loss(theta))
    ts = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    losses = [float(problem.loss(theta + float(t) * (target - theta))) for t in ts]
    closed = [(1.0 - float(t)) ** 2 * L0 for t in ts]
    err = max(abs(a - b) for a, b in zip(losses, closed, strict=True))
    line = {"t": ts.tolist(), "loss": losses, "closed_form_error": err,
            "strictly_decreasing": all(b < a for a, b in zip(losses, losses[1:], strict=False)),
            "final_loss": losses[-1], "length": float(torch.linalg.norm(target - theta))}
    return line, "rank Ã = n: the segment to the nearest fibre minimizer θ* (Cor. 5.9)"


def last_layer_slice(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    rtol: float | None = None,
    rank_rtol: float | None = None,
    rng: torch.Generator | int | None = 0,
    n_probes: int = 4,
    probe_size: float = 3.0,
    require_critical: bool = False,
    method: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> SliceReport:
    """The last-layer slice through θ: Q, ker Q, Lemma 5.8, Cor. 5.9, Thm 5.15, Cor. 5.16.

    See the module docstring for the statements. The Hessian inertia comes from
    ``lossgeom.analyze`` (dense for small N) with relative tolerance ``rtol``.

    Args:
        problem: An MLP problem (``lossgeom.mlp``) with at least one hidden layer.
        theta: Flat parameters (N,); default ``problem.theta``.
        rtol: Relative inertia tolerance of ``analyze`` (the theory's checks use 1e-9).
        rank_rtol: Relative tolerance of the rank of Ã and A_{ℓ−1}; default max(shape)·eps.
        rng: Seed or generator of the level-set probes.
        n_probes: Random points of θ + ker Q at which L is compared with L(θ).
        probe_size: Norm of each probe step (§3.5 uses about 3).
        require_critical: Raise NotCriticalError if θ is not critical (Thm 5.15's hypothesis).
        method: Route of ``analyze``: "auto", "dense" or "operator".
        max_bytes: Memory budget of dense matrices.

    Returns:
        A SliceReport.

    Raises:
        NotCriticalError: With ``require_critical`` at a non-critical θ (carries ‖∇L‖ and tol).
        TypeError: For a model that is not an nn.Sequential MLP.
        ValueError: For invalid θ or tolerances, no hidden layer, n_probes < 0 or probe_size ≤ 0.

    Example:
        >>> import torch, lossgeom as lg
        >>> from lossgeom.loci import star_point
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(4, 3, generator=g, dtype=torch.float64)
        >>> p = lg.Problem(lg.mlp([3, 6, 1]), X, torch.randn(4, 1, generator=g, dtype=torch.float64))
        >>> s = last_layer_slice(p, star_point(p, 1, rng=0), rtol=1e-9)
        >>> s.dim_ker_q, s.inertia, s.level_set["constant"]      # §3.5, [3,6,1] row
        (6, [7, 6, 18], True)
    """
    where = "last_layer_slice(problem, theta)"
    check_rtol(where, rtol)
    check_rtol(where, rank_rtol, "rank_rtol")
    if not isinstance(n_probes, int) or n_probes < 0:
        raise ValueError(f"{where}: n_probes must be an int >= 0, got {n_probes!r}.")
    if not probe_size > 0:
        raise ValueError(f"{where}: probe_size must be > 0, got {probe_size!r}.")
    layout = network_layout(problem, where)
    if layout.n_hidden < 1:
        raise ValueError(f"{where}: widths {list(layout.widths)} have no hidden layer; the "
                         "last-layer slice needs one (depth ℓ ≥ 2).")
    theta = problem.check_theta(where, theta)
    gen = generator(where, rng)
    report = analyze(problem, theta, method=method, rtol=rtol, max_bytes=max_bytes)
    critical = report.criticality.critical
    if require_critical and not critical:
        raise NotCriticalError(
            f"{where}: θ is not critical (‖∇L‖ = {report.grad_norm:.3g} > tol = "
            f"{report.criticality.tol:.3g}); Thm 5.15 is a statement about critical points. "
            "Reach one with lossgeom.find_critical_point, or pass require_critical=False.",
            grad_norm=report.grad_norm, tol=report.criticality.tol, theta=theta)

    n, k, N = problem.n_samples, problem.n_outputs, problem.n_params
    h, beta = layout.widths[-2], layout.beta
    A = hidden_activations(layout, problem, theta)[-1].T.cpu().to(torch.float64)  # (h, n)
    A_aug = torch.cat([A, torch.ones(1, n, dtype=torch.float64)]) if beta else A
    rank_h = numerical_rank(A, rank_rtol)
    rank_a = numerical_rank(A_aug, rank_rtol)
    Z = null_space(A_aug.T, rank_rtol)                                            # (h+β, ·)
    B = _output_rows_basis(layout, Z)
    dim_ker = k * (h + beta - rank_a.rank)

    fibre_min, target = _fibre(layout, problem, theta, A_aug)
    full_rank = rank_a.rank == n
    line, line_reason = _decreasing_line(problem, theta, target, full_rank)
    level = _level_set_check(problem, theta, B, gen, n_probes, float(probe_size))

    inert = report.hessian.inertia.as_list()
    n_zero = inert[2]
    semidef = None if None in inert else (inert[1] == 0 or inert[0] == 0)
    cor = _cor_5_16(critical, semidef, n_zero, dim_ker, report)
    return SliceReport(
        n_params=N, n_samples=n, n_outputs=k, last_hidden_width=h, output_bias=beta,
        rank_hidden=_rank_entry(rank_h), rank_augmented=_rank_entry(rank_a), full_rank=full_rank,
        rank_q=k * rank_a.rank, dim_ker_q=dim_ker, dim_ker_q_lower=k * (h - rank_h.rank),
        uniform_dim=max(0, k * (h + beta - n)), wide_enough=h >= n,
        regime=width_regime(layout.widths, n), loss=report.loss,
        fibre_quadratic=problem.loss_fn.name == "mse", fibre_minimum=fibre_min, level_set=level,
        decreasing_line=line, decreasing_line_reason=line_reason, critical=critical,
        grad_norm=report.grad_norm, criticality=report.criticality, inertia=list(inert),
        inertia_tol=report.hessian.tol, inertia_gap=report.hessian.gap,
        inertia_rtol=report.hessian.rtol, n_zero=n_zero, semidefinite=semidef,
        isotropic_bound=2 * dim_ker - N, cor_5_16=cor, kernel_basis=B.to(theta),
        line_target=target,
    )


def _cor_5_16(critical: bool, semidef: bool | None, n_zero: int | None, dim_ker: int,
              report: Report) -> dict:
    if n_zero is None:
        return {"applies": False, "holds": None, "counterexample": False,
                "reason": f"the Hessian inertia is undecided (route {report.hessian.method})"}
    holds = n_zero >= dim_ker
    if not critical:
        return {"applies": False, "holds": holds, "counterexample": False,
                "reason": "θ is not critical: Cor. 5.16 says nothing"}
    if semidef:
        return {"applies": True, "holds": holds, "counterexample": False,
                "reason": "critical and semidefinite: ker Q is isotropic, hence in ker ∇²L"}
    return {"applies": False, "holds": holds, "counterexample": not holds,
            "reason": ("critical but indefinite: an isotropic subspace only forces "
                       "2·dim ker Q − N zeros" + (f"; here {n_zero} < dim ker Q = {dim_ker}: "
                                                   "Cor. 5.16 fails (§3.5, k > 1)"
                                                   if not holds else ""))}
