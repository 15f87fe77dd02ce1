"""Typed stub of the compiled module ``ntkgan._core`` (the Rust engine).

Inputs are validated by :mod:`ntkgan.kernels`; the functions here re-check shapes and raise ValueError on
inconsistent ones.  ``spec`` is the dict made by :meth:`ntkgan.Mlp.rust_spec`.  All work runs without the
GIL on the core's rayon pool; a Rust panic surfaces as RuntimeError.
"""

from typing import Generic, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

__version__: str
#: pairs with sin^2(theta) below this at some ReLU-family layer (nearly coincident or nearly antipodal)
#: are recomputed by the stable recursion
TAU: float

_Array: TypeAlias = npt.NDArray[np.float64]

def kernel(x: _Array, y: _Array | None, spec: dict, ntk: bool) -> _Array:
    """(n, m) kernel matrix; ``y=None`` computes the exactly symmetric K(x, x)."""

def kernel_grad(x: _Array, y: _Array, weights: _Array, spec: dict, ntk: bool) -> _Array:
    """(n, d) array ``G[i] = sum_j weights[j] d/dx k(x_i, y_j)``."""

def kernel_value_and_grad(x: _Array, y: _Array, weights: _Array, spec: dict, ntk: bool) -> tuple[_Array, _Array]:
    """``(K(x, y) @ weights, kernel_grad(...))`` in one pass: shapes (n,) and (n, d)."""

def kernel_matvec(x: _Array, y: _Array, v: _Array, spec: dict, ntk: bool) -> _Array:
    """(n,) array ``K(x, y) @ v`` without storing K."""

def softmin(cost: _Array, f: _Array, eps: float) -> _Array:
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

def gemm_rate(m: int, k: int, n: int, dtype: str, seconds: float) -> float:
    """GFLOP/s of the finite networks' GEMM on ``C (m x n) = A (m x k) B (k x n)``, split into chunks of 64 rows
    over the pool, repeated for at least ``seconds`` (a benchmark's floor).

    Raises
    ------
    ValueError
        A zero size, a negative or non-finite ``seconds``, a ``dtype`` other than ``"float32"``/``"float64"``.
    """

_F = TypeVar("_F", np.float32, np.float64)

class _FiniteNet(Generic[_F]):
    """The methods of :class:`FiniteNet64` and :class:`FiniteNet32` (typing only: no such class at run time)."""

    def __init__(
        self, activation: str, act_params: list[float], dims: list[int], scales: list[tuple[float, float]],
        signs: list[float],
    ) -> None: ...
    @property
    def n_params(self) -> int:
        """Scalars in one half's buffer."""
    def forward(self, params: list[npt.NDArray[_F]], x: npt.NDArray[_F]) -> npt.NDArray[_F]:
        """``f(x)``, shape (n,); keeps the activations for :meth:`backward_update`."""
    def backward_update(
        self, params: list[npt.NDArray[_F]], x: npt.NDArray[_F], ct: npt.NDArray[_F],
        lr: float, penalty: float,
    ) -> None:
        """One gradient step (in place) from the cotangent ``ct`` (n,) at the points of the last :meth:`forward`,
        with the gradient penalty ``penalty * mean |grad_x f|^2`` when ``penalty > 0``."""
    def train(
        self, params: list[npt.NDArray[_F]], x: npt.NDArray[_F], n_fake: int, loss: str,
        steps: int, lr: float, penalty: float,
    ) -> None:
        """``steps`` gradient steps (in place) on the built-in ``loss`` (``ipm``, ``lsgan``, ``vanilla``,
        ``hinge``) of the first ``n_fake`` rows of ``x`` (fake) against the rest (real); FloatingPointError when a
        cotangent is not finite."""
    def value_and_grad(
        self, params: list[npt.NDArray[_F]], x: npt.NDArray[_F], want_grad: bool
    ) -> tuple[npt.NDArray[_F], npt.NDArray[_F]]:
        """``(f(x), grad_x f(x))``, shapes (n,) and (n, d) ((n, 0) when ``want_grad`` is false)."""

class FiniteNet64(_FiniteNet[np.float64]):
    """The passes of a finite discriminator ``f = sum_h s_h f_h`` in float64 (one or two plain halves).

    ``FiniteNet64(activation, act_params, dims, scales, signs)``: the activation as ``Activation.finite_spec``
    names it (``abrelu``, ``erf``, ``rbf``, ``gelu``, ``sin``), layer widths ``[d, n_1, ..., n_L, 1]``, the
    ``(c_l, beta_l)`` of each dense layer, and one sign per half.  Each half's parameters are one contiguous
    buffer ``[W_0, b_0, ..., W_L, b_L]`` of ``n_params`` values.  Used by
    ``ntkgan.discriminator._finite_engine.RustEngine``.
    """

class FiniteNet32(_FiniteNet[np.float32]):
    """:class:`FiniteNet64` in float32 (parameters, inputs, cotangents and outputs are float32 arrays)."""

