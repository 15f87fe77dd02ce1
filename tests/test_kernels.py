r"""Backend-independent properties, identities and validation of python/ntkgan/kernels.py.

Every test takes the ``backend`` fixture (tests/conftest.py), so it runs on each installed backend
("rust" and "jax").  References are independent of the code under test: exact symmetry, linear algebra
(eigenvalues, ``K @ v``), centred finite differences of ``kernel`` for ``kernel_grad``, closed forms
derived by hand from the layer recursion documented in python/ntkgan/arch.py, and the ReLU table of
/work/shared/notes/effective-dynamics-spec.md section 1.2.  Validation errors are checked against the
messages documented in python/ntkgan/_validation.py, arch.py and backends/__init__.py.

The JAX backend compiles once per (architecture, kind, function, input shape), which costs ~1 s each, so
on JAX the tests draw from the three architectures of :data:`JAX_ARCHS` and use inputs of shapes (5, 3)
and (4, 3) wherever they can; the Rust backend gets every architecture and free shapes.
"""

from __future__ import annotations

import math
import re

import ntkgan
import numpy as np
import pytest
from conftest import assert_close
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ntkgan import Mlp, backends

SQRT2 = math.sqrt(2.0)

#: hypothesis settings for tests that take the (stateless, string-valued) ``backend`` fixture
_SUPPRESS = [*settings.default.suppress_health_check, HealthCheck.function_scoped_fixture]


def _settings(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=_SUPPRESS)


# --------------------------------------------------------------------------------------------------
# architectures (a fixed few, so that JAX's per-architecture compilation is reused)
# --------------------------------------------------------------------------------------------------

SMOOTH_ARCHS = [
    Mlp(depth=2, activation="erf", w_std=1.3, b_std=0.4),
    Mlp(depth=1, activation=("rbf", 0.5), w_std=1.0, b_std=0.0),
    Mlp(depth=2, activation="sigmoid", w_std=1.1, b_std=0.2, parameterization="standard", width=16),
]
#: ReLU family with a bias: the only cusp of k(., y) is x = y
RELU_BIAS_ARCHS = [
    Mlp(depth=2, activation="relu", w_std=1.4, b_std=0.5),
    Mlp(depth=3, activation=("leaky_relu", 0.2), w_std=1.0, b_std=1.0),
    Mlp(depth=1, activation="abs", w_std=0.8, b_std=0.3, parameterization="standard", width=8),
    Mlp(depth=2, activation=("abrelu", -0.5, 2.0), w_std=1.0, b_std=0.7),
]
#: ReLU family without bias: cusps on the whole line through y (and at x = 0)
RELU_NOBIAS_ARCHS = [
    Mlp(depth=2, activation="relu", w_std=SQRT2, b_std=0.0),
    Mlp(depth=1, activation="abs", w_std=1.0, b_std=0.0),
    Mlp(depth=3, activation=("leaky_relu", 0.1), w_std=1.2, b_std=0.0, parameterization="standard", width=4),
]
RELU_ARCHS = RELU_BIAS_ARCHS + RELU_NOBIAS_ARCHS
ALL_ARCHS = SMOOTH_ARCHS + RELU_ARCHS

KINDS = ("ntk", "nngp")


def _shapes(backend: str, *, nmax: int = 7, dmin: int = 1, dmax: int = 5):
    """(n, m, d): free for Rust; one fixed shape for JAX (it compiles once per shape)."""
    if backend == "jax":
        return st.just((5, 4, 3))
    return st.tuples(st.integers(1, nmax), st.integers(1, nmax), st.integers(dmin, dmax))


#: the architectures hypothesis draws from on JAX (it compiles once per architecture and shape)
JAX_ARCHS = [SMOOTH_ARCHS[0], RELU_BIAS_ARCHS[2], RELU_NOBIAS_ARCHS[0]]


def _archs(backend: str, archs: list) -> st.SearchStrategy:
    """All of ``archs`` for Rust; those also in :data:`JAX_ARCHS` for JAX."""
    return st.sampled_from([a for a in archs if a in JAX_ARCHS] if backend == "jax" else archs)


@st.composite
def _points(draw, n: int, d: int, *, special: bool = True, floor: float = 0.0):
    """``(n, d)`` float64 points in [-3, 3]; with ``special`` some rows become zero, duplicated, antipodal
    or huge; entries below ``floor`` in magnitude are set to 0."""
    x = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-3.0, 3.0, allow_subnormal=False)))
    # entries below 1e-50 become 0 (rows of norm < 1e-100 are rejected by design; see _validation)
    x[np.abs(x) < max(floor, 1e-50)] = 0.0
    if special:
        base = x.copy()  # huge rows scale an original row (norms up to 3e6 sqrt(d), not compounded)
        for i in range(n):
            what = draw(st.sampled_from(["keep", "keep", "zero", "dup", "anti", "huge"]))
            j = draw(st.integers(0, n - 1))
            if what == "zero":
                x[i] = 0.0
            elif what == "dup":
                x[i] = x[j]
            elif what == "anti":
                x[i] = -x[j]
            elif what == "huge":
                x[i] = base[j] * draw(st.sampled_from([1e3, 1e6, -1e6]))
    return x


def _call_all(x, y, w, arch, kind, backend):
    """kernel, kernel_grad and kernel_matvec of one case."""
    kw = {"arch": arch, "kind": kind, "backend": backend}
    return (
        ntkgan.kernel(x, y, **kw),
        ntkgan.kernel_grad(x, y, w, **kw),
        ntkgan.kernel_matvec(x, y, w, **kw),
    )


# --------------------------------------------------------------------------------------------------
# hypothesis properties
# --------------------------------------------------------------------------------------------------


@_settings(25)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_symmetric_and_y_none_equals_y_x(backend, data, kind):
    """kernel(x) is exactly symmetric, and equals kernel(x, x) to rtol 1e-12."""
    arch = data.draw(_archs(backend, ALL_ARCHS))
    n, _, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d))
    k_sym = ntkgan.kernel(x, arch=arch, kind=kind, backend=backend)
    assert k_sym.shape == (n, n) and k_sym.dtype == np.float64
    assert np.isfinite(k_sym).all()
    assert np.array_equal(k_sym, k_sym.T)
    k_xx = ntkgan.kernel(x, x, arch=arch, kind=kind, backend=backend)
    assert_close(k_sym, k_xx, rtol=1e-12, atol=1e-13 * np.abs(k_xx).max())


@_settings(25)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_psd(backend, data, kind):
    """The Gram matrix is positive semi-definite: min eigenvalue >= -1e-10 * max eigenvalue."""
    arch = data.draw(_archs(backend, ALL_ARCHS))
    n, _, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d))
    k = ntkgan.kernel(x, arch=arch, kind=kind, backend=backend)
    assert np.isfinite(k).all()
    eig = np.linalg.eigvalsh(k)
    assert eig[-1] >= 0.0
    assert eig[0] >= -1e-10 * eig[-1], f"eigenvalues {eig}"


@_settings(25)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_finite_on_special_points(backend, data, kind):
    """Duplicated, zero, antipodal and huge-norm (1e3, 1e6) points give finite kernels, gradients and
    matvecs, including gradients at the training points themselves (y = x, the cusp)."""
    arch = data.draw(_archs(backend, ALL_ARCHS))
    n, m, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d))
    y = data.draw(_points(m, d))
    if data.draw(st.booleans()):  # share rows with x: pairs at the cusp x = y
        y[: min(n, m)] = x[: min(n, m)]
    w = data.draw(hnp.arrays(np.float64, (m,), elements=st.floats(-2, 2)))
    k, g, kv = _call_all(x, y, w, arch, kind, backend)
    assert k.shape == (n, m) and g.shape == (n, d) and kv.shape == (n,)
    for name, a in (("kernel", k), ("kernel_grad", g), ("kernel_matvec", kv)):
        assert np.isfinite(a).all(), f"{name} not finite for x={x!r}, y={y!r}"
    # the symmetric case: every x_i is also a y_j (gradient at the training points)
    wx = data.draw(hnp.arrays(np.float64, (n,), elements=st.floats(-2, 2)))
    k, g, kv = _call_all(x, None, wx, arch, kind, backend)
    for name, a in (("kernel", k), ("kernel_grad", g), ("kernel_matvec", kv)):
        assert np.isfinite(a).all(), f"{name}(x, None) not finite for x={x!r}"


@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_finite_at_huge_norms_and_zero(backend, scale):
    """Fixed worst cases: zero, duplicated and antipodal rows next to rows of norm ``scale``."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 3))
    x = np.stack([base[0], base[0], -base[0], np.zeros(3), scale * base[1]])
    w = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
    for arch in JAX_ARCHS if backend == "jax" else ALL_ARCHS:
        for kind in KINDS:
            for y in (None, x, scale * x[::-1].copy()):
                k, g, kv = _call_all(x, y, w, arch, kind, backend)
                for name, a in (("kernel", k), ("kernel_grad", g), ("kernel_matvec", kv)):
                    assert np.isfinite(a).all(), f"{name} not finite: {arch}, {kind}, x={x!r}, y={y!r}"


@_settings(25)
@given(data=st.data(), kind=st.sampled_from(KINDS), sym=st.booleans())
def test_matvec_equals_kernel_times_v(backend, data, kind, sym):
    """kernel_matvec(x, y, v) == kernel(x, y) @ v (y = None included)."""
    arch = data.draw(_archs(backend, ALL_ARCHS))
    n, m, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d))
    y = None if sym else data.draw(_points(m, d))
    v = data.draw(hnp.arrays(np.float64, (n if sym else m,), elements=st.floats(-3, 3)))
    k = ntkgan.kernel(x, y, arch=arch, kind=kind, backend=backend)
    kv = ntkgan.kernel_matvec(x, y, v, arch=arch, kind=kind, backend=backend)
    scale = np.abs(k) @ np.abs(v)
    assert kv.shape == (n,)
    assert np.isfinite(kv).all()
    # JAX: XLA compiles the two calls for different shapes (FMA contraction differs), and the erf dual's
    # s^2 = Sxx Syy - Sxy^2, a difference (as in neural-tangents), loses ~1e-16 * (1 + 2 Sxx) relative at
    # large inputs (neural-tangents, which forms all of r^2 so, gave 6e-10 at outputs ~770 and 4e-6 at rows
    # of norm 6.5e5, Sxx ~ 2.4e11).  Rust evaluates the same pair the same way in both.
    rtol = 1e-12 if backend == "rust" else 1e-9
    if backend == "jax" and arch in SMOOTH_ARCHS:
        s_max = arch.w_std**2 * np.max(np.sum(x * x, axis=1)) / d + arch.b_std**2
        rtol += 1e-15 * (1.0 + 2.0 * s_max)
    assert np.all(np.abs(kv - k @ v) <= rtol * scale + 1e-300), f"{kv} vs {k @ v}"


@_settings(25)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_value_and_grad_equals_matvec_and_grad(backend, data, kind):
    """kernel_value_and_grad(x, y, w) == (kernel(x, y) @ w, kernel_grad(x, y, w)), special points included
    (duplicates take the stable path, whose value must be added too)."""
    arch = data.draw(_archs(backend, ALL_ARCHS))
    n, m, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d))
    y = np.concatenate([x[: max(1, n // 2)], data.draw(_points(m, d))])
    w = data.draw(hnp.arrays(np.float64, (y.shape[0],), elements=st.floats(-3, 3)))
    f, g = ntkgan.kernel_value_and_grad(x, y, w, arch=arch, kind=kind, backend=backend)
    k = ntkgan.kernel(x, y, arch=arch, kind=kind, backend=backend)
    assert f.shape == (n,) and g.shape == (n, d)
    scale = np.abs(k) @ np.abs(w)
    assert np.all(np.abs(f - k @ w) <= 1e-12 * scale + 1e-300), f"{f} vs {k @ w}"
    assert_close(g, ntkgan.kernel_grad(x, y, w, arch=arch, kind=kind, backend=backend), rtol=0, atol=0)


def test_value_and_grad_validates_like_kernel_grad():
    arch = ntkgan.Mlp(depth=2)
    x, y = np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="weights"):
        ntkgan.kernel_value_and_grad(x, y, np.ones(3), arch=arch)
    with pytest.raises(ValueError, match="x"):
        ntkgan.kernel_value_and_grad(np.full((3, 2), np.nan), y, np.ones(4), arch=arch)
    f, g = ntkgan.kernel_value_and_grad(np.zeros((0, 2)), y, np.ones(4), arch=arch)
    assert f.shape == (0,) and g.shape == (0, 2)


def _fd_pair_grads(x, y, arch, kind, backend, h):
    """Centred differences ``D[i, a, j] = (k(x_i + h_i e_a, y_j) - k(x_i - h_i e_a, y_j)) / (2 h_i)``.

    The denominator is the actual float64 step ``(x_i + h e_a)_a - (x_i - h e_a)_a``.
    """
    n, d = x.shape
    steps = h[:, None, None] * np.eye(d)[None]
    xp = (x[:, None, :] + steps).reshape(n * d, d)
    xm = (x[:, None, :] - steps).reshape(n * d, d)
    denom = (xp - xm).reshape(n, d, d)[:, np.arange(d), np.arange(d)]
    kp = ntkgan.kernel(xp, y, arch=arch, kind=kind, backend=backend).reshape(n, d, -1)
    km = ntkgan.kernel(xm, y, arch=arch, kind=kind, backend=backend).reshape(n, d, -1)
    return (kp - km) / denom[:, :, None]


def _check_grad_against_fd(x, y, w, arch, kind, backend, *, rel_step, rtol):
    g = ntkgan.kernel_grad(x, y, w, arch=arch, kind=kind, backend=backend)
    h = rel_step * np.maximum(np.linalg.norm(x, axis=1), 1.0)
    pairs = _fd_pair_grads(x, y, arch, kind, backend, h)  # (n, d, m)
    fd = pairs @ w
    # scale of row i: sum_j |w_j| |grad k(x_i, y_j)|, so cancellation between terms is not penalised
    scale = np.abs(pairs) @ np.abs(w)  # (n, d)
    scale = np.maximum(scale, scale.max(axis=1, keepdims=True))
    # rounding floor of the differences: eps |k(x_i, y_j)| / h_i per pair
    k = ntkgan.kernel(x, y, arch=arch, kind=kind, backend=backend)
    noise = 10 * np.finfo(float).eps * (np.abs(k) @ np.abs(w)) / h
    assert g.shape == x.shape and np.isfinite(g).all()
    err = np.abs(g - fd)
    assert np.all(err <= rtol * scale + noise[:, None] + 1e-300), (
        f"max error / scale = {np.max(err / np.maximum(scale, 1e-300)):.3g}\nG={g!r}\nFD={fd!r}"
    )


@_settings(20)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_grad_matches_finite_differences_smooth(backend, data, kind):
    """kernel_grad == centred differences of x -> sum_j w_j k(x, y_j) for erf, sigmoid and rbf."""
    arch = data.draw(_archs(backend, SMOOTH_ARCHS))
    n, m, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d, special=False))
    y = data.draw(_points(m, d, special=False))
    w = data.draw(hnp.arrays(np.float64, (m,), elements=st.floats(-2, 2)))
    _check_grad_against_fd(x, y, w, arch, kind, backend, rel_step=1e-5, rtol=1e-7)


@_settings(20)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_grad_matches_finite_differences_relu_away_from_cusp(backend, data, kind):
    """ReLU family with bias, ``|x_i - y_j| >= 1e-2 max(|x_i|, 1)``: kernel_grad == centred differences.

    Some ``y_j`` are drawn close to an ``x_i`` (relative offset 1e-2 to 1e-1) to test the gradient near
    (not at) the cusp; the FD step is ``1e-6 max(|x_i|, 1)``, far below the distance to the cusp.
    """
    arch = data.draw(_archs(backend, RELU_BIAS_ARCHS))
    n, m, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d, special=False))
    y = data.draw(_points(m, d, special=False))
    for j in range(m):
        if data.draw(st.booleans()):
            i = data.draw(st.integers(0, n - 1))
            u = data.draw(hnp.arrays(np.float64, (d,), elements=st.floats(-1, 1)))
            assume(np.linalg.norm(u) > 0.1)
            r = data.draw(st.floats(1e-2, 1e-1))
            y[j] = x[i] + r * 1.01 * max(np.linalg.norm(x[i]), 1.0) * u / np.linalg.norm(u)
    w = data.draw(hnp.arrays(np.float64, (m,), elements=st.floats(-2, 2)))
    dist = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2)
    assume(np.all(dist >= 1e-2 * np.maximum(np.linalg.norm(x, axis=1), 1.0)[:, None]))
    _check_grad_against_fd(x, y, w, arch, kind, backend, rel_step=1e-6, rtol=1e-6)


@_settings(20)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_grad_matches_finite_differences_relu_no_bias_off_the_lines(backend, data, kind):
    """ReLU family without bias, x_i at distance >= 1e-2 max(|x_i|, 1) from the line through each y_j (the
    cusp set, both directions: |x_i| |sin angle(x_i, y_j)| >= 1e-2 max(|x_i|, 1)): kernel_grad ==
    centred differences (step 1e-6 max(|x_i|, 1))."""
    arch = data.draw(_archs(backend, RELU_NOBIAS_ARCHS))
    n, m, d = data.draw(_shapes(backend, dmin=2))
    x = data.draw(_points(n, d, special=False))
    y = data.draw(_points(m, d, special=False))
    w = data.draw(hnp.arrays(np.float64, (m,), elements=st.floats(-2, 2)))
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    assume(np.all(ny > 1e-3))
    cos = (x @ y.T) / np.maximum(np.outer(nx, ny), 1e-300)
    sin = np.sqrt(np.maximum(1.0 - cos**2, 0.0))
    assume(np.all(nx[:, None] * sin >= 1e-2 * np.maximum(nx, 1.0)[:, None]))
    _check_grad_against_fd(x, y, w, arch, kind, backend, rel_step=1e-6, rtol=1e-6)


def _fd_diag_grad(x, arch, kind, backend, h):
    """Centred differences of the diagonal: ``D[i, a] = d/dx_a k(x, x)`` at ``x_i`` with step ``h_i``.

    The diagonal values come from one symmetric call, ``diag(kernel(Z))``, with ``Z`` all shifted points.
    """
    n, d = x.shape
    steps = h[:, None, None] * np.eye(d)[None]
    zp = (x[:, None, :] + steps).reshape(n * d, d)
    zm = (x[:, None, :] - steps).reshape(n * d, d)
    kp = np.diag(ntkgan.kernel(zp, arch=arch, kind=kind, backend=backend)).reshape(n, d)
    km = np.diag(ntkgan.kernel(zm, arch=arch, kind=kind, backend=backend)).reshape(n, d)
    denom = (zp - zm).reshape(n, d, d)[:, np.arange(d), np.arange(d)]
    return (kp - km) / denom




@_settings(25)
@given(
    data=st.data(),
    kind=st.sampled_from(KINDS),
    d=st.integers(1, 8),
)
def test_grad_cusp_convention(backend, data, kind, d):
    """At the cusp y = x: ``kernel_grad(x, x[i:i+1], [1])[i] == 1/2 d/dx k(x, x)`` (ReLU family, with and
    without bias, d = 1..8), the derivative of the diagonal taken by centred differences.

    ``k(x, x)`` is affine in ``|x|^2`` for the ReLU family (Sigma_dot = (a^2+b^2)/2 is constant at
    theta = 0), so the centred difference is exact up to rounding and a large step (1e-2 |x_i|) is used.
    """
    arch = data.draw(_archs(backend, RELU_ARCHS))
    n = 3
    if backend == "jax":  # one compilation per shape: d = 1..8 on Rust only
        d = 3
    x = data.draw(_points(n, d, special=False))
    i = data.draw(st.integers(0, n - 1))
    assume(np.linalg.norm(x[i]) > 1e-3)
    g = ntkgan.kernel_grad(x, x[i : i + 1], [1.0], arch=arch, kind=kind, backend=backend)
    assert g.shape == (n, d)
    fd = _fd_diag_grad(x[i : i + 1], arch, kind, backend, np.array([1e-2 * np.linalg.norm(x[i])]))[0]
    k_ii = ntkgan.kernel(x[i : i + 1], arch=arch, kind=kind, backend=backend)[0, 0]
    scale = max(np.abs(fd).max(), k_ii / np.linalg.norm(x[i]))
    assert_close(g[i], 0.5 * fd, rtol=1e-9, atol=1e-9 * scale)


@_settings(15)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_grad_at_training_points(backend, data, kind):
    """kernel_grad(x, x, w)[i] = sum_{j != i} w_j d/dx k(x_i, x_j) + w_i/2 d/dx k(x_i, x_i), each term by
    centred differences (points kept apart so that only j = i is at a cusp); y = None gives the same.

    Steps: 1e-6 max(|x_i|, 1) for the pairs; for the diagonal 1e-2 max(|x_i|, 1) (ReLU family, where
    k(x, x) is quadratic) or 1e-4 max(|x_i|, 1) (smooth activations)."""
    arch = data.draw(_archs(backend, RELU_BIAS_ARCHS + SMOOTH_ARCHS))
    n, _, d = data.draw(_shapes(backend))
    x = data.draw(_points(n, d, special=False))
    norms = np.maximum(np.linalg.norm(x, axis=1), 1.0)
    dist = np.linalg.norm(x[:, None] - x[None], axis=2) + np.eye(n) * 1e9
    assume(np.all(dist >= 5e-2 * norms[:, None]))
    w = data.draw(hnp.arrays(np.float64, (n,), elements=st.floats(-2, 2)))
    g = ntkgan.kernel_grad(x, None, w, arch=arch, kind=kind, backend=backend)
    g_xx = ntkgan.kernel_grad(x, x, w, arch=arch, kind=kind, backend=backend)
    assert_close(g, g_xx, rtol=1e-12, atol=1e-12 * np.abs(g_xx).max())
    pairs = _fd_pair_grads(x, x, arch, kind, backend, 1e-6 * norms)  # (n, d, n)
    relu = isinstance(arch.activation, ntkgan.ABRelu)
    diag = _fd_diag_grad(x, arch, kind, backend, (1e-2 if relu else 1e-4) * norms)
    idx = np.arange(n)
    pairs[idx, :, idx] = 0.5 * diag  # the cusp-straddling pair difference is replaced by the convention
    fd = pairs @ w
    scale = (np.abs(pairs) @ np.abs(w)).max(axis=1, keepdims=True)
    k = ntkgan.kernel(x, arch=arch, kind=kind, backend=backend)
    noise = 10 * np.finfo(float).eps * (np.abs(k) @ np.abs(w)) / (1e-6 * norms)  # rounding floor of FD
    assert np.all(np.abs(g - fd) <= 1e-6 * scale + noise[:, None] + 1e-300), f"G={g!r}\nFD={fd!r}"


# --------------------------------------------------------------------------------------------------
# "a valid result or exactly the documented ValueError" on junk inputs
# --------------------------------------------------------------------------------------------------

_DOCUMENTED = [
    r"(x|y|weights|v) must be an array, got None",
    r"(x|y|weights|v) could not be converted to an array: .*",
    r"(x|y|weights|v) must hold real numbers, got dtype \S+",
    r"x must be 2-D of shape \(n, d\), got shape \(.*\)",
    r"y must be 2-D of shape \(n, d\), got shape \(.*\)",
    r"(weights|v) must be 1-D of shape \(n,\), got shape \(.*\)",
    r"(x|y) contains (NaN|inf) at row \d+",
    r"(weights|v) contains (NaN|inf) at index \d+",
    r"y has \d+ features but x has \d+",
    r"(weights|v) has length \d+ but y has \d+ rows",
    r"kind must be one of \('ntk', 'nngp'\), got .*",
    r"(x|y) must have at least one feature, got shape \(.*\)",
    r"(x|y) row \d+ has largest \|entry\| \S+, outside the supported range \[1e-100, 1e\+50\] \(or exactly 0\); "
    r"rescale the data",
]


def _junk(max_side: int = 4):
    finite = st.floats(-1e6, 1e6, allow_subnormal=False)
    floats = st.one_of(finite, finite, st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0]))
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side)
    arrays = st.one_of(
        hnp.arrays(np.float64, shapes, elements=floats),
        hnp.arrays(np.float32, shapes, elements=st.floats(-1e3, 1e3, width=32)),
        hnp.arrays(np.int64, shapes, elements=st.integers(-10**6, 10**6)),
        hnp.arrays(np.int8, shapes),
        hnp.arrays(np.bool_, shapes),
        hnp.arrays(np.complex128, shapes, elements=st.complex_numbers(max_magnitude=10)),
        hnp.arrays(np.dtype("U3"), shapes),
    )
    lists = st.one_of(
        st.lists(st.lists(floats, max_size=3), max_size=3),  # possibly ragged
        st.lists(floats, max_size=4),
    )
    return st.one_of(arrays, arrays, arrays, lists, st.none(), st.just("abc"), st.just(object()))


def _is_documented(msg: str) -> bool:
    return any(re.fullmatch(p, msg, flags=re.DOTALL) for p in _DOCUMENTED)


@_settings(60)
@given(
    x=_junk(),
    y=st.one_of(st.none(), _junk()),
    w=_junk(),
    kind=st.sampled_from(["ntk", "nngp", "NTK", None]),
    fn=st.sampled_from(["kernel", "kernel_grad", "kernel_matvec"]),
)
def test_valid_result_or_documented_error(backend, x, y, w, kind, fn):
    """Random junk: either exactly a ValueError with a documented message, or a finite result of the
    documented shape."""
    arch = SMOOTH_ARCHS[0]
    kw = {"arch": arch, "kind": kind, "backend": backend}
    try:
        if fn == "kernel":
            out = ntkgan.kernel(x, y, **kw)
        elif fn == "kernel_grad":
            out = ntkgan.kernel_grad(x, y, w, **kw)
        else:
            out = ntkgan.kernel_matvec(x, y, w, **kw)
    except ValueError as exc:
        assert _is_documented(str(exc)), f"undocumented ValueError: {exc}"
        return
    xa = np.asarray(x)
    n = xa.shape[0]
    m = n if y is None else np.asarray(y).shape[0]
    expected = {"kernel": (n, m), "kernel_grad": xa.shape, "kernel_matvec": (n,)}[fn]
    assert out.shape == expected and out.dtype == np.float64
    assert np.isfinite(out).all(), f"non-finite {fn} for x={x!r}, y={y!r}, w={w!r}"


# --------------------------------------------------------------------------------------------------
# identities and closed forms
# --------------------------------------------------------------------------------------------------


def _pts(n=5, d=3, seed=1):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("kind", KINDS)
def test_leaky_relu_zero_is_relu_and_abs_is_abrelu(backend, kind):
    """LeakyRelu(0) == Relu, Abs == ABRelu(-1, 1), Identity == ABRelu(1, 1): the same numbers, bit for bit
    (kernel, gradient and matvec on Rust; the kernel on JAX, whose compilations are costly)."""
    x, y = _pts(5, 3, 1), _pts(4, 3, 2)
    w = np.array([1.0, -0.5, 2.0, 0.3])
    pairs = ((("leaky_relu", 0.0), "relu"), ("abs", ("abrelu", -1.0, 1.0)), ("identity", ("abrelu", 1, 1)))
    for a, b in pairs:
        ka = Mlp(depth=2, activation=a, b_std=0.3)
        kb = Mlp(depth=2, activation=b, b_std=0.3)
        if backend == "jax":
            got = [ntkgan.kernel(x, y, arch=ka, kind=kind, backend=backend)]
            ref = [ntkgan.kernel(x, y, arch=kb, kind=kind, backend=backend)]
        else:
            got, ref = _call_all(x, y, w, ka, kind, backend), _call_all(x, y, w, kb, kind, backend)
        for fa, fb in zip(got, ref):
            assert np.array_equal(fa, fb)


def _identity_net_reference(x, y, arch: Mlp):
    """NNGP and NTK of the linear network (activation ABRelu(1, 1): Sigma_dot = 1, Sigma' = Sigma)."""
    w2, b2 = arch.w_std**2, arch.b_std**2
    d = x.shape[1]
    s = x @ y.T / d
    t = np.zeros_like(s)
    n_in = d
    for layer in range(arch.depth + 1):
        bias2 = b2 if layer < arch.depth else 0.0  # readout without bias
        if arch.parameterization == "ntk":
            s = w2 * s + bias2
            t = s + w2 * t
        else:
            t = n_in * s + 1.0 + w2 * t
            s = w2 * s + bias2
        n_in = arch.width
    return s, t


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_identity_network_is_affine_in_inner_product(backend, depth, param):
    r"""Identity activation: NNGP = w^{2(L+1)} <x, y>/d + b^2 (w^2 + ... + w^{2L}) (closed form), and the
    NTK follows the affine Dense recursion alone."""
    if backend == "jax" and (depth, param) not in {(1, "ntk"), (3, "standard")}:
        pytest.skip("JAX compiles per architecture: two of the four cases suffice there")
    arch = Mlp(depth=depth, activation="identity", w_std=1.3, b_std=0.6, parameterization=param, width=7)
    x, y = _pts(5, 3, 3), _pts(4, 3, 4)
    w2, b2, L = arch.w_std**2, arch.b_std**2, depth
    nngp_closed = w2 ** (L + 1) * (x @ y.T) / 3 + b2 * sum(w2**k for k in range(1, L + 1))
    s, t = _identity_net_reference(x, y, arch)
    assert_close(s, nngp_closed, rtol=1e-13, atol=1e-13 * np.abs(s).max())
    kw = {"arch": arch, "backend": backend}
    atol = 1e-12 * np.abs(s).max()
    assert_close(ntkgan.kernel(x, y, kind="nngp", **kw), nngp_closed, rtol=1e-12, atol=atol)
    assert_close(ntkgan.kernel(x, y, kind="ntk", **kw), t, rtol=1e-12, atol=1e-12 * np.abs(t).max())
    # the gradient of the linear-in-<x,y> kernel is exactly sum_j w_j c y_j
    wts = np.array([0.5, -1.0, 2.0, 0.25])
    c_nngp = w2 ** (L + 1) / 3
    assert_close(ntkgan.kernel_grad(x, y, wts, kind="nngp", **kw), np.outer(np.ones(5), wts @ y) * c_nngp,
                 rtol=1e-12, atol=1e-12 * c_nngp * np.abs(wts @ y).max())


def test_rbf_preset_is_gaussian_kernel(backend):
    r"""``Mlp(depth=1, activation=("rbf", 0.5), b_std=0, w_std=1)``: NNGP = exp(-|x - y|^2 / (2 d)) and
    NTK = exp(-|x - y|^2 / (2 d)) (1 + <x, y>/d)  (Theta_1 = <x,y>/d, Theta' = 2 gamma Sigma' Theta_1,
    readout Theta = Sigma' + Theta')."""
    arch = Mlp(depth=1, activation=("rbf", 0.5), b_std=0.0, w_std=1.0)
    x, y = _pts(5, 3, 5), _pts(4, 3, 6)
    d = 3
    sq = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    gauss = np.exp(-0.5 * sq / d)
    assert_close(ntkgan.kernel(x, y, arch=arch, kind="nngp", backend=backend), gauss, rtol=1e-12)
    assert_close(ntkgan.kernel(x, y, arch=arch, kind="ntk", backend=backend), gauss * (1 + x @ y.T / d),
                 rtol=1e-12, atol=1e-14)
    # grad of sum_j w_j exp(-|x - y_j|^2/(2d)) = sum_j w_j k_j (y_j - x)/d
    w = np.array([1.0, -2.0, 0.5, 0.75])
    ref = ((gauss * w)[:, :, None] * (y[None, :, :] - x[:, None, :])).sum(1) / d
    assert_close(ntkgan.kernel_grad(x, y, w, arch=arch, kind="nngp", backend=backend), ref,
                 rtol=1e-11, atol=1e-13)


@_settings(15)
@given(
    data=st.data(),
    kind=st.sampled_from(KINDS),
    c=st.floats(1e-3, 1e3),
    p=st.integers(-8, 8),
)
def test_relu_no_bias_homogeneity(backend, data, kind, c, p):
    """No-bias ReLU family: k(c x, y) = k(x, c y) = c k(x, y) for c > 0, and grad k(2^p x, y) = grad k(x, y).

    Holds for the NNGP in both parameterizations and for the NTK in the "ntk" one (the "standard" NTK has
    the bias-gradient constant 1 of every Dense layer and is not homogeneous).  The gradient is compared
    at a power-of-two scale, which is exact in float64: ``c x`` rounded can leave the ray through ``y_j``
    by an ulp when ``x`` is parallel to ``y_j``, and the gradient is discontinuous across that ray."""
    arch = data.draw(_archs(backend, RELU_NOBIAS_ARCHS))
    assume(not (kind == "ntk" and arch.parameterization == "standard"))
    n, m, d = data.draw(_shapes(backend))
    # no entry so small that its square underflows (see test_regression_finite_at_underflowing_norms)
    x = data.draw(_points(n, d, special=False, floor=1e-100))
    y = data.draw(_points(m, d, special=False, floor=1e-100))
    w = data.draw(hnp.arrays(np.float64, (m,), elements=st.floats(-2, 2)))
    kw = {"arch": arch, "kind": kind, "backend": backend}
    k = ntkgan.kernel(x, y, **kw)
    atol = 1e-11 * c * np.abs(k).max()
    assert_close(ntkgan.kernel(c * x, y, **kw), c * k, rtol=1e-11, atol=atol)
    assert_close(ntkgan.kernel(x, c * y, **kw), c * k, rtol=1e-11, atol=atol)
    g = ntkgan.kernel_grad(x, y, w, **kw)
    gc = ntkgan.kernel_grad(2.0**p * x, y, w, **kw)
    assert_close(gc, g, rtol=1e-9, atol=1e-9 * (np.abs(g).max() + 1e-300))


def _exactly_parallel(u, v) -> bool:
    """All 2x2 minors u_a v_b - u_b v_a vanish in exact (rational) arithmetic of the float64 values."""
    from fractions import Fraction

    fu, fv = [Fraction(t) for t in u], [Fraction(t) for t in v]
    return all(fu[a] * fv[b] == fu[b] * fv[a] for a in range(len(u)) for b in range(a + 1, len(u)))


@_settings(25)
@given(
    data=st.data(),
    kind=st.sampled_from(KINDS),
    d=st.integers(1, 4),
    cs=st.lists(st.floats(1e-2, 1e2), min_size=1, max_size=4),
)
def test_grad_convention_on_the_ray_without_bias(backend, data, kind, d, cs):
    r"""No-bias ReLU family, every ``y_j = c_j x`` exactly parallel to x (c_j > 0): the pair is at the cusp
    s = 0 (kernels.py: "with b_std = 0 ... the whole ray through y"), where ds is taken as 0.  Then

        grad_1 k(x, c x) = c grad_1 k(x, x) = (c/2) grad[k(z, z)]_{z=x} = c k(x, x) x / |x|^2,

    using homogeneity in y and k(z, z) = alpha |z|^2.  In d = 1 every pair of same-sign points is such a
    pair.  x is drawn as m * (+-2^k_a), so that every c x rounds to an exactly parallel vector.
    """
    arch = data.draw(_archs(backend, RELU_NOBIAS_ARCHS))
    assume(not (kind == "ntk" and arch.parameterization == "standard"))
    if backend == "jax":  # one compilation per shape: y of shape (4, 3) only
        d, cs = 3, (cs * 4)[:4]
    mant = data.draw(st.floats(0.1, 10))
    signs = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=d, max_size=d)))
    ks = np.array(data.draw(st.lists(st.integers(-3, 3), min_size=d, max_size=d)))
    x = (mant * signs * 2.0**ks)[None, :]
    y = np.array([c * x[0] for c in cs])
    assert all(_exactly_parallel(x[0], yj) for yj in y)
    w = np.array(data.draw(st.lists(st.floats(-2, 2), min_size=len(cs), max_size=len(cs))))
    kw = {"arch": arch, "kind": kind, "backend": backend}
    g = ntkgan.kernel_grad(x, y, w, **kw)[0]
    kxx = ntkgan.kernel(x, **kw)[0, 0]
    ref = (w @ np.array(cs)) * kxx * x[0] / (x[0] @ x[0])
    scale = (np.abs(w) @ np.array(cs)) * kxx / np.linalg.norm(x[0])
    assert_close(g, ref, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize(
    ("x", "c"),
    [([1.5, 1.0], 80.25431523791542), ([2.5], 0.04), ([0.7], 80.25431523791542 / 0.7)],
)
def test_regression_grad_on_the_ray_exact_examples(backend, x, c):
    """Pinned examples of the ray convention (found by hypothesis): y = c x exactly parallel, no bias."""
    arch = Mlp(depth=2, activation="relu", w_std=SQRT2, b_std=0.0)
    x = np.array([x])
    y = c * x
    assert _exactly_parallel(x[0], y[0])
    g = ntkgan.kernel_grad(x, y, [1.0], arch=arch, backend=backend)[0]
    # Theta(x, x) = 2 (L + 1) |x|^2 / d for this network (see the Durr-table test), L = 2
    ref = c * 6.0 * x[0] / x.shape[1]
    assert_close(g, ref, rtol=1e-10)


@pytest.mark.parametrize("t", [1e-60, 1e-100])
def test_regression_finite_at_tiny_norms(backend, t):
    """Points of tiny norm, down to the supported 1e-100, give finite results (the derivatives in
    |x|^2/d grow like 1/|x|: tangents are seeded along scaled directions); found by hypothesis: no-bias
    ReLU, x = (3.7e-160, 0), y = (1, 1) gave NaN."""
    x = np.array([[t, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, -t, 0.0], [0.0, 0.0, t], [2.0, -1.0, 0.5]])
    w = np.array([1.0, 0.5, -2.0, 0.25, 1.5])
    for arch in JAX_ARCHS if backend == "jax" else ALL_ARCHS:
        for kind in KINDS:
            for y in (None, x[1:], x[::-1][:4].copy()):
                k, g, kv = _call_all(x, y, w if y is None else w[: len(y)], arch, kind, backend)
                for name, a in (("kernel", k), ("kernel_grad", g), ("kernel_matvec", kv)):
                    assert np.isfinite(a).all(), f"{name} not finite: {arch}, {kind}, x={x!r}, y={y!r}"


@pytest.mark.parametrize("t", [3.7e-160, 6.21776445e-237, 5e-324, 1e51, 1e300])
@pytest.mark.parametrize("where", ["x", "y"])
def test_out_of_range_norms_are_rejected(backend, t, where):
    """Rows of norm outside [1e-100, 1e50] (not exactly 0) raise the documented ValueError: |x|^2 and
    the reciprocals near the cusp leave float64's range there, and neural-tangents silently returns wrong
    or non-PSD matrices (x = 6.2e-237 made a leaky-ReLU standard NTK Gram matrix indefinite)."""
    good = np.array([[1.0, 0.5], [0.0, 0.0]])
    bad = np.array([[1.0, 0.5], [t, 0.0]])
    x, y = (bad, good) if where == "x" else (good, bad)
    with pytest.raises(ValueError, match=rf"{where} row 1 has largest \|entry\| .* supported range"):
        ntkgan.kernel(x, y, arch=SMOOTH_ARCHS[0], backend=backend)


#: Durr et al. table (effective-dynamics-spec.md section 1.2): L -> Theta(orthogonal), 4 decimals
DURR_ORTH = {1: 0.3183, 2: 0.6857, 3: 1.0604, 4: 1.4304, 10: 3.4794}


@pytest.mark.parametrize("depth", sorted(DURR_ORTH))
def test_relu_ntk_two_numbers_durr_table(backend, depth):
    r"""ReLU NTK at |z|^2 = d, same and orthogonal inputs, against Durr et al.'s table.

    Correspondence: the table is the NTK-parameterised ReLU net with sigma_w^2 = 2, no bias and L hidden
    layers, whose **readout has weight variance 1**.  Our ``Mlp(depth=L, activation="relu",
    w_std=sqrt(2), b_std=0)`` has the same hidden layers but a readout with ``w_std^2 = 2``; in the NTK
    parameterization a bias-free Dense maps ``Theta <- w^2 (Sigma' + Sigma_dot Theta)``, so the readout's
    ``w^2`` only scales the kernel:

        Theta_ntkgan = 2 * Theta_Durr,  i.e. Theta_ntkgan(same) = 2 (L + 1) exactly,
        Theta_ntkgan(orth) = 2 * {0.3183, 0.6857, 1.0604, 1.4304, ..., 3.4794 (L = 10)}.

    Worked L = 1: Sigma_1 = 2 <x,y>/d = 0 (orth), Sigma_1xx = 2; ReLU at theta = pi/2 gives
    Sigma' = s/(2 pi) = 1/pi and Theta_1 = 0, so Theta = 2 (1/pi + 0) = 2/pi = 2 * 0.3183.
    """
    if backend == "jax" and depth not in (1, 4):
        pytest.skip("JAX compiles per architecture: depths 1 and 4 suffice there")
    d = 6
    z = math.sqrt(d) * np.eye(d)[:3]  # three orthonormal directions scaled to |z|^2 = d
    arch = Mlp(depth=depth, activation="relu", w_std=SQRT2, b_std=0.0, parameterization="ntk")
    theta = ntkgan.kernel(z, arch=arch, kind="ntk", backend=backend)
    assert_close(np.diag(theta), np.full(3, 2.0 * (depth + 1)), rtol=4e-15)
    off = theta[~np.eye(3, dtype=bool)]
    assert np.all(np.abs(off / 2 - DURR_ORTH[depth]) <= 5e-5 + 1e-12), f"Theta(orth)/2 = {off / 2}"
    # the same numbers from the closed-form recursion in numpy (exact reference at 1e-13)
    s_same, s_orth, t_orth = 2.0, 0.0, 0.0  # after the first Dense: Sigma = 2 <x,y>/d, Theta = Sigma
    for _ in range(depth):
        theta_ang = math.atan2(math.sqrt(s_same * s_same - s_orth * s_orth), s_orth)
        sdot = (math.pi - theta_ang) / (2 * math.pi)
        s_orth_new = (math.sqrt(s_same**2 - s_orth**2) + (math.pi - theta_ang) * s_orth) / (2 * math.pi)
        s_same, s_orth = 2.0 * (s_same / 2), 2.0 * s_orth_new
        t_orth = s_orth + 2.0 * sdot * t_orth
    assert_close(off, np.full(6, t_orth), rtol=1e-13)


def _erf_diagonal_reference(x, arch: Mlp):
    """k(x_i, x_i) of an Erf network (NTK parameterization) by the diagonal recursion, in a form without
    cancellation: on the diagonal r = sqrt((1 + 2S)^2 - 4 S^2) = sqrt(1 + 4 S)."""
    act = arch.activation
    w2, b2 = arch.w_std**2, arch.b_std**2
    s = w2 * (x * x).sum(1) / x.shape[1] + b2
    t = s.copy()
    for layer in range(arch.depth):
        sb, tb = act.b**2 * s, act.b**2 * t
        s_act = act.a**2 * 2 / np.pi * np.arctan2(sb, np.sqrt(sb + 0.25)) + act.c**2
        t_act = act.a**2 * 4 / (np.pi * np.sqrt(1 + 4 * sb)) * tb
        s = w2 * s_act + (b2 if layer < arch.depth - 1 else 0.0)
        t = s + w2 * t_act
    return s, t


def test_regression_y_none_equals_y_x_at_norm_3000(backend):
    """Found by hypothesis (JAX backend): Erf NTK with a row 2000 (1, 1, 1); kernel(x) and kernel(x, x)
    must agree to rtol 1e-12 (the cancelling r of the Erf dual amplifies rounding differences; the
    neural-tangents oracle, which computes r = sqrt((1+2Sxx)(1+2Syy) - 4Sxy^2) literally, is 9e-10 off)."""
    x = np.array([[2.0, 2.0, 2.0]] * 4 + [[2000.0, 2000.0, 2000.0]])
    for kind in KINDS:
        k_sym = ntkgan.kernel(x, arch=SMOOTH_ARCHS[0], kind=kind, backend=backend)
        k_xx = ntkgan.kernel(x, x, arch=SMOOTH_ARCHS[0], kind=kind, backend=backend)
        assert_close(k_sym, k_xx, rtol=1e-12, atol=1e-13 * np.abs(k_xx).max(), err_msg=kind)


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6, 1e8, 1e12])
def test_erf_diagonal_accurate_at_huge_norms(backend, scale):
    """Erf network, k(x, x) at |x| up to 1e12: the diagonal must stay finite and accurate.

    r = sqrt((1 + 2 Sxx)(1 + 2 Syy) - 4 Sxy^2) computed literally cancels (to 0 once Sxx ~ 1e16); the
    reference uses r = sqrt(1 + 4 S), and so do both backends (the neural-tangents oracle computes it
    literally: only finite up to 1e6).
    """
    arch = Mlp(depth=2, activation=("erf", 1.0, 0.7, 0.1), w_std=1.3, b_std=0.4)
    x = scale * np.array([[1.0, -0.5, 0.25], [0.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.1, 0.2, 0.3], [-1, -1, -1]])
    s_ref, t_ref = _erf_diagonal_reference(x, arch)
    for kind, ref in (("nngp", s_ref), ("ntk", t_ref)):
        k = ntkgan.kernel(x, arch=arch, kind=kind, backend=backend)
        assert_close(np.diag(k), ref, rtol=1e-10, err_msg=f"{kind} at |x| ~ {scale:g}")


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------

ARCH = SMOOTH_ARCHS[0]


def _call(fn, x, y=None, w=None, **kw):
    kw = {"arch": ARCH, **kw}
    if fn == "kernel":
        return ntkgan.kernel(x, y, **kw)
    if w is None:
        w = np.ones(len(x) if y is None else len(y))
    return getattr(ntkgan, fn)(x, y, w, **kw)


FNS = ["kernel", "kernel_grad", "kernel_matvec"]


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_inputs_name_argument_and_row(backend, fn, bad):
    what = "NaN" if np.isnan(bad) else "inf"
    x = _pts(4, 2)
    y = _pts(3, 2, 2)
    xb = x.copy()
    xb[2, 1] = bad
    with pytest.raises(ValueError, match=rf"^x contains {what} at row 2$"):
        _call(fn, xb, y, backend=backend)
    with pytest.raises(ValueError, match=rf"^x contains {what} at row 2$"):
        _call(fn, xb, None, backend=backend)
    yb = y.copy()
    yb[1, 0] = bad
    with pytest.raises(ValueError, match=rf"^y contains {what} at row 1$"):
        _call(fn, x, yb, backend=backend)
    if fn != "kernel":
        name = "weights" if fn == "kernel_grad" else "v"
        wb = np.ones(3)
        wb[2] = bad
        with pytest.raises(ValueError, match=rf"^{name} contains {what} at index 2$"):
            _call(fn, x, y, wb, backend=backend)


@pytest.mark.parametrize("fn", FNS)
def test_wrong_ndim(backend, fn):
    x = _pts(4, 2)
    with pytest.raises(ValueError, match=r"^x must be 2-D of shape \(n, d\), got shape \(4,\)$"):
        _call(fn, x[:, 0], None, np.ones(4), backend=backend)
    with pytest.raises(ValueError, match=r"^x must be 2-D of shape \(n, d\), got shape \(4, 2, 1\)$"):
        _call(fn, x[:, :, None], None, np.ones(4), backend=backend)
    with pytest.raises(ValueError, match=r"^x must be 2-D of shape \(n, d\), got shape \(\)$"):
        _call(fn, 3.0, None, np.ones(1), backend=backend)
    with pytest.raises(ValueError, match=r"^y must be 2-D of shape \(n, d\), got shape \(2,\)$"):
        _call(fn, x, x[0], np.ones(2), backend=backend)
    if fn != "kernel":
        name = "weights" if fn == "kernel_grad" else "v"
        with pytest.raises(ValueError, match=rf"^{name} must be 1-D of shape \(n,\), got shape \(4, 1\)$"):
            _call(fn, x, None, np.ones((4, 1)), backend=backend)


@pytest.mark.parametrize("fn", FNS)
def test_mismatched_features_and_lengths(backend, fn):
    x, y = _pts(4, 2), _pts(5, 3)
    with pytest.raises(ValueError, match=r"^y has 3 features but x has 2$"):
        _call(fn, x, y, np.ones(5), backend=backend)
    if fn != "kernel":
        name = "weights" if fn == "kernel_grad" else "v"
        with pytest.raises(ValueError, match=rf"^{name} has length 3 but y has 4 rows$"):
            _call(fn, x, None, np.ones(3), backend=backend)
        with pytest.raises(ValueError, match=rf"^{name} has length 4 but y has 5 rows$"):
            _call(fn, x, _pts(5, 2), np.ones(4), backend=backend)


@pytest.mark.parametrize("fn", FNS)
def test_bad_dtypes_and_none(backend, fn):
    x = _pts(3, 2)
    with pytest.raises(ValueError, match=r"^x must hold real numbers, got dtype complex128$"):
        _call(fn, x + 1j, backend=backend)
    with pytest.raises(ValueError, match=r"^x must hold real numbers, got dtype <U1$"):
        _call(fn, np.array([["a", "b"]]), np.ones((1, 2)), backend=backend)
    with pytest.raises(ValueError, match=r"^x must hold real numbers, got dtype object$"):
        _call(fn, np.array([[1.0, None]], dtype=object), np.ones((1, 2)), backend=backend)
    with pytest.raises(ValueError, match=r"^x (could not be converted to an array|must hold real numbers)"):
        _call(fn, [[1.0, 2.0], [3.0]], np.ones((1, 2)), backend=backend)
    with pytest.raises(ValueError, match=r"^x must be an array, got None$"):
        _call(fn, None, x, backend=backend)
    if fn != "kernel":
        name = "weights" if fn == "kernel_grad" else "v"
        with pytest.raises(ValueError, match=rf"^{name} must be an array, got None$"):
            getattr(ntkgan, fn)(x, x, None, arch=ARCH, backend=backend)


@pytest.mark.parametrize("fn", FNS)
def test_unknown_kind_and_bad_arch(backend, fn):
    x = _pts(3, 2)
    with pytest.raises(ValueError, match=r"^kind must be one of \('ntk', 'nngp'\), got 'NTK'$"):
        _call(fn, x, kind="NTK", backend=backend)
    with pytest.raises(ValueError, match=r"^kind must be one of \('ntk', 'nngp'\), got None$"):
        _call(fn, x, kind=None, backend=backend)
    with pytest.raises(ValueError, match=r"^arch must be an ntkgan.Mlp, got str$"):
        _call(fn, x, arch="relu", backend=backend)
    with pytest.raises(ValueError, match=r"^arch must be an ntkgan.Mlp, got dict$"):
        _call(fn, x, arch={"depth": 2}, backend=backend)


@pytest.mark.parametrize("fn", FNS)
def test_unknown_backend(fn, monkeypatch):
    x = _pts(5, 3)
    monkeypatch.delenv("NTKGAN_BACKEND", raising=False)
    with pytest.raises(ValueError, match=r"^backend must be one of \('rust', 'jax'\), got 'torch'$"):
        _call(fn, x, backend="torch")
    with pytest.raises(ValueError, match=r"^backend must be one of \('rust', 'jax'\), got 3$"):
        _call(fn, x, backend=3)
    monkeypatch.setenv("NTKGAN_BACKEND", "cuda")
    with pytest.raises(ValueError, match=r"^NTKGAN_BACKEND must be one of \('rust', 'jax'\), got 'cuda'$"):
        _call(fn, x)
    # an explicit valid backend wins over a bad environment variable
    for name in backends.available():
        assert np.isfinite(_call(fn, x, backend=name)).all()


def test_backend_resolution(monkeypatch):
    monkeypatch.delenv("NTKGAN_BACKEND", raising=False)
    assert backends.resolve() == "rust"
    assert backends.resolve("jax") == "jax"
    monkeypatch.setenv("NTKGAN_BACKEND", "jax")
    assert backends.resolve() == "jax"
    assert backends.resolve("rust") == "rust"
    monkeypatch.setenv("NTKGAN_BACKEND", "")
    assert backends.resolve() == "rust"
    assert set(backends.available()) <= set(backends.BACKENDS)


def test_env_backend_is_used(backend, monkeypatch):
    """NTKGAN_BACKEND picks the backend when backend=None: same numbers as the explicit argument."""
    monkeypatch.setenv("NTKGAN_BACKEND", backend)
    x = _pts(5, 3)
    assert np.array_equal(ntkgan.kernel(x, arch=ARCH), ntkgan.kernel(x, arch=ARCH, backend=backend))


@pytest.mark.parametrize("act", ["gelu", ("sin", 1.0, 2.0, 0.3)])
def test_jax_only_activation(backend, act):
    """gelu and sin: a ValueError naming the jax backend on rust; a valid kernel on jax."""
    arch = Mlp(depth=2, activation=act, b_std=0.2)
    x = _pts(5, 3)
    if backend == "rust":
        for fn in FNS:
            with pytest.raises(ValueError, match=r"not implemented in the rust backend; use backend='jax'"):
                _call(fn, x, arch=arch, backend=backend)
    else:
        k = ntkgan.kernel(x, arch=arch, backend=backend)
        assert np.isfinite(k).all() and np.array_equal(k, k.T)
        assert np.linalg.eigvalsh(k)[0] >= -1e-10 * np.linalg.eigvalsh(k)[-1]


@pytest.mark.parametrize("fn", FNS)
def test_zero_features_raise(backend, fn):
    """d = 0 has no kernel (Sigma0 = <x, y>/d): a ValueError naming the argument, from the validator."""
    with pytest.raises(ValueError, match=r"^x must have at least one feature, got shape \(3, 0\)$"):
        _call(fn, np.zeros((3, 0)), None, np.ones(3), backend=backend)
    with pytest.raises(ValueError, match=r"^x must have at least one feature, got shape \(3, 0\)$"):
        _call(fn, np.zeros((3, 0)), np.zeros((2, 0)), np.ones(2), backend=backend)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_inputs(backend, kind):
    kw = {"arch": ARCH, "kind": kind, "backend": backend}
    e, y = np.zeros((0, 3)), _pts(4, 3)
    cases = [
        (ntkgan.kernel(e, **kw), (0, 0)),
        (ntkgan.kernel(e, y, **kw), (0, 4)),
        (ntkgan.kernel(y, e, **kw), (4, 0)),
        (ntkgan.kernel_grad(e, y, np.ones(4), **kw), (0, 3)),
        (ntkgan.kernel_grad(y, e, np.zeros(0), **kw), (4, 3)),
        (ntkgan.kernel_grad(e, None, [], **kw), (0, 3)),
        (ntkgan.kernel_matvec(e, y, np.ones(4), **kw), (0,)),
        (ntkgan.kernel_matvec(y, e, [], **kw), (4,)),
        (ntkgan.kernel_matvec(e, None, [], **kw), (0,)),
    ]
    for out, shape in cases:
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == shape
        assert not out.any()  # empty sums are zero
    with pytest.raises(ValueError, match=r"^y has 2 features but x has 3$"):
        ntkgan.kernel(e, np.zeros((0, 2)), **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_layouts_and_dtypes_give_the_same_numbers(backend, kind):
    """Non-contiguous views, Fortran order, integer, bool, float32 and list inputs are converted to
    C-contiguous float64 and give exactly the numbers of that conversion."""
    rng = np.random.default_rng(7)
    kw = {"arch": ARCH, "kind": kind, "backend": backend}
    big = rng.normal(size=(10, 6))
    wbig = rng.normal(size=10)

    def same(xa, ya, wa):
        xc = np.ascontiguousarray(np.asarray(xa, dtype=np.float64))
        yc = None if ya is None else np.ascontiguousarray(np.asarray(ya, dtype=np.float64))
        wc = np.ascontiguousarray(np.asarray(wa, dtype=np.float64))
        assert np.array_equal(ntkgan.kernel(xa, ya, **kw), ntkgan.kernel(xc, yc, **kw))
        assert np.array_equal(ntkgan.kernel_grad(xa, ya, wa, **kw), ntkgan.kernel_grad(xc, yc, wc, **kw))
        assert np.array_equal(ntkgan.kernel_matvec(xa, ya, wa, **kw), ntkgan.kernel_matvec(xc, yc, wc, **kw))

    # every case below has x of shape (5, 3) and y None or of shape (5, 3) (one JAX compilation)
    x = big[::2, ::2]  # strided rows and columns
    assert not x.flags.c_contiguous and not x.flags.f_contiguous
    same(x, None, wbig[::2])
    same(x, big[1::2, 1::2], wbig[1::2])  # strided y and a strided weight vector
    same(big[:5, :3], big[5:, ::2], wbig[:5])
    same(np.asfortranarray(big[:5, :3]), np.asfortranarray(big[5:, 3:]), wbig[5:])
    same(big[4::-1, :3], None, wbig[4::-1])  # negative strides
    xi = rng.integers(-3, 4, size=(5, 3))
    same(xi, None, np.arange(5))
    same(xi.astype(np.int32), xi[::-1].astype(np.int8), np.arange(5, dtype=np.int16))
    same(xi > 0, None, np.ones(5, dtype=bool))
    same(big[:5, :3].astype(np.float32), None, wbig[:5].astype(np.float32))
    same(big[:5, :3].tolist(), big[5:, :3].tolist(), [1.0, -2.0, 0.5, 0.0, 3.0])


def test_inputs_are_not_modified(backend):
    x, y, w = _pts(5, 3), _pts(4, 3, 2), np.array([1.0, 2.0, -1.0, 0.5])
    copies = [a.copy() for a in (x, y, w)]
    _call_all(x, y, w, ARCH, "ntk", backend)
    for a, c in zip((x, y, w), copies):
        assert np.array_equal(a, c)
