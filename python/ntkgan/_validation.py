"""Input validation shared by the public API (modelled on scikit-learn's ``check_pairwise_arrays``).

Public functions validate here, then call a private worker that trusts its input.  Every error is a
``ValueError`` that names the argument and the value seen.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "check_array", "check_pair", "check_vector", "check_kind", "check_real", "KINDS", "MIN_SCALE", "MAX_SCALE",
]

KINDS = ("ntk", "nngp")

#: Nonzero input rows must have their largest |entry| in [MIN_SCALE, MAX_SCALE]: kernels involve |x|^2
#: and products of such (and, near the ReLU cusp, their reciprocals), which leave float64's range outside
#: it.  Exact zero rows are fine.  Rescale data outside this range.
MIN_SCALE = 1e-100
MAX_SCALE = 1e50


def check_real(value, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """A finite real scalar (not a bool) as float; ``positive``/``nonneg`` add ``> 0`` / ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def check_kind(kind) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def check_array(a, name: str, *, ndim: int = 2) -> np.ndarray:
    """Return ``a`` as a C-contiguous float64 array of the given ndim with only finite values."""
    if a is None:
        raise ValueError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # noqa: BLE001 - numpy raises many types here
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        shape = "(n, d)" if ndim == 2 else "(n,)"
        raise ValueError(f"{name} must be {ndim}-D of shape {shape}, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        what = "NaN" if np.isnan(arr[tuple(bad)]) else "inf"
        where = f"row {bad[0]}" if ndim == 2 else f"index {bad[0]}"
        raise ValueError(f"{name} contains {what} at {where}")
    return arr


def _check_points(a: np.ndarray, name: str) -> np.ndarray:
    if a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {a.shape}")
    if a.size:
        scale = np.abs(a).max(axis=1)
        bad = np.flatnonzero(((scale > 0) & (scale < MIN_SCALE)) | (scale > MAX_SCALE))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name} row {i} has largest |entry| {scale[i]:.3g}, outside the supported range "
                f"[{MIN_SCALE:g}, {MAX_SCALE:g}] (or exactly 0); rescale the data"
            )
    return a


def check_pair(x, y):
    """Validate ``x`` (n, d) and ``y`` (m, d); ``y=None`` returns ``(x, None)`` (symmetric case).

    Rows must be exactly zero or have their largest |entry| in ``[MIN_SCALE, MAX_SCALE]``.
    """
    x = _check_points(check_array(x, "x"), "x")
    if y is None:
        return x, None
    y = check_array(y, "y")
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"y has {y.shape[1]} features but x has {x.shape[1]}")
    return x, _check_points(y, "y")


def check_vector(v, name: str, length: int, what: str) -> np.ndarray:
    """Validate a finite 1-D float vector of the given length (``what`` says what it must match)."""
    v = check_array(v, name, ndim=1)
    if v.shape[0] != length:
        raise ValueError(f"{name} has length {v.shape[0]} but {what} has {length} rows")
    return v
