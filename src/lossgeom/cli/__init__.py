"""The ``lossgeom`` command line (Typer + Rich): one module per command group."""

from __future__ import annotations

import typer

from . import flow, linear, loci, manifold, sweep
from .analyze import analyze_command
from .demo import demo_command

app = typer.Typer(
    name="lossgeom",
    help="Certified geometry of loss landscapes at critical points.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("analyze")(analyze_command)
app.command("demo")(demo_command)
app.add_typer(flow.app, name="flow", help="Standard, adapted and interpolating gradient flows.")
app.add_typer(linear.app, name="linear", help="Deep linear networks: purity, landscapes, Hessian ranks.")
app.add_typer(loci.app, name="loci", help="Star and core loci, last-layer slices, wide bounds, growth.")
app.add_typer(manifold.app, name="manifold", help="Solution manifolds: dimension and walks along ker J.")
app.add_typer(sweep.app, name="sweep", help="Grids of runs from a TOML spec, stored crash-safe in SQLite.")

__all__ = ["app"]
