"""A sweep database as a pandas DataFrame: one row per stored run, config and report side by side.

Columns, in this order:

* ``run_id``;
* the config keys (``widths`` as the string "3,4,1", any other list likewise joined by commas;
  nested tables flattened with dots); a config key that is also a report column (``loss``, the
  loss *name*, and ``reduction``) is prefixed ``config.`` so that ``loss`` stays the loss value;
* the report fields, flattened with dotted names (``jacobian.rank``, ``hessian.tol``,
  ``criticality.critical``, ``kind``); an inertia [positive, negative, zero] is split into
  ``hessian.inertia.positive`` / ``.negative`` / ``.zero`` (and so for ``gauss_newton``); other
  lists (eigenvalues, route notes, blocks) stay lists in their cell;
* the extras, prefixed ``extras.``;
* ``status``, ``seconds``, ``error``, ``attempts``, ``finished_at``.

Failed runs have missing report columns (``<NA>``/NaN). The JSON forms "inf", "-inf" and "nan" of
non-finite numbers become floats again wherever the rest of the column is numeric; integer
columns with missing entries use pandas' nullable ``Int64`` and boolean ones ``boolean``.

pandas is imported when ``to_frame`` is first called, not with ``lossgeom``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..report import Report
from .store import read_records

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["to_frame"]

_INERTIA = ("positive", "negative", "zero")
_FIRST_CONFIG = ("widths", "activation", "bias")
_REPORT_ORDER = {f.name: i for i, f in enumerate(dataclasses.fields(Report))}
_TAIL = ("status", "seconds", "error", "attempts", "finished_at")
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _flatten(value: Any, prefix: str, out: dict[str, Any], *, join_lists: bool) -> None:
    """Write ``value`` into ``out`` under dotted keys starting with ``prefix``."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, join_lists=join_lists)
        return
    if prefix.endswith(".inertia") and isinstance(value, list) and len(value) == 3:
        for name, count in zip(_INERTIA, value, strict=True):
            out[f"{prefix}.{name}"] = count
        return
    if join_lists and isinstance(value, list) and all(
            not isinstance(v, Mapping | list) for v in value):
        out[prefix] = ",".join(str(v) for v in value)
        return
    out[prefix] = value


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _column(values: pd.Series) -> pd.Series:
    """Non-finite strings back to floats in numeric columns; nullable ints and booleans."""
    import pandas as pd

    present = [v for v in values if v is not None]
    if not present:
        return values
    if all(isinstance(v, bool) for v in present):
        return values.astype("boolean")
    if all(_is_number(v) or (isinstance(v, str) and v in _NONFINITE) for v in present):
        if all(isinstance(v, int) for v in present):
            return values.astype("Int64")
        return pd.Series([math.nan if v is None else float(_NONFINITE.get(v, v))
                          if isinstance(v, str) or v is None else float(v) for v in values],
                         index=values.index, dtype="float64")
    if all(isinstance(v, str) for v in present):
        return values.astype("string")
    return values


def to_frame(db_path: str | os.PathLike) -> pd.DataFrame:
    """One row per stored run of a sweep database: config columns, report columns, status.

    See the module docstring for the columns and their types. Reads the store only (safe while a
    sweep runs); the rows are in plan order.

    Args:
        db_path: The SQLite file a sweep wrote (``lg.sweep.run``).

    Returns:
        A DataFrame (no rows, and only the run and status columns, for a store without runs).

    Raises:
        ValueError: For a missing file, a file that is not a sweep store, or a newer schema.

    Example:
        >>> import os, tempfile
        >>> from lossgeom.sweep.store import Store
        >>> db = os.path.join(tempfile.mkdtemp(), "s.sqlite")
        >>> with Store(db) as s:
        ...     s.put({"run_id": "a", "config": {"widths": [3, 4, 1], "seed": 0}, "status": "done",
        ...            "report": {"kind": "global_minimum", "hessian": {"inertia": [4, 0, 17],
        ...                                                            "gap": float("inf")}}})
        >>> df = to_frame(db)
        >>> df.loc[0, "widths"], int(df.loc[0, "hessian.inertia.zero"]), df.loc[0, "kind"]
        ('3,4,1', 17, 'global_minimum')
        >>> float(df.loc[0, "hessian.gap"])
        inf
    """
    import pandas as pd  # here, so that importing lossgeom does not load pandas

    records = read_records(db_path)
    config_rows, report_rows, extras_rows = [], [], []
    for rec in records:
        config: dict[str, Any] = {}
        _flatten(rec["config"], "", config, join_lists=True)
        report: dict[str, Any] = {}
        if rec["report"] is not None:
            _flatten(rec["report"], "", report, join_lists=False)
        extras: dict[str, Any] = {}
        _flatten(rec["extras"] or {}, "extras", extras, join_lists=False)
        config_rows.append(config)
        report_rows.append(report)
        extras_rows.append(extras)

    def ordered(rows: list[dict[str, Any]]) -> list[str]:
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        return list(keys)

    report_keys = sorted(ordered(report_rows),  # the Report's field order, then the stored order
                         key=lambda k: _REPORT_ORDER.get(k.split(".")[0], len(_REPORT_ORDER)))
    clash = set(report_keys) | {"run_id", *_TAIL}
    config_keys = ordered(config_rows)
    config_keys = [k for k in _FIRST_CONFIG if k in config_keys] + [
        k for k in config_keys if k not in _FIRST_CONFIG]
    columns: dict[str, list[Any]] = {"run_id": [r["run_id"] for r in records]}
    for key in config_keys:
        columns[f"config.{key}" if key in clash else key] = [c.get(key) for c in config_rows]
    for key in report_keys:
        columns[key] = [r.get(key) for r in report_rows]
    for key in ordered(extras_rows):
        columns[key] = [e.get(key) for e in extras_rows]
    for key in _TAIL:
        columns[key] = [r.get(key) for r in records]
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()})
    for key in frame.columns:
        frame[key] = _column(frame[key])
    return frame
