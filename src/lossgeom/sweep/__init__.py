"""``lg.sweep``: geometry measurements over grids of architectures, data and seeds.

A TOML spec (``load``) expands into resolved run configs, each keyed by a hash of its canonical
JSON; ``run`` executes the ones a SQLite database does not hold yet on a local process pool or a
Dask cluster and stores every finished run in its own transaction; ``status`` and ``results``
read the database. See ``spec``, ``worker``, ``backends`` and ``store`` for the parts.

Example:
    >>> import lossgeom.sweep as sweep
    >>> spec = sweep.spec_from_dict({"sweep": {"seeds": 2},
    ...                              "model": {"activation": ["tanh", "relu"]}})
    >>> spec.n_runs, spec.configs()[0]["widths"]
    (4, [3, 4, 1])
"""

from .api import SweepStatus, load, results, run, status
from .backends import DaskBackend, LocalBackend
from .frame import to_frame
from .spec import SweepSpec, config_hash, spec_from_dict
from .store import Store, load_arrays
from .worker import run_one

__all__ = [
    "DaskBackend",
    "LocalBackend",
    "Store",
    "SweepSpec",
    "SweepStatus",
    "config_hash",
    "load",
    "load_arrays",
    "results",
    "run",
    "run_one",
    "spec_from_dict",
    "status",
    "to_frame",
]
