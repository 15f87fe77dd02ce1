"""Helpers shared by the tests that compare two kernel backends pair by pair.

Which pairs both float64 backends compute to ``RTOL``: away from the ReLU cusps (the angle between a layer's
two inputs not too small, where the difference formula ``s^2 = Sxx Syy - Sxy^2`` of neural-tangents and of
the JAX backend loses ``~1e-16 / sin^2`` relative), plus the pairs where both apply the same convention
exactly (equal rows; exactly parallel rows without bias).
"""

from __future__ import annotations

import ntkgan
import numpy as np
from conftest import assert_close
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

RTOL = 1e-10
#: Smallest ``sin^2`` of the angle between a layer's two inputs at which ``s^2 = Sxx Syy - Sxy^2`` is trusted
#: to ``RTOL`` (error ~1e-16 / sin^2).
MIN_SIN2 = 1e-5


def min_sin2(arch: ntkgan.Mlp, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, m): the smallest ``s^2 / (Sxx Syy)`` over the layers where it matters (float64 recursion).

    Every activation layer of the ReLU family (bias and small ``w_std`` shrink the angle layer after
    layer); only the first for erf and rbf (deeper, their variances are O(1) and ``s^2`` no longer
    cancels against anything large).  None for ``a == b`` (identity), whose kernel does not involve ``s``.
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


def usable_pairs(arch: ntkgan.Mlp, x: np.ndarray, y: np.ndarray, multiples=(-1.0,)) -> np.ndarray:
    """(n, m) bool: pairs on which both backends are accurate to ``RTOL``.

    Exactly equal rows (the cusp convention); without bias, exactly parallel rows (``d = 1``, ``y = c x``
    for the exact ``multiples`` the strategies draw, a zero row: ``s = 0`` at every layer in both
    backends); otherwise pairs well apart: ``|x - y| >= 1e-3 max(|x|, |y|)`` and ``sin^2 >= MIN_SIN2`` at
    every layer that matters (:func:`min_sin2`).
    """
    same = np.all(x[:, None, :] == y[None, :, :], axis=-1)
    zero = ~np.any(x != 0, axis=1)[:, None] | ~np.any(y != 0, axis=1)[None, :]
    parallel = (x.shape[1] == 1) | zero
    for c in multiples:
        parallel = parallel | np.all(c * x[:, None, :] == y[None, :, :], axis=-1)
    diff = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    size = np.maximum(np.linalg.norm(x, axis=1)[:, None], np.linalg.norm(y, axis=1)[None, :])
    apart = (diff >= 1e-3 * size) & (min_sin2(arch, x, y) >= MIN_SIN2)
    return same | (parallel & (arch.b_std == 0.0)) | apart


def usable_rows(arch: ntkgan.Mlp, z: np.ndarray, multiples=(-1.0,)) -> np.ndarray:
    """Rows of ``z`` such that every pair among them is usable (greedily drops the worst rows)."""
    keep = np.arange(z.shape[0])
    while keep.size:
        bad = ~usable_pairs(arch, z[keep], z[keep], multiples)
        if not bad.any():
            break
        keep = np.delete(keep, np.argmax(bad.sum(axis=1)))
    return z[keep]


def usable_columns(arch: ntkgan.Mlp, x: np.ndarray, y: np.ndarray, multiples=(-1.0,)) -> np.ndarray:
    """The rows of ``y`` usable with every row of ``x`` (:func:`usable_pairs`); rejects the example
    (``hypothesis.assume``) when there is none."""
    y = y[usable_pairs(arch, x, y, multiples).all(axis=0)]
    assume(y.shape[0] > 0)
    return y


def usable_points(arch: ntkgan.Mlp, z: np.ndarray, multiples=(-1.0,)) -> np.ndarray:
    """:func:`usable_rows` of ``z``; rejects the example (``hypothesis.assume``) when there is none."""
    z = usable_rows(arch, z, multiples)
    assume(z.shape[0] > 0)
    return z


def agree(actual, expected, what, case, rtol=RTOL, atol=0.0):
    """``actual`` equals ``expected`` to ``rtol``, with an absolute floor ``rtol * max|expected|``."""
    scale = float(np.abs(expected).max()) if np.size(expected) else 0.0
    assert_close(actual, expected, rtol=rtol, atol=max(rtol * scale, atol), err_msg=f"{what}: {case}")


def describe(arch, kind, x, y, w=None) -> str:
    """The case, printed exactly (for failure messages)."""
    with np.printoptions(precision=17, threshold=10_000):
        text = f"{arch!r} kind={kind!r}\nx={x!r}\ny={y!r}"
        return text if w is None else f"{text}\nw={w!r}"


def slow_settings(n: int):
    """hypothesis settings for ``n`` examples of a slow property (no deadline)."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@st.composite
def activations(draw, names):
    """An activation spec among ``names``, with random parameters."""
    name = draw(st.sampled_from(names))
    if name == "leaky_relu":
        return ("leaky_relu", draw(st.floats(0.01, 0.5)))
    if name == "abrelu":
        return ("abrelu", draw(st.floats(-1.5, 1.5)), draw(st.floats(-1.5, 1.5)))
    if name == "erf":
        return ("erf", draw(st.floats(0.2, 2.0)), draw(st.floats(0.2, 2.0)), draw(st.floats(-1.0, 1.0)))
    if name == "rbf":
        return ("rbf", draw(st.floats(0.1, 3.0)))
    return name


@st.composite
def archs(draw, names, max_depth: int, max_b_std: float):
    """A random :class:`ntkgan.Mlp` with an activation among ``names``."""
    return ntkgan.Mlp(
        depth=draw(st.integers(1, max_depth)),
        activation=draw(activations(names)),
        w_std=draw(st.floats(0.5, 2.0)),
        b_std=draw(st.one_of(st.just(0.0), st.floats(0.0, max_b_std))),
        parameterization=draw(st.sampled_from(["ntk", "standard"])),
        width=draw(st.sampled_from([1, 16, 128, 1000])),
    )


@st.composite
def inputs(draw, *, d_max: int, n_max: int, large: float, multiples):
    """``(x, y)``: Gaussian rows (norms ~0.5-10 log-uniform, a fraction ``large`` at 1e3), then zero rows in
    x and, in y, exact duplicates of rows of x, exact multiples ``c x_i`` (``c`` in ``multiples``, powers of
    two: exact) and zero rows."""
    d = draw(st.integers(1, d_max))
    n = draw(st.integers(1, n_max))
    m = draw(st.integers(1, n_max))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def rows(k):
        scale = 10.0 ** rng.uniform(-0.3, 1.0, size=(k, 1))
        scale[rng.random(k) < large] = 1e3
        return rng.normal(size=(k, d)) / np.sqrt(d) * scale

    x, y = rows(n), rows(m)
    for i in range(n):
        if draw(st.sampled_from(["keep", "keep", "keep", "zero"])) == "zero":
            x[i] = 0.0
    for j in range(m):
        what = draw(st.sampled_from(["keep", "keep", "dup", "dup", "multiple", "zero"]))
        src = x[draw(st.integers(0, n - 1))]
        if what == "dup":
            y[j] = src
        elif what == "multiple":
            y[j] = draw(st.sampled_from(multiples)) * src
        elif what == "zero":
            y[j] = 0.0
    return x, y
