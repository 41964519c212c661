"""Self-contained HTML pages of a Report and of a sweep database, for people to read and keep.

A page is one HTML string that needs nothing else: the CSS is inline, every figure is a PNG
embedded as a ``data:image/png;base64,...`` URI, there are no scripts, fonts or links to fetch, and
a Content-Security-Policy (``default-src 'none'``) tells a browser to load nothing from anywhere.
It can be mailed, archived next to a paper, or opened years later offline.

``report_page`` shows every decision of a ``Report`` with the tolerance, gap and route behind it
(undecided ones marked, with their reason), the |λ| spectrum with the tolerance and the gap at the
cut, the rank cut of J from the numbers the Report keeps, per-block counts and the degeneracy
profile when the Report holds them, optional bounds and an estimate of the local learning
coefficient, a glossary of every field (read from ``lossgeom.report``'s docstring, the one source of
that text) and the Report's JSON. ``Report.to_html()`` and ``Report._repr_html_()`` (notebooks)
render through it. ``sweep_page`` shows a sweep database: its status, a table per group of runs,
the trend figures of ``lossgeom.plots.sweep`` and every failure with its reason. ``save_page``
writes a page atomically.

Example:
    >>> import torch, lossgeom as lg
    >>> X = torch.tensor([[1., 0.], [0., 1.], [1., 1.]], dtype=torch.float64)
    >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False), X, torch.zeros(3, 1))
    >>> page = report_page(lg.analyze(p, torch.zeros(2, dtype=torch.float64)))
    >>> page.startswith("<!DOCTYPE html>"), "http://" in page or "https://" in page
    (True, False)
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from matplotlib.figure import Figure

from . import report as _report_module
from .plots.report import blocks_figure, cut_figure, degeneracy_figure
from .plots.spectrum import spectrum_figure
from .plots.sweep import checkpoint_figure, heldout_figure, inertia_figure, linear_rank_figure, rank_figure
from .report import Report
from .results import jsonable
from .sweep.api import status as sweep_status
from .sweep.store import read_records
from .sweep.summary import format_value, summarize, varying_keys

__all__ = ["glossary", "report_page", "save_page", "sweep_page"]

FAILURES_SHOWN = 500
"""Most failed runs listed one by one on a sweep page (the rest are counted)."""

_CSS = """
.lossgeom-page { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1b1f24; max-width: 1100px; margin: 0 auto; padding: 0 1rem 2rem; line-height: 1.4; }
.lossgeom-page h1 { font-size: 1.5rem; margin: 1rem 0 0.2rem; }
.lossgeom-page h2 { font-size: 1.15rem; margin: 1.6rem 0 0.4rem; border-bottom: 1px solid #d0d7de;
  padding-bottom: 0.2rem; }
.lossgeom-page .sub { color: #57606a; margin: 0 0 0.8rem; }
.lossgeom-page table { border-collapse: collapse; font-size: 0.86rem; margin: 0.4rem 0; }
.lossgeom-page th, .lossgeom-page td { border: 1px solid #d0d7de; padding: 0.25rem 0.5rem;
  text-align: left; vertical-align: top; }
.lossgeom-page th { background: #f6f8fa; }
.lossgeom-page td.num { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  white-space: nowrap; }
.lossgeom-page tr.undecided td { background: #fff8c5; }
.lossgeom-page td.undecided, .lossgeom-page .banner.undecided { color: #7d4e00; font-weight: 600; }
.lossgeom-page td.ok { color: #1a7f37; }
.lossgeom-page td.no { color: #6e7781; }
.lossgeom-page .banner { border: 1px solid #d4a72c; background: #fff8c5; padding: 0.5rem 0.8rem;
  border-radius: 6px; margin: 0.6rem 0; }
.lossgeom-page .banner.ok { border-color: #4ac26b; background: #dafbe1; color: #1a7f37; }
.lossgeom-page figure { display: inline-block; margin: 0.4rem 1rem 0.4rem 0; vertical-align: top; }
.lossgeom-page figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
.lossgeom-page figcaption { font-size: 0.8rem; color: #57606a; max-width: 640px; }
.lossgeom-page dl { font-size: 0.86rem; }
.lossgeom-page dt { font-weight: 600; margin-top: 0.4rem; }
.lossgeom-page dd { margin-left: 1.2rem; }
.lossgeom-page code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85em;
  background: #f6f8fa; padding: 0 0.2em; border-radius: 3px; }
.lossgeom-page pre { font-size: 0.75rem; background: #f6f8fa; padding: 0.5rem; overflow-x: auto;
  max-height: 30rem; white-space: pre-wrap; }
.lossgeom-page details { margin: 0.6rem 0; }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# -- small pieces ---------------------------------------------------------------------------------
def _get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for a mapping, else ``getattr(obj, key, default)``."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _rst(text: str) -> str:
    """Escaped text with ``literals`` as <code>."""
    return re.sub(r"``(.+?)``", r"<code>\1</code>", _esc(text))


def _fmt(x: Any) -> str:
    """A value as short text: 6 significant digits, ∞, — for missing, yes/no for booleans."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.6g}"
    if isinstance(x, list | tuple):
        return " / ".join("?" if v is None else _fmt(v) for v in x)
    return str(x)


def _num(x: Any, cls: str = "num") -> str:
    """A table cell holding a value: the short text, and its exact JSON form in data-value."""
    exact = json.dumps(jsonable(x))
    return f'<td class="{cls}" data-value="{_esc(exact)}">{_esc(_fmt(x))}</td>'


def _text(text: Any, cls: str = "") -> str:
    return f'<td class="{cls}">{_esc(text)}</td>' if cls else f"<td>{_esc(text)}</td>"


def _png(fig: Figure, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(fig: Figure, alt: str, caption: str) -> str:
    """A figure as an <img> with an embedded PNG and a caption."""
    return (f'<figure><img src="data:image/png;base64,{_png(fig)}" alt="{_esc(alt)}">'
            f"<figcaption>{_rst(caption)}</figcaption></figure>")


def _version() -> str:
    """The running lossgeom's version (the package root is loaded before any of its modules)."""
    version = getattr(sys.modules.get(__package__ or "lossgeom"), "__version__", None)
    if version:
        return str(version)
    try:
        return metadata.version("lossgeom")
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def _document(title: str, body: str, standalone: bool) -> str:
    fragment = f'<div class="lossgeom-page"><style>{_CSS}</style>\n{body}\n</div>'
    if not standalone:
        return fragment
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(title)}</title>\n</head>\n<body>\n{fragment}\n</body>\n</html>\n")


# -- glossary -------------------------------------------------------------------------------------
def _glossary_parts() -> tuple[str, list[tuple[str, str]], list[str]]:
    """(heading, [(term, text)], closing notes) parsed from ``lossgeom.report``'s docstring.

    The docstring holds a line starting "Field glossary", a blank line, bullets ("* term: text",
    continued on indented lines) and closing paragraphs.

    Raises:
        RuntimeError: If the docstring lost its glossary (a packaging error, not a user's).
    """
    lines = (_report_module.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Field glossary")), None)
    if start is None:
        raise RuntimeError("lossgeom.report's docstring lost its 'Field glossary' section; the "
                           "pages read the field glossary from there. Restore it.")
    heading = lines[start].rstrip(":")
    bullets: list[list[str]] = []
    notes: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("* ") and not notes:
            bullets.append([line[2:].strip()])
        elif line.startswith("  ") and line.strip() and bullets and not notes:
            bullets[-1].append(line.strip())
        elif line.strip() and bullets:
            if not notes or not notes[-1]:
                notes.append([])
            notes[-1].append(line.strip())
        elif not line.strip() and notes:
            notes.append([])
    entries = []
    for parts in bullets:
        term, _, text = " ".join(parts).partition(": ")
        entries.append((term, text))
    paragraphs = [" ".join(n) for n in notes if n]
    return heading, entries, paragraphs


def glossary() -> list[tuple[str, str]]:
    """The Report's field glossary as (term, text) pairs, read from ``lossgeom.report``'s docstring.

    One source of truth: the docstring that ``help(lossgeom.report)`` shows is the text the pages
    print. Terms and texts keep their ````literal```` markup.

    Returns:
        One pair per bullet of the glossary, in its order.

    Example:
        >>> glossary()[0][0]
        '``n_params``, ``n_samples``, ``n_outputs``'
    """
    return _glossary_parts()[1]


def _glossary_html() -> str:
    heading, entries, notes = _glossary_parts()
    items = "\n".join(f"<dt>{_rst(term)}</dt><dd>{_rst(text)}</dd>" for term, text in entries)
    return (f"<h2 id=\"glossary\">Glossary</h2>\n<p class=\"sub\">{_rst(heading)}.</p>\n"
            f"<dl>\n{items}\n</dl>\n" + "".join(f"<p>{_rst(n)}</p>" for n in notes))


# -- the Report page ------------------------------------------------------------------------------
_HEAD = ("<tr><th>quantity</th><th>value</th><th>tolerance</th><th>gap</th><th>route and evidence"
         "</th><th>decision</th></tr>")


def _row(field: str, name: str, value: Any, *, tol: Any = "", gap: Any = "", route: str = "",
         decided: bool | None = None, verdict: str = "", reason: str = "") -> tuple[str, str | None]:
    """One summary row, and the undecided note it contributes (or None).

    decided: True/False for a certified-or-not decision; None for a plain measurement, whose
    ``verdict`` (e.g. "critical") is shown as it is.
    """
    cells = [f"<td>{_rst(name)}</td>", _num(value),
             _num(tol) if tol != "" else "<td></td>", _num(gap) if gap != "" else "<td></td>",
             f"<td>{_rst(route)}</td>"]
    note = None
    if decided is True:
        cells.append('<td class="ok">decided</td>')
    elif decided is False:
        why = reason or "the route did not certify this value"
        cells.append(f'<td class="undecided">undecided: {_esc(why)}</td>')
        note = f"{name}: {why}"
    else:
        cells.append(_text(verdict))
    cls = ' class="undecided"' if decided is False else ""
    return f'<tr data-field="{_esc(field)}"{cls}>{"".join(cells)}</tr>', note


def _rank_route(j: Any) -> str:
    return (f"{j.method}; σ₁ = {_fmt(j.sigma_max)}, σ_r = {_fmt(j.sigma_r)}, σ_(r+1) = "
            f"{_fmt(j.sigma_next)}; tol = max(atol, rtol·σ₁), rtol = {_fmt(j.rtol)}; decided when "
            f"gap ≥ min_gap = {_fmt(j.min_gap)}")


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
                           f"{_fmt(c.rtol)}, scale = {_fmt(c.scale)}, floor = {_fmt(c.floor)}",
                     verdict="critical" if c.critical else "not critical"))
    rows.append(_row("output_grad_norm", "‖∇ₓC‖ (output-space gradient)", report.output_grad_norm))
    rows.append(_row("perfect_fit", "perfect fit: max |residual|", pf.max_residual, tol=pf.tol,
                     route="the outputs minimize C when max |r| ≤ tol",
                     verdict="holds" if pf.holds else "does not hold"))
    rows.append(_row("jacobian", "rank J", j.rank, tol=j.tol, gap=j.gap, route=_rank_route(j),
                     decided=j.decided, reason=j.reason))
    if g is not None:
        rows.append(_row("gauss_newton", "rank G = Jᵀ∇²ₓC J", g.rank, tol=g.tol, gap=g.gap,
                         route=f"{g.method}; inertia (+/−/0) {_fmt(g.inertia.as_list())}",
                         decided=g.decided))
    if h is not None:
        inertia = h.inertia
        rows.append(_row("hessian.rank", "rank ∇²L", h.rank, tol=h.tol, gap=h.gap,
                         route=f"{h.method}; tol = rtol·max|λ|, rtol = {_fmt(h.rtol)}",
                         decided=h.decided, reason=h.reason))
        rows.append(_row("hessian.inertia", "inertia of ∇²L (+/−/0)", inertia.as_list(),
                         tol=inertia.tol, gap=inertia.gap,
                         route=f"{h.method}; a count the route cannot settle is shown as ?",
                         decided=h.decided and None not in inertia.as_list(), reason=h.reason))
        cert = h.certificate
        if cert is not None:
            rows.append(_row("hessian.certificate", "certificate", cert.kind,
                             route=f"residual {_fmt(cert.residual)}, subspace dim "
                                   f"{_fmt(cert.subspace_dim)}, {cert.n_matvec} products, failure "
                                   f"probability {_fmt(cert.failure_probability)}"))
        extremes = [h.top_eigenvalues[0] if h.top_eigenvalues else None,
                    h.bottom_eigenvalues[0] if h.bottom_eigenvalues else None]
        route = f"{h.n_matvec} Hessian-vector products"
        if h.residuals_top or h.residuals_bottom:
            res = list(h.residuals_top) + list(h.residuals_bottom)
            route += f", max residual ‖Hv − λv‖ = {_fmt(max(res))}"
        if h.method == "dense":
            route += f", asymmetry ‖H − Hᵀ‖/‖H‖ = {_fmt(h.asymmetry)}"
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
        j, h = _get(b, "jacobian"), _get(b, "hessian")
        counts = list(_get(h, "inertia") or [None, None, None])
        decided = bool(_get(j, "decided")) and bool(_get(h, "decided")) and None not in counts
        why = "; ".join(r for r in (_get(j, "reason"), _get(h, "reason")) if r)
        verdict = ('<td class="ok">decided</td>' if decided else
                   f'<td class="undecided">undecided: {_esc(why or "a count is not certified")}</td>')
        cls = "" if decided else ' class="undecided"'
        rows.append(f'<tr data-block="{_esc(_get(b, "name"))}"{cls}><td>{_esc(_get(b, "name"))}'
                    f'</td>{_num(_get(b, "n_params"))}{_num(_get(j, "rank"))}{_num(_get(j, "tol"))}'
                    f'{_num(_get(j, "gap"))}{_num(counts)}{_num(_get(h, "rank"))}{verdict}</tr>')
    fig = _figure(blocks_figure(blocks), "per-block rank J_b and inertia of H_bb",
                  "Left: rank of each block's Jacobian columns J_b against its size N_b. Right: "
                  "inertia of each diagonal Hessian block H_bb (hatched: undecided).")
    return (f'<h2 id="blocks">Parameter blocks</h2>\n<table class="blocks">\n{head}\n'
            + "\n".join(rows) + f"\n</table>\n{fig}")


def _degeneracy_html(report: Report) -> str:
    d = report.degeneracy
    eps, mid = list(_get(d, "rel_eps")), list(_get(d, "count_above"))
    low, high = list(_get(d, "count_low")), list(_get(d, "count_high"))
    head = ("<tr><th>ε</th><th>#{|λ| &gt; ε·|λ|max}</th><th>low</th><th>high</th></tr>")
    rows = [f"<tr data-eps=\"{_esc(json.dumps(jsonable(e)))}\">{_num(e)}{_num(m)}{_num(lo)}"
            f"{_num(hi)}</tr>" for e, m, lo, hi in zip(eps, mid, low, high, strict=True)]
    method, conf = _get(d, "method"), _get(d, "confidence")
    fig = _figure(degeneracy_figure(d, report.n_params), "degeneracy profile",
                  f"Counts of Hessian eigenvalues above ε·|λ|max with their intervals; method "
                  f"{method}, confidence {_fmt(conf)}.")
    return (f'<h2 id="degeneracy">Degeneracy profile</h2>\n<p class="sub">method '
            f"<code>{_esc(method)}</code>, confidence {_esc(_fmt(conf))} (the probability that "
            f'every interval covers its count)</p>\n<table class="degeneracy">\n{head}\n'
            + "\n".join(rows) + f"\n</table>\n{fig}")


def _llc_parts(llc: Any) -> tuple[Any, Any]:
    """(bounds, estimate) from what ``report_page`` accepts as ``llc``; either may be None."""
    bounds = _get(llc, "bounds")
    estimate = _get(llc, "estimate")
    if bounds is None and (_get(llc, "lower") is not None or _get(llc, "upper") is not None
                           or _get(llc, "reason") is not None):
        bounds = llc
    if estimate is None and _get(llc, "mean") is not None:
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
        lower, upper = _get(bounds, "lower"), _get(bounds, "upper")
        rows.append(f'<tr data-field="llc.lower"><td>lower bound rank ∇²L / 2</td>{_num(lower)}'
                    f"<td>{_esc(_get(bounds, 'reason') or '')}</td></tr>")
        rows.append(f'<tr data-field="llc.upper"><td>upper bound N / 2</td>{_num(upper)}'
                    "<td></td></tr>")
    if estimate is not None:
        mean, std = _get(estimate, "mean"), _get(estimate, "std")
        details = [f"{k} {_fmt(_get(estimate, k))}" for k in ("n_chains", "n_draws", "nbeta",
                                                              "step", "backend", "mixed")
                   if _get(estimate, k) is not None]
        inside = ""
        if mean is not None and lower is not None and upper is not None:
            ok = lower <= mean <= upper
            inside = "; inside the bounds" if ok else "; outside the bounds [lower, upper]"
        rows.append(f'<tr data-field="llc.estimate"><td>estimate λ̂ (mean)</td>{_num(mean)}'
                    f"<td>{_esc(', '.join(details) + inside)}</td></tr>")
        rows.append(f'<tr data-field="llc.std"><td>std over chains</td>{_num(std)}<td></td></tr>')
        for w in _get(estimate, "warnings") or []:
            rows.append(f'<tr class="undecided"><td>warning</td><td></td><td>{_esc(w)}</td></tr>')
    return ('<h2 id="llc">Local learning coefficient</h2>\n<table class="llc">\n<tr><th>quantity'
            "</th><th>value</th><th>how</th></tr>\n" + "\n".join(rows) + "\n</table>")


def report_page(report: Report, *, title: str | None = None, llc: Any = None,
                standalone: bool = True) -> str:
    """One self-contained HTML page of a Report (module docstring: what it shows and holds).

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
    title = title or f"lossgeom report: {report.kind}, N = {report.n_params}"
    table, undecided = _summary(report)
    parts = [f"<h1>{_esc(title)}</h1>",
             f'<p class="sub">{_esc(report.kind)}: {_esc(report.kind_reason)} · lossgeom '
             f"{_esc(_version())} · loss {_esc(report.loss_name)} ({_esc(report.reduction)}) · "
             f"{_esc(report.dtype)}</p>"]
    if undecided:
        items = "".join(f"<li>{_rst(u)}</li>" for u in undecided)
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
        parts.append(_figure(
            spectrum_figure(report), "Hessian |eigenvalue| spectrum",
            f"|λ| of ∇²L by decreasing magnitude ({'every eigenvalue' if full else 'extremes only'}"
            f", route {h.method}); dashed: tol = {_fmt(h.tol)}; "
            + (f"the arrow at the cut after rank {h.rank} is the gap {_fmt(h.gap)}."
               if full and h.rank is not None else "no cut drawn (" + (
                   "rank undecided)." if h.rank is None else "extreme eigenvalues only).")
               ) + " Exact zeros sit on the axis floor."))
    j = report.jacobian
    parts.append(_figure(
        cut_figure(j), "rank cut of J",
        f"The cut of J ({j.method}): σ₁ = {_fmt(j.sigma_max)}, σ_r = {_fmt(j.sigma_r)} kept, "
        f"σ_(r+1) = {_fmt(j.sigma_next)} dropped, tol = {_fmt(j.tol)}, gap σ_r/σ_(r+1) = "
        f"{_fmt(j.gap)}."))
    if report.blocks is not None:
        parts.append(_blocks_html(report))
    if report.degeneracy is not None:
        parts.append(_degeneracy_html(report))
    if llc is not None:
        parts.append(_llc_html(llc))
    parts.append(_glossary_html())
    parts.append('<details><summary>The Report as JSON (<code>Report.to_dict()</code>)</summary>'
                 f"<pre>{_esc(json.dumps(report.to_dict(), indent=1))}</pre></details>")
    return _document(title, "\n".join(parts), standalone)


# -- the sweep page -------------------------------------------------------------------------------
def _groups_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("<tr><th>group</th><th>runs</th><th>done</th><th>failed</th><th>N</th><th>fitted</th>"
            "<th>mean rank J</th><th>rank J / (n·k)</th><th>rank-deficient fits</th>"
            "<th>zero eigenvalues / N</th><th>modal inertia</th><th>kinds</th><th>undecided</th>"
            "</tr>")
    body = []
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].items())
        cls = ' class="undecided"' if r["undecided"] else ""
        body.append(f"<tr{cls}><td>{_esc(r['label'])}</td>{_num(r['runs'])}{_num(r['done'])}"
                    f"{_num(r['failed'])}{_num(r['n_params'])}{_num(r['fitted'])}"
                    f"{_num(r['rank_j_mean'])}{_num(r['rank_j_ratio'])}"
                    f"{_num(r['rank_deficient_fraction'])}{_num(r['zero_fraction'])}"
                    f"{_num(r['inertia_mode'])}<td>{_esc(kinds)}</td>{_num(r['undecided'])}</tr>")
    return f'<table class="groups">\n{head}\n' + "\n".join(body) + "\n</table>"


def _failures_table(records: Sequence[dict[str, Any]], keys: list[str]) -> str:
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        return '<p data-failures="0">No run failed.</p>'
    body = []
    for r in failed[:FAILURES_SHOWN]:
        config = " ".join(f"{k}={format_value(k, r['config'].get(k))}" for k in keys + ["seed"]
                          if k in r["config"])
        body.append(f'<tr data-run="{_esc(r["run_id"])}"><td class="num">{_esc(r["run_id"][:12])}'
                    f"</td><td>{_esc(config)}</td><td><pre>{_esc(r['error'])}</pre></td></tr>")
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
        figs.append(_figure(rank_figure(rows), "rank and flatness vs width",
                            "Mean rank J / (n·k), share of rank-deficient exact fits and fraction "
                            "of zero Hessian eigenvalues, per group, ordered by N."))
    if any(r["report"].get("hessian") for r in done):
        figs.append(_figure(inertia_figure(records), "Hessian inertia distribution",
                            "The most common Hessian inertias [positive, negative, zero] of the "
                            "done runs."))
    if any(r["heldout"] for r in rows):
        figs.append(_figure(heldout_figure(rows), "held-out spread",
                            "§6.3 Experiment 2b: spread of the held-out outputs and share of the "
                            "modal held-out pattern."))
    if any("hessian_rank_formula" in r["extras"] for r in records):
        figs.append(_figure(linear_rank_figure(records), "Hessian rank against the formula",
                            "Measured Hessian rank against the deep-linear formula (§5.2)."))
    if "checkpoint" in keys:
        figs.append(_figure(checkpoint_figure(records), "checkpoints",
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
              f'<th>remaining</th></tr><tr data-field="status">{_num(st.planned)}'
              f"{_num(st.done)}{_num(st.failed)}{_num(st.remaining)}</tr></table>")
    parts = [f"<h1>{_esc(title)}</h1>",
             f'<p class="sub">{_esc(os.path.basename(db))} · {len(records)} runs stored · lossgeom '
             f"{_esc(_version())}</p>", '<h2 id="status">Status</h2>', counts]
    if not records:
        parts.append("<p>No run is stored yet.</p>")
        return _document(title, "\n".join(parts), True)
    keys = varying_keys(records)
    rows = summarize(records, by=["widths"] + [k for k in keys if k != "widths"])
    parts += ['<h2 id="groups">Groups</h2>',
              f'<p class="sub">Grouped by {_esc(", ".join(["widths"] + [k for k in keys if k != "widths"]))}'
              "; undecided counts runs whose rank J or Hessian counts are not certified.</p>",
              _groups_table(rows)]
    figs = _sweep_figures(records, rows, keys)
    if figs:
        parts += ['<h2 id="trends">Trends</h2>', *figs]
    parts += ['<h2 id="failures">Failures</h2>', _failures_table(records, keys)]
    return _document(title, "\n".join(parts), True)


def save_page(page: str, path: str | os.PathLike) -> str:
    """Write an HTML page to ``path`` atomically (a temporary file, then ``os.replace``).

    Args:
        page: The HTML text (``report_page``, ``sweep_page``).
        path: Destination file; its folder is created if missing.

    Returns:
        The path written.

    Raises:
        TypeError: If ``page`` is not a string.
    """
    if not isinstance(page, str):
        raise TypeError(f"save_page(page, path): page must be the HTML text (expected str, got "
                        f"{type(page).__name__}). Pass report.to_html() or sweep_page(db).")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".html.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
