"""Problem: a model, its training data and a loss, seen as a function of flat parameters θ."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._checks import check_finite, check_option, check_vector
from .errors import UnsafeCheckpointError
from .losses import LOSS_NAMES, REDUCTIONS, Loss

__all__ = ["Problem", "math_attention"]

SIMPLEX_ATOL = 1e-6
"""Largest |row sum − 1| accepted for probability targets (ce_prob, soft-label softmax_ce)."""

_STOCHASTIC = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
               nn.FeatureAlphaDropout)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)

PROBE_SAMPLES = 8
"""Samples the forward-mode probe evaluates on (per-sample Problems; batch-coupled ones use all)."""

Select = Sequence[str] | str | Callable[[str, Tensor], bool] | None
"""Which parameters form θ: None, name prefixes, or a predicate (name, tensor) -> bool."""


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Evaluate attention by its plain composite ("math") formula, which every transform supports.

    NOTE [fused attention]
        torch's fused attention kernels have no forward-mode rule and no double backward
        (``_scaled_dot_product_flash_attention_for_cpu``), and ``nn.TransformerEncoderLayer`` /
        ``nn.MultiheadAttention`` in eval mode take a fused "fast path"
        (``_transformer_encoder_layer_fwd``) with no forward-mode rule either. Inside this context
        ``scaled_dot_product_attention`` runs on ``SDPBackend.MATH`` and the fast path is off, so
        the same differentiable composite is used by every evaluation, every transform and every
        order of derivative. The fast-path switch is process-global while the context is active.
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _stochastic_modules(model: nn.Module) -> list[str]:
    """Modules whose output depends on chance in their current mode."""
    bad = []
    for name, m in model.named_modules():
        if not m.training:
            continue
        label = name or "model"
        if isinstance(m, _STOCHASTIC) and getattr(m, "p", 0) > 0:
            bad.append(f"{label} ({type(m).__name__}(p={m.p}) in training mode)")
        elif isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
            bad.append(f"{label} (MultiheadAttention(dropout={m.dropout}) in training mode)")
        elif isinstance(m, nn.RReLU):
            bad.append(f"{label} (RReLU in training mode: random slopes)")
    return bad


def _batch_statistics_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """BatchNorm modules that normalise with the statistics of the batch they are given."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and (m.training or m.running_mean is None)]


def _prefix_match(prefix: str, name: str) -> bool:
    """True if ``prefix`` names the parameter ``name`` or a module path above it."""
    return name == prefix or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class Problem:
    """A model, inputs, targets and loss, as functions of a flat parameter vector θ ∈ R^N.

    The behavior is x(θ) = outputs on the training set, shape (n, k); L(θ) = C(x(θ), y).
    θ is a copy of the selected parameters in ``named_parameters()`` order, each tensor
    flattened row-major (``param_slices`` says where each sits). The model itself is never
    mutated: evaluation goes through ``torch.func.functional_call`` on unflattened views of θ, with
    buffers and the parameters left out of θ held as constants.

    Parameters shared between modules (tied weights: one ``nn.Parameter`` registered under two
    names) are one tensor and enter θ once, under the first name ``named_parameters()`` gives;
    the derivative with respect to it sums over every place it is used.

    Every evaluation runs inside ``math_attention()`` (see NOTE [fused attention]), so attention
    layers are differentiable to any order. Whether forward-mode AD works through the model is
    decided once, at construction, by a probe (``forward_ad``, ``ad_notes``): forward-mode
    products are checked against reverse mode, ⟨w, J v⟩ = ⟨Jᵀ w, v⟩ and ∇²L v against plain
    autograd double backward, at relative tolerance √eps, on the first ``PROBE_SAMPLES`` samples.
    Where it fails or disagrees, curvature routes use reverse mode only.

    Args:
        model: An ``nn.Module`` mapping inputs (n, …) to outputs (n, k) (or (n,) for k = 1), or
            a callable f(params: dict[str, Tensor], inputs) -> outputs.
        inputs: Training inputs, shape (n, …). Floating inputs are cast to ``dtype``; integer
            inputs (token ids) stay integers when the model holds an ``nn.Embedding`` or
            ``nn.EmbeddingBag``, and are cast to ``dtype`` otherwise.
        targets: Targets (n, k); (n,) is read as (n, 1) for k = 1, or as integer class labels
            in [0, k) for loss="softmax_ce".
        loss: "mse", "bce", "ce_prob", "softmax_ce", or a callable C(outputs (n, k), targets).
        reduction: "sum" (sum over all entries) or "mean" (PyTorch's convention).
        params: Initial parameters for a callable model (required then), dict of tensors.
        dtype: Floating dtype of every computation (default float64); None keeps the model's
            own dtype (``model_dtype``), and tolerances then follow its eps.
        select: Which parameters form θ. None: for a module, every parameter with
            ``requires_grad=True`` (the others are frozen constants); for a callable, every tensor
            of ``params``. A list of name prefixes (a module path such as "head" or "blocks.3.",
            or a full parameter name; "blocks.3" matches blocks.3.* but not blocks.30.*), or a
            callable (name, tensor) -> bool. An explicit ``select`` ignores ``requires_grad``.
        device: Where θ, the data and every product live; default the model's device. θ, buffers,
            frozen parameters, inputs and targets are copied there, wherever they were.
        batch_coupled: Analyse x(θ) as one full-batch map even when a sample's output depends on
            the other samples (BatchNorm normalising with batch statistics). Per-sample routes
            are then skipped (``per_sample`` is False).

    Attributes:
        theta: Flat copy of the selected parameters, shape (N,) (a property; a copy each time).
        dtype: Working dtype of θ, data and products.
        model_dtype: Dtype of the model's own parameters (the promotion of all of them).
        device: Device of θ, data and products.
        param_names: Names of the tensors in θ, in order.
        param_shapes: Their shapes.
        param_numels: Their sizes; N = sum.
        param_slices: Name -> slice of θ holding that tensor (a property).
        constants: Frozen parameters and buffers held fixed, by name (a property).
        frozen_names: Parameters left out of θ (held as constants), in ``named_parameters()``
            order.
        n_frozen: Number of entries left out of θ.
        n_params: N, the length of θ.
        n_samples: n.
        n_outputs: k.
        inputs: Inputs on ``device`` (floating ones in ``dtype``).
        targets: Targets (n, k) in ``dtype`` (one-hot rows for integer labels).
        labels: Integer class labels (n,) for softmax_ce, else None.
        loss_fn: The loss C with its reduction.
        per_sample: True when x(θ) is computed sample by sample (``vmap`` over samples
            reproduces the batch outputs); False for batch-coupled maps.
        batch_coupled: True when the Problem was built with ``batch_coupled=True``.
        forward_ad: True when forward-mode products (``jvp``) work and agree with reverse mode.
        ad_notes: Why forward mode is not used ("" when it is).

    Raises:
        TypeError: For a model that is neither an nn.Module nor callable, non-tensor data, a
            non-floating dtype, a ``select`` of the wrong type, or floating inputs to a model
            that embeds token ids.
        ValueError: For shape mismatches, non-finite data, parameters or outputs, invalid
            targets for the loss, unknown options, a ``select`` that matches nothing,
            parameters on the meta device or on several devices, a stochastic model (dropout in
            training mode), a model coupling the samples through batch statistics without
            ``batch_coupled=True``, or a model torch.func cannot differentiate.

    Example:
        >>> import torch, lossgeom as lg
        >>> X = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
        >>> p = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(3, 1))
        >>> p.n_params, p.n_samples, p.n_outputs
        (2, 3, 1)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        >>> q = lg.Problem(net, X, torch.zeros(3, 1), select=["2"])   # only the head: 3 + 1
        >>> q.n_params, q.n_frozen, q.frozen_names, q.param_slices["2.bias"]
        (4, 9, ('0.weight', '0.bias'), slice(3, 4, None))
        >>> q.model_dtype, q.dtype
        (torch.float32, torch.float64)
    """

    def __init__(
        self,
        model: nn.Module | Callable,
        inputs: Tensor | np.ndarray,
        targets: Tensor | np.ndarray,
        loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
        reduction: str = "sum",
        params: Mapping[str, Tensor] | None = None,
        dtype: torch.dtype | None = torch.float64,
        *,
        select: Select = None,
        device: torch.device | str | None = None,
        batch_coupled: bool = False,
    ):
        where = "Problem(model, inputs, targets)"
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise TypeError(f"{where}: dtype must be a floating torch dtype or None (keep the "
                            f"model's), got {dtype!r}.")
        check_option(where, "reduction", reduction, REDUCTIONS)
        if callable(loss) and not isinstance(loss, str):
            self.loss_fn = Loss("custom", reduction, loss)
        else:
            check_option(where, "loss", loss, LOSS_NAMES)
            self.loss_fn = Loss(loss, reduction)
        if not isinstance(batch_coupled, bool):
            raise TypeError(f"{where}: batch_coupled must be True or False, got {batch_coupled!r}.")
        self.batch_coupled = batch_coupled

        # -- model, parameters and the selection that forms θ -----------------------------------
        named, aliases, buffers = self._model_tensors(where, model, params, batch_coupled)
        self._model = model
        keep = self._selection(where, select, named, aliases, self._module is not None)
        self.device = self._device(where, device, named, buffers)
        self.model_dtype = self._model_dtype(where, named)
        self.dtype = dtype if dtype is not None else self.model_dtype
        dev, dt = self.device, self.dtype

        def cast(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            t = t.detach()
            return t.to(device=dev, dtype=dt) if t.is_floating_point() else t.to(device=dev)

        self._all_names = tuple(named)
        self._buffers = {k: cast(b) for k, b in buffers.items()}
        self._frozen = {k: cast(t) for k, t in named.items() if k not in keep}
        chosen = {k: t for k, t in named.items() if k in keep}
        self.param_names: tuple[str, ...] = tuple(chosen)
        self.param_shapes: tuple[torch.Size, ...] = tuple(t.shape for t in chosen.values())
        self.param_numels: tuple[int, ...] = tuple(t.numel() for t in chosen.values())
        self.frozen_names: tuple[str, ...] = tuple(self._frozen)
        self.n_frozen = sum(t.numel() for t in self._frozen.values())
        theta = torch.cat([cast(t).reshape(-1) for t in chosen.values()])
        check_finite(where, "parameters", theta,
                     "Re-initialise the model or load finite weights.")
        self._theta = theta

        # -- data -------------------------------------------------------------------------------
        X = self._prepare_inputs(where, inputs)
        self.inputs = X
        if not isinstance(targets, Tensor | np.ndarray):
            raise TypeError(f"{where}: targets must be a torch.Tensor or numpy array, got "
                            f"{type(targets).__name__}.")
        if isinstance(targets, Tensor) and targets.is_meta:
            raise ValueError(f"{where}: targets are on the meta device (no values). Pass the "
                             "targets themselves.")
        Y = torch.as_tensor(targets).to(self.device)
        if Y.shape[:1] != X.shape[:1]:
            raise ValueError(f"{where}: inputs have {X.shape[0]} samples but targets have "
                             f"{Y.shape[0] if Y.ndim else 0}; they must match along the first axis.")

        out = self._first_outputs(where, theta)
        k = out.shape[1]
        self.n_samples, self.n_outputs, self.n_params = X.shape[0], k, theta.numel()
        self.labels: Tensor | None = None
        self.targets = self._prepare_targets(where, Y, out.shape)
        check_finite(where, "model outputs", out,
                     "Check the model and its parameters for overflow at these inputs.")
        again = self._raw_outputs(theta, where)
        if not torch.equal(out, again):
            raise ValueError(f"{where}: two evaluations of the model at the same parameters differ "
                             "(max |Δ| = {:.3g}); the model must be deterministic.".format(
                                 float((out - again).abs().max())))
        self.per_sample = False if batch_coupled else self._is_per_sample(theta, out)
        value = self.loss_fn(out, self.targets)
        if value.ndim != 0:
            raise ValueError(f"{where}: the loss returned shape {tuple(value.shape)}; it must be a "
                             "scalar.")
        if not math.isfinite(float(value)):
            raise ValueError(f"{where}: the loss is {float(value)} at the model's parameters; "
                             f"check that the outputs suit loss={self.loss_fn.name!r} "
                             "(bce/ce_prob need outputs in (0, 1)).")
        self.forward_ad, self.ad_notes = self._probe_autodiff(where, theta)

    # -- construction helpers -------------------------------------------------------------------
    def _model_tensors(self, where: str, model, params, batch_coupled: bool
                       ) -> tuple[dict[str, Tensor], dict[str, tuple[str, ...]], dict[str, Tensor | None]]:
        """(parameters by name, alias names of each, buffers by name) of the model.

        Raises:
            TypeError: For a model that is neither an nn.Module nor callable, or misplaced params.
            ValueError: For a stochastic or (without ``batch_coupled``) batch-coupled model, or
                one without parameters.
        """
        if isinstance(model, nn.Module):
            if params is not None:
                raise TypeError(f"{where}: params is only for a callable model; an nn.Module "
                                "carries its own parameters.")
            bad = _stochastic_modules(model)
            if bad:
                raise ValueError(
                    f"{where}: the model is stochastic: {', '.join(bad)}. Curvature needs a "
                    "deterministic function; call model.eval() first."
                )
            coupled = _batch_statistics_modules(model)
            buffers: dict[str, Tensor | None] = dict(model.named_buffers())
            if coupled and not batch_coupled:
                raise ValueError(self._coupling_message(where, coupled))
            for name, m in coupled:   # batch statistics only: never update the running ones
                if m.training and m.track_running_stats:
                    for b in ("running_mean", "running_var", "num_batches_tracked"):
                        buffers[f"{name}.{b}" if name else b] = None
            named = dict(model.named_parameters())
            by_id: dict[int, list[str]] = {}
            for name, p in model.named_parameters(remove_duplicate=False):
                by_id.setdefault(id(p), []).append(name)
            aliases = {name: tuple(by_id[id(p)]) for name, p in named.items()}
            self._module = model
        elif callable(model):
            if params is None or not isinstance(params, Mapping):
                raise TypeError(f"{where}: a callable model f(params, inputs) needs params, a dict "
                                "of its initial tensors.")
            named, buffers = dict(params), {}
            aliases = {name: (name,) for name in named}
            self._module = None
        else:
            raise TypeError(f"{where}: model must be an nn.Module or a callable f(params, inputs), "
                            f"got {type(model).__name__}.")
        for name, t in named.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"{where}: parameter {name!r} is a {type(t).__name__}, not a Tensor.")
        if not named:
            raise ValueError(f"{where}: the model has no parameters.")
        return named, aliases, buffers

    @staticmethod
    def _coupling_message(where: str, coupled: list[tuple[str, nn.Module]]) -> str:
        training = [f"{n or 'model'} ({type(m).__name__} in training mode)" for n, m in coupled
                    if m.training]
        always = [f"{n or 'model'} ({type(m).__name__} with track_running_stats=False)"
                  for n, m in coupled if not m.training]
        fixes = []
        if training:
            fixes.append("call model.eval() to normalise with the running statistics")
        if always:
            fixes.append("rebuild the BatchNorm layers with track_running_stats=True and call "
                         "model.eval()")
        return (f"{where}: {', '.join(training + always)} normalise with the statistics of the "
                "batch, so each sample's output depends on the whole batch and x(θ) is not a "
                f"per-sample map. Either {' or '.join(fixes)}, or pass batch_coupled=True to "
                "analyse x(θ) as one full-batch map.")

    @staticmethod
    def _selection(where: str, select: Select, named: dict[str, Tensor],
                   aliases: dict[str, tuple[str, ...]], is_module: bool) -> set[str]:
        """Names of the parameters that form θ.

        Raises:
            TypeError: For a ``select`` of the wrong type.
            ValueError: For a selection that matches nothing, or prefixes that match nothing.
        """
        names = list(named)
        if select is None:
            keep = {k for k, t in named.items() if t.requires_grad} if is_module else set(names)
            if not keep:
                raise ValueError(f"{where}: every parameter has requires_grad=False, so θ would be "
                                 f"empty. Parameters: {names}. Unfreeze some, or choose them with "
                                 "select=[name prefixes].")
            return keep
        if isinstance(select, str):
            select = [select]
        if callable(select):
            keep = {k for k, t in named.items() if bool(select(k, t))}
            what = "the select function"
        elif isinstance(select, Sequence | set | frozenset) and all(isinstance(s, str) for s in select):
            if not select:
                raise ValueError(f"{where}: select is empty, so θ would be empty. Parameters: "
                                 f"{names}. Pass None (every trainable parameter) or name prefixes.")
            select = list(select)
            unmatched = [s for s in select
                         if not any(_prefix_match(s, a) for k in names for a in aliases[k])]
            if unmatched and len(unmatched) < len(select):
                raise ValueError(f"{where}: select prefixes {unmatched} match no parameter. "
                                 f"Parameters: {names}. Fix or drop them.")
            keep = {k for k in names if any(_prefix_match(s, a) for s in select for a in aliases[k])}
            what = f"select={list(select)!r}"
        else:
            raise TypeError(f"{where}: select must be None, a list of parameter-name prefixes, or a "
                            f"callable (name, tensor) -> bool, got {select!r}.")
        if not keep:
            raise ValueError(f"{where}: {what} matches none of the model's parameters: {names}. "
                             "Give module paths or parameter names from that list.")
        return keep

    @staticmethod
    def _device(where: str, device, named: dict[str, Tensor],
                buffers: dict[str, Tensor | None]) -> torch.device:
        tensors = {**{f"parameter {k!r}": t for k, t in named.items()},
                   **{f"buffer {k!r}": b for k, b in buffers.items() if b is not None}}
        meta = [k for k, t in tensors.items() if t.is_meta]
        if meta:
            raise ValueError(f"{where}: the model's {meta[0]} (and {len(meta) - 1} more) lives on the "
                             "meta device: shapes without values. Materialise the weights first, "
                             "e.g. model.to_empty(device=\"cpu\") then model.load_state_dict(state), "
                             "and build the Problem from that model.")
        if device is None:
            devices = sorted({str(t.device) for t in tensors.values()})
            if len(devices) > 1:
                raise ValueError(f"{where}: the model's tensors live on several devices {devices}. "
                                 "Move the model to one (model.to(\"cuda:0\")), or pass device=... "
                                 "to copy θ, buffers and data there.")
            return next(iter(named.values())).device
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{where}: device={device!r} is not a torch device ({exc}). Use e.g. "
                             "\"cpu\" or \"cuda:0\".") from None
        if dev.type == "meta":
            raise ValueError(f"{where}: device=\"meta\" holds no values; products need a real "
                             "device such as \"cpu\" or \"cuda:0\".")
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError) as exc:
            raise ValueError(f"{where}: device={str(dev)!r} is not available here "
                             f"({_first_line(exc)}). Use \"cpu\" or an available device.") from None
        return dev

    @staticmethod
    def _model_dtype(where: str, named: dict[str, Tensor]) -> torch.dtype:
        floats = [t.dtype for t in named.values() if t.is_floating_point()]
        if not floats:
            raise TypeError(f"{where}: the model has no floating-point parameters "
                            f"({sorted({str(t.dtype) for t in named.values()})}); θ must be real.")
        out = floats[0]
        for d in floats[1:]:
            out = torch.promote_types(out, d)
        return out

    def _embeddings(self) -> list[tuple[str, nn.Module]]:
        if self._module is None:
            return []
        return [(n, m) for n, m in self._module.named_modules() if isinstance(m, _EMBEDDINGS)]

    def _prepare_inputs(self, where: str, inputs) -> Tensor:
        if not isinstance(inputs, Tensor | np.ndarray):
            raise TypeError(f"{where}: inputs must be a torch.Tensor or numpy array, got "
                            f"{type(inputs).__name__}.")
        if isinstance(inputs, Tensor) and inputs.is_meta:
            raise ValueError(f"{where}: inputs are on the meta device (no values). Pass the "
                             "inputs themselves.")
        X = torch.as_tensor(inputs)
        if X.ndim < 1 or X.shape[0] == 0:
            raise ValueError(f"{where}: inputs must have shape (n, d...) with n >= 1, got "
                             f"{tuple(X.shape)}.")
        token_ids = not (X.is_floating_point() or X.is_complex() or X.dtype == torch.bool)
        if X.is_complex() or (token_ids and self._embeddings()):
            X = X.to(device=self.device)                      # token ids are not differentiated
        else:
            X = X.to(device=self.device, dtype=self.dtype)
        check_finite(where, "inputs", X, "Drop or repair those samples before building a Problem.")
        return X

    def _first_outputs(self, where: str, theta: Tensor) -> Tensor:
        """x(θ) at construction, turning evaluation failures into messages that say what to fix.

        Raises:
            TypeError: For floating inputs to a model that embeds token ids.
            ValueError: For token ids outside the embedding tables, or any other failure.
        """
        X = self.inputs
        try:
            return self._raw_outputs(theta, where)
        except (RuntimeError, IndexError) as exc:
            embeds = self._embeddings()
            if embeds and X.is_floating_point():
                name, m = embeds[0]
                raise TypeError(
                    f"{where}: the model embeds token ids ({name}: {type(m).__name__}"
                    f"({m.num_embeddings}, {m.embedding_dim})) but the inputs are {X.dtype}. Pass "
                    "the ids as an integer tensor (torch.long); they are not differentiated."
                ) from None
            if embeds and isinstance(exc, IndexError):
                sizes = ", ".join(f"{n}: {m.num_embeddings}" for n, m in embeds)
                raise ValueError(
                    f"{where}: token ids range over [{int(X.min())}, {int(X.max())}] but the "
                    f"embedding tables have ({sizes}) rows; every id must lie in [0, rows)."
                ) from None
            raise ValueError(f"{where}: the model cannot be evaluated on inputs of shape "
                             f"{tuple(X.shape)} ({X.dtype}): {_first_line(exc)}. Check the input "
                             "shape and dtype against the model's first layer.") from None

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

    def _probe_functions(self) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
        """(θ ↦ x, θ ↦ L) for the probe: on the first ``PROBE_SAMPLES`` samples.

        A Problem that is not per-sample, or whose loss does not accept the subset, uses the
        whole batch.
        """
        m = min(self.n_samples, PROBE_SAMPLES)
        if self.per_sample and m < self.n_samples:
            X, Y = self.inputs[:m], self.targets[:m]

            def sub_outputs(t: Tensor) -> Tensor:
                return self._call(self.unflatten(t), X)

            def sub_loss(t: Tensor) -> Tensor:
                return self.loss_fn(sub_outputs(t), Y)

            try:
                with torch.no_grad():
                    ok = sub_loss(self._theta).ndim == 0
            except Exception:  # a custom loss tied to the full batch
                ok = False
            if ok:
                return sub_outputs, sub_loss
        return self.output_fn, self.loss_at

    def _probe_autodiff(self, where: str, theta: Tensor) -> tuple[bool, str]:
        """(forward_ad, ad_notes): does forward mode work through the model, and agree with reverse?

        Reverse mode must work (every route needs it): its failure is an error. Forward mode is
        checked by the transpose identity ⟨w, J v⟩ = ⟨Jᵀ w, v⟩ and by ∇²L v from ``jvp(grad)``
        against plain autograd double backward, for seeded random v, w, at relative tolerance √eps,
        on at most ``PROBE_SAMPLES`` samples (a few gradients' worth of work).

        Raises:
            ValueError: If reverse mode (``torch.func.vjp``) fails through the model.
        """
        outputs, loss = self._probe_functions()
        gen = torch.Generator(device="cpu").manual_seed(1)
        v = torch.randn(theta.shape, generator=gen, dtype=self.dtype).to(self.device)
        rtol = math.sqrt(float(torch.finfo(self.dtype).eps))
        try:
            out, pull = torch.func.vjp(outputs, theta)
            w = torch.randn(out.shape, generator=gen, dtype=self.dtype).to(self.device)
            jtw = pull(w)[0]
        except Exception as exc:
            raise ValueError(
                f"{where}: torch.func cannot differentiate the model in reverse mode "
                f"({_first_line(exc)}). Every curvature route needs torch.func.vjp through each "
                "module: replace the module that fails, or give custom autograd.Functions a "
                "setup_context staticmethod and generate_vmap_rule = True."
            ) from None
        t = theta.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                (g,) = torch.autograd.grad(loss(t), t, create_graph=True)
            hv_rev = (torch.autograd.grad(g, t, v, allow_unused=True)[0]
                      if g.requires_grad else None)
            hv_rev = torch.zeros_like(v) if hv_rev is None else hv_rev.detach()
        except Exception as exc:  # a module without double backward: forward mode is all we have
            hv_rev, rev_note = None, f"; reverse-over-reverse fails ({_first_line(exc)})"
        else:
            rev_note = ""
        try:
            jv = torch.func.jvp(outputs, (theta,), (v,))[1]
            hv = torch.func.jvp(torch.func.grad(loss), (theta,), (v,))[1]
        except Exception as exc:
            return False, (f"forward-mode AD is unavailable ({_first_line(exc)}): Jacobian and "
                           f"Hessian products use reverse mode{rev_note}")
        lhs, rhs = float((w * jv).sum()), float((jtw * v).sum())
        scale = float(w.norm() * jv.norm() + jtw.norm() * v.norm())
        if not (math.isfinite(lhs) and abs(lhs - rhs) <= rtol * max(scale, 1e-300)):
            return False, (f"forward-mode J v disagrees with reverse mode (⟨w, Jv⟩ = {lhs:.6g}, "
                           f"⟨Jᵀw, v⟩ = {rhs:.6g}): Jacobian and Hessian products use reverse mode")
        if hv_rev is not None:
            err = float((hv - hv_rev).norm())
            ref = max(float(hv.norm()), float(hv_rev.norm()))
            if not (math.isfinite(err) and err <= rtol * ref):
                return False, (f"forward-over-reverse ∇²L v disagrees with autograd double backward "
                               f"(relative difference {err / max(ref, 1e-300):.3g}): Hessian and "
                               "Jacobian products use reverse mode")
        return True, rev_note.removeprefix("; ")

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
            **kwargs: Passed on to ``Problem`` (loss, reduction, dtype, select, device,
                batch_coupled).

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
    @property
    def param_slices(self) -> dict[str, slice]:
        """Where each parameter tensor sits in θ: name -> slice of θ (flattened row-major)."""
        out, start = {}, 0
        for name, numel in zip(self.param_names, self.param_numels, strict=True):
            out[name] = slice(start, start + numel)
            start += numel
        return out

    @property
    def constants(self) -> dict[str, Tensor | None]:
        """Tensors held fixed in every evaluation: frozen parameters and buffers, by name.

        As the Problem holds them (working dtype and device); a buffer is None where batch
        statistics replace it (BatchNorm in training mode with ``batch_coupled=True``). Code that
        calls a submodule with ``functional_call`` passes these next to ``unflatten(θ)``.
        """
        return {**self._buffers, **self._frozen}

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split flat θ (N,) into a dict of parameter tensors (views of θ)."""
        parts = torch.split(theta, self.param_numels)
        return {n: p.view(s) for n, p, s in zip(self.param_names, parts, self.param_shapes,
                                                strict=True)}

    def _call(self, params: dict[str, Tensor], inputs: Tensor) -> Tensor:
        """The model on ``inputs`` with ``params`` (a subset of θ's tensors); the rest held fixed.

        Frozen parameters and buffers fill in what ``params`` leaves out; attention runs on the
        math backend (``math_attention``), inside every transform that calls this.

        Raises:
            TypeError: If the model returns something other than a tensor.
        """
        with math_attention():
            if self._module is not None:
                out = functional_call(self._module, {**self.constants, **params}, (inputs,))
            else:
                merged = {**self._frozen, **params}
                out = self._model({k: merged[k] for k in self._all_names if k in merged}, inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"Problem: the model returned {type(out).__name__}, not a Tensor. "
                            "Wrap it so that forward returns the (n, k) output tensor alone.")
        if out.ndim == 1:
            out = out[:, None]
        return out

    def _raw_outputs(self, theta: Tensor, where: str = "Problem") -> Tensor:
        out = self._call(self.unflatten(theta), self.inputs)
        n = self.inputs.shape[0]
        if out.ndim != 2 or out.shape[0] != n:
            raise ValueError(f"{where}: the model returned shape {tuple(out.shape)} for {n} inputs; "
                             "expected (n, k) or (n,). Pool or flatten each sample's output inside "
                             "the model (e.g. mean over the sequence axis, then a linear head).")
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
        """The selected parameters as a flat copy, shape (N,)."""
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

    def restricted(self, theta: Tensor | None, names) -> Problem:
        """This Problem at θ with only the parameter tensors ``names`` free; the rest held at θ.

        Its θ is θ restricted to those tensors (in this Problem's order), so its Jacobian is the
        column block J_b and its Hessian the diagonal block H_bb of this Problem's at θ.

        Args:
            theta: Flat parameters (N,) of this Problem; None for ``self.theta``.
            names: Parameter names (a subset of ``param_names``).

        Returns:
            A Problem sharing model, data and loss.

        Raises:
            ValueError: If ``names`` selects no parameter of θ or names an unknown one.

        Example:
            >>> import torch, lossgeom as lg
            >>> p = lg.Problem(lg.mlp([2, 3, 1]), torch.ones(4, 2), torch.zeros(4, 1))
            >>> q = p.restricted(None, ["2.weight", "2.bias"])
            >>> q.n_params, q.n_frozen
            (4, 9)
        """
        where = "problem.restricted(theta, names)"
        values = self.unflatten(self.check_theta(where, theta))
        names = set(names)
        unknown = sorted(names - set(self.param_names))
        if unknown or not names:
            raise ValueError(f"{where}: {unknown or 'no names'} are not parameters of θ; choose "
                             f"among {list(self.param_names)}.")
        keep = [n for n in self.param_names if n in names]
        other = object.__new__(Problem)
        other.__dict__.update(self.__dict__)
        other._frozen = {**self._frozen, **{n: values[n].detach().clone()
                                            for n in self.param_names if n not in names}}
        other.param_names = tuple(keep)
        other.param_shapes = tuple(values[n].shape for n in keep)
        other.param_numels = tuple(values[n].numel() for n in keep)
        other.frozen_names = tuple(other._frozen)
        other.n_frozen = sum(t.numel() for t in other._frozen.values())
        other._theta = torch.cat([values[n].reshape(-1) for n in keep]).clone()
        other.n_params = other._theta.numel()
        return other

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
        extra = ""
        if self.model_dtype != self.dtype:
            extra += f", model_dtype={self.model_dtype}"
        if self.frozen_names:
            extra += (f", frozen={len(self.frozen_names)} tensor"
                      f"{'s' if len(self.frozen_names) != 1 else ''} ({self.n_frozen} entries)")
        if self.batch_coupled:
            extra += ", batch_coupled=True"
        if not self.forward_ad:
            extra += ", forward_ad=False"
        return (f"Problem(N={self.n_params}, n={self.n_samples}, k={self.n_outputs}, "
                f"loss={self.loss_fn.name!r}, reduction={self.loss_fn.reduction!r}, "
                f"dtype={self.dtype}{extra})")
