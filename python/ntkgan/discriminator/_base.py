r"""The interface every trained discriminator exposes, at finite or infinite width.

A discriminator is a function :math:`f : \mathbb R^d \to \mathbb R` with its input gradient, and the loss it
was trained with, which fixes the generator cost :math:`c`.  The generator (or a particle) at :math:`x` feels
the force :math:`-\nabla_x c(f(x)) = -c'(f(x))\,\nabla f(x)` (chain rule; :meth:`Discriminator.cost_grad`).
"""

from __future__ import annotations

import abc

import numpy as np

from ntkgan._validation import check_array
from ntkgan.discriminator._losses import Loss

__all__ = ["Discriminator"]


class Discriminator(abc.ABC):
    r"""A trained discriminator :math:`f` and its generator cost :math:`c(f(x))`.

    Subclasses implement :meth:`__call__` and :meth:`grad` and set the attributes below (calling
    ``super().__init__(loss=..., dim=...)`` does it).  :meth:`cost` and :meth:`cost_grad` follow by the
    chain rule.

    Attributes
    ----------
    loss : Loss
        The loss the discriminator was trained with (gives :math:`c` and :math:`c'`).
    dim : int or None
        Input dimension ``d`` (None: not checked here).
    """

    loss: Loss
    dim: int | None = None

    def __init__(self, *, loss: Loss, dim: int | None = None):
        if not isinstance(loss, Loss):
            raise ValueError(f"loss must be an ntkgan.discriminator.Loss, got {type(loss).__name__}")
        self.loss = loss
        self.dim = None if dim is None else int(dim)

    # -- to implement --------------------------------------------------------------------------------

    @abc.abstractmethod
    def __call__(self, x) -> np.ndarray:
        """Values ``f(x_i)``; ``x`` of shape (n, d), returns shape (n,)."""

    @abc.abstractmethod
    def grad(self, x) -> np.ndarray:
        r"""Input gradients :math:`\nabla f(x_i)`; ``x`` of shape (n, d), returns shape (n, d)."""

    # -- concrete ------------------------------------------------------------------------------------

    def value_and_grad(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), grad f(x))``; subclasses may override to share work between the two."""
        return self(x), self.grad(x)

    def cost(self, x) -> np.ndarray:
        r"""Generator cost :math:`c(f(x_i))`, shape (n,)."""
        return np.asarray(self.loss.cost(self(x)), dtype=np.float64)

    def cost_grad(self, x) -> np.ndarray:
        r"""Gradient of the generator cost, :math:`\nabla_x c(f(x)) = c'(f(x))\,\nabla f(x)`, shape (n, d).

        The particles move along :math:`-\nabla_x c(f(x))`.
        """
        f, g = self.value_and_grad(x)
        return np.asarray(self.loss.cost_deriv(f), dtype=np.float64)[:, None] * g

    def _check_x(self, x, name: str = "x") -> np.ndarray:
        """Validate query points: C-contiguous finite float64 (n, d) with ``d == self.dim``."""
        x = check_array(x, name)
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"{name} has {x.shape[1]} features but the discriminator takes {self.dim}")
        return x
