"""Atomic figure saving."""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from .._files import write_atomically


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> str:
    """Write ``fig`` to ``path`` atomically (temporary file, then ``os.replace``); returns the path."""
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    return write_atomically(path, lambda f: fig.savefig(f, format=suffix, dpi=dpi,
                                                        bbox_inches="tight"))
