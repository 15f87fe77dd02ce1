"""Tests of python/ntkgan/discriminator/ (infinite width): _losses.py, _base.py, _infinite.py, _api.py.

Every comparison is against an independent reference: kernel matrices and MMD^2 built here from
``ntkgan.kernel``, central finite differences, scipy ODE integration of the kernel flow written in
function space (f on the training and query points, not the solver's coefficients), ``scipy.linalg.expm``,
explicit iteration of the discrete update, mpmath's Lambert W, and Monte Carlo with a stated rtol.
"""

from __future__ import annotations

import math

import mpmath
import ntkgan
import numpy as np
import pytest
import scipy.linalg
from conftest import assert_close, central_difference, linear_flow
from discriminator_cases import ERF, RELU, clouds
from hypothesis import given, settings
from hypothesis import strategies as st
from ntkgan.discriminator import (
    LOSSES,
    Discriminator,
    KernelDiscriminator,
    Loss,
    _infinite,
    _spectral,
    train_discriminator,
)
from scipy.integrate import solve_ivp
from scipy.special import expit

# modes_1d of the paper (x1.5 applied)
FAKE_1D = np.array([-1.8, -2.01, -1.2, -1.05, -0.45])[:, None]
REAL_1D = np.array([0.9, 1.5, 1.845, 1.98, 0.3])[:, None]


def weights_and_labels(n_fake, n_real):
    w = np.concatenate([np.full(n_fake, 1.0 / n_fake), np.full(n_real, 1.0 / n_real)])
    rho = np.concatenate([-np.ones(n_fake), np.ones(n_real)])
    return w, rho


def flow_reference(fake, real, query, arch, t, deriv, f0_z=None, f0_q=None, kind="ntk"):
    """Integrate the kernel flow in function space: d/dt [f_Z; f_Q] = -[K_ZZ; K_QZ] W l'(f_Z) (DOP853, 1e-13)."""
    z = np.vstack([fake, real])
    n, nf = z.shape[0], fake.shape[0]
    w, _ = weights_and_labels(nf, n - nf)
    kz = ntkgan.kernel(z, z, arch=arch, kind=kind)
    kq = ntkgan.kernel(query, z, arch=arch, kind=kind)
    f0 = np.concatenate([np.zeros(n) if f0_z is None else f0_z, np.zeros(len(query)) if f0_q is None else f0_q])

    def rhs(_t, f):
        g = w * deriv(f[:n], nf)
        return -np.concatenate([kz @ g, kq @ g])

    sol = solve_ivp(rhs, (0.0, t), f0, method="DOP853", rtol=1e-13, atol=1e-14)
    assert sol.success
    return sol.y[:n, -1], sol.y[n:, -1]


def lsgan_deriv(f, nf):
    return LOSSES["lsgan"].deriv(f, nf)


def mmd2(fake, real, arch):
    return (ntkgan.kernel(fake, arch=arch).mean() - 2 * ntkgan.kernel(fake, real, arch=arch).mean()
            + ntkgan.kernel(real, arch=arch).mean())


# ------------------------------------------------------------------------------------------------
# losses and the base class
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_derivatives_match_finite_differences(name):
    loss = LOSSES[name]
    f = np.array([-2.3, -0.7, 0.4, 1.9])  # away from hinge kinks at +-1
    h = 1e-6
    for term, deriv in ((loss.fake_term, loss.fake_deriv), (loss.real_term, loss.real_deriv),
                        (loss.cost, loss.cost_deriv)):
        fd = (term(f + h) - term(f - h)) / (2 * h)
        assert_close(deriv(f), fd, rtol=1e-7, atol=1e-8)


def test_loss_table_values():
    f = np.array([0.3])
    assert_close(LOSSES["vanilla"].real_term(f), -np.log(expit(f)), rtol=1e-14)
    assert_close(LOSSES["vanilla"].fake_term(f), -np.log(expit(-f)), rtol=1e-14)
    assert_close(LOSSES["vanilla"].cost(f), -np.log(expit(f)), rtol=1e-14)
    assert_close(LOSSES["lsgan"].value([0.5], [0.25]), 1.5**2 + 0.75**2, rtol=1e-15)
    assert_close(LOSSES["hinge"].value([-1.5, 0.0], [2.0, 0.5]), 0.5 + 0.25, rtol=1e-15)
    assert LOSSES["lsgan"].quadratic_params() == (2.0, -1.0, 2.0, 1.0)
    assert LOSSES["ipm"].linear_params() == (1.0, -1.0)
    # relu'(0) = 0 at the hinge margins
    assert LOSSES["hinge"].fake_deriv(np.array([-1.0]))[0] == 0.0
    assert LOSSES["hinge"].real_deriv(np.array([1.0]))[0] == 0.0


def test_base_class_chain_rule():
    class Quadratic(Discriminator):
        def __call__(self, x):
            x = self._check_x(x)
            return (x**2).sum(1)

        def grad(self, x):
            return 2 * self._check_x(x)

    d = Quadratic(loss=LOSSES["vanilla"], dim=2)
    x = np.array([[0.3, -0.2], [1.0, 0.5]])
    f = (x**2).sum(1)
    assert_close(d.cost(x), np.logaddexp(0, -f), rtol=1e-14)
    assert_close(d.cost_grad(x), (-expit(-f))[:, None] * 2 * x, rtol=1e-14)
    with pytest.raises(ValueError, match="x has 3 features"):
        d(np.ones((1, 3)))
    with pytest.raises(TypeError):
        Discriminator(loss=LOSSES["ipm"])  # abstract


# ------------------------------------------------------------------------------------------------
# IPM
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_fake,n_real", [(5, 5), (4, 9)])
def test_ipm_value_is_t_mmd2(n_fake, n_real):
    fake, real = clouds(n_fake, n_real, d=3)
    t = 0.7
    d = train_discriminator(fake, real, loss="ipm", arch=RELU, t=t)
    gap = d(real).mean() - d(fake).mean()
    assert_close(gap, t * mmd2(fake, real, RELU), rtol=1e-12)
    q = np.random.default_rng(5).normal(size=(6, 3))
    expected = t * (ntkgan.kernel(q, real, arch=RELU).mean(1) - ntkgan.kernel(q, fake, arch=RELU).mean(1))
    assert_close(d(q), expected, rtol=1e-12, atol=1e-14)
    assert_close(d.cost(q), -expected, rtol=1e-12, atol=1e-14)


def test_ipm_particle_force_is_half_t_grad_mmd2():
    """grad_{x_i} (1/N) sum_l c(x_l) (training set frozen) = (t/2) grad_{x_i} MMD^2 (smooth erf kernel)."""
    fake, real = clouds(4, 6, d=2, seed=3)
    t = 1.3
    d = train_discriminator(fake, real, loss="ipm", arch=ERF, t=t)
    force = d.cost_grad(fake) / fake.shape[0]
    fd = central_difference(lambda x: mmd2(x, real, ERF), fake, h=1e-5)
    assert_close(force, 0.5 * t * fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max())


def test_ipm_gd_is_flow_at_steps_times_lr():
    fake, real = clouds(3, 4)
    gd = train_discriminator(fake, real, loss="ipm", arch=RELU, t=1.04, lr=0.1, dynamics="gd")
    assert gd.steps == 10 and gd.t == pytest.approx(1.0)
    flow = train_discriminator(fake, real, loss="ipm", arch=RELU, t=1.0)
    assert_close(gd.coef, flow.coef, rtol=1e-15)


# ------------------------------------------------------------------------------------------------
# LSGAN
# ------------------------------------------------------------------------------------------------

LSGAN_METHODS = ["eigh", "krylov", "matrix_free", "ode"]


@pytest.mark.parametrize("method", LSGAN_METHODS)
@pytest.mark.parametrize("n_fake,n_real", [(5, 5), (3, 8)])
def test_lsgan_matches_ode_reference(method, n_fake, n_real):
    fake, real = clouds(n_fake, n_real, seed=n_real)
    q = np.random.default_rng(1).normal(size=(7, 2))
    t = 1.5
    d = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=t, method=method)
    assert d.method == method
    fz, fq = flow_reference(fake, real, q, RELU, t, lsgan_deriv)
    assert_close(d.support_values, fz, rtol=1e-8, atol=1e-9)
    assert_close(d(np.vstack([fake, real])), fz, rtol=1e-8, atol=1e-9)
    assert_close(d(q), fq, rtol=1e-8, atol=1e-9)


def test_lsgan_equal_sizes_is_the_paper_formula():
    """N = M: f_t|_Z = rho - exp(-4tK/n) rho, and f_t(x) = k_x K^{-1}(I - exp(-4tK/n)) rho."""
    fake, real = FAKE_1D, REAL_1D
    z = np.vstack([fake, real])
    n = z.shape[0]
    _, rho = weights_and_labels(5, 5)
    K = ntkgan.kernel(z, arch=RELU)
    t = 1.0
    E = scipy.linalg.expm(-4 * t * K / n)
    d = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=t)
    assert_close(d.support_values, rho - E @ rho, rtol=1e-10, atol=1e-12)
    q = np.linspace(-3, 3, 13)[:, None]
    expected = ntkgan.kernel(q, z, arch=RELU) @ np.linalg.solve(K, rho - E @ rho)
    assert_close(d(q), expected, rtol=1e-8, atol=1e-10)


def test_lsgan_infinite_time_interpolates_labels():
    fake, real = FAKE_1D, REAL_1D
    z = np.vstack([fake, real])
    K = ntkgan.kernel(z, arch=RELU)
    assert np.linalg.eigvalsh(K)[0] > 1e-3  # positive definite
    _, rho = weights_and_labels(5, 5)
    q = np.array([[-2.5], [0.0], [2.5]])
    for method in ("eigh", "krylov"):
        d = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=1e8, method=method)
        assert_close(d(z), rho, rtol=1e-8, atol=1e-8)
        assert_close(d(q), ntkgan.kernel(q, z, arch=RELU) @ np.linalg.solve(K, rho), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("method", LSGAN_METHODS)
def test_lsgan_duplicated_points_are_finite_and_right(method):
    fake = np.array([[0.0, 0.0], [1.0, 0.5], [1.0, 0.5], [-1.0, 0.2]])  # a duplicated fake point
    real = np.array([[0.0, 0.0], [2.0, 1.0], [0.5, -1.0]])  # a real point equal to a fake one
    q = np.array([[0.0, 0.0], [0.3, 0.1], [1.0, 0.5]])
    d = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=1.0, method=method)
    fz, fq = flow_reference(fake, real, q, RELU, 1.0, lsgan_deriv)
    assert_close(d(q), fq, rtol=1e-8, atol=1e-9)
    assert_close(d.support_values, fz, rtol=1e-8, atol=1e-9)
    assert np.isfinite(d.grad(q)).all()
    # t -> infinity: the shared point (fake mass 1/4, real mass 1/3) settles at the mass-weighted label
    # (1/3 - 1/4) / (1/3 + 1/4) = 1/7; the others interpolate -1 / +1
    d = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=1e7, method=method)
    expected = np.array([1 / 7, -1, -1, -1, 1 / 7, 1, 1])
    assert_close(d(np.vstack([fake, real])), expected, rtol=1e-7, atol=1e-7)
    assert np.abs(d.coef).max() < 1e3  # duplicates merged: no coefficient grows like t


@pytest.mark.parametrize(
    "loss,method", [("ipm", None), ("lsgan", "eigh"), ("lsgan", "matrix_free"), ("vanilla", None),
                    ("vanilla", "lambertw"), ("hinge", None)],
)
@pytest.mark.parametrize("dynamics", ["flow", "gd"])
def test_duplicating_every_point_changes_nothing(loss, method, dynamics):
    """Each copy carries mass 1/(2N) (1/(2M)), so two copies of every point give the same discriminator."""
    if method == "lambertw" and dynamics == "gd":
        return
    fake, real = clouds(3, 4, seed=12)
    q = np.random.default_rng(13).normal(size=(4, 2))
    kw = {"loss": loss, "arch": RELU, "t": 1.5, "lr": 0.1, "dynamics": dynamics, "method": method}
    once = train_discriminator(fake, real, **kw)
    twice = train_discriminator(np.repeat(fake, 2, axis=0), np.vstack([real, real]), **kw)
    assert_close(twice(q), once(q), rtol=1e-8, atol=1e-10)
    assert_close(twice.grad(q), once.grad(q), rtol=1e-7, atol=1e-10)


def test_lsgan_matrix_free_equals_dense_larger():
    fake, real = clouds(25, 35, seed=11)
    dense = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=2.0, method="eigh")
    free = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=2.0, method="matrix_free")
    kry = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=2.0, method="krylov")
    q = np.random.default_rng(2).normal(size=(9, 2))
    assert_close(free(q), dense(q), rtol=1e-9, atol=1e-10)
    assert_close(kry.coef, dense.coef, rtol=1e-8, atol=1e-10 * np.abs(dense.coef).max())
    assert free.info["iterations"] < 60


def test_lsgan_krylov_reference_expm_multiply():
    """psi(A) b from Lanczos equals the matrix exponential of the augmented matrix [[-tA, t b], [0, 0]]."""
    t = 3.0
    A, b, expected = linear_flow(30, t)
    y, _ = _spectral.lanczos_apply(lambda v: A @ v, b, lambda lam: _spectral.psi_flow(lam, t))
    assert_close(y, expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(RuntimeError, match="maxiter"):
        _spectral.lanczos_apply(lambda v: A @ v, b, lambda lam: _spectral.psi_flow(lam, t), maxiter=3)


@pytest.mark.parametrize("method", ["eigh", "krylov", "matrix_free", "ode"])
@pytest.mark.parametrize("n_fake,n_real", [(4, 4), (3, 6)])
def test_lsgan_gd_equals_explicit_iteration(method, n_fake, n_real):
    fake, real = clouds(n_fake, n_real, seed=7)
    z = np.vstack([fake, real])
    q = np.random.default_rng(3).normal(size=(4, 2))
    lr, t = 0.1, 1.0
    w, rho = weights_and_labels(n_fake, n_real)
    kz, kq = ntkgan.kernel(z, arch=RELU), ntkgan.kernel(q, z, arch=RELU)
    fz, fq = np.zeros(len(z)), np.zeros(len(q))
    for _ in range(10):
        g = w * 2 * (fz - rho)
        fz, fq = fz - lr * kz @ g, fq - lr * kq @ g
    d = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=t, lr=lr, dynamics="gd", method=method)
    assert d.steps == 10
    assert_close(d(q), fq, rtol=1e-9, atol=1e-11)
    assert_close(d.support_values, fz, rtol=1e-9, atol=1e-11)


def test_psi_functions_are_nan_free_and_exact():
    lam = np.array([0.0, 1e-300, 1e-14, 1e-6, 0.3, 5.0, 40.0, -1e-15])
    t = 2.0
    p = _spectral.psi_flow(lam, t)
    lamc = np.maximum(lam, 0)
    ref = np.array([float(-mpmath.expm1(-t * mpmath.mpf(x)) / x) if x > 0 else t for x in lamc])
    assert_close(p, ref, rtol=1e-14)
    lr, steps = 0.1, 25
    g = _spectral.psi_gd(lam, lr, steps)
    ref = np.array([lr * sum((1 - lr * x) ** k for k in range(steps)) for x in lamc])
    assert_close(g, ref, rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# random initial function
# ------------------------------------------------------------------------------------------------


def test_random_f0_is_a_seeded_nngp_draw_and_flows_right():
    fake, real = clouds(3, 4, seed=2)
    z = np.vstack([fake, real])
    q = np.random.default_rng(4).normal(size=(5, 2))
    d0 = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=0.0, f0="random", seed=3)
    again = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=0.0, f0="random", seed=3)
    other = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=0.0, f0="random", seed=4)
    f0z = d0.prior.values
    assert_close(d0(z), f0z, rtol=1e-8, atol=1e-10)  # the extension interpolates the draw
    assert_close(again(q), d0(q), rtol=0, atol=0)
    assert np.abs(other(z) - f0z).max() > 1e-3
    # conditional mean off Z: Sigma(q, Z) Sigma_ZZ^{-1} f0|_Z
    S = ntkgan.kernel(z, arch=RELU, kind="nngp")
    assert_close(d0(q), ntkgan.kernel(q, z, arch=RELU, kind="nngp") @ np.linalg.solve(S, f0z), rtol=1e-7,
                 atol=1e-9)
    # the flow from f0 (ODE reference started at f0 on Z and on the query points)
    t = 0.8
    for method in ("eigh", "matrix_free"):
        d = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=t, f0="random", seed=3, method=method)
        fz, fq = flow_reference(fake, real, q, RELU, t, lsgan_deriv, f0_z=f0z, f0_q=d0(q))
        assert_close(d(q), fq, rtol=1e-8, atol=1e-9)
        assert_close(d.support_values, fz, rtol=1e-8, atol=1e-9)
    v = train_discriminator(fake, real, loss="vanilla", arch=RELU, t=t, f0="random", seed=3)
    fz, _ = flow_reference(fake, real, q, RELU, t, LOSSES["vanilla"].deriv, f0_z=f0z, f0_q=d0(q))
    assert_close(v.support_values, fz, rtol=1e-8, atol=1e-9)
    # gradient of f0 (conditional mean) by central differences
    h = 1e-6
    fd = np.stack([(d0(q + h * e) - d0(q - h * e)) / (2 * h) for e in np.eye(2)], axis=1)
    assert_close(d0.grad(q), fd, rtol=1e-5, atol=1e-7)


def test_random_f0_covariance_monte_carlo():
    """Over 4000 seeds, the covariance of f0|_Z is the NNGP Gram matrix (MC rtol 10% of its scale)."""
    z = np.array([[0.0, 1.0], [1.0, -0.5], [0.5, 0.5]])
    S = ntkgan.kernel(z, arch=RELU, kind="nngp")
    draws = np.array([_infinite.GaussianProcessPrior(z, RELU, None, seed).values for seed in range(4000)])
    cov = draws.T @ draws / len(draws)
    assert np.abs(cov - S).max() < 0.1 * np.abs(S).max()


# ------------------------------------------------------------------------------------------------
# vanilla and other ODE losses
# ------------------------------------------------------------------------------------------------


def test_lambertw_exp_against_mpmath():
    z = np.array([1.0, 1.0 + 1e-12, 1.5, 3.0, 30.0, 800.0, 1e6])
    ref = np.array([float(mpmath.lambertw(mpmath.exp(mpmath.mpf(x)))) for x in z])
    assert_close(_spectral.lambertw_exp(z), ref, rtol=1e-14)
    # u(lam, t) / lam for small lam * t: series t (1/2 - s/16 + s^2/192), s = lam t
    lam, t = np.array([1e-9, 1e-6]), 2.0
    s = lam * t
    assert_close(_spectral.lambertw_ratio(lam, t), t * (0.5 - s / 16 + s**2 / 192), rtol=1e-13)
    assert _spectral.lambertw_ratio(np.array([0.0]), t)[0] == 1.0


def test_lambertw_scalar_solves_the_scalar_ode():
    """u(lam, t) = lam t + 1 - W(e^{lam t + 1}) solves u' = lam sigma(-u), u(0) = 0 (the n = 1 case)."""
    lam, t = 0.7, 3.0
    sol = solve_ivp(lambda _t, u: lam * expit(-u), (0, t), [0.0], method="DOP853", rtol=1e-13, atol=1e-14)
    u = lam * _spectral.lambertw_ratio(np.array([lam]), t)[0]
    assert_close(u, sol.y[0, -1], rtol=1e-11)
    assert abs(u - 0.822902) < 1e-6  # the paper-spec check value


def test_vanilla_lambertw_equals_ode_when_points_decouple():
    """Far-apart points under an RBF network: K is diagonal (n independent 1-point problems), so the
    Lambert-W formula is exact, for N != M too."""
    arch = ntkgan.Mlp(depth=1, activation=("rbf", 1.0), b_std=0.0)
    fake = np.array([[0.0, 0.0], [40.0, 0.0]])
    real = np.array([[0.0, 40.0], [40.0, 40.0], [80.0, 0.0]])
    z = np.vstack([fake, real])
    K = ntkgan.kernel(z, arch=arch)
    assert np.abs(K - np.diag(np.diag(K))).max() == 0.0
    for t in (0.5, 4.0):
        lw = train_discriminator(fake, real, loss="vanilla", arch=arch, t=t, method="lambertw")
        fz, _ = flow_reference(fake, real, z[:1], arch, t, LOSSES["vanilla"].deriv)
        assert_close(lw(z), fz, rtol=1e-10, atol=1e-12)


def test_vanilla_lambertw_is_an_approximation_with_small_error_at_small_t():
    q = np.linspace(-3, 3, 31)[:, None]
    errs = []
    for t in (0.1, 1.0):
        ode = train_discriminator(FAKE_1D, REAL_1D, loss="vanilla", arch=RELU, t=t)
        lw = train_discriminator(FAKE_1D, REAL_1D, loss="vanilla", arch=RELU, t=t, method="lambertw")
        errs.append(np.abs(ode(q) - lw(q)).max())
    assert errs[0] < 1e-6 and errs[1] < 2e-3  # documented: 7e-8 and 3.7e-4


@pytest.mark.parametrize("n_fake,n_real", [(5, 5), (3, 7)])
def test_vanilla_ode_refined_tolerances_and_reference(n_fake, n_real):
    fake, real = clouds(n_fake, n_real, seed=9)
    q = np.random.default_rng(0).normal(size=(5, 2))
    t = 2.0
    coarse = train_discriminator(fake, real, loss="vanilla", arch=RELU, t=t, tol=1e-9)
    fine = train_discriminator(fake, real, loss="vanilla", arch=RELU, t=t, tol=1e-13)
    assert_close(coarse(q), fine(q), rtol=1e-8, atol=1e-9)
    _, fq = flow_reference(fake, real, q, RELU, t, LOSSES["vanilla"].deriv)
    assert_close(fine(q), fq, rtol=1e-9, atol=1e-10)
    assert_close(train_discriminator(fake, real, loss="vanilla", arch=RELU, t=t)(q), fq, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("loss", ["vanilla", "hinge"])
def test_gd_equals_explicit_iteration(loss):
    fake, real = clouds(3, 5, seed=1)
    z = np.vstack([fake, real])
    q = np.random.default_rng(8).normal(size=(3, 2))
    w, _ = weights_and_labels(3, 5)
    kz, kq = ntkgan.kernel(z, arch=RELU), ntkgan.kernel(q, z, arch=RELU)
    fz, fq = np.zeros(8), np.zeros(3)
    lr = 0.05
    for _ in range(30):
        if loss == "vanilla":
            g = w * np.concatenate([expit(fz[:3]), -expit(-fz[3:])])
        else:
            g = w * np.concatenate([(fz[:3] > -1).astype(float), -(fz[3:] < 1).astype(float)])
        fz, fq = fz - lr * kz @ g, fq - lr * kq @ g
    d = train_discriminator(fake, real, loss=loss, arch=RELU, t=1.5, lr=lr, dynamics="gd")
    assert d.method == "iterate" and d.steps == 30
    assert_close(d(q), fq, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "loss,dynamics", [("vanilla", "flow"), ("hinge", "flow"), ("vanilla", "gd"), ("lsgan", "flow")]
)
def test_large_n_paths_without_gram_equal_dense(monkeypatch, loss, dynamics):
    """Above DENSE_MAX_N the ODE, hinge and gd solvers use kernel_matvec only; same results."""
    fake, real = clouds(4, 5, seed=14)
    q = np.random.default_rng(15).normal(size=(3, 2))
    kw = {"loss": loss, "arch": RELU, "t": 2.0, "dynamics": dynamics, "method": "ode" if loss == "lsgan" else None}
    dense = train_discriminator(fake, real, **kw)
    monkeypatch.setattr(_infinite, "DENSE_MAX_N", 2)
    free = train_discriminator(fake, real, **kw)
    assert_close(free(q), dense(q), rtol=1e-8, atol=1e-10)


def test_custom_loss_by_derivatives_reproduces_lsgan():
    custom = Loss.from_derivatives(lambda f: 2 * (f + 1), lambda f: 2 * (f - 1), name="my_ls",
                                   cost=np.square, cost_deriv=lambda f: 2 * f)
    fake, real = clouds(4, 6, seed=4)
    q = np.random.default_rng(6).normal(size=(5, 2))
    a = train_discriminator(fake, real, loss=custom, arch=RELU, t=1.2)
    b = train_discriminator(fake, real, loss="lsgan", arch=RELU, t=1.2)
    assert a.method == "ode" and b.method == "eigh"
    assert_close(a(q), b(q), rtol=1e-8, atol=1e-9)
    assert_close(a.cost_grad(q), b.cost_grad(q), rtol=1e-7, atol=1e-9)


def test_hinge_flow_is_the_small_step_limit_of_gradient_descent():
    fake, real = FAKE_1D, REAL_1D[:4]
    t = 4.0
    d = train_discriminator(fake, real, loss="hinge", arch=RELU, t=t)
    assert d.method == "piecewise_linear" and d.info["events"] > 0
    f = d.support_values
    # every point ends strictly inside its margin, on it, or past it -- never NaN
    assert np.isfinite(f).all()
    errs = []
    for lr in (4e-3, 4e-4):
        g = train_discriminator(fake, real, loss="hinge", arch=RELU, t=t, lr=lr, dynamics="gd")
        errs.append(np.abs(g.support_values - f).max())
    assert errs[1] < 5e-3 and errs[1] < 0.3 * errs[0]  # first order in lr


def test_hinge_before_any_margin_is_ipm():
    fake, real = clouds(4, 3, seed=5)
    d = train_discriminator(fake, real, loss="hinge", arch=RELU, t=0.05)
    ipm = train_discriminator(fake, real, loss="ipm", arch=RELU, t=0.05)
    assert d.info["events"] == 0
    assert_close(d.coef, ipm.coef, rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# gradients, costs, the object
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["lsgan", "vanilla", "ipm", "hinge"])
def test_grad_and_cost_grad_match_finite_differences(loss):
    fake, real = clouds(4, 5, seed=6)
    d = train_discriminator(fake, real, loss=loss, arch=ERF, t=1.0)
    assert isinstance(d, KernelDiscriminator) and isinstance(d, Discriminator)
    q = np.random.default_rng(7).normal(size=(4, 2))
    h = 1e-6
    E = np.eye(2)
    fd = np.stack([(d(q + h * e) - d(q - h * e)) / (2 * h) for e in E], axis=1)
    assert_close(d.grad(q), fd, rtol=1e-6, atol=1e-8)
    fdc = np.stack([(d.cost(q + h * e) - d.cost(q - h * e)) / (2 * h) for e in E], axis=1)
    assert_close(d.cost_grad(q), fdc, rtol=1e-6, atol=1e-8)
    assert d(q).shape == (4,) and d.grad(q).shape == (4, 2) and d.cost(q).shape == (4,)


def test_nngp_kind_gaussian_kernel_ipm():
    """kind='nngp' with one Rbf layer is the Gaussian kernel exp(-gamma |x - y|^2 / d)."""
    arch = ntkgan.Mlp(depth=1, activation=("rbf", 0.5), b_std=0.0)
    fake, real = clouds(3, 4, seed=8)
    d = train_discriminator(fake, real, loss="ipm", arch=arch, t=1.0, kind="nngp")
    q = np.array([[0.1, 0.2]])
    gauss = lambda a, b: np.exp(-0.5 * ((a[:, None] - b[None]) ** 2).sum(-1) / 2)
    assert_close(d(q), gauss(q, real).mean(1) - gauss(q, fake).mean(1), rtol=1e-12)


@settings(max_examples=15)
@given(n_fake=st.integers(1, 4), n_real=st.integers(1, 4), t=st.floats(0.0, 5.0), seed=st.integers(0, 50))
def test_lsgan_methods_agree_property(n_fake, n_real, t, seed):
    fake, real = clouds(n_fake, n_real, d=1, seed=seed)
    q = np.array([[-1.0], [0.3]])
    vals = [train_discriminator(fake, real, loss="lsgan", arch=RELU, t=t, method=m)(q) for m in LSGAN_METHODS]
    for v in vals[1:]:
        assert_close(v, vals[0], rtol=1e-7, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

GOOD = {"fake": np.zeros((2, 2)), "real": np.ones((3, 2)), "loss": "lsgan", "arch": RELU, "t": 1.0}


@pytest.mark.parametrize(
    "change,match",
    [
        ({"loss": "wgan"}, "loss must be one of"),
        ({"loss": 3}, "loss must be one of"),
        ({"t": -0.1}, "t must be >= 0"),
        ({"t": float("nan")}, "t must be finite"),
        ({"t": "1"}, "t must be a real number"),
        ({"fake": np.zeros((0, 2))}, "fake must hold at least one point"),
        ({"real": np.zeros((0, 2))}, "real must hold at least one point"),
        ({"real": np.ones((3, 3))}, "real has 3 features but fake has 2"),
        ({"fake": np.zeros(4)}, "fake must be 2-D"),
        ({"fake": np.array([[0.0, np.nan], [1.0, 1.0]])}, "fake contains NaN at row 0"),
        ({"real": np.array([[0.0, 1.0], [np.inf, 1.0]])}, "real contains inf at row 1"),
        ({"arch": "relu"}, "arch must be an ntkgan.Mlp"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"width": 0}, "width must be None or an integer >= 1"),
        ({"width": 2.5}, "width must be None or an integer >= 1"),
        ({"width": 16, "dynamics": "flow"}, "dynamics='flow' needs width=None"),
        ({"width": 16, "kind": "nngp"}, "kind must be 'ntk' for a finite width"),
        ({"dynamics": "euler"}, "dynamics must be one of"),
        ({"f0": "ones"}, "f0 must be one of"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"kind": "cntk"}, "kind must be one of"),
        ({"method": "lambertw"}, "method must be one of"),
        ({"loss": "vanilla", "method": "lambertw", "f0": "random"}, "method='lambertw' needs"),
        ({"loss": "vanilla", "method": "lambertw", "dynamics": "gd"}, "method='lambertw' needs"),
        ({"loss": "ipm", "method": "eigh"}, "method must be one of"),
        ({"tol": 0.0}, "tol must be > 0"),
    ],
)
def test_bad_input_names_the_argument(change, match):
    with pytest.raises(ValueError, match=match):
        train_discriminator(**{**GOOD, **change})


def test_bad_query_points():
    d = train_discriminator(**GOOD)
    with pytest.raises(ValueError, match="x has 3 features but the discriminator takes 2"):
        d(np.ones((1, 3)))
    with pytest.raises(ValueError, match="x contains NaN"):
        d.grad(np.array([[np.nan, 0.0]]))


def test_custom_loss_validation():
    with pytest.raises(ValueError, match="give both cost and cost_deriv"):
        Loss.from_derivatives(np.tanh, np.tanh, cost=np.square)
    with pytest.raises(ValueError, match="Loss.fake_deriv must be callable"):
        Loss.from_derivatives(1.0, np.tanh)
    bad = Loss.from_derivatives(lambda f: np.full_like(f, np.nan), np.tanh)
    with pytest.raises(FloatingPointError, match="not finite"):
        train_discriminator(GOOD["fake"], GOOD["real"], loss=bad, arch=RELU, t=1.0)
    assert math.isfinite(train_discriminator(**{**GOOD, "t": 0.0})(np.zeros((1, 2)))[0])


def test_backends_agree(backend):
    """Every installed kernel backend gives the same discriminator (values and input gradients)."""
    q = np.linspace(-3, 3, 7)[:, None]
    for loss, method in (("lsgan", "eigh"), ("lsgan", "matrix_free"), ("vanilla", None)):
        a = train_discriminator(FAKE_1D, REAL_1D, loss=loss, arch=RELU, t=1.0, method=method, backend=backend)
        b = train_discriminator(FAKE_1D, REAL_1D, loss=loss, arch=RELU, t=1.0, method=method, backend="rust")
        assert_close(a(q), b(q), rtol=1e-10, atol=1e-12)
        assert_close(a.grad(q), b.grad(q), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**32 - 1), st.booleans())
def test_duplicate_row_check_agrees_with_numpy_unique(n, d, seed, plant):
    """The fast duplicate check that lets the solvers skip merging agrees with ``np.unique(axis=0)``
    (rows drawn from a few values, so equal rows and rows equal in all but one column both occur)."""
    from ntkgan.discriminator._problem import _has_duplicate_rows

    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, size=(n, d)).astype(np.float64) + rng.normal(size=(1, d))
    if plant and n > 1:
        z[-1] = z[0]
    assert _has_duplicate_rows(z) == (np.unique(z, axis=0).shape[0] < n)
