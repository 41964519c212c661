"""Report: the result of ``analyze``, with a JSON form whose keys are fixed by the API contract.

Field glossary (every key of ``Report.to_dict()``):

* ``n_params``, ``n_samples``, ``n_outputs``: N, n, k.
* ``loss``: L(θ) = C(x(θ), y).
* ``grad_norm``: ‖∇L(θ)‖₂.
* ``output_grad_norm``: ‖∇ₓC(x(θ))‖₂, the loss gradient in output space.
* ``criticality``: {grad_norm, tol, scale, rtol, critical}: θ is critical when
  ‖∇L‖ ≤ tol = rtol · scale, scale = σ_max(J) · max(‖∇ₓC(x)‖, ‖∇ₓC(x_ref)‖) (x_ref: the loss's
  reference outputs, see ``Loss.reference_outputs``).
* ``perfect_fit``: {max_residual, tol, holds}: the outputs minimize C (x = y, or softmax(x) = y).
* ``jacobian``: rank decision for J (n·k, N): {rank, tol, gap, method, decided, sigma_max, sigma_r,
  sigma_next, rtol, reason}; method ∈ svd | gram | gram+svd.
* ``gauss_newton``: rank decision for G = Jᵀ∇²ₓC J: {rank, tol, gap, decided, method}.
* ``hessian``: {rank, tol, gap, inertia [positive, negative, zero], method, decided,
  top_eigenvalues (≤ 10, descending), bottom_eigenvalues (≤ 10, ascending), residuals_top,
  residuals_bottom, n_matvec, asymmetry, rtol, spectrum (all eigenvalues, ascending, or null)};
  method ∈ dense | gauss_newton | lanczos. Counts that the route cannot settle are null.
* ``behavior_manifold_dim``: N − rank J (the local dimension of {θ' : x(θ') = x(θ)} where rank J is
  locally constant; an upper bound otherwise, spec §1.2).
* ``kind``: noncritical | global_minimum | strict_local_minimum | strict_saddle |
  strict_local_maximum | degenerate; ``kind_reason`` says which test decided it.
* ``rank_identity``: {predicted, holds, reason}: rank ∇²L = rank J is predicted at a perfect fit
  when ∇²ₓC is positive definite (mse, bce, ce_prob with positive targets); ``holds`` compares the
  measured ranks (null when either is undecided).
* ``dtype``, ``loss_name``, ``reduction``: how the numbers were computed.
* ``timings``: seconds per stage.

Non-finite numbers are written as the strings "inf" and "nan"; missing values are null.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["HessianSummary", "Report", "jsonable"]


def jsonable(obj: Any) -> Any:
    """Recursively convert to JSON-ready values: inf/nan → "inf"/"-inf"/"nan", tuples → lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    return str(obj)


@dataclass(frozen=True)
class HessianSummary:
    """Rank, inertia and extreme eigenvalues of ∇²L(θ), with the route that produced them.

    Attributes:
        rank: positive + negative (None if undecided).
        tol: Eigenvalue tolerance rtol · max|λ|.
        gap: Smallest |λ| counted nonzero ÷ largest |λ| counted zero.
        inertia: [positive, negative, zero]; entries are None where the route cannot count them.
        method: "dense", "gauss_newton" or "lanczos".
        decided: True when the counts are certified (full spectrum and gap ≥ min_gap).
        top_eigenvalues: Up to 10 largest eigenvalues, descending.
        bottom_eigenvalues: Up to 10 smallest eigenvalues, ascending.
        residuals_top: ‖H v − λ v‖ for the top eigenpairs (Lanczos), else [].
        residuals_bottom: The same for the bottom eigenpairs.
        n_matvec: Hessian-vector products used (0 for dense).
        asymmetry: ‖H − Hᵀ‖/‖H‖ of the assembled matrix (dense route).
        rtol: Relative tolerance used.
        spectrum: Every eigenvalue, ascending, when the route computes them all (dense,
            gauss_newton), else None.
    """

    rank: int | None
    tol: float
    gap: float | None
    inertia: list
    method: str
    decided: bool
    top_eigenvalues: list[float]
    bottom_eigenvalues: list[float]
    residuals_top: list[float] = field(default_factory=list)
    residuals_bottom: list[float] = field(default_factory=list)
    n_matvec: int = 0
    asymmetry: float = 0.0
    rtol: float = 0.0
    spectrum: list[float] | None = None


@dataclass(frozen=True)
class Report:
    """Everything ``analyze`` measured at one point; see the module docstring for each field."""

    n_params: int
    n_samples: int
    n_outputs: int
    loss: float
    grad_norm: float
    output_grad_norm: float
    criticality: dict
    perfect_fit: dict
    jacobian: dict
    gauss_newton: dict | None
    hessian: HessianSummary | None
    behavior_manifold_dim: int
    kind: str
    kind_reason: str
    rank_identity: dict
    dtype: str
    loss_name: str
    reduction: str
    timings: dict[str, float]

    def to_dict(self) -> dict:
        """JSON-ready dict with every contract key present (null where skipped)."""
        return jsonable(asdict(self))

    def to_json(self, **kwargs) -> str:
        """``json.dumps(self.to_dict())``; kwargs go to ``json.dumps``."""
        return json.dumps(self.to_dict(), **kwargs)

    @property
    def inertia(self) -> list:
        """Hessian inertia [positive, negative, zero] (entries None where undecided)."""
        return list(self.hessian.inertia) if self.hessian else [None, None, None]
