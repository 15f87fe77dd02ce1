"""Thread count of the Rust backend (a rayon pool owned by ``ntkgan._core``).

The pool is sized by ``set_num_threads(n)``, else ``$RAYON_NUM_THREADS``, else the number of cores.
Results are bit-identical for any thread count.  After ``fork()`` the child gets a fresh pool (an
inherited rayon pool has no threads in the child and would deadlock).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ntkgan._validation import check_int

__all__ = ["blas_single_thread", "get_num_threads", "set_num_threads"]

_blas_controller = None


def _core():
    from ntkgan import _core

    return _core


def set_num_threads(n: int) -> None:
    """Use ``n >= 1`` threads in the Rust backend from now on."""
    _core().set_num_threads(check_int(n, "n"))


def get_num_threads() -> int:
    """Number of threads the Rust backend uses."""
    return int(_core().get_num_threads())


@contextlib.contextmanager
def blas_single_thread() -> Iterator[None]:
    """Run the body with one BLAS (OpenBLAS/MKL) thread, restored afterwards.

    Code that alternates Rust kernels with small BLAS calls (a flow step; Lanczos products with an
    n x n Gram for n of a few thousand) runs much faster this way: after each call OpenBLAS's worker
    threads spin, waiting for more work, on the cores the Rust pool needs next (measured on 2 cores:
    the LSGAN flow step 98 ms with two BLAS threads, 28 ms with one).  Uses a cached
    ``threadpoolctl.ThreadpoolController`` (about 10 us per use).
    """
    global _blas_controller
    if _blas_controller is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS before the controller lists the libraries)
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=1, user_api="blas"):
        yield


def _reset_after_fork() -> None:  # pragma: no cover - exercised in forked children
    try:
        _core()._reset_after_fork()
    except ImportError:
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
