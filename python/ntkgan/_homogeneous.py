r"""Inputs of any scale for positively homogeneous kernels, by exact rescaling.

The kernels of a bias-free ReLU-family network in the NTK parameterization (:attr:`ntkgan.Mlp.homogeneous`)
are positively 1-homogeneous in each argument:

.. math::
    k(a x, b y) = a\, b\, k(x, y), \qquad \nabla_1 k(a x, b y) = b\, \nabla_1 k(x, y) \qquad (a, b > 0).

The engines accept rows whose largest :math:`|x_k|` lies in ``[MIN_SCALE, MAX_SCALE]``
(:mod:`ntkgan._validation`).  For a homogeneous kernel a row outside that range is multiplied by
:math:`2^{-e}` (``e`` the binary exponent of its largest entry, so it lands in ``[0.5, 1)``) and the
result multiplied back:

.. math::
    K_{ij} = 2^{e_i + e'_j} \tilde K_{ij}, \qquad
    \sum_j k(x_i, y_j) v_j = 2^{e_i + E} \sum_j \tilde k_{ij} \, (2^{e'_j - E} v_j), \qquad
    \sum_j w_j \nabla_1 k(x_i, y_j) = 2^{E} \sum_j (2^{e'_j - E} w_j) \nabla_1 \tilde k_{ij},

with :math:`E = \max_j e'_j`.  Multiplying by a power of two is exact, and the engines' recursions commute
with it bit for bit (tested), so the result is what an engine without exponent limits would return, rounded
once more only where it leaves float64's range: an overflow raises ``FloatingPointError``, an underflow
gives subnormals or 0 (terms below :math:`2^{-1074}` of the largest weight are lost, as in any sum).
Rows inside the range are left alone, so results there are unchanged.  This is what lets a particle flow
whose particles collapse onto the origin (the bias-free LSGAN) run on: they shrink geometrically, through
``1e-100`` and the subnormals, to exactly 0.
"""

from __future__ import annotations

import numpy as np

from ntkgan._validation import MAX_SCALE, MIN_SCALE

__all__ = ["needs_rescaling", "rescale_rows", "scaled_weights", "unscale"]


def needs_rescaling(*arrays: np.ndarray | None) -> bool:
    """Whether a nonzero row of any of ``arrays`` has its largest |entry| outside the engines' range."""
    for a in arrays:
        if a is not None and a.size:
            scale = np.abs(a).max(axis=1)
            if (((scale > 0) & (scale < MIN_SCALE)) | (scale > MAX_SCALE)).any():
                return True
    return False


def rescale_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(a * 2^-e[:, None], e)``: rows outside the range brought into ``[0.5, 1)`` (largest |entry|),
    ``e = 0`` for the others and for zero rows.  Exact."""
    scale = np.abs(a).max(axis=1)
    out = (scale > MAX_SCALE) | ((scale > 0) & (scale < MIN_SCALE))
    e = np.zeros(a.shape[0], dtype=np.int64)
    e[out] = np.frexp(scale[out])[1]
    return np.ldexp(a, -e[:, None]), e


def scaled_weights(w: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, int]:
    """``(w * 2^(e - E), E)`` with ``E = max(e)`` (0 for an empty ``e``): weights that carry the rows'
    exponents, normalised so the largest exponent is kept whole."""
    big = int(e.max()) if e.size else 0
    return np.ldexp(w, e - big), big


def unscale(values: np.ndarray, exponent, what: str) -> np.ndarray:
    """``values * 2^exponent`` (broadcast), raising ``FloatingPointError`` where a finite value overflows."""
    with np.errstate(over="ignore"):
        out = np.ldexp(values, exponent)
    if not np.isfinite(out).all():
        raise FloatingPointError(f"{what} overflows float64 for inputs this large; rescale the data")
    return out
