"""Nearly antipodal points, and erf at large norms: the Rust backend against the exact mpmath reference.

Files under test: ``python/ntkgan/kernels.py`` (``kernel``, ``kernel_grad``) with ``backend="rust"``,
``rust/src/recursion.rs`` (``pair_stable``) and ``rust/src/gram.rs`` (``pair_invariants``).

The mirror image of near-coincident points (tests/test_near_coincident.py).  For the ReLU family
``s = sqrt(Sxx Syy - Sxy^2)`` is also a difference of nearly equal numbers when ``theta ~ pi`` (``y`` near
the ray through ``-x``).  An ABReLU with ``a != 0`` maps such a pair to a pair at a fixed angle
(``cos theta' = -2ab / (a^2 + b^2)``), and ``abs`` (``a = -b``) to a nearly *parallel* pair, so that at the
next layer ``s^2`` cancels again.  The Rust engine recomputes such pairs by carrying ``|x + y|^2`` beside
``|x - y|^2`` and ``|x ^ y|^2`` through the layers (the obtuse branch of ``pair_stable``, with
``eps = pi - theta`` computed directly), values and forward tangents alike.

Pairs: ``x`` random, ``y = -c x + delta c |x| u`` (``u`` a random unit vector, ``c = 1`` or random in
[0.3, 3]), ``delta`` in 1e-4 ... 1e-12, and ``delta = 0``: ``y = -x`` exactly, or ``y = fl(-c x)`` (at an angle
of ~1e-16 from the ray).  With ``d = 1`` and no bias every pair of opposite signs is exactly antiparallel
(``s = 0`` at every layer): the cusp convention (``ds = 0`` where ``s = 0``) applies, as in the reference.

Errors are relative: ``|k - k_ref| / |k_ref|`` for the value, ``||g - g_ref||_2 / ||g_ref||_2`` for the
gradient ``d/dx k(x, y)``; ``k_ref`` and ``g_ref`` from tests/mp_reference.py (80 digits, exact on the
float64 inputs).

Measured (``python benches/kernel_accuracy.py``, max over relu, leaky_relu(0.2), abs, ABRelu(-0.5, 1.5) x
depth {1, 2, 4, 6} x b_std {0, 1} x d {1, 2, 3} x scale {2^-20, 1, 2^20} x c, NTK and NNGP; 9 984 pairs;
docs/kernel_accuracy.md has the grid and per-activation tables)::

                              delta:   0 (exact)   1e-4      1e-8      1e-12
    rust, before (5794ebf)   value      5.8e+02    8.1e-02   7.6e+10   5.3e+22
                             grad       1.2e+03    1.0e-06   5.3e+01   3.7e+09
    rust, now                value      2.6e-14    4.6e-14   1.6e-14   1.8e-14
                             grad       5.9e-14    1.7e-14   1.3e-13   1.1e-13
    neural-tangents 0.6.5    value      2.4e+51    1.2e-01   1.2e+09   1.3e+21
                             grad       1.5e+51    1.0e+00   3.9e+00   4.1e+08

(The huge relative errors are ReLU kernels that vanish to third order at ``theta = pi`` without bias:
``S' = F (s - theta Sxy)``, ``~ eps^3``, computed by cancellation as rounding noise.  The largest errors
left are kernels near a zero crossing, e.g. the depth-1 ReLU NTK with bias, ``w^2 (S' + Sdot Sxy)``.)

Erf at large norms: ``r^2 = 1 + 2(Sxx + Syy) + 4 s^2`` with ``s^2`` as a difference carries an error of
``~4 eps Sxx Syy``, which is not negligible against ``r^2`` for large inputs at a small angle (either
side): the NTK of erf was off by ``~eps |x|^2 / d`` relative up to ``eps / sin^2 theta`` (1e-8 at ``|x|`` =
1e4, 2e-4 at 1e8, near-coincident or nearly antipodal with ``delta = 1e-6``).  Such pairs
(``Sxx Syy > ERF_KAPPA r^2`` at the first erf layer) now take the first layer's ``s^2`` from the invariants.
Deeper erf layers see variances of at most ``w^2 (a^2 + c^2) + b_std^2``; their direct ``s^2`` costs at
most about ``eps b^2 Sxx`` relative there (the documented bound, tested at ``b_std = 100``).
"""

from __future__ import annotations

import functools

import mpmath
import ntkgan
import numpy as np
import pytest
from conftest import requires_nt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mp_reference import (
    DPS,
    antipodal_kernel_and_grad_mp,
    kernel_and_grad_mp,
    kernel_grad_fd_mp,
    kernel_mp,
    nt_pairs,
    pair_errors,
    rel_err,
)
from ntkgan import backends

pytestmark = pytest.mark.skipif(
    "rust" not in backends.available(), reason="the Rust extension ntkgan._core is not built (maturin develop)"
)

#: |(x + y/c)| / |x| of the nearly antipodal pairs.
DELTAS = (1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
#: Relative accuracy asserted on the kernel value on the fixed grids (the issue's target: 1e-13; measured
#: on them: <= 2.0e-15).
VALUE_RTOL = 1e-14
#: Relative (norm-wise) accuracy asserted on the input gradient on the fixed grids (target: 1e-10;
#: measured on them: <= 1.2e-14).
GRAD_RTOL = 1e-13
#: The issue's targets, asserted by the hypothesis property (whose random configurations also reach
#: the conditioning limits of the problem: tiny values next to a bias, etc.).
TARGET_VALUE_RTOL = 1e-13
#: float64 floor for "at least as accurate as neural-tangents": both are exact to rounding there.
FLOOR = 1e-13
TARGET_GRAD_RTOL = 1e-10

#: The ReLU family with ``a != b``: every member has its cusp at ``theta = pi`` too.
ARCHS = [
    ntkgan.Mlp(depth=5, activation="abs", w_std=0.926, b_std=0.0),
    ntkgan.Mlp(depth=3, activation="abs", w_std=1.2, b_std=0.5),
    ntkgan.Mlp(depth=2, activation=("leaky_relu", 0.2), w_std=1.3, b_std=0.0),
    ntkgan.Mlp(depth=6, activation=("leaky_relu", 0.1), w_std=1.0, b_std=1.0),
    ntkgan.Mlp(depth=1, activation="relu", w_std=1.0, b_std=0.0),
    ntkgan.Mlp(depth=4, activation="relu", w_std=1.5, b_std=1.0),
    ntkgan.Mlp(depth=3, activation=ntkgan.ABRelu(-0.5, 1.5), w_std=1.1, b_std=0.0),
    ntkgan.Mlp(depth=3, activation="abs", w_std=1.0, b_std=0.7, parameterization="standard", width=16),
]


def _arch_id(arch: ntkgan.Mlp) -> str:
    act = arch.activation
    name = {(0.0, 1.0): "relu", (-1.0, 1.0): "abs"}.get((act.a, act.b), f"ab({act.a:g},{act.b:g})")
    par = "" if arch.parameterization == "ntk" else "-std"
    return f"{name}-L{arch.depth}-w{arch.w_std:g}-b{arch.b_std:g}{par}"


@functools.cache
def _pairs(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``x_i``, ``y_i``: two random x; for each, ``y = -x`` and ``y = fl(-c x)`` (delta 0), then
    ``y = -c x + delta c |x| u`` at every delta, with ``c = 1`` and a random c.  Returns (x, y, delta)."""
    rng = np.random.default_rng(2000 + d)
    xs, ys, ds = [], [], []
    for _ in range(2):
        x = rng.normal(size=d) * rng.uniform(0.3, 3.0)
        for c in (1.0, rng.uniform(0.3, 3.0)):
            xs.append(x)
            ys.append(-c * x)
            ds.append(0.0)
            if d == 1:
                continue
            u = rng.normal(size=d)
            u /= np.linalg.norm(u)
            for delta in DELTAS:
                xs.append(x)
                ys.append(-c * x + delta * c * np.linalg.norm(x) * u)
                ds.append(delta)
    return np.array(xs), np.array(ys), np.array(ds)


def _rust_pairs(x: np.ndarray, y: np.ndarray, arch, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``k(x_i, y_i)`` (the diagonal of ``kernel(x, y)``) and ``d/dx k(x, y_i)|_{x_i}`` through the
    batched drivers (``kernel_grad(x_i, y, e_i)``)."""
    k = np.diag(ntkgan.kernel(x, y, arch=arch, kind=kind, backend="rust")).copy()
    eye = np.eye(len(y))
    g = np.array([ntkgan.kernel_grad(x[i : i + 1], y, eye[i], arch=arch, kind=kind, backend="rust")[0]
                  for i in range(len(x))])
    return k, g


def _errors(x, y, arch, kind, scale=1.0) -> tuple[np.ndarray, np.ndarray]:
    x, y = x * scale, y * scale
    k, g = _rust_pairs(x, y, arch, kind)
    ref = [kernel_and_grad_mp(x[i], y[i], arch, kind) for i in range(len(x))]
    ek = np.array([rel_err(k[i], r[0]) for i, r in enumerate(ref)])
    eg = np.array([rel_err(g[i], r[1]) for i, r in enumerate(ref)])
    return ek, eg


def _failures(ek, eg, deltas, label, value_rtol=VALUE_RTOL, grad_rtol=GRAD_RTOL) -> list[str]:
    bad = np.flatnonzero((ek > value_rtol) | (eg > grad_rtol))
    return [f"{label} delta={deltas[i]:g} row {i}: value {ek[i]:.1e}, grad {eg[i]:.1e}" for i in bad]


# ---------------------------------------------------------------------------------------------------
# The Rust backend against the exact reference
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
def test_rust_nearly_antipodal_matches_mp_reference(arch, d, kind):
    """Exactly and nearly antipodal pairs, every delta: value within VALUE_RTOL, gradient within GRAD_RTOL."""
    x, y, deltas = _pairs(d)
    ek, eg = _errors(x, y, arch, kind)
    failures = _failures(ek, eg, deltas, f"{_arch_id(arch)} d={d} {kind}")
    assert not failures, "\n".join(failures)


@requires_nt
@pytest.mark.parametrize("arch", ARCHS[:6], ids=_arch_id)
def test_rust_at_least_as_accurate_as_neural_tangents(arch):
    """At every delta, the Rust backend's worst error is at most neural-tangents' (or FLOOR), NTK, d = 3.

    neural-tangents (``arch.to_stax()``, eager) computes ``s^2`` by cancellation at every layer; its own
    errors are printed (run with ``-s``), never asserted: they document the oracle's failure, which is why
    the agreement tests (tests/test_backends_agree.py) let mpmath decide near the cusps.
    """
    d, kind = 3, "ntk"
    x, y, deltas = _pairs(d)
    kr, gr = _rust_pairs(x, y, arch, kind)
    kn, gn = nt_pairs(x, y, arch, kind)
    er = np.array([pair_errors(kr[i], gr[i], x[i], y[i], arch, kind) for i in range(len(x))])
    en = np.array([pair_errors(kn[i], gn[i], x[i], y[i], arch, kind) for i in range(len(x))])
    lines = []
    for delta in np.unique(deltas):
        sel = deltas == delta
        r, n = er[sel].max(axis=0), en[sel].max(axis=0)
        lines.append(f"delta {delta:7.0e}: rust value {r[0]:.1e} grad {r[1]:.1e}; "
                     f"neural-tangents value {n[0]:.1e} grad {n[1]:.1e}")
        assert (r <= np.maximum(n, FLOOR)).all(), "\n".join(lines)
    print(f"{_arch_id(arch)}\n" + "\n".join(lines))


@pytest.mark.parametrize("scale", [2.0**-20, 2.0**-10, 2.0**10, 2.0**20], ids=["2^-20", "2^-10", "2^10", "2^20"])
def test_rust_nearly_antipodal_at_every_scale(scale):
    """The same pairs (d = 2, 3) scaled by powers of two, with and without bias: the same bounds.

    With a bias, small inputs make every pair nearly parallel in feature space (the bias dominates), and
    large ones keep it nearly antipodal; both are carried without cancellation.
    """
    failures = []
    for arch in ARCHS[:6]:
        for d in (2, 3):
            x, y, deltas = _pairs(d)
            for kind in ("ntk", "nngp"):
                ek, eg = _errors(x, y, arch, kind, scale)
                failures += _failures(ek, eg, deltas, f"{_arch_id(arch)} d={d} {kind} scale={scale:g}")
    assert not failures, "\n".join(failures)


def test_issue_example_abs_depth5_d1():
    """The issue's case: abs, depth 5, w_std 0.926, no bias, d = 1, x > 0 > y (exactly antiparallel).

    Before: value off by 3e-8 relative and the gradient by up to ~100 %, depending on the last bits of
    the inputs (the rounding of ``(P - Sxy) cc - F (s - theta Sxy)``, 0 in exact arithmetic, left
    ``s ~ 1e-8 P`` at the second layer).  Here: a sweep of the last bits, against mpmath and against
    the identity ``k(x, y) = k(x, -y)`` of abs without bias (whose pairs ``(x, -y)`` are parallel).
    """
    arch = ARCHS[0]
    x0, y0 = 3.2194685, -1.2789180
    failures = []
    for k in range(-8, 9):
        x = np.array([x0 + k * 2.0**-50])
        y = np.array([y0 - k * 3 * 2.0**-52])
        for kind in ("ntk", "nngp"):
            k_ref, g_ref = kernel_and_grad_mp(x, y, arch, kind)
            kr, gr = _rust_pairs(x[None], y[None], arch, kind)
            km, gm = _rust_pairs(x[None], -y[None], arch, kind)
            ek, eg = rel_err(kr[0], k_ref), rel_err(gr[0], g_ref)
            mirror_off = abs(kr[0] - km[0]) > 4e-16 * abs(km[0]) or abs(gr[0, 0] - gm[0, 0]) > 1e-14 * abs(gm[0, 0])
            if ek > VALUE_RTOL or eg > GRAD_RTOL or mirror_off:
                failures.append(f"{kind} x={x[0]!r} y={y[0]!r}: value {ek:.1e} grad {eg:.1e} "
                                f"mirror {kr[0]} {km[0]}, {gr[0, 0]} {gm[0, 0]}")
            # homogeneity without bias: d/dx k(x, y) = k(x, y) / x for x > 0
            assert abs(gr[0, 0] - kr[0] / x[0]) <= 1e-14 * abs(gr[0, 0])
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("b_std", [0.0, 0.7])
@pytest.mark.parametrize("act", ["relu", ("leaky_relu", 0.01)], ids=["relu", "leaky0.01"])
def test_depth1_obtuse_pairs_at_moderate_angles(act, b_std):
    """Depth 1, pairs at ``eps = pi - theta`` from 0.011 to 0.6 in feature space, where ``sin^2 theta``
    is above TAU (the fast map runs) but the kernel of a ReLU-like map vanishes with eps (NNGP ``~eps^3``,
    NTK ``~eps``): the fast map lost ``~eps_mach / eps^2`` relative there (4e-12 on the NNGP at 0.011;
    found by the hypothesis property below, as an exactly antiparallel input pair next to a bias).  Such
    pairs in depth-1 networks are flagged by ``obtuse_margin`` (measured after: <= 2e-14)."""
    rng = np.random.default_rng(12)
    failures = []
    for eps in np.geomspace(0.011, 0.6, 12):
        arch = ntkgan.Mlp(depth=1, activation=act, w_std=1.1, b_std=b_std)
        phi, c = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 3.0)
        x = np.array([np.cos(phi), np.sin(phi)]) * rng.uniform(0.5, 3.0)
        y = -c * np.linalg.norm(x) * np.array([np.cos(phi + eps), np.sin(phi + eps)])
        for kind in ("ntk", "nngp"):
            k, g = _rust_pairs(x[None], y[None], arch, kind)
            ek, eg = pair_errors(k[0], g[0], x, y, arch, kind)
            if ek > TARGET_VALUE_RTOL or eg > GRAD_RTOL:
                failures.append(f"eps={eps:.3f} {kind}: value {ek:.1e}, grad {eg:.1e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("b_std", [0.0, 0.7])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_depth1_small_d_blocks_at_moderate_angles(d, b_std):
    """Depth 1 at ``d <= 3``: the blocks take ``s^2`` at the activation from the coordinates
    (``w^4 |x ^ y|^2 / d^2 + w^2 b^2 |x - y|^2 / d``, no cancellation) and the gradient along ``r = <x, y>/d``
    and ``s`` (``ds/dx`` from the same determinants), instead of sending the nearly antiparallel pairs
    to the stable path by ``obtuse_margin``.  Pairs at ``eps = pi - theta`` from 1e-3 to 0.3 (``d = 1``:
    exactly antiparallel), ReLU-like maps (``ab = 0`` or nearly), both parameterizations, through the
    rectangular and the symmetric Gram matrix and the plain gradient pass; ReLU without bias (the
    vanishing kernel, no zero crossing) at VALUE_RTOL, the others like the test above."""
    rng = np.random.default_rng(120 + d)
    xs, ys = [], []
    for eps in np.geomspace(1e-3, 0.3, 12):
        x = rng.normal(size=d) * rng.uniform(0.3, 3.0)
        c = rng.uniform(0.3, 3.0)
        if d == 1:
            y = -c * x
        else:
            u = rng.normal(size=d)
            u -= (u @ x) / (x @ x) * x
            u /= np.linalg.norm(u)
            y = -c * (np.cos(eps) * x - np.sin(eps) * np.linalg.norm(x) * u)
        xs.append(x)
        ys.append(y)
    x, y = np.array(xs), np.array(ys)
    n = len(x)
    failures = []
    for act in ("relu", ("leaky_relu", 0.01), ntkgan.ABRelu(0.0, 2.0)):
        for par in ("ntk", "standard"):
            arch = ntkgan.Mlp(depth=1, activation=act, w_std=1.1, b_std=b_std, parameterization=par, width=16)
            vanishing = act == "relu" and b_std == 0.0
            for kind in ("ntk", "nngp"):
                k, g = _rust_pairs(x, y, arch, kind)
                ksym = ntkgan.kernel(np.concatenate([x, y]), arch=arch, kind=kind, backend="rust")
                for i in range(n):
                    ek, eg = pair_errors(k[i], g[i], x[i], y[i], arch, kind)
                    es = pair_errors(ksym[i, n + i], g[i], x[i], y[i], arch, kind)[0]
                    vtol = VALUE_RTOL if vanishing else TARGET_VALUE_RTOL
                    if max(ek, es) > vtol or eg > GRAD_RTOL:
                        failures.append(f"{_arch_id(arch)} {kind} pair {i}: value {ek:.1e} (symmetric "
                                        f"{es:.1e}), grad {eg:.1e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("arch", [a for a in ARCHS if a.b_std == 0.0 and a.activation.a == -a.activation.b],
                         ids=_arch_id)
def test_abs_without_bias_is_even(arch):
    """``|W x|`` at the first layer makes the network even in x: ``k(x, y) = k(x, -y)`` exactly, NTK and
    NNGP, values and gradients.  The mirrored pairs are nearly coincident, which the acute branch computes
    (tests/test_near_coincident.py), so the two branches check each other without mpmath (to 8 ulps)."""
    rng = np.random.default_rng(5)
    for d in (2, 3, 16):
        x = rng.normal(size=(6, d))
        u = rng.normal(size=(6, d))
        y = 1.7 * x + np.array([0, 1e-4, 1e-7, 1e-10, 1e-13, 1e-16])[:, None] * u
        for kind in ("ntk", "nngp"):
            k1, g1 = _rust_pairs(x, y, arch, kind)
            k2, g2 = _rust_pairs(x, -y, arch, kind)
            np.testing.assert_allclose(k2, k1, rtol=2e-15, atol=0)
            scale = np.linalg.norm(g1, axis=1)
            assert (np.linalg.norm(g2 - g1, axis=1) <= 2e-15 * scale).all(), (d, kind, g1, g2)


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
def test_exactly_antipodal_follows_cusp_convention(arch, kind):
    """At ``y = -x`` (``s = 0`` exactly at the first layer) the gradient is the convention's:
    ``d/dx k(x, y)|_{y=-x} = 1/2 d/dx [k(x, -x)]`` (see ``antipodal_kernel_and_grad_mp``), the latter a true
    derivative, checked here against mpmath central differences as well."""
    rng = np.random.default_rng(8)
    for d in (1, 2, 5):
        x = rng.normal(size=d)
        k_ref, g_ref = antipodal_kernel_and_grad_mp(x, arch, kind)
        k, g = _rust_pairs(x[None], -x[None], arch, kind)
        half = [v / 2 for v in g_ref]
        assert rel_err(k[0], k_ref) <= VALUE_RTOL, (d, k[0], float(k_ref))
        assert rel_err(g[0], half) <= GRAD_RTOL, (d, g[0], [float(v) for v in half])
        # the reference's derivative along y = -x, by differences of k(x, -x)
        with mpmath.workdps(DPS):
            xm = [mpmath.mpf(float(v)) for v in x]
            h = mpmath.mpf("1e-30")
            fd = []
            for i in range(d):
                xp, xn = list(xm), list(xm)
                xp[i] += h
                xn[i] -= h
                fd.append((kernel_mp(xp, [-v for v in xp], arch, kind)
                           - kernel_mp(xn, [-v for v in xn], arch, kind)) / (2 * h))
            scale = max(mpmath.norm(g_ref), mpmath.mpf(1e-300))
            assert mpmath.norm([a - b for a, b in zip(g_ref, fd)]) / scale <= mpmath.mpf("1e-25")


@pytest.mark.parametrize("delta", [1e-4, 1e-8, 1e-12])
@pytest.mark.parametrize("arch", [ARCHS[0], ARCHS[3], ARCHS[5]], ids=_arch_id)
def test_reference_gradient_matches_mp_differences_near_antipodal(arch, delta):
    """The judge is right: near ``theta = pi`` the reference's dual-number gradient equals mpmath central
    differences with ``h = 1e-30 |x| << delta |x|`` (relative 1e-25)."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=3)
    u = rng.normal(size=3)
    y = -1.3 * x + delta * 1.3 * np.linalg.norm(x) * u / np.linalg.norm(u)
    for kind in ("ntk", "nngp"):
        _, g = kernel_and_grad_mp(x, y, arch, kind)
        fd = kernel_grad_fd_mp(x, y, arch, kind)
        assert rel_err([float(v) for v in fd], g) <= 1e-15
        with mpmath.workdps(DPS):
            assert mpmath.norm([a - b for a, b in zip(g, fd)]) / mpmath.norm(g) <= mpmath.mpf("1e-25")


# ---------------------------------------------------------------------------------------------------
# Random configurations (hypothesis), at the issue's targets
# ---------------------------------------------------------------------------------------------------


@st.composite
def _antipodal_cases(draw):
    fam = draw(st.sampled_from(["relu", "leaky_relu", "abs", "abrelu", "erf"]))
    w_std = draw(st.floats(0.5, 2.0))
    if fam == "leaky_relu":
        act = ("leaky_relu", draw(st.floats(0.01, 0.5)))
    elif fam == "abrelu":
        a = draw(st.floats(-2.0, 2.0))
        b = draw(st.floats(-2.0, 2.0).filter(lambda v: abs(v - a) > 0.05))
        act = ntkgan.ABRelu(a, b)
    elif fam == "erf":
        # out of the chaotic phase (angle gain w^2 a^2 b^2 (4/pi) / r <= 1 at every layer): there the
        # kernel's own condition number grows like the gain to the power depth (docs/kernel_accuracy.md)
        a = draw(st.floats(0.2, 2.0))
        act = ("erf", a, draw(st.floats(0.1, 0.88 / (w_std * a))), draw(st.floats(-1.0, 1.0)))
    else:
        act = fam
    arch = ntkgan.Mlp(
        depth=draw(st.integers(1, 6)),
        activation=act,
        w_std=w_std,
        # a bias far below the inputs' scale (1e-38 against 1e4) puts s^2 below the reference's 80 digits
        b_std=draw(st.one_of(st.just(0.0), st.floats(0.01, 2.0))),
        parameterization=draw(st.sampled_from(["ntk", "standard"])),
        width=draw(st.sampled_from([1, 16, 128])),
    )
    d = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=d) * 2.0 ** draw(st.integers(-20, 20))
    what = draw(st.sampled_from(["exact", "antiparallel", "near", "near"]))
    c = 1.0 if what == "exact" else draw(st.floats(0.25, 4.0))
    y = -c * x
    if what == "near":
        u = rng.normal(size=d)
        y = y + 10.0 ** -draw(st.floats(4.0, 12.0)) * c * np.linalg.norm(x) * u / np.linalg.norm(u)
    return arch, draw(st.sampled_from(["ntk", "nngp"])), x, y


#: Floors of the hypothesis property, relative to the natural scale ``N = sqrt(k(x, x) k(y, y))`` (see
#: ``pair_errors``).  Random configurations reach the conditioning limits of the kernel itself, where no
#: float64 evaluation is relatively accurate: zero crossings (e.g. erf with ``c != 0``, whose two NTK
#: terms cancelled to 8e-5 N: 1.5e-12 relative, i.e. 1e-16 N absolute) and stationary points of the
#: gradient (a depth-1 ReLU at ``y = -x / 2`` with a tiny bias: 5e-10 relative on a gradient of
#: 1e-7 N / |x|).  Below these floors the errors are measured against them: values within 1e-15 N,
#: gradients within 1e-16 N / |x|.  The fixed grids above assert plain relative errors.
VALUE_FLOOR = 1e-2
GRAD_FLOOR = 1e-6


def _errors_floored(x: np.ndarray, y: np.ndarray, arch, kind: str) -> tuple[float, float]:
    """Errors of the Rust value and gradient of one pair against mpmath, relative, with the floors
    VALUE_FLOOR and GRAD_FLOOR."""
    k, g = _rust_pairs(x[None], y[None], arch, kind)
    return pair_errors(k[0], g[0], x, y, arch, kind, floor=VALUE_FLOOR, grad_floor=GRAD_FLOOR)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_antipodal_cases())
def test_random_antipodal_configurations_match_mp_reference(case):
    """Random ReLU-family (any ``a != b``) and erf networks, depth 1-6, with or without bias, both
    parameterizations, ``d`` 1-3, scales ``2^-20 ... 2^20``, exactly / nearly antipodal pairs: value within
    1e-13 and gradient within 1e-10 of the exact reference (the issue's targets)."""
    arch, kind, x, y = case
    ek, eg = _errors_floored(x, y, arch, kind)
    with np.printoptions(precision=17):
        msg = f"{arch!r} {kind} x={x!r} y={y!r}: value {ek:.1e} grad {eg:.1e}"
    assert ek <= TARGET_VALUE_RTOL, msg
    assert eg <= TARGET_GRAD_RTOL, msg


# ---------------------------------------------------------------------------------------------------
# Erf at large norms
# ---------------------------------------------------------------------------------------------------

ERF_ARCHS = [
    ntkgan.Mlp(depth=2, activation=("erf", 1.0, 0.7, 0.1), w_std=1.3, b_std=0.4),
    ntkgan.Mlp(depth=3, activation="sigmoid", w_std=1.0, b_std=0.0, parameterization="standard", width=16),
]


@pytest.mark.parametrize("arch", ERF_ARCHS, ids=["erf", "sigmoid-std"])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4, 1e8, 1e12], ids=lambda s: f"{s:g}")
def test_erf_large_norms_small_angles_match_mp_reference(arch, scale):
    """Nearly coincident and nearly antipodal pairs (delta 1e-3 ... 1e-12) and random pairs at ``|x|``
    up to 1e12: value within VALUE_RTOL, gradient within GRAD_RTOL (before: 2e-4 and 5e-3 at 1e12)."""
    rng = np.random.default_rng(int(np.log10(scale)) + 17)
    failures = []
    for d in (1, 3):
        for sign in (1.0, -1.0):
            x = rng.normal(size=d) * scale
            u = rng.normal(size=d)
            u /= np.linalg.norm(u)
            ys = [sign * 1.1 * x + delta * np.linalg.norm(x) * u for delta in (1e-3, 1e-6, 1e-9, 1e-12)]
            ys += [sign * x, rng.normal(size=d) * scale]
            for y in ys:
                for kind in ("ntk", "nngp"):
                    k_ref, g_ref = kernel_and_grad_mp(x, y, arch, kind)
                    k, g = _rust_pairs(x[None], y[None], arch, kind)
                    ek, eg = rel_err(k[0], k_ref), rel_err(g[0], g_ref)
                    if ek > VALUE_RTOL or eg > GRAD_RTOL:
                        failures.append(f"d={d} sign={sign} {kind} y={y!r}: value {ek:.1e} grad {eg:.1e}")
    assert not failures, "\n".join(failures)


def test_erf_deeper_layers_bound():
    """The documented bound for erf layers after the first: their variances are at most
    ``w^2 (a^2 + c^2) + b_std^2`` and the direct ``s^2`` costs ``~eps b^2 Sxx`` relative on the value.
    At ``b_std = 100`` (``b^2 Sxx ~ 5e3`` at the second erf layer) nearly coincident pairs stay within
    ``8 eps b^2 Sxx`` (measured: 3e-13 against a bound of 9e-12); at ``b_std = 1`` the value is exact to
    rounding."""
    eps = np.finfo(float).eps
    rng = np.random.default_rng(6)
    for b_std in (1.0, 100.0):
        arch = ntkgan.Mlp(depth=3, activation=("erf", 1.0, 0.7, 0.1), w_std=1.3, b_std=b_std)
        bound = max(VALUE_RTOL, 8 * eps * 0.7**2 * (1.3**2 * (1.0 + 0.1**2) + b_std**2))
        for _ in range(4):
            x = rng.normal(size=2)
            y = x + 10.0 ** rng.uniform(-12, -2) * rng.normal(size=2)
            for kind in ("ntk", "nngp"):
                k_ref, _ = kernel_and_grad_mp(x, y, arch, kind)
                k = ntkgan.kernel(x[None], y[None], arch=arch, kind=kind, backend="rust")[0, 0]
                assert rel_err(k, k_ref) <= bound, (b_std, kind, rel_err(k, k_ref), bound)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize(("kind", "slope"), [("nngp", 0.25), ("ntk", 0.5)])
def test_depth1_gradient_at_a_zero_row_follows_the_convention(d, kind, slope):
    """x = 0 in a bias-free depth-1 ReLU network (the depth-1 blocks at d <= 3): s = S = 0, where the
    convention takes the angle as pi/2 with a zero derivative (neural-tangents' fill value), so
    dk/dS = (pi - pi/2) / (2 pi) = 1/4 for the NNGP and 1/4 + Sdot = 1/2 for the NTK, and
    grad_x k(0, y) = slope * y / d.  Found by the derandomized backend-agreement tests."""
    arch = ntkgan.Mlp(depth=1, activation="relu", w_std=1.0, b_std=0.0)
    y = np.random.default_rng(d).normal(size=(3, d))
    w = np.array([0.5, -1.0, 2.0])
    g = ntkgan.kernel_grad(np.zeros((1, d)), y, w, arch=arch, kind=kind)
    np.testing.assert_allclose(g[0], slope * (w @ y) / d, rtol=1e-15, atol=1e-17)
