r"""The ``"jax"`` backend: the closed-form NNGP/NTK recursions of :class:`~ntkgan.arch.Mlp` in ``jax.numpy``.

No neural-tangents: this module imports ``jax`` and ``numpy`` only, so it works on current JAX releases
(where neural-tangents 0.6.5 no longer imports) as well as on the pinned set (jax 0.4.30).  It computes,
on JAX's default device (the GPU when there is one), the same numbers as the Rust backend and as the
neural-tangents oracle :mod:`ntkgan.backends._neural_tangents` (neural-tangents with exact handling of
coincident inputs).  Its tile functions (:func:`tile_parts`, :func:`tile_contract`, :func:`tile_kernel`,
:func:`same_rows`) are traceable: the compiled flow steps of :mod:`ntkgan.jax_path` call them inside
``jax.jit``.

**Importing this module enables float64 in JAX for the whole process**
(``jax.config.update("jax_enable_x64", True)``): the kernels are computed and returned in float64.

What is computed
----------------
For the network ``arch`` with kernel :math:`k` (the NTK :math:`\Theta` for ``kind="ntk"``, the NNGP
:math:`\Sigma` for ``kind="nngp"``):

.. math::
    \texttt{kernel}(x, y)_{ij} = k(x_i, y_j), \qquad
    \texttt{kernel\_grad}(x, y, w)_i = \sum_j w_j \nabla_1 k(x_i, y_j), \qquad
    \texttt{kernel\_matvec}(x, y, v)_i = \sum_j k(x_i, y_j)\, v_j,

and ``kernel_value_and_grad(x, y, w)`` = ``(kernel_matvec(x, y, w), kernel_grad(x, y, w))`` from one pass
(``kernel_grad`` is its second half).  The recursion (documented in :mod:`ntkgan.arch`, neural-tangents'
conventions): :math:`\Sigma^0(x, y) = \langle x, y\rangle / d`, :math:`\Theta^0 = 0`; a dense layer maps
``S <- w^2 S + b^2`` and ``Theta <- S_new + w^2 Theta`` ("ntk") or ``Theta <- n_in S_old + 1 + w^2 Theta``
("standard", ``n_in = d`` first and ``width`` after, the ``+1`` also at the bias-free readout); each
activation maps ``(Sxx, Syy, Sxy, Theta)`` by its dual, ``Sxx`` by its diagonal form:

- ``ABRelu(a, b)`` (relu, leaky_relu, abs, identity): ``s = sqrt(Sxx Syy - Sxy^2)``,
  ``theta = atan2(s, Sxy)`` (``pi/2`` at ``(0, 0)``), ``Sdot = (a^2+b^2)/2 - (a-b)^2/(2 pi) theta``,
  ``Sxy' = (a-b)^2/(2 pi) s + Sdot Sxy``, ``Sxx' = (a^2+b^2)/2 Sxx``, ``Theta' = Sdot Theta``
  (``s`` is not computed when ``a == b``);
- ``Erf(a, b, c)`` (erf, sigmoid): after ``S <- b^2 S``, ``r^2 = 1 + 2 Sxx + 2 Syy + 4 s^2`` (the
  cancellation-free regrouping of ``(1+2Sxx)(1+2Syy) - 4Sxy^2``), ``Sxy' = a^2 2/pi atan2(2 Sxy, r) + c^2``,
  ``Sxx' = a^2 2/pi atan2(Sxx, sqrt(Sxx + 1/4)) + c^2``, ``Theta' = a^2 b^2 4/(pi r) Theta``;
- ``Rbf(gamma)``: carried as the feature-space squared distance ``D = Sxx + Syy - 2 Sxy``, never formed
  as that difference: ``D = w^2 |x - y|^2 / d`` at the first layer (the distance itself, from the
  coordinates), ``Sxy' = exp(-gamma D)``, ``Sxx' = 1``, ``Theta' = 2 gamma Sxy' Theta``, and the next
  layer's ``D = w^2 (2 - 2 Sxy') = -2 w^2 expm1(-gamma D)``;
- ``Gelu`` and ``Sin(a, b, c)``: neural-tangents' closed forms (``stax.Gelu``, ``stax.Sin``), with
  ``(1+Sxx)(1+Syy) - Sxy^2`` regrouped as ``1 + Sxx + Syy + s^2`` for GELU; no Rust counterpart.

Input gradients are JAX autodiff, through the invariants of each pair: ``k(x_i, y_j)`` is an elementwise
function of ``qx = |x_i|^2 / d``, ``Sigma0 = <x_i, y_j> / d`` and (rbf, sin) ``dist = |x_i - y_j|^2 / d``;
forward mode (``jax.jvp``, one pass per invariant, with ``jax.custom_jvp`` where the convention needs it)
gives ``w_j dk/dqx`` etc. for every pair, and the chain rule contracts them,
``G_i = sum_j w_j [2 x_i dk/dqx + y_j dk/dSigma0 + 2 (x_i - y_j) dk/ddist]_ij / d`` (the last term pair by
pair, so that it vanishes exactly at ``x_i = y_j``: the RBF kernel's gradient at a duplicate of large norm
is exact here, ~2e-8 off in the Rust backend, which sums ``x_i`` and ``y_j`` terms separately).
Transcendentals that XLA evaluates by a scalar libm call per element on the CPU are replaced by
vectorisable arithmetic: ``atan2`` by the Cephes rational approximation (the Rust backend's, about 1 ulp)
and ``expm1`` by its Taylor series below 1/2 (about 1 ulp); both carry exact derivative rules.

Conventions at coincident inputs (those of :mod:`ntkgan.kernels`, the Rust backend and the oracle)
-----------------------------------------------------------------------------------------------------
For the ReLU family ``s`` vanishes at ``x = y`` (without bias also at ``x = 0`` and on the line through
``y``): the kernel's cusp, where the derivative of ``s`` is taken as 0 (neural-tangents' safe square
root), which gives :math:`\nabla_1 k(x, y)|_{y=x} = \tfrac12 \nabla[k(x, x)]`.  In float64 ``Sxx Syy -
Sxy^2`` is rounding noise there, positive about half the time, so, as in
:mod:`ntkgan.backends._neural_tangents`:

1. the input covariances of all rows of ``[x; y]`` come from one reduction, and for exactly equal rows
   (``x_i == y_j`` bitwise, found on the host, or on the device by :func:`same_rows`)
   :math:`\Sigma^0_{xy}` takes the value of :math:`\Sigma^0_{xx}` bit for bit while its derivative stays
   the true ``y_j / d``;
2. ``s^2`` is taken as 0, with derivative 0, where ``s^2 <= S2_RTOL * Sxx Syy`` (:data:`S2_RTOL` =
   2**-44, a relative floor: right for tiny and huge inputs alike).  For erf and GELU, where ``s^2``
   only enters ``r^2``, that is the true derivative at ``x = y`` (``s^2 >= 0`` has its minimum there);
   ``Sin``'s ``D = Sxx + Syy - 2 Sxy`` (beyond its first layer) is floored the same way relative to
   ``Sxx + Syy``.  ``atan2(0, 0) = pi/2`` with derivative 0.
3. ``kernel(x)`` (and ``kernel(x, x)`` with the same array) mirrors its upper triangle on the host,
   so it is exactly symmetric.

Elsewhere these are neural-tangents' closed forms (tests: 1e-12), with ``s`` a difference, accurate to
``~1e-16 / sin^2 theta`` at small angles ``theta`` (the Rust backend is accurate there).

Memory and compilation
----------------------
Every call is evaluated on tiles of at most :data:`CHUNK_ENTRIES` kernel entries (default: 2**17 on the
CPU, where the derivative's intermediate arrays then stay in the cache, 4e6 on accelerators): row chunks
of ``x``, and column chunks of ``y`` when ``m`` alone exceeds it (RBF and sin tiles are smaller by
``1 + d // 8``, for their ``(rows, cols, d)`` differences), so memory stays bounded whatever ``n`` and
``m``; gradients and mat-vecs are summed over the column chunks on the host.  The last row and column
chunks are padded (zero rows, zero weights) to the tile shape, so a call compiles once per tile shape.
Each ``(arch, kind)`` has its jit-compiled functions, cached.  A tile takes two compiled calls (the
elementwise recursion, then the contractions over ``j``), so that XLA cannot fuse the recursion into the
reductions (on the CPU such fusions run unvectorised, 7-10x slower).

References
----------
.. [1] Lee et al. Wide neural networks of any depth evolve as linear models. NeurIPS 2019.
.. [2] Novak et al. Neural Tangents: fast and easy infinite neural networks in Python. ICLR 2020.
.. [3] Cho, Saul. Kernel methods for deep learning. NeurIPS 2009.
.. [4] Williams. Computing with infinite networks. NeurIPS 1997.
.. [5] Tsuchida, Pearce, van der Heide, Roosta, Gallagher. Avoiding kernel fixed points: computing with
       ELU and GELU infinite networks. AAAI 2021 (arXiv:2002.08517).
"""

from __future__ import annotations

import functools
import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

from ntkgan.arch import ABRelu, Erf, Gelu, Mlp, Rbf, Sin

__all__ = [
    "CHUNK_ENTRIES",
    "S2_RTOL",
    "kernel",
    "kernel_grad",
    "kernel_matvec",
    "kernel_value_and_grad",
    "same_rows",
    "supports",
    "tile_contract",
    "tile_kernel",
    "tile_parts",
]

#: Most kernel entries (``rows * cols``) one compiled call evaluates; None: :func:`_chunk_entries` picks
#: 2**17 on the CPU (the derivative's intermediate arrays then stay in the cache: 3x faster than 4e6)
#: and 4_000_000 on accelerators.
CHUNK_ENTRIES: int | None = None

#: Relative floor of the quantities that vanish at coincident inputs: ``s^2 = Sxx Syy - Sxy^2`` is taken
#: as 0, with derivative 0, where ``s^2 <= S2_RTOL * Sxx Syy`` (and sin's ``D`` where
#: ``D <= S2_RTOL * (Sxx + Syy)``).  2**-44 ~ 5.7e-14 = 256 ulps of 1, an angle below ~2.4e-7 rad.
S2_RTOL = 2.0**-44

_SUPPORTED = (ABRelu, Erf, Rbf, Gelu, Sin)


def supports(arch: Mlp) -> bool:
    """Whether this module implements the activation of ``arch``."""
    return isinstance(arch.activation, _SUPPORTED)


# --------------------------------------------------------------------------------------------------
# Scalar helpers with the conventions at coincident inputs
# --------------------------------------------------------------------------------------------------


@jax.custom_jvp
def _cusp_sqrt(s2, prod):
    """``sqrt(s2)`` where ``s2 > S2_RTOL * prod``, else 0 with derivative 0 (``prod`` is only a scale)."""
    keep = s2 > S2_RTOL * prod
    return jnp.where(keep, jnp.sqrt(jnp.where(keep, s2, 1.0)), 0.0)


@_cusp_sqrt.defjvp
def _cusp_sqrt_jvp(primals, tangents):
    s2, prod = primals
    s2_dot, _ = tangents
    keep = s2 > S2_RTOL * prod
    root = jnp.sqrt(jnp.where(keep, s2, 1.0))
    return jnp.where(keep, root, 0.0), jnp.where(keep, s2_dot / (2.0 * root), 0.0)


# Cephes ``atan.c`` (S. L. Moshier) rational approximation of atan on [0, 0.66], the same as the Rust
# backend's ``rust/src/atan.rs``: about 1 ulp, branch-free (selects only), so that XLA vectorises it;
# ``jnp.arctan2`` is a scalar libm call per element on the CPU (~40x slower in jax 0.4.30).
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
_MOREBITS = 6.123233995736765886130e-17  # low-order bits of pi/2


def _atan2_value(y, x):
    """``atan2(y, x)`` in ``[-pi, pi]`` (``atan2(0, 0) = 0``), branch-free; no derivative rule of its own."""
    ay, ax = jnp.abs(y), jnp.abs(x)
    swap = ay > ax
    mx, mn = jnp.where(swap, ay, ax), jnp.where(swap, ax, ay)
    big = mn > 0.66 * mx  # atan(a) = pi/4 + atan((a - 1)/(a + 1))
    num, den = jnp.where(big, mn - mx, mn), jnp.where(big, mn + mx, mx)
    t = jnp.where(den > 0.0, num / jnp.where(den > 0.0, den, 1.0), 0.0)
    z = t * t
    p = (((_ATAN_P[0] * z + _ATAN_P[1]) * z + _ATAN_P[2]) * z + _ATAN_P[3]) * z + _ATAN_P[4]
    q = ((((z + _ATAN_Q[0]) * z + _ATAN_Q[1]) * z + _ATAN_Q[2]) * z + _ATAN_Q[3]) * z + _ATAN_Q[4]
    r = t + t * (z * p / q)
    base = jnp.where(big, math.pi / 4 + (r + 0.5 * _MOREBITS), r)
    phi = jnp.where(swap, (math.pi / 2 - base) + _MOREBITS, base)
    phi = jnp.where(x < 0.0, (math.pi - phi) + 2.0 * _MOREBITS, phi)
    return jnp.where(jnp.signbit(y), -phi, phi)


def _atan2_tangent(y, x, y_dot, x_dot):
    """``d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)``, 0 at the origin."""
    r2 = x * x + y * y
    return jnp.where(r2 > 0.0, (x * y_dot - y * x_dot) / jnp.where(r2 > 0.0, r2, 1.0), 0.0)


@jax.custom_jvp
def _atan2(y, x):
    """``atan2(y, x)`` (:func:`_atan2_value`) with its exact derivative."""
    return _atan2_value(y, x)


@_atan2.defjvp
def _atan2_jvp(primals, tangents):
    y, x = primals
    return _atan2_value(y, x), _atan2_tangent(y, x, *tangents)


@jax.custom_jvp
def _angle(s, c):
    """``atan2(s, c)``, with ``atan2(0, 0) = pi/2`` (neural-tangents' fill value) and derivative 0 there."""
    at_origin = (s == 0.0) & (c == 0.0)
    return jnp.where(at_origin, math.pi / 2, _atan2_value(s, c))


@_angle.defjvp
def _angle_jvp(primals, tangents):
    s, c = primals
    s_dot, c_dot = tangents
    return _angle(s, c), _atan2_tangent(s, c, s_dot, c_dot)


#: Taylor coefficients 1/k!, k = 17 .. 1, of expm1 on |u| < 1/2 (truncation below 1e-21 relative)
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(17, 0, -1))


@jax.custom_jvp
def _expm1(u):
    """``exp(u) - 1`` without cancellation: its Taylor series for ``|u| < 1/2``, else ``exp(u) - 1``.

    Arithmetic only where it matters, so that XLA vectorises it (``jnp.expm1`` is a scalar libm call per
    element on the CPU in jax 0.4.30, 4x slower than ``exp``)."""
    p = _EXPM1_TAYLOR[0]
    for coef in _EXPM1_TAYLOR[1:]:
        p = p * u + coef
    return jnp.where(jnp.abs(u) < 0.5, p * u, jnp.exp(u) - 1.0)


@_expm1.defjvp
def _expm1_jvp(primals, tangents):
    (u,), (u_dot,) = primals, tangents
    return _expm1(u), jnp.exp(u) * u_dot


def _zero_if_tiny(v, scale):
    """``v``, or 0 with derivative 0 where ``v <= S2_RTOL * scale`` (``v >= 0`` with its minimum at x = y)."""
    return jnp.where(v > S2_RTOL * scale, v, 0.0)


# --------------------------------------------------------------------------------------------------
# The recursion, elementwise over pairs.  ``qx`` (r, 1) or (r, c), ``qy`` (1, c): |x|^2 / d and |y|^2 / d;
# ``s0`` (r, c): Sigma0 = <x, y> / d, equal to ``qx`` bit for bit at duplicates; ``gram`` (r, c): <x, y> / d
# (enters the NTK's first layer); ``dist`` (r, c): |x - y|^2 / d (rbf, sin) or None.
# --------------------------------------------------------------------------------------------------


def _dense(arch: Mlp, layer: int, s_act, th_act, n_in: float):
    """Dense layer after activation ``layer``: ``(S', Theta') -> (Sxy, Theta)`` (``th_act`` None: NNGP)."""
    w2 = arch.w_std**2
    bias2 = arch.b_std**2 if layer < arch.depth - 1 else 0.0
    sxy = w2 * s_act + bias2
    if th_act is None:
        return sxy, None
    if arch.parameterization == "standard":
        return sxy, n_in * s_act + 1.0 + w2 * th_act
    return sxy, sxy + w2 * th_act


def _pair_kernel(arch: Mlp, kind: str, d: int, qx, qy, s0, gram, dist):
    """``k`` of each pair from its input invariants (shapes broadcast; elementwise)."""
    act = arch.activation
    ntk = kind == "ntk"
    w2, b2 = arch.w_std**2, arch.b_std**2
    width = float(arch.width)
    # the first dense layer: Theta = n_in Sigma0 + 1 ("standard", n_in = d) or Sigma1 ("ntk")
    th = (d * gram + 1.0 if arch.parameterization == "standard" else w2 * gram + b2) if ntk else None
    if isinstance(act, Rbf):
        return _rbf_recursion(arch, act, w2 * dist, th)

    sxx, syy, sxy = w2 * qx + b2, w2 * qy + b2, w2 * s0 + b2
    for layer in range(arch.depth):
        if isinstance(act, ABRelu):
            s_act, th_act, sxx, syy = _abrelu(act, sxx, syy, sxy, th)
        elif isinstance(act, Erf):
            s_act, th_act, sxx, syy = _erf(act, sxx, syy, sxy, th)
        elif isinstance(act, Gelu):
            s_act, th_act, sxx, syy = _gelu(sxx, syy, sxy, th)
        else:  # Sin: the first layer's D from the coordinates (exactly 0, with derivative 0, at x = y)
            if layer == 0:
                sq = w2 * dist
            else:
                total = sxx + syy
                sq = _zero_if_tiny(total - 2.0 * sxy, total)
            s_act, th_act, sxx, syy = _sin(act, sxx, syy, sxy, sq, th)
        sxy, th = _dense(arch, layer, s_act, th_act, width)
        bias2 = b2 if layer < arch.depth - 1 else 0.0
        sxx, syy = w2 * sxx + bias2, w2 * syy + bias2
    return th if ntk else sxy


def _abrelu(act: ABRelu, sxx, syy, sxy, th):
    a, b = act.a, act.b
    factor = (a - b) ** 2 / (2.0 * math.pi)
    mean_sq = (a * a + b * b) / 2.0
    if factor == 0.0:  # a == b: linear, no cusp
        return mean_sq * sxy, None if th is None else mean_sq * th, mean_sq * sxx, mean_sq * syy
    prod = sxx * syy
    s = _cusp_sqrt(prod - sxy * sxy, prod)
    dot_sigma = mean_sq - factor * _angle(s, sxy)
    out = factor * s + dot_sigma * sxy
    return out, None if th is None else dot_sigma * th, mean_sq * sxx, mean_sq * syy


def _erf(act: Erf, sxx, syy, sxy, th):
    a2, b2, c2 = act.a**2, act.b**2, act.c**2
    sxx, syy, sxy = b2 * sxx, b2 * syy, b2 * sxy
    prod = sxx * syy
    s2 = _zero_if_tiny(prod - sxy * sxy, prod)
    r = jnp.sqrt(1.0 + 2.0 * (sxx + syy) + 4.0 * s2)

    def diag(v):
        return a2 * (2.0 / math.pi) * _atan2(v, jnp.sqrt(v + 0.25)) + c2

    out = a2 * (2.0 / math.pi) * _atan2(2.0 * sxy, r) + c2
    return out, None if th is None else (a2 * b2 * 4.0 / math.pi) * th / r, diag(sxx), diag(syy)


def _gelu(sxx, syy, sxy, th):
    """neural-tangents' ``stax.Gelu`` with ``(1+Sxx)(1+Syy) - Sxy^2 = 1 + Sxx + Syy + s^2``."""
    prod = sxx * syy
    prod_plus_1 = (sxx + 1.0) * (syy + 1.0)
    s2 = _zero_if_tiny(prod - sxy * sxy, prod)
    delta2 = 1.0 + sxx + syy + s2
    delta = jnp.sqrt(delta2)
    angles = _atan2(sxy, delta)
    out = ((sxy * sxy + prod * delta2) / (prod_plus_1 * delta) + sxy * angles) / (2.0 * math.pi) + 0.25 * sxy
    if th is not None:
        first = (1.0 / delta2 + (1.0 - prod) / prod_plus_1 + 1.0) * sxy / delta / (2.0 * math.pi)
        th = th * (first + 0.25 + angles / (2.0 * math.pi))

    def diag(v):
        root = jnp.sqrt(1.0 + 2.0 * v)
        return v * ((v / ((v + 1.0) * root) + _atan2(v, root) / 2.0) / math.pi + 0.25)

    return out, th, diag(sxx), diag(syy)


def _sin(act: Sin, sxx, syy, sxy, sq, th):
    """neural-tangents' ``stax.Sin``: ``-S/2 + Sxy = -D/2`` with ``D = sq`` the squared feature distance."""
    a, b, c = act.a, act.b, act.c
    b2 = b * b
    s1 = jnp.exp(-0.5 * b2 * sq)
    s2 = jnp.exp(b2 * (-0.5 * (sxx + syy) - sxy)) * math.cos(2.0 * c)
    out = (a * a / 2.0) * (s1 - s2)

    def diag(v):
        return (a * a / 2.0) * (1.0 - jnp.exp(-2.0 * b2 * v) * math.cos(2.0 * c))

    return out, None if th is None else th * (a * a * b2 / 2.0) * (s1 + s2), diag(sxx), diag(syy)


def _rbf_recursion(arch: Mlp, act: Rbf, sq, th):
    """Rbf layers on the squared feature distance ``sq`` (``w^2 |x - y|^2 / d`` at the first layer)."""
    w2, gamma = arch.w_std**2, act.gamma
    sxy = None
    for layer in range(arch.depth):
        s_act = jnp.exp(-gamma * sq)
        th_act = (2.0 * gamma) * s_act * th if th is not None else None
        sxy, th = _dense(arch, layer, s_act, th_act, float(arch.width))
        if layer < arch.depth - 1:
            sq = (-2.0 * w2) * _expm1(-gamma * sq)  # w^2 (Sxx' + Syy' - 2 Sxy'), Sxx' = 1
    return th if th is not None else sxy


def _uses_dist(arch: Mlp) -> bool:
    return isinstance(arch.activation, (Rbf, Sin))


def _sq_dist(x, y):
    """``|x_i - y_j|^2`` from the coordinates, (r, c): no cancellation, exactly 0 at ``x_i = y_j``."""
    if x.shape[1] <= 8:  # unrolled over the coordinates (XLA's minor-axis reduction is slower)
        return sum((x[:, k, None] - y[None, :, k]) ** 2 for k in range(x.shape[1]))
    diff = x[:, None, :] - y[None, :, :]
    return jnp.sum(diff * diff, axis=-1)


def _weighted_differences(c, x, y):
    """``sum_j c_ij (x_i - y_j)``, (r, d), pair by pair (the terms vanish exactly at ``x_i = y_j``)."""
    if x.shape[1] <= 8:
        return jnp.stack([jnp.sum(c * (x[:, k, None] - y[None, :, k]), axis=1) for k in range(x.shape[1])], axis=1)
    return jnp.sum(c[:, :, None] * (x[:, None, :] - y[None, :, :]), axis=1)


def _invariants(arch: Mlp, x, y, same):
    """``(qx (r, 1), qy (1, c), s0, gram, dist)`` of a tile (see :func:`_pair_kernel`).

    ``same`` (r, c) is True where ``x_i`` and ``y_j`` are the same point (bitwise equal rows): there
    ``s0 = qx`` exactly, so that ``Sxx Syy - Sxy^2`` is exactly 0 at every layer."""
    d = x.shape[1]
    z = jnp.concatenate([x, y], axis=0)
    q = jnp.sum(z * z, axis=1) / d  # one reduction: equal rows get bit-identical values
    qx, qy = q[: x.shape[0], None], q[None, x.shape[0]:]
    gram = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST) / d
    s0 = jnp.where(same, qx, gram)  # exactly qx at duplicates
    dist = _sq_dist(x, y) / d if _uses_dist(arch) else None
    return qx, qy, s0, gram, dist


def same_rows(x, y):
    """``(r, c)`` booleans, True where the rows ``x_i`` and ``y_j`` are equal (``0.0 == -0.0``), traceable.

    The in-jit counterpart of the host's row labels (:func:`_row_labels`): ``r c d`` comparisons."""
    if x.shape[1] <= 8:
        out = x[:, 0, None] == y[None, :, 0]
        for k in range(1, x.shape[1]):
            out = out & (x[:, k, None] == y[None, :, k])
        return out
    return jnp.all(x[:, None, :] == y[None, :, :], axis=-1)


def _needs(arch: Mlp, kind: str) -> tuple[bool, bool, bool]:
    """Which invariants ``k`` depends on: ``(qx, Sigma0, dist)``.  rbf's NNGP on dist only, its NTK also on
    gram; the others on qx and Sigma0 (= gram but at duplicates), sin also on dist."""
    rbf = isinstance(arch.activation, Rbf)
    return not rbf, not (rbf and kind == "nngp"), _uses_dist(arch)


def tile_kernel(arch: Mlp, kind: str, x, y, same):
    """``K[i, j] = k(x_i, y_j)`` of one tile, (r, c); ``same`` as in :func:`_invariants` (traceable)."""
    return _pair_kernel(arch, kind, x.shape[1], *_invariants(arch, x, y, same))


def tile_parts(arch: Mlp, kind: str, x, y, same, w):
    """``(K, w dk/dqx, w dk/dSigma0, w dk/ddist)`` of one tile (the derivatives that are needed), each (r, c).

    Forward mode on the elementwise pair function, one pass per invariant (traceable)."""
    needs_q, needs_s, needs_dist = _needs(arch, kind)
    d = x.shape[1]
    qx, qy, s0, g, dist = _invariants(arch, x, y, same)
    primals = (jnp.broadcast_to(qx, s0.shape), s0, g) + ((dist,) if needs_dist else ())

    def fn(qx_, s0_, g_, *dist_):
        return _pair_kernel(arch, kind, d, qx_, qy, s0_, g_, dist_[0] if dist_ else None)

    one, zero = jnp.ones_like(s0), jnp.zeros_like(s0)
    directions = []
    if needs_q:
        directions.append((one, zero, zero))
    if needs_s:  # Sigma0 and gram are both <x, y> / d: the same derivative, y_j / d
        directions.append((zero, one, one))
    if needs_dist:
        directions.append((zero, zero, zero, one))
    k, out = None, []
    for tangent in directions:  # XLA merges the primal computations of the passes
        k, dk = jax.jvp(fn, primals, tangent + (zero,) * (len(primals) - len(tangent)))
        out.append(dk * w[None, :])
    return (k, *out)


def _products(a, b, by_sums: bool):
    """``a @ b`` at full precision, or (``by_sums``, small ``d``) as row sums: another order of additions."""
    if not by_sums:
        return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)
    if b.ndim == 1:
        return jnp.sum(a * b[None, :], axis=1)
    return jnp.stack([jnp.sum(a * b[None, :, i], axis=1) for i in range(b.shape[1])], axis=1)


def tile_contract(arch: Mlp, kind: str, x, y, w, k, *derivs, by_sums: bool = False):
    """``(K @ w, G)`` of one tile from :func:`tile_parts`, with
    ``G_i = sum_j [2 x_i d_q + y_j d_s + 2 (x_i - y_j) d_dist]_ij / d`` (traceable).  ``by_sums``: the
    contractions over ``j`` as row sums instead of matrix products (inside a compiled step at small ``d``,
    where XLA's CPU dot with ``d`` output columns is slower)."""
    needs_q, needs_s, needs_dist = _needs(arch, kind)
    d = x.shape[1]
    derivs = list(derivs)
    g = jnp.zeros(x.shape, x.dtype)
    if needs_q:
        g = g + (2.0 / d) * x * jnp.sum(derivs.pop(0), axis=1)[:, None]
    if needs_s:
        g = g + _products(derivs.pop(0), y, by_sums) / d
    if needs_dist:  # summed pair by pair: the terms vanish exactly at duplicates
        g = g + (2.0 / d) * _weighted_differences(derivs.pop(0), x, y)
    return _products(k, w, by_sums), g


# --------------------------------------------------------------------------------------------------
# Compiled functions, cached per (arch, kind)
#
# A tile is computed in two compiled calls: the elementwise part (the kernel values and, for gradients,
# the derivatives of each k(x_i, y_j) with respect to its invariants ``qx``, ``Sigma0``, ``dist``, times
# w_j, by forward mode on the elementwise pair function) and the contractions over j (matrix products
# and sums).  The split keeps XLA from fusing the elementwise recursion into the reductions: on the CPU
# such fusions run the recursion unvectorised, 7-10x slower (jax 0.4.30 and 0.10).  Forward mode (one
# pass per invariant) measured 1.5-3x faster than reverse mode here, and small tiles on the CPU
# (:func:`_chunk_entries`) another 3x: XLA materialises a dozen intermediate arrays per layer in the
# derivative, which then stay in the cache.
# --------------------------------------------------------------------------------------------------


class _Compiled:
    """jit-compiled tile functions of one ``(arch, kind)`` (row labels in, :func:`same_rows` semantics)."""

    def __init__(self, arch: Mlp, kind: str):
        def same(lx, ly):
            return lx[:, None] == ly[None, :]

        def gram(x, y, lx, ly):
            return tile_kernel(arch, kind, x, y, same(lx, ly))

        def parts(x, y, lx, ly, w):
            return tile_parts(arch, kind, x, y, same(lx, ly), w)

        def contract(x, y, w, k, *derivs):
            return tile_contract(arch, kind, x, y, w, k, *derivs)

        self.gram = jax.jit(gram)
        self.parts = jax.jit(parts)
        self.contract = jax.jit(contract)
        self.matvec = jax.jit(lambda k, v: jnp.matmul(k, v, precision=jax.lax.Precision.HIGHEST))


@functools.lru_cache(maxsize=64)
def _compiled(arch: Mlp, kind: str) -> _Compiled:
    if not supports(arch):
        raise ValueError(f"activation {arch.activation!r} is not implemented by ntkgan.backends._jax_native")
    return _Compiled(arch, kind)


# --------------------------------------------------------------------------------------------------
# Host side: duplicate labels, tiling, padding
# --------------------------------------------------------------------------------------------------


def _row_labels(*arrays: np.ndarray) -> list[np.ndarray]:
    """Integer labels of the rows of the stacked arrays: equal labels iff the rows are equal (0.0 == -0.0)."""
    z = np.concatenate(arrays, axis=0) + 0.0  # -0.0 -> 0.0, so bytes equal iff values equal
    rows = np.ascontiguousarray(z).view(np.dtype((np.void, z.dtype.itemsize * z.shape[1])))[:, 0]
    _, labels = np.unique(rows, return_inverse=True)
    labels = labels.reshape(-1).astype(np.int32 if labels.size < 2**31 else np.int64)
    splits = np.cumsum([a.shape[0] for a in arrays])[:-1]
    return np.split(labels, splits)


def _chunk_entries() -> int:
    """:data:`CHUNK_ENTRIES`, or its default for JAX's default backend."""
    if CHUNK_ENTRIES is not None:
        return CHUNK_ENTRIES
    return 2**17 if jax.default_backend() == "cpu" else 4_000_000


def _tile_shape(n: int, m: int, arch: Mlp, d: int) -> tuple[int, int]:
    """``(rows, cols)`` of the tiles: ``rows * cols * cost <= _chunk_entries()`` (at least one row)."""
    cost = 1 + d // 8 if _uses_dist(arch) else 1
    budget = max(1, _chunk_entries() // cost)
    cols = max(1, min(m, budget))
    rows = max(1, min(n, budget // cols))
    return rows, cols


def _padded(a: np.ndarray, size: int, fill) -> np.ndarray:
    """``a`` with rows appended up to ``size`` (filled with ``fill``)."""
    if a.shape[0] == size:
        return a
    pad = np.full((size - a.shape[0],) + a.shape[1:], fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=0)


def _blocks(total: int, size: int):
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def _to_numpy(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def _tiles(x: np.ndarray, y: np.ndarray, extra: np.ndarray | None, arch: Mlp):
    """Yield ``(row block, col block, device args)`` over padded tiles of ``(x, y)``.

    Padding rows of ``x`` and ``y`` are zero rows with labels -1 and -2 (matching nothing); padding
    entries of ``extra`` (weights over ``y``) are 0.
    """
    if y is None:
        (lx,) = _row_labels(x)
        y, ly = x, lx
    else:
        lx, ly = _row_labels(x, y)
    rows, cols = _tile_shape(x.shape[0], y.shape[0], arch, x.shape[1])
    col_blocks = _blocks(y.shape[0], cols)
    col_args = []
    for c0, c1 in col_blocks:
        yc = jnp.asarray(_padded(y[c0:c1], cols, 0.0))
        lyc = jnp.asarray(_padded(ly[c0:c1], cols, -2))
        ec = None if extra is None else jnp.asarray(_padded(extra[c0:c1], cols, 0.0))
        col_args.append((yc, lyc, ec))
    for r0, r1 in _blocks(x.shape[0], rows):
        xr = jnp.asarray(_padded(x[r0:r1], rows, 0.0))
        lxr = jnp.asarray(_padded(lx[r0:r1], rows, -1))
        for (c0, c1), (yc, lyc, ec) in zip(col_blocks, col_args):
            yield (r0, r1), (c0, c1), (xr, yc, lxr, lyc) + (() if ec is None else (ec,))


# --------------------------------------------------------------------------------------------------
# The backend interface (inputs already validated: C-contiguous float64, finite, matching d)
# --------------------------------------------------------------------------------------------------


def kernel(x: np.ndarray, y: np.ndarray | None, arch: Mlp, kind: str) -> np.ndarray:
    """``K[i, j] = k(x_i, y_j)``, shape (n, m); ``y=None`` (or ``y is x``) gives the exactly symmetric ``K(x, x)``."""
    c = _compiled(arch, kind)
    symmetric = y is None or y is x
    m = x.shape[0] if symmetric else y.shape[0]
    out = np.empty((x.shape[0], m))
    for (r0, r1), (c0, c1), args in _tiles(x, None if symmetric else y, None, arch):
        out[r0:r1, c0:c1] = _to_numpy(c.gram(*args))[: r1 - r0, : c1 - c0]
    if symmetric:  # mirror the upper triangle: XLA may round the two triangles differently
        lower = np.tril_indices(m, -1)
        out[lower] = out.T[lower]
    return out


def kernel_value_and_grad(x: np.ndarray, y: np.ndarray | None, weights: np.ndarray, arch: Mlp, kind: str):
    """``(K(x, y) @ weights, kernel_grad(x, y, weights))`` from one pass (``y=None`` means ``y = x``)."""
    c = _compiled(arch, kind)
    f = np.zeros(x.shape[0])
    g = np.zeros(x.shape)
    for (r0, r1), _, (xr, yc, lxr, lyc, wc) in _tiles(x, y, weights, arch):
        fv, gv = c.contract(xr, yc, wc, *c.parts(xr, yc, lxr, lyc, wc))
        f[r0:r1] += _to_numpy(fv)[: r1 - r0]
        g[r0:r1] += _to_numpy(gv)[: r1 - r0]
    return f, g


def kernel_grad(x: np.ndarray, y: np.ndarray | None, weights: np.ndarray, arch: Mlp, kind: str) -> np.ndarray:
    """``G[i] = sum_j weights[j] d/dx k(x, y_j) at x_i``, shape (n, d) (``y=None`` means ``y = x``)."""
    return kernel_value_and_grad(x, y, weights, arch, kind)[1]


def kernel_matvec(x: np.ndarray, y: np.ndarray | None, v: np.ndarray, arch: Mlp, kind: str) -> np.ndarray:
    """``(K(x, y) @ v)[i]``, shape (n,) (``y=None`` means ``y = x``)."""
    c = _compiled(arch, kind)
    out = np.zeros(x.shape[0])
    for (r0, r1), _, (xr, yc, lxr, lyc, vc) in _tiles(x, y, v, arch):
        out[r0:r1] += _to_numpy(c.matvec(c.gram(xr, yc, lxr, lyc), vc))[: r1 - r0]
    return out
