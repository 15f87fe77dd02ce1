r"""Finite-width networks inside a compiled step: forward pass, input gradient, and gradient-descent training.

The network of :mod:`ntkgan.finite` (and of the Rust engine), written in ``jax.numpy``:

.. math::
    h_0 = x, \qquad z_l = c_l\, h_l W_l + \beta_l\, b_l, \qquad h_{l+1} = \phi(z_l), \qquad f(x) = z_L,

with the layer scales :math:`(c_l, \beta_l)` of :func:`ntkgan.finite._passes._scales` (``"ntk"``:
:math:`c_l = \sigma_w/\sqrt{n_l}`, :math:`\beta_l = \sigma_b`, none on the readout; ``"standard"``: 1, 1).
A discriminator is one plain network (``f0="random"``) or the antisymmetric pair
:math:`f = (f_{\theta_1} - f_{\theta_2})/\sqrt 2` (``f0="zero"``); both halves are kept as a tuple of
``[(W, b), ...]`` lists, in the network's dtype (float64, or float32 as the Rust engine's
``d_dtype="float32"``).

Training (:func:`train`) is ``n_steps`` full-batch steps :math:`\theta \leftarrow \theta - \eta \nabla_\theta
L_\lambda(\theta)` in a :func:`jax.lax.fori_loop`, with

.. math::
    \nabla_\theta L = \sum_{z \in Z} \frac{\partial L}{\partial f(z)} \nabla_\theta f(z), \qquad
    \frac{\partial L}{\partial f(x_i)} = \frac{\ell'_{\mathrm{fake}}(f(x_i))}{N}, \quad
    \frac{\partial L}{\partial f(y_j)} = \frac{\ell'_{\mathrm{real}}(f(y_j))}{M},

one vector-Jacobian product with the loss cotangent formed by the loss's own derivative (as the Rust
engine forms it), plus, for the gradient penalty :math:`\lambda > 0`, the exact gradient of
:math:`\lambda \frac{1}{N+M}\sum_z \|\nabla_x f(z)\|^2` by JAX's double backprop.  The ReLU family's
derivative at 0 is :math:`a` (``where(z > 0, b, a)``, as :meth:`ntkgan.arch.ABRelu.numpy_deriv`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, ndtr

from ntkgan.arch import ABRelu, Erf, Gelu, Mlp, Rbf, Sin

__all__ = ["apply", "halves_of", "input_grad", "scales", "supports", "train"]

_HIGHEST = jax.lax.Precision.HIGHEST
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def supports(arch: Mlp) -> bool:
    """Whether :func:`phi` implements the activation of ``arch``."""
    return isinstance(arch.activation, (ABRelu, Erf, Rbf, Gelu, Sin))


def phi(act, z):
    """The activation :math:`\\phi(z)` (as :meth:`~ntkgan.arch.Activation.numpy_fn`), traced."""
    if isinstance(act, ABRelu):
        return jnp.where(z > 0, act.b * z, act.a * z)
    if isinstance(act, Erf):
        return act.a * erf(act.b * z) + act.c
    if isinstance(act, Rbf):
        return math.sqrt(2.0) * jnp.sin(math.sqrt(2.0 * act.gamma) * z + math.pi / 4)
    if isinstance(act, Gelu):
        return z * ndtr(z)
    if isinstance(act, Sin):
        return act.a * jnp.sin(act.b * z + act.c)
    raise ValueError(f"activation {act!r} has no JAX implementation for finite networks")


def scales(arch: Mlp, dims: list[int]) -> list[tuple[float, float]]:
    """``(c_l, beta_l)`` of each dense layer for the layer widths ``dims`` (``[d, width, ..., out]``)."""
    last = len(dims) - 2
    if arch.parameterization == "standard":
        return [(1.0, 1.0)] * (last + 1)
    return [(arch.w_std / math.sqrt(n_in), 0.0 if i == last else arch.b_std) for i, n_in in enumerate(dims[:-1])]


def _plain(arch: Mlp, lscales, params, x):
    h = x
    for i, ((w, b), (c, beta)) in enumerate(zip(params, lscales)):
        z = jnp.matmul(h, w, precision=_HIGHEST)
        if c != 1.0:
            z = z * c
        if beta != 0.0:
            z = z + beta * b
        if i == len(params) - 1:
            return z
        h = phi(arch.activation, z)
    raise AssertionError("unreachable")  # pragma: no cover


def apply(arch: Mlp, lscales, halves, x):
    r""":math:`f(x)` of the network ``halves`` (one plain network, or the antisymmetric pair), shape (n, out)."""
    if len(halves) == 1:
        return _plain(arch, lscales, halves[0], x)
    return _INV_SQRT2 * _plain(arch, lscales, halves[0], x) + (-_INV_SQRT2) * _plain(arch, lscales, halves[1], x)


def input_grad(arch: Mlp, lscales, halves, x):
    r"""``(f(x), \nabla_x f(x))`` of a scalar network: shapes (n,) and (n, d)."""
    f, pull = jax.vjp(lambda xx: apply(arch, lscales, halves, xx)[:, 0], x)
    return f, pull(jnp.ones_like(f))[0]


def train(arch: Mlp, lscales, halves, z, n_fake: int, deriv_fake, deriv_real, *, lr: float, n_steps: int,
          grad_penalty: float):
    r"""``(halves, finite)``: ``n_steps`` gradient steps on ``z = [fake; real]`` (traced).

    ``deriv_fake`` / ``deriv_real`` are :math:`\ell'_{\mathrm{fake}}`, :math:`\ell'_{\mathrm{real}}` (traced
    callables).  ``finite`` is False when a loss derivative was not finite at some step (the Rust engine
    raises there; the parameters are then those of the last finite step).
    """
    n = z.shape[0]
    dtype = z.dtype
    weights = jnp.asarray(np.concatenate([np.full(n_fake, 1.0 / n_fake), np.full(n - n_fake, 1.0 / (n - n_fake))]),
                          dtype)

    def net(p, x):
        return apply(arch, lscales, p, x)[:, 0]

    def penalty(p):
        g = jax.vjp(lambda x: net(p, x), z)[1](jnp.ones(n, dtype))[0]
        return (grad_penalty / n) * jnp.sum(g * g)

    def body(_, carry):
        p, ok = carry
        f, pull = jax.vjp(lambda q: net(q, z), p)
        ct = jnp.concatenate([deriv_fake(f[:n_fake]), deriv_real(f[n_fake:])]) * weights
        finite = jnp.all(jnp.isfinite(ct))
        grads = pull(ct)[0]
        if grad_penalty > 0.0:
            grads = jax.tree_util.tree_map(jnp.add, grads, jax.grad(penalty)(p))
        stepped = jax.tree_util.tree_map(lambda a, g: a - lr * g, p, grads)
        keep = ok & finite
        return jax.tree_util.tree_map(lambda new, old: jnp.where(keep, new, old), stepped, p), keep

    return jax.lax.fori_loop(0, n_steps, body, (halves, jnp.bool_(True)))


def halves_of(params) -> tuple[list, ...]:
    """The plain halves of host parameters (a list of ``(W, b)`` or ``AntisymmetricParams``)."""
    from ntkgan.finite import AntisymmetricParams

    if isinstance(params, AntisymmetricParams):
        return (list(params.theta1), list(params.theta2))
    return (list(params),)
