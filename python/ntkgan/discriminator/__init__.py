r"""Discriminators trained on fake vs real samples, at infinite width (kernel flows) and finite width.

- :func:`train_discriminator` — the one door: ``width=None`` gives the kernel gradient flow / descent of
  the loss with the network's NTK (closed forms, eigenbasis, Krylov, ODE), an integer width a real network
  trained by gradient descent.
- :class:`Discriminator` — what every trained discriminator exposes: ``f(x)``, ``grad``, the generator cost
  ``cost`` :math:`= c(f(x))` and ``cost_grad``.
- :data:`LOSSES` — ``"ipm"``, ``"lsgan"``, ``"vanilla"``, ``"hinge"`` as :class:`Loss` objects (pointwise
  terms, their derivatives, the generator cost); :meth:`Loss.from_derivatives` builds a custom one.

Conventions: fake :math:`\hat\alpha = x_1..x_N`, real :math:`\hat\beta = y_1..y_M`; the discriminator
minimises :math:`L(f)`, the generator :math:`\mathbb E_\alpha[c(f(x))]`.
"""

from __future__ import annotations

from ntkgan.discriminator._api import train_discriminator
from ntkgan.discriminator._base import Discriminator
from ntkgan.discriminator._infinite import KernelDiscriminator
from ntkgan.discriminator._losses import LOSSES, Loss, get_loss

__all__ = ["LOSSES", "Discriminator", "KernelDiscriminator", "Loss", "get_loss", "train_discriminator"]
