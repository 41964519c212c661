"""Old module paths kept importable for one release (0.2); each import warns and names the new one.

| old path                      | new path                   |
|-------------------------------|----------------------------|
| ``lossgeom.critical``         | ``lossgeom.analysis``      |
| ``lossgeom.locate``           | ``lossgeom.reach``         |
| ``lossgeom.specs``            | ``lossgeom.problem_specs`` |
| ``lossgeom.linalg.tolerances``| ``lossgeom.tolerances``    |
| ``lossgeom.loci._minimum``    | ``lossgeom.manifold``      |

The old module is a thin proxy: attribute reads go to the new module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED", "install"]

MOVED = {
    "lossgeom.critical": "lossgeom.analysis",
    "lossgeom.locate": "lossgeom.reach",
    "lossgeom.specs": "lossgeom.problem_specs",
    "lossgeom.linalg.tolerances": "lossgeom.tolerances",
    "lossgeom.loci._minimum": "lossgeom.manifold",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths of ``MOVED`` and loads each as a proxy of its new module."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path goes away in the next release.",
                      DeprecationWarning, stacklevel=2)
        target = importlib.import_module(new)
        proxy = types.ModuleType(spec.name, target.__doc__)
        proxy.__getattr__ = lambda attr: getattr(target, attr)
        return proxy

    def exec_module(self, module):
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
