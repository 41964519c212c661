"""The page of a sweep database: status, groups, trend figures and failures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..plots.sweep import checkpoint_figure, heldout_figure, inertia_figure, linear_rank_figure, rank_figure
from ..sweep.api import status as sweep_status
from ..sweep.store import read_records
from ..sweep.summary import format_value, summarize, varying_keys
from ._html import document, esc, figure_html, num_cell, version

__all__ = ["FAILURES_SHOWN", "sweep_page"]

FAILURES_SHOWN = 500
"""Most failed runs listed one by one on a sweep page (the rest are counted)."""


def _groups_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("<tr><th>group</th><th>runs</th><th>done</th><th>failed</th><th>N</th><th>fitted</th>"
            "<th>mean rank J</th><th>rank J / (n·k)</th><th>rank-deficient fits</th>"
            "<th>zero eigenvalues / N</th><th>modal inertia</th><th>kinds</th><th>undecided</th>"
            "</tr>")
    body = []
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].items())
        cls = ' class="undecided"' if r["undecided"] else ""
        body.append(f"<tr{cls}><td>{esc(r['label'])}</td>{num_cell(r['runs'])}{num_cell(r['done'])}"
                    f"{num_cell(r['failed'])}{num_cell(r['n_params'])}{num_cell(r['fitted'])}"
                    f"{num_cell(r['rank_j_mean'])}{num_cell(r['rank_j_ratio'])}"
                    f"{num_cell(r['rank_deficient_fraction'])}{num_cell(r['zero_fraction'])}"
                    f"{num_cell(r['inertia_mode'])}<td>{esc(kinds)}</td>{num_cell(r['undecided'])}</tr>")
    return f'<table class="groups">\n{head}\n' + "\n".join(body) + "\n</table>"


def _failures_table(records: Sequence[dict[str, Any]], keys: list[str]) -> str:
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        return '<p data-failures="0">No run failed.</p>'
    body = []
    for r in failed[:FAILURES_SHOWN]:
        config = " ".join(f"{k}={format_value(k, r['config'].get(k))}" for k in keys + ["seed"]
                          if k in r["config"])
        body.append(f'<tr data-run="{esc(r["run_id"])}"><td class="num">{esc(r["run_id"][:12])}'
                    f"</td><td>{esc(config)}</td><td><pre>{esc(r['error'])}</pre></td></tr>")
    more = (f"<p>… and {len(failed) - FAILURES_SHOWN} more (<code>lossgeom sweep status DB</code>)."
            "</p>" if len(failed) > FAILURES_SHOWN else "")
    return (f'<table class="failures" data-failures="{len(failed)}">\n<tr><th>run</th><th>config'
            "</th><th>reason</th></tr>\n" + "\n".join(body) + f"\n</table>{more}")


def _sweep_figures(records: list[dict[str, Any]], rows: list[dict[str, Any]],
                   keys: list[str]) -> list[str]:
    """The trend figures that apply (the selection of ``plots.sweep.save_sweep_figures``)."""
    done = [r for r in records if r["status"] == "done"]
    if not done:
        return []
    figs = []
    if "checkpoint" not in keys:
        figs.append(figure_html(rank_figure(rows), "rank and flatness vs width",
                            "Mean rank J / (n·k), share of rank-deficient exact fits and fraction "
                            "of zero Hessian eigenvalues, per group, ordered by N."))
    if any(r["report"].get("hessian") for r in done):
        figs.append(figure_html(inertia_figure(records), "Hessian inertia distribution",
                            "The most common Hessian inertias [positive, negative, zero] of the "
                            "done runs."))
    if any(r["heldout"] for r in rows):
        figs.append(figure_html(heldout_figure(rows), "held-out spread",
                            "§6.3 Experiment 2b: spread of the held-out outputs and share of the "
                            "modal held-out pattern."))
    if any("hessian_rank_formula" in r["extras"] for r in records):
        figs.append(figure_html(linear_rank_figure(records), "Hessian rank against the formula",
                            "Measured Hessian rank against the deep-linear formula (§5.2)."))
    if "checkpoint" in keys:
        figs.append(figure_html(checkpoint_figure(records), "checkpoints",
                            "Loss, rank J, inertia and extreme eigenvalues per checkpoint."))
    return figs


def sweep_page(db_path: str | os.PathLike, *, title: str | None = None) -> str:
    """One self-contained HTML page of a sweep database: status, groups, trends and failures.

    Reads the store only (safe while a sweep runs). Sections: the status counts (planned, done,
    failed, remaining); one table row per group of runs sharing the varying config values (the
    rows of ``lossgeom.sweep.summary.summarize``, grouped by widths first); the trend figures of
    ``lossgeom.plots.sweep`` that apply (rank and flatness vs width, the inertia distribution,
    held-out spread, the deep-linear formula, checkpoints); every failed run with its reason (up
    to ``FAILURES_SHOWN``).

    Args:
        db_path: The SQLite file a sweep wrote.
        title: Page heading (default: the sweep's name).

    Returns:
        The HTML text.

    Raises:
        ValueError: For a missing file, a file that is not a sweep store, or a newer schema.
    """
    db = os.fspath(db_path)
    st = sweep_status(db)
    records = read_records(db)
    title = title or f"lossgeom sweep: {st.name or os.path.basename(db)}"
    counts = (f'<table class="status"><tr><th>planned</th><th>done</th><th>failed</th>'
              f'<th>remaining</th></tr><tr data-field="status">{num_cell(st.planned)}'
              f"{num_cell(st.done)}{num_cell(st.failed)}{num_cell(st.remaining)}</tr></table>")
    parts = [f"<h1>{esc(title)}</h1>",
             f'<p class="sub">{esc(os.path.basename(db))} · {len(records)} runs stored · lossgeom '
             f"{esc(version())}</p>", '<h2 id="status">Status</h2>', counts]
    if not records:
        parts.append("<p>No run is stored yet.</p>")
        return document(title, "\n".join(parts), True)
    keys = varying_keys(records)
    rows = summarize(records, by=["widths"] + [k for k in keys if k != "widths"])
    parts += ['<h2 id="groups">Groups</h2>',
              f'<p class="sub">Grouped by {esc(", ".join(["widths"] + [k for k in keys if k != "widths"]))}'
              "; undecided counts runs whose rank J or Hessian counts are not certified.</p>",
              _groups_table(rows)]
    figs = _sweep_figures(records, rows, keys)
    if figs:
        parts += ['<h2 id="trends">Trends</h2>', *figs]
    parts += ['<h2 id="failures">Failures</h2>', _failures_table(records, keys)]
    return document(title, "\n".join(parts), True)
