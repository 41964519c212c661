"""Problem: a model, its training data and a loss, seen as a function of flat parameters θ."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._checks import check_finite, check_option, check_vector
from .errors import UnsafeCheckpointError
from .losses import LOSS_NAMES, REDUCTIONS, Loss

__all__ = ["Problem"]

SIMPLEX_ATOL = 1e-6
"""Largest |row sum − 1| accepted for probability targets (ce_prob, soft-label softmax_ce)."""

_STOCHASTIC = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
               nn.FeatureAlphaDropout)


def _stochastic_modules(model: nn.Module) -> list[str]:
    bad = []
    for name, m in model.named_modules():
        if not m.training:
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats is not None:
            bad.append(f"{name or 'model'} ({type(m).__name__} in training mode)")
        elif isinstance(m, _STOCHASTIC) and getattr(m, "p", 0) > 0:
            bad.append(f"{name or 'model'} ({type(m).__name__}(p={m.p}) in training mode)")
    return bad


class Problem:
    """A model, inputs, targets and loss, as functions of a flat parameter vector θ ∈ R^N.

    The behavior is x(θ) = outputs on the training set, shape (n, k); L(θ) = C(x(θ), y).
    θ is a float64 copy of the model's parameters in ``named_parameters()`` order, each tensor
    flattened row-major. The model itself is never mutated: evaluation goes through
    ``torch.func.functional_call`` on unflattened views of θ.

    Args:
        model: An ``nn.Module`` mapping inputs (n, d…) to outputs (n, k) (or (n,) for k = 1), or
            a callable f(params: dict[str, Tensor], inputs) -> outputs.
        inputs: Training inputs, shape (n, d…).
        targets: Targets (n, k); (n,) is read as (n, 1) for k = 1, or as integer class labels
            in [0, k) for loss="softmax_ce".
        loss: "mse", "bce", "ce_prob", "softmax_ce", or a callable C(outputs (n, k), targets).
        reduction: "sum" (sum over all entries) or "mean" (PyTorch's convention).
        params: Initial parameters for a callable model (required then), dict of tensors.
        dtype: Floating dtype of every computation (default float64).

    Raises:
        TypeError: For a model that is neither an nn.Module nor callable, or non-tensor data.
        ValueError: For shape mismatches, non-finite data, parameters or outputs, invalid
            targets for the loss, unknown options, or a stochastic model (dropout, BatchNorm
            in training mode).

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> p.n_params, p.n_samples, p.n_outputs
        (2, 3, 1)
    """

    def __init__(
        self,
        model: nn.Module | Callable,
        inputs: Tensor | np.ndarray,
        targets: Tensor | np.ndarray,
        loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
        reduction: str = "sum",
        params: Mapping[str, Tensor] | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        where = "Problem(model, inputs, targets)"
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"{where}: dtype must be a floating torch dtype, got {dtype!r}.")
        self.dtype = dtype
        check_option(where, "reduction", reduction, REDUCTIONS)
        if callable(loss) and not isinstance(loss, str):
            self.loss_fn = Loss("custom", reduction, loss)
        else:
            check_option(where, "loss", loss, LOSS_NAMES)
            self.loss_fn = Loss(loss, reduction)

        # -- model and parameters ---------------------------------------------------------------
        if isinstance(model, nn.Module):
            bad = _stochastic_modules(model)
            if bad:
                raise ValueError(
                    f"{where}: the model is stochastic: {', '.join(bad)}. Curvature needs a "
                    "deterministic function; call model.eval() first."
                )
            named = dict(model.named_parameters())
            if params is not None:
                raise TypeError(f"{where}: params is only for a callable model; an nn.Module "
                                "carries its own parameters.")
            self._buffers = {k: (b.detach().to(dtype) if b.is_floating_point() else b.detach())
                             for k, b in model.named_buffers()}
            self._module = model
        elif callable(model):
            if params is None or not isinstance(params, Mapping):
                raise TypeError(f"{where}: a callable model f(params, inputs) needs params, a dict "
                                "of its initial tensors.")
            named = dict(params)
            self._buffers = {}
            self._module = None
        else:
            raise TypeError(f"{where}: model must be an nn.Module or a callable f(params, inputs), "
                            f"got {type(model).__name__}.")
        self._model = model
        for name, t in named.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"{where}: parameter {name!r} is a {type(t).__name__}, not a Tensor.")
        self.param_names: tuple[str, ...] = tuple(named)
        self.param_shapes: tuple[torch.Size, ...] = tuple(t.shape for t in named.values())
        self.param_numels: tuple[int, ...] = tuple(t.numel() for t in named.values())
        if not named:
            raise ValueError(f"{where}: the model has no parameters.")
        self.device = next(iter(named.values())).device
        theta = torch.cat([t.detach().reshape(-1).to(dtype) for t in named.values()])
        check_finite(where, "parameters", theta,
                     "Re-initialise the model or load finite weights.")
        self._theta = theta

        # -- data -------------------------------------------------------------------------------
        for nm, t in (("inputs", inputs), ("targets", targets)):
            if not isinstance(t, Tensor | np.ndarray):
                raise TypeError(f"{where}: {nm} must be a torch.Tensor or numpy array, got "
                                f"{type(t).__name__}.")
        X = torch.as_tensor(inputs, device=self.device)
        if X.ndim < 1 or X.shape[0] == 0:
            raise ValueError(f"{where}: inputs must have shape (n, d...) with n >= 1, got "
                             f"{tuple(X.shape)}.")
        X = X.to(dtype) if (X.is_floating_point() or X.dtype == torch.bool or
                            not X.is_complex()) else X
        check_finite(where, "inputs", X, "Drop or repair those samples before building a Problem.")
        self.inputs = X
        Y = torch.as_tensor(targets, device=self.device)
        if Y.shape[:1] != X.shape[:1]:
            raise ValueError(f"{where}: inputs have {X.shape[0]} samples but targets have "
                             f"{Y.shape[0] if Y.ndim else 0}; they must match along the first axis.")

        try:
            out = self._raw_outputs(theta)
        except (RuntimeError, IndexError) as exc:
            raise ValueError(f"{where}: the model cannot be evaluated on inputs of shape "
                             f"{tuple(X.shape)}: {exc}. Check the input width against the "
                             "model's first layer.") from None
        k = out.shape[1]
        self.n_samples, self.n_outputs, self.n_params = X.shape[0], k, theta.numel()
        self.labels: Tensor | None = None
        self.targets = self._prepare_targets(where, Y, out.shape)
        check_finite(where, "model outputs", out,
                     "Check the model and its parameters for overflow at these inputs.")
        again = self._raw_outputs(theta)
        if not torch.equal(out, again):
            raise ValueError(f"{where}: two evaluations of the model at the same parameters differ "
                             "(max |Δ| = {:.3g}); the model must be deterministic.".format(
                                 float((out - again).abs().max())))
        self.per_sample = self._is_per_sample(theta, out)
        value = self.loss_fn(out, self.targets)
        if value.ndim != 0:
            raise ValueError(f"{where}: the loss returned shape {tuple(value.shape)}; it must be a "
                             "scalar.")
        if not math.isfinite(float(value)):
            raise ValueError(f"{where}: the loss is {float(value)} at the model's parameters; "
                             f"check that the outputs suit loss={self.loss_fn.name!r} "
                             "(bce/ce_prob need outputs in (0, 1)).")

    # -- construction helpers -------------------------------------------------------------------
    def _prepare_targets(self, where: str, Y: Tensor, out_shape: torch.Size) -> Tensor:
        n, k = out_shape
        name = self.loss_fn.name
        if Y.is_floating_point():
            check_finite(where, "targets", Y, "Drop or repair those samples before building a "
                         "Problem.")
        if name == "softmax_ce" and Y.ndim == 1 and not Y.is_floating_point():
            if bool((Y < 0).any()) or bool((Y >= k).any()):
                raise ValueError(f"{where}: class labels must lie in [0, {k}) for {k} outputs, got "
                                 f"range [{int(Y.min())}, {int(Y.max())}].")
            self.labels = Y.long()
            return torch.nn.functional.one_hot(self.labels, k).to(self.dtype)
        if Y.ndim == 1 and k == 1:
            Y = Y[:, None]
        if tuple(Y.shape) != (n, k):
            hint = (f"Expected targets ({n}, {k})" + (", or class labels "
                    f"({n},) with loss=\"softmax_ce\"." if k > 1 else "."))
            raise ValueError(f"{where}: targets have shape {tuple(Y.shape)} but the model returns "
                             f"{(n, k)} on these inputs. {hint}")
        Y = Y.to(self.dtype)
        if name in ("bce",) and (bool((Y < 0).any()) or bool((Y > 1).any())):
            raise ValueError(f"{where}: bce targets must lie in [0, 1], got range "
                             f"[{float(Y.min()):g}, {float(Y.max()):g}].")
        if name in ("ce_prob", "softmax_ce"):
            sums = Y.sum(dim=1)
            if bool((Y < 0).any()) or float((sums - 1).abs().max()) > SIMPLEX_ATOL:
                raise ValueError(f"{where}: {name} targets must be probability rows (>= 0, summing "
                                 f"to 1); the smallest entry is {float(Y.min()):g} and row sums "
                                 f"range over [{float(sums.min()):g}, {float(sums.max()):g}].")
        return Y

    def _is_per_sample(self, theta: Tensor, out: Tensor) -> bool:
        """True if evaluating one sample at a time (``vmap``) reproduces the batch outputs.

        Checked at θ and at a seeded perturbation of θ, so a model whose batch and per-sample
        evaluations agree only by accident at one point is not trusted.
        """
        rtol = 1e3 * float(torch.finfo(self.dtype).eps)
        gen = torch.Generator(device="cpu").manual_seed(0)
        shift = torch.randn(theta.shape, generator=gen, dtype=theta.dtype).to(theta.device)
        other = theta + 1e-2 * max(1.0, float(theta.abs().max())) * shift
        for point, batch in ((theta, out), (other, None)):
            try:
                with torch.no_grad():
                    batch = self._raw_outputs(point) if batch is None else batch
                    per = torch.func.vmap(self.sample_output_fn, in_dims=(None, 0))(point,
                                                                                   self.inputs)
            except Exception:  # a model that vmap cannot batch: use whole-batch Jacobians
                return False
            if per.shape != batch.shape or not bool(torch.allclose(per, batch, rtol=rtol,
                                                                    atol=rtol)):
                return False
        return True

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, model: nn.Module, inputs, targets,
                        **kwargs) -> Problem:
        """Problem at the parameters stored in a state-dict checkpoint.

        The file is read with ``torch.load(weights_only=True)``: no pickled code ever runs.
        It must hold a state_dict, or a dict with key "state_dict".

        Args:
            path: File written by ``torch.save(model.state_dict(), path)``.
            model: A module of the matching architecture (it is copied, not modified).
            inputs: See ``Problem``.
            targets: See ``Problem``.
            **kwargs: Passed on to ``Problem`` (loss, reduction, dtype).

        Returns:
            The Problem at the checkpoint's parameters.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            TypeError: If ``model`` is not an nn.Module.
            UnsafeCheckpointError: If the file holds anything but tensors (pickled objects).
            ValueError: If its keys or shapes do not match the model's.
        """
        import copy

        where = "Problem.from_checkpoint(path, ...)"
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{where}: no checkpoint at {path!r}.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError / RuntimeError variants
            raise UnsafeCheckpointError(
                f"{where}: torch.load(weights_only=True) refused {os.path.basename(path)!r}: it "
                f"holds pickled Python objects or is not a torch file ({type(err).__name__}). "
                "Re-save with torch.save(model.state_dict(), path)."
            ) from None
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            raise UnsafeCheckpointError(f"{where}: {os.path.basename(path)!r} does not hold a "
                                        "state_dict of tensors.")
        if not isinstance(model, nn.Module):
            raise TypeError(f"{where}: model must be an nn.Module, got {type(model).__name__}.")
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(f"{where}: state_dict keys do not match the model: missing {missing}, "
                             f"unexpected {extra}.")
        for key, t in state.items():
            if t.shape != expected[key].shape:
                raise ValueError(f"{where}: {key!r} has shape {tuple(t.shape)} in the checkpoint "
                                 f"but {tuple(expected[key].shape)} in the model.")
        clone = copy.deepcopy(model)
        clone.load_state_dict(state)
        clone.eval()
        return cls(clone, inputs, targets, **kwargs)

    # -- evaluation -----------------------------------------------------------------------------
    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split flat θ (N,) into a dict of parameter tensors (views of θ)."""
        parts = torch.split(theta, self.param_numels)
        return {n: p.view(s) for n, p, s in zip(self.param_names, parts, self.param_shapes,
                                                strict=True)}

    def _call(self, params: dict[str, Tensor], inputs: Tensor) -> Tensor:
        if self._module is not None:
            out = functional_call(self._module, {**self._buffers, **params}, (inputs,))
        else:
            out = self._model(params, inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"Problem: the model returned {type(out).__name__}, not a Tensor.")
        if out.ndim == 1:
            out = out[:, None]
        return out

    def _raw_outputs(self, theta: Tensor) -> Tensor:
        out = self._call(self.unflatten(theta), self.inputs)
        if out.ndim != 2 or out.shape[0] != self.inputs.shape[0]:
            raise ValueError(f"Problem: the model returned shape {tuple(out.shape)} for "
                             f"{self.inputs.shape[0]} inputs; expected (n, k) or (n,).")
        return out

    def output_fn(self, theta: Tensor) -> Tensor:
        """x(θ), shape (n, k): the function torch.func transforms (no validation)."""
        return self._call(self.unflatten(theta), self.inputs)

    def sample_output_fn(self, theta: Tensor, x: Tensor) -> Tensor:
        """f(θ, xᵢ) for one input xᵢ (d…), shape (k,): the per-sample map for ``vmap``."""
        return self._call(self.unflatten(theta), x.unsqueeze(0))[0]

    def loss_at(self, theta: Tensor) -> Tensor:
        """L(θ) without validation (for torch.func transforms)."""
        return self.loss_fn(self.output_fn(theta), self.targets)

    def check_theta(self, where: str, theta: Tensor | None, name: str = "theta") -> Tensor:
        """Validate θ (length N, finite); None means ``self.theta``. Returns a float tensor."""
        if theta is None:
            return self._theta.clone()
        return check_vector(where, name, theta, self.n_params, dtype=self.dtype, device=self.device)

    @property
    def theta(self) -> Tensor:
        """The model's parameters as a flat copy, shape (N,)."""
        return self._theta.clone()

    @property
    def model(self) -> nn.Module | Callable:
        """The model as given (never modified)."""
        return self._model

    def outputs(self, theta: Tensor | None = None) -> Tensor:
        """Behavior x(θ) on the training inputs, shape (n, k)."""
        theta = self.check_theta("problem.outputs(theta)", theta)
        with torch.no_grad():
            out = self.output_fn(theta)
        check_finite("problem.outputs(theta)", "outputs", out, "θ is outside the model's finite range.")
        return out

    def loss(self, theta: Tensor | None = None) -> Tensor:
        """L(θ) = C(x(θ), y), a scalar tensor."""
        theta = self.check_theta("problem.loss(theta)", theta)
        with torch.no_grad():
            value = self.loss_at(theta)
        check_finite("problem.loss(theta)", "loss", value, "θ is outside the loss's finite range.")
        return value

    def grad(self, theta: Tensor | None = None) -> Tensor:
        """∇L(θ) = Jᵀ ∇ₓC, shape (N,)."""
        theta = self.check_theta("problem.grad(theta)", theta)
        g = torch.func.grad(self.loss_at)(theta)
        check_finite("problem.grad(theta)", "gradient", g, "θ is outside the loss's finite range.")
        return g

    def output_grad(self, theta: Tensor | None = None) -> Tensor:
        """∇ₓC at x(θ), shape (n, k)."""
        x = self.outputs(theta)
        return self.loss_fn.output_grad(x, self.targets)

    def with_targets(self, targets: Tensor) -> Problem:
        """A copy of this problem with other targets (same model, inputs, loss)."""
        other = object.__new__(Problem)
        other.__dict__.update(self.__dict__)
        other.labels = None
        other.targets = other._prepare_targets("problem.with_targets(targets)",
                                               torch.as_tensor(targets, device=self.device),
                                               (self.n_samples, self.n_outputs))
        return other

    def __repr__(self) -> str:
        return (f"Problem(N={self.n_params}, n={self.n_samples}, k={self.n_outputs}, "
                f"loss={self.loss_fn.name!r}, reduction={self.loss_fn.reduction!r}, "
                f"dtype={self.dtype})")
