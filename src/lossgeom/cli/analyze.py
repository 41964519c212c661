"""``lossgeom analyze``: a model from flags or a checkpoint, reach the target point, report."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import torch
import typer

from ..analysis import analyze as analyze_point
from ..datasets import load_data
from ..plots import save_figure
from ..plots.spectrum import spectrum_figure
from ..problem import Problem
from ..problem_specs import parse_widths, problem_from_config
from ..reach import TARGET_POINTS, reach
from ._common import err, out, print_json, report_table, user_errors


def _import_factory(spec: str):
    if ":" not in spec:
        raise ValueError(f"--model must look like module:factory, got {spec!r}.")
    module_name, attr = spec.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"--model {spec!r}: {module_name} has no callable {attr!r}.")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"--model {spec!r}: {attr}() returned {type(model).__name__}, not an "
                        "nn.Module.")
    return model


def _checkpoint_problem(checkpoint: Path, model_spec: str, data: str, n: int, seed: int,
                        loss: str) -> Problem:
    model = _import_factory(model_spec)
    mats = [p for p in model.parameters() if p.ndim == 2]
    if not mats:
        raise ValueError("--model: the model has no weight matrix to read its widths from.")
    d, k = mats[0].shape[1], mats[-1].shape[0]
    X, Y = load_data(data, n, d=d, k=k, seed=seed, labels=loss == "softmax_ce")
    return Problem.from_checkpoint(checkpoint, model, X.reshape(X.shape[0], -1), Y, loss=loss)


def analyze_command(
    widths: str = typer.Option("3,4,1", help="Layer widths d,h1,...,k of an MLP."),
    activation: str = typer.Option("tanh", help="tanh relu sigmoid softplus gelu linear square."),
    bias: bool = typer.Option(True, "--bias/--no-bias", help="Biases in every layer."),
    checkpoint: Path | None = typer.Option(None, help="state_dict file (torch.save)."),
    model: str | None = typer.Option(None, help="module:factory returning the nn.Module."),
    data: str = typer.Option("cube", help="random, cube, digits, iris, or FILE.npz."),
    n: int = typer.Option(4, help="Number of training samples."),
    seed: int = typer.Option(0, help="Seed of the model and the data."),
    loss: str = typer.Option("mse", help="mse bce ce_prob softmax_ce."),
    target: str | None = typer.Option(
        None, help="global_minimum | minimum | as_is (default: as_is for checkpoints)."),
    method: str = typer.Option("auto", help="auto | dense | operator."),
    rtol: float | None = typer.Option(None, help="Relative tolerance of every rank decision."),
    json_out: bool = typer.Option(False, "--json", help="Print the Report as JSON only."),
    plot: Path | None = typer.Option(None, help="Write the Hessian spectrum figure (PNG)."),
) -> None:
    """Analyze one point: rank J, Hessian inertia, manifold dimension and kind.

    Raises:
        ValueError: For inconsistent options (reported as one line, exit code 2).
    """
    with user_errors():
        if checkpoint is not None:
            if model is None:
                raise ValueError("--checkpoint needs --model module:factory for the architecture.")
            problem = _checkpoint_problem(checkpoint, model, data, n, seed, loss)
            target = target or "as_is"
        else:
            problem = problem_from_config({"widths": parse_widths(widths), "activation": activation,
                                           "bias": bias, "source": data, "n": n, "seed": seed,
                                           "loss": loss})
            target = target or "global_minimum"
        if target not in TARGET_POINTS:
            raise ValueError(f"--target must be one of {', '.join(TARGET_POINTS)}, got {target!r}.")
        with err.status(f"reaching {target} and analyzing (N = {problem.n_params})"):
            theta = reach(problem, target)
            report = analyze_point(problem, theta, method=method, rtol=rtol)
        if plot is not None:
            save_figure(spectrum_figure(report), plot)
            err.print(f"wrote {plot}")
        if json_out:
            print_json(report.to_dict())
        else:
            out.print(report_table(report))
