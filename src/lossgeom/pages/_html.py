"""The pieces every page is built from: scoped CSS, the document shell, cells, embedded figures.

A page loads nothing: its style is inline and scoped under ``.lossgeom-page``, every figure is a PNG
in a ``data:`` URI, and a standalone document carries a Content-Security-Policy that forbids every
other source. ``save_page`` writes a page atomically.
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
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from matplotlib.figure import Figure

from .._files import write_atomically
from ..results import jsonable

__all__ = ["document", "esc", "figure_html", "fmt", "get_field", "num_cell", "png_base64", "rst",
           "save_page", "text_cell", "version"]

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


def get_field(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for a mapping, else ``getattr(obj, key, default)``."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def esc(text: Any) -> str:
    """``str(text)`` escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def rst(text: str) -> str:
    """Escaped text with ``literals`` as <code>."""
    return re.sub(r"``(.+?)``", r"<code>\1</code>", esc(text))


def fmt(x: Any) -> str:
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
        return " / ".join("?" if v is None else fmt(v) for v in x)
    return str(x)


def num_cell(x: Any, cls: str = "num") -> str:
    """A table cell holding a value: the short text, and its exact JSON form in data-value."""
    exact = json.dumps(jsonable(x))
    return f'<td class="{cls}" data-value="{esc(exact)}">{esc(fmt(x))}</td>'


def text_cell(text: Any, cls: str = "") -> str:
    """A table cell holding escaped text."""
    return f'<td class="{cls}">{esc(text)}</td>' if cls else f"<td>{esc(text)}</td>"


def png_base64(fig: Figure, dpi: int = 100) -> str:
    """The figure as a base64-encoded PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(fig: Figure, alt: str, caption: str) -> str:
    """A figure as an <img> with an embedded PNG and a caption."""
    return (f'<figure><img src="data:image/png;base64,{png_base64(fig)}" alt="{esc(alt)}">'
            f"<figcaption>{rst(caption)}</figcaption></figure>")


def version() -> str:
    """The running lossgeom's version (the package root is loaded before any of its modules)."""
    root = sys.modules.get((__package__ or "lossgeom").split(".")[0])
    if getattr(root, "__version__", None):
        return str(root.__version__)
    try:
        return metadata.version("lossgeom")
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def document(title: str, body: str, standalone: bool) -> str:
    """The page: a whole HTML document with its policy, or one ``<div>`` with its scoped style."""
    fragment = f'<div class="lossgeom-page"><style>{_CSS}</style>\n{body}\n</div>'
    if not standalone:
        return fragment
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n</head>\n<body>\n{fragment}\n</body>\n</html>\n")


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
    return write_atomically(path, lambda f: f.write(page.encode("utf-8")))
