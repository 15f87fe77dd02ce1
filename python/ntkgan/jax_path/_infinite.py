r"""Infinite-width discriminators inside a compiled step: the coefficients :math:`a` of
:math:`f = \sum_{z \in Z} a_z\, k(\cdot, z)`, :math:`Z = [x_1..x_N, y_1..y_M]`, for :math:`f_0 = 0`.

The closed forms of :mod:`ntkgan.discriminator._infinite` (where they are derived), with fake weights
:math:`1/N`, real weights :math:`1/M`:

- linear losses (IPM): :math:`a = -t\,(w^f g_f + w^r g_r)`, constant from step to step (computed once, on
  the host, by :func:`linear_coef`);
- quadratic losses (LSGAN), :math:`\ell'_z(f) = \kappa_z (f - \rho_z)`: with :math:`D = \operatorname{diag}
  (\kappa_z w_z)` and :math:`A = D^{1/2} K D^{1/2}`,

  .. math::
      a = D^{1/2}\, \psi(A)\, D^{1/2} \rho, \qquad \psi(\lambda) = \frac{1 - e^{-t\lambda}}{\lambda},
      \quad \psi(0) = t,

  by a dense eigendecomposition of :math:`A` (``method="eigh"``) or by Lanczos on products with the dense
  Gram matrix (``"krylov"``; :mod:`ntkgan.jax_path._lanczos`), chosen as the host chooses
  (``"auto"``: eigh up to :data:`~ntkgan.discriminator._infinite.EIGH_MAX_N` points);
- vanilla's Lambert-W approximation (the paper's ``inf_vanilla``,
  :func:`ntkgan.discriminator._ode_solvers._solve_lambertw`): :math:`a = W^{1/2}\, r(A)\, W^{1/2} \rho` with
  :math:`A = W^{1/2} K W^{1/2}`, :math:`W = \operatorname{diag}(1/N.., 1/M..)`, :math:`\rho = \mp 1` and
  :math:`r(\lambda) = u(\lambda, t)/\lambda` (:func:`lambertw_ratio`), by eigh or Lanczos alike.

Difference from the host solver: the host merges exact duplicate points (a fake point equal to another or
to a real one) before solving, to remove the null space of :math:`K` they create; here they stay separate.
The discriminator is the same function (the copies share :math:`k(\cdot, u)`, and :math:`\psi` is entire,
so nothing is singular); only the split of the coefficient between the copies differs, which rounding
alone can see.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ntkgan.discriminator._losses import Loss
from ntkgan.jax_path._lanczos import lanczos_apply

__all__ = ["lambertw_ratio", "lambertw_rhs", "linear_coef", "psi_flow", "quadratic_weights", "spectral_coef"]

#: Newton iterations of :func:`_log1p_solve` (quadratic convergence from a start below the root: 1e-16
#: relative after at most ~8 for s <= 1e6; more do nothing)
_NEWTON_STEPS = 12


def linear_coef(loss: Loss, n_fake: int, n_real: int, t: float) -> np.ndarray:
    r""":math:`a = -t\,(w^f g_f + w^r g_r)` of a linear loss, shape (N + M,) (host, float64)."""
    gf, gr = loss.linear_params()
    return np.concatenate([np.full(n_fake, -t * gf / n_fake), np.full(n_real, -t * gr / n_real)])


def quadratic_weights(loss: Loss, n_fake: int, n_real: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``(D^{1/2}, D^{1/2} rho)`` of a quadratic loss on ``[fake; real]``, shape (N + M,) each (host)."""
    kf, rf, kr, rr = loss.quadratic_params()
    d = np.concatenate([np.full(n_fake, kf / n_fake), np.full(n_real, kr / n_real)])
    rho = np.concatenate([np.full(n_fake, rf), np.full(n_real, rr)])
    sq = np.sqrt(d)
    return sq, sq * rho


def psi_flow(lam, t: float):
    r""":math:`\psi(\lambda) = (1 - e^{-t\lambda})/\lambda`, :math:`\psi(0) = t`, ``lam`` clipped at 0 (traced;
    :func:`ntkgan.discriminator._infinite.psi_flow`)."""
    lam = jnp.maximum(lam, 0.0)
    x = t * lam
    small = x < 1e-12
    big = -jnp.expm1(-x) / jnp.where(small, 1.0, lam)
    return jnp.where(small, t * (1.0 - 0.5 * x), big)


def _log1p_solve(s):
    r"""The root :math:`\delta > -1` of :math:`\delta + \log(1 + \delta) = s`, :math:`s \ge 0`, by Newton from
    :math:`\max(s/2, s - \log(1 + s))` (traced; :func:`ntkgan.discriminator._spectral._log1p_solve`, with a
    fixed number of steps instead of a stopping test)."""
    d = jnp.maximum(0.5 * s, s - jnp.log1p(s))
    for _ in range(_NEWTON_STEPS):
        g = d + jnp.log1p(d) - s
        d = d - g / (1.0 + 1.0 / (1.0 + d))
    return d


def lambertw_ratio(lam, t: float):
    r""":math:`u(\lambda, t)/\lambda` of the paper's Lambert-W formula, :math:`t/2` at :math:`\lambda = 0`
    (traced; :func:`ntkgan.discriminator._spectral.lambertw_ratio`)."""
    lam = jnp.maximum(lam, 0.0)
    s = t * lam
    d = _log1p_solve(s)
    big = s > 1e-200
    return jnp.where(big, t * (s - d) / jnp.where(big, s, 1.0), 0.5 * t)


def spectral_coef(gram, sq, rhs, fun, method: str, *, tol: float, maxiter: int = 500):
    r"""``(a, iterations, converged)``: :math:`a = D^{1/2}\,\mathrm{fun}(A)\,\mathrm{rhs}`,
    :math:`A = D^{1/2} K D^{1/2}` (traced).

    ``method="eigh"``: ``eigh(A)`` (iterations 0); ``"krylov"``: Lanczos to ``tol`` with products
    :math:`A v = D^{1/2}(K (D^{1/2} v))`.
    """
    if method == "eigh":
        a = sq[:, None] * gram * sq[None, :]
        lam, vec = jnp.linalg.eigh(a)
        return sq * (vec @ (fun(lam) * (vec.T @ rhs))), jnp.int32(0), jnp.bool_(True)
    if method != "krylov":
        raise ValueError(f"method must be 'eigh' or 'krylov', got {method!r}")
    y, iterations, converged = lanczos_apply(lambda v: sq * (gram @ (sq * v)), rhs, fun, rtol=tol,
                                             maxiter=maxiter)
    return sq * y, iterations, converged


def lambertw_rhs(n_fake: int, n_real: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``(D^{1/2}, D^{1/2} rho)`` of the Lambert-W formula for vanilla: :math:`D = \operatorname{diag}(w)`
    (:math:`1/N`, :math:`1/M`), :math:`\rho = \mp 1` (host)."""
    w = np.concatenate([np.full(n_fake, 1.0 / n_fake), np.full(n_real, 1.0 / n_real)])
    rho = np.concatenate([np.full(n_fake, -1.0), np.full(n_real, 1.0)])
    sq = np.sqrt(w)
    return sq, sq * rho

