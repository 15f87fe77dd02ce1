r"""Exact (arbitrary-precision) reference for the kernels of :class:`ntkgan.Mlp` and their input gradients.

``k(x, y)`` and ``d/dx k(x, y)`` computed with mpmath at :data:`DPS` significant digits by the layer
recursion of :mod:`ntkgan.arch` (the recursion neural-tangents' ``stax.Dense``, ``ABRelu``, ``Erf`` and
``Rbf`` kernel functions implement), with forward-mode dual numbers over ``mpf`` (``d`` tangent
directions) for the gradient.

Inputs are float64 arrays (or sequences of ``mpf``); every float64 is converted to ``mpf`` exactly, so the
reference is the exact kernel of the float64 inputs up to a relative error of about ``10**-(DPS - 30)``.
The ReLU-family map computes ``s = sqrt(Sxx Syy - Sxy^2)`` as the square root of a difference, like
neural-tangents; with ``DPS = 80`` digits the cancellation is harmless for ``|x - y| >= 1e-14 |x|`` (it
costs ``2 log10(|x| / |x - y|)`` digits of ``s^2``, and half of that of ``s``), and likewise for nearly
antipodal pairs (``|x + y|`` in place of ``|x - y|``), which ``abs`` maps to nearly parallel ones.  The
loss does not compound over the layers: near ``theta = 0`` (or ``pi``) ``Sxy'`` is stationary in
``theta``, so an error ``r`` in ``s`` moves the next ``s`` by ``~r`` relative; every layer costs the same
``2 log10(1 / theta)`` digits of ``s^2`` afresh (measured: 60-digit and 80-digit references agree to
2e-37 at ``theta = 1e-12``, depth 6, parallel and antiparallel).

Conventions (those of neural-tangents and :mod:`ntkgan.kernels`)
-------------------------------------------------------------------
- ``Sigma0(x, y) = <x, y> / d``, ``Theta0 = 0``; ``Sigma_xx`` goes through each activation's diagonal
  form (neural-tangents' ``diagonal_batch=True``).
- Dense, ``"ntk"``: ``Sigma <- w^2 Sigma + b^2``, ``Theta <- Sigma_new + w^2 Theta``.
  Dense, ``"standard"``: ``Theta <- n_in Sigma_old + 1 + w^2 Theta`` (``n_in = d`` first, ``width`` after;
  the ``+ 1`` also for the bias-free readout), then ``Sigma <- w^2 Sigma + b^2``.
- ABRelu(a, b): ``s = sqrt(max(Sxx Syy - Sxy^2, 0))``, ``theta = atan2(s, Sxy)`` with
  ``atan2(0, 0) = pi/2``; ``Sdot = (a^2+b^2)/2 - (a-b)^2/(2 pi) theta``,
  ``Sxy' = (a-b)^2/(2 pi) s + Sdot Sxy``, ``Sxx' = (a^2+b^2)/2 Sxx``, ``Theta' = Sdot Theta``.
  Cusp convention: ``ds = 0`` where ``Sxx Syy - Sxy^2 <= 0`` (exactly 0 at ``x == y``), and the tangent of
  ``atan2`` at ``(0, 0)`` is 0.  Hence ``d/dx k(x, y)|_{y=x} = 1/2 d/dx [k(x, x)]``.
- Erf(a, b, c): with ``S <- b^2 S``, ``r = sqrt((1 + 2 Sxx)(1 + 2 Syy) - 4 Sxy^2)``:
  ``Sxy' = a^2 2/pi atan2(2 Sxy, r) + c^2``, ``Sxx' = a^2 2/pi atan2(Sxx, sqrt(Sxx + 1/4)) + c^2``,
  ``Theta' = a^2 b^2 4/(pi r) Theta``.
- Rbf(gamma): ``Sxy' = exp(-gamma (Sxx + Syy - 2 Sxy))``, ``Sxx' = 1``, ``Theta' = 2 gamma Sxy' Theta``.

:func:`nt_pairs` evaluates the float64 oracle, neural-tangents (``arch.to_stax()``), on row pairs
``(x_i, y_i)``, so that tests can measure its error against this reference; it imports JAX lazily.

References
----------
.. [1] Lee et al. Wide neural networks of any depth evolve as linear models. NeurIPS 2019.
.. [2] Novak et al. Neural Tangents: fast and easy infinite neural networks in Python. ICLR 2020
       (``neural_tangents/_src/stax/linear.py``, ``.../stax/elementwise.py``).
.. [3] Cho, Saul. Kernel methods for deep learning. NeurIPS 2009.
.. [4] Williams. Computing with infinite networks. NeurIPS 1997.
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import numpy as np
from mpmath import mpf

from ntkgan.arch import ABRelu, Erf, Mlp, Rbf

__all__ = [
    "DPS",
    "antipodal_kernel_and_grad_mp",
    "diag_kernel_and_grad_mp",
    "kernel_and_grad_mp",
    "kernel_grad",
    "kernel_grad_fd_mp",
    "kernel_matrix",
    "kernel_mp",
    "nt_pairs",
    "pair_errors",
    "rel_err",
]

#: Working precision (decimal digits) of every reference computation.
DPS = 80


# ----------------------------------------------------------------------------------------------------
# Forward-mode dual numbers over mpf: value v and gradient t (a list of d mpf, or None for a constant).
# ----------------------------------------------------------------------------------------------------


def _t_lin(ta, ca, tb, cb):
    """``ca * ta + cb * tb`` for tangents that may be None (zero)."""
    if ta is None and tb is None:
        return None
    if tb is None:
        return [ca * u for u in ta]
    if ta is None:
        return [cb * u for u in tb]
    return [ca * u + cb * w for u, w in zip(ta, tb)]


class _Dual:
    """``v + t . eps``: a value and its gradient with respect to the d coordinates of x."""

    __slots__ = ("v", "t")

    def __init__(self, v, t=None):
        self.v = mpf(v)
        self.t = t

    @staticmethod
    def _lift(o):
        return o if isinstance(o, _Dual) else _Dual(o)

    def __add__(self, o):
        o = self._lift(o)
        return _Dual(self.v + o.v, _t_lin(self.t, 1, o.t, 1))

    __radd__ = __add__

    def __sub__(self, o):
        o = self._lift(o)
        return _Dual(self.v - o.v, _t_lin(self.t, 1, o.t, -1))

    def __rsub__(self, o):
        return self._lift(o) - self

    def __neg__(self):
        return _Dual(-self.v, _t_lin(self.t, -1, None, 0))

    def __mul__(self, o):
        o = self._lift(o)
        return _Dual(self.v * o.v, _t_lin(self.t, o.v, o.t, self.v))

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = self._lift(o)
        q = self.v / o.v
        return _Dual(q, _t_lin(self.t, 1 / o.v, o.t, -q / o.v))


def _sqrt(a: _Dual) -> _Dual:
    """Plain square root (argument > 0)."""
    r = mpmath.sqrt(a.v)
    return _Dual(r, _t_lin(a.t, 1 / (2 * r), None, 0))


def _safe_sqrt(a: _Dual) -> _Dual:
    """``sqrt(max(a, 0))`` with derivative 0 where ``a <= 0`` (neural-tangents' ``_sqrt``)."""
    if a.v <= 0:
        return _Dual(0)
    return _sqrt(a)


def _atan2(y: _Dual, x: _Dual, fill_zero=None) -> _Dual:
    """``atan2(y, x)``; ``fill_zero`` (and a zero tangent) at ``(0, 0)`` (neural-tangents' ``_arctan2``)."""
    if y.v == 0 and x.v == 0:
        return _Dual(fill_zero if fill_zero is not None else 0)
    den = x.v * x.v + y.v * y.v
    return _Dual(mpmath.atan2(y.v, x.v), _t_lin(y.t, x.v / den, x.t, -y.v / den))


def _exp(a: _Dual) -> _Dual:
    e = mpmath.exp(a.v)
    return _Dual(e, _t_lin(a.t, e, None, 0))


# ----------------------------------------------------------------------------------------------------
# The layer recursion on (Sxx, Syy, Sxy, Theta).
# ----------------------------------------------------------------------------------------------------


def _dense(state, n_in, w_std, b_std, standard):
    sxx, syy, sxy, th = state
    w2, b2 = mpf(w_std) ** 2, mpf(b_std) ** 2
    if standard:
        th = n_in * sxy + 1 + w2 * th
    sxx, syy, sxy = (w2 * s + b2 for s in (sxx, syy, sxy))
    if not standard:
        th = sxy + w2 * th
    return sxx, syy, sxy, th


def _abrelu(state, act: ABRelu):
    sxx, syy, sxy, th = state
    a, b = mpf(act.a), mpf(act.b)
    s = _safe_sqrt(sxx * syy - sxy * sxy)
    angle = _atan2(s, sxy, fill_zero=mpmath.pi / 2)
    factor = (a - b) ** 2 / (2 * mpmath.pi)
    half = (a * a + b * b) / 2
    sdot = half - factor * angle
    sxy = factor * s + sdot * sxy
    return half * sxx, half * syy, sxy, sdot * th


def _erf(state, act: Erf):
    sxx, syy, sxy, th = state
    a2, b2, c2 = mpf(act.a) ** 2, mpf(act.b) ** 2, mpf(act.c) ** 2
    sxx, syy, sxy, th = b2 * sxx, b2 * syy, b2 * sxy, b2 * th
    r = _sqrt((1 + 2 * sxx) * (1 + 2 * syy) - 4 * sxy * sxy)
    f = 2 / mpmath.pi
    sxy_new = f * _atan2(2 * sxy, r)
    th = th * (2 * f) / r

    def diag(v):
        return f * _atan2(v, _sqrt(v + mpf(1) / 4))

    return a2 * diag(sxx) + c2, a2 * diag(syy) + c2, a2 * sxy_new + c2, a2 * th


def _rbf(state, act: Rbf):
    sxx, syy, sxy, th = state
    g = mpf(act.gamma)
    sxy = _exp(g * (2 * sxy - sxx - syy))
    return _Dual(1), _Dual(1), sxy, th * (2 * g * sxy)


def _activation(state, act):
    if isinstance(act, ABRelu):
        return _abrelu(state, act)
    if isinstance(act, Erf):
        return _erf(state, act)
    if isinstance(act, Rbf):
        return _rbf(state, act)
    raise ValueError(f"activation {act!r} has no mpmath reference")


def _as_mp_vector(v, name: str) -> list:
    """A 1-D float64 array (converted exactly) or a sequence of mpf, as a list of mpf."""
    if isinstance(v, np.ndarray):
        if v.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
        return [mpf(float(e)) for e in np.asarray(v, dtype=np.float64)]
    return [e if isinstance(e, mpf) else mpf(float(e)) for e in v]


def _forward(xm: list, ym: list | None, arch: Mlp, kind: str, tangents: bool, sign: int = 1) -> _Dual:
    """``k(x, y)`` as a dual number; ``ym=None`` means ``k(x, sign * x)`` (y moves with x: the diagonal
    for ``sign = 1``, the antipodal pair for ``sign = -1``)."""
    if kind not in ("ntk", "nngp"):
        raise ValueError(f"kind must be 'ntk' or 'nngp', got {kind!r}")
    d = len(xm)
    inv_d = 1 / mpf(d)
    sxx = _Dual(mpmath.fdot(xm, xm) * inv_d, [2 * e * inv_d for e in xm] if tangents else None)
    if ym is None:
        syy = sxx
        sxy = sxx if sign == 1 else -sxx
    else:
        if len(ym) != d:
            raise ValueError(f"y has {len(ym)} features but x has {d}")
        syy = _Dual(mpmath.fdot(ym, ym) * inv_d)
        sxy = _Dual(mpmath.fdot(xm, ym) * inv_d, [e * inv_d for e in ym] if tangents else None)
    standard = arch.parameterization == "standard"
    state = (sxx, syy, sxy, _Dual(0))
    state = _dense(state, d, arch.w_std, arch.b_std, standard)
    for layer in range(arch.depth):
        state = _activation(state, arch.activation)
        last = layer == arch.depth - 1
        state = _dense(state, arch.width, arch.w_std, 0.0 if last else arch.b_std, standard)
    return state[3] if kind == "ntk" else state[2]


# ----------------------------------------------------------------------------------------------------
# Public reference functions.
# ----------------------------------------------------------------------------------------------------


def kernel_mp(x: Sequence, y: Sequence, arch: Mlp, kind: str = "ntk") -> mpf:
    """``k(x, y)`` at :data:`DPS` digits.

    Parameters
    ----------
    x, y : ndarray of shape (d,) (float64, converted exactly) or sequences of mpf
    arch : Mlp
        Activation from the ABRelu family, Erf or Rbf.
    kind : {"ntk", "nngp"}

    Returns
    -------
    k : mpf
    """
    with mpmath.workdps(DPS):
        return +_forward(_as_mp_vector(x, "x"), _as_mp_vector(y, "y"), arch, kind, tangents=False).v


def kernel_and_grad_mp(x: Sequence, y: Sequence, arch: Mlp, kind: str = "ntk") -> tuple[mpf, list]:
    """``(k(x, y), d/dx k(x, y))`` at :data:`DPS` digits, y held fixed, with the cusp convention.

    Returns
    -------
    k : mpf
    grad : list of d mpf
    """
    with mpmath.workdps(DPS):
        xm = _as_mp_vector(x, "x")
        out = _forward(xm, _as_mp_vector(y, "y"), arch, kind, tangents=True)
        return out.v, (out.t if out.t is not None else [mpf(0)] * len(xm))


def diag_kernel_and_grad_mp(x: Sequence, arch: Mlp, kind: str = "ntk") -> tuple[mpf, list]:
    """``(k(x, x), d/dx [k(x, x)])`` at :data:`DPS` digits (both arguments move with x).

    ``k(x, x)`` is smooth in x (``s = 0`` identically), so this is the true derivative; by the cusp
    convention ``kernel_grad`` at ``y = x`` equals half of it.
    """
    with mpmath.workdps(DPS):
        xm = _as_mp_vector(x, "x")
        out = _forward(xm, None, arch, kind, tangents=True)
        return out.v, (out.t if out.t is not None else [mpf(0)] * len(xm))


def antipodal_kernel_and_grad_mp(x: Sequence, arch: Mlp, kind: str = "ntk") -> tuple[mpf, list]:
    """``(k(x, -x), d/dx [k(x, -x)])`` at :data:`DPS` digits (both arguments move: ``y = -x``).

    Along ``y = -x`` the pair stays exactly antipodal (``s = 0`` at the first layer, and at every layer
    without bias), so this is a smooth function of x and the true derivative.  The kernels depend on
    ``(|x|^2, |y|^2, <x, y>)`` only and are symmetric, so at ``|x| = |y|`` the partials in ``|x|^2`` and
    ``|y|^2`` agree and ``d/dx [k(x, -x)] = 2 d/dx k(x, y)|_{y=-x}`` under the cusp convention (``ds = 0``
    where ``s = 0``): ``kernel_grad`` at ``y = -x`` equals half of it.
    """
    with mpmath.workdps(DPS):
        xm = _as_mp_vector(x, "x")
        out = _forward(xm, None, arch, kind, tangents=True, sign=-1)
        return out.v, (out.t if out.t is not None else [mpf(0)] * len(xm))


def kernel_grad_fd_mp(x: Sequence, y: Sequence, arch: Mlp, kind: str = "ntk", h_rel: str = "1e-30") -> list:
    """``d/dx k(x, y)`` by central differences of :func:`kernel_mp` at :data:`DPS` digits.

    Step ``h = h_rel |x|`` in each coordinate; the truncation error is ``~(h / dist)^2`` relative, where
    ``dist`` is the distance from x to the nearest cusp (``|x - y|``, or ``|x + y|`` for the ReLU family
    with ``a != 0``, or the angle to the ray through y without bias, times ``|x|``), and the rounding error
    ``~10**-DPS / h_rel``.  An independent check of the dual-number gradient of :func:`kernel_and_grad_mp`
    (it involves no derivative rule, so it tests the cusp conventions nowhere: use it away from ``s = 0``).
    """
    with mpmath.workdps(DPS):
        xm = _as_mp_vector(x, "x")
        ym = _as_mp_vector(y, "y")
        h = mpf(h_rel) * mpmath.sqrt(mpmath.fsum(v * v for v in xm))
        out = []
        for i in range(len(xm)):
            xp, xn = list(xm), list(xm)
            xp[i] += h
            xn[i] -= h
            out.append((kernel_mp(xp, ym, arch, kind) - kernel_mp(xn, ym, arch, kind)) / (2 * h))
        return out


def kernel_matrix(x: np.ndarray, y: np.ndarray, arch: Mlp, kind: str = "ntk") -> np.ndarray:
    """``K[i, j] = k(x_i, y_j)``, computed at :data:`DPS` digits and rounded to float64, shape (n, m)."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    return np.array([[float(kernel_mp(xi, yj, arch, kind)) for yj in y] for xi in x], dtype=np.float64)


def kernel_grad(x: np.ndarray, y: np.ndarray, weights, arch: Mlp, kind: str = "ntk") -> np.ndarray:
    """``G[i] = sum_j w_j d/dx k(x, y_j)|_{x = x_i}``, summed at :data:`DPS` digits, float64 (n, d)."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    out = np.empty(x.shape, dtype=np.float64)
    with mpmath.workdps(DPS):
        for i, xi in enumerate(x):
            acc = [mpf(0)] * x.shape[1]
            for yj, wj in zip(y, np.asarray(weights, dtype=np.float64)):
                _, g = kernel_and_grad_mp(xi, yj, arch, kind)
                acc = [a + mpf(float(wj)) * gk for a, gk in zip(acc, g)]
            out[i] = [float(a) for a in acc]
    return out


def rel_err(actual, expected) -> float:
    """Norm-wise relative error ``||actual - expected||_2 / ||expected||_2`` at :data:`DPS` digits.

    ``actual`` is float64 (scalar or 1-D), ``expected`` an mpf or a list of mpf (the exact reference).
    """
    with mpmath.workdps(DPS):
        a = [mpf(float(v)) for v in np.atleast_1d(np.asarray(actual, dtype=np.float64))]
        e = list(expected) if isinstance(expected, (list, tuple)) else [expected]
        if len(a) != len(e):
            raise ValueError(f"actual has {len(a)} entries but expected has {len(e)}")
        num = mpmath.sqrt(mpmath.fsum((u - v) ** 2 for u, v in zip(a, e)))
        den = mpmath.sqrt(mpmath.fsum(v**2 for v in e))
        return float(num / den) if den != 0 else float(num)


def pair_errors(k: float, g, x: Sequence, y: Sequence, arch: Mlp, kind: str = "ntk",
                floor: float = 1e-60, grad_floor: float | None = None) -> tuple[float, float]:
    """Relative errors of a float64 value ``k`` and gradient ``g`` of the pair ``(x, y)`` against the reference.

    ``|k - k_ref| / max(|k_ref|, F)`` and ``||g - g_ref|| / max(||g_ref||, G / |x|)`` with
    ``F = floor * N``, ``G = grad_floor * N`` (``grad_floor`` defaults to ``floor``) and
    ``N = sqrt(|k(x, x) k(y, y)|)``, the kernel's natural scale.  Some kernels vanish exactly (ReLU without
    bias at ``y = -c x``, where the reference gives ``~10**-DPS`` of the terms that cancel), and their
    relative error would measure only that; with larger floors, kernels or gradients far below their
    natural scale (zero crossings, stationary points) are measured against it.
    """
    with mpmath.workdps(DPS):
        k_ref, g_ref = kernel_and_grad_mp(x, y, arch, kind)
        scale = mpmath.sqrt(abs(kernel_mp(x, x, arch, kind) * kernel_mp(y, y, arch, kind)))
        big = mpf(floor) * scale
        xnorm = mpmath.sqrt(mpmath.fsum(mpf(float(v)) ** 2 for v in np.atleast_1d(x)))
        gbig = mpf(floor if grad_floor is None else grad_floor) * scale
        gbig = gbig / xnorm if xnorm > 0 else gbig
        ga = [mpf(float(v)) for v in np.atleast_1d(np.asarray(g, dtype=np.float64))]
        knum, kden = abs(mpf(float(k)) - k_ref), max(abs(k_ref), big)
        gnum = mpmath.sqrt(mpmath.fsum((u - v) ** 2 for u, v in zip(ga, g_ref)))
        gden = max(mpmath.sqrt(mpmath.fsum(v**2 for v in g_ref)), gbig)
        return float(knum / kden if kden else knum), float(gnum / gden if gden else gnum)


# ----------------------------------------------------------------------------------------------------
# neural-tangents on single pairs (the float64 oracle whose accuracy the tests document).
# ----------------------------------------------------------------------------------------------------


def nt_pairs(x: np.ndarray, y: np.ndarray, arch: Mlp, kind: str = "ntk") -> tuple[np.ndarray, np.ndarray]:
    """neural-tangents' float64 ``k(x_i, y_i)`` and ``d/dx k(x, y_i)|_{x = x_i}`` for row pairs.

    One JAX gradient of the trace of ``arch.to_stax()``'s kernel matrix on ``(x, y)``, eager (no jit:
    compiling costs more than it saves for the few calls of a test).

    Parameters
    ----------
    x, y : ndarray of shape (n, d)

    Returns
    -------
    k : ndarray of shape (n,)
    grad : ndarray of shape (n, d)
    """
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    kernel_fn = arch.to_stax()[2]
    xj = jnp.asarray(np.atleast_2d(x), dtype=jnp.float64)
    yj = jnp.asarray(np.atleast_2d(y), dtype=jnp.float64)

    def trace(xx):
        kxy = jnp.diagonal(kernel_fn(xx, yj, kind))
        return jnp.sum(kxy), kxy

    grad, k = jax.grad(trace, has_aux=True)(xj)
    return np.asarray(k, dtype=np.float64), np.asarray(grad, dtype=np.float64)
