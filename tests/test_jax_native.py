"""Tests of the native JAX kernels, ``python/ntkgan/backends/_jax_native.py`` (no neural-tangents).

References: the Rust backend (``ntkgan._core``) to relative 1e-10 on random architectures and inputs,
including exact duplicates, zero rows and exactly parallel rows (the cusp convention of the ReLU family:
gradients at ``x = y`` compared with Rust's); neural-tangents' ``arch.to_stax()`` (the oracle) to 1e-12
away from coincident points, when it is importable (the pinned set: jax 0.4.30 + neural-tangents 0.6.5;
on current JAX it is absent and those tests skip with the reason); plain linear algebra (``K @ v``,
symmetry, 2-homogeneity, tiling).

The module compiles once per (architecture, kind, tile shape), hence the modest ``max_examples``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import ntkgan
import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given
from hypothesis import strategies as st
from pair_checks import RTOL, inputs, usable_columns, usable_pairs, usable_points
from pair_checks import agree as _agree
from pair_checks import archs as _archs
from pair_checks import describe as _describe
from pair_checks import slow_settings as _settings

pytest.importorskip("jax", reason="JAX is not installed (pip install jax)")

from ntkgan.backends import _jax_native as jn

KINDS = ("ntk", "nngp")

requires_rust = pytest.mark.skipif(
    "rust" not in ntkgan.backends.available(),
    reason="the Rust extension ntkgan._core is not built (maturin develop)",
)


def _neural_tangents():
    """neural-tangents, or a skip naming why it is unavailable (it does not import on current JAX)."""
    try:
        import neural_tangents
    except Exception as exc:  # noqa: BLE001 - ImportError, or AttributeError etc. on a newer jax
        pytest.skip(
            f"neural-tangents (the oracle) is not importable here ({type(exc).__name__}: {exc}); "
            'it needs the pinned set: pip install "ntkgan[oracle]" (jax 0.4.30)'
        )
    return neural_tangents


def _rust(fn: str, *args):
    from ntkgan.backends import _rust

    return getattr(_rust, fn)(*args)


# ----------------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------------


_ACTIVATIONS = ("relu", "leaky_relu", "abs", "identity", "abrelu", "erf", "sigmoid", "rbf")

#: exact multiples used to build exactly parallel rows (powers of two: ``c * x`` is exact)
_MULTIPLES = (-1.0, 2.0, -0.5)
_ARCHS = _archs(_ACTIVATIONS, max_depth=4, max_b_std=3.0)
_INPUTS = inputs(d_max=5, n_max=6, large=0.15, multiples=_MULTIPLES)


def _usable_pairs(arch, x, y):
    return usable_pairs(arch, x, y, _MULTIPLES)


def _draw_case(data):
    """An architecture, a kernel kind and inputs ``x, y`` (drawn in this order)."""
    arch, kind = data.draw(_ARCHS), data.draw(st.sampled_from(KINDS))
    x, y = data.draw(_INPUTS)
    return arch, kind, x, y












def _rtol(arch, x, y) -> float:
    """RTOL, widened for rbf at large norms: ``exp(-gamma D)`` with ``D ~ w^2 |x - y|^2 / d`` rounded to
    ``eps D`` differs by ``~eps gamma D`` relative between any two float64 evaluations."""
    gamma = getattr(arch.activation, "gamma", None)
    if gamma is None:
        return RTOL
    big = max(float((x**2).sum(axis=1).max()), float((y**2).sum(axis=1).max()))
    return max(RTOL, 4e-16 * gamma * arch.w_std**2 * 2.0 * big / x.shape[1])


def _grad_floor(k: np.ndarray, w: np.ndarray, z: np.ndarray) -> float:
    """Absolute floor for gradients: a sum of terms of size ~ |w| |k| / |x|; where they cancel (e.g. a
    smooth kernel at an exact duplicate, whose gradient is 0) float64 keeps ~1e-16 of that size."""
    norms = np.sqrt((z**2).sum(axis=1))
    return RTOL * np.abs(k).max() * np.abs(w).sum() / max(float(norms[norms > 0].min(initial=1.0)), 1e-3)






# ----------------------------------------------------------------------------------------------------
# against the Rust backend
# ----------------------------------------------------------------------------------------------------


@requires_rust
@_settings(20)
@given(data=st.data())
def test_kernel_grad_value_grad_agree_with_rust(data):
    arch, kind, x, y = _draw_case(data)
    y = usable_columns(arch, x, y, _MULTIPLES)
    w = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=y.shape[0])
    case, rtol = _describe(arch, kind, x, y, w), _rtol(arch, x, y)

    k_rust = _rust("kernel", x, y, arch, kind)
    _agree(jn.kernel(x, y, arch, kind), k_rust, "kernel", case, rtol)
    g_rust = _rust("kernel_grad", x, y, w, arch, kind)
    floor = _grad_floor(k_rust, w, np.concatenate([x, y]))
    _agree(jn.kernel_grad(x, y, w, arch, kind), g_rust, "kernel_grad", case, rtol, floor)
    f, g = jn.kernel_value_and_grad(x, y, w, arch, kind)
    _agree(f, k_rust @ w, "kernel_value_and_grad values", case, rtol, rtol * np.abs(k_rust).max() * np.abs(w).sum())
    _agree(g, g_rust, "kernel_value_and_grad gradient", case, rtol, floor)


@requires_rust
@_settings(15)
@given(data=st.data())
def test_symmetric_kernel_and_matvecs_agree_with_rust(data):
    """kernel(x) (y = None: pairs within x, exactly symmetric), kernel_matvec(x, None, u), kernel_matvec(x, y, v)."""
    arch, kind, x, y = _draw_case(data)
    # rows of x now repeat and are multiples of one another
    x = usable_points(arch, np.concatenate([x, y]), _MULTIPLES)
    y = x[::-2]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    u, v = rng.normal(size=x.shape[0]), rng.normal(size=y.shape[0])
    case, rtol = _describe(arch, kind, x, y), _rtol(arch, x, x)

    k = jn.kernel(x, None, arch, kind)
    assert np.array_equal(k, k.T), case
    _agree(k, _rust("kernel", x, None, arch, kind), "kernel(x)", case, rtol)
    kmax = float(np.abs(k).max())
    _agree(jn.kernel_matvec(x, None, u, arch, kind), _rust("kernel_matvec", x, None, u, arch, kind),
           "kernel_matvec(x, None, u)", case, rtol, rtol * kmax * np.abs(u).sum())
    _agree(jn.kernel_matvec(x, y, v, arch, kind), _rust("kernel_matvec", x, y, v, arch, kind),
           "kernel_matvec(x, y, v)", case, rtol, rtol * kmax * np.abs(v).sum())


_CUSP_ACTIVATIONS = [
    "relu",
    ("leaky_relu", 0.2),
    "abs",
    "identity",
    ("abrelu", -0.3, 1.2),
    ("erf", 1.3, 2.0, 0.3),
    "sigmoid",
    ("rbf", 1.5),
]


@requires_rust
@pytest.mark.parametrize(("b_std", "parameterization"), [(0.0, "ntk"), (1.0, "standard"), (0.0, "standard")])
@pytest.mark.parametrize("activation", _CUSP_ACTIVATIONS, ids=str)
def test_cusp_convention_and_special_points_match_rust(activation, b_std, parameterization):
    """Per pair: y_j = x_j exactly (norms 1e-3 .. 1e3), then -x_0, 2 x_1, -x_2 / 2 and 0.  Values and
    every pair's gradient (one-hot weights) against Rust: at x = y the ReLU family has its cusp, where
    ``ds = 0`` gives ``d/dx k(x, y)|_{y=x} = 1/2 d/dx [k(x, x)]``; without bias the multiples and the zero
    row are cusps too.

    For rbf the gradients are compared with the mpmath reference instead: at an exact duplicate of norm
    1e3 Rust's NTK gradient is off by ~2e-8 relative (it sums ``dk/dp 2x/d`` and ``dk/dr y/d`` separately,
    which cancel there; tests/test_backends_agree.py documents it), while this module differentiates
    ``|x - y|^2`` itself (2e-16 against mpmath)."""
    from mp_reference import kernel_and_grad_mp

    arch = ntkgan.Mlp(depth=3, activation=activation, w_std=1.3, b_std=b_std,
                      parameterization=parameterization, width=16)
    rbf = isinstance(arch.activation, ntkgan.Rbf)
    rng = np.random.default_rng(21)
    x = rng.normal(size=(4, 3)) * np.array([[1e-3], [1.0], [30.0], [1e3]])
    y = np.concatenate([x, -x[0:1], 2.0 * x[1:2], -0.5 * x[2:3], np.zeros((1, 3))])
    usable = _usable_pairs(arch, x, y)
    for kind in KINDS:
        k_rust = _rust("kernel", x, y, arch, kind)
        k = jn.kernel(x, y, arch, kind)
        scale = np.abs(k_rust).max(axis=1, keepdims=True)  # per row: the norms differ by 1e6
        assert_close(np.where(usable, k, 0.0) / scale, np.where(usable, k_rust, 0.0) / scale, rtol=RTOL,
                     atol=RTOL, err_msg=kind)
        assert_close(np.diag(k), np.diag(k_rust), rtol=1e-12, err_msg=f"{kind}: diagonal")
        for j in range(y.shape[0]):
            rows = usable[:, j]
            g = jn.kernel_grad(x, y, np.eye(y.shape[0])[j], arch, kind)[rows]
            if rbf:
                g_ref = np.array([[float(v) for v in kernel_and_grad_mp(x[i], y[j], arch, kind)[1]]
                                  for i in np.flatnonzero(rows)]).reshape(g.shape)
            else:
                g_ref = _rust("kernel_grad", x, y, np.eye(y.shape[0])[j], arch, kind)[rows]
            # per row: RTOL of the largest entry, or of |k| / |x| (a smooth kernel's zero gradient at x = y)
            floor = np.abs(k_rust[rows, j]) / np.maximum(np.linalg.norm(x[rows], axis=1), 1e-3)
            gscale = np.maximum(np.abs(g_ref).max(axis=1), floor)[:, None]
            gscale[gscale == 0.0] = 1.0
            assert_close(g / gscale, g_ref / gscale, rtol=RTOL, atol=RTOL,
                         err_msg=f"{kind}: gradients of the pairs (x_i, y_{j}), rows {np.flatnonzero(rows)}")


@requires_rust
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_at_duplicate_is_half_derivative_of_diagonal(kind):
    """ReLU: d/dx k(x, y)|_{y=x} = 1/2 d/dx [k(x, x)], the diagonal's derivative taken by JAX itself."""
    import jax
    import jax.numpy as jnp

    arch = ntkgan.Mlp(depth=3, activation="relu", w_std=1.1, b_std=0.7)
    x = np.random.default_rng(22).normal(size=(3, 4))
    g = np.concatenate([jn.kernel_grad(x[i:i + 1], x[i:i + 1], np.ones(1), arch, kind) for i in range(3)])

    def diag(row):  # k(x, x) through the diagonal forms only: a smooth function of |x|^2
        sxx = arch.w_std**2 * jnp.sum(row * row) / row.size + arch.b_std**2
        th = sxx
        for layer in range(arch.depth):
            bias2 = arch.b_std**2 if layer < arch.depth - 1 else 0.0
            sxx = arch.w_std**2 * (sxx / 2) + bias2
            th = sxx + arch.w_std**2 * (th / 2)
        return th if kind == "ntk" else sxx

    expected = np.stack([0.5 * np.asarray(jax.grad(diag)(jnp.asarray(r))) for r in x])
    assert_close(g, expected, rtol=1e-13)
    g_rust = np.concatenate([_rust("kernel_grad", x[i:i + 1], x[i:i + 1], np.ones(1), arch, kind) for i in range(3)])
    assert_close(g, g_rust, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------
# against neural-tangents (the oracle), away from coincident points
# ----------------------------------------------------------------------------------------------------

_NT_ARCHS = [
    ntkgan.Mlp(depth=3, activation="relu", b_std=1.0),
    ntkgan.Mlp(depth=2, activation="abs", w_std=1.5, b_std=0.0, parameterization="standard", width=16),
    ntkgan.Mlp(depth=4, activation=("leaky_relu", 0.2), w_std=0.8, b_std=2.0),
    ntkgan.Mlp(depth=2, activation="identity", b_std=0.5, parameterization="standard", width=8),
    ntkgan.Mlp(depth=3, activation=("erf", 0.7, 1.3, 0.2), b_std=0.0, parameterization="standard", width=16),
    ntkgan.Mlp(depth=2, activation="sigmoid", w_std=1.4, b_std=0.5),
    ntkgan.Mlp(depth=3, activation=("rbf", 2.0), w_std=0.7, b_std=1.0),
    ntkgan.Mlp(depth=2, activation=("rbf", 0.5), b_std=0.0, parameterization="standard", width=10),
    ntkgan.Mlp(depth=2, activation="gelu", b_std=0.3),
    ntkgan.Mlp(depth=3, activation="gelu", b_std=0.0, parameterization="standard", width=7),
    ntkgan.Mlp(depth=2, activation=("sin", 1.0, 0.8, 0.3)),
    ntkgan.Mlp(depth=3, activation=("sin", 1.3, 1.1, 0.0), w_std=0.7, b_std=0.0, parameterization="standard",
               width=5),
]


def _arch_id(arch: ntkgan.Mlp) -> str:
    return f"{arch.activation}-depth{arch.depth}-b{arch.b_std}-{arch.parameterization}"


@pytest.mark.parametrize("arch", _NT_ARCHS, ids=_arch_id)
def test_matches_neural_tangents_on_generic_points(arch):
    """Kernels and gradients equal neural-tangents' ``arch.to_stax()`` to 1e-12 (generic points, d = 3)."""
    _neural_tangents()
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(6)
    x, y, w = rng.normal(size=(3, 3)), 1.5 * rng.normal(size=(4, 3)), rng.normal(size=4)
    kernel_fn = arch.to_stax()[2]
    k_nt = kernel_fn(x, y, KINDS)
    g_nt = jax.jacrev(lambda xx: [jnp.sum(k @ w) for k in kernel_fn(xx, y, KINDS)])(x)
    for kind, k_ref, g_ref in zip(KINDS, k_nt, g_nt):
        k_ref, g_ref = np.asarray(k_ref), np.asarray(g_ref)
        assert_close(jn.kernel(x, y, arch, kind), k_ref, rtol=1e-12, err_msg=kind)
        assert_close(jn.kernel_grad(x, y, w, arch, kind), g_ref, rtol=1e-12, atol=1e-12 * np.abs(g_ref).max(),
                     err_msg=kind)


# ----------------------------------------------------------------------------------------------------
# structure: symmetry, tiling, types, homogeneity, caching, imports
# ----------------------------------------------------------------------------------------------------

RELU = ntkgan.Mlp(depth=3, activation="relu", b_std=1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_symmetric_kernel_is_exactly_symmetric_and_equals_kernel_xx(kind):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 3))
    x[3] = x[1]
    k = jn.kernel(x, None, RELU, kind)
    assert np.array_equal(k, k.T)
    assert np.array_equal(k, jn.kernel(x, x, RELU, kind))  # ``y is x`` takes the symmetric path
    assert_close(k, jn.kernel(x, x.copy(), RELU, kind), rtol=1e-14)
    assert k[3, 1] == k[1, 1] == k[3, 3]


@pytest.mark.parametrize("activation", ["relu", ("rbf", 1.0)], ids=str)
@pytest.mark.parametrize("entries", [3, 10])
def test_tiled_calls_equal_untiled(monkeypatch, activation, entries):
    """Tiles of 1 x 3 (row and column chunks) and 2 x 5 (row chunks, the last one padded) give the
    same results, with a duplicate in the padded last row chunk."""
    arch = ntkgan.Mlp(depth=2, activation=activation, b_std=0.5)
    rng = np.random.default_rng(9)
    x, y, w = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)), rng.normal(size=5)
    y[1] = x[6]
    full = [
        jn.kernel(x, y, arch, "ntk"), jn.kernel(x, None, arch, "ntk"), jn.kernel_grad(x, y, w, arch, "ntk"),
        jn.kernel_matvec(x, y, w, arch, "ntk"), *jn.kernel_value_and_grad(x, y, w, arch, "ntk"),
    ]
    monkeypatch.setattr(jn, "CHUNK_ENTRIES", entries)
    assert jn._tile_shape(7, 5, arch, 3) == {3: (1, 3), 10: (2, 5)}[entries]
    tiled = [
        jn.kernel(x, y, arch, "ntk"), jn.kernel(x, None, arch, "ntk"), jn.kernel_grad(x, y, w, arch, "ntk"),
        jn.kernel_matvec(x, y, w, arch, "ntk"), *jn.kernel_value_and_grad(x, y, w, arch, "ntk"),
    ]
    for a, b in zip(tiled, full):
        assert_close(a, b, rtol=1e-14, atol=1e-14 * np.abs(b).max())


def test_outputs_are_writable_float64_numpy_arrays():
    rng = np.random.default_rng(10)
    x, y, w = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    outs = [
        jn.kernel(x, y, RELU, "ntk"),
        jn.kernel(x, None, RELU, "ntk"),
        jn.kernel_grad(x, y, w, RELU, "ntk"),
        jn.kernel_matvec(x, y, w, RELU, "ntk"),
        *jn.kernel_value_and_grad(x, y, w, RELU, "ntk"),
    ]
    shapes = [(5, 4), (5, 5), (5, 3), (5,), (5,), (5, 3)]
    for out, shape in zip(outs, shapes):
        assert type(out) is np.ndarray and out.dtype == np.float64 and out.flags.writeable
        assert out.shape == shape


@pytest.mark.parametrize("kind", KINDS)
def test_relative_cusp_threshold_keeps_tiny_inputs_exact(kind):
    """Without bias the ReLU kernels are 2-homogeneous: k(cx, cy) = c^2 k(x, y), grad_x scales by c
    (c = 2^-40: ``Sxx Syy ~ 1e-50``, where an absolute floor such as neural-tangents' 1e-30 zeroes s)."""
    arch = ntkgan.Mlp(depth=3, activation="relu", b_std=0.0)
    rng = np.random.default_rng(11)
    x, y, w = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    c = 2.0**-40
    assert_close(jn.kernel(c * x, c * y, arch, kind), c**2 * jn.kernel(x, y, arch, kind), rtol=1e-13)
    g = jn.kernel_grad(x, y, w, arch, kind)
    assert_close(jn.kernel_grad(c * x, c * y, w, arch, kind), c * g, rtol=1e-12, atol=1e-14 * c * np.abs(g).max())


def test_jit_cache_is_per_arch_and_kind():
    assert jn._compiled(RELU, "ntk") is jn._compiled(ntkgan.Mlp(depth=3, activation="relu", b_std=1.0), "ntk")
    assert jn._compiled(RELU, "ntk") is not jn._compiled(RELU, "nngp")


def test_importing_does_not_import_neural_tangents_and_enables_float64():
    code = (
        "import sys, jax, ntkgan.backends._jax_native as m; "
        "assert 'neural_tangents' not in sys.modules and 'tensorflow' not in sys.modules; "
        "assert jax.config.jax_enable_x64; print(jax.__version__)"
    )
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr


@requires_rust
@pytest.mark.parametrize("kind", KINDS)
def test_rbf_in_higher_dimension_agrees_with_rust(kind):
    """d = 12 takes the generic (non-unrolled) distance code; duplicates included."""
    arch = ntkgan.Mlp(depth=3, activation=("rbf", 0.7), w_std=1.2, b_std=0.5)
    rng = np.random.default_rng(14)
    x, y, w = rng.normal(size=(5, 12)), rng.normal(size=(4, 12)), rng.normal(size=4)
    y[2] = x[1]
    k_rust = _rust("kernel", x, y, arch, kind)
    assert_close(jn.kernel(x, y, arch, kind), k_rust, rtol=RTOL)
    g_rust = _rust("kernel_grad", x, y, w, arch, kind)
    assert_close(jn.kernel_grad(x, y, w, arch, kind), g_rust, rtol=RTOL,
                 atol=max(RTOL * np.abs(g_rust).max(), _grad_floor(k_rust, w, np.concatenate([x, y]))))


def test_vectorised_atan2_and_expm1_are_accurate():
    """The arithmetic-only atan2 (Cephes) and expm1 (Taylor below 1/2) against numpy, within 2 ulp."""
    import jax

    rng = np.random.default_rng(15)
    vals = np.array([-1e300, -3.7, -1.0, -0.5, -1e-3, -1e-300, -0.0, 0.0, 1e-300, 1e-3, 0.5, 1.0, 3.7, 1e300])
    yy, xx = np.meshgrid(vals, vals)
    t = rng.uniform(-np.pi, np.pi, 20_000)
    r = 10.0 ** rng.uniform(-5, 5, 20_000)
    yy, xx = np.concatenate([yy.ravel(), r * np.sin(t)]), np.concatenate([xx.ravel(), r * np.cos(t)])
    keep = ~((xx == 0) & (yy == 0))
    got, ref = np.asarray(jn._atan2(yy[keep], xx[keep])), np.arctan2(yy[keep], xx[keep])
    assert np.all(np.abs(got - ref) <= 2.0 * np.spacing(np.abs(ref)) + 1e-320)
    assert float(jn._angle(0.0, 0.0)) == np.pi / 2 and float(jn._angle(0.0, -1.0)) == np.pi

    u = np.concatenate([-np.logspace(-20, 2, 3000), np.logspace(-20, 1.5, 3000), [0.0, -0.5, 0.5]])
    got, ref = np.asarray(jn._expm1(u)), np.expm1(u)
    assert np.all(np.abs(got - ref) <= 2.0 * np.spacing(np.abs(ref)))
    grad = np.asarray(jax.vmap(jax.grad(jn._expm1))(u))
    assert_close(grad, np.exp(u), rtol=1e-15)
