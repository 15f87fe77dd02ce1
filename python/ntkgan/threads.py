"""Thread count of the Rust backend (a rayon pool owned by ``ntkgan._core``).

The pool is sized by ``set_num_threads(n)``, else ``$RAYON_NUM_THREADS``, else the number of cores.
Results are bit-identical for any thread count.  After ``fork()`` the child gets a fresh pool (an
inherited rayon pool has no threads in the child and would deadlock).
"""

from __future__ import annotations

import numbers
import os

__all__ = ["get_num_threads", "set_num_threads"]


def _core():
    from ntkgan import _core

    return _core


def set_num_threads(n: int) -> None:
    """Use ``n >= 1`` threads in the Rust backend from now on."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    _core().set_num_threads(int(n))


def get_num_threads() -> int:
    """Number of threads the Rust backend uses."""
    return int(_core().get_num_threads())


def _reset_after_fork() -> None:  # pragma: no cover - exercised in forked children
    try:
        _core()._reset_after_fork()
    except ImportError:
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
