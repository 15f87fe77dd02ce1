r"""Debiased Sinkhorn divergence, computed exactly as geomloss's ``SamplesLoss("sinkhorn")`` does (private).

This is a transcription (numpy, with the soft-min reduction in Rust) of geomloss 0.2.4 / 0.3.x (``sinkhorn_divergence.py``: ``epsilon_schedule``,
``sinkhorn_loop``, ``sinkhorn_cost``; ``sinkhorn_samples.py``: ``softmin_tensorized``), restricted to
balanced transport (``reach=None``) and the dense ("tensorized") backend that geomloss picks for
``n * m <= 5000**2``.  It is written from the algorithm, not copied; on the project's reference clouds it
agrees with geomloss 0.3.1 (float64) to about 1e-16 relative.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from ntkgan import _core
from ntkgan.metrics._common import (
    check_clouds,
    check_positive,
    check_weights,
    pairwise_distances,
    pairwise_sqdist,
)
from ntkgan.threads import blas_single_thread

__all__ = ["sinkhorn_divergence"]

# geomloss's ``log_weights`` gives zero-weight points this log-weight instead of -inf.
_LOG_ZERO = -100000.0
# (ntkgan._core.softmin raises exponents below -700 to -700: exp(-700) ~ 1e-304 is still a normal double,
# and this cannot change a row sum, which always contains exp(0) = 1, the row maximum)


def sinkhorn_divergence(
    x,
    y,
    *,
    blur: float = 0.001,
    scaling: float = 0.95,
    p: int = 2,
    x_weights=None,
    y_weights=None,
    diameter: float | None = None,
    debias: bool = True,
) -> float:
    r"""Debiased Sinkhorn divergence ``S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2``.

    The value of geomloss's ``SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling)`` on the empirical
    measures :math:`\alpha = \sum_i a_i \delta_{x_i}` and :math:`\beta = \sum_j b_j \delta_{y_j}`, computed
    in float64 numpy.  With the defaults it is the metric ``s`` of Franceschi et al. (2022) [1]_: for small
    ``blur`` it approaches :math:`\tfrac12 W_2^2(\alpha, \beta)`.

    Parameters
    ----------
    x : array-like of shape (n, d)
    y : array-like of shape (m, d)
    blur : float, default=0.001
        Length scale :math:`\sigma`; the final temperature is :math:`\varepsilon = \sigma^p`.
    scaling : float in (0, 1), default=0.95
        Ratio between successive blurs of the epsilon-scaling schedule (closer to 1: more iterations,
        closer to the converged value).
    p : {1, 2}, default=2
        Cost :math:`C(x, y) = |x - y|` (p=1) or :math:`\tfrac12 |x - y|^2` (p=2).
    x_weights : array-like of shape (n,), default=None
        Non-negative weights :math:`a`, normalised to sum 1; None means uniform ``1/n``.
    y_weights : array-like of shape (m,), default=None
        Likewise :math:`b` for ``y``.
    diameter : float, default=None
        Starting blur of the schedule; None means geomloss's default, the diagonal of the bounding box of
        ``x`` and ``y`` together.
    debias : bool, default=True
        False returns the biased :math:`\mathrm{OT}_\varepsilon(\alpha, \beta)` alone.

    Returns
    -------
    s : float

    Raises
    ------
    ValueError
        If ``x`` or ``y`` is not 2-D, is empty, holds NaN/inf or the feature counts differ; if a weight
        vector has the wrong length, a negative entry or a zero sum; if ``blur``/``diameter`` is not
        finite and positive, ``scaling`` is not in (0, 1) or ``p`` is not 1 or 2.

    Notes
    -----
    Entropic transport with cost :math:`C` and temperature :math:`\varepsilon` is solved in its dual form

    .. math::
        \mathrm{OT}_\varepsilon(\alpha, \beta) = \langle \alpha, f \rangle + \langle \beta, g \rangle,
        \qquad
        f_i = -\varepsilon \log \sum_j b_j\, e^{(g_j - C(x_i, y_j))/\varepsilon},
        \quad
        g_j = -\varepsilon \log \sum_i a_i\, e^{(f_i - C(x_i, y_j))/\varepsilon},

    with every log-sum-exp taken stably (log domain).  geomloss's algorithm, reproduced here step by step:

    1. *Schedule.* :math:`\varepsilon_k` runs over ``[D**p] + exp(arange(p log D, p log blur,
       p log scaling)) + [blur**p]`` with :math:`D` the diameter.
    2. *Initialisation* at :math:`\varepsilon_0 = D^p` from zero potentials.
    3. *Symmetric (averaged) updates.*  At each :math:`\varepsilon_k`, all four potentials (the cross
       pair :math:`f, g` of :math:`\mathrm{OT}(\alpha, \beta)` and the symmetric potentials :math:`p` of
       :math:`\mathrm{OT}(\alpha, \alpha)`, :math:`q` of :math:`\mathrm{OT}(\beta, \beta)`) are updated
       from the previous ones in parallel and averaged with them: :math:`f \leftarrow (f + \tilde f)/2`.
    4. *Final extrapolation*: one full (non-averaged) update at :math:`\varepsilon = \sigma^p`.
    5. :math:`S = \langle \alpha, f - p \rangle + \langle \beta, g - q \rangle`.

    The loop has a fixed length (no stopping test), so the value depends on ``scaling``: on the
    project's reference clouds ``scaling=0.5`` gives a value about 0.5 % below ``scaling=0.95``.
    Cost: ``4 * (len(schedule) + 2)`` dense log-sum-exps of the cost matrices, with
    ``len(schedule) ~ log(D / blur) / log(1 / scaling)`` (182 steps at the defaults on the reference
    500 x 500 clouds, about 0.6 s on one core).  Memory: the three cost matrices and one work matrix,
    ``(n^2 + m^2 + n m + max(n, m)^2) * 8`` bytes (32 MB for ``n = m = 1000``).  geomloss computes in the
    input precision and the paper's runs used float32, so their values may differ from these float64
    ones in the last digits.

    References
    ----------
    .. [1] J.-Y. Franceschi, E. de Bézenac, I. Ayed, M. Chen, S. Lamprier, P. Gallinari, "A Neural
       Tangent Kernel Perspective of GANs", ICML 2022 (metric ``s`` of the public code).
    .. [2] J. Feydy, T. Séjourné, F.-X. Vialard, S. Amari, A. Trouvé, G. Peyré, "Interpolating between
       Optimal Transport and MMD using Sinkhorn Divergences", AISTATS 2019.
    .. [3] J. Feydy, "Geometric data analysis, beyond convolutions", PhD thesis, 2020 (epsilon-scaling
       and the symmetric updates of geomloss).

    Examples
    --------
    >>> import numpy as np
    >>> from ntkgan.metrics import sinkhorn_divergence
    >>> x = np.array([[0.0], [1.0]])
    >>> round(sinkhorn_divergence(x, x + 2.0), 4)   # |shift|^2 / 2
    2.0
    """
    x, y = check_clouds(x, y)
    blur = check_positive(blur, "blur")
    scaling = check_positive(scaling, "scaling", upper=1.0)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    if not blur**p > 0.0:
        raise ValueError(f"blur**p must be a positive double, got blur={blur!r} with p={p!r} (underflow)")
    if diameter is not None:
        diameter = check_positive(diameter, "diameter")
    a = check_weights(x_weights, "x_weights", x.shape[0], "x")
    b = check_weights(y_weights, "y_weights", y.shape[0], "y")
    with blas_single_thread():  # BLAS threads left spinning would slow the Rust soft-min (~30 %)
        return _sinkhorn(x, y, a, b, blur=blur, scaling=scaling, p=int(p), diameter=diameter,
                         debias=bool(debias))


def _bounding_box_diameter(x: np.ndarray, y: np.ndarray) -> float:
    """geomloss ``max_diameter``: the norm of the diagonal of the joint bounding box."""
    lo = np.minimum(x.min(axis=0), y.min(axis=0))
    hi = np.maximum(x.max(axis=0), y.max(axis=0))
    return float(np.linalg.norm(hi - lo))


def _epsilon_schedule(p: int, diameter: float, blur: float, scaling: float) -> list[float]:
    """geomloss ``epsilon_schedule``: ``[D^p] + [D^p scaling^(p k) > blur^p, k = 0, 1, ...] + [blur^p]``.

    A ``D^p`` below the smallest normal float (``D < 1.5e-154`` for ``p = 2``) is replaced by ``blur^p``:
    ``1 / D^p`` would overflow to infinity and the first iteration would be ``inf - inf`` (geomloss has the
    same problem; for such clouds the first entry is only a warm start of the ``blur^p`` iterations).
    """
    first = diameter**p
    if first < np.finfo(float).tiny:
        return [blur**p, blur**p]
    ramp = np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(scaling))
    return [first] + [float(np.exp(e)) for e in ramp] + [blur**p]


def _cost(x: np.ndarray, y: np.ndarray, p: int, *, same: bool = False) -> np.ndarray:
    if p == 2:
        return 0.5 * pairwise_sqdist(x, y, same=same)
    return pairwise_distances(x, y)


def _log_weights(w: np.ndarray) -> np.ndarray:
    out = np.full(w.shape, _LOG_ZERO)
    pos = w > 0
    out[pos] = np.log(w[pos])
    return out


class _Softmin:
    r"""``softmin(eps, f)_i = -eps * log sum_j exp(f_j - C_ij / eps)`` for one fixed cost matrix.

    The reduction runs in Rust (``ntkgan._core.softmin``: row maximum, then the sum of
    ``exp(max(w - top, -700))`` with a vectorised exponential within 2 ulp, rows in parallel and the same
    bits for any thread count).  ``transpose=True`` reduces over the rows of ``C`` (its transpose is
    copied once, contiguous, so every call streams rows).
    """

    def __init__(self, cost: np.ndarray, *, transpose: bool = False):
        self.cost = np.ascontiguousarray(cost.T if transpose else cost)

    def __call__(self, eps: float, f: np.ndarray) -> np.ndarray:
        return _core.softmin(self.cost, np.ascontiguousarray(f, dtype=np.float64), float(eps))


def _self_potential(x, a, a_log, eps_s, p) -> np.ndarray:
    r"""The symmetric potential of :math:`\mathrm{OT}_\varepsilon(\alpha, \alpha)` (averaged updates along the
    schedule, then the final extrapolation), exactly as :func:`_sinkhorn`'s loop computes it.

    It does not depend on the other cloud, so a fixed target's potential is cached
    (:func:`_cached_self_potential`).
    """
    sm = _Softmin(_cost(x, x, p, same=True))
    eps = eps_s[0]
    a_x = sm(eps, a_log)
    for eps in eps_s:
        a_x = 0.5 * (a_x + sm(eps, a_log + a_x / eps))
    return sm(eps, a_log + a_x / eps)


_CACHE_SIZE = 4
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _cached_self_potential(x, a, a_log, eps_s, p) -> np.ndarray:
    """:func:`_self_potential`, remembered for the last few ``(x, a, schedule, p)`` (keyed by a digest of
    their bytes): the flows measure a moving cloud against one fixed target every log step, and the
    target's half of the debiasing is then computed once.  The cached value is the same array bits."""
    h = hashlib.blake2b(digest_size=20)
    for arr in (x, a, np.asarray(eps_s, dtype=np.float64)):
        h.update(np.ascontiguousarray(arr).tobytes())
    key = (x.shape, p, h.digest())
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    value = _self_potential(x, a, a_log, eps_s, p)
    value.flags.writeable = False
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def _sinkhorn(x, y, a, b, *, blur, scaling, p, diameter, debias) -> float:
    """Worker of :func:`sinkhorn_divergence`; trusts its (validated) input."""
    if diameter is None:
        diameter = _bounding_box_diameter(x, y)
        if diameter == 0.0:  # every point at one place: all costs vanish, so does every OT_eps
            return 0.0
    eps_s = _epsilon_schedule(p, diameter, blur, scaling)

    c_xy = _cost(x, y, p)
    sm_xy = _Softmin(c_xy)  # -> potential on x from a function on y
    sm_yx = _Softmin(c_xy, transpose=True)  # -> potential on y from a function on x
    a_log, b_log = _log_weights(a), _log_weights(b)

    # Naming as in geomloss: a_* are potentials paired with alpha's weights, b_* with beta's;
    # the suffix says where they live.  a_x, b_y: symmetric problems (each independent of the other
    # cloud: see _self_potential); a_y, b_x: the cross problem.
    eps = eps_s[0]
    a_y = sm_yx(eps, a_log)
    b_x = sm_xy(eps, b_log)
    for eps in eps_s:
        at_y = sm_yx(eps, a_log + b_x / eps)
        bt_x = sm_xy(eps, b_log + a_y / eps)
        a_y, b_x = 0.5 * (a_y + at_y), 0.5 * (b_x + bt_x)

    # Last extrapolation at the final (smallest) eps, with the cross updates done in parallel.
    a_y, b_x = sm_yx(eps, a_log + b_x / eps), sm_xy(eps, b_log + a_y / eps)

    if debias:
        a_x = _cached_self_potential(x, a, a_log, eps_s, p)
        b_y = _cached_self_potential(y, b, b_log, eps_s, p)
        return float(a @ (b_x - a_x) + b @ (a_y - b_y))
    return float(a @ b_x + b @ a_y)
