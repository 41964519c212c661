"""Typed results shared by every layer: decisions, criticality, kinds, and their one JSON path.

Every result of lossgeom is a frozen dataclass deriving from ``Result``; ``Result.to_dict`` is
the only serialiser. It walks the dataclass fields and applies two rules declared on the fields
themselves (``dataclasses.field(metadata=...)``):

* ``metadata={"json": False}`` leaves a field out (tensors, bases, callables);
* ``metadata={"json": f}`` writes ``f(value)`` instead of the value (e.g. an ``Inertia`` written
  as the list ``[positive, negative, zero]`` where the report format fixes that shape).

Numbers that JSON cannot hold are written as strings: ``inf`` → ``"inf"``, ``nan`` → ``"nan"``;
tensors and arrays become lists; enums their values; missing values ``null``.

Example:
    >>> from lossgeom.results import Inertia
    >>> i = Inertia(positive=2, negative=0, zero=1, tol=1e-12, gap=float("inf"))
    >>> i.to_dict()["gap"], i.as_list()
    ('inf', [2, 0, 1])
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from .tolerances import MIN_GAP

__all__ = [
    "Certificate", "Criticality", "Inertia", "Kind", "PerfectFit", "RankDecision", "RankIdentity",
    "Result", "internal", "jsonable",
]


def internal(**kwargs) -> Any:
    """A dataclass field kept out of ``to_dict`` and ``repr`` (tensors, bases, callables)."""
    return field(repr=False, metadata={"json": False}, **kwargs)


def jsonable(obj: Any) -> Any:
    """JSON-ready form of results, dicts, sequences, tensors and numbers (module docstring)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            rule = f.metadata.get("json", True)
            if rule is False:
                continue
            value = getattr(obj, f.name)
            out[f.name] = jsonable(rule(value) if callable(rule) and value is not None else value)
        return out
    if isinstance(obj, Enum):
        return jsonable(obj.value)
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


class Result:
    """Base of every result dataclass: one ``to_dict`` / ``to_json`` path.

    Read access by key (``result["rank"]``) returns the attribute of that name, so scripts
    written against the dict-valued fields of earlier reports keep working.
    """

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields (see the module docstring for the rules)."""
        return jsonable(self)

    def to_json(self, **kwargs) -> str:
        """``json.dumps(self.to_dict(), **kwargs)``."""
        return json.dumps(self.to_dict(), **kwargs)

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


class Kind(StrEnum):
    """What kind of point θ is; the classification rule is in ``analysis.classify``.

    The members compare equal to their strings (``Kind.GLOBAL_MINIMUM == "global_minimum"``).

    NONCRITICAL: ‖∇L‖ exceeds the criticality tolerance.
    GLOBAL_MINIMUM: critical, the outputs minimize C (perfect fit) and C is convex in x.
    STRICT_LOCAL_MINIMUM: every Hessian eigenvalue is positive.
    NONSTRICT_LOCAL_MINIMUM: no negative eigenvalue, and the zero eigenvectors are tangent to a
        manifold of critical points through θ (Morse–Bott: nullity = its dimension), certified by
        stepping along the kernel and retracting.
    STRICT_SADDLE: a negative eigenvalue (and θ is not a maximum).
    STRICT_LOCAL_MAXIMUM: every eigenvalue is negative.
    DEGENERATE: no negative eigenvalue, some zero, and no certificate that θ is a minimum.
    """

    NONCRITICAL = "noncritical"
    GLOBAL_MINIMUM = "global_minimum"
    STRICT_LOCAL_MINIMUM = "strict_local_minimum"
    NONSTRICT_LOCAL_MINIMUM = "nonstrict_local_minimum"
    STRICT_SADDLE = "strict_saddle"
    STRICT_LOCAL_MAXIMUM = "strict_local_maximum"
    DEGENERATE = "degenerate"

    @property
    def is_minimum(self) -> bool:
        """Certified (local or global) minimum."""
        return self in (Kind.GLOBAL_MINIMUM, Kind.STRICT_LOCAL_MINIMUM, Kind.NONSTRICT_LOCAL_MINIMUM)


@dataclass(frozen=True)
class RankDecision(Result):
    """A numerical rank with the evidence behind it.

    Attributes:
        rank: #{σᵢ > tol}.
        tol: The cut, max(atol, rtol·σ_max).
        sigma_max: Largest singular value σ₁.
        sigma_r: Smallest singular value kept, σ_rank (None when rank = 0).
        sigma_next: Largest singular value dropped, σ_{rank+1} (None when none is dropped).
        gap: σ_r / σ_{r+1}; inf at full rank (nothing dropped) or when σ_{r+1} = 0; at rank 0,
            tol / σ₁ (inf for the zero matrix).
        method: How the singular values were obtained: "svd", "singular_values", "gram",
            "gram+svd" or "eigenvalues".
        decided: True when gap ≥ min_gap and the route resolved the cut.
        rtol: The relative tolerance used.
        min_gap: The gap threshold used for ``decided``.
        reason: Why the decision is not certified ("" when decided).
    """

    rank: int
    tol: float
    sigma_max: float
    sigma_r: float | None
    sigma_next: float | None
    gap: float
    method: str
    decided: bool
    rtol: float = 0.0
    min_gap: float = MIN_GAP
    reason: str = ""


@dataclass(frozen=True)
class Inertia(Result):
    """Counts of positive, negative and zero eigenvalues of a symmetric matrix.

    Attributes:
        positive: #{λ > tol} (None where the route cannot count them).
        negative: #{λ < −tol} (None where the route cannot count them).
        zero: #{|λ| ≤ tol} (None where the route cannot count them).
        tol: rtol · max|λ|.
        gap: Smallest |λ| counted nonzero ÷ largest |λ| counted zero (inf if either set is empty,
            or if the zeros are exact).
        rtol: The relative tolerance used.
        decided: gap ≥ min_gap (and the route resolved every count).
        asymmetry: ‖A − Aᵀ‖_F / ‖A‖_F of the input matrix (0 for eigenvalues given).
    """

    positive: int | None
    negative: int | None
    zero: int | None
    tol: float
    gap: float | None
    rtol: float = 0.0
    decided: bool = True
    asymmetry: float = 0.0

    def as_list(self) -> list[int | None]:
        """[positive, negative, zero]."""
        return [self.positive, self.negative, self.zero]

    def __iter__(self):
        return iter(self.as_list())

    def __getitem__(self, key):
        if isinstance(key, int | slice):  # the list form: inertia[2] is the zero count
            return self.as_list()[key]
        return super().__getitem__(key)

    def __eq__(self, other: object) -> bool:
        """Equal counts: another Inertia, or the list/tuple form [positive, negative, zero]."""
        if isinstance(other, Inertia):
            return self.as_list() == other.as_list()
        if isinstance(other, list | tuple):
            return self.as_list() == list(other)
        return NotImplemented

    __hash__ = None  # mutable-looking equality with lists: not hashable

    @property
    def rank(self) -> int | None:
        """Positive + negative (None when either is unknown)."""
        if self.positive is None or self.negative is None:
            return None
        return self.positive + self.negative


@dataclass(frozen=True)
class Criticality(Result):
    """The criticality test ‖∇L‖ ≤ tol = rtol · scale (``analysis.criticality``).

    Attributes:
        grad_norm: ‖∇L(θ)‖₂.
        tol: max(rtol · scale, floor).
        scale: σ_max(J)·max(‖∇ₓC(x)‖, ‖∇ₓC(x_ref)‖), a bound on ‖∇L‖ = ‖Jᵀ∇ₓC‖ at the scale of
            the problem (docs/routes.md).
        rtol: The relative tolerance used.
        critical: grad_norm ≤ tol.
        floor: 1e3·eps·σ_max(J)²·‖∇²ₓC‖₂·‖θ‖, the gradient that round-off in the outputs can cause;
            it keeps the test meaningful when outputs and targets vanish together.
    """

    grad_norm: float
    tol: float
    scale: float
    rtol: float
    critical: bool
    floor: float = 0.0


@dataclass(frozen=True)
class PerfectFit(Result):
    """Whether the outputs minimize C: max |fit residual| ≤ tol = rtol · max(1, max|y|).

    Attributes:
        max_residual: max |r| with r = x − y (mse, bce, ce_prob) or softmax(x)·Σy − y (softmax_ce).
        tol: The tolerance.
        holds: max_residual ≤ tol.
    """

    max_residual: float
    tol: float
    holds: bool


@dataclass(frozen=True)
class RankIdentity(Result):
    """rank ∇²L = rank J at a perfect fit (§1.3, §6.4).

    Attributes:
        predicted: The identity is predicted (perfect fit, ∇²ₓC positive definite on ran J).
        holds: The measured ranks agree (None when either is undecided).
        reason: Why it is or is not predicted.
    """

    predicted: bool
    holds: bool | None
    reason: str


@dataclass(frozen=True)
class Certificate(Result):
    """What certifies a Hessian's rank and inertia.

    Attributes:
        kind: "dense" (every eigenvalue of the assembled matrix), "gram" (perfect fit: H = Jᵀ∇²ₓC J,
            decided on the singular values of (∇²ₓC)^½ J), "invariant_subspace" (a Krylov basis Q
            with ‖HQ − QT‖ and the part of H outside span Q bounded below the tolerance), or
            "none" (counts not certified).
        residual: ‖HQ − QT‖ / ‖T‖ for "invariant_subspace", the assembled matrix's asymmetry for
            "dense", 0 for "gram"; None for "none".
        subspace_dim: Columns of Q ("invariant_subspace"), else None.
        n_matvec: Hessian-vector products used.
        failure_probability: Chance, over the random start, that a range direction was missed
            (None where the route is deterministic).
    """

    kind: str
    residual: float | None = None
    subspace_dim: int | None = None
    n_matvec: int = 0
    failure_probability: float | None = None
