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

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg
from scipy.integrate import DOP853, solve_ivp
from scipy.linalg.blas import dsymv
from scipy.special import expit

from ntkgan.arch import Mlp
from ntkgan.discriminator._base import Discriminator
from ntkgan.discriminator._losses import LOSSES, Loss
from ntkgan.kernels import kernel, kernel_grad, kernel_matvec, kernel_value_and_grad
from ntkgan.threads import blas_single_thread

__all__ = ["DENSE_MAX_N", "EIGH_MAX_N", "LAMBERTW_METHODS", "KernelDiscriminator", "lambertw_exp",
           "train_infinite"]

#: ``method="auto"``: dense ``eigh`` up to this training-set size (measured crossover, see benches).
EIGH_MAX_N = 64
#: ``method="auto"``: dense Gram + Lanczos up to this size, matrix-free Lanczos above (memory: 8 n^2 bytes).
DENSE_MAX_N = 4096
#: Default relative tolerance of the Lanczos and ODE solvers.
DEFAULT_TOL = 1e-10
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


# ==================================================================================================
# spectral functions (entire, NaN-free at lambda = 0)
# ==================================================================================================


def psi_flow(lam: np.ndarray, t: float) -> np.ndarray:
    r""":math:`\psi(\lambda) = (1 - e^{-t\lambda})/\lambda`, :math:`\psi(0) = t` (``lam`` clipped at 0)."""
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    x = t * lam
    small = x < 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        big = -np.expm1(-x) / lam
    return np.where(small, t * (1.0 - 0.5 * x), big)


def psi_gd(lam: np.ndarray, lr: float, steps: int) -> np.ndarray:
    r""":math:`\psi(\lambda) = (1 - (1 - \mathrm{lr}\,\lambda)^s)/\lambda = \mathrm{lr}\sum_{k<s}(1 -
    \mathrm{lr}\,\lambda)^k`, :math:`\psi(0) = s\,\mathrm{lr}` (``lam`` clipped at 0)."""
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    x = lr * lam
    out = np.empty_like(lam)
    small = x < 1e-12
    out[small] = steps * lr * (1.0 - 0.5 * (steps - 1) * x[small])
    mid = ~small & (x < 1.0)
    out[mid] = -np.expm1(steps * np.log1p(-x[mid])) / lam[mid]
    large = x >= 1.0
    out[large] = (1.0 - (1.0 - x[large]) ** steps) / lam[large]
    return out


def _log1p_solve(s: np.ndarray) -> np.ndarray:
    r"""The root :math:`\delta > -1` of :math:`\delta + \log(1 + \delta) = s` for :math:`s \ge 0`.

    Newton from :math:`\delta_0 = \max(s/2, s - \log(1 + s))`, where the concave increasing left side is
    below :math:`s`, so the iterates increase monotonically to the root; relative accuracy is kept as
    :math:`s \to 0` (:math:`\delta \approx s/2`).
    """
    s = np.asarray(s, dtype=np.float64)
    d = np.maximum(0.5 * s, s - np.log1p(s))
    for _ in range(100):
        g = d + np.log1p(d) - s
        step = g / (1.0 + 1.0 / (1.0 + d))
        d = d - step
        if np.all(np.abs(step) <= 4 * np.finfo(float).eps * np.abs(d)):
            break
    return d


def lambertw_exp(z) -> np.ndarray:
    r""":math:`W_0(e^z)` for real :math:`z \ge 1`, without overflow: :math:`W = 1 + \delta` where
    :math:`\delta + \log(1 + \delta) = z - 1` (from :math:`W + \log W = z`)."""
    return 1.0 + _log1p_solve(np.asarray(z, dtype=np.float64) - 1.0)


def lambertw_ratio(lam: np.ndarray, t: float) -> np.ndarray:
    r""":math:`u(\lambda, t)/\lambda`, with :math:`u = \lambda t + 1 - W_0(e^{\lambda t + 1})` the solution of
    :math:`\dot u = \lambda\,\sigma(-u)`, :math:`u(0) = 0`; equals :math:`t/2` at :math:`\lambda = 0`.

    With :math:`s = \lambda t` and :math:`W = 1 + \delta`: :math:`u/\lambda = t\,(s - \delta)/s`, evaluated
    without cancellation (:math:`\delta \approx s/2` for small :math:`s`)."""
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    s = t * lam
    d = _log1p_solve(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = t * (s - d) / s
    return np.where(s > 1e-200, r, 0.5 * t)


# ==================================================================================================
# Lanczos: psi(A) b for a symmetric positive semi-definite operator
# ==================================================================================================


def lanczos_apply(matvec: Callable[[np.ndarray], np.ndarray], b: np.ndarray,
                  fun: Callable[[np.ndarray], np.ndarray], *, rtol: float = DEFAULT_TOL,
                  maxiter: int = 500) -> tuple[np.ndarray, int]:
    r"""Krylov approximation of :math:`\mathrm{fun}(A)\, b` for symmetric PSD :math:`A` given by ``matvec``.

    Lanczos with full re-orthogonalisation builds :math:`A Q_m = Q_m T_m + \beta_m q_{m+1} e_m^\top`; then
    :math:`\mathrm{fun}(A) b \approx \|b\|\, Q_m\, \mathrm{fun}(T_m)\, e_1` with :math:`\mathrm{fun}(T_m)` from
    the eigendecomposition of the tridiagonal :math:`T_m` (Ritz values clipped at 0) [4]_.  For an entire
    ``fun`` (here :math:`\psi`) the error decays super-linearly in :math:`m`.  Stops when two successive
    updates of the small vector are below ``rtol`` relative, when the Krylov space is invariant
    (:math:`\beta_m \le 10^{-13}\|T_m\|`: exact), or at dimension ``n``.

    Returns
    -------
    y : ndarray of shape (n,)
    iterations : int
        Number of products with :math:`A`.

    Raises
    ------
    RuntimeError
        If ``maxiter`` iterations do not reach ``rtol`` (the message gives the estimate).
    """
    n = b.shape[0]
    beta0 = float(np.linalg.norm(b))
    if beta0 == 0.0:
        return np.zeros(n), 0
    m_max = min(int(maxiter), n)
    Q = np.empty((m_max, n))
    Q[0] = b / beta0
    alphas: list[float] = []
    betas: list[float] = []
    y_prev = None
    hits = 0
    err = math.inf
    for j in range(m_max):
        w = np.array(matvec(Q[j]), dtype=np.float64)
        alpha = float(Q[j] @ w)
        w -= alpha * Q[j]
        if j:
            w -= betas[-1] * Q[j - 1]
        for _ in range(2):  # full re-orthogonalisation ("twice is enough")
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        if j == 0:
            theta, S = np.array([alpha]), np.ones((1, 1))
        else:
            theta, S = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas), check_finite=False)
        y = S @ (fun(theta) * S[0])
        scale = float(np.linalg.norm(y))
        if y_prev is not None:
            err = float(math.hypot(np.linalg.norm(y[:-1] - y_prev), y[-1]))
            hits = hits + 1 if err <= rtol * scale else 0
        invariant = beta <= 1e-13 * max(float(np.max(np.abs(theta))), np.finfo(float).tiny)
        if hits >= 2 or invariant or j + 1 == n:
            return beta0 * (Q[: j + 1].T @ y), j + 1
        if j + 1 == m_max:
            break
        y_prev = y
        betas.append(beta)
        Q[j + 1] = w / beta
    raise RuntimeError(
        f"Lanczos did not reach rtol={rtol:g} in maxiter={m_max} iterations (last update {err:.2e} relative "
        f"{err / max(scale, 1e-300):.2e}); raise maxiter or loosen tol"
    )


# ==================================================================================================
# the solvers (trust their input)
# ==================================================================================================


def _has_duplicate_rows(z: np.ndarray) -> bool:
    """Whether two rows of ``z`` are equal: rows sorted lexicographically (``lexsort``, ~5x faster than
    ``np.unique(axis=0)``'s sort of row records), then neighbours compared."""
    if z.shape[0] < 2:
        return False
    s = z[np.lexsort(z.T[::-1])]
    return bool(np.any(np.all(s[1:] == s[:-1], axis=1)))


class _Problem:
    r"""Training points with their fake and real masses, and kernel access (dense Gram or matvecs).

    Point :math:`u` carries fake mass :math:`w^f_u` and real mass :math:`w^r_u` (:math:`1/N`, :math:`1/M`
    per copy), so :math:`\partial L / \partial f(u) = w^f_u \ell'_{\mathrm{fake}}(f_u) + w^r_u
    \ell'_{\mathrm{real}}(f_u)`.  :meth:`merged` collapses exact duplicates (a fake point equal to a real
    one included): :math:`k(\cdot, u)` is then one function with one coefficient, which removes the null
    space of :math:`K` they create (there the separate coefficients would grow like :math:`t` while their
    sum, the only thing that matters, stays bounded).
    """

    def __init__(self, support, wf, wr, arch, kind, backend, f0_values):
        self.support = support
        self.n = support.shape[0]
        self.wf, self.wr = wf, wr
        self.mass = wf + wr
        self.arch, self.kind, self.backend = arch, kind, backend
        self.f0 = f0_values  # (n,) or None
        self._gram = None
        self._gram_f = None  # the Gram as a Fortran-ordered array (its transpose view), for dsymv
        self._deriv_parts = None  # (index, masses) of the fake and of the real terms, for dloss
        self.n_matvec = 0
        # maps to the parent problem (identity unless built by merged()): parent point i is point
        # inverse[i] here; point u here is parent point first[u]
        self.first = self.inverse = np.arange(self.n)

    @classmethod
    def from_samples(cls, support, n_fake, arch, kind, backend, f0_values):
        n = support.shape[0]
        fake = np.arange(n) < n_fake
        wf = np.where(fake, 1.0 / n_fake, 0.0)
        wr = np.where(fake, 0.0, 1.0 / (n - n_fake))
        return cls(support, wf, wr, arch, kind, backend, f0_values)

    def merged(self) -> _Problem:
        """The same problem on the distinct points (masses added)."""
        if not _has_duplicate_rows(self.support):
            return self
        _, first, inverse = np.unique(self.support, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        m = first.size
        wf = np.bincount(inverse, weights=self.wf, minlength=m)
        wr = np.bincount(inverse, weights=self.wr, minlength=m)
        f0 = None if self.f0 is None else self.f0[first]
        out = _Problem(self.support[first], wf, wr, self.arch, self.kind, self.backend, f0)
        out.first, out.inverse = first, inverse
        return out

    def expand(self, coef: np.ndarray) -> np.ndarray:
        """Coefficients of a merged problem as coefficients on the parent's points (on first copies)."""
        out = np.zeros(self.inverse.size)
        out[self.first] = coef
        return out

    def gram(self) -> np.ndarray:
        if self._gram is None:
            self._gram = kernel(self.support, arch=self.arch, kind=self.kind, backend=self.backend)
        return self._gram

    def kmv(self, v: np.ndarray, dense: bool) -> np.ndarray:
        """``K @ v`` from the dense Gram or through kernel_matvec."""
        self.n_matvec += 1
        if dense:
            return self.gram() @ v
        return kernel_matvec(self.support, None, v, arch=self.arch, kind=self.kind, backend=self.backend)

    def symv(self, v: np.ndarray, dense: bool) -> np.ndarray:
        """``K @ v`` using the symmetry of :math:`K`: BLAS ``dsymv`` on one triangle of the dense Gram
        (half the memory traffic: 55 us instead of 100 us at n = 1000, one thread), else kernel_matvec.

        The Gram of :func:`ntkgan.kernel` is exactly symmetric; ``dsymv`` reads its lower triangle (the
        upper triangle of the transposed, Fortran-ordered view, so nothing is copied).
        """
        if not dense:
            return self.kmv(v, False)
        self.n_matvec += 1
        if self._gram_f is None:
            gt = self.gram().T
            self._gram_f = gt if gt.flags.f_contiguous else np.asfortranarray(gt)
        return dsymv(1.0, self._gram_f, v)

    def f0_or_zero(self) -> np.ndarray:
        return np.zeros(self.n) if self.f0 is None else self.f0

    def dloss(self, loss: Loss, f: np.ndarray) -> np.ndarray:
        r""":math:`\partial L / \partial f(u) = w^f_u \ell'_{\mathrm{fake}}(f_u) + w^r_u \ell'_{\mathrm{real}}(f_u)`.

        Each term is evaluated on the points that carry its mass only: a slice when they are contiguous
        (fake then real, the unmerged layout), else an index array, found once per problem.
        """
        if self._deriv_parts is None:
            parts = []
            for mass in (self.wf, self.wr):
                on = np.flatnonzero(mass > 0)
                if on.size == self.n:
                    parts.append((slice(None), mass))
                elif on.size and on[-1] - on[0] + 1 == on.size:
                    parts.append((slice(int(on[0]), int(on[-1]) + 1), mass[on[0]:on[-1] + 1]))
                elif on.size:
                    parts.append((on, mass[on]))
                else:
                    parts.append(None)
            self._deriv_parts = parts
        out = np.zeros_like(f)
        for part, deriv in zip(self._deriv_parts, (loss.fake_deriv, loss.real_deriv)):
            if part is not None:
                on, mass = part
                out[on] += mass * deriv(f[on])
        if not np.isfinite(out).all():
            raise FloatingPointError(f"loss {loss.name!r}: a derivative is not finite")
        return out

    def curvature(self, loss: Loss, f: np.ndarray) -> np.ndarray:
        r""":math:`\partial^2 L / \partial f(u)^2` by central differences of :math:`\ell'`."""
        h = 1e-6 * (1.0 + np.abs(f))
        return (self.dloss(loss, f + h) - self.dloss(loss, f - h)) / (2 * h)


def _solve_linear(loss: Loss, prob: _Problem, t: float) -> np.ndarray:
    gf, gr = loss.linear_params()
    return -t * (prob.wf * gf + prob.wr * gr)


def _solve_quadratic(loss: Loss, prob: _Problem, psi: Callable, method: str, tol: float) -> tuple[np.ndarray, dict]:
    kf, rf, kr, rr = loss.quadratic_params()
    d = prob.wf * kf + prob.wr * kr  # D
    rho = (prob.wf * kf * rf + prob.wr * kr * rr) / d
    sq = np.sqrt(d)  # D^{1/2}
    b = sq * (rho - prob.f0_or_zero())
    if method == "eigh":
        A = sq[:, None] * prob.gram() * sq[None, :]
        lam, V = scipy.linalg.eigh(A, check_finite=False, overwrite_a=True, driver="evd")
        return sq * (V @ (psi(lam) * (V.T @ b))), {"eigen_min": float(lam[0]), "eigen_max": float(lam[-1])}
    dense = method == "krylov"
    if dense:
        prob.gram()
    # one BLAS thread for the n x n products: spinning BLAS workers would slow the Rust calls around them
    with blas_single_thread():
        y, it = lanczos_apply(lambda v: sq * prob.kmv(sq * v, dense), b, psi, rtol=tol)
    return sq * y, {"iterations": it}


def _curvature_bound(loss: Loss, prob: _Problem) -> float:
    r"""A bound on :math:`\max_u |\partial^2 L/\partial f_u^2| / \omega_u` over :math:`f \in [-6, 6]`.

    :math:`\partial^2 L/\partial f_u^2 / \omega_u = (1 - c_u)\,\ell''_{\mathrm{fake}}
    + c_u\,\ell''_{\mathrm{real}}` with the real share :math:`c_u = w^r_u / \omega_u` (0 or 1 unless a fake point equals a real one), so
    the two second derivatives (central differences of :math:`\ell'`) are evaluated once on the 49-point
    grid and mixed over the distinct shares.
    """
    f = np.linspace(-6.0, 6.0, 49)
    h = 1e-6 * (1.0 + np.abs(f))
    cf = (loss.fake_deriv(f + h) - loss.fake_deriv(f - h)) / (2 * h)
    cr = (loss.real_deriv(f + h) - loss.real_deriv(f - h)) / (2 * h)
    share = np.unique(prob.wr / prob.mass)[:, None]
    curv = (1.0 - share) * cf[None, :] + share * cr[None, :]
    if not np.isfinite(curv).all():
        raise FloatingPointError(f"loss {loss.name!r}: a derivative is not finite")
    return float(np.max(np.abs(curv)))


#: Order of the Taylor-series integrator of the vanilla flow (kernel products per full step).  About
#: :math:`-\log(\mathrm{tol})` minimises the products per unit time; measured at n = 1000, t = 1..10.
TAYLOR_ORDER = 24
#: Stiffness index :math:`t\,\operatorname{tr}(K\Omega)\max|\ell''|` above which the ODE uses LSODA.
STIFF_INDEX = 2000.0
#: DOP853 steps are at most this over :math:`\operatorname{tr}(K\Omega)\max|\ell''|` (a bound on the
#: Jacobian's spectral radius), inside the method's real stability interval (about [-6.2, 0]).
DOP853_STABLE_STEP = 4.0


def _solve_vanilla_taylor(prob: _Problem, t: float, tol: float, dense: bool) -> tuple[np.ndarray, dict]:
    r"""The vanilla flow by a Taylor series in time (exact recurrences, adaptive step); returns :math:`a`.

    On :math:`Z`, with :math:`s = \sigma(f)`, :math:`\partial L/\partial f = w^f s - w^r \sigma(-f)
    = \omega s - w^r` and :math:`\sigma' = s(1 - s)`, the flow and the coefficients :math:`b = \Omega^{-1} a`
    obey

    .. math::
        \dot f = -K(\omega \odot s - w^r), \qquad \dot s = q \odot \dot f, \quad q = s(1 - s), \qquad
        \dot b = -(s - w^r/\omega).

    Writing :math:`f(\tau_0 + h) = \sum_k F_k h^k` (likewise :math:`S_k, Q_k, B_k`), the coefficients
    follow exactly, one kernel product per order:

    .. math::
        F_{k+1} = -\frac{K (\omega \odot S_k - w^r \delta_{k0})}{k+1}, \quad
        S_k = \frac1k \sum_{j=1}^{k} j F_j \odot Q_{k-j}, \quad
        Q_k = (1 - 2 S_0) \odot S_k - \sum_{j=1}^{k-1} S_j \odot S_{k-j}, \quad
        B_{k+1} = -\frac{S_k - (w^r/\omega) \delta_{k0}}{k+1},

    with :math:`S_0 = \sigma(f)`, :math:`Q_0 = \sigma(f)\sigma(-f)` and :math:`1 - 2S_0 = \sigma(-f) -
    \sigma(f)` (no cancellation near :math:`s = 1`).  :math:`f` is analytic in :math:`t` (the poles of
    :math:`\sigma` at :math:`f = \pm i\pi` are far from a real orbit), so the series converge
    geometrically.  Step: the coefficients are added one order at a time up to :data:`TAYLOR_ORDER`;
    the step ends at :math:`t` as soon as the last two terms of both series, with :math:`h` = the time
    left, are below :math:`\varepsilon_f = \mathrm{tol}\,(0.1 \max(\|f\|_\infty, h\|F_1\|_\infty) + 0.01)`
    (:math:`\varepsilon_b` likewise; the 0.01 matches the absolute tolerance ``tol / 100`` of the
    Runge-Kutta solver), else :math:`h` is the largest step that puts the last two terms below them
    (Jorba & Zou's rule [5]_): the first omitted term is then about :math:`(\varepsilon/\|f\|)^{1/p}
    \approx 0.4` times the last.  The flow contracts in the :math:`K^{-1}` norm
    (:math:`\frac{d}{dt}\|f - g\|^2_{K^{-1}} = -2 (f - g)\cdot(\ell'(f) - \ell'(g)) \le 0`, :math:`\ell'`
    increasing), so local errors add up without growing.
    """
    n, p = prob.n, TAYLOR_ORDER
    om, wf, wr = prob.mass, prob.wf, prob.wr
    f = prob.f0_or_zero().copy()
    b = np.zeros(n)
    F = np.empty((p + 1, n))  # F_0 .. F_p
    jF = np.empty((p + 1, n))  # j F_j
    S = np.empty((p + 1, n))  # S_0 .. S_p
    Q = np.empty((p, n))  # Q_0 .. Q_{p-1}
    Fn = np.empty(p + 1)  # ||F_j||_inf
    Bn = np.empty(p + 2)  # ||B_j||_inf
    tau, steps, products = 0.0, 0, 0
    while True:
        left = t - tau
        sp, sm = expit(f), expit(-f)
        g0 = wf * sp - wr * sm  # dL/df
        S[0], Q[0], d0 = sp, sp * sm, sm - sp
        F[0] = f
        F[1] = jF[1] = -prob.symv(g0, dense)
        products += 1
        b1 = -g0 / om  # B_1
        Fn[0], Fn[1] = np.max(np.abs(f)), np.max(np.abs(F[1]))
        Bn[0], Bn[1] = np.max(np.abs(b)), np.max(np.abs(b1))
        eps_f = tol * (0.1 * max(Fn[0], left * Fn[1]) + 0.01)
        eps_b = tol * (0.1 * max(Bn[0], left * Bn[1]) + 0.01)
        k = 1
        while True:
            S[k] = np.einsum("ij,ij->j", jF[1:k + 1], Q[k - 1::-1]) / k
            Bn[k + 1] = np.max(np.abs(S[k])) / (k + 1)
            if (k >= 2 and max(Fn[k - 1] * left ** (k - 1), Fn[k] * left**k) <= eps_f
                    and max(Bn[k] * left**k, Bn[k + 1] * left ** (k + 1)) <= eps_b):
                h = left
                break
            if k == p:
                h = min([left] + [(eps_f / Fn[j]) ** (1.0 / j) for j in (p - 1, p) if Fn[j] > 0]
                        + [(eps_b / Bn[j]) ** (1.0 / j) for j in (p, p + 1) if Bn[j] > 0])
                break
            Q[k] = d0 * S[k]
            if k > 1:
                Q[k] -= np.einsum("ij,ij->j", S[1:k], S[k - 1:0:-1])
            F[k + 1] = -prob.symv(om * S[k], dense) / (k + 1)
            products += 1
            jF[k + 1] = (k + 1) * F[k + 1]
            Fn[k + 1] = np.max(np.abs(F[k + 1]))
            k += 1
        if not (h > 0.0 and math.isfinite(h)):
            raise RuntimeError(f"vanilla Taylor flow: step {h!r} at time {tau!r} of {t!r}")
        # f(tau + h) = sum_{j<=k} F_j h^j;  b(tau + h) = b + h B_1 - sum_{1<=i<=k} S_i h^{i+1}/(i+1)
        powers = h ** np.arange(k + 2)
        f = powers[:k + 1] @ F[:k + 1]
        b = b + h * b1 - (powers[2:k + 2] / np.arange(2, k + 2)) @ S[1:k + 1]
        steps += 1
        if h >= left:
            break
        tau += h
        if steps > 100_000:
            raise RuntimeError(f"vanilla Taylor flow: more than {steps} steps before t={t}")
    return om * b, {"nfev": products, "ode_method": "taylor", "steps": steps, "order": p}


def _dop853(fun: Callable[[np.ndarray], np.ndarray], y0: np.ndarray, t: float, rtol: float,
            atol: float, max_step: float = math.inf) -> tuple[np.ndarray, dict]:
    r"""Integrate the autonomous :math:`\dot y = \mathrm{fun}(y)` from 0 to ``t`` by DOP853.

    scipy's ``solve_ivp(method="DOP853", max_step=max_step)`` step by step (its tableau
    ``scipy.integrate.DOP853.A, B, E3, E5``, error norm and step-size controller: safety 0.9, factors in
    [0.2, 10], exponent -1/8) without its per-step machinery (dense output, events, argument checks), so
    it takes the same steps and gives the same result up to rounding.  The first step is scipy's (Hairer,
    Norsett & Wanner, II.4); with :math:`y_0 = 0` it is at most 1e-4 and the next ones grow tenfold,
    about three steps (36 evaluations) more than a better guess would need at t = 1, but dropping that
    cap gave up to 3x larger errors against a 1e-13 reference (a tanh loss at t = 10), so it is kept.
    """
    A, B, E3, E5 = DOP853.A, DOP853.B, DOP853.E3, DOP853.E5
    n = y0.size
    Kst = np.empty((13, n))
    y, fy = y0, fun(y0)
    nfev = 1

    def rms(v):
        return float(np.linalg.norm(v)) / math.sqrt(n)

    scale = atol + np.abs(y0) * rtol
    d0, d1 = rms(y0 / scale), rms(fy / scale)
    h0 = min(1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1, t)
    d2 = rms((fun(y0 + h0 * fy) - fy) / scale) / h0
    nfev += 1
    if max(d1, d2) <= 1e-15:
        h_abs = max(1e-6, h0 * 1e-3)
    else:
        h_abs = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
    h_abs = min(100 * h0, h_abs, t)
    tau, steps, rejected_total = 0.0, 0, 0
    while tau < t:
        rejected = False
        while True:
            left = t - tau
            h = min(h_abs, left, max_step)
            if h < 10 * abs(np.nextafter(tau, np.inf) - tau):
                raise RuntimeError(f"DOP853: step size {h:.3g} too small at time {tau:g}")
            Kst[0] = fy
            for s in range(1, 12):
                Kst[s] = fun(y + h * (A[s, :s] @ Kst[:s]))
            y_new = y + h * (B @ Kst[:12])
            Kst[12] = f_new = fun(y_new)
            nfev += 12
            scale = atol + np.maximum(np.abs(y), np.abs(y_new)) * rtol
            e5 = (E5 @ Kst) / scale
            e3 = (E3 @ Kst) / scale
            n5, n3 = float(e5 @ e5), float(e3 @ e3)
            err = 0.0 if n5 == 0.0 and n3 == 0.0 else h * n5 / math.sqrt((n5 + 0.01 * n3) * n)
            if err < 1.0:
                factor = 10.0 if err == 0.0 else min(10.0, 0.9 * err ** (-1.0 / 8.0))
                if rejected:
                    factor = min(1.0, factor)
                h_abs = h * factor
                break
            h_abs = h * max(0.2, 0.9 * err ** (-1.0 / 8.0))
            rejected = True
            rejected_total += 1
        tau = t if h >= left else tau + h
        y, fy = y_new, f_new
        steps += 1
    return y, {"nfev": nfev, "steps": steps, "rejected": rejected_total}


def _solve_ode_flow(loss: Loss, prob: _Problem, t: float, tol: float) -> tuple[np.ndarray, dict]:
    r"""Integrate :math:`\dot b = -\Omega^{-1} \partial L/\partial f(f_0|_Z + K \Omega b)`, :math:`b(0) = 0`;
    return :math:`a = \Omega b` (:math:`\Omega` = the masses, so :math:`b = O(t\,|\ell'|)`).

    Vanilla: the Taylor-series integrator :func:`_solve_vanilla_taylor` (``info["ode_method"] =
    "taylor"``).  Other losses: DOP853 (explicit, 8th order, :func:`_dop853`) with ``rtol = tol`` and
    ``atol = tol / 100`` on :math:`b`, and with a dense Gram its steps capped at
    :data:`DOP853_STABLE_STEP` :math:`/ (\operatorname{tr}(K\Omega)\max|\ell''|)`.  Without the cap
    (as in ``solve_ivp``), steps grow until :math:`h\lambda_{\max}` nears the stability limit once the
    fast modes have decayed, and there DOP853's error estimate (about :math:`10\,\|e_5\|^2/\|e_3\|`
    over the whole vector) is fooled by the slow modes' large 3rd-order term :math:`e_3`: the fast
    mode's error grew 10x per step unseen, and LSGAN by ``method="ode"`` missed the closed form by up to
    1.9e-7 relative (200 random 1-D problems, n <= 8, t < 5; 1.3e-10 with the cap, for 3 % more
    evaluations over those problems).  Both use the symmetric product :meth:`_Problem.symv` and one BLAS
    thread.  When the problem is stiff for an explicit method, i.e. the stiffness index
    :math:`t\,\operatorname{tr}(K\Omega)\max|\ell''| >` :data:`STIFF_INDEX` (``tr`` bounds the largest
    eigenvalue; a long LSGAN flow is the typical case), and the Gram matrix is dense, it uses
    ``solve_ivp``'s LSODA (which switches to BDF when stiff; Radau and BDF alone stall on such long flows
    at this tolerance) with the Jacobian :math:`-\Omega^{-1}\operatorname{diag}(\partial^2 L/\partial
    f^2) K \Omega`, the curvature by central differences of :math:`\ell'`.  Needs a smooth :math:`\ell'`
    (the hinge has its own exact solver).
    """
    dense = prob.n <= DENSE_MAX_N
    f0, om = prob.f0_or_zero(), prob.mass
    b0 = np.zeros(prob.n)
    if t == 0.0:
        return b0, {"nfev": 0}
    # tr(K Omega) max|l''| bounds the spectral radius of the Jacobian (for f in [-6, 6])
    rate = float(np.dot(np.diag(prob.gram()), om)) * _curvature_bound(loss, prob) if dense else 0.0
    if t * rate > STIFF_INDEX:
        KO = prob.gram() * om[None, :]

        def rhs(_t, b):
            return -prob.dloss(loss, f0 + prob.kmv(om * b, dense)) / om

        def jac(_t, b):
            return -(prob.curvature(loss, f0 + KO @ b) / om)[:, None] * KO

        sol = solve_ivp(rhs, (0.0, t), b0, method="LSODA", rtol=tol, atol=tol * 1e-2, jac=jac)
        if not sol.success:
            raise RuntimeError(f"ODE solver failed for loss {loss.name!r} at t={t}: {sol.message}")
        return om * sol.y[:, -1], {"nfev": int(sol.nfev), "ode_method": "LSODA"}
    # one BLAS thread: the products alternate with small numpy work (and a fixed summation order)
    with blas_single_thread():
        if loss is LOSSES["vanilla"]:
            return _solve_vanilla_taylor(prob, t, tol, dense)

        def fun(b):
            return -prob.dloss(loss, f0 + prob.symv(om * b, dense)) / om

        max_step = DOP853_STABLE_STEP / rate if rate > 0.0 else math.inf
        b, info = _dop853(fun, b0, t, tol, tol * 1e-2, max_step)
    return om * b, {**info, "ode_method": "DOP853"}


def _solve_gd_iterate(loss: Loss, prob: _Problem, lr: float, steps: int) -> tuple[np.ndarray, dict]:
    r"""Kernel gradient descent :math:`a_{k+1} = a_k - \mathrm{lr}\,\partial L/\partial f(f_0|_Z + K a_k)`."""
    dense = prob.n <= DENSE_MAX_N
    f0 = prob.f0_or_zero()
    a = np.zeros(prob.n)
    for _ in range(steps):
        a -= lr * prob.dloss(loss, f0 + prob.kmv(a, dense))
    return a, {}


def _box_qp(B: np.ndarray, c: np.ndarray, upper: np.ndarray) -> np.ndarray:
    r"""``argmin 1/2 x'Bx - c'x`` over ``0 <= x <= upper`` (B symmetric PSD, a ridge of
    :math:`10^{-12}\max B_{ii}` makes it PD): primal active-set method from ``x = 0``."""
    m = c.shape[0]
    B = B + np.eye(m) * (1e-12 * max(float(np.max(np.diag(B))), np.finfo(float).tiny))
    x = np.zeros(m)
    lo = np.ones(m, dtype=bool)
    hi = np.zeros(m, dtype=bool)
    gscale = float(np.max(np.abs(c))) + float(np.max(np.abs(B))) * float(np.max(upper))
    gtol = 1e-12 * max(gscale, np.finfo(float).tiny)
    for _ in range(10 * m + 100):
        free = ~(lo | hi)
        g = B @ x - c
        p = np.zeros(m)
        if free.any():
            p[free] = np.linalg.solve(B[np.ix_(free, free)], -g[free])
        if np.max(np.abs(p), initial=0.0) <= 1e-14 * max(float(np.max(upper)), 1.0):
            # stationary on the working set: release the worst bound with a wrong-signed multiplier
            viol = np.where(lo, -g, 0.0) + np.where(hi, g, 0.0)
            i = int(np.argmax(viol))
            if viol[i] <= gtol:
                return np.clip(x, 0.0, upper)
            lo[i] = hi[i] = False
            continue
        alpha, block, to_hi = 1.0, -1, False
        for i in np.flatnonzero(free & (p != 0.0)):
            a = (upper[i] - x[i]) / p[i] if p[i] > 0 else -x[i] / p[i]
            if a < alpha:
                alpha, block, to_hi = a, i, p[i] > 0
        x = x + max(alpha, 0.0) * p
        if block >= 0:
            x[block] = upper[block] if to_hi else 0.0
            hi[block], lo[block] = to_hi, not to_hi
    raise RuntimeError("hinge flow: the box QP for the sliding points did not converge")


def _solve_hinge_flow(prob: _Problem, t: float) -> tuple[np.ndarray, dict]:
    r"""Exact (event-driven) kernel gradient flow of the hinge loss.

    :math:`\ell'` is piecewise constant, so between events the flow is linear in time:
    :math:`\dot b = -\sigma \odot \theta`, :math:`\dot f|_Z = K W \dot b`, with :math:`\sigma = +1` (fake),
    :math:`-1` (real) and the activity :math:`\theta_z = 1` where the point is strictly inside its margin
    (:math:`f > -1` fake, :math:`f < 1` real), 0 strictly outside.  Points exactly **on** the margin get the
    Filippov (sliding-mode) activity :math:`\theta_S \in [0, 1]`: with the inward velocity
    :math:`u_z = \sigma_z \dot f_z`, :math:`\theta_z = 0 \Rightarrow u_z \le 0`, :math:`\theta_z = 1 \Rightarrow
    u_z \ge 0`, else :math:`u_z = 0`; with :math:`\phi = W^{1/2}\theta` these are the KKT conditions of a
    box-constrained convex QP with matrix :math:`W^{1/2}\Sigma K_{SS} \Sigma W^{1/2}` (solved exactly by an
    active-set method).  The next event is the first time a point off the margin reaches it.  The result is
    the unique Filippov solution, exact up to rounding (no chattering, unlike a time-stepping ODE solver on
    the discontinuous right-hand side; gradient descent with step lr chatters within O(lr) of it).
    """
    n = prob.n
    dense = n <= DENSE_MAX_N
    w = prob.mass
    sigma = np.where(prob.wf > 0, 1.0, -1.0)  # each point is fake or real here (not merged)
    margin = -sigma  # -1 on fake, +1 on real
    f = prob.f0_or_zero().copy()
    b = np.zeros(n)
    tau_left = t
    events = 0
    tol = 1e-11
    while tau_left > 0.0:
        gap = sigma * (f - margin)  # > 0: strictly active, < 0: strictly inactive
        on = np.abs(gap) <= tol
        theta = (gap > tol).astype(float)
        db = -sigma * theta
        fdot = prob.kmv(w * db, dense)
        if on.any():
            S = np.flatnonzero(on)
            K_S = prob.gram()[np.ix_(S, S)] if dense else kernel(
                prob.support[S], arch=prob.arch, kind=prob.kind, backend=prob.backend)
            sw = np.sqrt(w[S])
            Bq = (sw * sigma[S])[:, None] * K_S * (sw * sigma[S])[None, :]
            cq = sw * sigma[S] * fdot[S]
            phi = _box_qp(Bq, cq, sw)
            theta_S = np.clip(phi / sw, 0.0, 1.0)
            db_S = -sigma[S] * theta_S
            db[S] = db_S
            if dense:
                fdot = fdot + prob.gram()[:, S] @ (w[S] * db_S)
            else:
                fdot = fdot + kernel_matvec(prob.support, prob.support[S], w[S] * db_S, arch=prob.arch,
                                            kind=prob.kind, backend=prob.backend)
        # time for each point off the margin to reach it, moving towards it
        with np.errstate(divide="ignore", invalid="ignore"):
            hit = (margin - f) / fdot
        hit = np.where(~on & (hit > 0) & np.isfinite(hit), hit, np.inf)
        step = min(float(np.min(hit)), tau_left)
        f = f + step * fdot
        b = b + step * db
        if step < tau_left:
            first = hit <= step * (1 + 1e-12)
            f[first] = margin[first]
            events += 1
            if events > 50 * n + 1000:
                raise RuntimeError(f"hinge flow: more than {events} events before t={t}")
        tau_left -= step
    return w * b, {"events": events}


def _solve_lambertw(prob: _Problem, t: float, solver: str, tol: float) -> tuple[np.ndarray, dict]:
    r"""The paper's Lambert-W eigenbasis formula for vanilla, an explicit **approximation** of the flow.

    With :math:`A = W^{1/2} K W^{1/2} = V \Lambda V^\top` and labels :math:`\rho = \mp 1`,

    .. math::
        a = W^{1/2} V \operatorname{diag}\big(u(\lambda_i, t)/\lambda_i\big) V^\top W^{1/2} \rho,
        \qquad f_t|_Z = W^{-1/2} V \operatorname{diag}\big(u(\lambda_i, t)\big) V^\top W^{1/2}\rho,

    where :math:`u(\lambda, t) = \lambda t + 1 - W_0(e^{\lambda t + 1})` solves the scalar flow
    :math:`\dot u = \lambda \sigma(-u)`, :math:`u(0) = 0` (:func:`lambertw_ratio`).  It treats each
    eigen-direction of the margin :math:`\rho \odot f` as an independent one-point problem, so it is exact
    when :math:`K` is diagonal (one point, or points that do not interact) and to first order in
    :math:`t`.  The paper's formula uses the rate :math:`1/n` (eigenbasis of :math:`K/n`), half the rate of
    :math:`L` for :math:`N = M`; here the weights :math:`1/N, 1/M` of :math:`L` are used, so it approximates
    the same flow as the ODE solver.

    Measured sup-norm distance to the ODE solution (ReLU depth 3, ``f0 = 0``): on the paper's 1-D
    ``modes_1d`` set (5 vs 5 points, evaluated on [-3, 3]) 7e-8 at t = 0.1, 3.7e-4 at t = 1, 1.3e-2 at
    t = 3 and 0.14 at t = 10 (|f| up to 3.6); on two 2-D Gaussian clouds of 500 points each, 1.5e-6 at
    t = 0.1, 3.8e-3 at t = 1 (|f| up to 0.47), 3.4e-2 at t = 3 and 0.10 at t = 10.

    Solvers (``solver``): ``"eigh"`` (dense eigendecomposition of :math:`A`, O(n^3): 130 ms at n = 1000),
    ``"krylov"`` (dense Gram, then :func:`lanczos_apply` for :math:`r(A)\,W^{1/2}\rho` with
    :math:`r(\lambda) = u(\lambda, t)/\lambda`, O(n^2) per iteration) and ``"matrix_free"`` (Lanczos on
    :func:`ntkgan.kernel_matvec`).  :math:`r` is analytic on a neighbourhood of :math:`[0, \infty)`: with
    :math:`s = \lambda t`, :math:`W_0(e^{s+1})` (Wright's :math:`\omega(s + 1)`) is singular only on
    :math:`s = x \pm i\pi`, :math:`x \le -2`, at distance :math:`\ge \sqrt{4 + \pi^2}/t` from the
    spectrum, and :math:`r(0) = t/2` is the removable value (:func:`lambertw_ratio` also clips Ritz values
    below 0 to it), so Lanczos converges geometrically: 9 iterations at t = 1 on the paper's problem
    (n = 1000, :math:`\lambda_{\max}(A) = 6`), 15 at t = 10, 38 at t = 1000.
    Measured against ``"eigh"`` on that problem (max relative difference of :math:`a`, tol 1e-10):
    5.3e-15, 1.1e-12, 1.5e-14, 2.8e-14 and 4.6e-12 at t = 0.1, 1, 3, 10 and 100 (of :math:`f` on
    :math:`Z`: at most 2.2e-13); 1.3 ms instead of 122 ms at t = 1 (Gram excluded).
    """
    rho = np.where(prob.wf > 0, -1.0, 1.0)  # each point is fake or real here (not merged)
    sq = np.sqrt(prob.mass)
    b = sq * rho
    if solver == "eigh":
        A = sq[:, None] * prob.gram() * sq[None, :]
        lam, V = scipy.linalg.eigh(A, check_finite=False, overwrite_a=True, driver="evd")
        return sq * (V @ (lambertw_ratio(lam, t) * (V.T @ b))), {"solver": "eigh"}
    dense = solver == "krylov"
    if dense:
        prob.gram()
    with blas_single_thread():
        y, it = lanczos_apply(lambda v: sq * prob.symv(sq * v, dense), b, lambda lam: lambertw_ratio(lam, t),
                              rtol=tol)
    return sq * y, {"solver": solver, "iterations": it}


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
    if loss.closed_form == "linear":
        coef = _solve_linear(loss, prob, t)
    elif method in LAMBERTW_METHODS:
        coef, info = _solve_lambertw(prob, t, _lambertw_solver(method, prob.n), tol)
    elif loss.closed_form == "quadratic" and method != "ode":
        psi = (lambda lam: psi_flow(lam, t)) if dynamics == "flow" else (lambda lam: psi_gd(lam, lr, steps))
        coef, info = _solve_quadratic(loss, prob, psi, method, tol)
    elif dynamics == "flow" and method == "piecewise_linear":
        coef, info = _solve_hinge_flow(prob, t)
    elif dynamics == "flow":
        coef, info = _solve_ode_flow(loss, prob, t, tol)
    else:
        coef, info = _solve_gd_iterate(loss, prob, lr, steps)
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
