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
    >>> "<title>lossgeom report: global_minimum, N = 2</title>" in page  # J = X has rank 2 = N
    True
"""

from ._glossary import glossary
from ._html import save_page
from ._report_page import report_page
from ._sweep_page import FAILURES_SHOWN, sweep_page

__all__ = ["FAILURES_SHOWN", "glossary", "report_page", "save_page", "sweep_page"]
