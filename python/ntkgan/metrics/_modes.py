r"""Mode-coverage metrics for samples of a mixture with known mode centres (private).

Each sample is assigned to its nearest centre (Euclidean, or cosine distance as in the MNIST notebook of
Durr et al.); the per-mode fractions :math:`p_k` then give the counts, the number of modes covered and
the diversity order parameter :math:`\log K + \sum_k p_k \log p_k`.
"""

from __future__ import annotations

import numbers

import numpy as np

from ntkgan._validation import check_int
from ntkgan.metrics._common import check_clouds, pairwise_sqdist

__all__ = [
    "METRICS",
    "diversity",
    "mean_abs_cosine",
    "mean_nearest_distance",
    "mode_counts",
    "modes_covered",
    "nearest_mode",
]

#: Distances for assigning samples to modes: ``|x - c|`` and ``1 - <x, c> / (|x| |c|)``.
METRICS = ("euclidean", "cosine")


def nearest_mode(x, centres, *, metric: str = "euclidean") -> np.ndarray:
    r"""Index of the nearest centre of each sample, ``argmin_k dist(x_i, c_k)``.

    Parameters
    ----------
    x : array-like of shape (n, d)
        Samples.
    centres : array-like of shape (K, d)
        Mode centres.
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``"cosine"`` uses the cosine distance :math:`1 - \cos(x, c)` (the MNIST notebook of Durr et al.).

    Returns
    -------
    labels : ndarray of shape (n,), int64
        Values in ``0 .. K-1``; ties go to the lowest index.

    Raises
    ------
    ValueError
        If ``x`` or ``centres`` is not 2-D, is empty, holds NaN/inf, the feature counts differ, ``metric``
        is unknown, or (cosine) a row has zero norm.
    """
    x, c = _check(x, centres, metric)
    return _distances(x, c, metric).argmin(axis=1)


def mode_counts(x, centres, *, metric: str = "euclidean") -> np.ndarray:
    """Number of samples whose nearest centre is ``k``, for each ``k``: ``counts[k] = #{i : label_i = k}``.

    Parameters
    ----------
    x, centres, metric
        As in :func:`nearest_mode`.

    Returns
    -------
    counts : ndarray of shape (K,), int64
        Sums to ``n``.

    Raises
    ------
    ValueError
        As :func:`nearest_mode`.

    Examples
    --------
    >>> from ntkgan.metrics import mode_counts
    >>> mode_counts([[0.1], [0.2], [2.9]], [[0.0], [3.0], [6.0]]).tolist()
    [2, 1, 0]
    """
    x, c = _check(x, centres, metric)
    return _counts(x, c, metric)


def modes_covered(x, centres, *, min_count: int = 1, metric: str = "euclidean") -> int:
    """Number of modes that receive at least ``min_count`` samples: ``#{k : counts[k] >= min_count}``.

    Parameters
    ----------
    x, centres, metric
        As in :func:`nearest_mode`.
    min_count : int >= 1, default=1

    Returns
    -------
    covered : int
        In ``0 .. K``.

    Raises
    ------
    ValueError
        As :func:`nearest_mode`, or if ``min_count`` is not an integer >= 1.
    """
    check_int(min_count, "min_count")
    x, c = _check(x, centres, metric)
    return int((_counts(x, c, metric) >= min_count).sum())


def diversity(x, centres, *, metric: str = "euclidean", eps: float = 0.0) -> float:
    r"""Diversity order parameter ``log K + sum_k p_k log(p_k + eps)``: 0 = even coverage, log K = collapse.

    :math:`p_k` is the fraction of samples whose nearest centre is :math:`c_k`.  With ``eps=0`` (and
    :math:`0 \log 0 = 0`) this is :math:`\mathrm{KL}(p \,\|\, \mathrm{uniform}_K)`, so it lies in
    :math:`[0, \log K]`: 0 exactly when every mode gets the same share, :math:`\log K` when all samples fall
    on one mode.

    Parameters
    ----------
    x, centres, metric
        As in :func:`nearest_mode`.
    eps : float >= 0, default=0.0
        Offset inside the logarithm.  The MNIST notebook of Durr et al. uses ``eps=1e-8`` with
        ``metric="cosine"``; its "full collapse" value is then ``log K - 1e-8`` rather than ``log K``.

    Returns
    -------
    d : float

    Raises
    ------
    ValueError
        As :func:`nearest_mode`, or if ``eps`` is negative or not finite.

    Notes
    -----
    .. math::
        D = \log K + \sum_{k=1}^K p_k \log p_k = \mathrm{KL}\big(p \,\big\|\, (1/K, \dots, 1/K)\big),
        \qquad p_k = \frac{\#\{i : \arg\min_l \mathrm{dist}(x_i, c_l) = k\}}{n}.

    If ``n`` is not a multiple of ``K`` even coverage is impossible and the minimum is above 0.

    References
    ----------
    .. [1] T. Durr, Y. Mroueh, Y. Tu, S. Wang, "Effective Dynamics of Generative Adversarial Networks"
       (the ``eval_mnist`` notebook of its public code).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkgan.metrics import diversity
    >>> c = np.array([[0.0], [10.0]])
    >>> diversity([[0.0], [10.0]], c), round(diversity([[0.0], [1.0]], c), 6)   # even; collapsed = log 2
    (0.0, 0.693147)
    """
    x, c = _check(x, centres, metric)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    p = _counts(x, c, metric) / x.shape[0]
    if eps == 0:
        p = p[p > 0]
    return float(np.log(c.shape[0]) + np.sum(p * np.log(p + eps)))


def mean_nearest_distance(x, centres, *, metric: str = "euclidean") -> float:
    """Sample quality: the mean over samples of the distance to the nearest centre, ``mean_i min_k dist``.

    With ``metric="cosine"`` and the data points as centres this is metric (b) of the MNIST notebook of
    Durr et al. (mean minimum cosine distance).

    Parameters
    ----------
    x, centres, metric
        As in :func:`nearest_mode`.

    Returns
    -------
    q : float

    Raises
    ------
    ValueError
        As :func:`nearest_mode`.
    """
    x, c = _check(x, centres, metric)
    dist = _distances(x, c, metric).min(axis=1)
    if metric == "euclidean":
        dist = np.sqrt(dist)
    return float(dist.mean())


def mean_abs_cosine(x) -> float:
    r"""Mean ``|cos(x_i, x_j)|`` over distinct pairs ``i != j``: 1 when all samples are parallel.

    Metric (c) of the MNIST notebook of Durr et al. (``evaluate_diversity``):
    :math:`\frac{1}{n(n-1)} \sum_{i \ne j} |\langle x_i, x_j \rangle| / (|x_i| |x_j|)`.

    Parameters
    ----------
    x : array-like of shape (n, d)
        At least two samples, none of zero norm.

    Returns
    -------
    m : float
        In ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``x`` is not 2-D, holds NaN/inf, has fewer than 2 rows, or has a row of zero norm.
    """
    x, _ = _check(x, x, "cosine")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x must hold at least 2 samples, got {n}")
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    g = np.abs(u @ u.T)
    return float((g.sum() - np.trace(g)) / (n * (n - 1)))


def _check(x, centres, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    x, c = check_clouds(x, centres, names=("x", "centres"))
    if metric == "cosine":
        for name, a in (("x", x), ("centres", c)):
            norms = np.linalg.norm(a, axis=1)
            if (norms == 0).any():
                row = int(np.argmax(norms == 0))
                raise ValueError(f"{name} has zero norm at row {row}; the cosine metric needs non-zero rows")
    return x, c


def _distances(x: np.ndarray, c: np.ndarray, metric: str) -> np.ndarray:
    """Squared Euclidean distances, or cosine distances, shape (n, K)."""
    if metric == "euclidean":
        return pairwise_sqdist(x, c)
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    cu = c / np.linalg.norm(c, axis=1, keepdims=True)
    return 1.0 - xu @ cu.T


def _counts(x: np.ndarray, c: np.ndarray, metric: str) -> np.ndarray:
    labels = _distances(x, c, metric).argmin(axis=1)
    return np.bincount(labels, minlength=c.shape[0]).astype(np.int64)
