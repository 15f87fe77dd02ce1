"""Input validation for the whole package: arrays, point clouds, scalars, choices (in the spirit of
scikit-learn's ``utils/validation`` and ``_param_validation``).

Public functions validate here, then call a private worker that trusts its input.  Every error is a
``ValueError`` that names the argument and the value seen: ``steps must be an integer >= 0, got -1``,
``eta must be > 0, got 0.0``, ``kind must be one of ('ntk', 'nngp'), got 'x'``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "KINDS", "MAX_SCALE", "MIN_SCALE", "check_array", "check_choice", "check_int", "check_ints", "check_kind", "check_pair",
    "check_real", "check_reals", "check_vector", "parse_floats",
]

KINDS = ("ntk", "nngp")

#: Nonzero input rows must have their largest |entry| in [MIN_SCALE, MAX_SCALE]: kernels involve |x|^2
#: and products of such (and, near the ReLU cusp, their reciprocals), which leave float64's range outside
#: it.  Exact zero rows are fine.  Rescale data outside this range; homogeneous kernels (bias-free ReLU
#: family, ntk parameterization) take any scale, see :mod:`ntkgan._homogeneous`.
MIN_SCALE = 1e-100
MAX_SCALE = 1e50


def check_int(value, name: str, minimum: int = 1, *, optional: bool = False) -> int | None:
    """An integer ``>= minimum`` (Python or numpy; bools refused) as ``int``; ``None`` passes when
    ``optional``.  ``ValueError``: ``"{name} must be an integer >= {minimum}[ or None], got {value!r}"``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        none = " or None" if optional else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{none}, got {value!r}")
    return int(value)


def check_real(
    value,
    name: str,
    *,
    positive: bool = False,
    nonneg: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real scalar (not a bool) as float, optionally in an interval.

    ``positive`` is ``low=0, low_open=True`` (``> 0``), ``nonneg`` is ``low=0`` (``>= 0``); ``low``/``high``
    bound the value, excluded when ``low_open``/``high_open``.  Errors name the argument:
    ``must be a real number``, ``must be finite``, or ``must be > 0 and < 1, got ...``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive or nonneg:
        low, low_open = 0.0, positive
    too_low = low is not None and (v < low or (low_open and v == low))
    too_high = high is not None and (v > high or (high_open and v == high))
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be {' and '.join(c for c in (lo, hi) if c)}, got {v!r}")
    return v


def check_ints(values, name: str, minimum: int, *, noun: str = "value") -> tuple[int, ...]:
    """A non-empty sequence of distinct integers ``>= minimum`` (Python or numpy; bools refused), as a tuple
    of ``int`` in the order given.  Errors name the argument: ``must be a sequence of integers >= 1``,
    ``must hold at least one width`` (``noun``), ``must be integers >= 1, got 0 in [8, 0]``, ``must be
    distinct``."""
    if isinstance(values, (str, bytes)):
        values = None
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers >= {minimum}, got {values!r}") from None
    if not items:
        raise ValueError(f"{name} must hold at least one {noun}, got an empty sequence")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            raise ValueError(f"{name} must be integers >= {minimum}, got {v!r} in {items!r}")
    out = tuple(int(v) for v in items)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must be distinct, got {list(out)!r}")
    return out


def check_reals(values, name: str, **bounds) -> tuple[float, ...]:
    """A non-empty sequence of distinct numbers, each checked by :func:`check_real` with ``bounds``, sorted
    ascending."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}")
    out = [check_real(v, f"{name}[{i}]", **bounds) for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name} must hold at least one value, got {values!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat values, got {out}")
    return tuple(sorted(out))


def check_choice(value, name: str, choices):
    """``value`` if it is one of ``choices``; ``ValueError``: ``"{name} must be one of {choices}, got ..."``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def parse_floats(text: str, name: str) -> list[float]:
    """``"0,0.5,0.9"`` -> ``[0.0, 0.5, 0.9]``; ValueError naming ``name`` on a bad item."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"{name} must be a comma-separated list of numbers, got {text!r}")
    try:
        return [float(t) for t in items]
    except ValueError:
        raise ValueError(f"{name} must be a comma-separated list of numbers, got {text!r}") from None


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


def _check_points(a: np.ndarray, name: str, any_scale: bool) -> np.ndarray:
    if a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {a.shape}")
    if a.size and not any_scale:
        scale = np.abs(a).max(axis=1)
        bad = np.flatnonzero(((scale > 0) & (scale < MIN_SCALE)) | (scale > MAX_SCALE))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name} row {i} has largest |entry| {scale[i]:.3g}, outside the supported range "
                f"[{MIN_SCALE:g}, {MAX_SCALE:g}] (or exactly 0); rescale the data"
            )
    return a


def check_pair(x, y, *, any_scale: bool = False):
    """Validate ``x`` (n, d) and ``y`` (m, d); ``y=None`` returns ``(x, None)`` (symmetric case).

    Rows must be exactly zero or have their largest |entry| in ``[MIN_SCALE, MAX_SCALE]``, unless
    ``any_scale`` (a homogeneous kernel, which :mod:`ntkgan._homogeneous` rescales exactly).
    """
    x = _check_points(check_array(x, "x"), "x", any_scale)
    if y is None:
        return x, None
    y = check_array(y, "y")
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"y has {y.shape[1]} features but x has {x.shape[1]}")
    return x, _check_points(y, "y", any_scale)


def check_vector(v, name: str, length: int, what: str) -> np.ndarray:
    """Validate a finite 1-D float vector of the given length (``what`` says what it must match)."""
    v = check_array(v, name, ndim=1)
    if v.shape[0] != length:
        raise ValueError(f"{name} has length {v.shape[0]} but {what} has {length} rows")
    return v
