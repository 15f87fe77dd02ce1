r"""The time-stepping solvers of infinite-width discriminators (inputs trusted): the vanilla flow by a Taylor
series, a lean DOP853 for other smooth losses (LSODA when stiff), gradient-descent iterates, the hinge flow
(piecewise linear, by active sets) and the paper's Lambert-W approximation of the vanilla flow.

Each takes the :class:`~ntkgan.discriminator._problem._Problem` and, where it matters, ``dense`` (whether
the Gram matrix may be formed; the caller decides by :data:`ntkgan.discriminator._infinite.DENSE_MAX_N`), and
returns the coefficients :math:`a` of :math:`f - f_0 = \sum_j a_j k(\cdot, z_j)` with an info dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.linalg
from scipy.integrate import DOP853, solve_ivp
from scipy.special import expit

from ntkgan.discriminator._losses import LOSSES, Loss
from ntkgan.discriminator._problem import _curvature_bound, _Problem
from ntkgan.discriminator._spectral import lambertw_ratio, lanczos_apply
from ntkgan.kernels import kernel, kernel_matvec
from ntkgan.threads import blas_single_thread

__all__ = ["_dop853", "_solve_gd_iterate", "_solve_hinge_flow", "_solve_lambertw", "_solve_ode_flow",
           "_solve_vanilla_taylor"]


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


def _solve_ode_flow(loss: Loss, prob: _Problem, t: float, tol: float, dense: bool) -> tuple[np.ndarray, dict]:
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


def _solve_gd_iterate(loss: Loss, prob: _Problem, lr: float, steps: int, dense: bool) -> tuple[np.ndarray, dict]:
    r"""Kernel gradient descent :math:`a_{k+1} = a_k - \mathrm{lr}\,\partial L/\partial f(f_0|_Z + K a_k)`."""
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


def _solve_hinge_flow(prob: _Problem, t: float, dense: bool) -> tuple[np.ndarray, dict]:
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
