"""Plain data → Problem: the model/data/loss part of CLI flags and sweep configurations.

A config is a flat dict with the keys of ``DEFAULTS``; ``problem_from_config`` builds the
Problem deterministically from it (model seed and data seed included).
"""

from __future__ import annotations

from typing import Any

import torch

from .datasets import load_data
from .models import mlp
from .problem import Problem

__all__ = ["DEFAULTS", "parse_widths", "problem_from_config", "resolve_config"]

DEFAULTS: dict[str, Any] = {
    "widths": [3, 4, 1],
    "activation": "tanh",
    "bias": True,
    "source": "cube",
    "n": 4,
    "data_seed": None,   # None: the run's seed
    "seed": 0,
    "loss": "mse",
    "reduction": "sum",
}


def parse_widths(text: str | list[int]) -> list[int]:
    """'2,5,1' → [2, 5, 1] (lists pass through).

    Raises:
        ValueError: If the text is not a comma-separated list of integers.
    """
    if isinstance(text, list | tuple):
        return [int(w) for w in text]
    try:
        return [int(w) for w in str(text).replace(" ", "").split(",") if w]
    except ValueError:
        raise ValueError(f"widths must look like '2,5,1', got {text!r}.") from None


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and normalise types; unknown keys are an error.

    Raises:
        ValueError: For unknown keys.
    """
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown configuration keys {unknown}; allowed: {sorted(DEFAULTS)}.")
    out = {**DEFAULTS, **config}
    out["widths"] = parse_widths(out["widths"])
    if out["data_seed"] is None:
        out["data_seed"] = out["seed"]
    return out


def problem_from_config(config: dict[str, Any]) -> Problem:
    """Build the Problem a config describes: mlp(widths, activation, bias) seeded by ``seed``.

    Data: ``source`` with ``n`` samples and ``data_seed``; for "random" the targets have the
    output width k = widths[-1], mapped to soft labels (softmax) for softmax_ce and ce_prob and to
    (0, 1) (sigmoid) for bce. For softmax_ce on a labelled set, integer labels are used.

    Raises:
        ValueError: For inconsistent widths and data, or invalid options.

    Example:
        >>> from lossgeom.problem_specs import problem_from_config
        >>> problem_from_config({"widths": [3, 4, 1], "source": "cube"}).n_params
        21
    """
    cfg = resolve_config(config)
    widths = cfg["widths"]
    labels = cfg["loss"] == "softmax_ce" and cfg["source"] in ("digits", "iris")
    X, Y = load_data(cfg["source"], cfg["n"], d=widths[0], k=widths[-1], seed=cfg["data_seed"],
                     labels=labels)
    if cfg["source"] == "random" and cfg["loss"] in ("softmax_ce", "ce_prob"):
        Y = torch.softmax(Y, dim=1)      # Gaussian logits → soft labels on the simplex
    elif cfg["source"] == "random" and cfg["loss"] == "bce":
        Y = torch.sigmoid(Y)
    d_data = X.reshape(X.shape[0], -1).shape[1]
    if d_data != widths[0]:
        raise ValueError(f"widths {widths} start with input width {widths[0]}, but the "
                         f"{cfg['source']!r} data have {d_data} features.")
    model = mlp(widths, cfg["activation"], cfg["bias"],
                generator=torch.Generator().manual_seed(cfg["seed"]))
    return Problem(model, X.reshape(X.shape[0], -1), Y, loss=cfg["loss"],
                   reduction=cfg["reduction"])
