r"""Finite-width networks of an :class:`~ntkgan.arch.Mlp` in numpy: init, forward, backprop, empirical NTK.

The network is the one of :mod:`ntkgan.arch` (and of ``Mlp.to_stax(out_dim)``), with ``L = arch.depth``:

.. math::
    h_0 = x, \qquad z_l = c_l\, h_l W_l + \beta_l\, b_l \quad (l = 0..L), \qquad
    h_{l+1} = \phi(z_l) \quad (l < L), \qquad f(x) = z_L,

``W_0`` of shape (d, width), ``W_1 .. W_{L-1}`` of shape (width, width), the readout ``W_L`` of shape
(width, out_dim), and the layer scales

- ``"ntk"``: :math:`c_l = \sigma_w / \sqrt{n_l}` (``n_l`` the fan-in), :math:`\beta_l = \sigma_b`, with
  ``W, b ~ N(0, 1)``;
- ``"standard"``: :math:`c_l = \beta_l = 1`, with ``W ~ N(0, sigma_w^2 / n_l)`` and ``b ~ N(0, sigma_b^2)``.

The readout has no bias at init: its ``b`` is zeros and, in the ``"ntk"`` parameterization, is multiplied
by :math:`\beta_L = 0` (``Dense(out_dim, w_std, 0.0)``), so it never acts.  In the ``"standard"``
parameterization it is a trainable parameter that starts at 0, exactly as in neural-tangents; its gradient
is the ``+ 1`` of the standard-parameterization NTK recursion.  Likewise hidden biases with ``b_std = 0``
are inert (``"ntk"``) or trainable from 0 (``"standard"``).

Parameters are a list of ``(W, b)`` pairs, one per dense layer, float64, ``b`` 1-D.  They map one-to-one
onto the parameters of ``arch.to_stax(out_dim)``: layer ``l`` is stax's ``(W_l, b_l.reshape(1, -1))``,
the activation layers in between have ``()``.

Antisymmetric networks.  ``init_params(..., antisymmetric=True)`` returns :class:`AntisymmetricParams`
``(theta1, theta2)`` with ``theta2`` an exact copy of ``theta1``; every function here then evaluates

.. math::
    f(x) = \frac{f_{\theta_1}(x) - f_{\theta_2}(x)}{\sqrt 2},

which is exactly 0 at init (the toolkit's ``--discr_antisymmetric``).  Its NTK is
:math:`\tfrac12(\Theta_{\theta_1} + \Theta_{\theta_2})`, equal to the NTK of the plain network at init,
so the infinite-width limit is the same kernel with :math:`f_0 = 0`.

Gradient penalty.  :func:`grad_penalty` gives :math:`P(\theta) = \sum_i w_i \|\nabla_x f(x_i)\|^2` and its
exact parameter gradient by double backprop (reverse mode through the input-gradient backward pass), which
needs the activation's second derivative (:func:`activation_second_deriv`).

All functions are vectorised over the batch (one matmul per layer), validate at the door (``ValueError``
naming the argument) and then call private workers.

References
----------
.. [1] Jacot, Gabriel, Hongler. Neural Tangent Kernel. NeurIPS 2018.
.. [2] Lee et al. Wide neural networks of any depth evolve as linear models. NeurIPS 2019.
.. [3] Sohl-Dickstein et al. On the infinite width limit of neural networks with a standard
       parameterization. arXiv:2001.07301.
.. [4] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple, Union

import numpy as np

from ntkgan._validation import check_array
from ntkgan.arch import ABRelu, Activation, Erf, Gelu, Mlp, Rbf, Sin

__all__ = [
    "AntisymmetricParams",
    "activation_second_deriv",
    "apply",
    "empirical_nngp",
    "empirical_ntk",
    "grad_penalty",
    "init_params",
    "input_grad",
    "input_grad_vjp",
    "num_params",
    "param_grad",
    "sgd_update",
    "tree_map",
    "vjp",
]

class AntisymmetricParams(NamedTuple):
    """Parameters of ``f = (f_theta1 - f_theta2) / sqrt(2)``; ``theta2 == theta1`` at init, so ``f_0 = 0``.

    Gradients returned by :func:`param_grad` for such a network have the same structure.
    """

    theta1: list
    theta2: list


Params = Union[list, AntisymmetricParams]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def _check_arch(arch) -> Mlp:
    if not isinstance(arch, Mlp):
        raise ValueError(f"arch must be an ntkgan.Mlp, got {type(arch).__name__}")
    act = type(arch.activation)
    if act.numpy_fn is Activation.numpy_fn or act.numpy_deriv is Activation.numpy_deriv:
        raise ValueError(
            f"activation {arch.activation!r} has no numpy implementation, so finite networks cannot use it"
        )
    return arch


def _check_plain(arch: Mlp, params, name: str) -> tuple[list, int, int]:
    """Validate a list of depth + 1 ``(W, b)`` pairs against ``arch``; return (params, d_in, out_dim)."""
    n_layers = arch.depth + 1
    if not isinstance(params, (list, tuple)) or len(params) != n_layers:
        got = f"length {len(params)}" if isinstance(params, (list, tuple)) else type(params).__name__
        raise ValueError(f"{name} must be a list of depth + 1 = {n_layers} (W, b) pairs, got {got}")
    out = []
    n_in = None
    for i, layer in enumerate(params):
        if not isinstance(layer, (list, tuple)) or len(layer) != 2:
            raise ValueError(f"{name}[{i}] must be a (W, b) pair, got {type(layer).__name__}")
        W, b = (np.asarray(a, dtype=np.float64) for a in layer)
        if W.ndim != 2 or b.ndim != 1:
            raise ValueError(
                f"{name}[{i}] must hold W of ndim 2 and b of ndim 1, got shapes {W.shape} and {b.shape}"
            )
        if n_in is not None and W.shape[0] != n_in:
            raise ValueError(f"{name}[{i}][0] has {W.shape[0]} rows but the previous layer outputs {n_in}")
        if i < n_layers - 1 and W.shape[1] != arch.width:
            raise ValueError(f"{name}[{i}][0] has {W.shape[1]} columns but arch.width is {arch.width}")
        if b.shape[0] != W.shape[1]:
            raise ValueError(f"{name}[{i}][1] has length {b.shape[0]} but W has {W.shape[1]} columns")
        n_in = W.shape[1]
        out.append((W, b))
    return out, out[0][0].shape[0], out[-1][0].shape[1]


def _check_params(arch: Mlp, params) -> tuple[Params, int, int]:
    if isinstance(params, AntisymmetricParams):
        p1, d1, o1 = _check_plain(arch, params.theta1, "params.theta1")
        p2, d2, o2 = _check_plain(arch, params.theta2, "params.theta2")
        if (d1, o1) != (d2, o2) or any(a[0].shape != b[0].shape for a, b in zip(p1, p2)):
            raise ValueError("params.theta1 and params.theta2 must have the same shapes")
        return AntisymmetricParams(p1, p2), d1, o1
    return _check_plain(arch, params, "params")


def _check_x(x, d_in: int, name: str = "x") -> np.ndarray:
    x = check_array(x, name)
    if x.shape[1] != d_in:
        raise ValueError(f"{name} has {x.shape[1]} features but the network takes {d_in}")
    return x


def _check_cotangent(cotangent, n: int, out_dim: int) -> np.ndarray:
    ct = cotangent
    if out_dim == 1 and ct is not None and np.ndim(ct) == 1:
        ct = np.reshape(ct, (-1, 1))
    ct = check_array(ct, "cotangent")
    if ct.shape != (n, out_dim):
        raise ValueError(f"cotangent must have shape (n, out_dim) = {(n, out_dim)}, got {ct.shape}")
    return ct


def _check_rng(seed, rng) -> np.random.Generator:
    if rng is not None:
        if seed is not None:
            raise ValueError(f"give seed or rng, not both (got seed={seed!r} and an rng)")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return np.random.default_rng(seed)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# workers (trust their input)
# --------------------------------------------------------------------------------------------------


def _scales(arch: Mlp, params: list) -> list[tuple[float, float]]:
    """``(c_l, beta_l)`` of each dense layer: z = c * h @ W + beta * b."""
    last = len(params) - 1
    if arch.parameterization == "standard":
        return [(1.0, 1.0)] * len(params)
    return [
        (arch.w_std / math.sqrt(W.shape[0]), 0.0 if i == last else arch.b_std)
        for i, (W, _) in enumerate(params)
    ]


def _forward(arch: Mlp, params: list, x: np.ndarray) -> tuple[np.ndarray, list, list]:
    """Output and the per-layer inputs ``hs`` (h_0 = x, ...) and pre-activations ``zs`` of hidden layers."""
    phi = arch.activation.numpy_fn
    hs, zs = [x], []
    h = x
    for (W, b), (c, beta) in zip(params, _scales(arch, params)):
        z = h @ W
        if c != 1.0:
            z *= c
        if beta != 0.0:
            z += beta * b
        if len(hs) == len(params):
            return z, hs, zs
        zs.append(z)
        h = phi(z)
        hs.append(h)
    raise AssertionError("unreachable")  # pragma: no cover


def _deltas(arch: Mlp, params: list, zs: list, ct: np.ndarray,
            dhs: list | None = None) -> tuple[list, np.ndarray]:
    """Backprop: ``deltas[l] = d<ct, f>/dz_l`` (rows per sample) and the input gradient.

    With a list ``dhs`` (of length ``len(params)``), also stores ``dhs[l] = c_l delta_l W_l^T`` for
    ``l >= 1``, the gradients with respect to the hidden activations.
    """
    dphi = arch.activation.numpy_deriv
    scales = _scales(arch, params)
    deltas = [None] * len(params)
    delta = ct
    for layer in range(len(params) - 1, -1, -1):
        deltas[layer] = delta
        c = scales[layer][0]
        dh = delta @ params[layer][0].T
        if c != 1.0:
            dh *= c
        if layer > 0:
            if dhs is not None:
                dhs[layer] = dh
            delta = dh * dphi(zs[layer - 1])
    return deltas, dh


def _param_grads(arch: Mlp, params: list, hs: list, deltas: list) -> list:
    grads = []
    for h, delta, (c, beta) in zip(hs, deltas, _scales(arch, params)):
        gW = h.T @ delta
        if c != 1.0:
            gW *= c
        grads.append((gW, beta * delta.sum(axis=0)))
    return grads


def _vjp_plain(arch: Mlp, params: list, x: np.ndarray):
    out, hs, zs = _forward(arch, params, x)

    def pullback(ct: np.ndarray):
        deltas, gx = _deltas(arch, params, zs, ct)
        return _param_grads(arch, params, hs, deltas), gx

    return out, pullback


def _vjp(arch: Mlp, params: Params, x: np.ndarray):
    if not isinstance(params, AntisymmetricParams):
        return _vjp_plain(arch, params, x)
    out1, pb1 = _vjp_plain(arch, params.theta1, x)
    out2, pb2 = _vjp_plain(arch, params.theta2, x)

    def pullback(ct: np.ndarray):
        g1, gx1 = pb1(ct * _INV_SQRT2)
        g2, gx2 = pb2(ct * -_INV_SQRT2)
        return AntisymmetricParams(g1, g2), gx1 + gx2

    return (out1 - out2) * _INV_SQRT2, pullback


def _ntk_features(arch: Mlp, params: list, x: np.ndarray, output: int):
    """Per-layer ``(c^2, beta^2, h_l, delta_l)`` with delta_l = d f_output / d z_l per sample."""
    _, hs, zs = _forward(arch, params, x)
    ct = np.zeros((x.shape[0], params[-1][0].shape[1]))
    ct[:, output] = 1.0
    deltas, _ = _deltas(arch, params, zs, ct)
    return [(c * c, beta * beta, h, dl) for h, dl, (c, beta) in zip(hs, deltas, _scales(arch, params))]


def _empirical_ntk_plain(arch: Mlp, params: list, x: np.ndarray, y: np.ndarray | None, output: int):
    fx = _ntk_features(arch, params, x, output)
    fy = fx if y is None else _ntk_features(arch, params, y, output)
    K = np.zeros((x.shape[0], (x if y is None else y).shape[0]))
    for (c2, b2, hx, dx), (_, _, hy, dy) in zip(fx, fy):
        dd = dx @ dy.T
        K += (c2 * (hx @ hy.T) + b2) * dd
    if y is None:
        K = 0.5 * (K + K.T)
    return K


def _last_hidden(arch: Mlp, params: list, x: np.ndarray) -> np.ndarray:
    _, hs, _ = _forward(arch, params, x)
    return hs[-1]


# -- gradient penalty: double backprop ---------------------------------------------------------------


def _second_deriv_fn(activation) -> Callable | None:
    """``phi''`` as a numpy function (see :func:`activation_second_deriv`), None when it is identically 0
    (the ReLU family); ValueError if unknown."""
    own = getattr(activation, "numpy_deriv2", None)
    if callable(own):
        return own
    if isinstance(activation, ABRelu):
        return None
    if isinstance(activation, Erf):
        a, b = activation.a, activation.b
        k = a * b * 2.0 / math.sqrt(math.pi)
        return lambda z: (-2.0 * b * b * k) * z * np.exp(-((b * z) ** 2))
    if isinstance(activation, Rbf):
        k = math.sqrt(2.0 * activation.gamma)
        return lambda z: (-math.sqrt(2.0) * k * k) * np.sin(k * z + math.pi / 4)
    if isinstance(activation, Gelu):
        return lambda z: (2.0 - z * z) * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    if isinstance(activation, Sin):
        a, b, c = activation.a, activation.b, activation.c
        return lambda z: (-a * b * b) * np.sin(b * z + c)
    raise ValueError(
        f"activation {activation!r} has no second derivative, which the gradient penalty needs "
        "(give the activation a numpy_deriv2(x) method, or use grad_penalty=0)"
    )


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


def _deltas_with_sources(arch: Mlp, params: list, zs: list, ct: np.ndarray, sources: list) -> list:
    r"""Backprop :math:`D_L = ct`, :math:`D_{l-1} = c_l (D_l W_l^\top) \odot \phi'(z_{l-1}) + s_{l-1}`."""
    dphi = arch.activation.numpy_deriv
    scales = _scales(arch, params)
    out = [None] * len(params)
    delta = ct
    for layer in range(len(params) - 1, -1, -1):
        out[layer] = delta
        if layer > 0:
            c = scales[layer][0]
            dh = delta @ params[layer][0].T
            if c != 1.0:
                dh *= c
            delta = dh * dphi(zs[layer - 1])
            if sources[layer - 1] is not None:
                delta = delta + sources[layer - 1]
    return out


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
        D = _deltas_with_sources(arch, p, zs, top, sources)
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


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def init_params(
    arch: Mlp,
    d_in: int,
    *,
    out_dim: int = 1,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    antisymmetric: bool = False,
) -> Params:
    r"""Random parameters ``[(W_0, b_0), ..., (W_L, b_L)]`` of ``arch`` at width ``arch.width``.

    ``"ntk"``: ``W, b ~ N(0, 1)``.  ``"standard"``: ``W ~ N(0, w_std^2 / fan_in)``, ``b ~ N(0, b_std^2)``.
    The readout bias ``b_L`` is zeros in both.

    Parameters
    ----------
    arch : Mlp
    d_in : int
        Input dimension ``d``.
    out_dim : int, default=1
        Number of outputs (1 for a discriminator; the data dimension for a generator).
    seed : int, optional
        Seed of ``numpy.random.default_rng``; the result is a deterministic function of it.
    rng : numpy.random.Generator, optional
        Generator to draw from instead of ``seed`` (advanced in place).
    antisymmetric : bool, default=False
        If True, return :class:`AntisymmetricParams` ``(theta, copy of theta)``, for which ``f_0 = 0``.

    Returns
    -------
    params : list of (W, b) or AntisymmetricParams
        ``W_0`` (d_in, width), ``W_l`` (width, width), ``W_L`` (width, out_dim); ``b_l`` (n_out,).

    Raises
    ------
    ValueError
        Bad ``arch``, ``d_in``, ``out_dim``, ``seed`` or ``rng``, or both ``seed`` and ``rng`` given.

    Notes
    -----
    Draw order: for each layer ``W`` then ``b`` (the readout draws no ``b``), each with
    ``rng.standard_normal`` of the layer's shape; so two architectures with the same shapes and
    parameterization ``"ntk"`` get the same draws from the same seed.

    Examples
    --------
    >>> from ntkgan import Mlp
    >>> p = init_params(Mlp(depth=2, width=8), 3, seed=0)
    >>> [W.shape for W, b in p]
    [(3, 8), (8, 8), (8, 1)]
    """
    arch = _check_arch(arch)
    d_in = _check_count(d_in, "d_in")
    out_dim = _check_count(out_dim, "out_dim")
    gen = _check_rng(seed, rng)
    dims = [d_in] + [arch.width] * arch.depth + [out_dim]
    standard = arch.parameterization == "standard"
    params = []
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        W = gen.standard_normal((n_in, n_out))
        readout = i == len(dims) - 2
        b = np.zeros(n_out) if readout else gen.standard_normal(n_out)
        if standard:
            W *= arch.w_std / math.sqrt(n_in)
            b *= arch.b_std
        params.append((W, b))
    if antisymmetric:
        return AntisymmetricParams(params, [(W.copy(), b.copy()) for W, b in params])
    return params


def apply(arch: Mlp, params: Params, x) -> np.ndarray:
    r"""Network output ``f(x)``, shape (n, out_dim).

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
        As returned by :func:`init_params` (or updated by training).
    x : array-like of shape (n, d)

    Returns
    -------
    f : ndarray of shape (n, out_dim)

    Raises
    ------
    ValueError
        Parameter shapes that do not fit ``arch``, ``x`` not 2-D, non-finite or with the wrong ``d``.

    Notes
    -----
    :math:`z_l = c_l h_l W_l + \beta_l b_l`, :math:`h_{l+1} = \phi(z_l)`, :math:`f = z_L`
    (module docstring); for antisymmetric params :math:`(f_{\theta_1} - f_{\theta_2})/\sqrt2`.
    """
    arch = _check_arch(arch)
    params, d_in, _ = _check_params(arch, params)
    x = _check_x(x, d_in)
    if isinstance(params, AntisymmetricParams):
        return (_forward(arch, params.theta1, x)[0] - _forward(arch, params.theta2, x)[0]) * _INV_SQRT2
    return _forward(arch, params, x)[0]


def vjp(arch: Mlp, params: Params, x) -> tuple[np.ndarray, Callable]:
    r"""Output ``f(x)`` and its pullback ``ct -> (d<ct, f(x)>/dparams, d<ct, f(x)>/dx)``.

    One forward pass serves any number of pullbacks: the usual training step computes ``f(x)``, the
    loss derivative ``ct = dL/df`` from it, then the gradients.

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
    x : array-like of shape (n, d)

    Returns
    -------
    f : ndarray of shape (n, out_dim)
    pullback : callable
        ``pullback(cotangent)`` with ``cotangent`` of shape (n, out_dim) (or (n,) when out_dim is 1)
        returns ``(param_grads, input_grads)``: ``param_grads`` with the structure of ``params``,
        ``input_grads`` of shape (n, d).  It validates ``cotangent`` (``ValueError``).

    Raises
    ------
    ValueError
        As :func:`apply`.

    Notes
    -----
    Hand-written reverse mode, with :math:`\delta_L = ct` and

    .. math::
        \frac{\partial}{\partial W_l} = c_l h_l^\top \delta_l, \quad
        \frac{\partial}{\partial b_l} = \beta_l \textstyle\sum_n \delta_l, \quad
        \delta_{l-1} = c_l (\delta_l W_l^\top) \odot \phi'(z_{l-1}), \quad
        \frac{\partial}{\partial x} = c_0 \delta_0 W_0^\top.

    At the ReLU kink ``phi'(0)`` is the activation's ``numpy_deriv(0)`` (``a`` for ABRelu).
    """
    arch = _check_arch(arch)
    params, d_in, out_dim = _check_params(arch, params)
    x = _check_x(x, d_in)
    out, pb = _vjp(arch, params, x)

    def pullback(cotangent):
        return pb(_check_cotangent(cotangent, x.shape[0], out_dim))

    return out, pullback


def input_grad(arch: Mlp, params: Params, x, cotangent) -> np.ndarray:
    r"""``G = d/dx sum_{i,k} cotangent[i, k] f_k(x_i)``, shape (n, d): row i is the gradient at ``x_i``.

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
    x : array-like of shape (n, d)
    cotangent : array-like of shape (n, out_dim), or (n,) when out_dim is 1

    Returns
    -------
    G : ndarray of shape (n, d)

    Raises
    ------
    ValueError
        As :func:`apply`, or a non-finite ``cotangent`` of the wrong shape.

    Notes
    -----
    Rows do not mix, so with ``cotangent = 1`` row i is :math:`\nabla f(x_i)`; see :func:`vjp`.
    """
    _, pullback = vjp(arch, params, x)
    return pullback(cotangent)[1]


def param_grad(arch: Mlp, params: Params, x, cotangent) -> Params:
    r"""Gradient of ``sum_{i,k} cotangent[i, k] f_k(x_i)`` with respect to the parameters.

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
    x : array-like of shape (n, d)
    cotangent : array-like of shape (n, out_dim), or (n,) when out_dim is 1

    Returns
    -------
    grads : list of (dW, db) or AntisymmetricParams
        Same structure and shapes as ``params``.  For antisymmetric params the ``theta1`` part is
        :math:`+\nabla f_{\theta_1}/\sqrt2` and the ``theta2`` part :math:`-\nabla f_{\theta_2}/\sqrt2`.

    Raises
    ------
    ValueError
        As :func:`input_grad`.

    Notes
    -----
    See :func:`vjp`.  A full-batch gradient-descent step on a loss ``L(f(x))`` is
    ``f, pb = vjp(arch, p, x); p = sgd_update(p, pb(dL_df)[0], lr)``.
    """
    _, pullback = vjp(arch, params, x)
    return pullback(cotangent)[0]


def activation_second_deriv(activation, x) -> np.ndarray:
    r""":math:`\phi''(x)` of an activation, elementwise (used by the gradient penalty's double backprop).

    ============ ==========================================================================
    ABRelu(a, b) :math:`0` (piecewise linear; the kink's Dirac mass is dropped, as autodiff does)
    Erf(a, b, c) :math:`-2 b^2 x\,\phi'(x) = -\tfrac{4 a b^3}{\sqrt\pi}\, x\, e^{-b^2 x^2}`
    Rbf(gamma)   :math:`-k^2 \phi(x)`, :math:`k = \sqrt{2\gamma}`
    Gelu         :math:`(2 - x^2)\, e^{-x^2/2} / \sqrt{2\pi}`
    Sin(a, b, c) :math:`-a b^2 \sin(b x + c)`
    ============ ==========================================================================

    Another :class:`~ntkgan.arch.Activation` may define ``numpy_deriv2(x)``, which is then used.

    Parameters
    ----------
    activation : str, Activation, tuple or dict
        As accepted by :class:`~ntkgan.arch.Mlp`.
    x : array-like

    Returns
    -------
    ndarray of the shape of ``x``

    Raises
    ------
    ValueError
        An activation without a known second derivative (naming it).
    """
    from ntkgan.arch import parse_activation

    fn = _second_deriv_fn(parse_activation(activation))
    x = np.asarray(x, dtype=np.float64)
    return np.zeros_like(x) if fn is None else np.asarray(fn(x), dtype=np.float64)


def grad_penalty(arch: Mlp, params: Params, x, weights=None) -> tuple[float, Params]:
    r"""Gradient penalty :math:`P = \sum_i w_i \|\nabla_x f(x_i)\|^2` and its parameter gradient.

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
        A network with one output.
    x : array-like of shape (n, d)
    weights : array-like of shape (n,), default=None
        Non-negative finite weights :math:`w_i`; None means :math:`w_i = 1/n` (the mean over ``x``).

    Returns
    -------
    value : float
        :math:`P`.
    grads : list of (dW, db) or AntisymmetricParams
        :math:`\nabla_\theta P`, with the structure of ``params``.

    Raises
    ------
    ValueError
        As :func:`apply`; more than one output; bad ``weights``; an activation without a second
        derivative (:func:`activation_second_deriv`).

    Notes
    -----
    Double backprop.  The input gradient comes from the backward pass with :math:`\delta_L = 1`,
    :math:`\delta_{l-1} = dh_l \odot \phi'(z_{l-1})`, :math:`dh_l = c_l \delta_l W_l^\top`,
    :math:`g = \nabla_x f = c_0 \delta_0 W_0^\top`.  Reverse mode through that pass, from
    :math:`\bar g = 2 w \odot g`: with :math:`u_0 = \bar g`, for :math:`l = 0..L-1`

    .. math::
        \bar\delta_l = c_l u_l W_l, \qquad u_{l+1} = \bar\delta_l \odot \phi'(z_l), \qquad
        s_l = \bar\delta_l \odot dh_{l+1} \odot \phi''(z_l),

    then back through the forward pass with the sources :math:`s_l` injected at :math:`z_l`:
    :math:`D_L = 0`, :math:`D_{l-1} = c_l (D_l W_l^\top) \odot \phi'(z_{l-1}) + s_{l-1}`, and

    .. math::
        \frac{\partial P}{\partial W_l} = c_l\,(h_l^\top D_l + u_l^\top \delta_l), \qquad
        \frac{\partial P}{\partial b_l} = \beta_l \textstyle\sum_i D_{l,i}.

    For antisymmetric params, :math:`g = (g_{\theta_1} - g_{\theta_2})/\sqrt2` and each half is
    differentiated with :math:`\delta_L = \pm 1/\sqrt2` and the shared :math:`\bar g`.  For ReLU-family
    activations :math:`\phi'' = 0`, so :math:`s_l = 0` and :math:`D = 0` (the input gradient is
    piecewise constant in ``x``, yet depends on the weights through :math:`u_l^\top \delta_l`).

    Examples
    --------
    >>> from ntkgan import Mlp
    >>> arch = Mlp(depth=2, activation="erf", width=4)
    >>> p = init_params(arch, 2, seed=0)
    >>> value, grads = grad_penalty(arch, p, [[0.1, 0.2], [0.3, -0.4]])
    >>> value > 0, [g[0].shape for g in grads]
    (True, [(2, 4), (4, 4), (4, 1)])
    """
    arch = _check_arch(arch)
    params, d_in, out_dim = _check_params(arch, params)
    if out_dim != 1:
        raise ValueError(f"params must have one output for the gradient penalty, got out_dim={out_dim}")
    _second_deriv_fn(arch.activation)
    x = _check_x(x, d_in)
    n = x.shape[0]
    if weights is None:
        w = np.full(n, 1.0 / n) if n else np.zeros(0)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape (n,) = {(n,)}, got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and >= 0")
    return _grad_penalty(arch, params, x, w)


def input_grad_vjp(arch: Mlp, params: Params, x, cotangent) -> tuple[np.ndarray, Params]:
    r"""Input gradients :math:`g = \nabla_x f(x)` and the parameter gradient of :math:`\sum\bar g \cdot g`.

    The mixed second derivative of the network, by the double backprop of :func:`grad_penalty` (which
    is this with :math:`\bar g = 2 w \odot g`).  Its products give the mixed derivative of the
    empirical NTK, :math:`\sum_p \partial_p \nabla_x f(x)\, \partial_p \nabla_z f(z)^\top
    = \nabla_x \nabla_z \hat\Theta(x, z)`.

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
        A network with one output.
    x : array-like of shape (n, d)
    cotangent : array-like of shape (n, d)
        :math:`\bar g`.

    Returns
    -------
    g : ndarray of shape (n, d)
    grads : list of (dW, db) or AntisymmetricParams

    Raises
    ------
    ValueError
        As :func:`grad_penalty`; a ``cotangent`` of the wrong shape or not finite.
    """
    arch = _check_arch(arch)
    params, d_in, out_dim = _check_params(arch, params)
    if out_dim != 1:
        raise ValueError(f"params must have one output, got out_dim={out_dim}")
    _second_deriv_fn(arch.activation)
    x = _check_x(x, d_in)
    ct = check_array(cotangent, "cotangent")
    if ct.shape != x.shape:
        raise ValueError(f"cotangent must have the shape of x, {x.shape}, got {ct.shape}")
    return _input_grad_vjp(arch, params, x, ct)


def empirical_ntk(arch: Mlp, params: Params, x, y=None, *, output: int = 0) -> np.ndarray:
    r"""Empirical NTK ``K[i, j] = sum_p df(x_i)/dp df(y_j)/dp`` of the scalar output ``f = f_output``.

    Computed layer by layer without materialising the Jacobian: (n + m) x width memory, and
    ``O((n + m) width^2 + n m width)`` time per layer.

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
    x : array-like of shape (n, d)
    y : array-like of shape (m, d), default=None
        If None, uses ``y = x`` (the result is then exactly symmetric).
    output : int, default=0
        Which output's kernel, for networks with ``out_dim > 1``.

    Returns
    -------
    K : ndarray of shape (n, m)

    Raises
    ------
    ValueError
        As :func:`apply`; ``y`` with the wrong ``d``; ``output`` not in ``[0, out_dim)``.

    Notes
    -----
    With :math:`\delta_l(x) = \partial f(x)/\partial z_l` (one row per sample) and
    :math:`\partial f/\partial W_l = c_l h_l^\top \delta_l` and
    :math:`\partial f/\partial b_l = \beta_l\delta_l`,

    .. math::
        K(x, y) = \sum_{l=0}^{L} \bigl(c_l^2 \langle h_l(x), h_l(y)\rangle + \beta_l^2\bigr)
                  \langle \delta_l(x), \delta_l(y)\rangle.

    For antisymmetric params it is :math:`\tfrac12(K_{\theta_1} + K_{\theta_2})`.  As the width grows,
    its mean over seeds tends to ``ntkgan.kernel(x, y, arch=arch)`` (Jacot et al. 2018); for the
    ``"standard"`` parameterization that kernel must be built with ``width`` equal to the network's.
    """
    arch = _check_arch(arch)
    params, d_in, out_dim = _check_params(arch, params)
    x = _check_x(x, d_in)
    if y is not None:
        y = _check_x(y, d_in, "y")
    if isinstance(output, bool) or not isinstance(output, numbers.Integral) or not 0 <= output < out_dim:
        raise ValueError(f"output must be an integer in [0, {out_dim}), got {output!r}")
    if isinstance(params, AntisymmetricParams):
        k1 = _empirical_ntk_plain(arch, params.theta1, x, y, int(output))
        k2 = _empirical_ntk_plain(arch, params.theta2, x, y, int(output))
        return 0.5 * (k1 + k2)
    return _empirical_ntk_plain(arch, params, x, y, int(output))


def empirical_nngp(arch: Mlp, params: list, x, y=None) -> np.ndarray:
    r"""Output covariance over the readout weights, ``K[i, j] = w_std^2 / width * <h_L(x_i), h_L(y_j)>``.

    This is :math:`\mathbb E_{W_L}[f(x) f(y)]` given the hidden layers (each output has the same), a
    lower-variance Monte Carlo sample of the NNGP than ``f(x) f(y)``; its mean over seeds tends to
    ``ntkgan.kernel(x, y, arch=arch, kind="nngp")``.  It ignores the readout's values.

    Parameters
    ----------
    arch : Mlp
    params : list of (W, b)
        Plain params; antisymmetric ones are refused (their output is 0 at init).
    x : array-like of shape (n, d)
    y : array-like of shape (m, d), default=None
        If None, uses ``y = x`` (exactly symmetric result).

    Returns
    -------
    K : ndarray of shape (n, m)

    Raises
    ------
    ValueError
        As :func:`apply`, or antisymmetric ``params``.

    Notes
    -----
    Both parameterizations draw the readout as :math:`c_L W_L` with i.i.d. entries of variance
    :math:`\sigma_w^2 / n_L` and no bias, so
    :math:`\mathbb E[f(x) f(y) \mid h_L] = \sigma_w^2 \langle h_L(x), h_L(y)\rangle / n_L`.
    """
    arch = _check_arch(arch)
    if isinstance(params, AntisymmetricParams):
        raise ValueError(
            "params must be plain (W, b) pairs: an antisymmetric network's output is 0 at init; "
            "use params.theta1 for the NNGP of one half"
        )
    params, d_in, _ = _check_params(arch, params)
    x = _check_x(x, d_in)
    if y is not None:
        y = _check_x(y, d_in, "y")
    hx = _last_hidden(arch, params, x)
    hy = hx if y is None else _last_hidden(arch, params, y)
    K = (arch.w_std**2 / hx.shape[1]) * (hx @ hy.T)
    if y is None:
        K = 0.5 * (K + K.T)
    return K


def tree_map(fn: Callable, params: Params, *rest: Params) -> Params:
    """Apply ``fn`` leafwise (to every ``W`` and ``b``) over params of the same structure.

    Examples
    --------
    >>> from ntkgan import Mlp
    >>> p = init_params(Mlp(depth=1, width=4), 2, seed=0)
    >>> zero = tree_map(lambda a: 0 * a, p)
    >>> float(sum(abs(W).sum() for W, _ in zero))
    0.0
    """
    if isinstance(params, AntisymmetricParams):
        return AntisymmetricParams(
            tree_map(fn, params.theta1, *(r.theta1 for r in rest)),
            tree_map(fn, params.theta2, *(r.theta2 for r in rest)),
        )
    if any(len(r) != len(params) for r in rest):
        raise ValueError(f"all params must have {len(params)} layers, got {[len(r) for r in rest]}")
    return [tuple(fn(*leaves) for leaves in zip(*layers)) for layers in zip(params, *rest)]


def sgd_update(params: Params, grads: Params, lr: float) -> Params:
    """One gradient-descent step ``params - lr * grads`` (new arrays, same structure)."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite real number, got {lr!r}")
    if isinstance(params, AntisymmetricParams) != isinstance(grads, AntisymmetricParams):
        raise ValueError("params and grads must both be antisymmetric or both plain")
    return tree_map(lambda p, g: p - lr * g, params, grads)


def num_params(params: Params) -> int:
    """Total number of scalars in ``params`` (both halves for antisymmetric params)."""
    if isinstance(params, AntisymmetricParams):
        return num_params(params.theta1) + num_params(params.theta2)
    return int(sum(np.size(W) + np.size(b) for W, b in params))
