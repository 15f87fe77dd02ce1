r"""The Rust engine of finite-width discriminators: parameters in flat buffers, float64 or float32.

A :class:`~ntkgan.discriminator._finite.FiniteDiscriminator` keeps each plain half of its network
(:math:`f = \sum_h s_h f_h`, one half, or two for the antisymmetric :math:`(f_1 - f_2)/\sqrt2`) in one
contiguous buffer ``[W_0, b_0, ..., W_L, b_L]``; its ``params`` are numpy views into those buffers, so the
Rust passes (``ntkgan._core.FiniteNet64`` / ``FiniteNet32``) update them in place and everything that reads
``params`` (checkpoints, the numpy reference functions of :mod:`ntkgan.finite`) sees the same numbers.

For the built-in losses (ipm, lsgan, vanilla, hinge) :meth:`RustEngine.train` runs every gradient step in
one call: per step, each chunk of 64 rows runs the forward pass of every half, the loss cotangent
:math:`\partial L/\partial f(z_i) = \ell'(f(z_i)) w_i` and the backprop (optionally the gradient penalty's
double backprop) in one task, then the weights are updated,
:math:`W_l \mathrel{-}= \eta c_l (h_l^\top D_l + u_l^\top \delta_l)`, in blocks of 64 rows.  Any other
:class:`~ntkgan.discriminator.Loss` takes two calls per step: :meth:`RustEngine.forward` (returns
:math:`f` on the training points, keeping the activations), then, with the cotangent Python forms from
it, :meth:`RustEngine.backward_update`.  The partitions are fixed, so the numbers do not depend on the
thread count; the GEMMs are ``matrixmultiply``'s.  The numpy trainer
(:func:`ntkgan.discriminator._finite._gd_step`) computes the same step and is the reference in the tests
(equal within 1e-12 over 20 steps in float64).

Which networks run here: one output, an activation of the built-in classes
(:class:`~ntkgan.arch.ABRelu` and its named variants, :class:`~ntkgan.arch.Erf`, :class:`~ntkgan.arch.Rbf`,
:class:`~ntkgan.arch.Gelu`, :class:`~ntkgan.arch.Sin`), either parameterization.  Other activations (a user's
subclass with its own ``numpy_fn``) use the numpy trainer, in float64 only.
"""

from __future__ import annotations

import numpy as np

from ntkgan.arch import ABRelu, Erf, Gelu, Mlp, Rbf, Sin
from ntkgan.finite._passes import _scales

__all__ = ["DTYPES", "ENGINES", "RustEngine", "finite_spec", "pick_engine"]

#: Floating-point types of finite networks (``Config.d_dtype``).
DTYPES = ("float64", "float32")
#: Trainers: ``"auto"`` = Rust when the activation has a Rust implementation, else numpy.
ENGINES = ("auto", "rust", "numpy")


def finite_spec(activation) -> tuple[str, tuple[float, ...]] | None:
    """``(name, params)`` of the Rust implementation of ``activation``, or None (exact classes only)."""
    kind = type(activation)
    if kind is ABRelu:
        return "abrelu", (activation.a, activation.b)
    if kind is Erf:
        return "erf", (activation.a, activation.b, activation.c)
    if kind is Rbf:
        return "rbf", (activation.gamma,)
    if kind is Gelu:
        return "gelu", ()
    if kind is Sin:
        return "sin", (activation.a, activation.b, activation.c)
    return None


def pick_engine(arch: Mlp, engine: str, dtype: str) -> str:
    """Resolve ``engine`` to ``"rust"`` or ``"numpy"`` for ``arch`` and ``dtype`` (ValueError if impossible)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    native = finite_spec(arch.activation) is not None
    if engine == "auto":
        engine = "rust" if native else "numpy"
    if engine == "rust" and not native:
        raise ValueError(
            f"activation {arch.activation!r} has no Rust implementation for finite networks; "
            "use engine='numpy' (float64)"
        )
    if engine == "numpy" and dtype != "float64":
        raise ValueError(
            f"dtype={dtype!r} needs the Rust engine (the numpy trainer is float64 only); activation "
            f"{arch.activation!r}"
        )
    return engine


class RustEngine:
    """Flat parameter buffers of a network's halves and the Rust object that runs their passes.

    Parameters
    ----------
    arch : Mlp
    halves : list of list of (W, b)
        The plain halves (copied into the buffers, converted to ``dtype``).
    signs : tuple of float
        :math:`s_h`.
    dtype : {"float64", "float32"}
    share_core_of : RustEngine, optional
        An engine of the same network layout whose Rust object (and so its work space) to reuse.

    Attributes
    ----------
    flats : list of ndarray
        One contiguous buffer per half.
    views : list of list of (W, b)
        The halves' parameters as views into ``flats``.
    """

    def __init__(self, arch: Mlp, halves: list, signs: tuple, dtype: str,
                 share_core_of: RustEngine | None = None):
        name, act_params = finite_spec(arch.activation)
        self.dtype = np.dtype(dtype)
        first = halves[0]
        dims = [first[0][0].shape[0]] + [W.shape[1] for W, _ in first]
        scales = [(float(c), float(beta)) for c, beta in _scales(arch, first)]
        self.layout = (name, tuple(act_params), tuple(dims), tuple(scales), tuple(float(s) for s in signs),
                       self.dtype.name)
        if share_core_of is not None and share_core_of.layout == self.layout:
            self.core = share_core_of.core
        else:
            core_cls = _core().FiniteNet64 if dtype == "float64" else _core().FiniteNet32
            self.core = core_cls(name, list(act_params), dims, scales, [float(s) for s in signs])
        self.dims = dims
        self.flats = []
        self.views = []
        for half in halves:
            flat = _aligned_empty(self.core.n_params, self.dtype)
            self.flats.append(flat)
            self.views.append(_views(flat, half))
        self.load(halves)

    def load(self, halves: list) -> None:
        """Copy ``halves`` (same shapes) into the buffers."""
        for view, half in zip(self.views, halves):
            for (W, b), (W_new, b_new) in zip(view, half):
                W[...] = W_new
                b[...] = b_new

    def cast(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a C-contiguous array of the engine's dtype (no copy when it already is)."""
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        r""":math:`f(x_i) = \sum_h s_h f_h(x_i)`, shape (n,), keeping the activations for the update."""
        return self.core.forward(self.flats, x)

    def backward_update(self, x: np.ndarray, ct: np.ndarray, lr: float, grad_penalty: float) -> None:
        """One gradient step from the cotangent ``ct`` (n,) at the points of the last :meth:`forward`."""
        self.core.backward_update(self.flats, x, np.ascontiguousarray(ct, dtype=self.dtype), float(lr),
                                  float(grad_penalty))

    def train(self, x: np.ndarray, n_fake: int, loss_name: str, steps: int, lr: float,
              grad_penalty: float) -> None:
        """``steps`` gradient steps on the built-in loss ``loss_name`` (cotangents formed in Rust), in place.

        Raises ``FloatingPointError`` when a cotangent is not finite (the weights keep the last finite
        step, as with the two-call step)."""
        self.core.train(self.flats, x, int(n_fake), loss_name, int(steps), float(lr), float(grad_penalty))

    def value_and_grad(self, x: np.ndarray, want_grad: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), grad f(x))`` as float64 arrays, (n,) and (n, d) (the gradient (n, 0) without ``want_grad``)."""
        f, g = self.core.value_and_grad(self.flats, self.cast(x), want_grad)
        return np.asarray(f, dtype=np.float64), np.asarray(g, dtype=np.float64)


def _aligned_empty(n: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised 1-D array whose data starts on a 64-byte boundary (the Rust kernels' weight rows then
    start on cache lines)."""
    raw = np.empty(n + 64 // dtype.itemsize, dtype=dtype)
    offset = (-raw.ctypes.data % 64) // dtype.itemsize
    return raw[offset:offset + n]


def _views(flat: np.ndarray, half: list) -> list:
    out = []
    off = 0
    for W, b in half:
        n_w, n_b = W.size, b.size
        out.append((flat[off:off + n_w].reshape(W.shape), flat[off + n_w:off + n_w + n_b]))
        off += n_w + n_b
    if off != flat.size:  # pragma: no cover - the core and numpy disagree on the layout
        raise AssertionError(f"parameter layout mismatch: {off} values for a buffer of {flat.size}")
    return out


def _core():
    from ntkgan import _core

    return _core
