"""Trajectory: a flow's recorded path, with the rank of J and the straight-line deviation along it."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from ..report import jsonable


@dataclass(frozen=True, eq=False)
class Trajectory:
    """The path θ(t) of one flow, recorded at the evaluation times.

    Arrays are float64 tensors (``rank_jacobian`` int64, ``rank_decided`` bool); T is the number
    of records (``n_eval`` for a completed run, fewer plus the last good point for a stopped one).

    Attributes:
        times: t, shape (T,): the natural time s, or the interpolation time τ for time="linear".
        theta: θ(t), shape (T, N).
        outputs: x(θ(t)), shape (T, n, k).
        targets: The Problem's targets y, shape (n, k) (the end of the straight line).
        loss: The Problem's loss L(θ(t)), shape (T,); the flow descends C = cost_factor · L.
        grad_norm: ‖∇L(θ(t))‖, shape (T,).
        rank_jacobian: rank J(θ(t)), shape (T,); −1 where the rank was not tracked.
        rank_gap: σ_r/σ_{r+1} of that decision (inf when nothing is dropped; nan: not tracked).
        rank_tol: The rank tolerance (nan: not tracked).
        rank_decided: Whether the gap certifies the cut.
        range_drift: ‖P(θ(t)) − P(θ₀)‖_F, how far ran J has turned (0 while ran J is constant;
            nan: not tracked).
        interpolation_time: τ, shape (T,): t itself for time="linear", 1 − e^{−λt} for an
            mse-type natural-time flow; None for other losses.
        deviation: δ(τ) = x − [(1 − τ)x₀ + τy] (§2.6), shape (T, n, k); None for non-mse.
        deviation_predicted: τ·P₀^⊥(x₀ − y), the deviation when ran J stays ran J(θ₀) (§2.6);
            None for non-mse.
        rank_events: Changes of rank J along the path: dicts {index, time, rank, previous_rank,
            gap, decided} (index 0 when the path starts rank-deficient).
        alpha: α of the flow.
        family: "field" or "metric".
        time: "natural" or "linear".
        method: The integrator ("RK45", "DOP853", "LSODA", "euler", "rk4").
        step: Step size of a fixed-step method (None for adaptive ones).
        rtol: Relative tolerance of an adaptive method.
        atol: Absolute tolerance of an adaptive method.
        normalization: The cost normalisation as given ("problem", "sample_mean" or a number).
        cost_factor: c of C = c·L.
        rate: λ of ∇ₓC = λ(x − y) (mse-type losses), else None.
        route: Route of J⁺ at θ₀ ("gram", "svd", "gram+svd", "lsmr").
        n_field_evals: Number of evaluations of the field.
        n_steps: Number of accepted steps.
        status: "completed", "nan", "rank_undecided", "max_steps" or "solver_failed".
        message: What happened (notes on rank changes or a missing minimiser; why it stopped).
    """

    times: Tensor
    theta: Tensor
    outputs: Tensor
    targets: Tensor
    loss: Tensor
    grad_norm: Tensor
    rank_jacobian: Tensor
    rank_gap: Tensor
    rank_tol: Tensor
    rank_decided: Tensor
    range_drift: Tensor
    interpolation_time: Tensor | None
    deviation: Tensor | None
    deviation_predicted: Tensor | None
    rank_events: tuple[dict, ...]
    alpha: float
    family: str
    time: str
    method: str
    step: float | None
    rtol: float
    atol: float
    normalization: str | float
    cost_factor: float
    rate: float | None
    route: str
    n_field_evals: int
    n_steps: int
    status: str
    message: str

    @property
    def success(self) -> bool:
        """True when the integration reached t_end."""
        return self.status == "completed"

    @property
    def final_theta(self) -> Tensor:
        """θ at the last record, shape (N,)."""
        return self.theta[-1]

    def max_deviation(self) -> float | None:
        """max_t |δ(t)| (Euclidean norm over all n·k outputs); None where δ is not defined."""
        if self.deviation is None:
            return None
        return float(self.deviation.flatten(1).norm(dim=1).max())

    def summary(self) -> dict:
        """Scalars only: the end point, rank extremes and deviation, status (JSON-ready)."""
        tracked = self.rank_jacobian >= 0
        ranks = self.rank_jacobian[tracked]
        gaps = self.rank_gap[tracked]
        return jsonable({
            "alpha": self.alpha, "family": self.family, "time": self.time, "method": self.method,
            "status": self.status, "message": self.message, "t_end": float(self.times[-1]),
            "n_records": int(self.times.numel()), "loss_start": float(self.loss[0]),
            "loss_end": float(self.loss[-1]), "grad_norm_end": float(self.grad_norm[-1]),
            "rank_min": int(ranks.min()) if ranks.numel() else None,
            "rank_max": int(ranks.max()) if ranks.numel() else None,
            "min_gap": float(gaps.min()) if gaps.numel() else None,
            "all_decided": bool(self.rank_decided[tracked].all()) if ranks.numel() else None,
            "max_range_drift": (float(self.range_drift[tracked].max()) if ranks.numel()
                                else None),
            "max_deviation": self.max_deviation(),
            "max_deviation_error": (None if self.deviation is None else float(
                (self.deviation - self.deviation_predicted).flatten(1).norm(dim=1).max())),
            "rank_events": list(self.rank_events), "cost_factor": self.cost_factor,
            "rate": self.rate, "normalization": self.normalization, "route": self.route,
            "n_field_evals": self.n_field_evals, "n_steps": self.n_steps,
        })

    def to_dict(self, *, include_theta: bool = False) -> dict:
        """JSON-ready dict of every field (θ only with ``include_theta``; inf/nan as strings)."""
        out = {}
        for f in fields(self):
            if f.name == "theta" and not include_theta:
                continue
            out[f.name] = getattr(self, f.name)
        return jsonable(out)


def rank_event(index: int, time: float, rank: int, previous: int | None, gap: float,
               decided: bool) -> dict:
    """One entry of ``Trajectory.rank_events``."""
    return {"index": index, "time": time, "rank": rank, "previous_rank": previous,
            "gap": gap if math.isfinite(gap) else math.inf, "decided": decided}


def stack_records(records: list[dict], key: str, dtype=torch.float64) -> Tensor:
    """Stack one field of the per-record dicts into a tensor."""
    values = [r[key] for r in records]
    if isinstance(values[0], Tensor):
        return torch.stack(values)
    return torch.tensor(values, dtype=dtype)
