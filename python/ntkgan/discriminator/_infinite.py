r"""Infinite-width discriminators: the kernel gradient flow (or kernel gradient descent) of a GAN loss.

Setting.  Training set :math:`Z = [x_1..x_N, y_1..y_M]` (fake then real, :math:`n = N + M`), weights
:math:`w_z = 1/N` on fake and :math:`1/M` on real points (:math:`W = \operatorname{diag}(w)`), kernel
:math:`k` (the NTK of the architecture, or its NNGP) and Gram matrix :math:`K = k(Z, Z)`.  The loss is
:math:`L(f) = \sum_z w_z \ell_z(f(z))` with :math:`\ell_z = \ell_{\mathrm{fake}}` or :math:`\ell_{\mathrm{real}}`
(:mod:`ntkgan.discriminator._losses`).

The flow.  Franceschi et al. [1]_ write the infinite-width training as
:math:`\partial_t f_t = -T_{k,\hat\gamma}\big(\nabla_{L^2(\hat\gamma)} L(f_t)\big)` with
:math:`\hat\gamma = (\hat\alpha + \hat\beta)/2` and :math:`T_{k,\hat\gamma} h = \mathbb E_{z\sim\hat\gamma}[k(\cdot, z)
h(z)]`.  The :math:`L^2(\hat\gamma)` gradient is :math:`g(z) = w_z \ell_z'(f(z)) / \hat\gamma(z)` (the
directional derivative :math:`dL[h] = \sum_z w_z \ell'_z h(z) = \langle g, h\rangle_{L^2(\hat\gamma)}`), and
:math:`T_{k,\hat\gamma}` multiplies it back by :math:`\hat\gamma(z)`, so the masses cancel, for any
:math:`N, M` and with duplicated points:

.. math::
    \partial_t f_t(x) = -\sum_{z \in Z} k(x, z)\, \frac{\partial L}{\partial f(z)}
                     = -\sum_{z \in Z} k(x, z)\, w_z\, \ell'_z(f_t(z)),
    \qquad f_t = f_0 + \sum_{z} a_z(t)\, k(\cdot, z), \qquad \dot a = -W \ell'(f_t|_Z).

This is exactly what a finite network trained by gradient flow on :math:`L` becomes at infinite width
(:math:`\dot f(x) = \nabla_\theta f(x) \cdot \dot\theta = -\sum_z \Theta(x, z)\, \partial L / \partial f(z)`).
``dynamics="gd"`` is kernel gradient **descent**, :math:`a_{k+1} = a_k - \mathrm{lr}\, W \ell'(f_k|_Z)`,
for :math:`s = \mathrm{round}(t / \mathrm{lr})` steps: the infinite-width limit of the finite network's
own steps.

Closed forms (derived here; they reproduce the paper for :math:`N = M`).

- IPM (:math:`\ell'` constant): :math:`a = -t W \ell'`, i.e.
  :math:`f_t = f_0 + t\,(\mathbb E_{\hat\beta} k(\cdot, y) - \mathbb E_{\hat\alpha} k(\cdot, x))`, and
  :math:`\mathbb E_{\hat\beta} f_t - \mathbb E_{\hat\alpha} f_t = t\,\mathrm{MMD}_k^2(\hat\alpha, \hat\beta)`
  for :math:`f_0 = 0`.  Gradient descent equals the flow at :math:`t = s\,\mathrm{lr}`.
- Quadratic losses, :math:`\ell'_z(f) = \kappa_z (f - \rho_z)` (LSGAN: :math:`\kappa = 2`, :math:`\rho = -1`
  fake, :math:`+1` real).  With :math:`D = \operatorname{diag}(\kappa_z w_z)` and the **symmetric**
  :math:`A = D^{1/2} K D^{1/2} = V \Lambda V^\top` (the flow matrix :math:`K D` is not symmetric when
  :math:`N \ne M`, but is similar to :math:`A`):

  .. math::
      a(t) = D^{1/2}\, \psi(A)\, D^{1/2} (\rho - f_0|_Z), \qquad
      f_t|_Z = \rho + D^{-1/2} e^{-tA} D^{1/2} (f_0|_Z - \rho),

  with :math:`\psi(\lambda) = (1 - e^{-t\lambda})/\lambda`, :math:`\psi(0) = t` for the flow and
  :math:`\psi(\lambda) = (1 - (1 - \mathrm{lr}\,\lambda)^s)/\lambda`, :math:`\psi(0) = s\,\mathrm{lr}` for
  gradient descent.  For :math:`N = M` (:math:`D = 4/n`), :math:`f_t|_Z = \rho + e^{-4tK/n}(f_0 - \rho)`: the
  paper's formula.  :math:`\psi` is entire, so it is evaluated without NaN at :math:`\lambda = 0`
  (duplicated points make :math:`K` singular; neural-tangents' formula is NaN there).
  As :math:`t \to \infty` with :math:`K` positive definite, :math:`f_\infty = k(\cdot, Z) K^{-1} \rho`
  interpolates the labels.
- Smooth losses (vanilla, custom): the ODE in the :math:`n` scaled coefficients :math:`b = W^{-1} a`,
  :math:`\dot b = -\ell'(f_0|_Z + K W b)` (:func:`_solve_ode_flow`): for vanilla by a Taylor series in
  time whose coefficients follow exactly from :math:`\sigma' = \sigma(1 - \sigma)`
  (:func:`_solve_vanilla_taylor`), for custom losses by DOP853 (:func:`_dop853`), and by
  ``solve_ivp``'s LSODA with the Jacobian when stiff.  Vanilla also has the paper's Lambert-W
  eigenbasis formula, an approximation whose error is measured in :func:`_solve_lambertw`.
- Hinge: :math:`\ell'` is piecewise constant, so the flow is piecewise linear in time; it is solved
  exactly, event by event, with Filippov sliding on the margins (:func:`_solve_hinge_flow`).
- Gradient descent for non-closed-form losses iterates the update (``method="iterate"``).

Duplicated points.  Exact duplicates (also a fake point equal to a real one) are merged into one point
carrying the sum of their masses (fake mass :math:`w^f_u`, real mass :math:`w^r_u`), with
:math:`\partial L/\partial f(u) = w^f_u \ell'_{\mathrm{fake}}(f_u) + w^r_u \ell'_{\mathrm{real}}(f_u)`; for
LSGAN the merged point is quadratic with :math:`D_u = 2(w^f_u + w^r_u)` and the mass-weighted label
:math:`\rho_u = (w^r_u - w^f_u)/(w^r_u + w^f_u)`.  This is the same function (the copies share
:math:`k(\cdot, u)`) but removes the null space of :math:`K`, along which separate coefficients would grow
like :math:`t`.  The hinge and Lambert-W solvers keep the copies (one label each; finite all the same).

Solvers for quadratic losses (``method``): ``"eigh"`` (dense eigendecomposition of :math:`A`, O(n^3)),
``"krylov"`` (dense Gram, then Lanczos for :math:`\psi(A) b`, O(n^2) per iteration),
``"matrix_free"`` (Lanczos whose products :math:`A v = D^{1/2} K (D^{1/2} v)` go through
:func:`ntkgan.kernel_matvec`: O(n) memory, no n x n matrix).  ``"auto"`` picks by size
(:data:`EIGH_MAX_N`, :data:`DENSE_MAX_N`).

Solvers for vanilla and custom losses (measured at the paper's size: 500 particles after 3 steps of the
``inf_vanilla`` flow vs 500 ``eight_gaussians`` points, ReLU depth 3 with bias, t = 1, one BLAS thread,
2 cores; times exclude the 3.4 ms Gram matrix; errors relative to :math:`\max|f|` on :math:`Z`; see
``docs/vanilla_solvers.md``):

======================  ============================================  ==========  ==========================
``method``              computes                                      time        accuracy
======================  ============================================  ==========  ==========================
``"ode"``, vanilla      the flow by a Taylor series in time, order    3.9 ms      1.5e-12 vs a 1e-13
                        <= 24: 42 products (solve_ivp DOP853: 98)     (was 16)    reference (was 4.9e-12)
``"ode"``, custom       the flow by DOP853: solve_ivp's steps         12 ms       unchanged uncapped; tanh
                        without its overhead, capped for stability    (was 23)    t = 10: 1.9e-12 (2.8e-10)
``"lambertw"``          the paper's approximation, r(A) b by          1.3 ms      1.1e-12 vs eigh
                        Lanczos above EIGH_MAX_N (9 iterations)       (was 122)   (f on Z: 6e-14)
``"lambertw_eigh"``     the same by a dense eigendecomposition        122 ms      reference
======================  ============================================  ==========  ==========================

``"lambertw"`` picks ``eigh`` / ``krylov`` / ``matrix_free`` by size as ``"auto"`` does for quadratic
losses; ``"lambertw_eigh"``, ``"lambertw_krylov"`` and ``"lambertw_matrix_free"`` force one.  All
solvers are deterministic (same input, same bits: one BLAS thread, fixed summation order).

References
----------
.. [1] Franceschi et al.  A Neural Tangent Kernel Perspective of GANs.  ICML 2022.
.. [2] Jacot, Gabriel, Hongler.  Neural Tangent Kernel.  NeurIPS 2018.
.. [3] Lee et al.  Wide neural networks of any depth evolve as linear models.  NeurIPS 2019.
.. [4] Saad.  Analysis of some Krylov subspace approximations to the matrix exponential operator.
       SIAM J. Numer. Anal. 29 (1992).
.. [5] Jorba, Zou.  A software package for the numerical integration of ODEs by means of high-order
       Taylor methods.  Experimental Mathematics 14 (2005).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg

from ntkgan.arch import Mlp
from ntkgan.discriminator._base import Discriminator
from ntkgan.discriminator._losses import LOSSES, Loss
from ntkgan.discriminator._ode_solvers import (
    _solve_gd_iterate,
    _solve_hinge_flow,
    _solve_lambertw,
    _solve_ode_flow,
)
from ntkgan.discriminator._problem import _Problem, _solve_linear, _solve_quadratic
from ntkgan.discriminator._spectral import DEFAULT_TOL, lambertw_exp, psi_flow, psi_gd
from ntkgan.kernels import kernel, kernel_grad, kernel_matvec, kernel_value_and_grad

__all__ = ["DENSE_MAX_N", "EIGH_MAX_N", "LAMBERTW_METHODS", "KernelDiscriminator", "lambertw_exp",
           "train_infinite"]

#: ``method="auto"``: dense ``eigh`` up to this training-set size (measured crossover, see benches).
EIGH_MAX_N = 64
#: ``method="auto"``: dense Gram + Lanczos up to this size, matrix-free Lanczos above (memory: 8 n^2 bytes).
DENSE_MAX_N = 4096
#: vanilla's Lambert-W approximation: ``"lambertw"`` picks eigh / krylov / matrix_free by size like
#: ``"auto"``; the suffixed names force one.
LAMBERTW_METHODS = ("lambertw", "lambertw_eigh", "lambertw_krylov", "lambertw_matrix_free")


# ==================================================================================================
# the discriminator object
# ==================================================================================================


class KernelDiscriminator(Discriminator):
    r"""An infinite-width discriminator :math:`f(x) = f_0(x) + \sum_{z \in Z} a_z\, k(x, z)`.

    Built by :func:`ntkgan.train_discriminator` with ``width=None``.  Values use
    :func:`ntkgan.kernel_matvec` and gradients :func:`ntkgan.kernel_grad` with the coefficients as weights
    (:math:`\nabla f(x) = \nabla f_0(x) + \sum_z a_z \nabla_1 k(x, z)`), so no autodiff is involved.

    Attributes
    ----------
    loss : Loss
    arch : Mlp
    kind : {"ntk", "nngp"}
        The kernel :math:`k`.
    support : ndarray of shape (n, d)
        :math:`Z = [\text{fake}; \text{real}]`.
    n_fake : int
        :math:`N` (the first ``n_fake`` rows of ``support`` are fake).
    coef : ndarray of shape (n,)
        :math:`a(t)`.
    t : float
        Training time (for ``dynamics="gd"``: ``steps * lr``).
    dynamics : {"flow", "gd"}
    lr : float or None
    steps : int or None
        Number of gradient-descent steps (``dynamics="gd"``).
    method : str
        The solver that produced ``coef``.
    prior : object or None
        The random initial function (``f0="random"``), else None (:math:`f_0 = 0`).
    info : dict
        Solver diagnostics (iterations, function evaluations, seconds; ``n`` training points, ``n_solver``
        the points the solver worked on: exact duplicates merged, except for the closed form, hinge and
        Lambert-W solvers, which keep every copy).
    """

    def __init__(self, *, loss: Loss, arch: Mlp, kind: str, backend, support: np.ndarray, n_fake: int,
                 coef: np.ndarray, t: float, dynamics: str, lr, steps, method: str, prior=None,
                 info: dict | None = None, support_values: np.ndarray | None = None):
        super().__init__(loss=loss, dim=support.shape[1])
        self.arch = arch
        self.kind = kind
        self.backend = backend
        self.support = support
        self.n_fake = int(n_fake)
        self.coef = coef
        self.t = float(t)
        self.dynamics = dynamics
        self.lr = lr
        self.steps = steps
        self.method = method
        self.prior = prior
        self.info = dict(info or {})
        self._support_values = support_values

    def __repr__(self):
        return (f"KernelDiscriminator(loss={self.loss.name!r}, n_fake={self.n_fake}, "
                f"n_real={self.support.shape[0] - self.n_fake}, t={self.t}, dynamics={self.dynamics!r}, "
                f"method={self.method!r}, kind={self.kind!r})")

    def __call__(self, x) -> np.ndarray:
        r""":math:`f(x_i) = f_0(x_i) + \sum_z a_z k(x_i, z)`, shape (n,)."""
        x = self._check_x(x)
        out = kernel_matvec(x, self.support, self.coef, arch=self.arch, kind=self.kind, backend=self.backend)
        if self.prior is not None:
            out = out + self.prior(x)
        return out

    def grad(self, x) -> np.ndarray:
        r""":math:`\nabla f(x_i) = \nabla f_0(x_i) + \sum_z a_z \nabla_1 k(x_i, z)`, shape (n, d)."""
        x = self._check_x(x)
        out = kernel_grad(x, self.support, self.coef, arch=self.arch, kind=self.kind, backend=self.backend)
        if self.prior is not None:
            out = out + self.prior.grad(x)
        return out

    def value_and_grad(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), grad f(x))`` in one kernel pass (:func:`ntkgan.kernel_value_and_grad`)."""
        x = self._check_x(x)
        f, g = kernel_value_and_grad(x, self.support, self.coef, arch=self.arch, kind=self.kind,
                                     backend=self.backend)
        if self.prior is not None:
            f0, g0 = self.prior.value_and_grad(x)
            f, g = f + f0, g + g0
        return f, g

    @property
    def support_values(self) -> np.ndarray:
        """:math:`f_t` on the training set ``support`` (computed once), shape (n,)."""
        if self._support_values is None:
            self._support_values = self(self.support)
        return self._support_values


# ==================================================================================================
# the random initial function
# ==================================================================================================


class GaussianProcessPrior:
    r"""A seeded draw of the NNGP prior :math:`f_0 \sim \mathcal{GP}(0, \Sigma)` on :math:`Z`, extended by
    conditioning.

    On :math:`Z` the values are an exact draw, :math:`f_0|_Z = \Sigma_{ZZ}^{1/2}\xi` with
    :math:`\xi \sim \mathcal N(0, I_n)` from ``numpy.random.default_rng(seed)`` and the symmetric square
    root (so the draw does not depend on LAPACK's eigenvector signs; eigenvalues below
    :math:`10\, n\, \varepsilon\, \lambda_{\max}` are dropped, a variance change of that size).  Elsewhere
    :math:`f_0` is the **conditional mean** given those values,

    .. math::
        f_0(x) = \Sigma(x, Z)\, c, \qquad c = \Sigma_{ZZ}^{+} f_0|_Z = \Sigma_{ZZ}^{-1/2} \xi,

    a smooth function equal to the draw on :math:`Z` (the conditional fluctuation off :math:`Z` is not
    sampled: it would make :math:`f_0` rough and non-reproducible between calls).  The training dynamics
    only see :math:`f_0|_Z`, which is exact.  Needs the dense n x n NNGP Gram matrix.
    """

    def __init__(self, support: np.ndarray, arch: Mlp, backend, seed: int):
        self.support = support
        self.arch = arch
        self.backend = backend
        n = support.shape[0]
        gram = kernel(support, arch=arch, kind="nngp", backend=backend)
        lam, vec = scipy.linalg.eigh(gram, check_finite=False)
        keep = lam > 10.0 * n * np.finfo(float).eps * max(float(lam[-1]), 0.0)
        xi = np.random.default_rng(seed).standard_normal(n)
        v = vec[:, keep]
        proj = v.T @ xi
        root = np.sqrt(lam[keep])
        self.values = v @ (root * proj)
        self.coef = v @ (proj / root)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return kernel_matvec(x, self.support, self.coef, arch=self.arch, kind="nngp", backend=self.backend)

    def grad(self, x: np.ndarray) -> np.ndarray:
        return kernel_grad(x, self.support, self.coef, arch=self.arch, kind="nngp", backend=self.backend)

    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return kernel_value_and_grad(x, self.support, self.coef, arch=self.arch, kind="nngp",
                                     backend=self.backend)


def _lambertw_solver(method: str, n: int) -> str:
    """``"lambertw"`` picks the spectral solver by size, as ``"auto"`` does for quadratic losses."""
    if method != "lambertw":
        return method[len("lambertw_"):]
    if n <= EIGH_MAX_N:
        return "eigh"
    return "krylov" if n <= DENSE_MAX_N else "matrix_free"


def _auto_method(loss: Loss, n: int) -> str:
    if loss.closed_form == "linear":
        return "closed_form"
    if loss is LOSSES["hinge"]:
        return "piecewise_linear"
    if loss.closed_form == "quadratic":
        if n <= EIGH_MAX_N:
            return "eigh"
        return "krylov" if n <= DENSE_MAX_N else "matrix_free"
    return "ode"


def train_infinite(fake: np.ndarray, real: np.ndarray, *, loss: Loss, arch: Mlp, t: float, dynamics: str,
                   lr: float, seed: int, f0: str, backend, kind: str = "ntk", method: str = "auto",
                   tol: float = DEFAULT_TOL) -> KernelDiscriminator:
    r"""Worker of :func:`ntkgan.train_discriminator` for ``width=None`` (inputs already validated).

    ``dynamics="flow"`` integrates up to time ``t``; ``"gd"`` takes ``steps = round(t / lr)`` steps of size
    ``lr`` (and reports ``t = steps * lr``).
    """
    start = time.perf_counter()
    support = np.concatenate([fake, real], axis=0)
    n_fake = fake.shape[0]
    prior = GaussianProcessPrior(support, arch, backend, seed) if f0 == "random" else None
    full = _Problem.from_samples(support, n_fake, arch, kind, backend, None if prior is None else prior.values)
    if method == "auto":
        method = _auto_method(loss, full.n)
    if dynamics == "gd" and method in ("ode", "piecewise_linear"):
        method = "iterate"  # discrete steps: no ODE, just the update
    steps = None
    if dynamics == "gd":
        steps = round(t / lr)
        t = steps * lr
    info: dict = {}
    # hinge and Lambert-W keep one label per point; the closed form needs no merging (its coefficients
    # are the masses times t, whatever the duplicates); the other solvers merge exact duplicates
    unmerged = method in LAMBERTW_METHODS + ("piecewise_linear",) or loss.closed_form == "linear"
    prob = full if unmerged else full.merged()
    dense = prob.n <= DENSE_MAX_N  # read here, so that the solvers see a monkeypatched value too
    if loss.closed_form == "linear":
        coef = _solve_linear(loss, prob, t)
    elif method in LAMBERTW_METHODS:
        coef, info = _solve_lambertw(prob, t, _lambertw_solver(method, prob.n), tol)
    elif loss.closed_form == "quadratic" and method != "ode":
        psi = (lambda lam: psi_flow(lam, t)) if dynamics == "flow" else (lambda lam: psi_gd(lam, lr, steps))
        coef, info = _solve_quadratic(loss, prob, psi, method, tol)
    elif dynamics == "flow" and method == "piecewise_linear":
        coef, info = _solve_hinge_flow(prob, t, dense)
    elif dynamics == "flow":
        coef, info = _solve_ode_flow(loss, prob, t, tol, dense)
    else:
        coef, info = _solve_gd_iterate(loss, prob, lr, steps, dense)
    info.update(n=full.n, n_solver=prob.n, kernel_products=prob.n_matvec, seconds=time.perf_counter() - start)
    support_values = None
    if prob._gram is not None:
        support_values = (prob._gram @ coef + prob.f0_or_zero())[prob.inverse]
    coef = prob.expand(coef)
    return KernelDiscriminator(
        loss=loss, arch=arch, kind=kind, backend=backend, support=support, n_fake=n_fake, coef=coef, t=t,
        dynamics=dynamics, lr=lr if dynamics == "gd" else None, steps=steps, method=method, prior=prior,
        info=info, support_values=support_values,
    )
