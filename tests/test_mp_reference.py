"""Checks of the test oracle ``tests/mp_reference.py`` (the mpmath kernel recursion and its exact gradient).

The reference must be right before it can judge anything, so it is checked four independent ways:

1. closed forms (arc-cosine kernel of Cho & Saul, Gaussian NNGP of ``Rbf``), both parameterizations;
2. neural-tangents (``arch.to_stax()``, float64) at well-separated random points, relative 1e-12 on the
   value and on the input gradient, for every activation family, both kinds and both parameterizations;
3. central finite differences computed with mpmath itself (step 1e-25 |x| at 80 digits, truncation
   error ~ (h / |x - y|)^2) at separated and at near-coincident points;
4. the cusp convention: ``d/dx k(x, y)|_{y=x} = 1/2 d/dx [k(x, x)]``, and neural-tangents agrees at x = y.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from conftest import assert_close, requires_nt
from mp_reference import (
    DPS,
    diag_kernel_and_grad_mp,
    kernel_and_grad_mp,
    kernel_grad,
    kernel_grad_fd_mp,
    kernel_matrix,
    kernel_mp,
    nt_pairs,
    rel_err,
)

from ntkgan.arch import Erf, Mlp

#: Architectures covering every activation family of the reference, both parameterizations, b_std = 0.
ARCHS = [
    Mlp(depth=1, activation="relu", w_std=1.0, b_std=0.0),
    Mlp(depth=3, activation="relu", w_std=1.5, b_std=1.0, parameterization="standard", width=16),
    Mlp(depth=2, activation=("leaky_relu", 0.2), w_std=1.3, b_std=0.3),
    Mlp(depth=2, activation="abs", w_std=0.9, b_std=1.0, parameterization="standard", width=5),
    Mlp(depth=2, activation="identity", w_std=1.1, b_std=0.5),
    Mlp(depth=2, activation=Erf(a=0.7, b=1.3, c=0.2), w_std=1.2, b_std=0.4),
    Mlp(depth=2, activation="sigmoid", w_std=1.0, b_std=1.0, parameterization="standard", width=7),
    Mlp(depth=2, activation=("rbf", 0.3), w_std=1.0, b_std=0.5),
]
KINDS = ("ntk", "nngp")


def _points(seed: int, n: int = 3, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, d))


# ---------------------------------------------------------------------------------------------------
# 1. closed forms
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w_std", [1.0, 1.7])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_relu_depth1_arccos_closed_form(w_std, parameterization):
    """One ReLU layer, no bias: the arc-cosine kernel of degree 1 (Cho & Saul 2009) and its NTK."""
    width = 9
    arch = Mlp(depth=1, activation="relu", w_std=w_std, b_std=0.0, parameterization=parameterization,
               width=width)
    x, y = _points(0, n=1, d=3)
    x, y = x[0], y[0]
    d = x.size
    nx, ny, dot = np.linalg.norm(x), np.linalg.norm(y), x @ y
    theta = math.acos(dot / (nx * ny))
    w2 = w_std**2
    arccos = w2 * nx * ny / (2 * math.pi * d) * (math.sin(theta) + (math.pi - theta) * math.cos(theta))
    sdot = (math.pi - theta) / (2 * math.pi)
    nngp = w2 * arccos
    if parameterization == "ntk":
        ntk = nngp + w2 * sdot * w2 * dot / d
    else:  # Theta1 = d Sigma0 + 1; readout: n_in Sigma + 1 + w^2 Sdot Theta1
        ntk = width * arccos + 1 + w2 * sdot * (dot + 1)
    assert_close(float(kernel_mp(x, y, arch, "nngp")), nngp, rtol=1e-14)
    assert_close(float(kernel_mp(x, y, arch, "ntk")), ntk, rtol=1e-14)


def test_rbf_depth1_gaussian_closed_form():
    """``Rbf(gamma)``, one layer, ``w_std = 1``, no bias: NNGP ``K = exp(-gamma |x-y|^2/d)``.

    NTK: ``K (1 + 2 gamma <x,y>/d)``.
    """
    gamma = 0.7
    arch = Mlp(depth=1, activation=("rbf", gamma), w_std=1.0, b_std=0.0)
    x, y = _points(1, n=1, d=5)
    x, y = x[0], y[0]
    d = x.size
    k = math.exp(-gamma * np.sum((x - y) ** 2) / d)
    assert_close(float(kernel_mp(x, y, arch, "nngp")), k, rtol=1e-14)
    assert_close(float(kernel_mp(x, y, arch, "ntk")), k * (1 + 2 * gamma * (x @ y) / d), rtol=1e-14)


# ---------------------------------------------------------------------------------------------------
# 2. neural-tangents at well-separated points
# ---------------------------------------------------------------------------------------------------


@requires_nt
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.activation}-{a.parameterization}-L{a.depth}")
def test_reference_matches_neural_tangents(arch, kind):
    """Value and input gradient agree with neural-tangents to relative 1e-12 at separated points."""
    x, y = _points(2)
    k_nt, g_nt = nt_pairs(x, y, arch, kind)
    for i in range(x.shape[0]):
        k_ref, g_ref = kernel_and_grad_mp(x[i], y[i], arch, kind)
        assert rel_err(k_nt[i], k_ref) <= 1e-12, (i, float(k_ref), k_nt[i])
        assert rel_err(g_nt[i], g_ref) <= 1e-12, (i, [float(v) for v in g_ref], g_nt[i])


@requires_nt
def test_neural_tangents_error_grows_as_points_approach():
    """Near x = y neural-tangents loses ~eps/|x-y|^2 on the ReLU gradient; the reference sees it as such.

    A check of the reference at near-coincident points where the oracle is still usable: the
    disagreement must stay within neural-tangents' own error law (bound 1e-13 / delta^2).
    """
    arch = Mlp(depth=2, activation="relu", w_std=1.0, b_std=1.0)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4))  # the shape of _points: JAX's eager ops are compiled once per shape
    u = rng.normal(size=(3, 4))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    deltas = np.array([1e-2, 1e-3, 1e-3])
    y = x + (deltas * np.linalg.norm(x, axis=1))[:, None] * u
    _, g_nt = nt_pairs(x, y, arch, "ntk")
    for i, delta in enumerate(deltas):
        _, g_ref = kernel_and_grad_mp(x[i], y[i], arch, "ntk")
        assert rel_err(g_nt[i], g_ref) <= 1e-13 / delta**2, (delta, rel_err(g_nt[i], g_ref))


# ---------------------------------------------------------------------------------------------------
# 3. finite differences in mpmath
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.activation}-{a.parameterization}-L{a.depth}")
def test_gradient_matches_mp_finite_differences(arch, kind):
    """Dual-number gradient = central differences (h = 1e-25 |x|, 80 digits) to relative 1e-40."""
    x, y = _points(4, n=1, d=3)
    _, g = kernel_and_grad_mp(x[0], y[0], arch, kind)
    with mpmath.workdps(DPS):
        fd = kernel_grad_fd_mp(x[0], y[0], arch, kind, h_rel="1e-25")
        assert mpmath.norm(g) > 0
        err = mpmath.norm([a - b for a, b in zip(g, fd)]) / mpmath.norm(g)
    assert err <= mpmath.mpf("1e-40"), float(err)


@pytest.mark.parametrize("delta", [1e-4, 1e-8, 1e-12])
@pytest.mark.parametrize(
    "arch",
    [Mlp(depth=3, activation="relu", w_std=1.5, b_std=1.0), Mlp(depth=2, activation="relu", b_std=0.0),
     Mlp(depth=2, activation="abs", b_std=1.0, parameterization="standard", width=8)],
    ids=["relu-L3-b1", "relu-L2-b0", "abs-standard"],
)
def test_gradient_finite_differences_near_coincident(arch, delta):
    """Near the cusp (|x - y| = delta |x|) the gradient still equals mpmath differences with h << delta."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=4)
    u = rng.normal(size=4)
    y = x + delta * np.linalg.norm(x) * u / np.linalg.norm(u)
    for kind in KINDS:
        _, g = kernel_and_grad_mp(x, y, arch, kind)
        with mpmath.workdps(DPS):
            fd = kernel_grad_fd_mp(x, y, arch, kind, h_rel="1e-30")
            err = mpmath.norm([a - b for a, b in zip(g, fd)]) / mpmath.norm(g)
        assert err <= mpmath.mpf("1e-25"), (kind, float(err))


# ---------------------------------------------------------------------------------------------------
# 4. the cusp convention and small helpers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.activation}-{a.parameterization}-L{a.depth}")
def test_coincident_gradient_is_half_diagonal_gradient(arch):
    """``d/dx k(x, y)|_{y=x} = 1/2 d/dx [k(x, x)]``.

    ReLU family: by the ds = 0 convention; smooth maps: by symmetry of k.
    """
    x = np.random.default_rng(6).normal(size=3)
    for kind in KINDS:
        k, g = kernel_and_grad_mp(x, x, arch, kind)
        k_diag, g_diag = diag_kernel_and_grad_mp(x, arch, kind)
        assert rel_err(float(k), k_diag) <= 1e-15
        with mpmath.workdps(DPS):
            scale = max(mpmath.norm(g_diag), 1)  # Rbf's NNGP diagonal is constant: zero gradient
            err = mpmath.norm([a - b / 2 for a, b in zip(g, g_diag)]) / scale
            # the diagonal gradient is a true derivative: check it by differences of k(x + h e, x + h e)
            xm = [mpmath.mpf(float(v)) for v in x]
            h = mpmath.mpf("1e-25")
            fd = []
            for i in range(3):
                xp, xn = list(xm), list(xm)
                xp[i] += h
                xn[i] -= h
                fd.append((kernel_mp(xp, xp, arch, kind) - kernel_mp(xn, xn, arch, kind)) / (2 * h))
            err_fd = mpmath.norm([a - b for a, b in zip(g_diag, fd)]) / scale
        assert err <= mpmath.mpf("1e-60"), (kind, float(err))
        assert err_fd <= mpmath.mpf("1e-40"), (kind, float(err_fd))


@requires_nt
def test_neural_tangents_follows_the_same_cusp_convention():
    """At x = y neural-tangents' safe sqrt gives the reference's convention gradient.

    Not to 1e-15: neural-tangents computes ``Sxx`` and ``Sxy`` by different float64 reductions, so at
    x == y its ``s^2`` can come out as a rounding-level positive number (1e-17) instead of 0; then ``s``
    is ~3e-9 and the gradient is off by up to ~1e-8 (seen: 8.5e-9 on these points).  The bound 1e-6
    still tells the convention (1/2 of the diagonal gradient) from any other choice.
    """
    x, _ = _points(7)
    for arch in (Mlp(depth=3, activation="relu", b_std=1.0), Mlp(depth=2, activation="relu", b_std=0.0)):
        _, g_nt = nt_pairs(x, x.copy(), arch, "ntk")
        for i in range(x.shape[0]):
            _, g_diag = diag_kernel_and_grad_mp(x[i], arch, "ntk")
            assert rel_err(g_nt[i], [v / 2 for v in g_diag]) <= 1e-6


def test_zero_input_uses_fill_value():
    """``b_std = 0`` and x = 0: ``atan2(0, 0) = pi/2`` (``Sdot = 1/4``); ``k(0, y) = 0``, finite gradient."""
    arch = Mlp(depth=2, activation="relu", b_std=0.0)
    y = np.array([0.3, -1.2])
    k, g = kernel_and_grad_mp(np.zeros(2), y, arch, "ntk")
    assert k == 0
    assert all(mpmath.isfinite(v) for v in g)


def test_matrix_helpers_match_scalar_functions():
    arch = ARCHS[2]
    x, y = _points(8, n=2, d=3)
    w = np.array([0.5, -2.0])
    K = kernel_matrix(x, y, arch, "ntk")
    assert K.shape == (2, 2)
    assert K[1, 0] == float(kernel_mp(x[1], y[0], arch, "ntk"))
    G = kernel_grad(x, y, w, arch, "ntk")
    g0 = [float(a) for a in kernel_and_grad_mp(x[0], y[0], arch)[1]]
    g1 = [float(a) for a in kernel_and_grad_mp(x[0], y[1], arch)[1]]
    assert_close(G[0], 0.5 * np.array(g0) - 2.0 * np.array(g1), rtol=1e-15)


def test_reference_rejects_what_it_cannot_compute():
    with pytest.raises(ValueError, match="no mpmath reference"):
        kernel_mp(np.ones(2), np.ones(2), Mlp(depth=1, activation="gelu"))
    with pytest.raises(ValueError, match="y has 3 features but x has 2"):
        kernel_mp(np.ones(2), np.ones(3), ARCHS[0])
    with pytest.raises(ValueError, match="kind must be"):
        kernel_mp(np.ones(2), np.ones(2), ARCHS[0], "ntkk")
