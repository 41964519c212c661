"""HTML pages of a Report and of a sweep: self-contained, every figure decodes, the numbers are the
Report's, undecided values are marked; a real browser loads every image when chromium is present."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
import re
import subprocess
from html import unescape
from html.parser import HTMLParser
from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pytest
from cases import tanh_251_exact_fit, tanh_random_point
from typer.testing import CliRunner

import lossgeom as lg
from lossgeom import pages
from lossgeom.cli import app
from lossgeom.linalg import numerical_rank
from lossgeom.pages import glossary, report_page, save_page, sweep_page
from lossgeom.pages._report_page import _llc_html
from lossgeom.plots.report import cut_figure, degeneracy_figure
from lossgeom.plots.spectrum import axis_floor, spectrum_figure
from lossgeom.report import BlockSummary, HessianSummary, Report
from lossgeom.results import RankDecision, Result, jsonable
from lossgeom.sweep.store import Store
from lossgeom.sweep.worker import run_one

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = "/usr/bin/chromium"


# -- parsing -------------------------------------------------------------------------------------
class Page(HTMLParser):
    """Tags with their attributes, the summary rows by data-field, and the text of each cell."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, list[dict]] = {}
        self._row: dict | None = None
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attrs))
        if tag == "tr":
            key = attrs.get("data-field") or attrs.get("data-block") or attrs.get("data-eps") \
                or attrs.get("data-run")
            self._row = {"attrs": attrs, "cells": []}
            if key:
                self.rows.setdefault(key, []).append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = {"attrs": attrs, "text": ""}
            self._row["cells"].append(self._cell)

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def images(self) -> list[str]:
        return [a.get("src", "") for t, a in self.tags if t == "img"]

    def row(self, key: str) -> dict:
        (r,) = self.rows[key]
        return r

    def value(self, key: str, col: int = 1):
        """The exact value (data-value JSON) of a row's cell."""
        return json.loads(self.row(key)["cells"][col]["attrs"]["data-value"])


def _shown(text: str) -> float:
    """The number a cell shows (∞ written as such)."""
    return math.inf if text.strip() == "∞" else float(text)


def _close(shown: str, exact: float) -> bool:
    """The shown text is the exact value to the 6 digits a page prints."""
    value = _shown(shown)
    return value == exact if math.isinf(exact) else math.isclose(value, exact, rel_tol=1e-5)


# -- reports -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Profile(Result):
    """A degeneracy profile as the Report will hold it (the fields of the contract)."""

    rel_eps: list[float]
    count_above: list[float]
    count_low: list[float]
    count_high: list[float]
    confidence: float
    method: str


def _undecided(report: Report) -> Report:
    """The fit's Report with rank J and the Hessian counts undecided (a gap of 2.8 at the cut)."""
    j = dataclasses.replace(report.jacobian, decided=False,
                            reason="gap 2.8 below min_gap 1e3 at the cut")
    h = report.hessian
    h = dataclasses.replace(h, decided=False, rank=None, reason="Krylov budget ran out",
                            inertia=dataclasses.replace(h.inertia, zero=None, decided=False))
    return dataclasses.replace(report, jacobian=j, hessian=h, model_dtype="float32",
                               routes=["<script>alert(1)</script> & a forward-mode fallback"])


def _blocks(problem, theta, report: Report) -> list[BlockSummary]:
    """Two blocks (hidden layer, output layer): rank J_b from the columns of J, inertia of H_bb
    from its eigenvalues, each decided by linalg on the dense matrices."""
    J, H = lg.jacobian(problem, theta), lg.hessian(problem, theta)
    cut = problem.param_numels[0] + problem.param_numels[1]
    out = []
    for name, sl in (("0", slice(0, cut)), ("2", slice(cut, problem.n_params))):
        rd = numerical_rank(J[:, sl])
        inert = lg.inertia(H[sl, sl], rtol=1e-9)
        hs = HessianSummary(rank=inert.rank, tol=inert.tol, gap=inert.gap, inertia=inert,
                            method="dense", decided=inert.decided)
        out.append(BlockSummary(name=name, n_params=sl.stop - sl.start, jacobian=rd, hessian=hs))
    return out


@pytest.fixture(scope="module")
def reports():
    problem, theta = tanh_251_exact_fit()
    # analyze fills degeneracy on exact routes; these pages leave it out so that the tests can
    # tell a page with the section from one without (the "full" page puts one back)
    fit = dataclasses.replace(lg.analyze(problem, theta, method="dense"), degeneracy=None)
    rp, rtheta = tanh_random_point()
    profile = Profile(rel_eps=[1e-2, 1e-4, 1e-6, 1e-8], count_above=[3, 4, 4, 4],
                      count_low=[3, 4, 4, 4], count_high=[3, 4, 5, 6], confidence=0.99,
                      method="slq")
    full = dataclasses.replace(fit, blocks=_blocks(problem, theta, fit), degeneracy=profile)
    saddle = dataclasses.replace(lg.analyze(rp, rtheta, method="dense"), degeneracy=None)
    return {"fit": fit, "saddle": saddle,
            "undecided": _undecided(fit), "full": full,
            "no_hessian": dataclasses.replace(fit, hessian=None, gauss_newton=None)}


LLC = {"bounds": {"lower": 2.0, "upper": 10.5, "reason": "global_minimum with certified rank 4"},
       "estimate": SimpleNamespace(mean=2.4, std=0.3, n_chains=4, n_draws=200, nbeta=12.0,
                                   warnings=["chain 2 drifted"])}


@pytest.fixture(scope="module")
def html(reports):
    out = {name: report_page(r) for name, r in reports.items() if name != "full"}
    out["full"] = report_page(reports["full"], title="blocks & profile", llc=LLC)
    return out


# -- self-contained ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fit", "saddle", "undecided", "full", "no_hessian"])
def test_page_is_self_contained_and_every_image_decodes(html, name):
    text = html[name]
    page = Page(text)
    assert not re.search(r"https?://", text)
    assert not any(t in ("script", "link", "iframe", "object", "embed") for t, _ in page.tags)
    assert "@import" not in text and "url(" not in text
    for tag, attrs in page.tags:  # nothing but embedded images is loaded from anywhere
        assert "href" not in attrs
        assert tag == "img" or "src" not in attrs
    csp = [a["content"] for t, a in page.tags if t == "meta"
           and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]
    images = page.images()
    assert len(images) == {"fit": 2, "saddle": 2, "undecided": 2, "full": 4, "no_hessian": 1}[name]
    for src in images:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == PNG_MAGIC
        pixels = mpimg.imread(io.BytesIO(raw))
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert float(np.ptp(pixels)) > 0  # not a blank canvas


# -- the numbers of the Report -------------------------------------------------------------------
def test_summary_table_holds_the_reports_numbers(reports, html):
    r, page = reports["fit"], Page(html["fit"])
    j, h = r.jacobian, r.hessian
    # §6.1: tanh 2-5-1 at an exact fit, ∇²L = 2GGᵀ with inertia (4, 0, 17), rank J = 4
    assert (j.rank, h.inertia.as_list()) == (4, [4, 0, 17])
    row = page.row("jacobian")["cells"]
    for col, exact in ((1, j.rank), (2, j.tol), (3, j.gap)):
        assert json.loads(row[col]["attrs"]["data-value"]) == jsonable(exact)
        assert _close(row[col]["text"], float(exact))
    assert row[4]["text"].startswith(j.method)
    assert row[5]["text"] == "decided"
    assert page.value("hessian.inertia") == [4, 0, 17]
    assert page.row("hessian.inertia")["cells"][1]["text"] == "4 / 0 / 17"
    assert page.value("hessian.inertia", 2) == jsonable(h.inertia.tol)
    assert page.value("hessian.rank") == h.rank and page.value("hessian.rank", 2) == jsonable(h.tol)
    crit = page.row("criticality")["cells"]
    assert json.loads(crit[2]["attrs"]["data-value"]) == jsonable(r.criticality.tol)
    assert f"floor = {r.criticality.floor:.6g}" in crit[4]["text"]
    assert crit[5]["text"] == "critical"
    assert page.value("kind") == "global_minimum" == r.kind
    assert r.kind_reason in page.row("kind")["cells"][4]["text"]
    assert page.value("perfect_fit") == jsonable(r.perfect_fit.max_residual)
    assert page.value("rank_identity") is True and page.value("dtype") == "float64"
    assert page.value("behavior_manifold_dim") == r.n_params - j.rank == 17
    # the full JSON rides along, and parses back to the Report's dict
    pre = re.search(r"<pre>(.*?)</pre>", html["fit"], re.S).group(1)
    assert json.loads(unescape(pre)) == r.to_dict()


def test_saddle_page_shows_signed_counts(reports, html):
    r, page = reports["saddle"], Page(html["saddle"])
    assert r.kind == "noncritical" and r.hessian.inertia.negative > 0
    assert page.value("hessian.inertia") == r.hessian.inertia.as_list()
    assert page.row("criticality")["cells"][5]["text"] == "not critical"
    assert page.value("hessian.extremes") == jsonable([r.hessian.top_eigenvalues[0],
                                                      r.hessian.bottom_eigenvalues[0]])


def test_undecided_values_are_marked_with_their_reason(html):
    page = Page(html["undecided"])
    for key, reason in (("jacobian", "gap 2.8 below min_gap 1e3 at the cut"),
                        ("hessian.rank", "Krylov budget ran out"),
                        ("hessian.inertia", "Krylov budget ran out")):
        row = page.row(key)
        assert "undecided" in row["attrs"].get("class", "")
        assert row["cells"][5]["attrs"]["class"] == "undecided"
        assert row["cells"][5]["text"] == f"undecided: {reason}"
    assert page.value("hessian.rank") is None
    assert page.row("hessian.inertia")["cells"][1]["text"] == "4 / 0 / ?"
    banner = [a for t, a in page.tags if t == "div" and "banner" in a.get("class", "")]
    assert banner[0]["data-undecided"] == "3" and "undecided" in banner[0]["class"]
    # a decided page says so, and marks nothing
    fit = Page(html["fit"])
    assert not any("undecided" in r["attrs"].get("class", "") for rs in fit.rows.values()
                   for r in rs)
    assert [a["data-undecided"] for t, a in fit.tags if "data-undecided" in a] == ["0"]


def test_dtypes_are_shown_when_they_differ(html):
    page = Page(html["undecided"])
    cells = page.row("dtype")["cells"]
    assert cells[4]["text"] == "products in float64, model float32"
    assert cells[5]["text"] == "tolerances follow the product dtype"
    assert Page(html["fit"]).row("dtype")["cells"][5]["text"] == ""


def test_a_report_without_hessian_has_no_hessian_rows(html):
    page = Page(html["no_hessian"])
    assert not any(k.startswith("hessian") or k == "gauss_newton" for k in page.rows)
    assert page.value("jacobian") == 4


def test_text_from_the_report_is_escaped(html):
    page = Page(html["undecided"])
    assert not any(t == "script" for t, _ in page.tags)
    (note,) = page.rows["routes"]
    assert note["cells"][4]["text"] == "<script>alert(1)</script> & a forward-mode fallback"


# -- blocks, degeneracy, llc, glossary -----------------------------------------------------------
def test_blocks_and_degeneracy_appear_only_when_present(reports, html):
    for name in ("fit", "saddle", "undecided"):
        assert 'id="blocks"' not in html[name] and 'id="degeneracy"' not in html[name]
        assert 'id="llc"' not in html[name]
    page, full = Page(html["full"]), reports["full"]
    for b in full.blocks:
        cells = page.row(b.name)["cells"]
        assert json.loads(cells[1]["attrs"]["data-value"]) == b.n_params
        assert json.loads(cells[2]["attrs"]["data-value"]) == b.jacobian.rank
        assert json.loads(cells[5]["attrs"]["data-value"]) == b.hessian.inertia.as_list()
    # the output layer's J_b columns are the hidden activations (plus a ones column): rank n = 4
    assert full.blocks[1].jacobian.rank == 4 and full.blocks[1].n_params == 6
    # the output-layer block of H is 2 ΦᵀΦ ⪰ 0 (§6.1), so no negative eigenvalue there
    assert full.blocks[1].hessian.inertia.negative == 0
    prof = full.degeneracy
    for eps, mid, lo, hi in zip(prof.rel_eps, prof.count_above, prof.count_low, prof.count_high,
                                strict=True):
        cells = page.row(json.dumps(eps))["cells"]
        assert [json.loads(c["attrs"]["data-value"]) for c in cells] == [eps, mid, lo, hi]
    assert "confidence 0.99" in html["full"] and "<code>slq</code>" in html["full"]


def test_llc_section_reads_dicts_and_objects(reports, html):
    page = Page(html["full"])
    assert page.value("llc.lower") == 2.0 and page.value("llc.upper") == 10.5
    assert page.value("llc.estimate") == 2.4 and page.value("llc.std") == 0.3
    assert "inside the bounds" in page.row("llc.estimate")["cells"][2]["text"]
    assert "chain 2 drifted" in html["full"]
    r = reports["fit"]
    fragment = _llc_html(SimpleNamespace(lower=2.0, upper=None, reason="only bounds"))
    assert "only bounds" in fragment and 'data-field="llc.estimate"' not in fragment
    outside = _llc_html({"lower": 2.0, "upper": 2.5, "reason": "x", "mean": 3.1, "std": 0.1})
    assert "outside the bounds" in outside
    with pytest.raises(TypeError, match=r"report_page\(report, llc\): llc must carry bounds"):
        report_page(r, llc={"something": 1})


def test_glossary_is_the_report_docstring_and_covers_every_field(html):
    entries = glossary()
    text = " ".join(t + " " + d for t, d in entries)
    for f in dataclasses.fields(Report):
        assert f"``{f.name}``" in text, f"the glossary in lossgeom.report misses {f.name}"
    import lossgeom.report as module

    for term, desc in entries:
        assert term in module.__doc__ and desc.split(" ")[0] in module.__doc__
    assert Page(html["fit"]).tags.count(("dt", {})) == len(entries)
    assert "Non-finite numbers are written as the strings" in html["fit"]


# -- the Report methods --------------------------------------------------------------------------
def test_report_methods_delegate_to_the_page(reports, monkeypatch):
    calls = []

    def spy(report, **kwargs):
        calls.append((report, kwargs))
        return "<page>"

    monkeypatch.setattr(pages, "report_page", spy)
    r = reports["fit"]
    assert r.to_html(title="T", llc={"lower": 1}) == "<page>" and r._repr_html_() == "<page>"
    assert calls == [(r, {"title": "T", "llc": {"lower": 1}}), (r, {"standalone": False})]


def test_notebook_fragment_is_one_scoped_div(reports):
    text = reports["saddle"]._repr_html_()   # spectrum and cut figures
    assert text.startswith('<div class="lossgeom-page"><style>') and text.endswith("</div>")
    assert "<html" not in text and "<body" not in text
    css = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    selectors = [s.strip() for block in re.findall(r"([^{}]+)\{", css) for s in block.split(",")]
    assert selectors and all(s.startswith(".lossgeom-page") for s in selectors)
    assert len(Page(text).images()) == 2


def test_bad_input_messages():
    with pytest.raises(TypeError, match=r"report_page\(report\): expected a Report"):
        report_page({"kind": "global_minimum"})
    with pytest.raises(TypeError, match=r"save_page\(page, path\): page must be the HTML text"):
        save_page(b"<html>", "x.html")


def test_save_page_is_atomic(tmp_path):
    path = save_page("<p>é</p>", tmp_path / "sub" / "r.html")
    assert open(path, encoding="utf-8").read() == "<p>é</p>"
    assert os.listdir(tmp_path / "sub") == ["r.html"]  # no temporary file left


# -- figures -------------------------------------------------------------------------------------
def _lines(ax):
    return [(np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float), ln.get_label())
            for ln in ax.get_lines()]


def test_spectrum_figure_draws_tol_cut_and_zeros(reports):
    r = reports["fit"]
    h = r.hessian
    (ax,) = spectrum_figure(r).axes
    lines = _lines(ax)
    mags = np.sort(np.abs(h.spectrum))[::-1]
    floor = axis_floor(mags, h.tol)
    # every eigenvalue is drawn once, at |λ| by decreasing magnitude (exact zeros on the floor)
    pts = sorted((float(x), float(y)) for xs, ys, lab in lines if lab.startswith("λ")
                 for x, y in zip(xs, ys, strict=True))
    assert [x for x, _ in pts] == list(range(1, r.n_params + 1))
    np.testing.assert_allclose([y for _, y in pts], np.where(mags > 0, mags, floor))
    assert floor < min(h.tol, mags[mags > 0].min())
    (tol_line,) = [y for x, y, lab in lines if lab.startswith("tol")]
    assert np.allclose(tol_line, h.tol)
    (cut,) = [x for x, y, lab in lines if lab.startswith("cut after")]
    assert np.allclose(cut, h.rank + 0.5) and h.rank == 4
    assert mags[h.rank - 1] > h.tol >= mags[h.rank]  # the cut separates kept from dropped
    s = reports["saddle"]
    lam = np.asarray(s.hessian.spectrum)
    (neg,) = [y for x, y, lab in _lines(spectrum_figure(s).axes[0]) if lab == "λ < 0"]
    assert neg.size == int((lam < 0).sum()) == s.hessian.inertia.negative > 0
    with pytest.raises(ValueError, match=r"spectrum_figure\(report\): the Report holds no Hessian"):
        spectrum_figure(dataclasses.replace(r, hessian=None))


def test_cut_figure_draws_the_decisions_numbers():
    sigma = np.array([3.0, 1.0, 1e-15, 0.0])
    d = numerical_rank(sigma)  # a closed form: rank 2, σ_r = 1, σ_(r+1) = 1e-15, gap 1e15
    assert (d.rank, d.sigma_r, d.sigma_next) == (2, 1.0, 1e-15)
    (ax,) = cut_figure(d).axes
    pts = {float(x[0]): float(y[0]) for x, y, lab in _lines(ax) if x.size == 1 and
           not lab.startswith("tol")}
    assert pts == {0.0: 3.0, 1.0: 1.0, 2.0: 1e-15}
    assert any(np.allclose(y, d.tol) for x, y, lab in _lines(ax) if lab.startswith("tol"))
    assert "gap 1e+15" in ax.get_title()
    full = RankDecision(rank=2, tol=1e-15, sigma_max=3.0, sigma_r=1.0, sigma_next=None,
                        gap=math.inf, method="svd", decided=True)
    texts = [t.get_text() for t in cut_figure(full).axes[0].texts]
    assert any("full rank" in t for t in texts)
    zero = dataclasses.replace(full, sigma_next=0.0, decided=False)
    (zax,) = cut_figure(zero).axes
    assert "(undecided)" in zax.get_title()
    assert any(float(x[0]) == 2.0 and float(y[0]) == axis_floor(np.array([3.0, 1.0]), 1e-15)
               for x, y, _ in _lines(zax) if x.size == 1)


def test_degeneracy_figure_error_bars_are_the_intervals():
    p = {"rel_eps": [1e-2, 1e-4], "count_above": [3.0, 5.0], "count_low": [2.0, 4.0],
         "count_high": [3.5, 7.0], "confidence": 0.9, "method": "slq"}
    (ax,) = degeneracy_figure(p, n_params=10).axes
    (bars,) = [c for c in ax.collections]
    segs = bars.get_segments()
    assert [(s[0][1], s[1][1]) for s in segs] == [(2.0, 3.5), (4.0, 7.0)]


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_analyze_writes_the_page(tmp_path):
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["analyze", "--widths", "3,4,1", "--html", str(out)])
    assert res.exit_code == 0, res.output
    page = Page(out.read_text(encoding="utf-8"))
    assert page.value("kind") == "global_minimum" and page.value("jacobian") == 4
    assert page.value("hessian.inertia") == [4, 0, 17]  # §6.3: 3-4-1 on 4 cube points
    assert os.listdir(tmp_path) == ["r.html"]


# -- sweep page ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("sweep") / "s.sqlite"
    spec = lg.sweep.spec_from_dict({"sweep": {"name": "pagedemo", "seeds": [0]},
                                    "model": {"widths": [[3, 4, 1], [3, 6, 1]]},
                                    "data": {"source": "cube", "n": 4}})
    configs, ids = spec.configs(), spec.run_ids()
    with Store(db) as store:
        store.plan(configs + [{**configs[0], "widths": [3, 2, 1]}], ids + ["f" * 64],
                   name=spec.name)
        for c in configs:
            store.put(run_one(c))
        store.put({"run_id": "f" * 64, "config": {**configs[0], "widths": [3, 2, 1]},
                   "status": "failed", "error": "ValueError: <no exact fit> & no retry"})
    return db


def test_sweep_page(sweep_db):
    text = sweep_page(sweep_db)
    page = Page(text)
    assert not re.search(r"https?://", text) and not any(t == "script" for t, _ in page.tags)
    st = lg.sweep.status(sweep_db)
    assert (st.planned, st.done, st.failed, st.remaining) == (3, 2, 1, 0)
    shown = [json.loads(c["attrs"]["data-value"]) for c in page.row("status")["cells"]]
    assert shown == [st.planned, st.done, st.failed, st.remaining]
    assert "lossgeom sweep: pagedemo" in text
    images = page.images()
    assert len(images) == 2  # rank vs width and the inertia distribution
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    (fail,) = page.rows["f" * 64]
    assert fail["cells"][2]["text"] == "ValueError: <no exact fit> & no retry"
    assert "widths=3-2-1" in fail["cells"][1]["text"]
    # one group row per widths, with the stored ranks (rank J = n·k = 4 at these fits)
    groups = re.findall(r"<td>widths=(\d-\d-\d)</td>", text)
    assert sorted(groups) == ["3-2-1", "3-4-1", "3-6-1"]
    with pytest.raises(ValueError, match="no sweep database"):
        sweep_page(sweep_db.parent / "missing.sqlite")


def test_sweep_page_of_an_empty_store(tmp_path):
    db = tmp_path / "e.sqlite"
    Store(db).close()
    text = sweep_page(db)
    assert "No run is stored yet." in text and not Page(text).images()


# -- a real browser ------------------------------------------------------------------------------
_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute('data-images', imgs.length + ':' + bad.length);
});
</script>"""


def test_chromium_loads_every_image(html, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed: apt-get install chromium")
    text = html["full"]
    # the probe needs a script, which the page's policy forbids: allow inline scripts in the copy,
    # keep its image policy (data: only) as it is
    probe = text.replace("style-src 'unsafe-inline'", "style-src 'unsafe-inline'; "
                         "script-src 'unsafe-inline'").replace("</body>", _PROBE + "</body>")
    path = tmp_path / "page.html"
    path.write_text(probe, encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--window-size=1200,3000"]
    try:
        dom = subprocess.run(cmd + ["--dump-dom", path.as_uri()], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        shot = tmp_path / "shot.png"
        subprocess.run(cmd + [f"--screenshot={shot}", path.as_uri()], capture_output=True,
                       timeout=120, check=True)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as err:
        pytest.fail(f"chromium did not render the page: {err}")
    n = len(Page(text).images())
    assert f'data-images="{n}:0"' in dom, dom[:300]
    assert shot.read_bytes()[:8] == PNG_MAGIC
