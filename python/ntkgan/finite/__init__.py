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

import numpy as np

from ntkgan._validation import check_array, check_int, check_real
from ntkgan.arch import Mlp
from ntkgan.finite._checks import (
    _INV_SQRT2,
    AntisymmetricParams,
    Params,
    _check_arch,
    _check_cotangent,
    _check_params,
    _check_rng,
    _check_x,
)
from ntkgan.finite._passes import _empirical_ntk_plain, _forward, _last_hidden, _vjp
from ntkgan.finite._penalty import _grad_penalty, _input_grad_vjp, _second_deriv_fn

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
    d_in = check_int(d_in, "d_in")
    out_dim = check_int(out_dim, "out_dim")
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
    arch, params, x, cotangent
        As in :func:`input_grad`.

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
    lr = check_real(lr, "lr")
    if isinstance(params, AntisymmetricParams) != isinstance(grads, AntisymmetricParams):
        raise ValueError("params and grads must both be antisymmetric or both plain")
    return tree_map(lambda p, g: p - lr * g, params, grads)


def num_params(params: Params) -> int:
    """Total number of scalars in ``params`` (both halves for antisymmetric params)."""
    if isinstance(params, AntisymmetricParams):
        return num_params(params.theta1) + num_params(params.theta2)
    return int(sum(np.size(W) + np.size(b) for W, b in params))
