"""Homogeneous kernels (bias-free ReLU family, ntk parameterization) at any input scale.

Reference: the homogeneity identities k(a x, b y) = a b k(x, y) and grad_1 k(a x, b y) = b grad_1 k(x, y)
(paper notes, section 3.8), with the same points evaluated inside the engines' range [1e-100, 1e50].
Powers of two commute with the recursions bit for bit, so the comparisons are exact.
"""

from __future__ import annotations

import ntkgan
import numpy as np
import pytest
from ntkgan import Mlp, backends

HOMOGENEOUS = [
    Mlp(depth=3, activation="relu", b_std=0.0),
    Mlp(depth=1, activation="abs", w_std=0.9, b_std=0.0),
    Mlp(depth=2, activation=("leaky_relu", 0.2), w_std=1.3, b_std=0.0),
]
KINDS = ("ntk", "nngp")


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        (Mlp(b_std=0.0), True),
        (Mlp(activation=("abrelu", -0.5, 2.0), b_std=0.0), True),
        (Mlp(b_std=1e-300), False),
        (Mlp(b_std=0.0, parameterization="standard"), False),
        (Mlp(activation="erf", b_std=0.0), False),
        (Mlp(activation=("rbf", 1.0), depth=1, b_std=0.0), False),
    ],
)
def test_homogeneous_flag(arch, expected):
    assert arch.homogeneous is expected


def _points(seed: int, n: int, d: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def _backend_list():
    return [b for b in ("rust", "jax") if b in backends.available()]


@pytest.mark.parametrize("backend", _backend_list())
@pytest.mark.parametrize("arch", HOMOGENEOUS, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_rows_out_of_range_equal_the_rescaled_identity(backend, arch, kind):
    """Rows at 2^-400 (1e-120), 2^-1060 (subnormal), 2^200 (1.6e60) and exactly 0, next to ordinary rows:
    every output equals the in-range computation times the powers of two, bit for bit."""
    x, y = _points(0, 9), _points(1, 7)
    ex = np.array([0, -400, 0, -1060, 200, 0, 0, -400, 0])
    ey = np.array([0, 0, -300, 0, 0, 170, 0])
    x[5] = 0.0
    xs, ys = np.ldexp(x, ex[:, None]), np.ldexp(y, ey[:, None])
    # the reference is evaluated on the rows actually stored (subnormal rows lost bits)
    x_in, y_in = np.ldexp(xs, -ex[:, None]), np.ldexp(ys, -ey[:, None])
    w = np.random.default_rng(2).normal(size=7)
    kw = {"arch": arch, "kind": kind, "backend": backend}

    k = ntkgan.kernel(xs, ys, **kw)
    np.testing.assert_array_equal(k, np.ldexp(ntkgan.kernel(x_in, y_in, **kw), ex[:, None] + ey[None, :]))
    k_sym = ntkgan.kernel(xs, **kw)
    np.testing.assert_array_equal(k_sym, np.ldexp(ntkgan.kernel(x_in, **kw), ex[:, None] + ex[None, :]))
    np.testing.assert_array_equal(k_sym, k_sym.T)

    # weighted sums: the y exponents go into the weights, which stay exact here (no underflow)
    w_in = np.ldexp(w, ey)
    f, g = ntkgan.kernel_value_and_grad(xs, ys, w, **kw)
    f_ref, g_ref = ntkgan.kernel_value_and_grad(x_in, y_in, w_in, **kw)
    np.testing.assert_array_equal(f, np.ldexp(f_ref, ex))
    np.testing.assert_array_equal(g, g_ref)
    f_mv = ntkgan.kernel_matvec(xs, ys, w, **kw)
    np.testing.assert_array_equal(f_mv, np.ldexp(ntkgan.kernel_matvec(x_in, y_in, w_in, **kw), ex))
    np.testing.assert_array_equal(ntkgan.kernel_grad(xs, ys, w, **kw), ntkgan.kernel_grad(x_in, y_in, w_in, **kw))
    np.testing.assert_allclose(f_mv, f, rtol=1e-14, atol=0)
    assert np.isfinite(g).all() and f[5] == 0.0


@pytest.mark.parametrize("arch", HOMOGENEOUS, ids=str)
def test_fake_points_among_the_training_points(arch):
    """``y = [x; z]`` (the discriminator at its own fake points) with collapsed fake points: the same as
    the plain evaluation, and the homogeneity identity against the points brought back into range."""
    x = np.ldexp(_points(3, 6), -700)
    z = _points(4, 5)
    y = np.vstack([x, z])
    w = np.random.default_rng(5).normal(size=11)
    f, g = ntkgan.kernel_value_and_grad(x, y, w, arch=arch)
    f_none, g_none = ntkgan.kernel_value_and_grad(x, None, w[:6], arch=arch)
    x_in = np.ldexp(x, 700)
    # grad_1 k(x, z_j) does not depend on |x|; the x-x block is 1-homogeneous in y = x
    f_ref = np.ldexp(ntkgan.kernel_matvec(x_in, z, w[6:], arch=arch), -700)
    g_ref = ntkgan.kernel_grad(x_in, z, w[6:], arch=arch)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=0)  # the x-x terms are 2^-700 smaller
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-12 * np.abs(g_ref).max())
    np.testing.assert_array_equal(f_none, np.ldexp(ntkgan.kernel_matvec(x_in, None, w[:6], arch=arch), -1400))
    np.testing.assert_array_equal(g_none, np.ldexp(ntkgan.kernel_grad(x_in, None, w[:6], arch=arch), -700))


def test_overflow_raises():
    x = np.array([[1e300, 0.0], [1.0, 1.0]])
    with pytest.raises(FloatingPointError, match="the kernel matrix overflows float64"):
        ntkgan.kernel(x, arch=HOMOGENEOUS[0])


def test_non_homogeneous_kernels_still_refuse_out_of_range_rows():
    x = np.array([[1e-120, 0.0], [1.0, 1.0]])
    for arch in (Mlp(), Mlp(b_std=0.0, parameterization="standard"), Mlp(activation="erf", b_std=0.0)):
        with pytest.raises(ValueError, match=r"x row 0 has largest \|entry\| 1e-120, outside the supported"):
            ntkgan.kernel(x, arch=arch)
