"""Figures of a sweep: rank and flatness vs width, inertia distribution, failures, reproductions.

Every builder takes stored records (``lossgeom.sweep.results``) or the rows of
``lossgeom.sweep.summary.summarize`` and returns a ``matplotlib.figure.Figure``; nothing is
recomputed. ``save_sweep_figures`` writes the ones that apply to a sweep.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..sweep.summary import format_value, group_label, summarize, varying_keys
from ._save import save_figure

__all__ = ["checkpoint_figure", "failures_figure", "heldout_figure", "inertia_figure",
           "linear_rank_figure", "rank_figure", "save_sweep_figures"]


_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _dodge(j: int, count: int) -> float:
    """Horizontal offset of series j of ``count`` so that equal values stay visible."""
    return 0.08 * (j - (count - 1) / 2)


def _series(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """Width labels in order of N, and series label → width label → row."""
    order: dict[str, int] = {}
    series: dict[str, dict[str, dict]] = {}
    for row in rows:
        group = dict(row["group"])
        widths = group.pop("widths", None)
        wl = "-".join(map(str, widths)) if widths else "all"
        order[wl] = row["n_params"] if row["n_params"] is not None else 0
        series.setdefault(group_label(group) if group else "all runs", {})[wl] = row
    return sorted(order, key=lambda w: (order[w], w)), series


def _one_family(rows: list[dict[str, Any]]) -> bool:
    """Whether the widths form one family, so that lines between them mean something.

    One family: equal depth, and either a single position varies or every network has equal
    hidden widths.
    """
    widths = [r["group"]["widths"] for r in rows if r["group"].get("widths")]
    if not widths or len({len(w) for w in widths}) != 1:
        return False
    varying = [i for i in range(len(widths[0])) if len({w[i] for w in widths}) > 1]
    return len(varying) <= 1 or all(len(set(w[1:-1])) == 1 for w in widths)


def _width_axis(ax, labels: list[str], rows_by_label: dict[str, dict]) -> None:
    ticks = []
    for wl in labels:
        n = next((r[wl]["n_params"] for r in rows_by_label.values()
                  if wl in r and r[wl]["n_params"] is not None), None)
        ticks.append(wl if n is None else f"{wl}\nN={n}")
    ax.set_xticks(range(len(labels)), ticks, fontsize=7)
    ax.set_xlabel("widths (ordered by N)")


def rank_figure(rows: list[dict[str, Any]]) -> Figure:
    """Rank J / (n·k), share of rank-deficient fits and zero-eigenvalue fraction vs width.

    Args:
        rows: ``summarize(records)`` rows (grouped at least by widths).

    Returns:
        A Figure with three panels, one line per series (activation and other varying keys).
    """
    labels, series = _series(rows)
    style = "-" if _one_family(rows) else "none"
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (("rank_j_ratio", "mean rank J / (n·k)"),
              ("rank_deficient_fraction", "fitted runs with rank J < min(n·k, N)"),
              ("zero_fraction", "zero Hessian eigenvalues / N"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for j, (name, by_width) in enumerate(series.items()):
            xs = [i for i, wl in enumerate(labels) if wl in by_width
                  and by_width[wl][key] is not None]
            ys = [by_width[labels[i]][key] for i in xs]
            ax.plot(np.add(xs, _dodge(j, len(series))), ys, marker=_MARKERS[j % len(_MARKERS)],
                    linestyle=style, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        _width_axis(ax, labels, series)
    axes[0].legend(fontsize=8)
    fits = sum(r["fitted"] for r in rows)
    fig.suptitle(f"rank and flatness vs width ({sum(r['runs'] for r in rows)} runs, {fits} "
                 f"exact fits, {sum(r['failed'] for r in rows)} failed)")
    return fig


def inertia_figure(records: list[dict[str, Any]], top: int = 16) -> Figure:
    """Distribution of the Hessian inertia [positive, negative, zero] over done runs.

    Args:
        records: Stored runs.
        top: Number of most common (widths, inertia) pairs shown.

    Returns:
        A Figure: a bar per widths and inertia triple, stacked by series (activation, ...).
    """
    keys = varying_keys(records)
    series_keys = [k for k in keys if k != "widths"]
    counts: dict[str, Counter] = {}
    total: Counter = Counter()
    for rec in records:
        if rec["status"] != "done" or not rec["report"].get("hessian"):
            continue
        label = str(rec["report"]["hessian"]["inertia"])
        if "widths" in keys:
            label = f"{format_value('widths', rec['config']['widths'])}: {label}"
        name = group_label({k: rec["config"].get(k) for k in series_keys})
        counts.setdefault(name, Counter())[label] += 1
        total[label] += 1
    shown = sorted((t for t, _ in total.most_common(top)),
                   key=lambda t: list(total).index(t))  # first-seen order keeps widths together
    fig = Figure(figsize=(max(6.0, 0.5 * len(shown) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(shown))
    for name, c in counts.items():
        heights = np.array([c[t] for t in shown], float)
        ax.bar(range(len(shown)), heights, bottom=bottom, label=name)
        bottom += heights
    ax.set_xticks(range(len(shown)), shown, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("runs")
    ax.set_xlabel("widths: Hessian inertia [positive, negative, zero]" if "widths" in keys
                  else "Hessian inertia [positive, negative, zero]")
    ax.set_title(f"inertia of {sum(total.values())} done runs ({len(total)} distinct"
                 + (f", {len(shown)} most common shown)" if len(total) > len(shown) else ")"),
                 fontsize=10)
    if counts:
        ax.legend(fontsize=8)
    return fig


def failures_figure(records: list[dict[str, Any]], limit: int = 30) -> Figure:
    """The failed runs as a text list: run id, varying config values, error.

    Args:
        records: Stored runs.
        limit: Largest number of failures listed.

    Returns:
        A Figure with one line per failure (or a note that none failed).
    """
    keys = varying_keys(records) + ["seed"]
    failed = [r for r in records if r["status"] == "failed"]
    lines = [f"{r['run_id'][:10]}  {group_label({k: r['config'].get(k) for k in keys})}:  "
             f"{r['error'][:110]}" for r in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"... and {len(failed) - limit} more (lossgeom sweep status DB)")
    fig = Figure(figsize=(12, 0.8 + 0.25 * max(1, len(lines))), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title(f"{len(failed)} failed of {len(records)} runs", fontsize=10, loc="left")
    ax.text(0, 1, "\n".join(lines) if lines else "no failures", va="top", ha="left",
            family="monospace", fontsize=7, transform=ax.transAxes)
    return fig


def heldout_figure(rows: list[dict[str, Any]]) -> Figure:
    """§6.3 Experiment 2b: held-out spread and modal-pattern share vs width.

    Args:
        rows: ``summarize(records)`` rows of a sweep with held-out outputs.

    Returns:
        A Figure with two panels, one line per series.
    """
    labels, series = _series(rows)
    style = "-" if _one_family(rows) else "none"
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "spread", "held-out spread (mean std across runs)"),
                           (axes[1], "modal_share", "share of the most common held-out pattern")):
        for j, (name, by_width) in enumerate(series.items()):
            xs = [i for i, wl in enumerate(labels) if wl in by_width and by_width[wl]["heldout"]]
            ax.plot(np.add(xs, _dodge(j, len(series))),
                    [by_width[labels[i]]["heldout"][key] for i in xs],
                    marker=_MARKERS[j % len(_MARKERS)], linestyle=style, label=name)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        _width_axis(ax, labels, series)
    axes[0].legend(fontsize=8)
    return fig


def linear_rank_figure(records: list[dict[str, Any]]) -> Figure:
    """Measured Hessian rank against the deep-linear formula (§5), one point per run.

    Args:
        records: Stored runs with the ``hessian_rank_formula`` extra.

    Returns:
        A Figure: measured rank (with its inertia tolerance) vs predicted total, and the
        diagonal.
    """
    pts = [(r["extras"]["hessian_rank_formula"]["total"], r["report"]["hessian"]["rank"],
            r["report"]["n_params"]) for r in records
           if r["status"] == "done" and "hessian_rank_formula" in r["extras"]
           and r["report"]["hessian"]["rank"] is not None]
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    if pts:
        pred, meas, n = map(np.array, zip(*pts, strict=True))
        sc = ax.scatter(pred, meas, c=n, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="N (parameters)")
        hi = float(max(pred.max(), meas.max())) * 1.05
        ax.plot([0, hi], [0, hi], color="gray", lw=1, ls="--")
        agree = int((pred == meas).sum())
        ax.set_title(f"Hessian rank: measured = formula in {agree}/{len(pts)} runs", fontsize=10)
    ax.set_xlabel("formula rank ∇²L (§5.2)")
    ax.set_ylabel("measured rank ∇²L")
    ax.grid(alpha=0.3)
    return fig


def checkpoint_figure(records: list[dict[str, Any]]) -> Figure:
    """Loss, rank J, Hessian inertia and extreme eigenvalues at each checkpoint of a training run.

    Args:
        records: Stored runs whose configs name a checkpoint.

    Returns:
        A Figure with four panels against the checkpoint (in file-name order).
    """
    done = sorted((r for r in records if r["status"] == "done" and "checkpoint" in r["config"]),
                  key=lambda r: r["config"]["checkpoint"])
    names = [os.path.splitext(os.path.basename(r["config"]["checkpoint"]))[0] for r in done]
    reps = [r["report"] for r in done]
    x = np.arange(len(done))
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 4)
    axes[0].plot(x, [r["loss"] for r in reps], marker="o")
    axes[0].set_yscale("log")
    axes[0].set_title("loss L(θ)", fontsize=10)
    axes[1].plot(x, [r["jacobian"]["rank"] for r in reps], marker="o", label="rank J")
    axes[1].plot(x, [r["behavior_manifold_dim"] for r in reps], marker="s",
                 label="N − rank J (behavior manifold)")
    axes[1].set_title("rank of the behavioral gradients", fontsize=10)
    axes[1].legend(fontsize=8)
    for i, label in enumerate(("positive", "negative", "zero")):
        axes[2].plot(x, [r["hessian"]["inertia"][i] for r in reps], marker="o", label=label)
    axes[2].set_title("Hessian inertia", fontsize=10)
    axes[2].legend(fontsize=8)
    axes[3].plot(x, [r["hessian"]["top_eigenvalues"][0] for r in reps], marker="o",
                 label="largest eigenvalue")
    axes[3].plot(x, [r["hessian"]["bottom_eigenvalues"][0] for r in reps], marker="s",
                 label="smallest eigenvalue")
    axes[3].set_yscale("symlog", linthresh=1e-6)
    axes[3].set_title("extreme Hessian eigenvalues", fontsize=10)
    axes[3].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def save_sweep_figures(records: list[dict[str, Any]], out_dir: str | os.PathLike) -> list[str]:
    """Write every figure that applies to a sweep into ``out_dir`` (atomically).

    Always: rank.png (when widths vary or there is a single widths), inertia.png,
    failures.png. With held-out outputs: heldout.png; with the linear formula: linear_rank.png;
    with checkpoints: checkpoints.png.

    Args:
        records: Stored runs (``sweep.results(db)``).
        out_dir: Folder for the PNG files (created if missing).

    Returns:
        The paths written.
    """
    out_dir = os.fspath(out_dir)
    keys = varying_keys(records)
    rows = summarize(records, by=["widths"] + [k for k in keys if k != "widths"])
    written = []
    figures = {"inertia.png": inertia_figure(records), "failures.png": failures_figure(records)}
    if "checkpoint" not in keys:
        figures["rank.png"] = rank_figure(rows)
    if any(r["heldout"] for r in rows):
        figures["heldout.png"] = heldout_figure(rows)
    if any("hessian_rank_formula" in r["extras"] for r in records):
        figures["linear_rank.png"] = linear_rank_figure(records)
    if "checkpoint" in keys:
        figures["checkpoints.png"] = checkpoint_figure(records)
    for name, fig in figures.items():
        written.append(save_figure(fig, os.path.join(out_dir, name)))
    return written
