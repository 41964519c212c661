"""devinterp's SGLD estimator on a Problem: the reference implementation (``backend="devinterp"``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import generator
from ..losses import Loss
from ..problem import Problem

__all__ = ["import_devinterp", "sample_devinterp"]


def import_devinterp(where: str):
    try:
        from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    except ImportError:
        raise ImportError(f"{where}: backend=\"devinterp\" needs devinterp 1.3.2, which is not "
                          "installed. Install the extra: pip install \"lossgeom[llc]\", or use "
                          "backend=\"lossgeom\".") from None
    return estimate_learning_coeff_with_summary


class _ProblemModule(nn.Module):
    """The Problem as an nn.Module with one flat parameter θ (N,), for devinterp's sampler.

    SGLD updates every coordinate alike, so one flat parameter samples exactly what the model's
    own parameter tensors would. The Problem (and the user's model inside it) is held outside the
    module tree: devinterp's ``model.train()`` and ``deepcopy`` never reach the user's model.
    """

    def __init__(self, problem: Problem, theta: Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta.detach().clone())
        self.__dict__["problem"] = problem
        self.__dict__["rows"] = torch.func.vmap(problem.sample_output_fn, in_dims=(None, 0))

    def forward(self, x: Tensor) -> Tensor:
        """Model outputs (b, k) on a batch of inputs x (b, d…), one sample at a time."""
        return self.rows(self.theta, x)

    def full_batch(self) -> Tensor:
        """Model outputs (n, k) on all the Problem's inputs, in one batch."""
        return self.problem.output_fn(self.theta)

    def __deepcopy__(self, memo) -> _ProblemModule:
        return _ProblemModule(self.problem, self.theta)


class _Batches(torch.utils.data.Dataset):
    """(inputs, targets) with batched indexing (one gather per batch, not one per sample)."""

    def __init__(self, X: Tensor, Y: Tensor):
        self.X, self.Y = X, Y

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, i):
        return self.X[i], self.Y[i]

    def __getitems__(self, idx: list[int]) -> list[Tensor]:
        t = torch.as_tensor(idx, device=self.X.device)
        return [self.X[t], self.Y[t]]


def sample_devinterp(problem: Problem, theta: Tensor, loss: Loss, init_loss: float, *,
                      n_chains: int, n_draws: int, n_burnin: int, step: float, nbeta: float,
                      localization: float, batch_size: int | None, rng, progress,
                      where: str) -> np.ndarray:
    """Loss traces (n_chains, n_draws) from devinterp's estimator on the same L_n.

    Raises:
        RuntimeError: Any error of devinterp's other than its stop at the first NaN loss (that
            one leaves the draws not taken as NaN, reported as a diverged chain).
    """
    estimate = import_devinterp(where)
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.callback import SamplerCallback

    gen = generator(where, rng)
    seed = None if gen is None else int(torch.randint(0, 2**62, (1,), generator=gen))
    trace = np.full((n_chains, n_draws), math.nan)

    class Recorder(SamplerCallback):
        """Records L_n at every draw in the Problem's dtype (devinterp keeps float32)."""

        def __call__(self, chain: int, draw: int, loss: Tensor, **kwargs):
            trace[chain, draw] = float(loss)
            if progress is not None:
                progress(chain * n_draws + draw + 1, n_chains * n_draws)

        def get_results(self) -> dict:
            return {}

    def evaluate(model: _ProblemModule, data: list[Tensor]) -> Tensor:
        xb, yb = data
        return loss(model.full_batch() if batch_size is None else model(xb), yb)

    if batch_size is None:  # one item, the whole data set, handed over as it is
        loader = torch.utils.data.DataLoader([(problem.inputs, problem.targets)], batch_size=1,
                                             collate_fn=lambda b: list(b[0]))
    else:
        loader = torch.utils.data.DataLoader(
            _Batches(problem.inputs, problem.targets), batch_size=batch_size, shuffle=True,
            drop_last=True, collate_fn=lambda b: b,
            generator=None if seed is None else torch.Generator().manual_seed(seed))
    devices = [] if theta.device.type == "cpu" else [theta.device]
    with warnings.catch_warnings(), torch.random.fork_rng(devices=devices):
        warnings.simplefilter("ignore")  # devinterp's advisory warnings (seeds, burn-in, SGLD)
        if seed is not None:
            torch.manual_seed(seed)
        try:
            estimate(
                _ProblemModule(problem, theta), loader, callbacks=[Recorder()],
                evaluate=evaluate, sampling_method=SGLD,
                optimizer_kwargs=dict(lr=step, localization=localization, nbeta=nbeta),
                num_draws=n_draws, num_chains=n_chains, num_burnin_steps=n_burnin,
                init_loss=init_loss, seed=None, device=theta.device, verbose=False)
        except RuntimeError as err:  # devinterp stops at the first NaN loss
            if "NaN detected" not in str(err):
                raise
    return trace
