"""matplotlib Figure builders (no pyplot state) and atomic saving; plots never recompute."""

from ._save import save_figure

__all__ = ["save_figure"]
