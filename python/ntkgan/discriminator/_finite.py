r"""Finite-width discriminators: a real network trained by full-batch gradient descent on the GAN loss.

The network is the :class:`~ntkgan.arch.Mlp` of :mod:`ntkgan.finite` (numpy, hand-written backprop, no
JAX) at a finite width, NTK parameterization as given by ``arch``.  It minimises the discriminator loss

.. math::
    L(\theta) = \frac1N \sum_{i=1}^N \ell_{\mathrm{fake}}(f_\theta(x_i))
              + \frac1M \sum_{j=1}^M \ell_{\mathrm{real}}(f_\theta(y_j))

(:data:`~ntkgan.discriminator.LOSSES`) by gradient descent with step :math:`\eta` (``lr``),

.. math::
    \theta_{k+1} = \theta_k - \eta \nabla_\theta L(\theta_k)
                 = \theta_k - \eta \sum_{z \in Z} \frac{\partial L}{\partial f(z)}
                   \nabla_\theta f_{\theta_k}(z),
    \qquad Z = [x_1..x_N, y_1..y_M],

for :math:`s = \mathrm{round}(t / \eta)` steps: the finite-width twin of training time :math:`t`.  In
function space one step is :math:`f_{k+1}(x) \approx f_k(x) - \eta \sum_z \hat\Theta_k(x, z)\,
\partial L / \partial f(z)` with the empirical NTK :math:`\hat\Theta_k`; as the width grows
:math:`\hat\Theta_k \to \Theta` (the analytic NTK, constant in time) and the network tends to the kernel
gradient *descent* of :func:`ntkgan.train_discriminator` with ``width=None, dynamics="gd"`` (Jacot et al.
2018; Lee et al. 2019), the error decaying like :math:`O(\mathrm{width}^{-1/2})`.

Gradient penalty.  With ``grad_penalty`` :math:`= \lambda > 0` the loss becomes

.. math::
    L_\lambda(\theta) = L(\theta) + \lambda\, \frac{1}{N + M} \sum_{z \in Z} \|\nabla_x f_\theta(z)\|^2,

the mean squared input gradient over the **union** of the N fake and M real samples (so the two sides
weigh N : M; for N = M it equals the average of the two means).  Its parameter gradient is exact, by
double backprop through the network (:func:`ntkgan.finite.grad_penalty`; it needs the activation's
second derivative, zero for the ReLU family).  The penalty damps the discriminator: for a linear
:math:`f(x) = w \cdot x` it is :math:`\lambda\|w\|^2`, i.e. weight decay, which turns the particle /
discriminator oscillation of the GAN into a damped one (Durr et al.; ``ntkgan damping``).
``grad_penalty=0`` (the default) runs the unpenalised code path, bit for bit.

Initialisation.  ``f0="zero"`` uses the antisymmetric network
:math:`f = (f_{\theta_1} - f_{\theta_2})/\sqrt2` with :math:`\theta_2 = \theta_1` at init, so
:math:`f_0 \equiv 0` exactly while its NTK is the plain network's (the toolkit's
``--discr_antisymmetric``; the infinite-width counterpart is :math:`f_0 = 0`).  ``f0="random"`` uses the
plain network, whose :math:`f_0` is a draw of the NNGP prior at large width.

Implementation.  Two trainers compute the same steps.  The **Rust engine** (the default for every built-in
activation; :mod:`ntkgan.discriminator._finite_engine`) keeps each half's parameters in one flat buffer and
runs forward, backprop (with the penalty's double backprop) and the update in place on the core's thread
pool, in float64 or float32 (``dtype``), with no per-step allocation; Python only forms the loss cotangent
between the forward pass and the update.  The **numpy trainer** (``engine="numpy"``, float64; the test
reference, and the trainer of user-defined activations) uses the passes of :mod:`ntkgan.finite` and applies
each parameter gradient :math:`\partial L / \partial W_l = c_l h_l^\top \delta_l` (rank at most
:math:`n = N + M`) in place as one BLAS rank-n update (``dgemm`` with ``beta = 1``).  Both cost about three
GEMM passes over the weights per step (forward, backward, update): for the paper's width-128, depth-3
networks on 1 000 points, 0.2 GFLOP per half and step.  The two agree within 1e-12 over 20 steps.

References
----------
.. [1] Jacot, Gabriel, Hongler. Neural Tangent Kernel. NeurIPS 2018.
.. [2] Lee et al. Wide neural networks of any depth evolve as linear models under gradient descent.
       NeurIPS 2019.
.. [3] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.linalg import blas

from ntkgan import finite as _F
from ntkgan._validation import check_array, check_int, check_real
from ntkgan.arch import Mlp
from ntkgan.discriminator._base import Discriminator
from ntkgan.discriminator._finite_engine import RustEngine, pick_engine
from ntkgan.discriminator._losses import LOSSES, Loss, get_loss
from ntkgan.finite._checks import _check_arch, _check_params
from ntkgan.finite._passes import _deltas, _forward, _scales
from ntkgan.finite._penalty import _penalised_factors, _second_deriv_fn

__all__ = ["FiniteDiscriminator", "train_finite"]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
F0 = ("zero", "random")
DTYPES = ("float64", "float32")


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


def _check_lr(lr) -> float:
    return check_real(lr, "lr", positive=True)


def _check_steps(n_steps) -> int:
    return check_int(n_steps, "n_steps", 0)


def _check_grad_penalty(grad_penalty) -> float:
    return check_real(grad_penalty, "grad_penalty", nonneg=True)


def _check_f0(f0) -> str:
    if f0 not in F0:
        raise ValueError(f"f0 must be one of {F0}, got {f0!r}")
    return f0


def _owned(params):
    """C-contiguous float64 copies of every leaf (the discriminator updates them in place)."""
    return _F.tree_map(lambda a: np.array(a, dtype=np.float64, order="C", copy=True), params)


# --------------------------------------------------------------------------------------------------
# workers (trust their input)
# --------------------------------------------------------------------------------------------------


def _halves(params) -> tuple[list, tuple[float, ...]]:
    """The plain networks ``f_h`` and signs ``s_h`` with ``f = sum_h s_h f_h``."""
    if isinstance(params, _F.AntisymmetricParams):
        return [params.theta1, params.theta2], (_INV_SQRT2, -_INV_SQRT2)
    return [params], (1.0,)


def _rank_update(W: np.ndarray, h: np.ndarray, delta: np.ndarray, alpha: float) -> None:
    r"""In place :math:`W \mathrel{+}= \alpha\, h^\top \delta` (``h`` (n, n_in), ``delta`` (n, n_out)).

    ``W`` is C-contiguous, so ``W.T`` is Fortran-contiguous and BLAS ``dgemm`` updates it in place:
    :math:`W^\top \leftarrow \alpha\, \delta^\top h + W^\top`.
    """
    out = blas.dgemm(alpha, delta, h, beta=1.0, c=W.T, trans_a=1, overwrite_c=1)
    if not np.may_share_memory(out, W):  # pragma: no cover - only if BLAS had to copy
        W[...] = out.T


def _sample_weights(n_fake: int, n: int) -> np.ndarray:
    """``1/N`` on the ``n_fake`` fake rows, ``1/M`` on the real rows."""
    n_real = n - n_fake
    return np.concatenate([np.full(n_fake, 1.0 / n_fake), np.full(n_real, 1.0 / n_real)])


def _loss_cotangent(loss: Loss, f: np.ndarray, n_fake: int, weights: np.ndarray | None = None) -> np.ndarray:
    r"""Loss cotangent :math:`\partial L / \partial f(z)`, shape (n,).

    :math:`\ell'_{\mathrm{fake}}(f(x_i))/N` on the fake rows, then
    :math:`\ell'_{\mathrm{real}}(f(y_j))/M` on the real rows (``weights``: :func:`_sample_weights`).
    """
    if weights is None:
        weights = _sample_weights(n_fake, f.shape[0])
    return loss.deriv(f, n_fake) * weights


def _check_dtype(dtype) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def _gd_step(arch: Mlp, params, loss: Loss, z: np.ndarray, n_fake: int, lr: float,
             grad_penalty: float = 0.0) -> np.ndarray:
    r"""One full-batch gradient-descent step on ``L`` (+ the gradient penalty), in place.

    Returns ``f(z)`` before the step.  With ``grad_penalty`` :math:`\lambda > 0` the step is on
    :math:`L + \lambda \operatorname{mean}_{z \in Z} \|\nabla_x f(z)\|^2`: the penalty's double-backprop
    factors (:func:`ntkgan.finite.grad_penalty`) are computed before any weight moves, the loss cotangent
    enters the same backprop as the penalty's sources, and each layer gets two rank-n updates
    :math:`W_l \mathrel{-}= \eta c_l (h_l^\top D_l + u_l^\top \delta_l)`.
    """
    halves, signs = _halves(params)
    caches = [_forward(arch, p, z) for p in halves]
    f = sum(s * out[:, 0] for s, (out, _, _) in zip(signs, caches))
    ct = _loss_cotangent(loss, f, n_fake)
    if grad_penalty > 0.0:
        weights = np.full(z.shape[0], grad_penalty / z.shape[0])
        _, factors = _penalised_factors(arch, halves, signs, caches, weights, ct)
        for p, (hs, D, us, deltas) in zip(halves, factors):
            for (W, b), h, dl, u, de, (c, beta) in zip(p, hs, D, us, deltas, _scales(arch, p)):
                _rank_update(W, h, dl, -lr * c)
                _rank_update(W, u, de, -lr * c)
                if beta != 0.0:
                    b -= (lr * beta) * dl.sum(axis=0)
        return f
    updates = []
    for p, s, (_, hs, zs) in zip(halves, signs, caches):
        deltas, _ = _deltas(arch, p, zs, (s * ct)[:, None])
        updates.append((p, hs, deltas, _scales(arch, p)))
    for p, hs, deltas, scales in updates:
        for (W, b), h, delta, (c, beta) in zip(p, hs, deltas, scales):
            _rank_update(W, h, delta, -lr * c)
            if beta != 0.0:
                b -= (lr * beta) * delta.sum(axis=0)
    return f


# --------------------------------------------------------------------------------------------------
# the discriminator
# --------------------------------------------------------------------------------------------------


class FiniteDiscriminator(Discriminator):
    r"""A real network :math:`f_\theta` of architecture ``arch`` (width ``arch.width``), trainable in place.

    Built by :func:`train_finite` (or ``ntkgan.train_discriminator(..., width=...)``), or by
    :meth:`init` for a *persistent* discriminator trained alongside particles with :meth:`step`.
    :meth:`__call__` and :meth:`grad` evaluate the current network (the input gradient by backprop);
    :meth:`cost` and :meth:`cost_grad` (from :class:`Discriminator`) give :math:`c(f(x))` and
    :math:`c'(f(x))\nabla f(x)`.

    Parameters
    ----------
    arch : Mlp
        The architecture, with the network's width.
    params : list of (W, b) or ntkgan.finite.AntisymmetricParams
        Parameters (copied; the copy is updated in place by :meth:`step`).
    loss : str or Loss
        The loss minimised by :meth:`step` (and the generator cost).
    copy : bool, default=True
        Copy ``params`` (False: with the numpy engine, take ownership of them; they must then be
        C-contiguous float64 arrays, which :meth:`step` modifies in place.  The Rust engine always copies
        them into its buffers).
    dtype : {"float64", "float32"}, default="float64"
        Floating-point type of the parameters and of every pass (float32 needs the Rust engine).
    engine : {"auto", "rust", "numpy"}, default="auto"
        Trainer: the Rust engine (``"auto"`` picks it for every built-in activation) or the numpy
        reference (module notes).
    workspace_of : FiniteDiscriminator, optional
        A network of the same architecture, dtype and halves whose Rust work space (about 20 MB for the
        paper's networks on 1 000 points) this one reuses instead of allocating its own; the two must not
        train at the same time (a flow's re-initialised discriminator passes the previous one).

    Attributes
    ----------
    arch : Mlp
    params : list of (W, b) or AntisymmetricParams
        The current parameters (``AntisymmetricParams`` for ``f = (f_theta1 - f_theta2) / sqrt 2``).
    loss : Loss
    dim : int
        Input dimension ``d``.
    dtype : str
        ``"float64"`` or ``"float32"``.
    engine : str
        ``"rust"`` or ``"numpy"``.
    steps : int
        Gradient-descent steps taken so far.
    time : float
        Training time so far, :math:`\sum \eta` over the steps taken.

    Raises
    ------
    ValueError
        ``arch`` not an :class:`~ntkgan.arch.Mlp` or without a numpy activation, parameters that do not fit
        it or with more than one output, an unknown loss.

    Notes
    -----
    One :meth:`step` is :math:`\theta \leftarrow \theta - \eta \nabla_\theta L`, with
    :math:`\nabla_{W_l} L = c_l h_l^\top \delta_l` and :math:`\nabla_{b_l} L = \beta_l \sum_z \delta_l`
    for the backprop cotangent :math:`\delta_L = \partial L / \partial f(z)` (see :mod:`ntkgan.finite`);
    :meth:`param_grad` returns the same gradient through :func:`ntkgan.finite.vjp`.  With the gradient
    penalty :math:`\lambda > 0` (``grad_penalty``) the loss is
    :math:`L + \lambda \frac{1}{N+M}\sum_{z \in Z}\|\nabla_x f(z)\|^2` (the mean over the union of fake
    and real samples; module notes), differentiated exactly by double backprop.
    """

    def __init__(self, arch: Mlp, params, *, loss, copy: bool = True, dtype: str = "float64",
                 engine: str = "auto", workspace_of: FiniteDiscriminator | None = None):
        loss = get_loss(loss)
        arch = _check_arch(arch)
        dtype = _check_dtype(dtype)
        params, d_in, out_dim = _check_params(arch, params)
        if out_dim != 1:
            raise ValueError(f"params must have one output (a discriminator), got out_dim={out_dim}")
        super().__init__(loss=loss, dim=d_in)
        self.arch = arch
        self.dtype = dtype
        self.engine = pick_engine(arch, engine, dtype)
        self._engine: RustEngine | None = None
        if self.engine == "rust":
            halves, signs = _halves(params)
            other = workspace_of._engine if isinstance(workspace_of, FiniteDiscriminator) else None
            self._engine = RustEngine(arch, halves, signs, dtype, share_core_of=other)
        else:
            self._params = _owned(params) if copy else params
        self.steps = 0
        self.time = 0.0

    @classmethod
    def init(cls, arch: Mlp, dim: int, *, loss, f0: str = "zero", seed=None,
             rng: np.random.Generator | None = None, dtype: str = "float64",
             engine: str = "auto", workspace_of: FiniteDiscriminator | None = None) -> FiniteDiscriminator:
        r"""A freshly initialised network: antisymmetric (:math:`f_0 \equiv 0`) or plain (``f0="random"``).

        Parameters
        ----------
        arch : Mlp
            Architecture and width.
        dim : int
            Input dimension ``d``.
        loss : str or Loss
        f0 : {"zero", "random"}, default="zero"
            ``"zero"``: :math:`f = (f_{\theta_1} - f_{\theta_2})/\sqrt2` with :math:`\theta_2 = \theta_1`.
            ``"random"``: the plain network :math:`f_{\theta_1}`.
        seed : int, optional
            Seed of :func:`ntkgan.finite.init_params` (``numpy.random.default_rng(seed)``).
        rng : numpy.random.Generator, optional
            Generator to draw from instead of ``seed``.
        dtype : {"float64", "float32"}, default="float64"
            The parameters are drawn in float64 (the same draws for both types) and rounded to ``dtype``.
        engine : {"auto", "rust", "numpy"}, default="auto"
        workspace_of : FiniteDiscriminator, optional
            See the class parameters.

        Returns
        -------
        FiniteDiscriminator

        Raises
        ------
        ValueError
            Bad ``f0``, ``dim``, ``seed``/``rng`` (both given, or of the wrong type), ``arch``, ``loss``,
            ``dtype`` or ``engine``.
        """
        f0 = _check_f0(f0)
        params = _F.init_params(arch, dim, seed=seed, rng=rng, antisymmetric=f0 == "zero")
        # fresh C-contiguous float64 arrays: the numpy engine may own them without a copy
        return cls(arch, params, loss=loss, copy=False, dtype=dtype, engine=engine, workspace_of=workspace_of)

    @property
    def params(self):
        """The current parameters: a list of ``(W, b)``, or ``AntisymmetricParams`` for
        ``f = (f_theta1 - f_theta2) / sqrt 2`` (views into the Rust engine's buffers, updated in place).
        Assigning copies new values of the same shapes into them."""
        if self._engine is None:
            return self._params
        views = self._engine.views
        return _F.AntisymmetricParams(*views) if len(views) == 2 else views[0]

    @params.setter
    def params(self, value) -> None:
        value, d_in, out_dim = _check_params(self.arch, value)
        if (d_in, out_dim) != (self.dim, 1) or isinstance(value, _F.AntisymmetricParams) != self.antisymmetric:
            raise ValueError("new params must have the structure and shapes of the current ones")
        if self._engine is None:
            self._params = _owned(value)
            return
        halves, _ = _halves(value)
        if any(W.shape != V.shape for h, v in zip(halves, self._engine.views) for (W, _), (V, _) in zip(h, v)):
            raise ValueError("new params must have the structure and shapes of the current ones")
        self._engine.load(halves)

    def __repr__(self) -> str:
        kind = "antisymmetric" if self.antisymmetric else "plain"
        return (f"FiniteDiscriminator(loss={self.loss.name!r}, width={self.arch.width}, "
                f"depth={self.arch.depth}, {kind}, dtype={self.dtype!r}, engine={self.engine!r}, "
                f"steps={self.steps}, time={self.time:g})")

    @property
    def antisymmetric(self) -> bool:
        """Whether ``f = (f_theta1 - f_theta2) / sqrt 2``."""
        if self._engine is not None:
            return len(self._engine.flats) == 2
        return isinstance(self._params, _F.AntisymmetricParams)

    @property
    def width(self) -> int:
        """Hidden width of the network."""
        return self.arch.width

    # -- evaluation ----------------------------------------------------------------------------------

    def __call__(self, x) -> np.ndarray:
        r""":math:`f_\theta(x_i)`; ``x`` of shape (n, d), returns shape (n,) (float64)."""
        x = self._check_x(x)
        if self._engine is not None:
            return self._engine.value_and_grad(x, want_grad=False)[0]
        return _F.apply(self.arch, self.params, x)[:, 0]

    def grad(self, x) -> np.ndarray:
        r""":math:`\nabla_x f_\theta(x_i)` by backprop; ``x`` of shape (n, d), returns shape (n, d)."""
        return self.value_and_grad(x)[1]

    def value_and_grad(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), grad f(x))`` from one forward and one backward pass (float64 arrays)."""
        x = self._check_x(x)
        if self._engine is not None:
            return self._engine.value_and_grad(x)
        out, pullback = _F.vjp(self.arch, self.params, x)
        return out[:, 0], pullback(np.ones(x.shape[0]))[1]

    # -- training ------------------------------------------------------------------------------------

    def _check_samples(self, fake, real) -> tuple[np.ndarray, int]:
        fake = self._check_x(fake, "fake")
        real = self._check_x(real, "real")
        for name, arr in (("fake", fake), ("real", real)):
            if arr.shape[0] == 0:
                raise ValueError(f"{name} must hold at least one point, got shape {arr.shape}")
        return np.concatenate([fake, real]), fake.shape[0]

    def loss_value(self, fake, real, grad_penalty: float = 0.0) -> float:
        r"""The loss :math:`L_\lambda(\theta)` on ``fake`` and ``real``, a float.

        :math:`L_\lambda = \operatorname{mean}_i \ell_{\mathrm{fake}}(f(x_i))
        + \operatorname{mean}_j \ell_{\mathrm{real}}(f(y_j))
        + \lambda \operatorname{mean}_{z \in Z} \|\nabla_x f(z)\|^2`, :math:`\lambda` = ``grad_penalty``
        (the last term is left out when it is 0).
        """
        z, n_fake = self._check_samples(fake, real)
        grad_penalty = _check_grad_penalty(grad_penalty)
        f = self(z)
        value = self.loss.value(f[:n_fake], f[n_fake:])
        if grad_penalty > 0.0:
            value += grad_penalty * self.grad_sqnorm(fake, real)
        return value

    def grad_sqnorm(self, fake, real) -> float:
        r"""The penalised quantity :math:`\frac{1}{N+M}\sum_{z \in Z}\|\nabla_x f(z)\|^2`, a float.

        The mean over the union :math:`Z = [x_1..x_N, y_1..y_M]` of the fake and real samples.
        """
        z, _ = self._check_samples(fake, real)
        g = self.grad(z)
        return float(np.mean(np.einsum("ij,ij->i", g, g)))

    def param_grad(self, fake, real, grad_penalty: float = 0.0):
        r""":math:`\nabla_\theta L_\lambda`, with the structure of :attr:`params`.

        The loss part through :func:`ntkgan.finite.vjp`, the penalty part (when ``grad_penalty > 0``)
        through :func:`ntkgan.finite.grad_penalty` with weights :math:`\lambda / (N + M)`.

        Parameters
        ----------
        fake : array-like of shape (N, d)
        real : array-like of shape (M, d)
        grad_penalty : float, default=0.0
            :math:`\lambda \ge 0`.

        Returns
        -------
        list of (dW, db) or AntisymmetricParams
        """
        z, n_fake = self._check_samples(fake, real)
        grad_penalty = _check_grad_penalty(grad_penalty)
        out, pullback = _F.vjp(self.arch, self.params, z)
        grads = pullback(_loss_cotangent(self.loss, out[:, 0], n_fake))[0]
        if grad_penalty > 0.0:
            weights = np.full(z.shape[0], grad_penalty / z.shape[0])
            _, pen = _F.grad_penalty(self.arch, self.params, z, weights)
            grads = _F.tree_map(np.add, grads, pen)
        return grads

    def step(self, fake, real, n_steps: int = 1, lr: float = 0.1,
             grad_penalty: float = 0.0) -> FiniteDiscriminator:
        r"""Take ``n_steps`` steps :math:`\theta \leftarrow \theta - \eta\nabla_\theta L` (in place).

        Parameters
        ----------
        fake : array-like of shape (N, d)
            Generated samples :math:`x_i` (held fixed during the steps).
        real : array-like of shape (M, d)
            Target samples :math:`y_j`.
        n_steps : int, default=1
            Number of steps (0 does nothing).
        lr : float, default=0.1
            Step :math:`\eta > 0`.
        grad_penalty : float, default=0.0
            :math:`\lambda \ge 0`: step on :math:`L + \lambda \operatorname{mean}_{z \in Z}
            \|\nabla_x f(z)\|^2` (mean over the union of fake and real samples).  0 is the plain loss,
            bit for bit.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Samples that are not finite 2-D arrays with ``d`` features or are empty; bad
            ``n_steps``, ``lr`` or ``grad_penalty``; ``grad_penalty > 0`` with an activation that has no
            second derivative.
        FloatingPointError
            If the loss derivative becomes non-finite (divergent training).
        """
        z, n_fake = self._check_samples(fake, real)
        n_steps = _check_steps(n_steps)
        lr = _check_lr(lr)
        grad_penalty = _check_grad_penalty(grad_penalty)
        if grad_penalty > 0.0:
            _second_deriv_fn(self.arch.activation)
        if self._engine is None:
            for _ in range(n_steps):
                _gd_step(self.arch, self.params, self.loss, z, n_fake, lr, grad_penalty)
        elif n_steps and LOSSES.get(self.loss.name) is self.loss:
            # a built-in loss: the whole loop in Rust, cotangents included
            self._engine.train(self._engine.cast(z), n_fake, self.loss.name, n_steps, lr, grad_penalty)
        elif n_steps:
            engine = self._engine
            zc = engine.cast(z)
            weights = _sample_weights(n_fake, z.shape[0])
            for _ in range(n_steps):
                f = np.asarray(engine.forward(zc), dtype=np.float64)
                ct = _loss_cotangent(self.loss, f, n_fake, weights)
                engine.backward_update(zc, ct, lr, grad_penalty)
        self.steps += n_steps
        self.time += n_steps * lr
        return self


def train_finite(fake, real, *, loss, arch: Mlp, t: float, width: int, lr: float = 0.1, seed=0,
                 f0: str = "zero", grad_penalty: float = 0.0, dtype: str = "float64",
                 engine: str = "auto") -> FiniteDiscriminator:
    r"""A network of width ``width`` trained by gradient descent with step ``lr`` for ``round(t / lr)`` steps.

    The finite-width counterpart of ``ntkgan.train_discriminator(..., width=None, dynamics="gd")``: the
    architecture ``arch`` with its width replaced by ``width``, initialised by
    :meth:`FiniteDiscriminator.init` (antisymmetric, :math:`f_0 \equiv 0`, unless ``f0="random"``), then
    :math:`\theta_{k+1} = \theta_k - \eta \nabla_\theta L(\theta_k)` on the fixed samples.

    Parameters
    ----------
    fake : array-like of shape (N, d)
    real : array-like of shape (M, d)
    loss : str or Loss
    arch : Mlp
    t : float
        Training time ``>= 0``; the number of steps is ``round(t / lr)``.
    width : int
        Hidden width ``>= 1``.
    lr : float, default=0.1
        Step :math:`\eta > 0`.
    seed : int or numpy.random.Generator, default=0
        Seeds the initialisation (an int is ``numpy.random.default_rng(seed)``, as
        :func:`ntkgan.finite.init_params`).
    f0 : {"zero", "random"}, default="zero"
    grad_penalty : float, default=0.0
        :math:`\lambda \ge 0` of the gradient penalty
        :math:`\lambda \frac{1}{N+M}\sum_{z \in Z}\|\nabla_x f(z)\|^2` added to the loss.
    dtype : {"float64", "float32"}, default="float64"
    engine : {"auto", "rust", "numpy"}, default="auto"
        See :class:`FiniteDiscriminator`.

    Returns
    -------
    FiniteDiscriminator
        With ``steps = round(t / lr)`` and ``time = steps * lr``.

    Raises
    ------
    ValueError
        Naming the argument (bad samples, ``t``, ``width``, ``lr``, ``seed``, ``f0``, ``grad_penalty``,
        loss or arch).
    """
    if not isinstance(arch, Mlp):
        raise ValueError(f"arch must be an ntkgan.Mlp, got {type(arch).__name__}")
    t = check_real(t, "t", nonneg=True)
    width = check_int(width, "width")
    lr = _check_lr(lr)
    grad_penalty = _check_grad_penalty(grad_penalty)
    fake = check_array(fake, "fake")
    real = check_array(real, "real")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real has {real.shape[1]} features but fake has {fake.shape[1]}")
    if fake.shape[1] == 0:
        raise ValueError(f"fake must have at least one feature, got shape {fake.shape}")
    if isinstance(seed, np.random.Generator):
        seed_kw = {"rng": seed}
    else:
        seed_kw = {"seed": seed}
    arch = dataclasses.replace(arch, width=int(width))
    disc = FiniteDiscriminator.init(arch, fake.shape[1], loss=loss, f0=f0, dtype=dtype, engine=engine, **seed_kw)
    return disc.step(fake, real, n_steps=int(round(t / lr)), lr=lr, grad_penalty=grad_penalty)
