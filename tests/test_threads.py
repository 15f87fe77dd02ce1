"""Tests of python/ntkgan/threads.py and the Rust backend's thread pool (rust/src/pool.rs).

Results must be bit-identical for any thread count (np.array_equal, not allclose), the pool size must
follow ``set_num_threads`` and ``$RAYON_NUM_THREADS``, and a forked child must be able to compute (an
inherited rayon pool has no threads in the child and would deadlock; the child must build a new one).
Rust only: skipped, with the reason, when ``ntkgan._core`` is not built.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import ntkgan
import numpy as np
import pytest
from ntkgan import Mlp, backends

pytestmark = pytest.mark.skipif(
    "rust" not in backends.available(),
    reason="the Rust extension ntkgan._core is not built (run `maturin develop`)",
)

#: JAX (imported by the test session) warns in its fork hook, and Python >= 3.12 warns when a
#: multi-threaded process forks; neither concerns the Rust pool, which these tests check.
_JAX_FORK_WARNING = "ignore:os.fork\\(\\) was called:RuntimeWarning"
_PY_FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"

ARCHS = [
    Mlp(depth=3, activation="relu", w_std=1.4, b_std=0.3),
    Mlp(depth=2, activation="erf", w_std=1.2, b_std=0.5, parameterization="standard", width=64),
    Mlp(depth=2, activation=("leaky_relu", 0.1), w_std=1.0, b_std=0.0),
]


@pytest.fixture
def restore_threads():
    """Put the pool size back after the test."""
    n = ntkgan.get_num_threads()
    yield
    ntkgan.set_num_threads(n)


def _all_results(x, y, w, wx, arch, kind):
    kw = {"arch": arch, "kind": kind, "backend": "rust"}
    return [
        ntkgan.kernel(x, y, **kw),
        ntkgan.kernel(x, **kw),
        ntkgan.kernel_grad(x, y, w, **kw),
        ntkgan.kernel_grad(x, None, wx, **kw),
        ntkgan.kernel_matvec(x, y, w, **kw),
        ntkgan.kernel_matvec(x, None, wx, **kw),
    ]


@pytest.mark.parametrize("d", [3, 100])
@pytest.mark.parametrize("arch", ARCHS, ids=["relu", "erf-standard", "leaky-nobias"])
def test_bit_identical_for_any_thread_count(restore_threads, arch, d):
    """N = 300, M = 257 (several tiles, ragged last tile): 1, 2 and 3 threads give the same bits."""
    rng = np.random.default_rng(d)
    x = rng.normal(size=(300, d))
    y = rng.normal(size=(257, d))
    x[7] = y[3]  # a cusp pair, x = y
    w, wx = rng.normal(size=257), rng.normal(size=300)
    for kind in ("ntk", "nngp"):
        ntkgan.set_num_threads(1)
        ref = _all_results(x, y, w, wx, arch, kind)
        for n in (2, 3):
            ntkgan.set_num_threads(n)
            got = _all_results(x, y, w, wx, arch, kind)
            for i, (a, b) in enumerate(zip(got, ref)):
                assert np.isfinite(a).all()
                assert np.array_equal(a, b), f"result {i} differs between 1 and {n} threads ({kind})"


def test_get_num_threads_reflects_setting(restore_threads):
    for n in (1, 3, 2, 5):
        ntkgan.set_num_threads(n)
        assert ntkgan.get_num_threads() == n
        assert isinstance(ntkgan.get_num_threads(), int)
    ntkgan.set_num_threads(np.int64(2))
    assert ntkgan.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, True, "2", None])
def test_invalid_thread_count(restore_threads, bad):
    before = ntkgan.get_num_threads()
    with pytest.raises(ValueError, match=f"^{re.escape(f'n must be an integer >= 1, got {bad!r}')}$"):
        ntkgan.set_num_threads(bad)
    assert ntkgan.get_num_threads() == before


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ntkgan
    print(ntkgan.get_num_threads())
    x = np.random.default_rng(0).normal(size=(300, 5))
    np.save(sys.argv[1], ntkgan.kernel(x, x[:257], arch=ntkgan.Mlp(depth=3), backend="rust"))
    ntkgan.set_num_threads(2)
    print(ntkgan.get_num_threads())
    """
)


@pytest.mark.parametrize("env_threads", ["1", "3"])
def test_rayon_num_threads_respected_in_subprocess(tmp_path, env_threads):
    """$RAYON_NUM_THREADS sizes the pool of a fresh process; set_num_threads overrides it; the numbers
    are those of this process."""
    env = dict(os.environ, RAYON_NUM_THREADS=env_threads)
    out = tmp_path / "k.npy"
    cmd = [sys.executable, "-c", _CHILD, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [env_threads, "2"]
    x = np.random.default_rng(0).normal(size=(300, 5))
    assert np.array_equal(np.load(out), ntkgan.kernel(x, x[:257], arch=Mlp(depth=3), backend="rust"))


def _fork_payload():
    x = np.random.default_rng(1).normal(size=(200, 4))
    arch = Mlp(depth=2, activation="relu")
    return (
        ntkgan.kernel(x, arch=arch, backend="rust"),
        ntkgan.kernel_grad(x, None, np.ones(200), arch=arch, backend="rust"),
    )


def _wait_or_kill(pid: int, timeout: float) -> int:
    """Exit status of child ``pid``; kills it and fails if it is still running after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child did not finish in {timeout} s (deadlock in an inherited thread pool?)")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available on this platform")
@pytest.mark.filterwarnings(_JAX_FORK_WARNING)
@pytest.mark.filterwarnings(_PY_FORK_WARNING)
@pytest.mark.parametrize("threads", [1, 2])
def test_os_fork_child_can_compute(tmp_path, restore_threads, threads):
    ntkgan.set_num_threads(threads)
    ref = _fork_payload()  # the parent's pool has run (its worker threads exist) before the fork
    out = tmp_path / "child.npz"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        code = 1
        try:
            k, g = _fork_payload()
            np.savez(out, k=k, g=g, n=ntkgan.get_num_threads())
            code = 0
        finally:
            os._exit(code)
    assert _wait_or_kill(pid, 60.0) == 0
    got = np.load(out)
    assert int(got["n"]) == threads
    assert np.array_equal(got["k"], ref[0]) and np.array_equal(got["g"], ref[1])


def _pool_task(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(150, 3))
    return ntkgan.kernel_matvec(x, None, np.ones(150), arch=Mlp(depth=2, activation="erf"), backend="rust")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no 'fork' start method")
@pytest.mark.filterwarnings(_JAX_FORK_WARNING)
@pytest.mark.filterwarnings(_PY_FORK_WARNING)
def test_multiprocessing_fork_pool_can_compute(restore_threads):
    ntkgan.set_num_threads(2)
    ref = [_pool_task(s) for s in range(3)]  # the parent's pool is warm before forking
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        got = pool.map_async(_pool_task, range(3)).get(timeout=60)
    for a, b in zip(got, ref):
        assert np.array_equal(a, b)


def test_rust_panic_becomes_a_python_exception():
    """A panic inside the Rust core (raised on purpose by a test hook) surfaces as RuntimeError, and the
    module keeps working afterwards (no abort, the pool is intact)."""
    core = pytest.importorskip("ntkgan._core", reason="the Rust extension is not built")
    with pytest.raises(RuntimeError, match="internal error in ntkgan._core .*deliberate panic"):
        core._panic_for_tests()
    x = np.eye(3)
    k = ntkgan.kernel(x, arch=ntkgan.Mlp(depth=1), backend="rust")
    assert k.shape == (3, 3) and np.isfinite(k).all()


def test_blas_single_thread_limits_and_restores():
    from threadpoolctl import threadpool_info

    from ntkgan.threads import blas_single_thread

    def blas_threads():
        return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})

    before = blas_threads()
    with blas_single_thread():
        assert blas_threads() == [1]
    assert blas_threads() == before
