"""Forward and backward passes of the numpy networks (workers: inputs trusted): activations per layer, the
backpropagated deltas, parameter gradients, vector-Jacobian products and the empirical NTK's features."""

from __future__ import annotations

import math

import numpy as np

from ntkgan.arch import Mlp
from ntkgan.finite._checks import _INV_SQRT2, AntisymmetricParams, Params


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


def _deltas(arch: Mlp, params: list, zs: list, ct: np.ndarray, dhs: list | None = None,
            sources: list | None = None) -> tuple[list, np.ndarray]:
    r"""Backprop: ``deltas[l] = d<ct, f>/dz_l`` (rows per sample) and the input gradient.

    :math:`D_L = ct`, :math:`D_{l-1} = c_l (D_l W_l^\top) \odot \phi'(z_{l-1}) + s_{l-1}`, where the
    sources :math:`s_l` are ``sources[l]`` (None, or a None entry: no source; the second-order pass of
    :mod:`ntkgan.finite._penalty` adds them).  With a list ``dhs`` (of length ``len(params)``), also stores
    ``dhs[l] = c_l delta_l W_l^T`` for ``l >= 1``, the gradients with respect to the hidden activations.
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
            if sources is not None and sources[layer - 1] is not None:
                delta = delta + sources[layer - 1]
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
