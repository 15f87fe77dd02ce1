r"""Infinite-width NTK and NNGP kernels of :class:`~ntkgan.arch.Mlp` networks, and their input gradients.

.. math::
    \texttt{kernel}(x, y)_{ij} = k(x_i, y_j), \qquad
    \texttt{kernel\_grad}(x, y, w)_i = \sum_j w_j \nabla_1 k(x_i, y_j), \qquad
    \texttt{kernel\_matvec}(x, y, v)_i = \sum_j k(x_i, y_j) v_j,

and ``kernel_value_and_grad(x, y, w)`` returning ``(kernel_matvec(x, y, w), kernel_grad(x, y, w))`` in one
pass (what a kernel discriminator :math:`f = \sum_j w_j k(\cdot, y_j)` needs at the particles),

with :math:`k` the NTK :math:`\Theta` (``kind="ntk"``) or the NNGP :math:`\Sigma` (``kind="nngp"``) of the
network, computed by the closed-form layer recursion documented in :mod:`ntkgan.arch`.

Gradient convention at the cusp.  For the ReLU family, :math:`k(\cdot, y)` is not differentiable where
:math:`s = \sqrt{\Sigma_{xx}\Sigma_{yy} - \Sigma_{xy}^2}` vanishes at some layer (``x = y``; with
``b_std = 0`` also ``x = 0`` and the whole line through ``y``, antipodal side included).  There the
derivative of ``s`` is taken as 0 (neural-tangents' safe square root), which gives
:math:`\nabla_1 k(x, y)|_{y = x} = \tfrac12 \nabla [k(x, x)]`.  Away from those sets the gradient is the
true one; the Rust backend computes it accurately even for ``0 < |x - y| << |x|`` and for nearly antipodal
points ``0 < |x + y / c| << |x|`` (it carries ``s`` and the feature-space distances
:math:`|\phi(x) \mp \phi(y)|^2` through the layers without cancellation; docs/kernel_accuracy.md).
"""

from __future__ import annotations

import numpy as np

from ntkgan import _homogeneous as _hom
from ntkgan import backends as _backends
from ntkgan._validation import check_kind, check_pair, check_vector
from ntkgan.arch import Mlp

__all__ = ["kernel", "kernel_grad", "kernel_matvec", "kernel_value_and_grad"]


def _check_arch(arch) -> Mlp:
    if not isinstance(arch, Mlp):
        raise ValueError(f"arch must be an ntkgan.Mlp, got {type(arch).__name__}")
    return arch


def _weighted_inputs(x, y, weights, arch, kind, backend):
    """Validated ``(backend module, x, y, weights, arch, kind)`` of a weighted sum over ``y`` (``None``: x)."""
    arch = _check_arch(arch)
    kind = check_kind(kind)
    be = _backends.get_backend(backend)
    x, y = check_pair(x, y, any_scale=arch.homogeneous)
    y = x if y is None else y
    weights = check_vector(weights, "weights", y.shape[0], "y")
    return be, x, y, weights, arch, kind


def _rescaled(x, y, weights, arch):
    """Rows of a homogeneous kernel's inputs brought into the engines' range (:mod:`ntkgan._homogeneous`):
    ``(x~, y~, w~, ex, E)`` with ``f = 2^(ex + E) f~`` and ``G = 2^E G~``; None when nothing needs it."""
    if not (arch.homogeneous and _hom.needs_rescaling(x, y)):
        return None
    xs, ex = _hom.rescale_rows(x)
    ys, ey = (xs, ex) if y is x else _hom.rescale_rows(y)
    ws, big = _hom.scaled_weights(weights, ey)
    return xs, ys, ws, ex, big


def kernel(x, y=None, *, arch: Mlp, kind: str = "ntk", backend: str | None = None) -> np.ndarray:
    """Kernel matrix ``K[i, j] = k(x_i, y_j)`` of the network ``arch``.

    Parameters
    ----------
    x : array-like of shape (n, d)
    y : array-like of shape (m, d), default=None
        If None, uses ``y = x`` and exploits the symmetry (the result is exactly symmetric).
    arch : Mlp
    kind : {"ntk", "nngp"}, default="ntk"
    backend : {"rust", "jax"}, default=None
        None means ``$NTKGAN_BACKEND`` or ``"rust"``; the tests' oracle ``"neural_tangents"`` is also
        accepted (:mod:`ntkgan.backends`).

    Returns
    -------
    K : ndarray of shape (n, m), float64

    Raises
    ------
    ValueError
        On NaN/inf, wrong ndim, mismatched feature counts, unknown kind or backend.

    Examples
    --------
    >>> import numpy as np, ntkgan
    >>> K = ntkgan.kernel(np.eye(2), arch=ntkgan.Mlp(depth=1))
    >>> K.shape, bool(np.allclose(K, K.T))
    ((2, 2), True)
    """
    arch = _check_arch(arch)
    kind = check_kind(kind)
    be = _backends.get_backend(backend)
    x, y = check_pair(x, y, any_scale=arch.homogeneous)
    m = x.shape[0] if y is None else y.shape[0]
    if x.shape[0] == 0 or m == 0:
        return np.zeros((x.shape[0], m))
    if arch.homogeneous and _hom.needs_rescaling(x, y):
        xs, ex = _hom.rescale_rows(x)
        ys, ey = (None, ex) if y is None else _hom.rescale_rows(y)
        return _hom.unscale(be.kernel(xs, ys, arch, kind), ex[:, None] + ey[None, :], "the kernel matrix")
    return be.kernel(x, y, arch, kind)


def kernel_grad(x, y, weights, *, arch: Mlp, kind: str = "ntk", backend: str | None = None) -> np.ndarray:
    r"""Weighted input gradient ``G[i] = sum_j weights[j] * d/dx k(x, y_j) at x = x_i``.

    Never builds the (n, m, d) tensor; the Rust backend does not build the (n, m) matrix either (it
    tiles), so ``n = m = 50 000`` fits in a few hundred MB.

    Parameters
    ----------
    x : array-like of shape (n, d)
    y : array-like of shape (m, d)
        ``None`` means ``y = x``.
    weights : array-like of shape (m,)
    arch, kind, backend
        As in :func:`kernel`.

    Returns
    -------
    G : ndarray of shape (n, d), float64
    """
    be, x, y, weights, arch, kind = _weighted_inputs(x, y, weights, arch, kind, backend)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return np.zeros(x.shape)
    scaled = _rescaled(x, y, weights, arch)
    if scaled is not None:
        xs, ys, ws, _, big = scaled
        return _hom.unscale(be.kernel_grad(xs, ys, ws, arch, kind), big, "the kernel gradient")
    return be.kernel_grad(x, y, weights, arch, kind)


def kernel_matvec(x, y, v, *, arch: Mlp, kind: str = "ntk", backend: str | None = None) -> np.ndarray:
    """``K(x, y) @ v`` without storing ``K`` (tiled in the Rust backend).

    Parameters
    ----------
    x : array-like of shape (n, d)
    y : array-like of shape (m, d) or None (``y = x``)
    v : array-like of shape (m,)
    arch, kind, backend
        As in :func:`kernel`.

    Returns
    -------
    Kv : ndarray of shape (n,), float64
    """
    arch = _check_arch(arch)
    kind = check_kind(kind)
    be = _backends.get_backend(backend)
    x, y = check_pair(x, y, any_scale=arch.homogeneous)
    m = x.shape[0] if y is None else y.shape[0]
    v = check_vector(v, "v", m, "y")
    if x.shape[0] == 0 or m == 0:
        return np.zeros(x.shape[0])
    scaled = _rescaled(x, x if y is None else y, v, arch)
    if scaled is not None:
        xs, ys, vs, ex, big = scaled
        return _hom.unscale(be.kernel_matvec(xs, None if y is None else ys, vs, arch, kind), ex + big,
                            "the kernel product")
    return be.kernel_matvec(x, y, v, arch, kind)


def kernel_value_and_grad(x, y, weights, *, arch: Mlp, kind: str = "ntk",
                          backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""``(f, G)`` with :math:`f_i = \sum_j w_j k(x_i, y_j)` and :math:`G_i = \sum_j w_j \nabla_1 k(x_i, y_j)`.

    Equal to ``(kernel_matvec(x, y, weights), kernel_grad(x, y, weights))``; the Rust backend computes
    both in the pass that computes the gradient (the values are the real parts of the dual numbers it
    already evaluates), so it costs about one ``kernel_grad``.

    When ``y`` starts with the rows of ``x`` (``y = [x; z]``, bit for bit: a discriminator differentiated
    at its own fake points, or ``y=None``), the Rust backend evaluates each unordered pair of the
    :math:`x`-:math:`x` block once, with a third tangent along :math:`|x_j|^2/d`, and gets both points'
    gradients from it (:math:`k(x, y) = k(y, x)`; the ABReLU family and erf at :math:`d \le 16`): about 0.75
    of the time of that block.  The numbers agree with the plain pass to rounding (summation order).

    Parameters
    ----------
    x, y, weights, arch, kind, backend
        As in :func:`kernel_grad`.

    Returns
    -------
    f : ndarray of shape (n,), float64
    G : ndarray of shape (n, d), float64
    """
    be, x, y, weights, arch, kind = _weighted_inputs(x, y, weights, arch, kind, backend)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return np.zeros(x.shape[0]), np.zeros(x.shape)
    scaled = _rescaled(x, y, weights, arch)
    if scaled is not None:
        xs, ys, ws, ex, big = scaled
        f, g = be.kernel_value_and_grad(xs, ys, ws, arch, kind)
        return _hom.unscale(f, ex + big, "the kernel values"), _hom.unscale(g, big, "the kernel gradient")
    return be.kernel_value_and_grad(x, y, weights, arch, kind)
