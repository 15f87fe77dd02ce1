r"""The transition point of the mode-collapse study, and how the outputs say it (no drawing, no I/O).

Used by :mod:`ntkgan.studies.collapse` (tables, markdown, the command's summary) and by
:mod:`ntkgan.plots._studies` (the legend of the diversity figure).
"""

from __future__ import annotations

import math

import numpy as np

from ntkgan._validation import check_real

__all__ = ["transition_point", "transition_text"]


def transition_point(ratios, diversity, threshold: float) -> float:
    r"""Smallest ratio at which ``diversity`` exceeds ``threshold``, linearly interpolated.

    With the ratios sorted, let :math:`i` be the first index with :math:`D_i > \text{threshold}`
    (non-finite :math:`D_i` are skipped).  The result is
    :math:`r_{i-1} + (\text{threshold} - D_{i-1})\,(r_i - r_{i-1}) / (D_i - D_{i-1})`.  It is NaN,
    "no transition in range", when no value exceeds the threshold, and also when already
    :math:`D_0 > \text{threshold}`: the transition, if any, lies at or below the grid, not at :math:`r_0`
    (:func:`transition_text` says which).

    Parameters
    ----------
    ratios : array-like of shape (n,)
        Coupling ratios (any order).
    diversity : array-like of shape (n,)
        The order parameter at each ratio (e.g. the mean over seeds).
    threshold : float

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Shapes that differ or are empty, non-finite ratios or threshold.

    Examples
    --------
    >>> transition_point([0.0, 0.5, 1.0], [0.1, 0.3, 0.9], 0.6)
    0.75
    """
    r = np.asarray(ratios, dtype=np.float64)
    d = np.asarray(diversity, dtype=np.float64)
    if r.ndim != 1 or r.shape != d.shape or r.size == 0:
        raise ValueError(
            f"ratios and diversity must be 1-D of the same non-zero length, got shapes "
            f"{r.shape} and {d.shape}"
        )
    if not np.isfinite(r).all():
        raise ValueError("ratios must be finite")
    threshold = check_real(threshold, "threshold")
    order = np.argsort(r, kind="stable")
    r, d = r[order], d[order]
    ok = np.isfinite(d)
    r, d = r[ok], d[ok]
    above = np.nonzero(d > threshold)[0]
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:  # above already at the smallest ratio: no crossing inside the grid
        return float("nan")
    r0, r1, d0, d1 = r[i - 1], r[i], d[i - 1], d[i]
    return float(r0 + (threshold - d0) * (r1 - r0) / (d1 - d0))


def transition_text(t: float, ratios, diversity, threshold: float, *, digits: int = 3) -> str:
    """``t`` with ``digits`` decimals, or why there is no transition in the range of ``ratios``.

    ``ratios`` and ``diversity`` (the mean final diversity per ratio) are those ``t`` was computed from.
    """
    if math.isfinite(t):
        return f"{t:.{digits}f}"
    r = np.asarray(ratios, dtype=np.float64)
    d = np.asarray(diversity, dtype=np.float64)
    ok = np.isfinite(d)
    if not ok.any():
        return "n/a (no run finished)"
    r, d = r[ok], d[ok]
    order = np.argsort(r, kind="stable")
    r, d = r[order], d[order]
    if d[0] > threshold:
        return f"no transition in range (above the threshold already at g2/g1 = {r[0]:g})"
    return f"no transition in range (below the threshold up to g2/g1 = {r[-1]:g})"
