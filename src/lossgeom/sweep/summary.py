"""Group stored runs by the grid axes that vary and summarise each group (tables and figures).

The quantities are those of the §6.3 protocol, read from the stored Reports (nothing is
recomputed): a run is *fitted* when its Report says ``perfect_fit.holds``; it is
*rank-deficient* when rank J < min(n·k, N), the largest rank J can have; the zero-eigenvalue
fraction is the Hessian inertia's zero count over N (runs whose counts are undecided are left
out). With held-out outputs (cube data) a group also gets the spread of the held-out outputs
across fitted runs (mean over held-out points of the standard deviation) and the share of runs on
the most common thresholded (at 0.5) held-out pattern; Experiment 1 compares each pattern's
frequency with its mean manifold dimension N − rank J (Spearman correlation), and says why
where the correlation is undefined (fewer than three patterns, or one value on either side:
at exact tanh fits rank J = n in every run, so N − rank J does not vary). Runs a spec's filter
left out (``[data] skip_constant_labels``) are counted per group as ``skipped_seeds``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np

__all__ = ["fitted", "format_value", "group_label", "rank_deficient", "summarize", "varying_keys"]

_NOT_AXES = ("seed",)


def varying_keys(records: list[dict[str, Any]]) -> list[str]:
    """Config keys whose value differs between records.

    The seed is left out, and so is data_seed when it always equals the seed.

    Args:
        records: Stored runs (``sweep.results``).

    Returns:
        Key names, in sorted order with "widths" and "activation" first.
    """
    keys: set[str] = set()
    for rec in records:
        keys |= set(rec["config"])
    out = []
    for key in keys - set(_NOT_AXES):
        values = {json.dumps(r["config"].get(key), sort_keys=True) for r in records}
        if len(values) < 2:
            continue
        if key == "data_seed" and all(r["config"].get("data_seed") == r["config"].get("seed")
                                      for r in records):
            continue
        out.append(key)
    first = [k for k in ("widths", "activation") if k in out]
    return first + sorted(k for k in out if k not in first)


def format_value(key: str, value: Any) -> str:
    """A config value as short text: widths 3-4-1, file paths by their base name."""
    if key == "widths":
        return "-".join(map(str, value))
    if key in ("checkpoint", "source") and isinstance(value, str):
        return value.replace("\\", "/").rsplit("/", 1)[-1]
    return str(value)


def group_label(group: dict[str, Any]) -> str:
    """Short text for a group, e.g. ``widths=3-4-1 activation=relu``."""
    return " ".join(f"{k}={format_value(k, v)}" for k, v in group.items()) or "all runs"


def fitted(rec: dict[str, Any]) -> bool:
    """A done run whose Report says the outputs fit the targets exactly."""
    return rec["status"] == "done" and bool(rec["report"]["perfect_fit"]["holds"])


def rank_deficient(rec: dict[str, Any]) -> bool:
    """Rank J < min(n·k, N) in a done run's Report."""
    rep = rec["report"]
    return rep["jacobian"]["rank"] < min(rep["n_samples"] * rep["n_outputs"], rep["n_params"])


def _zero_fraction(rec: dict[str, Any]) -> float | None:
    rep = rec["report"]
    zero = (rep.get("hessian") or {}).get("inertia", [None] * 3)[2]
    return None if zero is None else zero / rep["n_params"]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _pattern_dim_correlation(freq: list[int], mean_dim: list[float]) -> tuple[float | None, str]:
    """(Spearman ρ of pattern frequency against mean N − rank J, "") or (None, why not).

    Example:
        >>> _pattern_dim_correlation([5, 3, 1], [17.0, 18.0, 19.0])
        (-1.0, '')
        >>> _pattern_dim_correlation([5, 3, 1], [17.0, 17.0, 17.0])
        (None, 'N − rank J = 17 in every pattern')
    """
    if len(freq) < 3:
        return None, f"fewer than 3 held-out patterns ({len(freq)})"
    if len(set(mean_dim)) == 1:
        return None, f"N − rank J = {mean_dim[0]:g} in every pattern"
    if len(set(freq)) == 1:
        return None, f"every pattern has the same frequency ({freq[0]})"
    from scipy.stats import spearmanr

    rho = float(spearmanr(freq, mean_dim).statistic)
    return (rho, "") if math.isfinite(rho) else (None, "Spearman ρ is not finite")


def _heldout(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Spread, modal share and the Experiment 1 correlation over fitted runs with outputs."""
    rows = [r for r in runs if fitted(r) and "heldout_outputs" in r["extras"]]
    if len(rows) < 2:
        return None
    outs = np.array([np.asarray(r["extras"]["heldout_outputs"]["outputs"], float).ravel()
                     for r in rows])
    patterns = ["".join("1" if v > 0.5 else "0" for v in o) for o in outs]
    counts = Counter(patterns)
    dims: dict[str, list[int]] = {}
    for p, r in zip(patterns, rows, strict=True):
        dims.setdefault(p, []).append(r["report"]["behavior_manifold_dim"])
    correlation, why = _pattern_dim_correlation([counts[p] for p in counts],
                                                [float(np.mean(dims[p])) for p in counts])
    return {"runs": len(rows), "spread": float(outs.std(axis=0).mean()),
            "modal_share": counts.most_common(1)[0][1] / len(rows), "patterns": len(counts),
            "pattern_dim_correlation": correlation, "pattern_dim_correlation_reason": why,
            "pattern_table": [{"pattern": p, "count": c, "mean_manifold_dim":
                               float(np.mean(dims[p]))} for p, c in counts.most_common()]}


def summarize(records: list[dict[str, Any]], by: list[str] | None = None, *,
              excluded: list[dict[str, Any]] | tuple = ()) -> list[dict[str, Any]]:
    """One row per group of runs that share the values of the ``by`` keys.

    Args:
        records: Stored runs (``sweep.results``).
        by: Config keys to group by; default ``varying_keys(records)``.
        excluded: Runs the spec's filters left out ({run_id, config, reason} each;
            ``store.read_excluded``), counted per group in ``skipped_seeds``.

    Returns:
        Rows {group, label, runs, done, failed, skipped_seeds, n_params, n_outputs_total,
        fitted, rank_j_mean, rank_j_ratio, rank_deficient, rank_deficient_fraction,
        zero_fraction, inertia_mode, kinds, undecided, heldout}, in order of first appearance;
        fractions are None where nothing was measured.

    Example:
        >>> rec = {"config": {"activation": "relu", "seed": 0}, "status": "failed",
        ...        "report": None, "extras": {}}
        >>> summarize([rec])[0]["failed"]
        1
    """
    by = varying_keys(records) if by is None else list(by)
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        key = json.dumps([rec["config"].get(k) for k in by], sort_keys=True)
        groups.setdefault(key, []).append(rec)
    rows = []
    for runs in groups.values():
        group = {k: runs[0]["config"].get(k) for k in by}
        done = [r for r in runs if r["status"] == "done"]
        fits = [r for r in done if fitted(r)]
        rep0 = done[0]["report"] if done else None
        m = rep0["n_samples"] * rep0["n_outputs"] if rep0 else None
        deficient = sum(rank_deficient(r) for r in fits)
        zero = [z for z in map(_zero_fraction, done) if z is not None]
        inertias = Counter(tuple(r["report"]["hessian"]["inertia"]) for r in done
                           if r["report"].get("hessian"))
        rank_mean = _mean([r["report"]["jacobian"]["rank"] for r in done])
        skipped = sum(all(e["config"].get(k) == v for k, v in group.items()) for e in excluded)
        rows.append({
            "group": group, "label": group_label(group), "runs": len(runs), "done": len(done),
            "failed": len(runs) - len(done), "skipped_seeds": skipped,
            "n_params": rep0["n_params"] if rep0 else None,
            "n_outputs_total": m, "fitted": len(fits), "rank_j_mean": rank_mean,
            "rank_j_ratio": None if rank_mean is None else rank_mean / m,
            "rank_deficient": deficient,
            "rank_deficient_fraction": deficient / len(fits) if fits else None,
            "zero_fraction": _mean(zero),
            "inertia_mode": list(inertias.most_common(1)[0][0]) if inertias else None,
            "kinds": dict(Counter(r["report"]["kind"] for r in done)),
            "undecided": sum(not (r["report"]["jacobian"]["decided"]
                                  and (r["report"].get("hessian") or {}).get("decided", False))
                             for r in done),
            "heldout": _heldout(runs),
        })
    return rows
