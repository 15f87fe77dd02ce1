"""The gradient penalty's double backprop through the numpy networks (workers: inputs trusted).

:math:`P = \\sum_i w_i \\|\\nabla_x f(x_i)\\|^2` and its parameter gradient need :math:`\\phi''` (the activation's
``numpy_deriv2``): the input gradient is a backward pass, and its adjoint runs forward again, with sources
at every layer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ntkgan.arch import Mlp
from ntkgan.finite._checks import _INV_SQRT2, AntisymmetricParams, Params
from ntkgan.finite._passes import _deltas, _forward, _scales


def _second_deriv_fn(activation) -> Callable | None:
    """``phi''`` as a numpy function (the activation's ``numpy_deriv2``), None when it is identically 0
    (``activation.piecewise_linear``: the ReLU family); ValueError, naming it, for an activation without one."""
    if getattr(activation, "piecewise_linear", False):
        return None
    deriv2 = getattr(activation, "numpy_deriv2", None)
    if not callable(deriv2):
        raise ValueError(
            f"activation {activation!r} has no second derivative, which the gradient penalty needs "
            "(give the activation a numpy_deriv2(x) method, or use grad_penalty=0)"
        )
    deriv2(np.zeros(1))  # an Activation without its own raises here, before any work
    return deriv2


def _input_backward(arch: Mlp, params: list, zs: list, sign: float, n: int):
    r"""Backward pass of :math:`\nabla_x (s f)` with :math:`\delta_L = s`.

    Returns ``deltas[l]`` (n, n_{l+1}) for l = 0..L, ``dhs[l] = c_l delta_l W_l^T`` (n, n_l) for
    l = 1..L (``dhs[0]`` is None) and the input gradient ``g = c_0 delta_0 W_0^T`` (n, d).
    """
    dhs = [None] * len(params)
    deltas, g = _deltas(arch, params, zs, np.full((n, params[-1][0].shape[1]), sign), dhs)
    return deltas, dhs, g


def _input_backward_adjoint(arch: Mlp, params: list, zs: list, dhs: list, gbar: np.ndarray):
    r"""Reverse of :func:`_input_backward` for the adjoint ``gbar = dP/dg`` (n, d).

    With :math:`u_0 = \bar g` and, for l = 0..L-1, :math:`\bar\delta_l = c_l u_l W_l`,
    :math:`u_{l+1} = \bar\delta_l \odot \phi'(z_l)`, :math:`s_l = \bar\delta_l \odot dh_{l+1} \odot
    \phi''(z_l)`, returns ``us`` (u_l, (n, n_l), l = 0..L) and ``sources`` (s_l, (n, n_{l+1}), l < L): the
    penalty's adjoint of the weights through the backward pass is :math:`c_l u_l^\top \delta_l`, and
    :math:`s_l` is its adjoint of the pre-activation :math:`z_l` (None when :math:`\phi'' \equiv 0`).
    """
    dphi = arch.activation.numpy_deriv
    d2phi = _second_deriv_fn(arch.activation)
    scales = _scales(arch, params)
    n_layers = len(params)
    us = [gbar]
    sources = []
    u = gbar
    for layer in range(n_layers - 1):
        c = scales[layer][0]
        dbar = u @ params[layer][0]
        if c != 1.0:
            dbar *= c
        z = zs[layer]
        sources.append(None if d2phi is None else dbar * dhs[layer + 1] * d2phi(z))
        u = dbar * dphi(z)
        us.append(u)
    return us, sources


def _second_order_factors(arch: Mlp, halves: list, signs, caches: list, gbar_fn: Callable,
                          ct: np.ndarray | None):
    r"""Low-rank factors of :math:`\nabla_\theta [\langle ct, f\rangle + \langle \bar g, \nabla_x f\rangle]`.

    ``f = sum_h s_h f_h`` over the plain halves ``halves`` with their forward ``caches``
    ``(out, hs, zs)``; ``gbar = gbar_fn(g)`` is the adjoint of the input gradient ``g`` (n, d) (held
    fixed in the derivative); ``ct`` (n,) is a loss cotangent (None: none).  Returns ``g`` and, per half,
    ``(hs, D, us, deltas)`` with

    .. math::
        \nabla_{W_l} = c_l (h_l^\top D_l + u_l^\top \delta_l), \qquad
        \nabla_{b_l} = \beta_l \textstyle\sum_i D_{l,i}.
    """
    n = caches[0][1][0].shape[0]
    backs = [_input_backward(arch, p, zs, s, n) for p, s, (_, _, zs) in zip(halves, signs, caches)]
    g = backs[0][2]
    for b in backs[1:]:
        g = g + b[2]
    gbar = gbar_fn(g)
    out = []
    for p, s, (_, hs, zs), (deltas, dhs, _) in zip(halves, signs, caches, backs):
        us, sources = _input_backward_adjoint(arch, p, zs, dhs, gbar)
        top = np.zeros((n, p[-1][0].shape[1])) if ct is None else (s * ct)[:, None]
        D = _deltas(arch, p, zs, top, sources=sources)[0]
        out.append((hs, D, us, deltas))
    return g, out


def _penalised_factors(arch: Mlp, halves: list, signs, caches: list, weights: np.ndarray,
                       ct: np.ndarray | None):
    r"""Factors of :math:`\nabla_\theta[\langle ct, f\rangle + \sum_i w_i\|\nabla_x f(x_i)\|^2]`; the penalty.

    The penalty's input-gradient adjoint is :math:`\bar g = 2 w \odot g`; see
    :func:`_second_order_factors`.
    """
    g, factors = _second_order_factors(arch, halves, signs, caches,
                                       lambda g: (2.0 * weights)[:, None] * g, ct)
    return float(weights @ np.einsum("ij,ij->i", g, g)), factors


def _plain_halves(params: Params) -> tuple[list, tuple[float, ...]]:
    """The plain networks ``f_h`` and signs ``s_h`` with ``f = sum_h s_h f_h``."""
    if isinstance(params, AntisymmetricParams):
        return [params.theta1, params.theta2], (_INV_SQRT2, -_INV_SQRT2)
    return [params], (1.0,)


def _assemble(arch: Mlp, params: Params, halves: list, factors: list) -> Params:
    """Parameter gradients from the factors of :func:`_second_order_factors`."""
    grads = []
    for p, (hs, D, us, deltas) in zip(halves, factors):
        layers = []
        for h, dl, u, de, (c, beta) in zip(hs, D, us, deltas, _scales(arch, p)):
            gW = h.T @ dl + u.T @ de
            if c != 1.0:
                gW *= c
            layers.append((gW, beta * dl.sum(axis=0)))
        grads.append(layers)
    if isinstance(params, AntisymmetricParams):
        return AntisymmetricParams(*grads)
    return grads[0]


def _grad_penalty(arch: Mlp, params: Params, x: np.ndarray, weights: np.ndarray):
    halves, signs = _plain_halves(params)
    caches = [_forward(arch, p, x) for p in halves]
    value, factors = _penalised_factors(arch, halves, signs, caches, weights, None)
    return value, _assemble(arch, params, halves, factors)


def _input_grad_vjp(arch: Mlp, params: Params, x: np.ndarray, gbar: np.ndarray):
    halves, signs = _plain_halves(params)
    caches = [_forward(arch, p, x) for p in halves]
    g, factors = _second_order_factors(arch, halves, signs, caches, lambda _: gbar, None)
    return g, _assemble(arch, params, halves, factors)
