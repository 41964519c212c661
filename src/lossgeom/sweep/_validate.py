"""Validation of sweep specs: tables, keys and values, with the table, key and line in errors.

Every check raises ``ValueError`` with the message ``load('spec.toml'): [table] key (line L):
what is wrong. How to fix.``; ``spec.spec_from_dict`` calls them in order.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from ..analysis import Method
from ..datasets import SOURCES, load_data
from ..losses import LOSS_NAMES, REDUCTIONS
from ..models import ACTIVATIONS
from ..reach import POLISH, TARGET_POINTS

__all__ = ["AXIS_KEYS", "DEFAULTS", "DEFAULT_MAX_RUNS", "EXTRAS", "FILTERS", "SECTIONS", "Where",
           "axis_values", "check_tables", "constant_labels", "cross_check", "parse_filters",
           "parse_head"]

DEFAULT_MAX_RUNS = 1000
"""A spec expanding to more runs than ``[sweep] max_runs`` (default this) needs ``yes=True``."""

SECTIONS: dict[str, tuple[str, ...]] = {
    "sweep": ("name", "seeds", "max_runs", "description"),
    "model": ("widths", "activation", "bias"),
    "data": ("source", "n", "data_seed"),
    "analysis": ("target", "loss", "reduction", "method", "rtol", "steps", "lr", "polish",
                 "checkpoint", "information_loss", "heldout_outputs", "spectrum",
                 "hessian_rank_formula"),
}
"""The keys each table accepts."""

FILTERS: dict[str, tuple[str, ...]] = {"data": ("skip_constant_labels",)}
"""Keys that leave runs out of the expansion instead of being grid axes (never in a config).

``skip_constant_labels = true`` drops the runs whose training targets are all equal (on the
§6.3 cube, 2 of the 16 label draws for n = 4): any net fits them with its output bias alone,
and their rank J says nothing about the trend. The spec records them as ``excluded``."""

AXIS_KEYS = tuple(k for s in ("model", "data", "analysis") for k in SECTIONS[s])
"""Keys that may be grid axes, in expansion order (seeds vary fastest, after all of them)."""

DEFAULTS: dict[str, Any] = {
    "widths": [3, 4, 1], "activation": "tanh", "bias": True, "source": "cube", "n": 4,
    "data_seed": None, "loss": "mse", "reduction": "sum", "target": "global_minimum",
    "method": "auto", "rtol": None, "steps": 2000, "lr": 0.02, "polish": "newton",
    "checkpoint": None, "information_loss": False, "heldout_outputs": False, "spectrum": False,
    "hessian_rank_formula": False,
}
"""Value of every axis key when the spec leaves it out (data_seed None: the run's seed)."""

EXTRAS = ("information_loss", "heldout_outputs", "spectrum", "hessian_rank_formula")
"""Boolean analysis options; each adds one measurement to a run's record (see ``run.run_one``)."""

_SOURCE_DIMS = {"cube": (3, 1), "iris": (4, 3), "digits": (64, 10)}

_OPTIONS: dict[str, tuple[str, ...]] = {
    "activation": ACTIVATIONS, "source": SOURCES + ("FILE.npz",), "loss": LOSS_NAMES,
    "reduction": REDUCTIONS, "target": TARGET_POINTS, "method": tuple(m.value for m in Method),
    "polish": POLISH,
}


def _line_of(text: str | None, section: str, key: str | None = None) -> int | None:
    """1-based line of ``[section]`` (or of ``key = ...`` inside it) in TOML text, if found."""
    if text is None:
        return None
    current = None
    head = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-\"']+)\s*\]")
    for i, line in enumerate(text.splitlines(), start=1):
        m = head.match(line)
        if m:
            current = m.group(1).strip("\"'")
            if key is None and current == section:
                return i
            continue
        if key is not None and current == section and re.match(
                rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return i
    return None


@dataclass(frozen=True)
class Where:
    """Error context: the spec's name and its TOML text (for line numbers)."""

    label: str
    text: str | None
    base: str

    def msg(self, section: str, key: str | None, what: str, fix: str) -> str:
        """``label: [section] key (line L): what. fix``."""
        line = _line_of(self.text, section, key)
        at = f"[{section}]" + (f" {key}" if key else "") + (f" (line {line})" if line else "")
        return f"{self.label}: {at}: {what}. {fix}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _path(w: Where, v: str) -> str:
    return v if os.path.isabs(v) else os.path.normpath(os.path.join(w.base, v))


def _check_value(w: Where, section: str, key: str, v: Any) -> Any:
    """Validate one value of an axis key; return it normalised (paths made absolute).

    Raises:
        ValueError: Naming the table, key and line, for a value the key does not accept.
    """
    problem: tuple[str, str] | None = None  # (what is wrong, how to fix it)
    out = v
    if key == "widths":
        if (not isinstance(v, list) or len(v) < 2 or not all(_is_int(x) for x in v)
                or any(x < 1 for x in v)):
            problem = (f"bad widths {v!r} (expected at least two positive integers "
                       "[d, h1, ..., k])", "Write e.g. widths = [3, 4, 1], or "
                       "widths = [[3, 4, 1], [3, 8, 1]] for a grid")
        else:
            out = list(v)
    elif key == "bias":
        if not (isinstance(v, bool) or v == "output"):
            problem = (f"bias must be true, false or \"output\", got {v!r}",
                       "Use bias = true (every layer), false, or \"output\" (output layer only)")
    elif key == "source" and isinstance(v, str) and v.endswith(".npz"):
        out = _path(w, v)
        if not os.path.isfile(out):
            problem = (f"no data file at {out!r}", "Give a .npz path relative to the spec")
    elif key in _OPTIONS:
        allowed = _OPTIONS[key]
        if not isinstance(v, str) or v not in allowed:
            problem = (f"unknown {key} {v!r} (expected one of {', '.join(map(repr, allowed))})",
                       "Use one of the listed values, or a list of them for a grid axis")
    elif key in ("n", "data_seed", "steps"):
        low = 1 if key == "n" else 0
        if not _is_int(v) or v < low:
            problem = (f"{key} must be an integer >= {low}, got {v!r}", f"Set {key} = 4")
    elif key in ("rtol", "lr"):
        high = 1 if key == "rtol" else 10
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < high:
            problem = (f"{key} must be a number in (0, {high}), got {v!r}",
                       "Set e.g. rtol = 1e-8" if key == "rtol" else "Set e.g. lr = 0.02")
        else:
            out = float(v)
    elif key == "checkpoint":
        if not isinstance(v, str) or not v:
            problem = (f"checkpoint must be a file path, got {v!r}",
                       "Give the path of a torch.save(model.state_dict()) file")
        else:
            out = _path(w, v)
            if not os.path.isfile(out):
                problem = (f"no checkpoint at {out!r}", "Create the checkpoints first (paths "
                           "are relative to the spec's folder)")
    elif not isinstance(v, bool):  # the remaining keys are the boolean EXTRAS
        problem = (f"{key} must be true or false, got {v!r}", f"Set {key} = true")
    if problem is not None:
        raise ValueError(w.msg(section, key, *problem))
    return out


def axis_values(w: Where, section: str, key: str, v: Any) -> list[Any]:
    """The values of one key: a list of values if it is a grid axis, else [v].

    Raises:
        ValueError: For an empty axis, repeated values or a bad value.
    """
    is_axis = (isinstance(v, list) and (not v or isinstance(v[0], list))) if key == "widths" \
        else isinstance(v, list)
    values = v if is_axis else [v]
    if not values:
        raise ValueError(w.msg(section, key, "empty grid axis (the spec would expand to zero "
                               "runs)", f"Give {key} at least one value"))
    out = [_check_value(w, section, key, x) for x in values]
    dupes = {json.dumps(x) for x in out if sum(json.dumps(y) == json.dumps(x) for y in out) > 1}
    if dupes:
        raise ValueError(w.msg(section, key, f"repeated values {sorted(dupes)} on a grid axis",
                               "List each value once"))
    return out


def cross_check(w: Where, cfg: dict[str, Any], given: dict[str, dict[str, Any]]) -> None:
    """Consistency between keys of one config (widths vs data, options vs target).

    Raises:
        ValueError: Naming the key and line of the first inconsistency.
    """
    source, widths, target = cfg["source"], cfg["widths"], cfg["target"]
    problem: tuple[str, str, str, str] | None = None  # (table, key, what, fix)
    d, k = _SOURCE_DIMS.get(source, (widths[0], widths[-1]))
    if widths[0] != d or (source == "cube" and widths[-1] != k):
        want = f"[{d}, ..., {k}]" if source == "cube" else f"[{d}, ...]"
        problem = ("model", "widths", f"widths {widths} do not fit source {source!r} (expected "
                   f"{want})", f"Start the widths with {d}")
    elif source == "cube" and cfg["n"] > 8:
        problem = ("data", "n", f"the cube has 8 points, n = {cfg['n']} requested",
                   "Use n <= 8 (the §6.3 protocol uses n = 4)")
    elif cfg.get("heldout_outputs") and source != "cube":
        problem = ("analysis", "heldout_outputs", f"held-out outputs need source \"cube\" (got "
                   f"{source!r})", "Use source = \"cube\" or drop heldout_outputs")
    elif cfg.get("hessian_rank_formula") and cfg["activation"] != "linear":
        problem = ("analysis", "hessian_rank_formula", "the Hessian-rank formula is for deep "
                   f"linear networks (activation is {cfg['activation']!r})",
                   "Set activation = \"linear\" or drop hessian_rank_formula")
    elif target != "minimum" and ({"lr", "polish"} & set(given["analysis"])):
        key = sorted({"lr", "polish"} & set(given["analysis"]))[0]
        problem = ("analysis", key, f"{key} applies only to target = \"minimum\" (target is "
                   f"{target!r})", f"Remove {key} or set target = \"minimum\"")
    elif target == "as_is" and "steps" in given["analysis"]:
        problem = ("analysis", "steps", "steps does not apply to target = \"as_is\"",
                   "Remove steps")
    if problem is not None:
        raise ValueError(w.msg(*problem))


def check_tables(w: Where, data: dict[str, Any]) -> None:
    """Only known tables, each a table, holding only its known keys.

    Raises:
        ValueError: Naming the first unknown table or key and its line.
    """
    for section, body in data.items():
        if section not in SECTIONS:
            tables = ", ".join(f"[{s}]" for s in SECTIONS)
            raise ValueError(w.msg(section, None, f"unknown table [{section}] (allowed: {tables})",
                                   "Rename or remove it"))
        if not isinstance(body, dict):
            raise ValueError(f"{w.label}: {section!r} must be a table [{section}], got "
                             f"{type(body).__name__}. Write it as [{section}] with keys below.")
        allowed = SECTIONS[section] + FILTERS.get(section, ())
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ValueError(w.msg(section, unknown[0], f"unknown key {unknown[0]!r} (allowed "
                                   f"in [{section}]: {', '.join(allowed)})",
                                   "Fix its spelling or move it to the right table"))


def parse_filters(w: Where, given: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The filter keys of ``FILTERS`` (removed from ``given``), each True or False.

    Raises:
        ValueError: For a filter value that is not true or false.
    """
    out = {}
    for section, keys in FILTERS.items():
        for key in keys:
            value = given[section].pop(key, False)
            if not isinstance(value, bool):
                raise ValueError(w.msg(section, key, f"{key} must be true or false, got {value!r}",
                                       f"Set {key} = true"))
            out[key] = value
    return out


def constant_labels(cfg: dict[str, Any], cache: dict[tuple, bool]) -> bool:
    """True when the training targets of a config are all equal (rows of Y identical).

    The data are loaded as the run will load them (source, n, data_seed, widths); ``cache``
    keeps one answer per distinct data draw.
    """
    widths = cfg["widths"]
    key = (cfg["source"], cfg["n"], cfg["data_seed"], widths[0], widths[-1])
    if key not in cache:
        _, Y = load_data(cfg["source"], cfg["n"], d=widths[0], k=widths[-1], seed=cfg["data_seed"])
        Y = Y.reshape(Y.shape[0], -1)
        cache[key] = bool((Y == Y[:1]).all())
    return cache[key]


def parse_head(w: Where, head: dict[str, Any], path: str | None
                ) -> tuple[str, list[int], int, str]:
    """(name, seeds, max_runs, description) from the [sweep] table.

    Raises:
        ValueError: For a bad name, seeds, max_runs or description.
    """
    name = head.get("name", os.path.splitext(os.path.basename(path))[0] if path else "sweep")
    seeds = head.get("seeds", [0])
    if _is_int(seeds) and seeds >= 1:
        seeds = list(range(seeds))
    max_runs = head.get("max_runs", DEFAULT_MAX_RUNS)
    description = head.get("description", "")
    problem: tuple[str, str, str] | None = None  # (key, what, fix)
    if not isinstance(name, str) or not name:
        problem = ("name", f"name must be a non-empty string, got {name!r}",
                   "Set name = \"my-sweep\"")
    elif (not isinstance(seeds, list) or not seeds
          or not all(_is_int(s) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds)):
        problem = ("seeds", "seeds must be a non-empty list of distinct integers >= 0 or a "
                   f"positive count, got {seeds!r}", "Write e.g. seeds = [0, 1, 2]")
    elif not _is_int(max_runs) or max_runs < 1:
        problem = ("max_runs", f"max_runs must be a positive integer, got {max_runs!r}",
                   f"Set max_runs = {DEFAULT_MAX_RUNS}")
    elif not isinstance(description, str):
        problem = ("description", "description must be a string", "Quote it")
    if problem is not None:
        raise ValueError(w.msg("sweep", *problem))
    return name, seeds, max_runs, description
