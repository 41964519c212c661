"""Train a 64-16-10 tanh MLP on 100 scikit-learn digits and save state-dict checkpoints.

The network and data are exactly those of ``digits_checkpoints.toml`` (built from the same
config by ``lossgeom.specs.problem_from_config``), so the sweep analyzes this training run.

    python examples/sweeps/make_digits_checkpoints.py            # writes digits_checkpoints/
    lossgeom sweep run examples/sweeps/digits_checkpoints.toml --db sweep-digits.sqlite
    lossgeom sweep report sweep-digits.sqlite --plot figures/digits
"""

import math
import os
import sys

import torch

from lossgeom.problem_specs import problem_from_config

CONFIG = {"widths": [64, 16, 10], "activation": "tanh", "bias": True, "source": "digits",
          "n": 100, "data_seed": 0, "seed": 0, "loss": "softmax_ce", "reduction": "mean"}
EPOCHS = (0, 10, 25, 50, 100, 200, 400, 800)
"""Full-batch Adam steps after which a checkpoint is saved."""


def main(out_dir: str, epochs=EPOCHS, lr: float = 0.01) -> tuple[list[str], list[float]]:
    """Train and save; returns the checkpoint paths and the loss at each."""
    torch.set_num_threads(1)
    problem = problem_from_config(CONFIG)
    theta = problem.theta.requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    os.makedirs(out_dir, exist_ok=True)
    paths, losses = [], []
    for step in range(max(epochs) + 1):
        opt.zero_grad()
        loss = problem.loss_at(theta)
        if step in epochs:
            state = {k: v.detach().clone() for k, v in problem.unflatten(theta.detach()).items()}
            paths.append(os.path.join(out_dir, f"epoch_{step:04d}.pt"))
            torch.save(state, paths[-1])
            losses.append(loss.item())
        loss.backward()
        opt.step()
    return paths, losses


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "digits_checkpoints")
    paths, losses = main(out)
    for p, loss in zip(paths, losses, strict=True):
        print(f"{p}  loss {loss:.4g}")
    # mean cross-entropy over 10 classes starts near log 10 and training lowers it
    assert abs(losses[0] - math.log(10)) < 0.5 and losses[-1] < losses[0]
