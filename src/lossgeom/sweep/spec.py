"""Sweep specs: TOML → validated ``SweepSpec`` → grid × seeds → resolved run configs.

A spec has four tables; any list value is a grid axis (a list of lists for ``widths``, whose
single list is one architecture)::

    [sweep]                      name, seeds (a list, or a count n: 0..n−1), max_runs,
                                 description
    [model]                      widths, activation, bias
    [data]                       source, n, data_seed, skip_constant_labels (a filter)
    [analysis]                   target, loss, reduction, method, rtol, steps, lr, polish,
                                 checkpoint, information_loss, heldout_outputs, spectrum,
                                 hessian_rank_formula

NOTE [canonical config]
    A run's config is a flat dict: the problem keys of ``lossgeom.problem_specs`` (widths, activation,
    bias, source, n, data_seed, seed, loss, reduction) and the analysis keys. Defaults are filled
    in; an option that does not apply is left out (``lr`` and ``polish`` exist only for
    target = "minimum", ``steps`` only where descent may run) and so is an extra that is off
    (information_loss, heldout_outputs, spectrum, hessian_rank_formula), a ``checkpoint`` not
    given and an ``rtol`` left at its default. Paths (a .npz source, a checkpoint) are made
    absolute against the theory's folder. The run id is the SHA-256 of the canonical JSON of this
    dict (sorted keys, no whitespace): adding a new optional extra later does not change the id
    of a run that does not use it, and nothing about the backend or the machine enters it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ._validate import (
    AXIS_KEYS,
    DEFAULT_MAX_RUNS,
    DEFAULTS,
    EXTRAS,
    SECTIONS,
    Where,
    axis_values,
    check_tables,
    constant_labels,
    cross_check,
    parse_filters,
    parse_head,
)

__all__ = [
    "DEFAULT_MAX_RUNS",
    "SECTIONS",
    "SweepSpec",
    "config_hash",
    "load",
    "spec_from_dict",
]


def config_hash(config: dict[str, Any]) -> str:
    """Run id: SHA-256 hex digest of the canonical JSON of a resolved config.

    Canonical JSON: ``json.dumps(config, sort_keys=True, separators=(",", ":"))``; see
    NOTE [canonical config] for what a resolved config holds.

    Args:
        config: A resolved run config (plain JSON data).

    Returns:
        64 hexadecimal characters.

    Example:
        >>> config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
        True
        >>> len(config_hash({}))
        64
    """
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: named grid axes × seeds, expanded into resolved run configs.

    Attributes:
        name: The sweep's name.
        seeds: Model seeds, one run per grid point and seed.
        axes: Every axis key → its tuple of values (one value for a fixed key).
        max_runs: Largest number of runs allowed without ``yes=True``.
        description: Free text (the expected outcome, for example).
        path: The TOML file it came from (absolute), or None.
        excluded: Runs left out by a filter (``[data] skip_constant_labels``), each
            {"run_id", "config", "reason"}; not counted in ``n_runs``.
    """

    name: str
    seeds: tuple[int, ...]
    axes: dict[str, tuple[Any, ...]]
    max_runs: int = DEFAULT_MAX_RUNS
    description: str = ""
    path: str | None = None
    excluded: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    _configs: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)

    @property
    def varying(self) -> list[str]:
        """Axis keys with more than one value (the grid's dimensions, seeds excluded)."""
        return [k for k in AXIS_KEYS if len(self.axes[k]) > 1]

    @property
    def n_runs(self) -> int:
        """Number of runs: product of the axis lengths times the number of seeds."""
        return len(self._configs)

    @property
    def default_db(self) -> str:
        """``sweep.sqlite`` beside the spec file (the current folder for a spec without a file)."""
        return os.path.join(os.path.dirname(self.path) if self.path else os.getcwd(),
                            "sweep.sqlite")

    def configs(self) -> list[dict[str, Any]]:
        """The resolved run configs (NOTE [canonical config]), seeds varying fastest."""
        return [dict(c) for c in self._configs]

    def run_ids(self) -> list[str]:
        """``config_hash`` of each config, in the order of ``configs()``."""
        return [config_hash(c) for c in self._configs]

    @property
    def excluded_data_seeds(self) -> list[int]:
        """The distinct data seeds of the excluded runs, sorted."""
        return sorted({e["config"]["data_seed"] for e in self.excluded})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: name, seeds, varying axes and their values, n_runs, max_runs.

        Also the number of excluded runs and their data seeds.
        """
        return {"name": self.name, "seeds": list(self.seeds), "n_runs": self.n_runs,
                "max_runs": self.max_runs, "description": self.description, "path": self.path,
                "axes": {k: list(self.axes[k]) for k in self.varying},
                "excluded": len(self.excluded), "excluded_data_seeds": self.excluded_data_seeds}


def _resolve(point: dict[str, Any], seed: int) -> dict[str, Any]:
    """One canonical config from a grid point and a seed (NOTE [canonical config])."""
    cfg = {k: point[k] for k in ("widths", "activation", "bias", "source", "n", "loss",
                                 "reduction", "target", "method")}
    cfg["seed"] = seed
    cfg["data_seed"] = seed if point["data_seed"] is None else point["data_seed"]
    if cfg["target"] != "as_is":
        cfg["steps"] = point["steps"]
    if cfg["target"] == "minimum":
        cfg["lr"], cfg["polish"] = point["lr"], point["polish"]
    for key in ("rtol", "checkpoint"):
        if point[key] is not None:
            cfg[key] = point[key]
    for key in EXTRAS:
        if point[key]:
            cfg[key] = True
    return cfg


def spec_from_dict(data: dict[str, Any], *, path: str | None = None,
                   text: str | None = None) -> SweepSpec:
    """Validate parsed TOML data (tables sweep, model, data, analysis) and expand it.

    Args:
        data: The parsed spec, e.g. ``tomllib.loads(text)``.
        path: The file it came from; relative paths inside resolve against its folder.
        text: The TOML source, for line numbers in error messages.

    Returns:
        The validated SweepSpec.

    Raises:
        ValueError: For unknown tables or keys, empty grid axes, bad widths, unknown
            loss/activation/target/method/source names, out-of-range numbers, or keys that do
            not fit together; the message names the table, key and line.
        TypeError: If ``data`` is not a dict of tables.

    Example:
        >>> spec = spec_from_dict({"sweep": {"name": "t", "seeds": [0, 1]},
        ...                        "model": {"widths": [[3, 2, 1], [3, 4, 1]],
        ...                                  "activation": ["tanh", "relu"]}})
        >>> spec.n_runs, spec.varying
        (8, ['widths', 'activation'])
    """
    label = f"load({path!r})" if path else "spec_from_dict(data)"
    if not isinstance(data, dict):
        raise TypeError(f"{label}: a spec is a dict of tables, got {type(data).__name__}.")
    w = Where(label, text, os.path.dirname(os.path.abspath(path)) if path else os.getcwd())
    check_tables(w, data)
    given = {s: dict(data.get(s, {})) for s in SECTIONS}
    filters = parse_filters(w, given)
    name, seeds, max_runs, description = parse_head(w, given["sweep"], path)

    axes: dict[str, tuple[Any, ...]] = {}
    for section in ("model", "data", "analysis"):
        for key in SECTIONS[section]:
            if key in given[section]:
                axes[key] = tuple(axis_values(w, section, key, given[section][key]))
            else:
                axes[key] = (DEFAULTS[key],)

    configs, excluded, cache = [], [], {}
    for values in itertools.product(*(axes[k] for k in AXIS_KEYS)):
        point = dict(zip(AXIS_KEYS, values, strict=True))
        for seed in seeds:
            cfg = _resolve(point, seed)
            cross_check(w, cfg, given)
            if filters["skip_constant_labels"] and constant_labels(cfg, cache):
                excluded.append({"run_id": config_hash(cfg), "config": cfg,
                                 "reason": "constant labels"})
            else:
                configs.append(cfg)
    if not configs:
        raise ValueError(w.msg("data", "skip_constant_labels", f"every one of the {len(excluded)} "
                               "runs has constant training labels, so the spec keeps no run",
                               "Use other seeds or n, or set skip_constant_labels = false"))
    return SweepSpec(name=name, seeds=tuple(seeds), axes=axes, max_runs=max_runs,
                     description=description, path=os.path.abspath(path) if path else None,
                     excluded=tuple(excluded), _configs=tuple(configs))


def load(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep spec from a TOML file.

    Args:
        path: The spec file (see the module docstring for its tables and keys).

    Returns:
        The validated SweepSpec; relative paths in it resolve against the file's folder.

    Raises:
        ValueError: For a missing file, malformed TOML (the message gives line and column),
            or an invalid spec (see ``spec_from_dict``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"load({path!r}): no such file. Give the path of a sweep spec (.toml).")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as err:
        raise ValueError(f"load({path!r}): the file is not UTF-8 text ({err}). Save it as "
                         "UTF-8.") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"load({path!r}): malformed TOML: {err}. Fix the syntax there "
                         "(strings in double quotes, one key = value per line).") from None
    return spec_from_dict(data, path=path, text=text)
