r"""The neural-tangents oracle (``backend="neural_tangents"``): its kernels in float64, on JAX's default device.

This is the reference the tests compare the ``"rust"`` and ``"jax"`` backends against; it is not a backend a
run can use (:data:`ntkgan.backends.BACKENDS`).  neural-tangents is archived upstream and imports only on the
pinned set (``pip install "ntkgan[oracle]"``: jax 0.4.30, neural-tangents 0.6.5); the ``"jax"`` backend is
:mod:`ntkgan.backends._jax_native`, which needs JAX only.

**Importing this module enables float64 in JAX for the whole process**
(``jax.config.update("jax_enable_x64", True)``): the kernels are computed and returned in float64.

What is computed
----------------
For the network ``arch`` (an :class:`~ntkgan.arch.Mlp`) with kernel :math:`k` (the NTK :math:`\Theta` for
``kind="ntk"``, the NNGP :math:`\Sigma` for ``kind="nngp"``):

.. math::
    \texttt{kernel}(x, y)_{ij} = k(x_i, y_j), \qquad
    \texttt{kernel\_grad}(x, y, w)_i = \nabla_{x_i} \sum_{i', j} k(x_{i'}, y_j)\, w_j
        = \sum_j w_j \nabla_1 k(x_i, y_j), \qquad
    \texttt{kernel\_matvec}(x, y, v)_i = \sum_j k(x_i, y_j)\, v_j.

The kernel is the closed-form layer recursion of neural-tangents' ``kernel_fn`` for ``arch.to_stax()``
(documented in :mod:`ntkgan.arch`): inputs enter as :math:`\Sigma^0(x, y) = \langle x, y\rangle / d`,
:math:`\Theta^0 = 0`, then each ``Dense`` and activation layer maps
:math:`(\Sigma_{xx}, \Sigma_{yy}, \Sigma_{xy}, \Theta_{xy})`.  The gradient is JAX reverse-mode autodiff of
:math:`x \mapsto \sum_{ij} K(x, y)_{ij} w_j` (row ``i`` of ``K`` depends on ``x_i`` only, so this is the
contraction above), evaluated on row chunks of ``x`` of at most :data:`CHUNK_ENTRIES` kernel entries
(``chunk * m``), so memory stays bounded whatever ``n``; ``kernel_matvec`` is chunked the same way.
Each ``(arch, kind)`` gets its own jit-compiled functions, cached (``Mlp`` is a frozen, hashable
dataclass); JAX compiles once per input shape, and the last chunk is zero-padded to the chunk size so
that a chunked call compiles once.  Nothing is pinned to the CPU.

Where it departs from calling ``arch.to_stax()[2](x, y)`` directly
-----------------------------------------------------------------
Only at (or within rounding of) coincident inputs, where plain neural-tangents misses the cusp convention
(:math:`ds = 0`) in float64 about 12 % of the time and loses digits on Rbf and Erf at large norms.  This
backend builds the input kernel itself (bit-equal covariances for bit-equal rows, exactly symmetric
``kernel(x)``) and floors the cancelled quantities :math:`s^2` and :math:`D` to zero below
:data:`S2_RTOL` relative, with a zero derivative.  docs/neural_tangents_oracle.md has the measurements
and the reasons.  Away from coincident inputs this is the same computation as neural-tangents (tests
compare the two to 1e-12), with the same ``1e-16 / theta**2`` accuracy of ``s`` at small angles ``theta``;
the Rust backend is accurate there.

References
----------
.. [1] Novak et al. Neural Tangents: fast and easy infinite neural networks in Python. ICLR 2020
       (``neural_tangents/_src/stax/elementwise.py``: ``ABRelu``, ``Erf``, ``Rbf``, ``_sqrt``, ``_arctan2``).
.. [2] Lee et al. Wide neural networks of any depth evolve as linear models. NeurIPS 2019.
.. [3] Cho, Saul. Kernel methods for deep learning. NeurIPS 2009.
.. [4] Williams. Computing with infinite networks. NeurIPS 1997.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the body: TensorFlow (imported by neural-tangents through
    tf2jax) prints absl/oneDNN/CUDA start-up lines from C++ at import, twice, which no Python setting
    silences.  Python exceptions still propagate; only this import is wrapped."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no file descriptor 2
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's later C++ messages
with _native_stderr_silenced():
    import neural_tangents as nt
    from neural_tangents import stax

from ntkgan.arch import ABRelu, Erf, Mlp, Rbf
from ntkgan.backends._jax_native import _cusp_sqrt  # the same convention at the cusp

__all__ = ["CHUNK_ENTRIES", "S2_RTOL", "kernel", "kernel_grad", "kernel_matvec"]

#: Most kernel entries (``chunk * m``) one step of ``kernel_grad`` / ``kernel_matvec`` evaluates.
CHUNK_ENTRIES = 4_000_000

#: Relative floor of the quantities that vanish at coincident inputs: ``s^2 = Sxx Syy - Sxy^2`` (ReLU
#: family, erf) is taken as 0, with derivative 0, where ``s^2 <= S2_RTOL * Sxx Syy``, and the squared
#: distance ``Sxx + Syy - 2 Sxy`` (rbf) where it is ``<= S2_RTOL * (Sxx + Syy)``.  2**-44 ~ 5.7e-14 =
#: 256 ulps of 1, an angle below ~2.4e-7 rad; the noise measured at exact duplicates is <= 9 ulps.
S2_RTOL = 2.0**-44


# --------------------------------------------------------------------------------------------------
# Activation layers exact at coincident inputs (the closed forms of neural-tangents' ABRelu, Erf, Rbf)
# --------------------------------------------------------------------------------------------------


@jax.custom_jvp
def _angle(s, c):
    """``atan2(s, c)``, with ``atan2(0, 0) = pi/2`` (neural-tangents' fill value) and derivative 0 there."""
    at_origin = (s == 0.0) & (c == 0.0)
    return jnp.where(at_origin, math.pi / 2, jnp.arctan2(s, c))


@_angle.defjvp
def _angle_jvp(primals, tangents):
    s, c = primals
    s_dot, c_dot = tangents
    r2 = s * s + c * c
    safe = jnp.where(r2 > 0.0, r2, 1.0)
    tangent = jnp.where(r2 > 0.0, (s_dot * c - c_dot * s) / safe, 0.0)
    return _angle(s, c), tangent


def _zero_if_tiny(v, scale):
    """``v``, or 0 with derivative 0 where ``v <= S2_RTOL * scale`` (``v >= 0`` vanishing at ``x = y``).

    At exactly coincident inputs ``v`` (``s^2`` or the squared distance) has its minimum, so its true
    derivative is 0 too; the computed one is rounding noise of the terms that cancel, ~``eps * scale``,
    which large norms amplify.
    """
    return jnp.where(v > S2_RTOL * scale, v, 0.0)


def _pair_terms(k: nt.Kernel):
    """``(cov1, var2, nngp, cov2)`` of a 2-D ``diagonal_batch`` kernel; ``var2`` is ``cov2`` or ``cov1``."""
    if not k.is_gaussian:
        raise ValueError("the input of an activation must be Gaussian (a Dense layer comes first)")
    if not k.diagonal_batch or k.cov1.ndim != 1:
        raise NotImplementedError("only diagonal_batch kernels of 2-D inputs are supported")
    return k.cov1, k.cov1 if k.cov2 is None else k.cov2, k.nngp, k.cov2


def _activation_layer(name: str, fn, kernel_fn):
    """An elementwise neural-tangents layer ``(init_fn, apply_fn, kernel_fn)`` from its kernel map."""

    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        return fn(inputs)

    @stax.requires(diagonal_spatial=stax.Diagonal())
    def layer_kernel_fn(k: nt.Kernel, **kwargs) -> nt.Kernel:
        return kernel_fn(k).replace(is_gaussian=False)

    init_fn.__name__ = apply_fn.__name__ = layer_kernel_fn.__name__ = name
    return init_fn, apply_fn, layer_kernel_fn


@stax.layer
def _abrelu_layer(a: float, b: float):
    r"""neural-tangents' ``ABRelu(a, b)`` with the relative safe square root :func:`_cusp_sqrt`.

    ``s = sqrt(Sxx Syy - Sxy^2)``, ``theta = atan2(s, Sxy)``,
    ``Sdot = (a^2+b^2)/2 - (a-b)^2/(2 pi) theta``, ``Sxy' = (a-b)^2/(2 pi) s + Sdot Sxy``,
    ``Sxx' = (a^2+b^2)/2 Sxx`` (the diagonal form), ``Theta' = Sdot Theta``.
    """
    factor = (a - b) ** 2 / (2.0 * math.pi)
    mean_sq = (a * a + b * b) / 2.0

    def kernel_fn(k: nt.Kernel) -> nt.Kernel:
        cov1, var2, nngp, cov2 = _pair_terms(k)
        prod = cov1[:, None] * var2[None, :]
        s = _cusp_sqrt(prod - nngp * nngp, prod)
        dot_sigma = mean_sq - factor * _angle(s, nngp)
        return k.replace(
            cov1=mean_sq * cov1,
            nngp=factor * s + dot_sigma * nngp,
            cov2=None if cov2 is None else mean_sq * cov2,
            ntk=None if k.ntk is None else dot_sigma * k.ntk,
        )

    return _activation_layer(
        f"ABRelu({a}, {b})", lambda x: a * jnp.minimum(x, 0.0) + b * jnp.maximum(x, 0.0), kernel_fn
    )


@stax.layer
def _erf_layer(a: float, b: float, c: float):
    r"""neural-tangents' ``Erf(a, b, c)`` with ``r^2 = 1 + 2 Sxx + 2 Syy + 4 s^2``, ``s^2`` floored to 0.

    After ``S <- b^2 S``: ``Sxy' = a^2 2/pi atan2(2 Sxy, r) + c^2``, ``Theta' = a^2 4/(pi r) Theta``,
    ``Sxx' = a^2 2/pi atan2(Sxx, sqrt(Sxx + 1/4)) + c^2``, where neural-tangents writes
    ``r^2 = (1 + 2 Sxx)(1 + 2 Syy) - 4 Sxy^2``; the regrouping makes ``r`` exact at coincident inputs
    even when ``Sxx`` is large (their product then cancels ``4 Sxy^2`` to ``eps * Sxx`` relative).
    """
    b2, a2, c2 = b * b, a * a, c * c

    def kernel_fn(k: nt.Kernel) -> nt.Kernel:
        cov1, var2, nngp, cov2 = _pair_terms(k)
        cov1, var2, nngp = b2 * cov1, b2 * var2, b2 * nngp
        prod = cov1[:, None] * var2[None, :]
        s2 = _zero_if_tiny(prod - nngp * nngp, prod)
        r = jnp.sqrt(1.0 + 2.0 * (cov1[:, None] + var2[None, :]) + 4.0 * s2)

        def diag(v):
            return a2 * (2.0 / math.pi) * jnp.arctan2(v, jnp.sqrt(v + 0.25)) + c2

        return k.replace(
            cov1=diag(cov1),
            nngp=a2 * (2.0 / math.pi) * jnp.arctan2(2.0 * nngp, r) + c2,
            cov2=None if cov2 is None else diag(var2),
            ntk=None if k.ntk is None else (a2 * b2 * 4.0 / math.pi) * k.ntk / r,
        )

    return _activation_layer(f"Erf({a}, {b}, {c})", lambda x: a * jax.scipy.special.erf(b * x) + c, kernel_fn)


@stax.layer
def _rbf_layer(gamma: float):
    r"""neural-tangents' ``Rbf(gamma)`` with the squared distance ``D = Sxx + Syy - 2 Sxy`` floored to 0.

    ``Sxy' = exp(-gamma D)``, ``Sxx' = 1`` (the diagonal form, no derivative),
    ``Theta' = 2 gamma Sxy' Theta``.  ``D`` is exactly 0 at coincident inputs, whatever their norm.
    """

    def kernel_fn(k: nt.Kernel) -> nt.Kernel:
        cov1, var2, nngp, cov2 = _pair_terms(k)
        total = cov1[:, None] + var2[None, :]
        nngp = jnp.exp(-gamma * _zero_if_tiny(total - 2.0 * nngp, total))
        return k.replace(
            cov1=jnp.ones_like(cov1),
            nngp=nngp,
            cov2=None if cov2 is None else jnp.ones_like(cov2),
            ntk=None if k.ntk is None else (2.0 * gamma) * nngp * k.ntk,
        )

    root = math.sqrt(2.0 * gamma)
    return _activation_layer(
        f"Rbf({gamma})", lambda x: math.sqrt(2.0) * jnp.sin(root * x + math.pi / 4), kernel_fn
    )


@dataclasses.dataclass(frozen=True)
class _ExactABRelu(ABRelu):
    def to_stax(self):
        return _abrelu_layer(self.a, self.b)


@dataclasses.dataclass(frozen=True)
class _ExactErf(Erf):
    def to_stax(self):
        return _erf_layer(self.a, self.b, self.c)


@dataclasses.dataclass(frozen=True)
class _ExactRbf(Rbf):
    def to_stax(self):
        return _rbf_layer(self.gamma)


#: activation class -> its subclass whose ``to_stax`` is the layer above (GELU and sin stay as they are)
_EXACT = {ABRelu: _ExactABRelu, Erf: _ExactErf, Rbf: _ExactRbf}


def _stax_kernel_fn(arch: Mlp):
    """``arch.to_stax()``'s kernel_fn with the activation layers above (the same network otherwise)."""
    act = arch.activation
    exact = _EXACT.get(type(act))
    if exact is not None:
        arch = dataclasses.replace(arch, activation=exact(**dataclasses.asdict(act)))
    return arch.to_stax()[2]


# --------------------------------------------------------------------------------------------------
# The input kernel
# --------------------------------------------------------------------------------------------------


def _row_labels(*arrays: np.ndarray) -> list[np.ndarray]:
    """Integer labels of the rows of the stacked arrays: equal labels iff the rows are equal (0.0 == -0.0)."""
    z = np.concatenate(arrays, axis=0) + 0.0  # -0.0 -> 0.0, so bytes equal iff values equal
    if z.shape[1] == 0:
        labels = np.zeros(z.shape[0], dtype=np.int64)
    else:
        rows = np.ascontiguousarray(z).view(np.dtype((np.void, z.dtype.itemsize * z.shape[1])))[:, 0]
        _, labels = np.unique(rows, return_inverse=True)
        labels = labels.reshape(-1)
    labels = labels.astype(np.int32 if labels.size < 2**31 else np.int64)
    splits = np.cumsum([a.shape[0] for a in arrays])[:-1]
    return np.split(labels, splits)


def _value_of(value, carrier):
    """``value`` in the forward pass with the derivative of ``carrier`` (``carrier - carrier`` is 0)."""
    return jax.lax.stop_gradient(value) + (carrier - jax.lax.stop_gradient(carrier))


def _input_kernel(x, y, lx, ly, compute_ntk: bool) -> nt.Kernel:
    """The :class:`neural_tangents.Kernel` of the inputs, consistent at exactly equal rows.

    ``Sigma0 = x y^T / d`` and ``cov = sum(x * x) / d`` (one reduction over ``[x; y]``), except that
    where ``lx[i] == ly[j]`` (equal rows) ``Sigma0[i, j]`` takes the value of ``cov1[i]`` (bit for bit)
    while keeping the derivative of the matrix product.  ``y=None`` means ``y = x`` (``cov2 = None``),
    as in neural-tangents.
    """
    d = x.shape[1]
    n = x.shape[0]
    z = x if y is None else jnp.concatenate([x, y], axis=0)
    cov = jnp.sum(z * z, axis=1) / d
    cov1 = cov[:n]
    cov2 = None if y is None else cov[n:]
    other = x if y is None else y
    gram = jnp.matmul(x, other.T, precision=jax.lax.Precision.HIGHEST) / d
    same = lx[:, None] == (lx if y is None else ly)[None, :]
    nngp = _value_of(jnp.where(same, cov1[:, None], gram), gram)
    return nt.Kernel(
        nngp=nngp,
        ntk=jnp.zeros((), nngp.dtype) if compute_ntk else None,
        cov1=cov1,
        cov2=cov2,
        x1_is_x2=y is None,
        is_gaussian=False,
        is_reversed=False,
        is_input=False,
        diagonal_batch=True,
        diagonal_spatial=False,
        shape1=x.shape,
        shape2=x.shape if y is None else y.shape,
        batch_axis=0,
        channel_axis=1,
        mask1=None,
        mask2=None,
    )


# --------------------------------------------------------------------------------------------------
# Compiled functions, cached per (arch, kind)
# --------------------------------------------------------------------------------------------------


class _Compiled:
    """jit-compiled kernel, gradient and mat-vec of one ``(arch, kind)``."""

    def __init__(self, arch: Mlp, kind: str):
        kernel_fn = _stax_kernel_fn(arch)

        def gram(x, y, lx, ly):
            k = _input_kernel(x, y, lx, ly, compute_ntk=kind == "ntk")
            return kernel_fn(k, get=kind)

        def weighted_sum(x, y, lx, ly, w):
            return jnp.sum(gram(x, y, lx, ly) @ w)

        self.gram = jax.jit(gram)

        def gram_sym(x, lx):  # the upper triangle, mirrored: exactly symmetric
            k = gram(x, None, lx, None)
            return jnp.triu(k) + jnp.triu(k, 1).T

        self.gram_sym = jax.jit(gram_sym)
        self.grad = jax.jit(jax.grad(weighted_sum))
        self.matvec = jax.jit(lambda x, y, lx, ly, v: gram(x, y, lx, ly) @ v)


@functools.lru_cache(maxsize=64)
def _compiled(arch: Mlp, kind: str) -> _Compiled:
    return _Compiled(arch, kind)


def _chunks(n: int, m: int):
    """``(start, stop, size)`` row chunks of at most ``CHUNK_ENTRIES // m`` rows (one size for all)."""
    size = max(1, min(n, CHUNK_ENTRIES // max(m, 1)))
    for start in range(0, n, size):
        yield start, min(start + size, n), size


def _padded(a: np.ndarray, size: int, fill) -> np.ndarray:
    """``a`` with rows appended up to ``size`` (filled with ``fill``)."""
    if a.shape[0] == size:
        return a
    pad = np.full((size - a.shape[0],) + a.shape[1:], fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=0)


def _to_numpy(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def _chunked(fn, x: np.ndarray, y: np.ndarray, extra: np.ndarray, out_shape: tuple) -> np.ndarray:
    """Apply ``fn(x_chunk, y, lx_chunk, ly, extra)`` over zero-padded row chunks of ``x``."""
    lx, ly = _row_labels(x, y)
    y_dev, ly_dev, extra_dev = jnp.asarray(y), jnp.asarray(ly), jnp.asarray(extra)
    out = np.empty(out_shape)
    for start, stop, size in _chunks(x.shape[0], y.shape[0]):
        xc = _padded(x[start:stop], size, 0.0)
        lc = _padded(lx[start:stop], size, -1)  # padding rows match nothing
        res = fn(jnp.asarray(xc), y_dev, jnp.asarray(lc), ly_dev, extra_dev)
        out[start:stop] = _to_numpy(res)[: stop - start]
    return out


# --------------------------------------------------------------------------------------------------
# The backend interface (inputs already validated: C-contiguous float64, finite, matching d)
# --------------------------------------------------------------------------------------------------


def kernel(x: np.ndarray, y: np.ndarray | None, arch: Mlp, kind: str) -> np.ndarray:
    """``K[i, j] = k(x_i, y_j)``, shape (n, m); ``y=None`` gives the exactly symmetric ``K(x, x)``.

    ``y is x`` takes the symmetric path too, so ``kernel(x, x)`` equals ``kernel(x)`` bit for bit
    (a different rounding of ``Sigma0`` would show, ~1e-10, at nearly antipodal pairs of norm ~1e3).
    """
    c = _compiled(arch, kind)
    if y is None or y is x:
        (lx,) = _row_labels(x)
        k = _to_numpy(c.gram_sym(jnp.asarray(x), jnp.asarray(lx)))
        # mirror the upper triangle on the host: XLA may round the two triangles differently
        lower = np.tril_indices(k.shape[0], -1)
        k[lower] = k.T[lower]
        return k
    lx, ly = _row_labels(x, y)
    return _to_numpy(c.gram(jnp.asarray(x), jnp.asarray(y), jnp.asarray(lx), jnp.asarray(ly)))


def kernel_grad(x: np.ndarray, y: np.ndarray, weights: np.ndarray, arch: Mlp, kind: str) -> np.ndarray:
    """``G[i] = sum_j weights[j] d/dx k(x, y_j) at x_i``, shape (n, d), in row chunks of ``x``."""
    return _chunked(_compiled(arch, kind).grad, x, y, weights, x.shape)


def kernel_matvec(x: np.ndarray, y: np.ndarray | None, v: np.ndarray, arch: Mlp, kind: str) -> np.ndarray:
    """``(K(x, y) @ v)[i]``, shape (n,), in row chunks of ``x`` (``y=None`` means ``y = x``)."""
    return _chunked(_compiled(arch, kind).matvec, x, x if y is None else y, v, (x.shape[0],))


def kernel_value_and_grad(x: np.ndarray, y: np.ndarray, weights: np.ndarray, arch: Mlp, kind: str):
    """``(K(x, y) @ weights, kernel_grad(x, y, weights))`` (two compiled calls)."""
    return kernel_matvec(x, y, weights, arch, kind), kernel_grad(x, y, weights, arch, kind)
