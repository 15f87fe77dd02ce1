"""Tests of python/ntkgan/discriminator/_finite.py: finite-width discriminators trained by gradient descent.

References used: centred finite differences (float64) of the loss and of the network; JAX autodiff and
JAX gradient descent of the same network built by ``Mlp.to_stax()`` with the same parameter values, the
losses written out again in ``jax.numpy`` (requires_nt); the out-of-place update of
:func:`ntkgan.finite.sgd_update`; and, for the width limit, the discrete-time infinite-width solution
``train_discriminator(..., width=None, dynamics="gd")``.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close, requires_nt
from finite_helpers import leaves as _leaves
from finite_helpers import to_stax_params as _to_stax_params
from finite_helpers import with_leaves as _with_leaves
from hypothesis import given, settings
from hypothesis import strategies as st
from ntkgan import finite as F
from ntkgan.arch import Mlp
from ntkgan.discriminator import LOSSES, train_discriminator
from ntkgan.discriminator._finite import FiniteDiscriminator, train_finite

LOSS_NAMES = sorted(LOSSES)
MODES_1D = (
    np.array([-1.8, -2.01, -1.2, -1.05, -0.45])[:, None],
    np.array([0.9, 1.5, 1.845, 1.98, 0.3])[:, None],
)


def _arch(act="erf", par="ntk", depth=2, width=6, w_std=1.2, b_std=0.7):
    return Mlp(depth=depth, activation=act, w_std=w_std, b_std=b_std, parameterization=par, width=width)


def _samples(n_fake=4, n_real=3, d=2, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_fake, d)), 0.5 + rng.standard_normal((n_real, d))


# --------------------------------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["relu", "erf", ("leaky_relu", 0.2)])
@pytest.mark.parametrize("par", ["ntk", "standard"])
def test_antisymmetric_init_is_exactly_zero(act, par):
    arch = _arch(act, par, depth=3, width=16)
    disc = FiniteDiscriminator.init(arch, 2, loss="lsgan", seed=5)
    x = np.random.default_rng(0).standard_normal((7, 2)) * 3
    assert disc.antisymmetric
    assert np.array_equal(disc(x), np.zeros(7))
    assert np.array_equal(disc.grad(x), np.zeros((7, 2)))
    assert np.array_equal(disc.cost(x), np.zeros(7))  # lsgan c = f^2


def test_random_init_is_the_plain_network():
    arch = _arch("relu", depth=3, width=32)
    x = np.linspace(-2, 2, 9)[:, None]
    disc = FiniteDiscriminator.init(arch, 1, loss="ipm", f0="random", seed=4)
    assert not disc.antisymmetric
    expected = F.apply(arch, F.init_params(arch, 1, seed=4), x)[:, 0]
    assert_close(disc(x), expected, rtol=1e-14)  # the Rust engine's GEMMs sum in another order
    assert np.abs(expected).max() > 0.1


def test_train_finite_with_t_zero_is_the_initial_function():
    fake, real = MODES_1D
    d0 = train_finite(fake, real, loss="lsgan", arch=Mlp(), t=0.0, width=32, seed=1)
    assert d0.steps == 0 and d0.time == 0.0
    assert np.array_equal(d0(fake), np.zeros(5))
    d1 = train_finite(fake, real, loss="lsgan", arch=Mlp(), t=0.0, width=32, seed=1, f0="random")
    ref = F.apply(Mlp(width=32), F.init_params(Mlp(width=32), 1, seed=1), fake)[:, 0]
    assert_close(d1(fake), ref, rtol=1e-14)  # the Rust engine's GEMMs sum in another order


# --------------------------------------------------------------------------------------------------
# the gradient of L: finite differences, JAX autodiff, the update itself
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("f0", ["zero", "random"])
def test_param_grad_matches_finite_differences(loss, f0):
    """dL/dtheta by backprop vs centred differences of L (smooth erf net; away from hinge's kinks)."""
    fake, real = _samples()
    disc = FiniteDiscriminator.init(_arch("erf", width=4), 2, loss=loss, f0=f0, seed=11)
    disc.step(fake, real, n_steps=2, lr=0.05)  # break the antisymmetric halves' symmetry
    if loss == "hinge":
        f = disc(np.concatenate([fake, real]))
        assert np.abs(np.abs(f) - 1).min() > 1e-3, "a point sits on hinge's kink"
    grads = _leaves(disc.param_grad(fake, real))
    base = _leaves(disc.params)
    eps = 1e-6
    for k, leaf in enumerate(base):
        fd = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            vals = []
            for sgn in (1, -1):
                shifted = [a.copy() for a in base]
                shifted[k][idx] += sgn * eps
                other = FiniteDiscriminator(disc.arch, _with_leaves(disc.params, shifted), loss=loss)
                vals.append(other.loss_value(fake, real))
            fd[idx] = (vals[0] - vals[1]) / (2 * eps)
        assert_close(grads[k], fd, rtol=1e-6, atol=1e-8, err_msg=f"leaf {k}")


def _jax_loss(name):
    import jax
    import jax.numpy as jnp

    terms = {
        "ipm": (lambda f: f, lambda f: -f),
        "lsgan": (lambda f: (f + 1) ** 2, lambda f: (f - 1) ** 2),
        "vanilla": (lambda f: jax.nn.softplus(f), lambda f: jax.nn.softplus(-f)),
        "hinge": (lambda f: jax.nn.relu(1 + f), lambda f: jax.nn.relu(1 - f)),
    }[name]
    return lambda f_fake, f_real: jnp.mean(terms[0](f_fake)) + jnp.mean(terms[1](f_real))


def _jax_network(arch, antisymmetric):
    """``f(params, x)`` of the stax network, antisymmetric or plain, params in stax layout."""
    _, apply_fn, _ = arch.to_stax()
    if antisymmetric:
        return lambda p, x: (apply_fn(p[0], x) - apply_fn(p[1], x))[:, 0] / math.sqrt(2.0)
    return lambda p, x: apply_fn(p, x)[:, 0]


def _stax(params):
    if isinstance(params, F.AntisymmetricParams):
        return [_to_stax_params(params.theta1), _to_stax_params(params.theta2)]
    return _to_stax_params(params)


@requires_nt
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("par", ["ntk", "standard"])
def test_param_grad_matches_jax_autodiff(loss, par):
    import jax

    fake, real = _samples(d=3)
    arch = _arch("relu", par, depth=3, width=8)
    disc = FiniteDiscriminator.init(arch, 3, loss=loss, seed=2)
    disc.step(fake, real, n_steps=3, lr=0.1)
    net = _jax_network(arch, antisymmetric=True)
    jloss = _jax_loss(loss)
    g = jax.grad(lambda p: jloss(net(p, fake), net(p, real)))(_stax(disc.params))
    mine = _stax(disc.param_grad(fake, real))
    ref_leaves = jax.tree_util.tree_leaves(g)
    mine_leaves = jax.tree_util.tree_leaves(mine)
    assert len(ref_leaves) == len(mine_leaves)
    for a, b in zip(mine_leaves, ref_leaves):
        assert_close(a, np.asarray(b), rtol=1e-10, atol=1e-13)
    assert_close(disc.loss_value(fake, real), float(jloss(net(_stax(disc.params), fake),
                                                           net(_stax(disc.params), real))), rtol=1e-12)


@requires_nt
@pytest.mark.parametrize("loss", ["lsgan", "vanilla"])
@pytest.mark.parametrize("f0", ["zero", "random"])
def test_training_matches_jax_gradient_descent(loss, f0):
    """10 in-place BLAS steps == 10 steps of theta <- theta - lr * jax.grad(L) on the stax network."""
    import jax

    fake, real = MODES_1D
    arch = Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0, width=24)
    disc = train_finite(fake, real, loss=loss, arch=arch, t=1.0, width=24, lr=0.1, seed=7, f0=f0)
    p = _stax(F.init_params(arch, 1, seed=7, antisymmetric=f0 == "zero"))
    net = _jax_network(arch, antisymmetric=f0 == "zero")
    jloss = _jax_loss(loss)
    grad_fn = jax.grad(lambda q: jloss(net(q, fake), net(q, real)))
    for _ in range(10):
        p = jax.tree_util.tree_map(lambda a, g: a - 0.1 * g, p, grad_fn(p))
    grid = np.linspace(-3, 3, 25)[:, None]
    assert disc.steps == 10
    assert_close(disc(grid), np.asarray(net(p, grid)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("par", ["ntk", "standard"])
@pytest.mark.parametrize("f0", ["zero", "random"])
def test_step_is_the_gradient_step(par, f0):
    """The in-place rank-n update equals ``sgd_update(params, param_grad, lr)`` (out of place)."""
    fake, real = _samples(n_fake=5, n_real=6, d=3)
    disc = FiniteDiscriminator.init(_arch("relu", par, depth=3, width=12), 3, loss="vanilla", f0=f0, seed=1)
    for _ in range(3):
        expected = F.sgd_update(disc.params, disc.param_grad(fake, real), 0.3)
        disc.step(fake, real, lr=0.3)
        for a, b in zip(_leaves(disc.params), _leaves(expected)):
            assert_close(a, b, rtol=1e-12, atol=1e-14)


@settings(max_examples=15)
@given(
    n_fake=st.integers(1, 6), n_real=st.integers(1, 6), d=st.integers(1, 3), width=st.integers(1, 9),
    depth=st.integers(1, 3), loss=st.sampled_from(LOSS_NAMES), seed=st.integers(0, 2**16),
)
def test_step_is_the_gradient_step_property(n_fake, n_real, d, width, depth, loss, seed):
    rng = np.random.default_rng(seed)
    fake, real = rng.standard_normal((n_fake, d)), rng.standard_normal((n_real, d))
    disc = FiniteDiscriminator.init(_arch("relu", depth=depth, width=width), d, loss=loss, rng=rng)
    disc.step(fake, real, n_steps=1, lr=0.2)
    expected = F.sgd_update(disc.params, disc.param_grad(fake, real), 0.2)
    disc.step(fake, real, n_steps=1, lr=0.2)
    for a, b in zip(_leaves(disc.params), _leaves(expected)):
        assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_steps_compose_and_count():
    """A persistent discriminator: step(3) then step(4) == step(7); ``steps`` and ``time`` add up."""
    fake, real = MODES_1D
    arch = Mlp(width=32)
    a = FiniteDiscriminator.init(arch, 1, loss="lsgan", seed=0)
    a.step(fake, real, 3, 0.1).step(fake, real, 4, 0.1)
    b = FiniteDiscriminator.init(arch, 1, loss="lsgan", seed=0).step(fake, real, n_steps=7, lr=0.1)
    assert (a.steps, b.steps) == (7, 7)
    assert_close(a.time, 0.7, rtol=1e-15)
    for u, v in zip(_leaves(a.params), _leaves(b.params)):
        assert np.array_equal(u, v)
    before = a.loss_value(fake, real)
    a.step(fake, real, n_steps=5, lr=0.1)
    assert a.loss_value(fake, real) < before  # gradient descent lowers L at this small step


def test_params_are_copied():
    arch = _arch("relu", width=5)
    p = F.init_params(arch, 2, seed=0, antisymmetric=True)
    kept = [a.copy() for a in _leaves(p)]
    fake, real = _samples()
    FiniteDiscriminator(arch, p, loss="ipm").step(fake, real, n_steps=2)
    for u, v in zip(_leaves(p), kept):
        assert np.array_equal(u, v)


# --------------------------------------------------------------------------------------------------
# evaluation: values, input gradients, the generator cost
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_input_grad_and_cost_grad_match_finite_differences(loss):
    fake, real = _samples(d=2)
    disc = train_finite(fake, real, loss=loss, arch=_arch("erf", depth=3), t=0.5, width=10, lr=0.1, seed=3)
    x = np.random.default_rng(1).standard_normal((6, 2))
    eps = 1e-6
    fd = np.zeros_like(x)
    fd_cost = np.zeros_like(x)
    for j in range(2):
        e = np.zeros(2)
        e[j] = eps
        fd[:, j] = (disc(x + e) - disc(x - e)) / (2 * eps)
        fd_cost[:, j] = (disc.cost(x + e) - disc.cost(x - e)) / (2 * eps)
    assert_close(disc.grad(x), fd, rtol=1e-6, atol=1e-9)
    assert_close(disc.cost_grad(x), fd_cost, rtol=1e-6, atol=1e-9)
    f, g = disc.value_and_grad(x)
    assert_close(f, disc(x), rtol=0)
    assert_close(g, disc.grad(x), rtol=0)


def test_door_returns_a_finite_discriminator_of_the_given_width():
    fake, real = MODES_1D
    arch = Mlp(depth=3, activation="relu", width=128)
    disc = train_discriminator(fake, real, loss="ipm", arch=arch, t=1.0, width=48, lr=0.25, seed=2)
    assert isinstance(disc, FiniteDiscriminator)
    assert disc.width == 48 and disc.arch.depth == 3 and disc.arch.width == 48
    assert disc.steps == round(1.0 / 0.25) and disc.time == 1.0
    same = train_finite(fake, real, loss="ipm", arch=arch, t=1.0, width=48, lr=0.25, seed=2)
    assert np.array_equal(disc(real), same(real))
    assert "width=48" in repr(disc)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t": -1.0}, "t must"),
        ({"width": 0}, "width must"),
        ({"lr": 0.0}, "lr must"),
        ({"f0": "ones"}, "f0 must"),
        ({"loss": "wgan"}, "loss must"),
        ({"arch": "relu"}, "arch must"),
    ],
)
def test_train_finite_rejects_bad_arguments(kwargs, match):
    fake, real = MODES_1D
    args = {"loss": "lsgan", "arch": Mlp(), "t": 1.0, "width": 8, "lr": 0.1, "seed": 0, "f0": "zero"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_finite(fake, real, **args)


def test_step_and_evaluation_reject_bad_input():
    fake, real = MODES_1D
    disc = FiniteDiscriminator.init(Mlp(width=8), 1, loss="lsgan", seed=0)
    with pytest.raises(ValueError, match="lr must"):
        disc.step(fake, real, lr=-0.1)
    with pytest.raises(ValueError, match="n_steps must"):
        disc.step(fake, real, n_steps=1.5)
    with pytest.raises(ValueError, match="real has 2 features"):
        disc.step(fake, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="fake must hold at least one point"):
        disc.step(np.zeros((0, 1)), real)
    with pytest.raises(ValueError, match="x contains NaN"):
        disc(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="one output"):
        FiniteDiscriminator(Mlp(width=8), F.init_params(Mlp(width=8), 1, out_dim=2, seed=0), loss="ipm")


def test_works_without_jax():
    code = (
        "import sys; sys.modules['jax'] = None; sys.modules['neural_tangents'] = None\n"
        "import numpy as np, ntkgan\n"
        "from ntkgan.discriminator import train_discriminator\n"
        "d = train_discriminator([[-1.0], [-0.5]], [[0.5], [1.0]], loss='lsgan', arch=ntkgan.Mlp(), t=1.0,"
        " width=16)\n"
        "assert np.isfinite(d.cost_grad(np.array([[0.0]]))).all()\n"
        "assert 'jax' not in ntkgan.backends.available()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------------
# the width limit
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def _one_blas_thread():
    """Single-threaded BLAS: much faster than an oversubscribed pool on a shared machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.mark.slow
def test_finite_width_converges_to_the_discrete_infinite_width_solution(_one_blas_thread):
    """sup-norm error on linspace(-3, 3, 100) to ``train_discriminator(width=None, dynamics="gd")``.

    LSGAN on ``modes_1d`` with the paper's settings (3 hidden ReLU layers, w_std 1, b_std 1, NTK
    parameterization, antisymmetric init, lr 0.1, t 1 = 10 steps); output scale max |f_inf| = 1.33.
    Measured, mean over seeds 0, 1, 2: widths 64, 256, 1024, 4096 -> 0.234, 0.166, 0.089, 0.043
    (20 seeds: 0.216, 0.103, 0.057 for the first three, i.e. about width^-0.5).  The test asserts the
    means decrease, the overall log-log slope is below -0.3, and the width-4096 mean is below 0.08 (6% of
    the output scale).  For comparison the continuous-time solution differs from the discrete one by 0.036.
    """
    fake, real = MODES_1D
    arch = Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0, parameterization="ntk")
    grid = np.linspace(-3, 3, 100)[:, None]
    ref = train_discriminator(fake, real, loss="lsgan", arch=arch, t=1.0, dynamics="gd", lr=0.1)(grid)
    assert_close(np.abs(ref).max(), 1.326, atol=1e-3)
    widths = [64, 256, 1024, 4096]
    means = []
    for width in widths:
        errs = [
            np.abs(train_discriminator(fake, real, loss="lsgan", arch=arch, t=1.0, width=width, lr=0.1,
                                       seed=seed)(grid) - ref).max()
            for seed in range(3)
        ]
        means.append(float(np.mean(errs)))
    assert all(a > b for a, b in zip(means, means[1:])), means
    slope = np.polyfit(np.log(widths), np.log(means), 1)[0]
    assert slope < -0.3, (slope, means)
    assert means[-1] < 0.08, means
    assert_close(means, [0.234, 0.166, 0.089, 0.043], atol=2e-3)  # regression pin of the measured values
