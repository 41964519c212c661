"""``lossgeom analyze``: a model from flags or a checkpoint, reach the target point, report."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from ..analysis import analyze as analyze_point
from ..datasets import load_data
from ..llc import estimate_llc, llc_bounds
from ..pages import save_page
from ..plots import save_figure
from ..plots.llc import llc_figure
from ..plots.spectrum import spectrum_figure
from ..problem import Problem
from ..reach import TARGET_POINTS, reach
from ..results import jsonable
from ._common import err, llc_table, out, print_json, progress_bars, report_table, user_errors
from ._options import (
    Activation,
    Bias,
    Data,
    Html,
    Json,
    Loss,
    Method,
    Rtol,
    Samples,
    Seed,
    Target,
    Widths,
    build_problem,
)

__all__ = ["analyze_command"]


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
    widths: Widths = "3,4,1", activation: Activation = "tanh", bias: Bias = True,
    checkpoint: Annotated[Path | None, typer.Option(help="state_dict file (torch.save).")] = None,
    model: Annotated[str | None, typer.Option(
        help="module:factory returning the nn.Module.")] = None,
    data: Data = "cube", n: Samples = 4, seed: Seed = 0, loss: Loss = "mse",
    target: Target = None, method: Method = "auto", rtol: Rtol = None,
    hessian: Annotated[str, typer.Option(
        help="auto | dense | gram | krylov | profile | lanczos | none.")] = "auto",
    max_rank: Annotated[int | None, typer.Option(
        help="Largest Hessian rank the krylov route may certify.")] = None,
    max_seconds: Annotated[float | None, typer.Option(
        help="Wall-time budget of the krylov and lanczos Hessian routes (s).")] = None,
    blocks: Annotated[str | None, typer.Option(
        help="module: rank J_b and the inertia of H_bb per top-level module.")] = None,
    llc: Annotated[bool, typer.Option(
        "--llc", help="Add the §9.1 bounds and an SGLD estimate of the local learning "
                      "coefficient (table, JSON, HTML; the figure with --llc-plot).")] = False,
    llc_backend: Annotated[str, typer.Option(help="lossgeom | devinterp.")] = "lossgeom",
    llc_plot: Annotated[Path | None, typer.Option(
        help="Write the LLC figure: traces, the estimate's interval, rank H / 2, N / 2 (PNG).")] = None,
    json_out: Json = False,
    plot: Annotated[Path | None, typer.Option(help="Write the Hessian spectrum figure (PNG).")] = None,
    html: Html = None,
) -> None:
    """Analyze one point: rank J, Hessian inertia, manifold dimension and kind.

    Raises:
        ValueError: For inconsistent options (reported as one line, exit code 2).
    """
    with user_errors(json_out):
        if checkpoint is not None:
            if model is None:
                raise ValueError("--checkpoint needs --model module:factory for the architecture.")
            problem = _checkpoint_problem(checkpoint, model, data, n, seed, loss)
            target = target or "as_is"
        else:
            problem = build_problem(widths, activation, bias, data, n, seed, loss)
            target = target or "global_minimum"
        if target not in TARGET_POINTS:
            raise ValueError(f"--target must be one of {', '.join(TARGET_POINTS)}, got {target!r}.")
        with err.status(f"reaching {target} (N = {problem.n_params})"):
            theta = reach(problem, target)
        with progress_bars(not json_out) as bars:
            report = analyze_point(problem, theta, method=method, rtol=rtol, blocks=blocks,
                                   hessian=hessian, max_rank=max_rank, progress=bars,
                                   max_seconds=max_seconds)
        learning = None
        if llc or llc_plot is not None:
            bounds = llc_bounds(report)
            with progress_bars(not json_out) as bars:
                estimate = estimate_llc(problem, theta, backend=llc_backend, progress=(
                    None if bars is None else lambda done, total: bars("SGLD", done, total)))
            learning = {"bounds": bounds, "estimate": estimate}
            if llc_plot is not None:
                save_figure(llc_figure(estimate, bounds), llc_plot)
                err.print(f"wrote {llc_plot}")
        if plot is not None:
            save_figure(spectrum_figure(report), plot)
            err.print(f"wrote {plot}")
        if html is not None:
            save_page(report.to_html(llc=learning), html)
            err.print(f"wrote {html}")
        if json_out:
            print_json({**report.to_dict(), **({"llc": jsonable(learning)} if learning else {})})
        else:
            out.print(report_table(report))
            if learning is not None:
                out.print(llc_table(learning["bounds"], learning["estimate"]))
