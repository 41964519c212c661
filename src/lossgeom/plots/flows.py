"""Figures of gradient flows (``lossgeom.flows``): output paths, loss along the flow, rank J along it.

Every function takes recorded Trajectories and draws them; nothing is integrated or recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..flows import Trajectory

__all__ = ["flow_figures", "loss_figure", "output_paths_figure", "rank_figure"]


def _label(traj: Trajectory) -> str:
    label = f"α = {traj.alpha:g}"
    if traj.family == "metric":
        label += " (metric family)"
    if not traj.success:
        label += f" [{traj.status}]"
    return label


def _time_label(trajs: Sequence[Trajectory]) -> str:
    kinds = {t.time for t in trajs}
    if kinds == {"linear"}:
        return "interpolation time τ"
    if kinds == {"natural"}:
        return "flow time s"
    return "t (τ for linear-time runs, s otherwise)"


def _check(where: str, trajs) -> list[Trajectory]:
    trajs = list(trajs)
    if not trajs or not all(isinstance(t, Trajectory) for t in trajs):
        raise TypeError(f"{where}: expected a non-empty sequence of lossgeom.flows.Trajectory.")
    return trajs


def output_paths_figure(trajectories: Sequence[Trajectory], *, title: str | None = None) -> Figure:
    """Output-space paths in their first two principal coordinates, straight line x₀ → y overlaid.

    The principal axes are those of all recorded outputs x(t) ∈ R^{n·k} and the targets, centred.

    Args:
        trajectories: Recorded flows (usually several α from one θ₀).
        title: Figure title (default: a description of the runs).

    Returns:
        A matplotlib Figure.

    Raises:
        TypeError: If ``trajectories`` is empty or holds something else.
    """
    trajs = _check("output_paths_figure(trajectories)", trajectories)
    paths = [t.outputs.flatten(1) for t in trajs]
    ends = [t.targets.reshape(-1) for t in trajs]
    cloud = torch.cat(paths + [torch.stack(ends)])
    mean = cloud.mean(dim=0)
    _, S, Vh = torch.linalg.svd(cloud - mean, full_matrices=False)
    axes = Vh[:2].T
    if axes.shape[1] < 2:  # a single output coordinate: the second axis is flat
        axes = torch.cat([axes, torch.zeros_like(axes)], dim=1)
    share = (S**2 / (S**2).sum()).tolist() + [0.0, 0.0] if float(S.sum()) > 0 else [0.0, 0.0]

    def project(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) @ axes

    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    drawn: set[tuple] = set()
    for traj, path, y in zip(trajs, paths, ends, strict=True):
        xy = project(path)
        ax.plot(xy[:, 0], xy[:, 1], "-", lw=1.8, label=_label(traj))
        key = (tuple(path[0].tolist()), tuple(y.tolist()))
        if key not in drawn:
            line = project(torch.stack([path[0], y]))
            ax.plot(line[:, 0], line[:, 1], "k--", lw=1.0, zorder=3,
                    label="straight line x₀ → y" if not drawn else None)
            ax.plot(line[0, 0], line[0, 1], "ko", ms=6, zorder=4,
                    label="x₀" if not drawn else None)
            ax.plot(line[1, 0], line[1, 1], "k*", ms=12, zorder=4,
                    label="y" if not drawn else None)
            drawn.add(key)
    ax.set_xlabel(f"principal output coordinate 1 ({100 * share[0]:.0f}% of variance)")
    ax.set_ylabel(f"principal output coordinate 2 ({100 * share[1]:.0f}% of variance)")
    ax.set_title(title or f"Output-space paths ({_time_label(trajs)})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def loss_figure(trajectories: Sequence[Trajectory], *, title: str | None = None) -> Figure:
    """The Problem's loss L along each flow against time (log scale when every value is > 0).

    Args:
        trajectories: Recorded flows.
        title: Figure title.

    Returns:
        A matplotlib Figure.

    Raises:
        TypeError: If ``trajectories`` is empty or holds something else.
    """
    trajs = _check("loss_figure(trajectories)", trajectories)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for traj in trajs:
        ax.plot(traj.times, traj.loss, "-", lw=1.6, label=_label(traj))
    if all(bool((t.loss > 0).all()) for t in trajs):
        ax.set_yscale("log")
    ax.set_xlabel(_time_label(trajs))
    ax.set_ylabel("loss L(θ(t))")
    ax.set_title(title or "Loss along the flows")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def rank_figure(trajectories: Sequence[Trajectory], *, title: str | None = None) -> Figure:
    """The rank of J along each flow (top) and the gap σ_r/σ_{r+1} of each decision (bottom).

    Undecided cuts (gap below the threshold) are marked with crosses; an infinite gap (nothing
    dropped, rank J = min(n·k, N)) is drawn at the top of the gap axis.

    Args:
        trajectories: Recorded flows (with ``track_rank``).
        title: Figure title.

    Returns:
        A matplotlib Figure.

    Raises:
        TypeError: If ``trajectories`` is empty or holds something else.
    """
    trajs = _check("rank_figure(trajectories)", trajectories)
    fig = Figure(figsize=(6.4, 5.2))
    ax, gx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    finite = [float(g) for t in trajs for g in t.rank_gap if torch.isfinite(g)]
    top = max(finite) * 10 if finite else 1.0
    for i, traj in enumerate(trajs):
        tracked = traj.rank_jacobian >= 0
        if not bool(tracked.any()):
            continue
        t = traj.times[tracked]
        width = 1.4 + 2.0 * (len(trajs) - 1 - i) / max(len(trajs) - 1, 1)  # overlaps stay visible
        line, = ax.step(t, traj.rank_jacobian[tracked], where="post", lw=width, alpha=0.85,
                        label=_label(traj))
        bad = ~traj.rank_decided[tracked]
        if bool(bad.any()):
            ax.plot(t[bad], traj.rank_jacobian[tracked][bad], "x", color=line.get_color(), ms=8)
        gaps = traj.rank_gap[tracked].clone()
        gaps[~torch.isfinite(gaps)] = top
        if finite:
            gx.plot(t, gaps, "-", color=line.get_color(), lw=1.2)
    if not finite:
        gx.text(0.5, 0.5, "gap = ∞ at every record (no singular value dropped, or only exact 0s)",
                ha="center", va="center", transform=gx.transAxes, fontsize=9)
        gx.set_yticks([])
    full = min(trajs[0].outputs.shape[1] * trajs[0].outputs.shape[2], trajs[0].theta.shape[1])
    ax.axhline(full, color="k", ls=":", lw=1.0, label=f"full rank min(n·k, N) = {full}")
    ranks = [int(r) for t in trajs for r in t.rank_jacobian if r >= 0] or [full]
    ax.set_ylim(min(ranks) - 1.5, full + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("rank J")
    ax.set_title(title or "Rank of the Jacobian along the flows (× = undecided)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if finite:
        gx.set_yscale("log")
    gx.set_ylabel("gap σ_r/σ_(r+1)")
    gx.set_xlabel(_time_label(trajs))
    gx.grid(alpha=0.3)
    return fig


def flow_figures(trajectories: Sequence[Trajectory]) -> dict[str, Figure]:
    """The three figures of a flow comparison: {"paths", "loss", "rank"}.

    Args:
        trajectories: Recorded flows.

    Returns:
        A dict of matplotlib Figures.

    Raises:
        TypeError: If ``trajectories`` is empty or holds something else.
    """
    return {"paths": output_paths_figure(trajectories), "loss": loss_figure(trajectories),
            "rank": rank_figure(trajectories)}
