r"""The exact vanilla flow inside a compiled step: the Taylor-series integrator, traced.

The algorithm of :func:`ntkgan.discriminator._ode_solvers._solve_vanilla_taylor` (where the recurrences are
derived), with the same order, tolerances and step rule, so the two give the same coefficients up to
rounding.  On :math:`Z`, with :math:`s = \sigma(f)`, :math:`q = s(1 - s)` and the masses
:math:`\omega = w^f + w^r`,

.. math::
    \dot f = -K(\omega \odot s - w^r), \qquad \dot b = -(s - w^r/\omega), \qquad a = \omega \odot b(t),

and the Taylor coefficients at :math:`\tau` follow exactly, one product with :math:`K` per order:

.. math::
    F_{k+1} = -\frac{K (\omega \odot S_k - w^r \delta_{k0})}{k+1}, \quad
    S_k = \frac1k \sum_{j=1}^{k} j F_j \odot Q_{k-j}, \quad
    Q_k = (1 - 2 S_0) \odot S_k - \sum_{j=1}^{k-1} S_j \odot S_{k-j}.

Orders are added up to :data:`~ntkgan.discriminator._ode_solvers.TAYLOR_ORDER` until the last two terms of
both series, at the time left, are below the tolerance (then the step ends at :math:`t`), else the step is
the largest that puts them below it.  Two :func:`jax.lax.while_loop` s: over steps, and over orders within a
step; the coefficient arrays have the static shape ``(order + 1, n)`` and the sums over :math:`j` are
masked to :math:`j \le k`.

Difference from the host: the host integrates with LSODA instead when the problem is stiff for an
explicit method (stiffness index :math:`t\,\operatorname{tr}(K\Omega)\max|\ell''|` above
:data:`~ntkgan.discriminator._ode_solvers.STIFF_INDEX`, e.g. the ``digits`` preset's t = 1000); the compiled
path keeps the Taylor series, whose steps then shrink (it fails, as the host does, beyond 100 000 steps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import sigmoid

from ntkgan.discriminator._ode_solvers import TAYLOR_ORDER

__all__ = ["MAX_STEPS", "vanilla_taylor_coef"]

#: Most Taylor steps (the host raises beyond this many).
MAX_STEPS = 100_000


def vanilla_taylor_coef(gram, wf, wr, t: float, tol: float, order: int = TAYLOR_ORDER):
    r"""``(a, ok)``: the vanilla flow's coefficients :math:`a = \omega\, b(t)` from :math:`f_0 = 0` (traced).

    Parameters
    ----------
    gram : array of shape (n, n)
        :math:`K` on :math:`Z = [\text{fake}; \text{real}]`.
    wf, wr : arrays of shape (n,)
        Fake and real masses (:math:`1/N` on fake, :math:`1/M` on real points, 0 elsewhere).
    t, tol : float
        Training time and the relative tolerance.

    Returns
    -------
    a : array of shape (n,)
    ok : bool scalar
        False when a step was not positive and finite or :data:`MAX_STEPS` steps did not reach ``t``.
    """
    n = gram.shape[0]
    p = int(order)
    om = wf + wr
    dtype = gram.dtype
    orders = jnp.arange(p + 2)

    def symv(v):
        return jnp.matmul(gram, v, precision=jax.lax.Precision.HIGHEST)

    def one_step(state):
        tau, f, b, steps, _ok = state
        left = t - tau
        sp, sm = sigmoid(f), sigmoid(-f)
        g0 = wf * sp - wr * sm
        d0 = sm - sp
        zeros = jnp.zeros((p + 1, n), dtype)
        f1 = -symv(g0)
        F = zeros.at[0].set(f).at[1].set(f1)
        jF = zeros.at[1].set(f1)
        S = zeros.at[0].set(sp)
        Q = jnp.zeros((p, n), dtype).at[0].set(sp * sm)
        b1 = -g0 / om
        Fn = jnp.zeros(p + 1, dtype).at[0].set(jnp.max(jnp.abs(f))).at[1].set(jnp.max(jnp.abs(f1)))
        Bn = jnp.zeros(p + 2, dtype).at[0].set(jnp.max(jnp.abs(b))).at[1].set(jnp.max(jnp.abs(b1)))
        eps_f = tol * (0.1 * jnp.maximum(Fn[0], left * Fn[1]) + 0.01)
        eps_b = tol * (0.1 * jnp.maximum(Bn[0], left * Bn[1]) + 0.01)
        j = jnp.arange(1, p + 1)  # the j of the sums over j = 1..k

        def order_body(c):
            k, F, jF, S, Q, Fn, Bn, _h, _done = c
            on = (j <= k)[:, None]
            sk = jnp.sum(jnp.where(on, jF[1:] * Q[jnp.clip(k - j, 0, p - 1)], 0.0), axis=0) / k
            S = S.at[k].set(sk)
            Bn = Bn.at[k + 1].set(jnp.max(jnp.abs(sk)) / (k + 1))
            converged = ((k >= 2) & (jnp.maximum(Fn[k - 1] * left ** (k - 1), Fn[k] * left**k) <= eps_f)
                         & (jnp.maximum(Bn[k] * left**k, Bn[k + 1] * left ** (k + 1)) <= eps_b))
            last = k == p
            # the largest step that puts the last two terms below the tolerances (Jorba & Zou)
            cands = []
            for idx, eps, norms in ((p - 1, eps_f, Fn), (p, eps_f, Fn), (p, eps_b, Bn), (p + 1, eps_b, Bn)):
                cands.append(jnp.where(norms[idx] > 0, (eps / jnp.where(norms[idx] > 0, norms[idx], 1.0))
                                       ** (1.0 / idx), jnp.inf))
            h_last = jnp.minimum(left, jnp.min(jnp.stack(cands)))
            h = jnp.where(converged, left, h_last)
            done = converged | last
            # the next order (kept only when not done)
            on_s = ((j >= 1) & (j <= k - 1))[:, None]
            qk = d0 * sk - jnp.sum(jnp.where(on_s, S[1:] * S[jnp.clip(k - j, 0, p)], 0.0), axis=0)
            fk1 = -symv(om * sk) / (k + 1)
            k1 = jnp.minimum(k + 1, p)
            Q = jnp.where(done, Q, Q.at[jnp.minimum(k, p - 1)].set(qk))
            F = jnp.where(done, F, F.at[k1].set(fk1))
            jF = jnp.where(done, jF, jF.at[k1].set((k + 1) * fk1))
            Fn = jnp.where(done, Fn, Fn.at[k1].set(jnp.max(jnp.abs(fk1))))
            return jnp.where(done, k, k + 1), F, jF, S, Q, Fn, Bn, h, done

        start = (jnp.int32(1), F, jF, S, Q, Fn, Bn, jnp.asarray(0.0, dtype), jnp.bool_(False))
        k, F, _, S, _, _, _, h, _ = jax.lax.while_loop(lambda c: ~c[-1], order_body, start)
        good = (h > 0.0) & jnp.isfinite(h)
        powers = jnp.where(orders <= k + 1, h ** orders.astype(dtype), 0.0)
        f_new = jnp.where(orders[: p + 1] <= k, powers[: p + 1], 0.0) @ F
        coeff = jnp.where((orders[1: p + 1] >= 1) & (orders[1: p + 1] <= k),
                          powers[2: p + 2] / (orders[1: p + 1] + 1.0), 0.0)
        b_new = b + h * b1 - coeff @ S[1:]
        finished = h >= left
        return (jnp.where(finished, t, tau + h), jnp.where(good, f_new, f), jnp.where(good, b_new, b), steps + 1,
                good)

    def cond(state):
        tau, _f, _b, steps, ok = state
        return ok & (tau < t) & (steps < MAX_STEPS)

    zeros = jnp.zeros(n, dtype)
    start = (jnp.asarray(0.0, dtype), zeros, zeros, jnp.int32(0), jnp.bool_(t > 0.0))
    tau, _, b, _, ok = jax.lax.while_loop(cond, one_step, start)
    ok = (tau >= t) | (t == 0.0)
    return om * b, ok
