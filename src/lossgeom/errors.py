"""Error types raised by lossgeom beyond plain ``TypeError`` and ``ValueError``."""

from __future__ import annotations

__all__ = ["DenseTooLargeError", "NotCriticalError", "UnsafeCheckpointError"]


class DenseTooLargeError(ValueError, MemoryError):
    """A dense matrix was requested that would exceed the memory budget.

    The message states the size in bytes and names the matrix-free route.
    """


class NotCriticalError(ValueError):
    """A critical point is required but ‖∇L(θ)‖ exceeds the tolerance.

    Attributes:
        grad_norm: ‖∇L(θ)‖ at the best point found.
        tol: The tolerance that was not met.
        theta: The best point found, shape (N,).
        history: Optimisation history (list of dicts), when available.
    """

    def __init__(self, message: str, *, grad_norm: float, tol: float, theta=None, history=None):
        super().__init__(message)
        self.grad_norm = grad_norm
        self.tol = tol
        self.theta = theta
        self.history = history


class UnsafeCheckpointError(ValueError):
    """A checkpoint could not be loaded with ``torch.load(weights_only=True)``."""
