"""The CLI options every command group shares, defined once: model, data, loss, target, output.

Each command gives its own defaults (``widths: Widths = "3,4,1"``); the help text and the flag
names live here, so ``lossgeom analyze``, ``flow``, ``linear``, ``loci``, ``manifold`` and ``sweep``
read the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..layers import ACTIVATION_MODULES
from ..losses import LOSS_NAMES
from ..problem import Problem
from ..problem_specs import parse_widths, problem_from_config

__all__ = [
    "Activation", "Bias", "Data", "Html", "Json", "Loss", "Method", "Plot", "Rtol", "Samples",
    "Seed", "Target", "Widths", "build_problem",
]

Widths = Annotated[str, typer.Option(help="Layer widths d,h1,...,k of an MLP.")]
Activation = Annotated[str, typer.Option(help=" ".join(ACTIVATION_MODULES) + ".")]
Bias = Annotated[bool, typer.Option("--bias/--no-bias",
                                    help="Biases in every layer (B) or in none (A).")]
Data = Annotated[str, typer.Option(help="random, cube, digits, iris, or FILE.npz.")]
Samples = Annotated[int, typer.Option(help="Number of training samples n.")]
Seed = Annotated[int, typer.Option(help="Seed of the model, the data and any random start.")]
Loss = Annotated[str, typer.Option(help=" ".join(LOSS_NAMES) + ".")]
Target = Annotated[str | None, typer.Option(
    help="global_minimum | minimum | as_is: the point to analyze (default: as_is for "
         "checkpoints, global_minimum otherwise).")]
Method = Annotated[str, typer.Option(help="auto | dense | operator.")]
Rtol = Annotated[float | None, typer.Option(
    help="Relative tolerance of the rank and inertia decisions (default: the dtype rule).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON only (stdout); "
                                                   "errors as one JSON object.")]
Plot = Annotated[Path | None, typer.Option(help="Write the figure (PNG).")]
Html = Annotated[Path | None, typer.Option(help="Write a self-contained HTML page.")]


def build_problem(widths: str, activation: str, bias: bool, data: str, n: int, seed: int,
                  loss: str, reduction: str = "sum") -> Problem:
    """The Problem the shared flags describe (``lossgeom.problem_specs.problem_from_config``)."""
    return problem_from_config({"widths": parse_widths(widths), "activation": activation,
                                "bias": bias, "source": data, "n": n, "seed": seed,
                                "loss": loss, "reduction": reduction})
