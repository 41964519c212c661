"""Softmax cross-entropy flows in output space (§2.7): equilibria, conserved sums, Hessians.

Per sample j: ℓ(xⱼ, yⱼ) = −⟨yⱼ, log σ(xⱼ)⟩ (2.66), σ the softmax. Under the adapted flow with
rank J = n·k, ∂ₛxⱼ = −(σ(xⱼ) − yⱼ)/n for C = (1/n)Σⱼ ℓⱼ (2.70)/(2.71); ⟨𝟏, σ(xⱼ) − yⱼ⟩ = 0, so each
output sum cⱼ = ⟨𝟏, xⱼ⟩ is conserved (2.72)–(2.74) and xⱼ converges to the unique point of its
hyperplane where σ(xⱼ) = yⱼ (Prop. 2.7, Cor. 2.8), provided every entry of yⱼ is positive.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._checks import check_finite

SIMPLEX_TOL = 1e-6
"""Largest |Σ_c y_c − 1| accepted for a probability row (the tolerance ``Problem`` applies to
cross-entropy targets)."""


def _as_matrix(where: str, name: str, value) -> Tensor:
    if not isinstance(value, Tensor | np.ndarray):
        raise TypeError(f"{where}: {name} must be a torch.Tensor or numpy array, got "
                        f"{type(value).__name__}.")
    t = torch.as_tensor(value)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t.to(torch.float64)


def _check_probabilities(where: str, y: Tensor) -> None:
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] < 2:
        raise ValueError(f"{where}: targets_prob must have shape (n, k) with n ≥ 1 and k ≥ 2, got "
                         f"{tuple(y.shape)}.")
    check_finite(where, "targets_prob", y)
    if bool((y < 0).any()):
        i, c = (int(v) for v in torch.nonzero(y < 0)[0])
        raise ValueError(f"{where}: targets_prob must be probability rows, but entry ({i}, {c}) is "
                         f"{float(y[i, c]):g} < 0.")
    sums = y.sum(dim=1)
    worst = int((sums - 1).abs().argmax())
    if float((sums[worst] - 1).abs()) > SIMPLEX_TOL:
        raise ValueError(f"{where}: targets_prob rows must sum to 1, but row {worst} sums to "
                         f"{float(sums[worst]):.9g}. Normalise the rows.")


def ce_equilibrium(targets_prob: Tensor | np.ndarray, sums: Tensor | np.ndarray) -> Tensor:
    """The equilibrium of the adapted cross-entropy flow on the fibre with output sums c (§2.7).

    x*ⱼ = log yⱼ + (cⱼ − ⟨𝟏, log yⱼ⟩)/k · 𝟏 (2.91)/(2.102): the unique xⱼ with σ(xⱼ) = yⱼ and
    ⟨𝟏, xⱼ⟩ = cⱼ. Every x* is a global minimum of C (a degenerate one: the family over c ∈ Rⁿ
    is n-dimensional), with per-sample loss ℓ(x*ⱼ, yⱼ) = H(yⱼ), the label entropy.

    Args:
        targets_prob: Probability rows y, shape (n, k), every entry positive.
        sums: Conserved output sums cⱼ = ⟨𝟏, xⱼ(0)⟩, shape (n,).

    Returns:
        x*, float64, shape (n, k).

    Raises:
        TypeError: If an argument is not a tensor or array.
        ValueError: If targets_prob is not (n, k) rows on the simplex, sums is not (n,), either is
            non-finite, or a target has a zero entry (one-hot labels): then σ(x) = y has no
            solution and the cross-entropy has no finite minimiser.

    Example:
        >>> import torch
        >>> y = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
        >>> x = ce_equilibrium(y, torch.zeros(1, dtype=torch.float64))
        >>> [round(v, 6) for v in x[0].tolist()]          # §2.7 worked example, c = 0
        [0.475705, -0.03512, -0.440585]
        >>> torch.allclose(torch.softmax(x, dim=1), y)
        True
    """
    where = "ce_equilibrium(targets_prob, sums)"
    y = _as_matrix(where, "targets_prob", targets_prob)
    _check_probabilities(where, y)
    c = _as_matrix(where, "sums", sums)
    if c.ndim != 1 or c.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: sums must have shape ({y.shape[0]},) (one conserved sum "
                         f"⟨1, x_j⟩ per sample), got {tuple(c.shape)}.")
    check_finite(where, "sums", c)
    zero = y == 0
    if bool(zero.any()):
        i, cls = (int(v) for v in torch.nonzero(zero)[0])
        raise ValueError(
            f"{where}: targets_prob has {int(zero.sum())} zero entries (first at sample {i}, class "
            f"{cls}), e.g. one-hot labels: σ(x) = y has no solution, so the cross-entropy has no "
            "finite minimiser and the flow's outputs run off to infinity (§2.7, Lemma 2.6). "
            "Use labels with positive entries, e.g. smoothed (1 − ε)·y + ε/k.")
    logy = torch.log(y)
    k = y.shape[1]
    return logy + ((c - logy.sum(dim=1)) / k)[:, None]


def label_entropy(targets_prob: Tensor | np.ndarray) -> Tensor:
    """H(yⱼ) = −Σ_c y_jc log y_jc per sample (0 log 0 = 0), shape (n,).

    The per-sample cross-entropy at any equilibrium x*ⱼ; C(x*) = (1/n) Σⱼ H(yⱼ) for the
    sample-mean cost (2.104), whatever the sums c.

    Args:
        targets_prob: Probability rows, shape (n, k).

    Returns:
        The entropies, float64, shape (n,).

    Raises:
        TypeError: If targets_prob is not a tensor or array.
        ValueError: If it is not (n, k) rows on the simplex.

    Example:
        >>> import torch
        >>> round(float(label_entropy(torch.tensor([[0.5, 0.3, 0.2]]))[0]), 6)   # §2.7
        1.029653
    """
    where = "label_entropy(targets_prob)"
    y = _as_matrix(where, "targets_prob", targets_prob)
    _check_probabilities(where, y)
    return -torch.xlogy(y, y).sum(dim=1)


def ce_sample_hessian(outputs: Tensor | np.ndarray) -> Tensor:
    """Hessian of the per-sample cross-entropy in xⱼ (2.78): H(x) = diag σ(x) − σ(x)σ(x)ᵀ.

    Positive semidefinite with kernel span{𝟏} (Lemma 2.6); independent of the label (for rows on
    the simplex). The total cost (1/n)Σⱼ ℓⱼ has the blocks H(xⱼ)/n.

    Args:
        outputs: Logits, shape (n, k) (or (k,) for one sample).

    Returns:
        The blocks, float64, shape (n, k, k) ((k, k) for a single sample).

    Raises:
        TypeError: If outputs is not a tensor or array.
        ValueError: If outputs is not 1-D or 2-D, or non-finite.

    Example:
        >>> import torch
        >>> H = ce_sample_hessian(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))
        >>> [round(v, 6) for v in torch.linalg.eigvalsh(H).tolist()]    # §7 row 18
        [0.0, 0.118553, 0.370904]
    """
    where = "ce_sample_hessian(outputs)"
    x = _as_matrix(where, "outputs", outputs)
    if x.ndim not in (1, 2):
        raise ValueError(f"{where}: outputs must have shape (n, k) or (k,), got {tuple(x.shape)}.")
    check_finite(where, "outputs", x)
    p = torch.softmax(x, dim=-1)
    return torch.diag_embed(p) - p[..., :, None] * p[..., None, :]


def output_sums(outputs) -> Tensor:
    """Per-sample output sums ⟨𝟏, xⱼ⟩, conserved by the adapted cross-entropy flow (2.72)–(2.74).

    Args:
        outputs: Outputs (…, n, k) (e.g. a trajectory's (T, n, k)), or a ``Trajectory``.

    Returns:
        The sums, float64, shape (…, n).

    Raises:
        TypeError: If outputs is neither a tensor, an array nor a Trajectory.
        ValueError: If it has fewer than two dimensions.

    Example:
        >>> import torch
        >>> output_sums(torch.tensor([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])).tolist()
        [0.0, 3.0]
    """
    where = "output_sums(outputs)"
    if hasattr(outputs, "outputs") and isinstance(outputs.outputs, Tensor):
        outputs = outputs.outputs
    x = _as_matrix(where, "outputs", outputs)
    if x.ndim < 2:
        raise ValueError(f"{where}: outputs must have shape (..., n, k), got {tuple(x.shape)}.")
    return x.sum(dim=-1)
