"""Validation and small numerical helpers shared by the metrics (private).

Public metric functions validate here, then call workers that trust their input.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.spatial.distance import cdist

from ntkgan._validation import check_array, check_vector

__all__ = ["check_clouds", "check_positive", "check_weights", "pairwise_distances", "pairwise_sqdist"]


def check_clouds(x, y, *, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """Validate two non-empty point clouds ``x`` (n, d) and ``y`` (m, d) with the same ``d``.

    ``names`` are the argument names used in error messages.
    """
    nx, ny = names
    x = check_array(x, nx)
    y = check_array(y, ny)
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"{ny} has {y.shape[1]} features but {nx} has {x.shape[1]}")
    for name, a in ((nx, x), (ny, y)):
        if a.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one point, got shape {a.shape}")
        if a.shape[1] == 0:
            raise ValueError(f"{name} must have at least one feature, got shape {a.shape}")
    return x, y


def check_weights(w, name: str, n: int, what: str) -> np.ndarray:
    """Return probability weights of length ``n``: uniform when ``w`` is None, else ``w / w.sum()``.

    Raises ``ValueError`` for NaN/inf, a wrong length, a negative entry or a zero total.
    """
    if w is None:
        return np.full(n, 1.0 / n)
    w = check_vector(w, name, n, what)
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ValueError(f"{name} must be non-negative, got {name}[{i}] = {float(w[i])!r}")
    total = w.sum()
    if not total > 0:
        raise ValueError(f"{name} must have a positive sum, got {total!r}")
    return w / total


def check_positive(value, name: str, *, upper: float | None = None) -> float:
    """A finite real ``value > 0`` (and ``< upper`` when given), returned as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v <= 0 or (upper is not None and v >= upper):
        rng = f"in (0, {upper:g})" if upper is not None else "finite and > 0"
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return v


def pairwise_sqdist(x: np.ndarray, y: np.ndarray, *, same: bool = False) -> np.ndarray:
    """``|x_i - y_j|^2`` by the expanded formula on inputs centred together, clamped at 0.

    Centring removes the cancellation of ``|x|^2 + |y|^2 - 2<x, y>`` for clouds far from the origin.
    With ``same=True`` (``y is x``) the diagonal is set to exactly 0 and the result is symmetrised.
    """
    c = 0.5 * (x.mean(axis=0) + y.mean(axis=0))
    xc = x - c
    yc = xc if same else y - c
    d2 = np.einsum("ij,ij->i", xc, xc)[:, None] + np.einsum("ij,ij->i", yc, yc)[None, :]
    d2 -= 2.0 * (xc @ yc.T)
    np.maximum(d2, 0.0, out=d2)
    if same:
        d2 = 0.5 * (d2 + d2.T)
        np.fill_diagonal(d2, 0.0)
    return d2


def pairwise_distances(x: np.ndarray, y: np.ndarray, *, same: bool = False) -> np.ndarray:
    """Euclidean distances ``|x_i - y_j|`` from coordinate differences (no cancellation; ``same`` unused)."""
    return cdist(x, y, metric="euclidean")
