"""The page of one Report: decisions with their evidence, figures, blocks, degeneracy, LLC."""

from __future__ import annotations

import json
from typing import Any

from ..plots.report import blocks_figure, cut_figure, degeneracy_figure
from ..plots.spectrum import spectrum_figure
from ..report import Report
from ..results import jsonable
from ._glossary import glossary_html
from ._html import document, esc, figure_html, fmt, get_field, num_cell, rst, text_cell, version

__all__ = ["report_page"]

_HEAD = ("<tr><th>quantity</th><th>value</th><th>tolerance</th><th>gap</th><th>route and evidence"
         "</th><th>decision</th></tr>")


def _row(field: str, name: str, value: Any, *, tol: Any = "", gap: Any = "", route: str = "",
         decided: bool | None = None, verdict: str = "", reason: str = "") -> tuple[str, str | None]:
    """One summary row, and the undecided note it contributes (or None).

    decided: True/False for a certified-or-not decision; None for a plain measurement, whose
    ``verdict`` (e.g. "critical") is shown as it is.
    """
    cells = [f"<td>{rst(name)}</td>", num_cell(value),
             num_cell(tol) if tol != "" else "<td></td>", num_cell(gap) if gap != "" else "<td></td>",
             f"<td>{rst(route)}</td>"]
    note = None
    if decided is True:
        cells.append('<td class="ok">decided</td>')
    elif decided is False:
        why = reason or "the route did not certify this value"
        cells.append(f'<td class="undecided">undecided: {esc(why)}</td>')
        note = f"{name}: {why}"
    else:
        cells.append(text_cell(verdict))
    cls = ' class="undecided"' if decided is False else ""
    return f'<tr data-field="{esc(field)}"{cls}>{"".join(cells)}</tr>', note


def _rank_route(j: Any) -> str:
    return (f"{j.method}; σ₁ = {fmt(j.sigma_max)}, σ_r = {fmt(j.sigma_r)}, σ_(r+1) = "
            f"{fmt(j.sigma_next)}; tol = max(atol, rtol·σ₁), rtol = {fmt(j.rtol)}; decided when "
            f"gap ≥ min_gap = {fmt(j.min_gap)}")


def _summary(report: Report) -> tuple[str, list[str]]:
    """The summary table and the list of undecided decisions."""
    rows: list[tuple[str, str | None]] = []
    c, pf, j, g, h = (report.criticality, report.perfect_fit, report.jacobian, report.gauss_newton,
                      report.hessian)
    rows.append(_row("sizes", "N (parameters), n (samples), k (outputs)",
                     [report.n_params, report.n_samples, report.n_outputs]))
    rows.append(_row("loss", "loss L(θ)", report.loss,
                     route=f"{report.loss_name}, reduction {report.reduction}"))
    rows.append(_row("criticality", "‖∇L(θ)‖ (criticality)", c.grad_norm, tol=c.tol,
                     route=f"critical when ‖∇L‖ ≤ tol = max(rtol·scale, floor); rtol = "
                           f"{fmt(c.rtol)}, scale = {fmt(c.scale)}, floor = {fmt(c.floor)}",
                     verdict="critical" if c.critical else "not critical"))
    rows.append(_row("output_grad_norm", "‖∇ₓC‖ (output-space gradient)", report.output_grad_norm))
    rows.append(_row("perfect_fit", "perfect fit: max |residual|", pf.max_residual, tol=pf.tol,
                     route="the outputs minimize C when max |r| ≤ tol",
                     verdict="holds" if pf.holds else "does not hold"))
    rows.append(_row("jacobian", "rank J", j.rank, tol=j.tol, gap=j.gap, route=_rank_route(j),
                     decided=j.decided, reason=j.reason))
    if g is not None:
        rows.append(_row("gauss_newton", "rank G = Jᵀ∇²ₓC J", g.rank, tol=g.tol, gap=g.gap,
                         route=f"{g.method}; inertia (+/−/0) {fmt(g.inertia.as_list())}",
                         decided=g.decided))
    if h is not None:
        inertia = h.inertia
        rows.append(_row("hessian.rank", "rank ∇²L", h.rank, tol=h.tol, gap=h.gap,
                         route=f"{h.method}; tol = rtol·max|λ|, rtol = {fmt(h.rtol)}",
                         decided=h.decided, reason=h.reason))
        rows.append(_row("hessian.inertia", "inertia of ∇²L (+/−/0)", inertia.as_list(),
                         tol=inertia.tol, gap=inertia.gap,
                         route=f"{h.method}; a count the route cannot settle is shown as ?",
                         decided=h.decided and None not in inertia.as_list(), reason=h.reason))
        cert = h.certificate
        if cert is not None:
            rows.append(_row("hessian.certificate", "certificate", cert.kind,
                             route=f"residual {fmt(cert.residual)}, subspace dim "
                                   f"{fmt(cert.subspace_dim)}, {cert.n_matvec} products, failure "
                                   f"probability {fmt(cert.failure_probability)}"))
        extremes = [h.top_eigenvalues[0] if h.top_eigenvalues else None,
                    h.bottom_eigenvalues[0] if h.bottom_eigenvalues else None]
        route = f"{h.n_matvec} Hessian-vector products"
        if h.residuals_top or h.residuals_bottom:
            res = list(h.residuals_top) + list(h.residuals_bottom)
            route += f", max residual ‖Hv − λv‖ = {fmt(max(res))}"
        if h.method == "dense":
            route += f", asymmetry ‖H − Hᵀ‖/‖H‖ = {fmt(h.asymmetry)}"
        rows.append(_row("hessian.extremes", "λ_max, λ_min of ∇²L", extremes, route=route))
    rows.append(_row("behavior_manifold_dim", "behavior manifold dim N − rank J",
                     report.behavior_manifold_dim, route="§1.2; an upper bound where rank J is not "
                     "locally constant"))
    rows.append(_row("kind", "kind", str(report.kind), route=report.kind_reason,
                     verdict="certified minimum" if report.kind.is_minimum else ""))
    ri = report.rank_identity
    rows.append(_row("rank_identity", "rank ∇²L = rank J", ri.holds, route=ri.reason,
                     verdict="predicted" if ri.predicted else "not predicted"))
    dt = f"products in {report.dtype}, model {report.model_dtype or report.dtype}"
    differ = bool(report.model_dtype) and report.model_dtype != report.dtype
    rows.append(_row("dtype", "dtype", report.dtype, route=dt,
                     verdict="tolerances follow the product dtype" if differ else ""))
    for note in report.routes:
        rows.append(_row("routes", "route note", None, route=note))
    if report.timings:
        rows.append(_row("timings", "seconds per stage", round(sum(report.timings.values()), 4),
                         route=", ".join(f"{k} {v:.3g} s" for k, v in report.timings.items())))
    table = f"<table class=\"summary\">\n{_HEAD}\n" + "\n".join(r for r, _ in rows) + "\n</table>"
    return table, [n for _, n in rows if n is not None]


def _blocks_html(report: Report) -> str:
    blocks = report.blocks
    head = ("<tr><th>block</th><th>N_b</th><th>rank J_b</th><th>tol</th><th>gap</th>"
            "<th>inertia H_bb (+/−/0)</th><th>rank H_bb</th><th>decision</th></tr>")
    rows = []
    for b in blocks:
        j, h = get_field(b, "jacobian"), get_field(b, "hessian")
        counts = list(get_field(h, "inertia") or [None, None, None])
        decided = bool(get_field(j, "decided")) and bool(get_field(h, "decided")) and None not in counts
        why = "; ".join(r for r in (get_field(j, "reason"), get_field(h, "reason")) if r)
        verdict = ('<td class="ok">decided</td>' if decided else
                   f'<td class="undecided">undecided: {esc(why or "a count is not certified")}</td>')
        cls = "" if decided else ' class="undecided"'
        name = esc(get_field(b, "name"))
        cells = "".join(num_cell(v) for v in (get_field(b, "n_params"), get_field(j, "rank"),
                                              get_field(j, "tol"), get_field(j, "gap"), counts,
                                              get_field(h, "rank")))
        rows.append(f'<tr data-block="{name}"{cls}><td>{name}</td>{cells}{verdict}</tr>')
    fig = figure_html(blocks_figure(blocks), "per-block rank J_b and inertia of H_bb",
                  "Left: rank of each block's Jacobian columns J_b against its size N_b. Right: "
                  "inertia of each diagonal Hessian block H_bb (hatched: undecided).")
    return (f'<h2 id="blocks">Parameter blocks</h2>\n<table class="blocks">\n{head}\n'
            + "\n".join(rows) + f"\n</table>\n{fig}")


def _degeneracy_html(report: Report) -> str:
    d = report.degeneracy
    eps, mid = list(get_field(d, "rel_eps")), list(get_field(d, "count_above"))
    low, high = list(get_field(d, "count_low")), list(get_field(d, "count_high"))
    head = ("<tr><th>ε</th><th>#{|λ| &gt; ε·|λ|max}</th><th>low</th><th>high</th></tr>")
    rows = [f"<tr data-eps=\"{esc(json.dumps(jsonable(e)))}\">{num_cell(e)}{num_cell(m)}{num_cell(lo)}"
            f"{num_cell(hi)}</tr>" for e, m, lo, hi in zip(eps, mid, low, high, strict=True)]
    method, conf = get_field(d, "method"), get_field(d, "confidence")
    fig = figure_html(degeneracy_figure(d, report.n_params), "degeneracy profile",
                  f"Counts of Hessian eigenvalues above ε·|λ|max with their intervals; method "
                  f"{method}, confidence {fmt(conf)}.")
    return (f'<h2 id="degeneracy">Degeneracy profile</h2>\n<p class="sub">method '
            f"<code>{esc(method)}</code>, confidence {esc(fmt(conf))} (the probability that "
            f'every interval covers its count)</p>\n<table class="degeneracy">\n{head}\n'
            + "\n".join(rows) + f"\n</table>\n{fig}")


def _llc_parts(llc: Any) -> tuple[Any, Any]:
    """(bounds, estimate) from what ``report_page`` accepts as ``llc``; either may be None."""
    bounds = get_field(llc, "bounds")
    estimate = get_field(llc, "estimate")
    if bounds is None and (get_field(llc, "lower") is not None or get_field(llc, "upper") is not None
                           or get_field(llc, "reason") is not None):
        bounds = llc
    if estimate is None and get_field(llc, "mean") is not None:
        estimate = llc
    if isinstance(estimate, int | float):
        estimate = {"mean": float(estimate)}
    return bounds, estimate


def _llc_html(llc: Any) -> str:
    where = "report_page(report, llc)"
    bounds, estimate = _llc_parts(llc)
    if bounds is None and estimate is None:
        raise TypeError(f"{where}: llc must carry bounds (lower, upper, reason) or an estimate "
                        f"(mean, std) (expected a dict or an llc_bounds / estimate_llc result, "
                        f"got {type(llc).__name__}). Pass {{'bounds': lg.llc_bounds(report), "
                        "'estimate': lg.estimate_llc(problem, theta)}.")
    rows = []
    lower = upper = None
    if bounds is not None:
        lower, upper = get_field(bounds, "lower"), get_field(bounds, "upper")
        rows.append(f'<tr data-field="llc.lower"><td>lower bound rank ∇²L / 2</td>{num_cell(lower)}'
                    f"<td>{esc(get_field(bounds, 'reason') or '')}</td></tr>")
        rows.append(f'<tr data-field="llc.upper"><td>upper bound N / 2</td>{num_cell(upper)}'
                    "<td></td></tr>")
    if estimate is not None:
        mean, std = get_field(estimate, "mean"), get_field(estimate, "std")
        details = [f"{k} {fmt(get_field(estimate, k))}" for k in ("n_chains", "n_draws", "nbeta",
                                                              "step", "backend", "mixed")
                   if get_field(estimate, k) is not None]
        inside = ""
        if mean is not None and lower is not None and upper is not None:
            ok = lower <= mean <= upper
            inside = "; inside the bounds" if ok else "; outside the bounds [lower, upper]"
        rows.append(f'<tr data-field="llc.estimate"><td>estimate λ̂ (mean)</td>{num_cell(mean)}'
                    f"<td>{esc(', '.join(details) + inside)}</td></tr>")
        rows.append(f'<tr data-field="llc.std"><td>std over chains</td>{num_cell(std)}<td></td></tr>')
        for w in get_field(estimate, "warnings") or []:
            rows.append(f'<tr class="undecided"><td>warning</td><td></td><td>{esc(w)}</td></tr>')
    return ('<h2 id="llc">Local learning coefficient</h2>\n<table class="llc">\n<tr><th>quantity'
            "</th><th>value</th><th>how</th></tr>\n" + "\n".join(rows) + "\n</table>")


def report_page(report: Report, *, title: str | None = None, llc: Any = None,
                standalone: bool = True) -> str:
    """One self-contained HTML page of a Report (what it holds: ``lossgeom.pages``).

    Sections: a banner listing every undecided decision with its reason; the summary table (each
    decision with its tolerance, gap, route and whether it is decided: rank J, rank G, rank and
    inertia of ∇²L with the certificate, criticality with its tolerance and floor, perfect fit,
    kind and its reason, the rank identity, the dtypes and every route note); the |λ| spectrum on
    a log scale with the tolerance and the gap at the cut; the cut of J from σ₁, σ_r, σ_(r+1)
    and tol; per-block counts when ``report.blocks`` is set; the degeneracy profile when
    ``report.degeneracy`` is set; the local learning coefficient when ``llc`` is given; the field
    glossary and the Report's JSON.

    Args:
        report: A Report from ``analyze``.
        title: Page heading (default: kind and N).
        llc: Optional local learning coefficient results, read by key or attribute: bounds
            (``lower``, ``upper``, ``reason``, as ``llc_bounds`` returns) and/or an estimate
            (``mean``, ``std``, and n_chains, n_draws, nbeta, warnings where present, as
            ``estimate_llc`` returns); either the object itself or a dict
            ``{"bounds": ..., "estimate": ...}``.
        standalone: A whole HTML document (True) or one ``<div>`` with its scoped style, for
            embedding in a notebook cell or another page.

    Returns:
        The HTML text.

    Raises:
        TypeError: If ``report`` is not a Report, or ``llc`` carries neither bounds nor an
            estimate.
    """
    where = "report_page(report)"
    if not isinstance(report, Report):
        raise TypeError(f"{where}: expected a Report from lossgeom.analyze, got "
                        f"{type(report).__name__}. Pass lg.analyze(problem, theta).")
    llc_section = _llc_html(llc) if llc is not None else None  # bad input fails before drawing
    title = title or f"lossgeom report: {report.kind}, N = {report.n_params}"
    table, undecided = _summary(report)
    parts = [f"<h1>{esc(title)}</h1>",
             f'<p class="sub">{esc(report.kind)}: {esc(report.kind_reason)} · lossgeom '
             f"{esc(version())} · loss {esc(report.loss_name)} ({esc(report.reduction)}) · "
             f"{esc(report.dtype)}</p>"]
    if undecided:
        items = "".join(f"<li>{rst(u)}</li>" for u in undecided)
        parts.append(f'<div class="banner undecided" data-undecided="{len(undecided)}">'
                     f"{len(undecided)} undecided: these values are the route's best count, not "
                     f"certified.<ul>{items}</ul></div>")
    else:
        parts.append('<div class="banner ok" data-undecided="0">Every rank and inertia on this '
                     "page is decided: its gap reaches min_gap and its route resolved the cut."
                     "</div>")
    parts += ['<h2 id="summary">Decisions</h2>', table, '<h2 id="figures">Figures</h2>']
    h = report.hessian
    if h is not None:
        full = h.spectrum is not None
        parts.append(figure_html(
            spectrum_figure(report), "Hessian |eigenvalue| spectrum",
            f"|λ| of ∇²L by decreasing magnitude ({'every eigenvalue' if full else 'extremes only'}"
            f", route {h.method}); dashed: tol = {fmt(h.tol)}; "
            + (f"the arrow at the cut after rank {h.rank} is the gap {fmt(h.gap)}."
               if full and h.rank is not None else "no cut drawn (" + (
                   "rank undecided)." if h.rank is None else "extreme eigenvalues only).")
               ) + " Exact zeros sit on the axis floor."))
    j = report.jacobian
    parts.append(figure_html(
        cut_figure(j), "rank cut of J",
        f"The cut of J ({j.method}): σ₁ = {fmt(j.sigma_max)}, σ_r = {fmt(j.sigma_r)} kept, "
        f"σ_(r+1) = {fmt(j.sigma_next)} dropped, tol = {fmt(j.tol)}, gap σ_r/σ_(r+1) = "
        f"{fmt(j.gap)}."))
    if report.blocks is not None:
        parts.append(_blocks_html(report))
    if report.degeneracy is not None:
        parts.append(_degeneracy_html(report))
    if llc_section is not None:
        parts.append(llc_section)
    parts.append(glossary_html())
    parts.append('<details><summary>The Report as JSON (<code>Report.to_dict()</code>)</summary>'
                 f"<pre>{esc(json.dumps(report.to_dict(), indent=1))}</pre></details>")
    return document(title, "\n".join(parts), standalone)
