r"""Spectral functions of the infinite-width solvers: :math:`\psi` of the LSGAN flow and of gradient descent,
the Lambert-W ratio of the vanilla approximation, and :func:`lanczos_apply` (:math:`g(A)\,b` by Lanczos).

All are entire or NaN-free at :math:`\lambda = 0` (the kernel matrices are only positive semi-definite).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.linalg

__all__ = ["DEFAULT_TOL", "lambertw_exp", "lambertw_ratio", "lanczos_apply", "psi_flow", "psi_gd"]

#: Default relative tolerance of the Lanczos and ODE solvers.
DEFAULT_TOL = 1e-10


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
