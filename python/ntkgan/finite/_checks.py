"""Types and argument checks of the numpy networks (:mod:`ntkgan.finite`): plain ``[(W, b), ...]`` or
antisymmetric :class:`AntisymmetricParams` parameters, inputs, cotangents and random generators."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Union

import numpy as np

from ntkgan._validation import check_array
from ntkgan.arch import Activation, Mlp


class AntisymmetricParams(NamedTuple):
    """Parameters of ``f = (f_theta1 - f_theta2) / sqrt(2)``; ``theta2 == theta1`` at init, so ``f_0 = 0``.

    Gradients returned by :func:`param_grad` for such a network have the same structure.
    """

    theta1: list
    theta2: list


Params = Union[list, AntisymmetricParams]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


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
