"""Stage timer used to fill ``Report.timings``."""

from __future__ import annotations

import time
from contextlib import contextmanager


@contextmanager
def stage(timings: dict[str, float], name: str):
    """Add the wall time of the ``with`` body to ``timings[name]`` (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
