"""Tests of the neural-tangents oracle, ``python/ntkgan/backends/_neural_tangents.py``, against independent references.

References: the arc-cosine closed forms of a one-hidden-layer ReLU network and the Gaussian kernel of the
RBF preset (written out in numpy), the diagonal recursion ``k(x, x) = F(|x|^2 / d)`` of the ReLU family
with its derivative (numpy, forward mode), fourth-order centred finite differences, raw neural-tangents
``arch.to_stax()`` away from the cusp, and plain linear algebra (``K @ v``, symmetry, homogeneity).

The oracle compiles once per (architecture, kind, shape), so the tests reuse a few shapes.
"""

from __future__ import annotations

import ntkgan
import numpy as np
import pytest
from conftest import assert_close, requires_nt

pytestmark = [requires_nt, pytest.mark.jax]

KINDS = ("ntk", "nngp")


def _kernel(x, y, arch, kind):
    return ntkgan.kernel(x, y, arch=arch, kind=kind, backend="neural_tangents")


def _grad(x, y, w, arch, kind):
    return ntkgan.kernel_grad(x, y, w, arch=arch, kind=kind, backend="neural_tangents")


def _points(rng, n, d, scale=1.0):
    return rng.normal(size=(n, d)) * scale


# ----------------------------------------------------------------------------------------------------
# numpy references
# ----------------------------------------------------------------------------------------------------


def _relu_depth1(x, y, arch: ntkgan.Mlp, kind: str) -> np.ndarray:
    """One hidden ReLU layer: arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009)."""
    d = x.shape[1]
    w2, b2 = arch.w_std**2, arch.b_std**2
    s1 = w2 * (x @ y.T) / d + b2
    n1x = w2 * np.sum(x * x, axis=1) / d + b2
    n1y = w2 * np.sum(y * y, axis=1) / d + b2
    norm = np.sqrt(np.outer(n1x, n1y))
    theta = np.arccos(np.clip(s1 / norm, -1.0, 1.0))
    relu_sigma = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))  # E[relu relu]
    relu_dot = (np.pi - theta) / (2 * np.pi)  # E[step step]
    nngp = w2 * relu_sigma
    if kind == "nngp":
        return nngp
    if arch.parameterization == "ntk":
        return nngp + w2 * relu_dot * s1
    theta1 = x @ y.T + 1.0  # n_in * Sigma0 + 1 with n_in = d
    return arch.width * relu_sigma + 1.0 + w2 * relu_dot * theta1


def _diag_and_derivative(arch: ntkgan.Mlp, kind: str, q: float, d: int) -> tuple[float, float]:
    """ReLU family: ``k(x, x) = F(q)`` with ``q = |x|^2 / d``; returns ``(F(q), F'(q))`` (forward mode).

    On the diagonal the ABRelu(a, b) map is ``Sxx' = (a^2 + b^2)/2 Sxx``, ``Theta' = (a^2 + b^2)/2 Theta``.
    """
    act = arch.activation
    c = (act.a**2 + act.b**2) / 2
    w2, b2 = arch.w_std**2, arch.b_std**2
    sig, dsig, th, dth = q, 1.0, 0.0, 0.0

    def dense(sig, dsig, th, dth, n_in, bias2):
        if arch.parameterization == "ntk":
            sig, dsig = w2 * sig + bias2, w2 * dsig
            return sig, dsig, sig + w2 * th, dsig + w2 * dth
        th, dth = n_in * sig + 1.0 + w2 * th, n_in * dsig + w2 * dth
        return w2 * sig + bias2, w2 * dsig, th, dth

    sig, dsig, th, dth = dense(sig, dsig, th, dth, d, b2)
    for layer in range(arch.depth):
        sig, dsig, th, dth = c * sig, c * dsig, c * th, c * dth
        sig, dsig, th, dth = dense(sig, dsig, th, dth, arch.width, b2 if layer < arch.depth - 1 else 0.0)
    return (th, dth) if kind == "ntk" else (sig, dsig)


_STENCIL = ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0))  # f'(x) ~ sum c f(x + k h) / (12 h)


def _shifted(x: np.ndarray, h: float) -> np.ndarray:
    """Rows ``x_i + k h e_l`` for every stencil offset k, row i and coordinate l: shape (4, n, d, d)."""
    eye = np.eye(x.shape[1])
    return np.stack([x[:, None, :] + k * h * eye[None, :, :] for k, _ in _STENCIL])


def _fd_weighted_grad(x, y, w, arch, kind, h) -> np.ndarray:
    """Finite-difference ``sum_j w_ij d/dx k(x_i, y_j)`` (one kernel call on all shifted rows).

    ``w`` of shape (m,) or, for weights that depend on the row, (n, m).
    """
    n, d = x.shape
    z = _shifted(x, h).reshape(-1, d)
    k = _kernel(z, y, arch, kind).reshape(len(_STENCIL), n, d, y.shape[0])
    kw = np.einsum("sidj,ij->sid", k, np.broadcast_to(w, (n, y.shape[0])))
    return sum(c * kw[s] for s, (_, c) in enumerate(_STENCIL)) / (12 * h)


def _fd_half_diag_grad(x, arch, kind, h) -> np.ndarray:
    """Finite-difference ``1/2 d/dx [k(x, x)]`` at each row of ``x``."""
    n, d = x.shape
    z = _shifted(x, h).reshape(-1, d)
    diag = np.diag(_kernel(z, None, arch, kind)).reshape(len(_STENCIL), n, d)
    return 0.5 * sum(c * diag[s] for s, (_, c) in enumerate(_STENCIL)) / (12 * h)


#: architectures shared by the tests (the JAX backend compiles once per arch, kind and shape)
ERF = ntkgan.Mlp(depth=2, activation="erf", w_std=1.4, b_std=0.5)
ERF_STANDARD = ntkgan.Mlp(
    depth=3, activation=("erf", 0.7, 1.3, 0.2), b_std=0.0, parameterization="standard", width=16
)
RBF = ntkgan.Mlp(depth=3, activation=("rbf", 2.0), w_std=0.7, b_std=1.0)
RELU_ARCHS = [
    ntkgan.Mlp(depth=3, activation="relu", b_std=1.0),
    ntkgan.Mlp(depth=2, activation="abs", w_std=1.5, b_std=0.0, parameterization="standard", width=16),
    ntkgan.Mlp(depth=5, activation=("leaky_relu", 0.2), w_std=0.8, b_std=4.0),
]


def _arch_id(arch: ntkgan.Mlp) -> str:
    return f"{arch.activation}-depth{arch.depth}-b{arch.b_std}-{arch.parameterization}"


# ----------------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("parameterization", "b_std"), [("ntk", 0.0), ("standard", 1.5)])
@pytest.mark.parametrize("kind", KINDS)
def test_depth1_relu_matches_arccos_closed_form(parameterization, b_std, kind):
    rng = np.random.default_rng(0)
    arch = ntkgan.Mlp(
        depth=1, activation="relu", w_std=1.3, b_std=b_std, parameterization=parameterization, width=64
    )
    x, y = _points(rng, 5, 3), _points(rng, 4, 3, scale=2.0)
    assert_close(_kernel(x, y, arch, kind), _relu_depth1(x, y, arch, kind), rtol=1e-12)


def test_rbf_preset_is_gaussian_kernel():
    rng = np.random.default_rng(1)
    arch = ntkgan.Mlp(depth=1, activation=("rbf", 0.5), b_std=0.0)
    x = _points(rng, 5, 3)
    y = np.concatenate([x[:2], _points(rng, 2, 3)])  # with two exact duplicates
    sq = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    expected = np.exp(-0.5 * sq / 3)
    assert_close(_kernel(x, y, arch, "nngp"), expected, rtol=1e-13, atol=1e-15)
    assert np.all(np.diag(_kernel(x, None, arch, "nngp")) == 1.0)


@pytest.mark.parametrize("arch", RELU_ARCHS[1:], ids=_arch_id)
@pytest.mark.parametrize("kind", KINDS)
def test_diagonal_is_exact_and_gradient_at_duplicate_is_half_diagonal_derivative(arch, kind):
    """k(x, x) = F(q) exactly and d/dx k(x, y)|_{y=x} = F'(q) x / d (= 1/2 d/dx k(x, x)), for d = 1..64."""
    rng = np.random.default_rng(2)
    for d in (1, 64):
        x = _points(rng, 4, d) * np.array([[1e-3], [1.0], [30.0], [1e3]])
        q = np.sum(x * x, axis=1) / d
        ref = [_diag_and_derivative(arch, kind, qi, d) for qi in q]
        diag_ref = np.array([f for f, _ in ref])
        grad_ref = np.array([df for _, df in ref])[:, None] * x / d
        assert_close(np.diag(_kernel(x, x, arch, kind)), diag_ref, rtol=1e-13)
        for i in range(4):  # one duplicate pair at a time: y = [x_i]
            g = _grad(x[i : i + 1], x[i : i + 1], np.ones(1), arch, kind)
            assert_close(
                g[0],
                grad_ref[i],
                rtol=1e-12,
                atol=1e-14 * np.abs(grad_ref[i]).max(),
                err_msg=f"d={d} row {i}",
            )


@pytest.mark.parametrize(
    "arch",
    [
        ntkgan.Mlp(depth=3, activation=("erf", 1.3, 2.0, 0.3), w_std=2.0, b_std=0.0),
        ntkgan.Mlp(depth=3, activation=("rbf", 1.5), w_std=1.7, b_std=0.5),
        ntkgan.Mlp(depth=4, activation="abs", w_std=1.2, b_std=0.0, parameterization="standard", width=8),
    ],
    ids=_arch_id,
)
def test_duplicates_of_large_norm_match_mp_reference(arch):
    """|x| = 1e3 with y = [x, -x, a far point]: values and gradients against mpmath (80 digits).

    Where raw neural-tangents cancels ``(1 + 2 Sxx)(1 + 2 Syy) - 4 Sxy^2`` (erf) or ``Sxx + Syy - 2 Sxy``
    (rbf) between terms of size ~1e6, off by up to ~1e-11 relative and amplified with depth.
    """
    from mp_reference import kernel_grad as mp_kernel_grad
    from mp_reference import kernel_matrix as mp_kernel_matrix

    rng = np.random.default_rng(13)
    x = rng.normal(size=(1, 3))
    x *= 1e3 / np.linalg.norm(x)
    y = np.concatenate([x, -x, _points(rng, 1, 3)])
    w = np.array([0.7, -0.4, 1.1])
    for kind in KINDS:
        k_ref = np.array(mp_kernel_matrix(x, y, arch, kind), dtype=float)
        g_ref = np.array(mp_kernel_grad(x, y, w, arch, kind), dtype=float)
        assert_close(
            _kernel(x, y, arch, kind), k_ref, rtol=1e-13, atol=1e-14 * np.abs(k_ref).max(), err_msg=kind
        )
        assert_close(
            _grad(x, y, w, arch, kind), g_ref, rtol=1e-12, atol=1e-13 * np.abs(g_ref).max(), err_msg=kind
        )


# ----------------------------------------------------------------------------------------------------
# gradients against finite differences
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", [ERF, RBF, *RELU_ARCHS], ids=_arch_id)
def test_kernel_grad_matches_finite_differences(arch, kind):
    """Generic points: the ReLU family is differentiable there (the cusp is at x = y, and rays if b = 0)."""
    rng = np.random.default_rng(3)
    x, y, w = _points(rng, 3, 3), _points(rng, 4, 3, scale=1.5), rng.normal(size=4)
    g = _grad(x, y, w, arch, kind)
    g_fd = _fd_weighted_grad(x, y, w, arch, kind, h=1e-3)
    assert_close(g, g_fd, rtol=1e-7, atol=1e-8 * np.abs(g_fd).max())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", [ERF, *RELU_ARCHS], ids=_arch_id)
def test_gradient_at_duplicate_is_half_derivative_of_diagonal(arch, kind):
    """The cusp convention d/dx k(x, y)|_{y = x} = 1/2 d/dx [k(x, x)], against finite differences."""
    rng = np.random.default_rng(4)
    x = _points(rng, 3, 3)
    g = np.concatenate([_grad(x[i : i + 1], x[i : i + 1], np.ones(1), arch, kind) for i in range(3)])
    g_fd = _fd_half_diag_grad(x, arch, kind, h=1e-3)
    assert_close(g, g_fd, rtol=1e-7, atol=1e-8 * np.abs(g_fd).max())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", [ERF, RELU_ARCHS[0], RELU_ARCHS[1]], ids=_arch_id)
def test_kernel_grad_with_y_containing_x(arch, kind):
    """G_i = sum_{y_j != x_i} w_j d/dx k(x_i, y_j) + (sum_{y_j == x_i} w_j) 1/2 d/dx k(x_i, x_i)."""
    rng = np.random.default_rng(5)
    x = _points(rng, 3, 3)
    y = np.concatenate([x[1:2], _points(rng, 1, 3), x[1:2], x[0:1]])  # x_1 twice, x_0 once, x_2 never
    w = rng.normal(size=4)
    g = _grad(x, y, w, arch, kind)
    same = np.all(x[:, None, :] == y[None, :, :], axis=-1)  # (3, 4)
    generic = _fd_weighted_grad(x, y, np.where(same, 0.0, w), arch, kind, h=1e-3)
    expected = generic + (same * w).sum(axis=1)[:, None] * _fd_half_diag_grad(x, arch, kind, h=1e-3)
    assert same.sum() == 3
    assert_close(g, expected, rtol=1e-7, atol=1e-8 * np.abs(expected).max())


# ----------------------------------------------------------------------------------------------------
# agreement with raw neural-tangents away from the cusp
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch",
    [
        *RELU_ARCHS,
        ERF_STANDARD,
        RBF,
        ntkgan.Mlp(depth=2, activation="gelu"),
        ntkgan.Mlp(depth=2, activation=("sin", 1.0, 0.8, 0.3)),
    ],
    ids=_arch_id,
)
def test_matches_raw_neural_tangents_on_generic_points(arch):
    """Away from the cusp the backend is neural-tangents' ``arch.to_stax()`` (values and gradients)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(6)
    x, y, w = _points(rng, 3, 3), _points(rng, 4, 3, scale=1.5), rng.normal(size=4)
    kernel_fn = arch.to_stax()[2]
    k_nt = kernel_fn(x, y, KINDS)
    g_nt = jax.jacrev(lambda xx: [jnp.sum(k @ w) for k in kernel_fn(xx, y, KINDS)])(x)
    for kind, k_ref, g_ref in zip(KINDS, k_nt, g_nt):
        k_ref, g_ref = np.asarray(k_ref), np.asarray(g_ref)
        assert_close(_kernel(x, y, arch, kind), k_ref, rtol=1e-12, err_msg=kind)
        assert_close(
            _grad(x, y, w, arch, kind), g_ref, rtol=1e-11, atol=1e-13 * np.abs(g_ref).max(), err_msg=kind
        )


# ----------------------------------------------------------------------------------------------------
# structure: symmetry, mat-vec, chunking, types, homogeneity, special points
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_symmetric_kernel_is_exactly_symmetric_and_equals_kernel_xx(kind):
    rng = np.random.default_rng(7)
    arch = RELU_ARCHS[0]
    x = _points(rng, 5, 3)
    x[3] = x[1]
    k = _kernel(x, None, arch, kind)
    assert np.array_equal(k, k.T)
    assert_close(k, _kernel(x, x, arch, kind), rtol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_matvec_equals_kernel_times_v(kind):
    rng = np.random.default_rng(8)
    arch = RELU_ARCHS[0]
    x, y, v = _points(rng, 5, 3), _points(rng, 4, 3), rng.normal(size=4)
    y[0] = x[2]
    mv = ntkgan.kernel_matvec(x, y, v, arch=arch, kind=kind, backend="neural_tangents")
    assert_close(mv, _kernel(x, y, arch, kind) @ v, rtol=1e-13, atol=1e-14 * np.abs(mv).max())
    u = rng.normal(size=5)
    mv_sym = ntkgan.kernel_matvec(x, None, u, arch=arch, kind=kind, backend="neural_tangents")
    assert_close(mv_sym, _kernel(x, None, arch, kind) @ u, rtol=1e-13, atol=1e-14 * np.abs(mv_sym).max())


def test_chunked_grad_and_matvec_equal_unchunked(monkeypatch):
    """Small CHUNK_ENTRIES: 7 rows in chunks of 2 (the last one zero-padded) give the same results."""
    from ntkgan.backends import _neural_tangents as _jax

    rng = np.random.default_rng(9)
    arch = RELU_ARCHS[0]
    x, y, w = _points(rng, 7, 3), _points(rng, 4, 3), rng.normal(size=4)
    y[1] = x[6]  # a duplicate in the padded last chunk
    g_full = _grad(x, y, w, arch, "ntk")
    mv_full = ntkgan.kernel_matvec(x, y, w, arch=arch, kind="ntk", backend="neural_tangents")
    monkeypatch.setattr(_jax, "CHUNK_ENTRIES", 8)
    assert [c[2] for c in _jax._chunks(7, 4)] == [2, 2, 2, 2]
    assert_close(_grad(x, y, w, arch, "ntk"), g_full, rtol=1e-14, atol=1e-15 * np.abs(g_full).max())
    mv = ntkgan.kernel_matvec(x, y, w, arch=arch, kind="ntk", backend="neural_tangents")
    assert_close(mv, mv_full, rtol=1e-14, atol=1e-15 * np.abs(mv_full).max())


def test_outputs_are_writable_float64_numpy_arrays():
    rng = np.random.default_rng(10)
    arch = RELU_ARCHS[0]
    x, y, w = _points(rng, 5, 3), _points(rng, 4, 3), rng.normal(size=4)
    outs = [
        _kernel(x, y, arch, "ntk"),
        _kernel(x, None, arch, "ntk"),
        _grad(x, y, w, arch, "ntk"),
        ntkgan.kernel_matvec(x, y, w, arch=arch, kind="ntk", backend="neural_tangents"),
    ]
    for out in outs:
        assert type(out) is np.ndarray and out.dtype == np.float64 and out.flags.writeable


@pytest.mark.parametrize("kind", KINDS)
def test_relative_cusp_threshold_keeps_tiny_inputs_exact(kind):
    """Without bias the ReLU kernels are 2-homogeneous: k(cx, cy) = c^2 k(x, y), grad_x scales by c.

    At c = 2^-40 the products Sxx Syy are ~1e-50: neural-tangents' absolute 1e-30 floor would set s = 0
    for every pair; the relative threshold does not.
    """
    rng = np.random.default_rng(11)
    arch = ntkgan.Mlp(depth=3, activation="relu", b_std=0.0)
    x, y, w = _points(rng, 5, 3), _points(rng, 4, 3), rng.normal(size=4)
    c = 2.0**-40
    assert_close(_kernel(c * x, c * y, arch, kind), c**2 * _kernel(x, y, arch, kind), rtol=1e-13)
    g = _grad(x, y, w, arch, kind)
    assert_close(_grad(c * x, c * y, w, arch, kind), c * g, rtol=1e-12, atol=1e-14 * c * np.abs(g).max())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("b_std", [0.0, 1.0])
def test_zero_antipodal_duplicate_and_huge_points_are_finite(kind, b_std):
    rng = np.random.default_rng(12)
    arch = ntkgan.Mlp(depth=3, activation="relu", b_std=b_std)
    x = _points(rng, 5, 3)
    x[0] = 0.0
    x[1] = -x[2]
    x[4] *= 1e3
    y = np.concatenate([x[:3], -x[3:4]])
    w = rng.normal(size=4)
    k = _kernel(x, y, arch, kind)
    g = _grad(x, y, w, arch, kind)
    assert np.isfinite(k).all() and np.isfinite(g).all()
    if b_std == 0.0:  # k(0, y) = 0, and x -> k(x, y) is 1-homogeneous so its gradient at 0 is finite
        assert np.all(k[0] == 0.0)


def test_jit_cache_is_per_arch_and_kind():
    from ntkgan.backends import _neural_tangents as _jax

    arch = RELU_ARCHS[0]
    assert _jax._compiled(arch, "ntk") is _jax._compiled(
        ntkgan.Mlp(depth=3, activation="relu", b_std=1.0), "ntk"
    )
    assert _jax._compiled(arch, "ntk") is not _jax._compiled(arch, "nngp")


def test_importing_the_backend_enables_float64():
    import jax
    from ntkgan.backends import _neural_tangents as _jax  # noqa: F401

    assert jax.config.jax_enable_x64
    assert _kernel(np.ones((1, 2)), None, RELU_ARCHS[0], "ntk").dtype == np.float64
