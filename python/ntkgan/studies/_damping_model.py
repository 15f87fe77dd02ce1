r"""The linearised (damped-oscillator) model of the damping study, and the rate fit of a measured trajectory.

Near convergence the mean error :math:`e_t = \bar x_t - \bar y` of particles chasing a translated copy of
themselves under a persistent discriminator with gradient penalty :math:`\lambda` follows a linear map
(:func:`linear_model_map`); its spectral radius gives the rate (:func:`linear_model_rate`), its continuous-time
limit a damped oscillator (:func:`continuous_roots`) with critical damping at :math:`\lambda_c`.  See
:mod:`ntkgan.studies.damping` and ``../shared/notes/effective-dynamics-spec.md`` §1.6.
"""

from __future__ import annotations

import math

import numpy as np

from ntkgan._validation import check_int, check_real

__all__ = ["continuous_roots", "decay_rate", "linear_model_map", "linear_model_rate", "linear_model_trajectory"]


def decay_rate(err, *, tol: float = 1e-3) -> tuple[float, float]:
    r"""Exponential decay rate of ``err`` per step, from its upper envelope; and the steps to reach ``tol``.

    :math:`\hat e_t = \max_{s \ge t} e_s`; with :math:`T` the first step where
    :math:`\hat e_T \le \mathrm{tol}\,\hat e_0` (the last step if none), the rate is :math:`-\rho` for the
    least-squares line :math:`\log \hat e_t \approx c + \rho t` over :math:`t = 0..T` (positive
    :math:`\hat e_t` only).

    Parameters
    ----------
    err : array-like of shape (T + 1,)
        Non-negative errors at steps 0..T, ``err[0] > 0``.
    tol : float in (0, 1), default=1e-3

    Returns
    -------
    rate : float
        Per step (0 for a non-decaying envelope; negative if it grows).
    steps_to_tol : float
        :math:`T` when reached, else NaN.

    Raises
    ------
    ValueError
        ``err`` not 1-D with at least 2 finite non-negative values and ``err[0] > 0``, or a bad ``tol``.

    Examples
    --------
    >>> t = np.arange(200)
    >>> rate, steps = decay_rate(np.exp(-0.05 * t) * (1.5 + np.cos(0.3 * t)))
    >>> round(rate, 2), steps
    (0.05, 148.0)
    """
    e = np.asarray(err, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"err must be 1-D with at least 2 values, got shape {e.shape}")
    if not np.isfinite(e).all() or (e < 0).any() or e[0] <= 0:
        raise ValueError("err must be finite and >= 0, with err[0] > 0")
    tol = check_real(tol, "tol", low=0.0, high=1.0, low_open=True, high_open=True)
    env = np.maximum.accumulate(e[::-1])[::-1]
    below = np.nonzero(env <= tol * env[0])[0]
    reached = below.size > 0
    last = int(below[0]) if reached else e.size - 1
    t = np.arange(last + 1, dtype=np.float64)
    y = env[: last + 1]
    ok = y > 0
    t, y = t[ok], np.log(y[ok])
    if t.size < 2:
        return float("nan"), float(last) if reached else float("nan")
    slope = np.polyfit(t, y, 1)[0]
    return float(-slope), (float(last) if reached else float("nan"))


def _check_model_args(A, lam, eta_g, d_lr, d_steps):
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    if A.ndim != 2 or A.shape[0] != A.shape[1] or not np.isfinite(A).all():
        raise ValueError(f"A must be a finite square matrix, got shape {A.shape}")
    lam = check_real(lam, "lam", low=0.0)
    eta_g = check_real(eta_g, "eta_g", low=0.0, low_open=True)
    d_lr = check_real(d_lr, "d_lr", low=0.0, low_open=True)
    d_steps = check_int(d_steps, "d_steps")
    return A, lam, eta_g, d_lr, d_steps


def linear_model_map(A, lam: float, *, eta_g: float, d_lr: float, d_steps: int) -> np.ndarray:
    r"""The linearised model's map of one generator step on :math:`(e, w) \in \mathbb R^{2d}`.

    ``d_steps`` discriminator steps :math:`w \leftarrow (I - 2\lambda\kappa A) w - \kappa A e` (loss gradient
    :math:`e` plus the penalty's :math:`2\lambda w`, through the kernel :math:`\kappa A`, :math:`\kappa` =
    ``d_lr``), then the particle step :math:`e \leftarrow e + \eta_G w` with the new :math:`w`.

    Parameters
    ----------
    A : array-like of shape (d, d)
        Mean mixed derivative of the discriminator's NTK (module notes); a scalar means ``d = 1``.
    lam : float >= 0
    eta_g : float > 0
        :math:`\eta_G`, the centre of mass's step per unit force.
    d_lr : float > 0
    d_steps : int >= 1

    Returns
    -------
    M : ndarray of shape (2d, 2d)
        :math:`M = P D^{d_{steps}}`, acting on the stacked vector :math:`(e, w)`.
    """
    A, lam, eta_g, d_lr, d_steps = _check_model_args(A, lam, eta_g, d_lr, d_steps)
    d = A.shape[0]
    eye = np.eye(d)
    D = np.block([[eye, np.zeros((d, d))], [-d_lr * A, eye - 2.0 * lam * d_lr * A]])
    P = np.block([[eye, eta_g * eye], [np.zeros((d, d)), eye]])
    return P @ np.linalg.matrix_power(D, d_steps)


def linear_model_rate(A, lam: float, *, eta_g: float, d_lr: float, d_steps: int) -> tuple[float, str]:
    r"""The discrete linearised model's asymptotic rate :math:`-\log\rho(M)` per step, and its regime.

    Parameters are those of :func:`linear_model_map`.

    Returns
    -------
    rate : float
        :math:`-\log\rho(M)`, :math:`\rho` the spectral radius (0 for the undamped oscillator).
    regime : {"underdamped", "overdamped", "unstable"}
        ``"unstable"`` when :math:`\rho(M) > 1`; otherwise ``"underdamped"`` when the eigenvalue of
        largest modulus is complex (oscillating decay) and ``"overdamped"`` when it is real.
    """
    M = linear_model_map(A, lam, eta_g=eta_g, d_lr=d_lr, d_steps=d_steps)
    mu = np.linalg.eigvals(M)
    i = int(np.argmax(np.abs(mu)))
    rho = float(np.abs(mu[i]))
    rate = -math.log(rho) if rho > 0 else float("inf")
    complex_top = abs(mu[i].imag) > 1e-12 * max(1.0, rho)
    if rho > 1.0 + 1e-9:
        regime = "unstable"
    elif complex_top:
        regime = "underdamped"
    else:
        regime = "overdamped"
    return rate, regime


def linear_model_trajectory(
    A, lam: float, e0, steps: int, *, eta_g: float, d_lr: float, d_steps: int
) -> np.ndarray:
    r""":math:`\|e_t\|` for :math:`t = 0..` ``steps`` of the linearised model from :math:`(e_0, w = 0)`."""
    M = linear_model_map(A, lam, eta_g=eta_g, d_lr=d_lr, d_steps=d_steps)
    d = M.shape[0] // 2
    state = np.concatenate([np.asarray(e0, dtype=np.float64).reshape(d), np.zeros(d)])
    out = np.empty(int(steps) + 1)
    out[0] = np.linalg.norm(state[:d])
    for t in range(1, int(steps) + 1):
        state = M @ state
        out[t] = np.linalg.norm(state[:d])
    return out


def continuous_roots(a: float, lam: float, *, eta_g: float, d_lr: float, d_steps: int):
    r"""The continuous-time oscillator along an eigenvalue ``a`` of :math:`A`: ``(gamma, omega, s+, s-)``.

    :math:`\omega^2 = \eta_G d_{steps} \kappa a`, :math:`\gamma = 2\lambda d_{steps}\kappa a`,
    :math:`s_\pm = -\gamma/2 \pm \sqrt{\gamma^2/4 - \omega^2}` (complex below :math:`\lambda_c`); the decay
    rate is :math:`-\mathrm{Re}\, s_+`.

    Examples
    --------
    The notes' check (η_G = η_D = 1, ḡ = 0.37, so ω = 0.6083; α = 2λ = 3 gives rate 0.1289):

    >>> g, w, sp, sm = continuous_roots(1.0, 1.5, eta_g=0.37, d_lr=1.0, d_steps=1)
    >>> round(w, 4), round(-sp.real, 4)
    (0.6083, 0.1289)
    """
    a = check_real(a, "a", low=0.0, low_open=True)
    lam = check_real(lam, "lam", low=0.0)
    k = check_int(d_steps, "d_steps") * check_real(d_lr, "d_lr", low=0.0, low_open=True) * a
    omega = math.sqrt(check_real(eta_g, "eta_g", low=0.0, low_open=True) * k)
    gamma = 2.0 * lam * k
    root = complex(gamma * gamma / 4.0 - omega * omega) ** 0.5
    return gamma, omega, -gamma / 2.0 + root, -gamma / 2.0 - root
