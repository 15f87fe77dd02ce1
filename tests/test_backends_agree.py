"""The "rust" and "jax" backends agree (``python/ntkgan/backends/_rust.py`` and ``_jax.py``).

Hypothesis draws random architectures (depth 1-6, w_std 0.5-2, b_std 0-4 with exact 0 often, both
parameterizations, every activation the Rust backend implements) and random inputs (d = 1..64, up to 12
rows) that include exact duplicates between x and y, zero rows, antipodal rows (y_j = -x_i) and large
norms (1e3).  Kernels (NTK and NNGP), kernel gradients (cusp convention at duplicates included) and
mat-vecs must agree to relative 1e-10 (``atol = 1e-10 * max|reference|``).

Every pair compared is exactly coincident, exactly parallel without bias, or well apart: the JAX backend
(neural-tangents' closed forms) computes ``s = sqrt(Sxx Syy - Sxy^2)`` by cancellation and loses accuracy
for nearly coincident points, while the Rust backend does not (tests/test_near_coincident.py).  "Well
apart" means ``|x - y| >= 1e-3 |x|`` and, since bias and small ``w_std`` shrink the angle between the two
inputs from layer to layer, an angle with ``sin^2 >= MIN_SIN2`` at every layer where it matters
(:func:`_usable_pairs`); columns of ``y`` (rows of x) failing this are dropped before comparing.
Such pairs, nearly coincident or nearly antipodal (the mirror cusp of the ReLU family with ``a != 0``),
are compared pair by pair with the exact mpmath reference instead (tests/mp_reference.py), which decides
where the backends part: :func:`test_near_cusp_pairs_are_adjudicated_by_mpmath`.

Each new architecture and shape costs the JAX backend one jit compilation (~0.1-1 s), hence the modest
``max_examples``.
"""

from __future__ import annotations

import ntkgan
import numpy as np
import pytest
from conftest import assert_close, requires_jax
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

pytestmark = [
    requires_jax,
    pytest.mark.jax,
    pytest.mark.skipif(
        "rust" not in ntkgan.backends.available(),
        reason="the Rust extension ntkgan._core is not built (maturin develop)",
    ),
]

KINDS = ("ntk", "nngp")
RTOL = 1e-10


def _settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ----------------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------------

_ACTIVATIONS = ("relu", "leaky_relu", "abs", "identity", "erf", "sigmoid", "rbf")


@st.composite
def _activations(draw):
    name = draw(st.sampled_from(_ACTIVATIONS))
    if name == "leaky_relu":
        return ("leaky_relu", draw(st.floats(0.01, 0.5)))
    if name == "erf":
        return ("erf", draw(st.floats(0.2, 2.0)), draw(st.floats(0.2, 2.0)), draw(st.floats(-1.0, 1.0)))
    if name == "rbf":
        return ("rbf", draw(st.floats(0.1, 3.0)))
    return name


@st.composite
def _archs(draw):
    return ntkgan.Mlp(
        depth=draw(st.integers(1, 6)),
        activation=draw(_activations()),
        w_std=draw(st.floats(0.5, 2.0)),
        b_std=draw(st.one_of(st.just(0.0), st.floats(0.0, 4.0))),
        parameterization=draw(st.sampled_from(["ntk", "standard"])),
        width=draw(st.sampled_from([1, 16, 128, 1000])),
    )


#: Smallest ``sin^2`` of the angle between the two inputs of a layer at which the JAX backend is trusted
#: to 1e-10: it computes ``s^2 = Sxx Syy - Sxy^2`` by cancellation, with a relative error of about
#: ``1e-16 / sin^2``; measured ``8e-17 / sin^2`` on gradients (depth 5, ReLU, b_std 2.7, w_std 0.5).
MIN_SIN2 = 1e-5


def _min_sin2(arch: ntkgan.Mlp, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, m): the smallest ``s^2 / (Sxx Syy)`` over the layers where it matters (float64 recursion).

    Every activation layer of the ReLU family (bias and small ``w_std`` shrink the angle layer after
    layer); only the first for erf and rbf (deeper, their variances are O(1) and ``s^2`` no longer
    cancels against anything large).  None for identity, whose kernel does not involve ``s``.
    """
    act = arch.activation
    out = np.ones((x.shape[0], y.shape[0]))
    if isinstance(act, ntkgan.ABRelu) and act.a == act.b:
        return out
    d = x.shape[1]
    w2, b2 = arch.w_std**2, arch.b_std**2
    sxx = (np.sum(x * x, axis=1) / d)[:, None]
    syy = (np.sum(y * y, axis=1) / d)[None, :]
    sxy = x @ y.T / d
    for _ in range(arch.depth if isinstance(act, ntkgan.ABRelu) else 1):
        sxx, syy, sxy = w2 * sxx + b2, w2 * syy + b2, w2 * sxy + b2
        prod = sxx * syy
        s2 = np.maximum(prod - sxy * sxy, 0.0)
        out = np.minimum(out, np.where(prod > 0, s2 / np.where(prod > 0, prod, 1.0), 1.0))
        if isinstance(act, ntkgan.ABRelu):
            s = np.sqrt(s2)
            theta = np.where((s == 0) & (sxy == 0), np.pi / 2, np.arctan2(s, sxy))
            factor, mean_sq = (act.a - act.b) ** 2 / (2 * np.pi), (act.a**2 + act.b**2) / 2
            sxx, syy, sxy = mean_sq * sxx, mean_sq * syy, factor * s + (mean_sq - factor * theta) * sxy
    return out


def _usable_pairs(arch: ntkgan.Mlp, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, m) bool: pairs on which both backends are accurate to 1e-10.

    Exactly equal rows (the cusp convention), pairs that are exactly parallel without bias (``d = 1``,
    ``y = -x``, a zero row: ``s = 0`` at every layer), and otherwise pairs whose angle never drops below
    ``MIN_SIN2`` (see :func:`_min_sin2`) and with ``|x - y| >= 1e-3 max(|x|, |y|)``.
    """
    same = np.all(x[:, None, :] == y[None, :, :], axis=-1)
    zero = ~np.any(x != 0, axis=1)[:, None] | ~np.any(y != 0, axis=1)[None, :]
    parallel = (x.shape[1] == 1) | np.all(x[:, None, :] == -y[None, :, :], axis=-1) | zero
    diff = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    size = np.maximum(np.linalg.norm(x, axis=1)[:, None], np.linalg.norm(y, axis=1)[None, :])
    apart = (diff >= 1e-3 * size) & (_min_sin2(arch, x, y) >= MIN_SIN2)
    return same | (parallel & (arch.b_std == 0.0)) | apart


def _usable_rows(arch: ntkgan.Mlp, z: np.ndarray) -> np.ndarray:
    """Rows of ``z`` such that every pair among them is usable (greedily drops the worst rows)."""
    keep = np.arange(z.shape[0])
    while keep.size:
        bad = ~_usable_pairs(arch, z[keep], z[keep])
        if not bad.any():
            break
        keep = np.delete(keep, np.argmax(bad.sum(axis=1)))
    return z[keep]


@st.composite
def _inputs(draw, *, d=None, n=None, m=None):
    """``(x, y)``: Gaussian rows of norm ~0.5-1e3 (log-uniform scales), then special rows in x and y."""
    d = draw(st.integers(1, 64)) if d is None else d
    n = draw(st.integers(1, 12)) if n is None else n
    m = draw(st.integers(1, 12)) if m is None else m
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def rows(k):
        scale = 10.0 ** rng.uniform(-0.3, 1.0, size=(k, 1))
        scale[rng.random(k) < 0.2] = 1e3  # large norms
        return rng.normal(size=(k, d)) / np.sqrt(d) * scale

    x, y = rows(n), rows(m)
    for i in range(n):
        if draw(st.sampled_from(["keep", "keep", "keep", "zero"])) == "zero":
            x[i] = 0.0
    for j in range(m):
        what = draw(st.sampled_from(["keep", "keep", "dup", "dup", "anti", "zero"]))
        src = x[draw(st.integers(0, n - 1))]
        if what == "dup":
            y[j] = src
        elif what == "anti":
            y[j] = -src
        elif what == "zero":
            y[j] = 0.0
    return x, y


def _cases(draw):
    arch = draw(_archs())
    kind = draw(st.sampled_from(KINDS))
    x, y = draw(_inputs())
    return arch, kind, x, y


def _rtol(arch, x, y) -> float:
    """RTOL, widened by the conditioning of the Rbf dual: exp(-gamma (Sxx + Syy - 2 Sxy)) computed from
    the three covariances loses about eps * gamma * (Sxx + Syy) relative (both backends alike; at norms
    ~1e3 that exceeds 1e-10)."""
    act = arch.activation
    if getattr(act, "gamma", None) is None or x.size == 0:
        return RTOL
    big = max(float((x**2).sum(axis=1).max()), float((y**2).sum(axis=1).max()) if y.size else 0.0)
    cond = act.gamma * arch.w_std**2 * 2.0 * big / x.shape[1]
    return max(RTOL, 4e-16 * cond)


def _agree(actual, expected, what: str, case: str, rtol: float = RTOL):
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    assert_close(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=f"{what}: {case}")


def _describe(arch, kind, x, y, w=None) -> str:
    with np.printoptions(precision=17, threshold=10_000):
        text = f"{arch!r} kind={kind!r}\nx={x!r}\ny={y!r}"
        return text if w is None else f"{text}\nw={w!r}"


# ----------------------------------------------------------------------------------------------------
# properties
# ----------------------------------------------------------------------------------------------------


@_settings(40)
@given(data=st.data())
def test_kernels_agree(data):
    arch, kind, x, y = _cases(data.draw)
    y = y[_usable_pairs(arch, x, y).all(axis=0)]
    assume(y.shape[0] > 0)
    k_rust = ntkgan.kernel(x, y, arch=arch, kind=kind, backend="rust")
    k_jax = ntkgan.kernel(x, y, arch=arch, kind=kind, backend="jax")
    _agree(k_jax, k_rust, "kernel", _describe(arch, kind, x, y), _rtol(arch, x, y))


@_settings(25)
@given(data=st.data())
def test_kernel_grads_agree(data):
    arch, kind, x, y = _cases(data.draw)
    y = y[_usable_pairs(arch, x, y).all(axis=0)]
    assume(y.shape[0] > 0)
    w = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=y.shape[0])
    g_rust = ntkgan.kernel_grad(x, y, w, arch=arch, kind=kind, backend="rust")
    g_jax = ntkgan.kernel_grad(x, y, w, arch=arch, kind=kind, backend="jax")
    # absolute floor: the gradient is a sum of terms of size ~ |w| |k| / |x|; where they cancel (a
    # smooth kernel at an exact duplicate has zero gradient) both backends keep ~1e-16 of that size
    k = ntkgan.kernel(x, y, arch=arch, kind=kind, backend="rust")
    norms = np.sqrt((np.concatenate([x, y]) ** 2).sum(axis=1))
    floor = RTOL * np.abs(k).max() * np.abs(w).sum() / max(float(norms[norms > 0].min(initial=1.0)), 1e-3)
    rtol = _rtol(arch, x, y)
    scale = float(np.abs(g_rust).max()) if g_rust.size else 0.0
    assert_close(g_jax, g_rust, rtol=rtol, atol=max(rtol * scale, floor),
                 err_msg=f"kernel_grad: {_describe(arch, kind, x, y, w)}")


@_settings(12)
@given(data=st.data())
def test_value_and_grad_at_own_points_agree(data):
    """kernel_value_and_grad(x, [x; z], w): the Rust backend's symmetric pass over the x-x block (each
    unordered pair once, both gradients from it; ABReLU family and erf) against JAX, and against Rust's
    plain pass ([z; x])."""
    arch = data.draw(_archs().filter(lambda a: getattr(a.activation, "gamma", None) is None))
    kind = data.draw(st.sampled_from(KINDS))
    x, y = data.draw(_inputs())
    zs = _usable_rows(arch, np.concatenate([x, y]))  # rows repeat and oppose one another
    assume(zs.shape[0] > 1)
    k = data.draw(st.integers(1, zs.shape[0] - 1))
    x, z = zs[:k], zs
    w = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).normal(size=z.shape[0])
    f_rust, g_rust = ntkgan.kernel_value_and_grad(x, z, w, arch=arch, kind=kind, backend="rust")
    plain = np.r_[k:z.shape[0], 0:k]
    f_plain, g_plain = ntkgan.kernel_value_and_grad(x, z[plain], w[plain], arch=arch, kind=kind,
                                                    backend="rust")
    f_jax, g_jax = ntkgan.kernel_value_and_grad(x, z, w, arch=arch, kind=kind, backend="jax")
    case = _describe(arch, kind, x, z, w)
    rtol = _rtol(arch, x, z)
    kk = ntkgan.kernel(x, z, arch=arch, kind=kind, backend="rust")
    norms = np.sqrt((z**2).sum(axis=1))
    # the sums' terms are ~ |w| |k| / |x|: a floor for the rounding of their cancellation
    terms = np.abs(kk).max() * np.abs(w).sum() / max(float(norms[norms > 0].min(initial=1.0)), 1e-3)
    scale = float(np.abs(g_rust).max())
    tight = 1e-12  # the two Rust passes differ in summation order only
    _agree(f_plain, f_rust, "values, plain pass", case, tight)
    assert_close(g_plain, g_rust, rtol=tight, atol=max(tight * scale, tight * terms),
                 err_msg=f"gradient, plain pass: {case}")
    _agree(f_jax, f_rust, "values, jax", case, rtol)
    assert_close(g_jax, g_rust, rtol=rtol, atol=max(rtol * scale, RTOL * terms), err_msg=f"gradient, jax: {case}")


@_settings(15)
@given(data=st.data())
def test_kernel_matvecs_and_symmetric_kernels_agree(data):
    """kernel(x) (y = None: pairs within x), kernel_matvec(x, None, v) and kernel_matvec(x, y, v)."""
    arch, kind, x, y = _cases(data.draw)
    x = _usable_rows(arch, np.concatenate([x, y]))  # rows of x now repeat and oppose one another
    assume(x.shape[0] > 0)
    y = x[::-2]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    u, v = rng.normal(size=x.shape[0]), rng.normal(size=y.shape[0])
    case = _describe(arch, kind, x, y)
    for name, args in [
        ("kernel(x)", (x,)),
        ("kernel_matvec(x, None, u)", (x, None, u)),
        ("kernel_matvec(x, y, v)", (x, y, v)),
    ]:
        fn = ntkgan.kernel if name.startswith("kernel(") else ntkgan.kernel_matvec
        expected = fn(*args, arch=arch, kind=kind, backend="rust")
        _agree(fn(*args, arch=arch, kind=kind, backend="jax"), expected, name, case, _rtol(arch, x, x))


# ----------------------------------------------------------------------------------------------------
# near the cusps, where the properties above drop pairs: mpmath decides
# ----------------------------------------------------------------------------------------------------

#: Accuracy of the Rust backend against the exact reference near the cusps (the targets of issue 12;
#: tests/test_antipodal.py and tests/test_near_coincident.py measure it far below them).
MP_VALUE_RTOL = 1e-13
MP_GRAD_RTOL = 1e-10


@st.composite
def _near_cusp_cases(draw):
    """A ReLU-family network with a cusp (``a != b``), one row x (d = 1..3, norm 2^-10 ... 2^10) and rows
    ``y_j = sign c x + delta c |x| u_j`` (``u_j`` random unit vectors, delta 1e-4 ... 1e-12, c in [0.3, 3],
    mostly ``sign = -1``: nearly antipodal), plus ``y = -c x`` exactly."""
    a = draw(st.sampled_from([0.0, 0.2, -1.0, -0.5]))
    arch = ntkgan.Mlp(
        depth=draw(st.integers(1, 6)),
        activation=ntkgan.ABRelu(a, draw(st.sampled_from([1.0, 1.5]))),
        w_std=draw(st.floats(0.5, 2.0)),
        b_std=draw(st.one_of(st.just(0.0), st.floats(0.1, 2.0))),
        parameterization=draw(st.sampled_from(["ntk", "standard"])),
        width=16,
    )
    d = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=d) * 2.0 ** draw(st.integers(-10, 10))
    c = draw(st.floats(0.3, 3.0))
    ys = [-c * x]
    for _ in range(3 if d > 1 else 0):
        u = rng.normal(size=d)
        sign = draw(st.sampled_from([-1.0, -1.0, 1.0]))
        ys.append(sign * c * x + 10.0 ** -draw(st.floats(4.0, 12.0)) * c * np.linalg.norm(x) * u / np.linalg.norm(u))
    return arch, draw(st.sampled_from(KINDS)), x[None], np.array(ys)


@_settings(10)
@given(case=_near_cusp_cases())
def test_near_cusp_pairs_are_adjudicated_by_mpmath(case):
    """Nearly antipodal and nearly coincident pairs, which ``_usable_pairs`` drops above because the JAX
    backend (neural-tangents' closed forms) computes ``s^2`` by cancellation there.  Pair by pair (values,
    and gradients with one-hot weights), both backends are compared with the exact reference
    (tests/mp_reference.py): the Rust backend is within MP_VALUE_RTOL / MP_GRAD_RTOL, and where the two
    backends part by more than RTOL, the JAX backend is the one that is wrong (its error exceeds Rust's)."""
    from mp_reference import pair_errors

    arch, kind, x, y = case
    k_rust = ntkgan.kernel(x, y, arch=arch, kind=kind, backend="rust")[0]
    k_jax = ntkgan.kernel(x, y, arch=arch, kind=kind, backend="jax")[0]
    eye = np.eye(y.shape[0])
    for j in range(y.shape[0]):
        g_rust = ntkgan.kernel_grad(x, y, eye[j], arch=arch, kind=kind, backend="rust")[0]
        g_jax = ntkgan.kernel_grad(x, y, eye[j], arch=arch, kind=kind, backend="jax")[0]
        er = pair_errors(k_rust[j], g_rust, x[0], y[j], arch, kind)
        ej = pair_errors(k_jax[j], g_jax, x[0], y[j], arch, kind)
        msg = f"pair {j}: rust (value, grad) errors {er}, jax {ej}\n{_describe(arch, kind, x, y)}"
        assert er[0] <= MP_VALUE_RTOL and er[1] <= MP_GRAD_RTOL, msg
        part_value = abs(k_jax[j] - k_rust[j]) > RTOL * abs(k_rust[j])
        part_grad = np.linalg.norm(g_jax - g_rust) > RTOL * np.linalg.norm(g_rust)
        if part_value:
            assert er[0] <= ej[0], msg
        if part_grad:
            assert er[1] <= ej[1], msg


# ----------------------------------------------------------------------------------------------------
# regressions: examples the properties above found (deterministic, against closed forms / mpmath)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [5, 8])
@pytest.mark.parametrize("backend", ["jax", "rust"])
def test_regression_rbf_kernel_at_duplicate_of_large_norm(backend, seed):
    """Found by test_kernels_agree.  Without bias the RBF variance is 1 after every layer, so the NNGP at
    x = y is exactly ``w_std**2``; rounding in ``Sxx + Syy - 2 Sxy`` at the first layer (|x| ~ 950) is
    amplified ~``2 gamma w_std**2`` = 9 times per layer and reached 6e-6 at depth 6."""
    arch = ntkgan.Mlp(depth=6, activation=("rbf", 1.6), w_std=1.7, b_std=0.0)
    x = np.random.default_rng(seed).normal(size=(1, 40)) * 150
    k = ntkgan.kernel(x, x, arch=arch, kind="nngp", backend=backend)
    assert_close(k, [[1.7**2]], rtol=1e-12)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("backend", ["jax", "rust"])
def test_regression_rbf_gradient_at_duplicate_next_to_a_far_point(backend, seed):
    """Found by test_kernel_grads_agree.  For RBF ``k(x, x)`` is constant, so ``d/dx k(x, y)|_{y=x} = 0``
    exactly and with ``y = [x, far]`` the gradient is ``d/dx k(x, far)`` alone, ~1e-10 here: a
    rounding-size remainder of the duplicate's term (~1e-16 absolute) is a 1e-4..1e-3 relative error."""
    from mp_reference import kernel_grad as mp_kernel_grad

    arch = ntkgan.Mlp(depth=3, activation=("rbf", 2.0), w_std=1.8, b_std=0.0)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, 8))
    y = np.concatenate([x, x + 1.5 * rng.normal(size=(1, 8))])
    w = np.ones(2)
    if backend == "rust":
        pytest.xfail("the Rust contraction sums dk/dp * 2x/d and dk/dr * y/d over all y_j separately; at an "
                     "exact duplicate of a smooth kernel the two parts cancel to ~1e-16 of their size, which "
                     "is 1e-4 of this tiny total (the JAX backend differentiates the pair as a whole)")
    expected = np.array(mp_kernel_grad(x, y, w, arch, "nngp"), dtype=float)
    g = ntkgan.kernel_grad(x, y, w, arch=arch, kind="nngp", backend=backend)
    assert_close(g, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())
