"""Report: the result of ``analyze``; every field a typed result, the JSON keys fixed by the contract.

Field glossary (every key of ``Report.to_dict()``; how each number is decided: docs/routes.md):

* ``n_params``, ``n_samples``, ``n_outputs``: N, n, k.
* ``loss``: L(θ) = C(x(θ), y).
* ``grad_norm``: ‖∇L(θ)‖₂.
* ``output_grad_norm``: ‖∇ₓC(x(θ))‖₂, the loss gradient in output space.
* ``criticality`` (``Criticality``): {grad_norm, tol, scale, rtol, critical, floor}: θ is critical
  when ‖∇L‖ ≤ tol = rtol · scale.
* ``perfect_fit`` (``PerfectFit``): {max_residual, tol, holds}: the outputs minimize C.
* ``jacobian`` (``RankDecision``): {rank, tol, gap, method, decided, sigma_max, sigma_r,
  sigma_next, rtol, min_gap, reason}; method ∈ svd | gram | gram+svd.
* ``gauss_newton`` (``GaussNewtonSummary``): {rank, tol, gap, decided, method, inertia} of
  G = Jᵀ∇²ₓC J.
* ``hessian`` (``HessianSummary``): {rank, tol, gap, inertia [positive, negative, zero], method,
  decided, top_eigenvalues (≤ 10, descending), bottom_eigenvalues (≤ 10, ascending),
  residuals_top, residuals_bottom, n_matvec, asymmetry, rtol, spectrum (every eigenvalue,
  ascending, or null), certificate {kind, residual, subspace_dim, n_matvec, failure_probability},
  reason}; method ∈ dense | gauss_newton | lanczos | krylov | profile. Counts the route cannot
  settle are null.
* ``behavior_manifold_dim``: N − rank J (the local dimension of {θ' : x(θ') = x(θ)} where rank J is
  locally constant; an upper bound otherwise, §1.2).
* ``kind`` (``Kind``): noncritical | global_minimum | strict_local_minimum |
  nonstrict_local_minimum | strict_saddle | strict_local_maximum | degenerate; ``kind_reason``
  says which test decided it.
* ``rank_identity`` (``RankIdentity``): {predicted, holds, reason}: rank ∇²L = rank J at a perfect
  fit when ∇²ₓC is positive definite (mse, bce, ce_prob with positive targets).
* ``dtype``: the dtype the products ran in; ``model_dtype``: the model's own parameter dtype;
  ``loss_name``, ``reduction``.
* ``routes``: one line per route decision that is not visible elsewhere (a forward-mode fallback,
  a dtype change, a kernel probe).
* ``degeneracy`` (``DegeneracyProfile`` or null): counts #{|λ| > ε·|λ|max} with bounds, exact
  where a certified route ran, from stochastic Lanczos quadrature otherwise.
* ``blocks`` (list of ``BlockSummary`` or null): rank J_b and the inertia of each diagonal block.
* ``timings``: seconds per stage.

Non-finite numbers are written as the strings "inf" and "nan"; missing values are null.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .results import (
    Certificate,
    Criticality,
    Inertia,
    Kind,
    PerfectFit,
    RankDecision,
    RankIdentity,
    Result,
    jsonable,
)

__all__ = ["BlockSummary", "GaussNewtonSummary", "HessianSummary", "Report", "jsonable"]

_AS_LIST = {"json": Inertia.as_list}


@dataclass(frozen=True)
class GaussNewtonSummary(Result):
    """Rank and inertia of the Gauss–Newton term G = Jᵀ ∇²ₓC J.

    Attributes:
        rank: positive + negative.
        tol: Eigenvalue tolerance of the cut.
        gap: The gap at the cut (eigenvalue units).
        decided: The counts are certified.
        method: "svd", "gram" or "gram+svd" — the route of the singular values of (∇²ₓC)^½ J,
            whose squares are G's nonzero eigenvalues — or "eigenvalues" for an output Hessian
            that is not positive semidefinite.
        inertia: [positive, negative, zero] (an ``Inertia``; written as the list).
    """

    rank: int | None
    tol: float
    gap: float | None
    decided: bool
    method: str
    inertia: Inertia = field(metadata=_AS_LIST)


@dataclass(frozen=True)
class HessianSummary(Result):
    """Rank, inertia and extreme eigenvalues of ∇²L(θ), with the route and its certificate.

    Attributes:
        rank: positive + negative (None if undecided).
        tol: Eigenvalue tolerance rtol · max|λ|.
        gap: Smallest |λ| counted nonzero ÷ largest |λ| counted zero.
        inertia: Counts (an ``Inertia``; written as [positive, negative, zero]); entries are None
            where the route cannot count them.
        method: "dense", "gauss_newton", "lanczos", "krylov" or "profile".
        decided: True when the counts are certified.
        top_eigenvalues: Up to 10 largest eigenvalues, descending.
        bottom_eigenvalues: Up to 10 smallest eigenvalues, ascending.
        residuals_top: ‖H v − λ v‖ for the top eigenpairs (iterative routes), else [].
        residuals_bottom: The same for the bottom eigenpairs.
        n_matvec: Hessian-vector products used (0 for dense).
        asymmetry: ‖H − Hᵀ‖/‖H‖ of the assembled matrix (dense route).
        rtol: Relative tolerance used.
        spectrum: Every eigenvalue, ascending, when the route computes them all, else None.
        certificate: What certifies the counts (``Certificate``), or None.
        reason: Why the counts are not decided ("" when they are).
    """

    rank: int | None
    tol: float
    gap: float | None
    inertia: Inertia = field(metadata=_AS_LIST)
    method: str = "dense"
    decided: bool = False
    top_eigenvalues: list[float] = field(default_factory=list)
    bottom_eigenvalues: list[float] = field(default_factory=list)
    residuals_top: list[float] = field(default_factory=list)
    residuals_bottom: list[float] = field(default_factory=list)
    n_matvec: int = 0
    asymmetry: float = 0.0
    rtol: float = 0.0
    spectrum: list[float] | None = None
    certificate: Certificate | None = None
    reason: str = ""


@dataclass(frozen=True)
class BlockSummary(Result):
    """One parameter block: rank of its Jacobian columns J_b and the inertia of H_bb.

    Attributes:
        name: The block's name (a module name or the joined prefixes).
        n_params: Entries of θ in the block.
        jacobian: Rank decision of J_b (n·k, N_b).
        hessian: Rank, inertia and certificate of the diagonal block H_bb.
    """

    name: str
    n_params: int
    jacobian: RankDecision
    hessian: HessianSummary


@dataclass(frozen=True)
class Report(Result):
    """Everything ``analyze`` measured at one point; see the module docstring for each field."""

    n_params: int
    n_samples: int
    n_outputs: int
    loss: float
    grad_norm: float
    output_grad_norm: float
    criticality: Criticality
    perfect_fit: PerfectFit
    jacobian: RankDecision
    gauss_newton: GaussNewtonSummary | None
    hessian: HessianSummary | None
    behavior_manifold_dim: int
    kind: Kind
    kind_reason: str
    rank_identity: RankIdentity
    dtype: str
    loss_name: str
    reduction: str
    timings: dict[str, float]
    model_dtype: str = ""
    routes: list[str] = field(default_factory=list)
    degeneracy: Result | None = None
    blocks: list[BlockSummary] | None = None

    @property
    def inertia(self) -> list:
        """Hessian inertia [positive, negative, zero] (entries None where undecided)."""
        return self.hessian.inertia.as_list() if self.hessian else [None, None, None]

    def to_html(self, *, title: str | None = None, llc=None) -> str:
        """A self-contained HTML page of this Report (``lossgeom.pages.report_page``).

        The page embeds its figures and style and loads nothing: the summary table with every
        decision's tolerance, gap and route, the spectrum and rank-cut figures, blocks, the
        degeneracy profile and ``llc`` where present, the field glossary and the JSON.

        Args:
            title: Page heading (default: kind and N).
            llc: Optional bounds and/or estimate of the local learning coefficient (see
                ``report_page``).

        Returns:
            The HTML text.
        """
        from .pages import report_page  # the front end renders; declared in tests/test_layers.py

        return report_page(self, title=title, llc=llc)

    def _repr_html_(self) -> str:
        """The same page as one ``<div>`` with scoped style, for notebooks."""
        from .pages import report_page  # the front end renders; declared in tests/test_layers.py

        return report_page(self, standalone=False)
