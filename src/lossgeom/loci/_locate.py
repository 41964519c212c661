"""locate: which star locus S_i or core C_{i,j} θ lies on, and predicted vs measured curvature.

Predictions (§3.4, [D], verified in float64). Write g_x = ∇ℓ_x(c*) for the per-sample output
gradients at the constant output, ã_{i−1}(x) for the activation entering layer i (a trailing 1 in
(B)), P = Σ_x ∇²ℓ_x (k × k) and

    M_i = Σ_x ã_{i−1}(x) g_xᵀ,  ρ_i = rank M_i;   T_i = σ'(0)^{ℓ−i} W_{ℓ−1} ⋯ W_{i+1},  τ_i = rank T_i.

* On S_i∖C the Hessian is P on b_ℓ (B) plus the mixed block M_iᵀ ⊗ T_i between W_ℓ and (W_i, b_i):
  its non-zero eigenvalues are those of P and ±s_a(M_i)·s_b(T_i), so the inertia is
  (ρ_c + ρ_iτ_i, ρ_iτ_i, N − ρ_c − 2ρ_iτ_i) with ρ_c = rank P in (B) and 0 in (A).
* On a core (two or more zeroed hidden layers) only the output block survives: (B) the eigenvalues
  of P times 1 + ‖a_{ℓ−1}‖² (a_{ℓ−1} = 0 when σ(0) = 0; for scalar mse-sum the single eigenvalue is
  2n), inertia (ρ_c, 0, N − ρ_c); (A) ∇²L = 0.

Activation assumptions (§3.7): σ smooth (a ReLU kink leaves no Hessian on S: no prediction);
σ(0) = 0 (needed for criticality in (A); in (B) its failure changes the core eigenvalue and leaves
S_i∖C without a closed form); σ'(0) ≠ 0 (otherwise T_i = 0 and S_i∖C is degenerate, not a saddle).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
from torch import Tensor

from .._checks import DEFAULT_MAX_BYTES, check_option, check_rtol
from ..analysis import analyze
from ..linalg.rank import numerical_rank
from ..problem import Problem
from ..report import Report
from ..results import Result
from ..tolerances import default_rank_rtol
from ._construct import locus_constraints, locus_dimension
from ._network import Layout, hidden_activations, network_layout, optimal_constant

__all__ = ["LocusReport", "locate"]


@dataclass(frozen=True)
class LocusReport(Result):
    """Where θ lies among the critical loci of §3.3 and what its Hessian should look like.

    Attributes:
        convention: "B" (biases everywhere), "A" (no biases) or None (mixed: loci undefined).
        widths: [n_0, …, n_ℓ].
        n_params: N.
        n_samples: n.
        n_outputs: k.
        activation: {name, value_at_zero, slope_at_zero, smooth}.
        assumptions: [{assumption, holds, consequence}] for σ smooth, σ(0) = 0, σ'(0) ≠ 0, the
            bias convention and the loss.
        distances: Distance from θ to every S_i ("S_1", …) and C_{i,j} ("C_{1,2}", …).
        on_tol: θ is on a locus when its distance is at most this.
        star_layers: Hidden layers i with θ ∈ S_i.
        core_pairs: Pairs [i, j] with θ ∈ C_{i,j}.
        dead_pairs: Layers j with hidden layers j, j+1 dead and the output layer live (§3.3:
            a critical family that is *not* Cooper's star locus).
        locus: "S_i", "C_{i,j}", "S_{i,j,…}" (a higher core), "dead pair (j, j+1)" or "none".
        locus_dimension: Dimension of that locus (§3.3), None for "none"/dead pairs.
        loss: L(θ).
        grad_norm: ‖∇L(θ)‖.
        critical: The criticality test of ``analyze``.
        criticality: ``Report.criticality`` {grad_norm, tol, scale, rtol, critical}.
        predicted_critical: What the theory predicts (None where it says nothing).
        predicted_critical_reason: Why.
        prediction: {inertia, eigenvalues (non-zero, descending), rho_c, rho_i, tau_i,
            rank_mixed, formula, eigenvalue_error} or None; eigenvalue_error is
            max |λ_pred − λ_meas| over the sorted full spectra (when ``analyze`` returns all
            eigenvalues).
        prediction_reason: Why there is (no) prediction.
        measured: Hessian {inertia, tol, gap, rtol, decided, method, max_abs_eigenvalue,
            top_eigenvalues, bottom_eigenvalues} from ``analyze``.
        agrees: predicted inertia == measured inertia (None if either is missing).
        kind: ``Report.kind``.
    """

    convention: str | None
    widths: list[int]
    n_params: int
    n_samples: int
    n_outputs: int
    activation: dict
    assumptions: list[dict]
    distances: dict[str, float]
    on_tol: float
    star_layers: list[int]
    core_pairs: list[list[int]]
    dead_pairs: list[int]
    locus: str
    locus_dimension: int | None
    loss: float
    grad_norm: float
    critical: bool
    criticality: dict
    predicted_critical: bool | None
    predicted_critical_reason: str
    prediction: dict | None
    prediction_reason: str
    measured: dict
    agrees: bool | None
    kind: str

    @property
    def failed_assumptions(self) -> list[str]:
        """The assumptions that do not hold, by name."""
        return [a["assumption"] for a in self.assumptions if not a["holds"]]


def _assumptions(layout: Layout, problem: Problem) -> list[dict]:
    act, conv = layout.activation, layout.convention
    lf = problem.loss_fn
    if conv == "A":
        zero_msg = ("f ≢ 0 on S_i: star points are not critical (Theorem 3.1 needs σ(0) = 0 "
                    "without biases)")
    else:
        zero_msg = ("activations after a zeroed layer are a non-zero constant a: points stay "
                    "critical, the core eigenvalues scale by 1 + ‖a_{ℓ−1}‖², and S_i∖C has no "
                    "closed-form inertia")
    return [
        {"assumption": "σ smooth at 0", "holds": act.smooth,
         "consequence": "" if act.smooth else (
             f"{act.name} is not differentiable at 0 and on S every later pre-activation is "
             "exactly 0: the Hessian does not exist there, so no star/core prediction is made "
             "(the measured 'Hessian' uses autograd's one-sided derivative)")},
        {"assumption": "σ(0) = 0", "holds": act.vanishes_at_zero,
         "consequence": "" if act.vanishes_at_zero else zero_msg},
        {"assumption": "σ'(0) ≠ 0", "holds": not act.flat_at_zero,
         "consequence": "" if not act.flat_at_zero else (
             "T_i = 0: the mixed block vanishes and S_i∖C points are degenerate (inertia "
             "(ρ_c, 0, N − ρ_c)), not strict saddles")},
        {"assumption": "biases in every layer (B) or in none (A)", "holds": conv is not None,
         "consequence": "" if conv is not None else "the star and core loci are not defined"},
        {"assumption": "per-sample convex loss", "holds": lf.is_builtin,
         "consequence": "" if lf.is_builtin else (
             "a custom loss: the block structure of ∇²ₓC is unknown, no prediction is made")},
    ]


def _output_hessian_sum(problem: Problem, x: Tensor) -> Tensor:
    """P = Σ_x ∇²ℓ_x at the outputs x (n, k): the sum of the per-sample (k, k) blocks."""
    blocks = problem.loss_fn.output_hessian_blocks(x, problem.targets.to(x))
    return blocks.sum(dim=0).to(torch.float64)


def _rank_entry(d) -> dict:
    return {"rank": d.rank, "tol": d.tol, "gap": d.gap, "decided": d.decided}


def _star_prediction(layout: Layout, problem: Problem, theta: Tensor, acts: list[Tensor],
                     i: int, x: Tensor) -> dict:
    """Closed-form spectrum on S_i∖C (σ(0) = 0): P on b_ℓ and ±s(M_i)s(T_i)."""
    conv, ell, N = layout.convention, layout.depth, layout.n_params
    g = problem.loss_fn.output_grad(x, problem.targets.to(x)).to(torch.float64)
    a_prev = acts[i - 1].to(torch.float64)
    if conv == "B":
        a_prev = torch.cat([a_prev, torch.ones_like(a_prev[:, :1])], dim=1)
    M = a_prev.T @ g
    T = torch.eye(layout.widths[ell - 1], dtype=torch.float64)
    for m in range(ell - 1, i, -1):
        T = T @ layout.weight(theta, m).to(torch.float64)
    T = layout.activation.slope_at_zero ** (ell - i) * T
    rho, tau = numerical_rank(M), numerical_rank(T)
    sM, sT = torch.linalg.svdvals(M)[:rho.rank], torch.linalg.svdvals(T)[:tau.rank]
    mixed = torch.outer(sM, sT).reshape(-1)
    eig_p = torch.linalg.eigvalsh(_output_hessian_sum(problem, x)) if conv == "B" else None
    rho_c = numerical_rank(eig_p.clamp_min(0)).rank if conv == "B" else 0
    head = eig_p[eig_p.numel() - rho_c:] if conv == "B" else torch.zeros(0, dtype=torch.float64)
    eigs = torch.sort(torch.cat([head, mixed, -mixed]), descending=True).values
    r = rho.rank * tau.rank
    return {"inertia": [rho_c + r, r, N - rho_c - 2 * r], "eigenvalues": eigs.tolist(),
            "rho_c": rho_c, "rho_i": _rank_entry(rho), "tau_i": _rank_entry(tau), "rank_mixed": r,
            "formula": "(ρ_c + ρ_iτ_i, ρ_iτ_i, N − ρ_c − 2ρ_iτ_i); eigenvalues eig P, ±s(M_i)s(T_i)"}


def _core_prediction(layout: Layout, problem: Problem, acts: list[Tensor], x: Tensor) -> dict:
    """Core spectrum: (B) eig P · (1 + ‖a_{ℓ−1}‖²); (A) ∇²L = 0."""
    N = layout.n_params
    if layout.convention == "A":
        return {"inertia": [0, 0, N], "eigenvalues": [], "rho_c": 0, "rho_i": None,
                "tau_i": None, "rank_mixed": 0, "formula": "∇²L = 0 (convention A)"}
    a_last = acts[-1][0].to(torch.float64)
    eig_p = torch.linalg.eigvalsh(_output_hessian_sum(problem, x))
    rho_c = numerical_rank(eig_p.clamp_min(0)).rank
    eigs = (eig_p[eig_p.numel() - rho_c:] * (1 + float(a_last @ a_last))).flip(0)
    return {"inertia": [rho_c, 0, N - rho_c], "eigenvalues": eigs.tolist(), "rho_c": rho_c,
            "rho_i": None, "tau_i": None, "rank_mixed": 0,
            "formula": "(ρ_c, 0, N − ρ_c); eigenvalues eig(Σ_x ∇²ℓ_x) · (1 + ‖a_{ℓ−1}‖²)"}


def _measured(report: Report) -> dict:
    h = report.hessian
    extremes = [abs(v) for v in (h.top_eigenvalues[:1] + h.bottom_eigenvalues[:1])]
    return {"inertia": h.inertia.as_list(), "tol": h.tol, "gap": h.gap, "rtol": h.rtol,
            "decided": h.decided, "method": h.method, "n_matvec": h.n_matvec,
            "residual": h.certificate.residual if h.certificate else None,
            "max_abs_eigenvalue": max(extremes) if extremes else 0.0,
            "top_eigenvalues": list(h.top_eigenvalues),
            "bottom_eigenvalues": list(h.bottom_eigenvalues)}


def locate(
    problem: Problem,
    theta: Tensor | None = None,
    *,
    rtol: float | None = None,
    locus_rtol: float | None = None,
    method: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LocusReport:
    """Which S_i / C_{i,j} θ lies on, whether it is critical, predicted vs measured inertia.

    The measured side is ``lossgeom.analyze`` (dense Hessian for N ≤ ``critical.DENSE_MAX_N``);
    on a locus with a prediction at larger N (or with method="operator") it is the randomized
    low-rank Hessian of ``_lowrank`` (about 2·rank HVPs, method "low_rank") with the criticality
    test of ``analyze``. The predicted side is the closed form of §3.4 computed from the data and
    the weights at θ (see the module docstring). Failed activation assumptions are reported
    instead of predictions.

    Args:
        problem: An MLP problem (``lossgeom.mlp``).
        theta: Flat parameters (N,); default ``problem.theta``.
        rtol: Relative inertia tolerance of ``analyze`` (the theory's checks use 1e-9).
        locus_rtol: θ is on a locus when its distance is at most locus_rtol·max(1, ‖θ‖);
            default N·eps.
        method: "auto", "dense" (always ``analyze``'s dense Hessian) or "operator".
        max_bytes: Memory budget of dense matrices.

    Returns:
        A LocusReport.

    Raises:
        TypeError: For a model that is not an nn.Sequential MLP.
        ValueError: For invalid θ, rtol, locus_rtol or method.

    Example:
        >>> import torch, lossgeom as lg
        >>> from lossgeom.loci import core_point
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(5, 3, generator=g, dtype=torch.float64)
        >>> Y = torch.randn(5, 1, generator=g, dtype=torch.float64)
        >>> p = lg.Problem(lg.mlp([3, 4, 5, 4, 1]), X, Y)
        >>> r = locate(p, core_point(p, 1, 2, rng=0), rtol=1e-9)
        >>> r.locus, r.measured["inertia"], round(r.prediction["eigenvalues"][0], 10)  # 2n = 10
        ('C_{1,2}', [1, 0, 69], 10.0)
    """
    where = "locate(problem, theta)"
    check_rtol(where, rtol)
    check_rtol(where, locus_rtol, "locus_rtol")
    layout = network_layout(problem, where)
    theta = problem.check_theta(where, theta)
    check_option(where, "method", method, ("auto", "dense", "operator"))
    conv, N, ell = layout.convention, layout.n_params, layout.depth
    # the predictions work on small matrices: float64 on the CPU, whatever the problem's device
    acts = [a.detach().cpu().to(torch.float64) for a in hidden_activations(layout, problem, theta)]
    x = problem.output_fn(theta).detach().cpu().to(torch.float64)
    theta64 = theta.detach().cpu().to(torch.float64)
    on_tol = ((locus_rtol if locus_rtol is not None else default_rank_rtol((N,), problem.dtype))
              * max(1.0, float(torch.linalg.norm(theta64))))

    distances: dict[str, float] = {}
    star_layers: list[int] = []
    dead_pairs: list[int] = []
    if conv is not None:
        c_star = optimal_constant(problem, where) if conv == "B" else None
        hidden = range(1, ell)
        for layers in [[i] for i in hidden] + [list(p) for p in combinations(hidden, 2)]:
            mask, values = locus_constraints(layout, layers, c_star)
            d = float(torch.linalg.norm((theta64 - values)[mask]))
            name = f"S_{layers[0]}" if len(layers) == 1 else f"C_{{{layers[0]},{layers[1]}}}"
            distances[name] = d
            if len(layers) == 1 and d <= on_tol:
                star_layers.append(layers[0])
        if not star_layers:
            dead_pairs = _dead_pairs(layout, theta64, on_tol)
    core_pairs = [list(p) for p in combinations(star_layers, 2)]

    if len(star_layers) == 1:
        locus = f"S_{star_layers[0]}"
    elif len(star_layers) == 2:
        locus = f"C_{{{star_layers[0]},{star_layers[1]}}}"
    elif star_layers:
        locus = "S_{" + ",".join(map(str, star_layers)) + "}"
    elif dead_pairs:
        locus = f"dead pair ({dead_pairs[0]}, {dead_pairs[0] + 1})"
    else:
        locus = "none"
    dim = locus_dimension(list(layout.widths), star_layers, bias=conv == "B") if star_layers \
        else None

    pred_crit, pred_crit_reason, prediction, reason = _predict(
        layout, problem, theta64, acts, x, star_layers, dead_pairs, distances, on_tol)
    # at large N the Hessian route is krylov: a Hessian of small rank on a locus is certified
    # from about rank + 40 HVPs, where Lanczos stalls on the huge zero cluster
    report = analyze(problem, theta, method=method, rtol=rtol, max_bytes=max_bytes)
    loss, grad_norm, criticality, kind = (report.loss, report.grad_norm, report.criticality,
                                          report.kind)
    measured, spectrum = _measured(report), report.hessian.spectrum
    agrees = None
    if prediction is not None and None not in measured["inertia"]:
        agrees = prediction["inertia"] == measured["inertia"]
    if prediction is not None and spectrum is not None:
        prediction = {**prediction,
                      "eigenvalue_error": _spectrum_error(prediction["eigenvalues"], spectrum, N)}
    return LocusReport(
        convention=conv, widths=list(layout.widths), n_params=N, n_samples=problem.n_samples,
        n_outputs=problem.n_outputs, activation=layout.activation.to_dict(),
        assumptions=_assumptions(layout, problem), distances=distances, on_tol=on_tol,
        star_layers=star_layers, core_pairs=core_pairs, dead_pairs=dead_pairs, locus=locus,
        locus_dimension=dim, loss=loss, grad_norm=grad_norm,
        critical=criticality.critical, criticality=criticality,
        predicted_critical=pred_crit, predicted_critical_reason=pred_crit_reason,
        prediction=prediction, prediction_reason=reason, measured=measured, agrees=agrees,
        kind=kind,
    )


def _spectrum_error(predicted: list[float], measured: list[float], N: int) -> float:
    """Max |λ_pred − λ_meas| over the whole spectrum (predicted padded with N − r zeros)."""
    pred = torch.tensor(predicted + [0.0] * (N - len(predicted)), dtype=torch.float64)
    meas = torch.tensor(measured, dtype=torch.float64)
    return float((torch.sort(pred).values - torch.sort(meas).values).abs().max())


def _dead_pairs(layout: Layout, theta: Tensor, tol: float) -> list[int]:
    """Layers j with W_j, W_{j+1} (and b_j, b_{j+1} in (B)) zero and W_ℓ ≠ 0."""
    def dead(m: int) -> bool:
        parts = [layout.weight(theta, m)]
        if layout.convention == "B":
            parts.append(layout.bias(theta, m))
        return all(float(torch.linalg.norm(p)) <= tol for p in parts)

    if float(torch.linalg.norm(layout.weight(theta, layout.depth))) <= tol:
        return []
    return [j for j in range(1, layout.depth - 1) if dead(j) and dead(j + 1)]


def _predict(layout: Layout, problem: Problem, theta: Tensor, acts: list[Tensor], x: Tensor,
             star_layers: list[int], dead_pairs: list[int], distances: dict[str, float],
             on_tol: float) -> tuple[bool | None, str, dict | None, str]:
    """(predicted_critical, its reason, prediction, its reason)."""
    act, conv = layout.activation, layout.convention
    if conv is None:
        why = "biases in some layers only: the star and core loci are not defined (§3.3)"
        return None, why, None, why
    if not star_layers and not dead_pairs:
        near = min(distances, key=distances.get)
        why = (f"θ lies on no star locus: the nearest is {near} at distance "
               f"{distances[near]:.3g} > on_tol = {on_tol:.3g}")
        return None, why, None, why
    if not act.smooth:
        why = (f"σ = {act.name} is not smooth at 0 and every later pre-activation on the locus is "
               "0: L is not twice differentiable there (§3.7)")
        return None, why, None, why
    if not problem.loss_fn.is_builtin:
        why = "custom loss: the per-sample structure of ∇²ₓC is unknown"
        return None, why, None, why
    if dead_pairs:
        if conv == "A" and not act.vanishes_at_zero:
            return (False, "σ(0) ≠ 0 without biases: the output is a non-zero constant W_ℓa that "
                    "need not be optimal", None, "no closed form for dead pairs")
        c_star = optimal_constant(problem, "locate(problem, theta)").to(x)
        const = x - (c_star if conv == "B" else 0.0)
        off = float(const.abs().max())
        crit = off <= on_tol
        return (crit, (f"every activation after layer {dead_pairs[0] + 1} is constant; critical "
                       "when the constant output is optimal (max |x − c*| = " f"{off:.3g})"),
                None, "§3.3 gives no Hessian formula for dead pairs (not Cooper's star locus)")
    if conv == "A" and not act.vanishes_at_zero:
        why = "σ(0) ≠ 0 without biases: f ≢ 0 on S_i, so Theorem 3.1 does not apply"
        return False, why, None, why
    crit_reason = ("Theorem 3.1: every point of the star locus is critical"
                   + (" (in (B) only the optimality of c* is needed)" if conv == "B" else ""))
    if len(star_layers) >= 2:
        pred = _core_prediction(layout, problem, acts, x)
        return True, crit_reason, pred, (f"θ lies on the core {'C' if len(star_layers) == 2 else 'r-core'} "
                                         f"of hidden layers {star_layers}: only the output block "
                                         "of ∇²L survives (Theorem 3.2, §3.4(c))")
    if not act.vanishes_at_zero:
        return (True, crit_reason, None,
                "σ(0) ≠ 0: the closed form on S_i∖C assumes every activation after layer i "
                "vanishes (§3.4(b))")
    i = star_layers[0]
    pred = _star_prediction(layout, problem, theta, acts, i, x)
    return True, crit_reason, pred, (f"θ ∈ S_{i}∖C: ρ_{i} = {pred['rho_i']['rank']}, "
                                     f"τ_{i} = {pred['tau_i']['rank']} (§3.4(b))")
