r"""The built-in GAN losses (:data:`ntkgan.discriminator.LOSSES`) as traced pointwise functions.

Each entry gives :math:`\ell'_{\mathrm{fake}}`, :math:`\ell'_{\mathrm{real}}`, the generator cost :math:`c`
and :math:`c'`, with the formulas of :mod:`ntkgan.discriminator._losses` (where the table and sign
conventions are): ipm :math:`c(f) = -f`; lsgan :math:`\ell'_{\mathrm{fake}} = 2(f + 1)`,
:math:`\ell'_{\mathrm{real}} = 2(f - 1)`, :math:`c = f^2`; vanilla :math:`\ell'_{\mathrm{fake}} = \sigma(f)`,
:math:`\ell'_{\mathrm{real}} = -\sigma(-f)`, :math:`c = \log(1 + e^{-f})`; hinge
:math:`\mathbb 1[1 + f > 0]`, :math:`-\mathbb 1[1 - f > 0]`, :math:`c = -f`.  A custom
:class:`~ntkgan.discriminator.Loss` (numpy callables) has no traced form: such runs take the host loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
from jax.nn import sigmoid, softplus

from ntkgan.discriminator._losses import LOSSES, Loss

__all__ = ["JaxLoss", "jax_loss"]


@dataclass(frozen=True)
class JaxLoss:
    """Traced pointwise pieces of a loss: ``fake_deriv``, ``real_deriv``, ``cost``, ``cost_deriv``."""

    name: str
    fake_deriv: Callable
    real_deriv: Callable
    cost: Callable
    cost_deriv: Callable


_JAX_LOSSES = {
    "ipm": JaxLoss("ipm", jnp.ones_like, lambda f: -jnp.ones_like(f), lambda f: -f, lambda f: -jnp.ones_like(f)),
    "lsgan": JaxLoss("lsgan", lambda f: 2.0 * (f + 1.0), lambda f: 2.0 * (f - 1.0), jnp.square, lambda f: 2.0 * f),
    "vanilla": JaxLoss("vanilla", sigmoid, lambda f: -sigmoid(-f), lambda f: softplus(-f),
                       lambda f: -sigmoid(-f)),
    "hinge": JaxLoss("hinge", lambda f: (1.0 + f > 0).astype(f.dtype), lambda f: -((1.0 - f > 0).astype(f.dtype)),
                     lambda f: -f, lambda f: -jnp.ones_like(f)),
}


def jax_loss(loss: Loss) -> JaxLoss | None:
    """The traced form of a built-in loss, or None for a custom one."""
    if LOSSES.get(loss.name) is not loss:
        return None
    return _JAX_LOSSES[loss.name]
