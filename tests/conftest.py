"""Shared fixtures and helpers.

- ``assert_close(actual, expected, rtol, atol)``: checks every value is finite first, then compares.
- ``backend`` fixture: every installed kernel backend (POT's ``nx`` fixture idea).
- ``requires_jax``: skip marker with the reason, only when JAX is truly absent (the ``"jax"`` backend
  and the compiled flow steps need JAX only, any release from 0.4.30 on).
- ``requires_nt``: skip marker for the neural-tangents oracle (``backend="neural_tangents"``,
  ``Mlp.to_stax()``), which imports only on the pinned set (``ntkgan[oracle]``: jax 0.4.30).
- hypothesis profile ``ci`` (derandomised, no deadline) is loaded when ``CI`` is set.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from ntkgan import backends

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

HAS_JAX = "jax" in backends.available()
requires_jax = pytest.mark.skipif(not HAS_JAX, reason='JAX is not installed (pip install "ntkgan[jax]")')


def _neural_tangents_imports() -> bool:
    """Whether the oracle really imports (installed is not enough: 0.6.5 fails on jax >= 0.4.38)."""
    if "neural_tangents" not in backends.available(oracles=True):
        return False
    try:
        backends.get_backend("neural_tangents")
    except ImportError:
        return False
    return True


HAS_NT = _neural_tangents_imports()
requires_nt = pytest.mark.skipif(
    not HAS_NT, reason='the neural-tangents oracle needs the pinned set (pip install "ntkgan[oracle]")'
)


def linear_flow(n: int, t: float, seed: int = 0):
    """A test linear system ``y' = -M y + c`` (``M = G G^T / n``, SPD) and its solution at ``t`` from
    ``y(0) = 0`` by the matrix exponential of the augmented matrix ``[[-t M, t c], [0, 0]]``:
    ``(M, c, y(t))``, the reference of the Krylov and ODE solvers' tests."""
    import scipy.linalg

    rng = np.random.default_rng(seed)
    G = rng.normal(size=(n, n))
    M = G @ G.T / n
    c = rng.normal(size=n)
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = -t * M
    aug[:n, n] = t * c
    return M, c, scipy.linalg.expm(aug)[:n, n]


def assert_close(actual, expected, *, rtol=1e-10, atol=0.0, err_msg=""):
    """Assert all values are finite, then ``|a - e| <= atol + rtol * |e|`` elementwise."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape} {err_msg}"
    assert np.isfinite(actual).all(), f"actual has non-finite values {err_msg}"
    assert np.isfinite(expected).all(), f"expected has non-finite values {err_msg}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)


def central_difference(fn, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """``(fn(x + h e_i) - fn(x - h e_i)) / 2h`` in every entry ``i`` of ``x``: the gradient of a scalar ``fn``."""
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (fn(xp) - fn(xm)) / (2 * h)
    return g


@pytest.fixture(params=backends.BACKENDS)
def backend(request):
    """Each installed backend by name."""
    if request.param not in backends.available():
        pytest.skip(f"backend {request.param!r} not installed")
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _jax_x64():
    """The JAX backend works in float64."""
    if HAS_JAX:
        import jax

        jax.config.update("jax_enable_x64", True)
    yield
