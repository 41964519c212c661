"""Small, seeded, float64 models with real layer types, and dense references that share no code
with ``lossgeom.curvature``.

Every builder returns an ``nn.Module`` (and data where it owns them) built from a fixed seed, so
each test sees the same numbers. N stays in the hundreds so dense references take well under a
second.

References (independent of lossgeom's curvature routes):
* ``autograd_jacobian``: one ``torch.autograd.grad`` per output entry (reverse mode, plain autograd).
* ``autograd_hessian``: plain double backward, one ``torch.autograd.grad(g, θ, eⱼ)`` per unit vector
  with ``create_graph=True`` for g = ∇L.
* ``fd_hessian`` / ``fd_jacobian``: central differences in float64 with
  h = eps^(1/3)·max(1, ‖θ‖∞) (of the autograd gradient, resp. of the outputs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lossgeom.models import Square

F64 = torch.float64
EPS64 = float(torch.finfo(F64).eps)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
    "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "hardswish": nn.Hardswish, "square": Square, "identity": nn.Identity,
}
"""Every activation lossgeom's routes are checked through (nn modules, default settings)."""


def seeded(seed: int) -> torch.Generator:
    """A CPU generator with a fixed seed."""
    return torch.Generator().manual_seed(seed)


def _reinit(model: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
    """Overwrite every parameter with seeded U(−s, s), s = scale/√fan_in (LayerNorm/BatchNorm
    weights near 1), in float64, so results do not depend on torch's global RNG."""
    g = seeded(seed)
    model.double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else p.numel()
            u = torch.rand(p.shape, generator=g, dtype=F64) * 2 - 1
            if name.endswith("weight") and p.ndim == 1:        # norm scales: near one
                p.copy_(1.0 + 0.3 * u)
            else:
                p.copy_(scale * u / fan_in**0.5)
    return model


# -- data --------------------------------------------------------------------------------------
def digits(n: int = 24, classes: int = 4, seed: int = 0) -> tuple[Tensor, Tensor]:
    """n seeded 8×8 digits of the first ``classes`` classes from scikit-learn (bundled, no download).

    Returns:
        Images (n, 1, 8, 8) scaled to [0, 1], float64, and integer labels (n,).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    mask = data.target < classes
    X = torch.tensor(data.images[mask], dtype=F64) / 16.0
    y = torch.tensor(data.target[mask], dtype=torch.long)
    idx = torch.randperm(X.shape[0], generator=seeded(seed))[:n]
    return X[idx, None], y[idx]


def one_hot(y: Tensor, k: int) -> Tensor:
    """Float64 one-hot rows (n, k)."""
    return torch.nn.functional.one_hot(y, k).to(F64)


def tokens(n: int = 6, length: int = 5, vocab: int = 7, seed: int = 0) -> Tensor:
    """Seeded integer token sequences (n, length) in [0, vocab)."""
    return torch.randint(0, vocab, (n, length), generator=seeded(seed))


def gaussian(*shape: int, seed: int) -> Tensor:
    """Seeded standard normal float64 tensor."""
    return torch.randn(*shape, generator=seeded(seed), dtype=F64)


# -- real models -------------------------------------------------------------------------------
class LeNet(nn.Module):
    """LeNet-style CNN for 8×8 images: conv 3×3 → act → pool 2 → conv 2×2 → act → linear.

    (n, 1, 8, 8) → (n, k); N = 40 + 102 + 24·k + k (242 for k = 4).
    """

    def __init__(self, k: int = 4, activation: str = "tanh", pool: str = "max"):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 2)
        self.act = ACTIVATIONS[activation]()
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.head = nn.Linear(6 * 2 * 2, k)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (n, k)."""
        h = self.pool(self.act(self.conv1(x)))          # (n, 4, 3, 3)
        h = self.act(self.conv2(h))                     # (n, 6, 2, 2)
        return self.head(h.flatten(1))


def lenet(k: int = 4, activation: str = "tanh", pool: str = "max", seed: int = 0) -> LeNet:
    """Seeded float64 ``LeNet``."""
    return _reinit(LeNet(k, activation, pool), seed, scale=2.0)


class BNConvNet(nn.Module):
    """Conv 3×3 → BatchNorm2d → tanh → avg-pool 2 → linear: (n, 1, 8, 8) → (n, k); N = 85 for k = 2."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(3 * 3 * 3, k)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (n, k)."""
        return self.head(self.pool(torch.tanh(self.bn(self.conv(x)))).flatten(1))


def bn_convnet(k: int = 2, seed: int = 0, training: bool = False) -> BNConvNet:
    """Seeded ``BNConvNet`` with non-trivial running statistics; eval mode unless ``training``."""
    model = _reinit(BNConvNet(k), seed, scale=2.0)
    g = seeded(seed + 100)
    with torch.no_grad():
        model.bn.running_mean.copy_(0.2 * torch.randn(3, generator=g, dtype=F64))
        model.bn.running_var.copy_(0.5 + torch.rand(3, generator=g, dtype=F64))
    return model.train(training)


class Encoder(nn.Module):
    """Transformer encoder on token ids: embedding + learned positions → one
    ``nn.TransformerEncoderLayer`` (post-norm, dropout 0) → mean over positions → linear head.

    (n, length) integer ids → (n, k). With vocab 7, d = 8, 2 heads, feed-forward 16, length 5 and
    k = 3: N = 56 + 40 + 600 + 27 = 723.
    """

    def __init__(self, vocab: int = 7, d: int = 8, heads: int = 2, ff: int = 16, length: int = 5,
                 k: int = 3, activation: str = "relu"):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(length, d))
        self.block = nn.TransformerEncoderLayer(d, heads, dim_feedforward=ff, dropout=0.0,
                                                activation=activation, batch_first=True)
        self.head = nn.Linear(d, k)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (n, k)."""
        return self.head(self.block(self.embed(x) + self.pos).mean(dim=1))


def encoder(seed: int = 0, **kwargs) -> Encoder:
    """Seeded float64 ``Encoder`` in eval mode (its dropout is 0 either way)."""
    model = _reinit(Encoder(**kwargs), seed, scale=1.5)
    with torch.no_grad():
        model.embed.weight.mul_(3.0)                    # embeddings ~ O(1) like nn.Embedding's N(0, 1)
    return model.eval()


class AttentionNet(nn.Module):
    """Embedding → ``nn.MultiheadAttention`` (self-attention) + residual → LayerNorm → mean → linear."""

    def __init__(self, vocab: int = 5, d: int = 4, heads: int = 2, k: int = 2, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, k)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (n, k)."""
        e = self.embed(x)
        a, _ = self.attn(e, e, e, need_weights=False)
        return self.head(self.norm(e + a).mean(dim=1))


def attention_net(seed: int = 0, **kwargs) -> AttentionNet:
    """Seeded float64 ``AttentionNet`` in eval mode."""
    model = _reinit(AttentionNet(**kwargs), seed, scale=1.5)
    with torch.no_grad():
        model.embed.weight.mul_(3.0)
    return model.eval()


def layernorm_mlp(d: int = 3, h: int = 5, k: int = 2, seed: int = 0) -> nn.Sequential:
    """Linear → LayerNorm → tanh → Linear; N = d·h + h + 2h + h·k + k (42 for 3, 5, 2)."""
    return _reinit(nn.Sequential(nn.Linear(d, h), nn.LayerNorm(h), nn.Tanh(), nn.Linear(h, k)),
                   seed, scale=1.5)


class Backbone(nn.Module):
    """A feature extractor and a head, for frozen-backbone (fine-tuning) problems."""

    def __init__(self, d: int = 3, h: int = 6, k: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())
        self.head = nn.Linear(h, k)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (n, k)."""
        return self.head(self.body(x))


def backbone(seed: int = 0, freeze: bool = False) -> Backbone:
    """Seeded ``Backbone``; ``freeze`` sets requires_grad=False on every ``body`` parameter."""
    model = _reinit(Backbone(), seed, scale=1.5)
    if freeze:
        for p in model.body.parameters():
            p.requires_grad_(False)
    return model


class TiedEmbedding(nn.Module):
    """Token ids → embedding → mean → tanh → logits by the *same* matrix (tied weights)."""

    def __init__(self, vocab: int = 5, d: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.unembed = nn.Linear(d, vocab, bias=False)
        self.unembed.weight = self.embed.weight          # one Parameter, two names

    def forward(self, x: Tensor) -> Tensor:
        """Logits (n, vocab)."""
        return self.unembed(torch.tanh(self.embed(x).mean(dim=1)))


def tied_embedding(seed: int = 0) -> TiedEmbedding:
    """Seeded ``TiedEmbedding``."""
    return _reinit(TiedEmbedding(), seed, scale=3.0)


class _TanhNoForward(torch.autograd.Function):
    """tanh as a custom autograd.Function with a backward (twice differentiable) but no jvp."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class NoForwardTanh(nn.Module):
    """Elementwise tanh through ``_TanhNoForward``: forward-mode AD cannot pass it."""

    def forward(self, x: Tensor) -> Tensor:
        """tanh(x)."""
        return _TanhNoForward.apply(x)


def no_forward_mlp(seed: int = 0) -> nn.Sequential:
    """Linear → custom tanh without a forward-mode rule → Linear, (n, 2) → (n, 2); N = 4·2+4+4·2+2."""
    return _reinit(nn.Sequential(nn.Linear(2, 4), NoForwardTanh(), nn.Linear(4, 2)), seed, 1.5)


# -- dense references ----------------------------------------------------------------------------
def autograd_jacobian(output_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """J (n·k, N) row by row with ``torch.autograd.grad`` (reverse mode, sample-major rows)."""
    t = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = output_fn(t).reshape(-1)
    rows = []
    for i in range(out.numel()):
        (g,) = torch.autograd.grad(out[i], t, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(t) if g is None else g)
    return torch.stack(rows)


def autograd_gradient(loss_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """∇L (N,) by one plain ``torch.autograd.grad``."""
    t = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss_fn(t), t)
    return g


def autograd_hessian(loss_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """∇²L (N, N) by plain double backward: g = ∇L with create_graph=True, then ∂(g·eⱼ)/∂θ."""
    t = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss_fn(t), t, create_graph=True)
    N = t.numel()
    if not g.requires_grad:                               # L at most linear in θ
        return torch.zeros(N, N, dtype=t.dtype)
    rows = []
    for j in range(N):
        e = torch.zeros_like(t)
        e[j] = 1.0
        (h,) = torch.autograd.grad(g, t, e, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(t) if h is None else h)
    return torch.stack(rows)


def fd_step(theta: Tensor) -> float:
    """h = eps^(1/3)·max(1, ‖θ‖∞) for central differences in float64."""
    return EPS64 ** (1 / 3) * max(1.0, float(theta.abs().max()))


def fd_hessian(loss_fn: Callable[[Tensor], Tensor], theta: Tensor,
               columns: list[int] | None = None) -> Tensor:
    """Central differences of the autograd gradient: column j = (∇L(θ + h eⱼ) − ∇L(θ − h eⱼ)) / 2h.

    ``columns`` restricts to some j (default all); returns (N, len(columns)).
    """
    h = fd_step(theta)
    cols = []
    for j in (range(theta.numel()) if columns is None else columns):
        e = torch.zeros_like(theta)
        e[j] = h
        cols.append((autograd_gradient(loss_fn, theta + e) - autograd_gradient(loss_fn, theta - e))
                    / (2 * h))
    return torch.stack(cols, dim=1)


def fd_jacobian(output_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """Central differences of the outputs: column j = (x(θ + h eⱼ) − x(θ − h eⱼ)) / 2h, (n·k, N)."""
    h = fd_step(theta)
    cols = []
    with torch.no_grad():
        for j in range(theta.numel()):
            e = torch.zeros_like(theta)
            e[j] = h
            cols.append((output_fn(theta + e) - output_fn(theta - e)).reshape(-1) / (2 * h))
    return torch.stack(cols, dim=1)


def max_rel(a: Tensor, b: Tensor) -> float:
    """max|a − b| / max(max|b|, tiny): the entrywise error relative to the largest reference entry."""
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)
