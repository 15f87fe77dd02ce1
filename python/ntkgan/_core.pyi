"""Typed stub of the compiled module ``ntkgan._core`` (the Rust engine).

Inputs are validated by :mod:`ntkgan.kernels`; the functions here re-check shapes and raise ValueError on
inconsistent ones.  ``spec`` is the dict made by :meth:`ntkgan.Mlp.rust_spec`.  All work runs without the
GIL on the core's rayon pool; a Rust panic surfaces as RuntimeError.
"""

import numpy as np
import numpy.typing as npt

__version__: str
#: pairs with sin^2(theta) below this at some ReLU-family layer are recomputed by the stable recursion
TAU: float

def kernel(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64] | None, spec: dict, ntk: bool
) -> npt.NDArray[np.float64]:
    """(n, m) kernel matrix; ``y=None`` computes the exactly symmetric K(x, x)."""

def kernel_grad(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    spec: dict,
    ntk: bool,
) -> npt.NDArray[np.float64]:
    """(n, d) array ``G[i] = sum_j weights[j] d/dx k(x_i, y_j)``."""

def kernel_value_grad(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    spec: dict,
    ntk: bool,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(K(x, y) @ weights, kernel_grad(...))`` in one pass: shapes (n,) and (n, d)."""

def kernel_matvec(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], v: npt.NDArray[np.float64], spec: dict, ntk: bool
) -> npt.NDArray[np.float64]:
    """(n,) array ``K(x, y) @ v`` without storing K."""

def softmin(cost: npt.NDArray[np.float64], f: npt.NDArray[np.float64], eps: float) -> npt.NDArray[np.float64]:
    """(n,) array ``-eps * log sum_j exp(f_j - cost[i, j] / eps)`` (log-domain Sinkhorn's soft-min)."""

def set_num_threads(n: int) -> None:
    """Use n >= 1 threads from now on."""

def get_num_threads() -> int:
    """Number of threads of the pool."""

def simd_path() -> str:
    """``"avx512"``, ``"avx2"`` or ``"generic"``: the tile loops' code path on this CPU (the best it has, capped by
    ``$NTKGAN_SIMD``; every path gives the same bits)."""

def _reset_after_fork() -> None: ...
def _panic_for_tests() -> None: ...
