r"""Krylov approximation of :math:`\mathrm{fun}(A)\,b` inside a compiled step (traced Lanczos).

The same algorithm as the host solver :func:`ntkgan.discriminator._spectral.lanczos_apply`: Lanczos with
full re-orthogonalisation builds :math:`A Q_m = Q_m T_m + \beta_m q_{m+1} e_m^\top`, then

.. math::
    \mathrm{fun}(A)\, b \approx \|b\|\, Q_m\, \mathrm{fun}(T_m)\, e_1,

with :math:`\mathrm{fun}(T_m) e_1 = S\,\mathrm{fun}(\Theta)\,S^\top e_1` from the eigendecomposition
:math:`T_m = S \Theta S^\top` (Ritz values clipped at 0 by ``fun``).  It stops when two successive
updates of the small vector are below ``rtol`` relative, when the Krylov space is invariant
(:math:`\beta_m \le 10^{-13}\max|\Theta|`: exact), or at dimension ``n``, as the host solver does, so the
two give the same iterates up to rounding.

Shapes are static under :func:`jax.jit`, the iteration count is not: the basis lives in a
``(m_max, n)`` buffer (``m_max = min(maxiter, n)``) and the loop is a :func:`jax.lax.while_loop`.  Each
iteration works on the leading ``s`` rows and the leading ``s x s`` block of :math:`T`, where ``s`` is the
smallest of 8, 16, 32, ..., ``m_max`` that holds the ``j + 1`` vectors so far (a
:func:`jax.lax.switch` over those sizes): the re-orthogonalisation costs :math:`O(s n)` and the small
eigendecomposition :math:`O(s^3)`, not :math:`O(m_{\max} n)` and :math:`O(m_{\max}^3)`.  Unused
diagonal entries of the block are set to -1 (below every Ritz value, so their eigenvectors are the unit
vectors of the padding, orthogonal to :math:`e_1`, and ``fun`` sees them only clipped to 0).

References
----------
.. [1] Saad.  Analysis of some Krylov subspace approximations to the matrix exponential operator.
       SIAM J. Numer. Anal. 29 (1992).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["lanczos_apply"]

_PAD = -1.0
_INVARIANT = 1e-13


def _sizes(m_max: int) -> list[int]:
    sizes, s = [], 8
    while s < m_max:
        sizes.append(s)
        s *= 2
    return sizes + [m_max]


def lanczos_apply(matvec: Callable, b, fun: Callable, *, rtol: float, maxiter: int = 500):
    r"""``(y, iterations, converged)`` with :math:`y \approx \mathrm{fun}(A)\,b` for the symmetric PSD
    :math:`A` given by ``matvec`` (traced; see the module notes).

    Parameters
    ----------
    matvec : callable, array (n,) -> array (n,)
    b : array of shape (n,)
    fun : callable
        Applied elementwise to the Ritz values (an entire function such as :math:`\psi`).
    rtol : float
        Relative size of two successive updates of :math:`\mathrm{fun}(T_j) e_1` that stops the loop.
    maxiter : int, default=500
        Most products with :math:`A` (the host solver's default).

    Returns
    -------
    y : array of shape (n,)
    iterations : int32 scalar
        Products with :math:`A`.
    converged : bool scalar
        False when ``maxiter`` products did not reach ``rtol`` (the host solver raises there).
    """
    n = b.shape[0]
    m_max = min(int(maxiter), n)
    sizes = _sizes(m_max)
    levels = jnp.asarray(sizes, dtype=jnp.int32)
    beta0 = jnp.linalg.norm(b)
    safe0 = jnp.where(beta0 > 0.0, beta0, 1.0)
    dtype = b.dtype

    def ritz_branch(s):
        def branch(q, alphas, betas, j, w):
            qs = q[:s]
            for _ in range(2):  # full re-orthogonalisation ("twice is enough")
                w = w - qs.T @ (qs @ w)
            idx = jnp.arange(s)
            diag = jnp.where(idx <= j, alphas[:s], _PAD)
            off = betas[: s - 1]
            t = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
            theta, vec = jnp.linalg.eigh(t)
            y = vec @ (fun(theta) * vec[0])
            real = jnp.abs(jnp.where(theta > _PAD / 2, theta, 0.0))
            return w, jnp.zeros(m_max, dtype).at[:s].set(y), jnp.max(real)

        return branch

    branches = [ritz_branch(s) for s in sizes]

    def body(state):
        j, q, alphas, betas, y_prev, hits, _done, _y = state
        qj = q[j]
        w = matvec(qj)
        alpha = qj @ w
        w = w - alpha * qj
        w = w - jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0.0) * q[jnp.maximum(j - 1, 0)]
        alphas = alphas.at[j].set(alpha)
        level = jnp.sum(levels < j + 1).astype(jnp.int32)
        w, y, theta_max = jax.lax.switch(level, branches, q, alphas, betas, j, w)
        beta = jnp.linalg.norm(w)
        err = jnp.linalg.norm(y - y_prev)
        hits = jnp.where((j > 0) & (err <= rtol * jnp.linalg.norm(y)), hits + 1, 0)
        invariant = beta <= _INVARIANT * jnp.maximum(theta_max, jnp.finfo(dtype).tiny)
        done = (hits >= 2) | invariant | (j + 1 == n)
        nxt = jnp.minimum(j + 1, m_max - 1)
        grow = (~done) & (j + 1 < m_max)
        q = q.at[nxt].set(jnp.where(grow, w / jnp.where(beta > 0.0, beta, 1.0), q[nxt]))
        betas = betas.at[j].set(jnp.where(grow, beta, 0.0))
        return j + 1, q, alphas, betas, y, hits, done, y

    def cond(state):
        j, *_, done, _y = state
        return (~done) & (j < m_max)

    q0 = jnp.zeros((m_max, n), dtype).at[0].set(b / safe0)
    zeros = jnp.zeros(m_max, dtype)
    start = (jnp.int32(0), q0, zeros, zeros, zeros, jnp.int32(0), beta0 <= 0.0, zeros)
    j, q, _, _, _, _, done, y = jax.lax.while_loop(cond, body, start)
    out = beta0 * (q.T @ y)
    return jnp.where(beta0 > 0.0, out, 0.0), j, done
