"""Tests of the gradient penalty of finite-width discriminators.

Files under test: ``python/ntkgan/finite.py`` (:func:`grad_penalty`, :func:`activation_second_deriv`, the
double-backprop workers), ``python/ntkgan/discriminator/_finite.py`` (``grad_penalty=`` of ``step``,
``train_finite``, ``param_grad``, ``loss_value``), ``python/ntkgan/presets.py`` (``d_grad_penalty``) and
``python/ntkgan/flows/_discriminators.py`` (passing it to the persistent network).

References used: the penalty value computed directly from :func:`ntkgan.finite.input_grad`; a linear
network's closed form; centred finite differences (float64) of that direct value; JAX autodiff
(``jax.grad`` of the mean squared ``jax.grad`` input gradient) of the same network built by
``Mlp.to_stax()`` (requires_nt); the out-of-place update of :func:`ntkgan.finite.sgd_update`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import assert_close, requires_nt
from finite_helpers import leaves as _leaves
from finite_helpers import to_stax_params as _to_stax_params
from ntkgan import finite as F
from ntkgan.arch import ACTIVATIONS, Activation, Erf, Gelu, Mlp, Rbf, Sigmoid, Sin
from ntkgan.discriminator import train_discriminator
from ntkgan.discriminator._finite import FiniteDiscriminator, _gd_step, train_finite
from ntkgan.discriminator._losses import get_loss
from ntkgan.flows import make_flow
from ntkgan.presets import Config, make_config

SMOOTH = ["erf", Erf(0.7, 1.3, 0.2), Sigmoid(), Rbf(0.5), Gelu(), Sin(1.0, 1.3, 0.2)]
PIECEWISE = ["relu", ("leaky_relu", 0.2), "abs", "identity"]
ACTS = SMOOTH + PIECEWISE
PARS = ["ntk", "standard"]


def _arch(act="erf", par="ntk", depth=2, width=4, w_std=1.3, b_std=0.7):
    return Mlp(depth=depth, activation=act, w_std=w_std, b_std=b_std, parameterization=par, width=width)


def _params(arch, d, antisymmetric, seed=1):
    """Random parameters; antisymmetric ones with theta2 moved off theta1 (at init the penalty is 0)."""
    p = F.init_params(arch, d, seed=seed, antisymmetric=antisymmetric)
    rng = np.random.default_rng(seed + 100)
    if antisymmetric:
        theta2 = [
            (W + 0.3 * rng.standard_normal(W.shape), b + 0.3 * rng.standard_normal(b.shape))
            for W, b in p.theta2
        ]
        p = F.AntisymmetricParams(p.theta1, theta2)
    if arch.parameterization == "standard":  # a non-zero readout bias (trainable there)
        last = p.theta1 if antisymmetric else p
        last[-1] = (last[-1][0], np.array([0.3]))
    return p


def _direct(arch, params, x, weights):
    """sum_i w_i |grad_x f(x_i)|^2 from the plain input gradient (no double backprop)."""
    g = F.input_grad(arch, params, x, np.ones(x.shape[0]))
    return float(np.sum(weights * np.sum(g * g, axis=1)))


def _assert_grads_are_centred_differences(params, grads, value, h=1e-5):
    """Each leaf of ``grads`` equals the centred differences of ``value()`` (step ``h``) in the same leaf of
    ``params``, perturbed in place and restored (rtol 1e-6, atol 1e-8)."""
    for leaf, g in zip(_leaves(params), _leaves(grads)):
        fd = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            old = leaf[idx]
            leaf[idx] = old + h
            up = value()
            leaf[idx] = old - h
            down = value()
            leaf[idx] = old
            fd[idx] = (up - down) / (2 * h)
        assert_close(g, fd, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------------------
# value
# --------------------------------------------------------------------------------------------------


def _each_network(test):
    """Parametrize ``test`` over ``act`` in ACTS, ``par`` in PARS and ``antisymmetric`` in (False, True)."""
    test = pytest.mark.parametrize("act", ACTS)(test)
    test = pytest.mark.parametrize("par", PARS)(test)
    return pytest.mark.parametrize("antisymmetric", [False, True])(test)


def _network_and_points(act, par, antisymmetric, n: int, d: int, seed: int):
    """The default ``_arch(act, par)``, its ``_params`` for inputs of dimension d, and ``n`` standard normal
    points drawn with ``seed``."""
    arch = _arch(act, par)
    return arch, _params(arch, d, antisymmetric), np.random.default_rng(seed).standard_normal((n, d))


@_each_network
def test_value_is_the_weighted_squared_input_gradient(act, par, antisymmetric):
    arch, p, x = _network_and_points(act, par, antisymmetric, n=5, d=3, seed=0)
    w = np.array([0.1, 0.4, 0.0, 1.3, 0.2])
    value, _ = F.grad_penalty(arch, p, x, w)
    assert_close(value, _direct(arch, p, x, w), rtol=1e-13)
    mean_value, _ = F.grad_penalty(arch, p, x)
    assert_close(mean_value, _direct(arch, p, x, np.full(5, 0.2)), rtol=1e-13)
    assert value > 0


@pytest.mark.parametrize("par", PARS)
def test_linear_network_penalty_is_the_squared_weight_norm(par):
    """Identity activation, depth 1: f(x) = c0 c1 x W0 W1 + const, so P = |c0 c1 W0 W1|^2 at every x."""
    arch = _arch("identity", par, depth=1, width=5)
    p = _params(arch, 3, False)
    (W0, _), (W1, _) = p
    scale = 1.0 if par == "standard" else arch.w_std**2 / math.sqrt(3 * 5)
    w_eff = scale * (W0 @ W1)[:, 0]
    x = np.random.default_rng(4).standard_normal((7, 3))
    value, grads = F.grad_penalty(arch, p, x)
    assert_close(value, w_eff @ w_eff, rtol=1e-13)
    # d/dW0 |s W0 W1|^2 = 2 s w_eff W1^T, d/dW1 = 2 s W0^T w_eff; the biases do not enter
    assert_close(grads[0][0], 2 * scale * np.outer(w_eff, W1[:, 0]), rtol=1e-12)
    assert_close(grads[1][0], 2 * scale * (W0.T @ w_eff)[:, None], rtol=1e-12)
    assert_close(grads[0][1], np.zeros(5), atol=1e-15)


def test_antisymmetric_init_has_zero_penalty_and_gradient():
    arch = _arch("erf")
    p = F.init_params(arch, 2, seed=3, antisymmetric=True)
    value, grads = F.grad_penalty(arch, p, np.random.default_rng(1).standard_normal((4, 2)))
    assert value == 0.0
    assert all(not np.any(g) for g in _leaves(grads))


# --------------------------------------------------------------------------------------------------
# parameter gradient: finite differences and JAX
# --------------------------------------------------------------------------------------------------


@_each_network
def test_param_grad_matches_centred_finite_differences(act, par, antisymmetric):
    arch, p, x = _network_and_points(act, par, antisymmetric, n=4, d=2, seed=2)
    w = np.array([0.5, 0.25, 0.125, 1.0])
    _, grads = F.grad_penalty(arch, p, x, w)
    _assert_grads_are_centred_differences(p, grads, lambda: _direct(arch, p, x, w))


@requires_nt
@pytest.mark.parametrize("antisymmetric", [False, True])
@pytest.mark.parametrize("par", PARS)
@pytest.mark.parametrize("act", ["relu", "erf", Rbf(0.5), Gelu(), ("leaky_relu", 0.2)])
def test_param_grad_matches_jax_double_autodiff(act, par, antisymmetric):
    import jax
    import jax.numpy as jnp

    arch = _arch(act, par, depth=3, width=6)
    p = _params(arch, 3, antisymmetric)
    x = np.random.default_rng(5).standard_normal((5, 3))
    w = np.array([0.3, 0.1, 0.2, 0.25, 0.15])
    _, apply_fn, _ = arch.to_stax()
    if antisymmetric:
        sp = [_to_stax_params(p.theta1), _to_stax_params(p.theta2)]

        def net(q, xx):
            return (apply_fn(q[0], xx) - apply_fn(q[1], xx))[:, 0] / math.sqrt(2.0)
    else:
        sp = _to_stax_params(p)

        def net(q, xx):
            return apply_fn(q, xx)[:, 0]

    def penalty(q):
        g = jax.grad(lambda xx: jnp.sum(net(q, xx)))(x)  # rows do not mix: row i is grad f(x_i)
        return jnp.sum(w * jnp.sum(g * g, axis=1))

    ref_value, ref_grads = jax.value_and_grad(penalty)(sp)
    value, grads = F.grad_penalty(arch, p, x, w)
    assert_close(value, float(ref_value), rtol=1e-12)
    mine = (
        [_to_stax_params(grads.theta1), _to_stax_params(grads.theta2)]
        if antisymmetric
        else _to_stax_params(grads)
    )
    mine_leaves, ref_leaves = jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(ref_grads)
    assert len(mine_leaves) == len(ref_leaves)
    for a, b in zip(mine_leaves, ref_leaves):
        assert_close(a, np.asarray(b), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("antisymmetric", [False, True])
@pytest.mark.parametrize("act", ["erf", "relu", Rbf(0.5)])
def test_input_grad_vjp_matches_centred_finite_differences(act, antisymmetric):
    """grad_theta sum_i <gbar_i, grad_x f(x_i)> for an arbitrary gbar (the mixed second derivative)."""
    arch = _arch(act, "ntk")
    p = _params(arch, 2, antisymmetric)
    rng = np.random.default_rng(7)
    x, gbar = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))

    def direct():
        return float(np.sum(gbar * F.input_grad(arch, p, x, np.ones(3))))

    g, grads = F.input_grad_vjp(arch, p, x, gbar)
    assert_close(g, F.input_grad(arch, p, x, np.ones(3)), rtol=1e-13)
    _assert_grads_are_centred_differences(p, grads, direct)
    with pytest.raises(ValueError, match="cotangent"):
        F.input_grad_vjp(arch, p, x, gbar[:2])


@pytest.mark.parametrize("act", [a for a in ACTIVATIONS if a not in ("abrelu",)])
def test_second_derivative_matches_finite_differences_of_the_first(act):
    activation = Mlp(activation=act).activation
    z = np.linspace(-2.3, 2.1, 23)
    h = 1e-6
    fd = (activation.numpy_deriv(z + h) - activation.numpy_deriv(z - h)) / (2 * h)
    assert_close(F.activation_second_deriv(act, z), fd, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# the discriminator's training step
# --------------------------------------------------------------------------------------------------


def _samples(n_fake=4, n_real=3, d=2, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_fake, d)), 0.5 + rng.standard_normal((n_real, d))


@pytest.mark.parametrize("act", ["relu", "erf", Rbf(0.5)])
@pytest.mark.parametrize("par", PARS)
@pytest.mark.parametrize("f0", ["zero", "random"])
def test_penalised_step_is_the_gradient_step(act, par, f0):
    """The in-place rank-n updates equal ``sgd_update(params, param_grad(lambda), lr)``."""
    fake, real = _samples(n_fake=5, n_real=6, d=3)
    disc = FiniteDiscriminator.init(_arch(act, par, depth=3, width=7), 3, loss="lsgan", f0=f0, seed=1)
    disc.step(fake, real, lr=0.2)  # leave the antisymmetric init (zero penalty gradient)
    for _ in range(3):
        grads = disc.param_grad(fake, real, grad_penalty=0.7)
        expected = F.sgd_update(disc.params, grads, 0.2)
        disc.step(fake, real, lr=0.2, grad_penalty=0.7)
        for a, b in zip(_leaves(disc.params), _leaves(expected)):
            assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_param_grad_is_loss_gradient_plus_lambda_penalty_gradient_over_the_union():
    fake, real = _samples(n_fake=3, n_real=5)
    disc = FiniteDiscriminator.init(_arch("erf", width=5), 2, loss="ipm", f0="random", seed=4)
    lam = 0.35
    z = np.concatenate([fake, real])
    _, pen = F.grad_penalty(disc.arch, disc.params, z, np.full(8, lam / 8))
    expected = F.tree_map(np.add, disc.param_grad(fake, real), pen)
    for a, b in zip(_leaves(disc.param_grad(fake, real, grad_penalty=lam)), _leaves(expected)):
        assert_close(a, b, rtol=1e-14, atol=1e-16)
    assert_close(
        disc.grad_sqnorm(fake, real), _direct(disc.arch, disc.params, z, np.full(8, 1 / 8)), rtol=1e-13
    )
    assert_close(
        disc.loss_value(fake, real, grad_penalty=lam),
        disc.loss_value(fake, real) + lam * disc.grad_sqnorm(fake, real),
        rtol=1e-14,
    )


def test_penalised_loss_decreases_along_its_gradient():
    """A small step on L + lambda P lowers L + lambda P by about lr |grad|^2 (first order)."""
    fake, real = _samples(n_fake=6, n_real=6)
    disc = FiniteDiscriminator.init(_arch("erf", width=8), 2, loss="lsgan", f0="random", seed=2)
    lam, lr = 2.0, 1e-4
    before = disc.loss_value(fake, real, grad_penalty=lam)
    gnorm2 = sum(float(np.sum(g * g)) for g in _leaves(disc.param_grad(fake, real, grad_penalty=lam)))
    disc.step(fake, real, lr=lr, grad_penalty=lam)
    after = disc.loss_value(fake, real, grad_penalty=lam)
    assert_close(before - after, lr * gnorm2, rtol=1e-3)


@requires_nt
def test_penalised_training_matches_jax_gradient_descent():
    import jax
    import jax.numpy as jnp

    fake, real = _samples(n_fake=5, n_real=4)
    arch = _arch("erf", depth=2, width=10)
    lam, lr = 0.5, 0.1
    disc = train_finite(
        fake, real, loss="lsgan", arch=arch, t=1.0, width=10, lr=lr, seed=7, f0="random", grad_penalty=lam
    )
    _, apply_fn, _ = arch.to_stax()
    z = np.concatenate([fake, real])

    def total(q):
        f = apply_fn(q, z)[:, 0]
        g = jax.grad(lambda zz: jnp.sum(apply_fn(q, zz)))(z)
        return jnp.mean((f[:5] + 1) ** 2) + jnp.mean((f[5:] - 1) ** 2) + lam * jnp.mean(jnp.sum(g * g, 1))

    q = _to_stax_params(F.init_params(arch, 2, seed=7))
    for _ in range(10):
        q = jax.tree_util.tree_map(lambda a, g: a - lr * g, q, jax.grad(total)(q))
    grid = np.random.default_rng(0).standard_normal((9, 2))
    assert disc.steps == 10
    assert_close(disc(grid), np.asarray(apply_fn(q, grid)[:, 0]), rtol=1e-10, atol=1e-12)


def test_zero_penalty_is_bit_identical_and_a_positive_one_is_not():
    fake, real = _samples(n_fake=5, n_real=5, d=3)
    arch = _arch("relu", depth=3, width=9)
    plain = FiniteDiscriminator.init(arch, 3, loss="ipm", seed=5).step(fake, real, n_steps=4, lr=0.1)
    zero = FiniteDiscriminator.init(arch, 3, loss="ipm", seed=5).step(
        fake, real, n_steps=4, lr=0.1, grad_penalty=0.0
    )
    pen = FiniteDiscriminator.init(arch, 3, loss="ipm", seed=5).step(
        fake, real, n_steps=4, lr=0.1, grad_penalty=0.5
    )
    for a, b in zip(_leaves(plain.params), _leaves(zero.params)):
        assert np.array_equal(a, b)
    assert max(float(np.abs(a - b).max()) for a, b in zip(_leaves(plain.params), _leaves(pen.params))) > 1e-4
    t0 = train_finite(fake, real, loss="ipm", arch=arch, t=0.5, width=9, seed=2)
    t1 = train_finite(fake, real, loss="ipm", arch=arch, t=0.5, width=9, seed=2, grad_penalty=0.0)
    for a, b in zip(_leaves(t0.params), _leaves(t1.params)):
        assert np.array_equal(a, b)
    # the internal worker at lambda = 0 takes the unpenalised path
    p1, p2 = (F.init_params(arch, 3, seed=8, antisymmetric=True) for _ in range(2))
    z = np.concatenate([fake, real])
    _gd_step(arch, p1, get_loss("ipm"), z, 5, 0.1)
    _gd_step(arch, p2, get_loss("ipm"), z, 5, 0.1, 0.0)
    for a, b in zip(_leaves(p1), _leaves(p2)):
        assert np.array_equal(a, b)


def test_penalty_shrinks_the_input_gradient():
    """Trained to the same time, a larger lambda leaves a smaller mean |grad f|^2 (what it penalises)."""
    fake, real = _samples(n_fake=8, n_real=8)
    arch = _arch("erf", width=16)
    sq = [
        train_finite(
            fake, real, loss="ipm", arch=arch, t=2.0, width=16, seed=0, grad_penalty=lam
        ).grad_sqnorm(fake, real)
        for lam in (0.0, 1.0, 10.0)
    ]
    assert sq[0] > sq[1] > sq[2]


# --------------------------------------------------------------------------------------------------
# config and flows
# --------------------------------------------------------------------------------------------------


def test_flow_passes_the_penalty_to_the_persistent_network():
    common = {
        "data": "gmm:2",
        "n_source": 6,
        "n_target": 6,
        "steps": 3,
        "d_width": 8,
        "d_steps": 2,
        "seed": 1,
    }
    flows = {lam: make_flow(make_config("ipm", "relu", d_grad_penalty=lam, **common)) for lam in (0.0, 3.0)}
    for flow in flows.values():
        flow.run(3)
    default = make_flow(make_config("ipm", "relu", **common))
    default.run(3)
    assert np.array_equal(default.particles, flows[0.0].particles)
    assert not np.array_equal(flows[0.0].particles, flows[3.0].particles)
    # each generator step runs 2 penalised steps of the persistent network on (particles, target)
    cfg = make_config("ipm", "relu", d_grad_penalty=3.0, **common)
    again = make_flow(cfg)
    for _ in range(3):
        net = again._disc.network
        expected = FiniteDiscriminator(net.arch, net.params, loss="ipm")  # a copy
        expected.step(again.particles, again.target, n_steps=2, lr=cfg.d_lr, grad_penalty=3.0)
        again.step()
        for a, b in zip(_leaves(net.params), _leaves(expected.params)):
            assert np.array_equal(a, b)
    assert np.array_equal(again.particles, flows[3.0].particles)


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "1"])
def test_bad_lambda_is_a_value_error_naming_it(value):
    fake, real = _samples()
    disc = FiniteDiscriminator.init(_arch(), 2, loss="ipm", seed=0)
    for call in (
        lambda: disc.step(fake, real, grad_penalty=value),
        lambda: disc.param_grad(fake, real, grad_penalty=value),
        lambda: disc.loss_value(fake, real, grad_penalty=value),
        lambda: train_finite(fake, real, loss="ipm", arch=_arch(), t=0.1, width=4, grad_penalty=value),
        lambda: train_discriminator(fake, real, loss="ipm", arch=_arch(), t=0.1, width=4, grad_penalty=value),
    ):
        with pytest.raises(ValueError, match="grad_penalty"):
            call()
    with pytest.raises(ValueError, match="d_grad_penalty"):
        make_config("ipm", d_grad_penalty=value)


def test_config_field_validation_and_default():
    assert Config().d_grad_penalty == 0.0
    assert make_config("ipm", d_grad_penalty=2).d_grad_penalty == 2.0
    assert Config.from_dict(make_config("lsgan", d_grad_penalty=0.25).to_dict()).d_grad_penalty == 0.25
    with pytest.raises(ValueError, match="d_grad_penalty.*infinite"):
        make_config("inf_ipm", d_grad_penalty=0.5)
    assert make_config("inf_ipm", d_grad_penalty=0.0).d_grad_penalty == 0.0
    assert make_config("ipm_reset", d_grad_penalty=0.5).d_grad_penalty == 0.5


@dataclass(frozen=True)
class _Cube(Activation):
    """x^3 with phi' only: no second derivative known to the penalty."""

    def numpy_fn(self, x):
        return x**3

    def numpy_deriv(self, x):
        return 3 * x**2


def test_activation_without_second_derivative_is_refused_only_when_penalised():
    arch = Mlp(depth=1, activation=_Cube(), width=3)
    fake, real = _samples()
    disc = FiniteDiscriminator.init(arch, 2, loss="ipm", seed=0)
    disc.step(fake, real)  # fine without the penalty
    with pytest.raises(ValueError, match="second derivative"):
        disc.step(fake, real, grad_penalty=0.1)
    with pytest.raises(ValueError, match="second derivative"):
        F.grad_penalty(arch, disc.params, fake)
    with pytest.raises(ValueError, match="second derivative"):
        F.activation_second_deriv(_Cube(), [1.0])


def test_grad_penalty_rejects_bad_weights_and_outputs():
    arch = _arch()
    p = F.init_params(arch, 2, seed=0)
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="weights"):
        F.grad_penalty(arch, p, x, [1.0, 2.0])
    with pytest.raises(ValueError, match="weights"):
        F.grad_penalty(arch, p, x, [1.0, -1.0, 0.0])
    with pytest.raises(ValueError, match="out_dim"):
        F.grad_penalty(arch, F.init_params(arch, 2, out_dim=2, seed=0), x)


def test_train_discriminator_passes_the_penalty_to_finite_widths():
    """train_discriminator(width=W, grad_penalty=lam) is train_finite(..., grad_penalty=lam), bit for bit,
    and differs from lam = 0; at infinite width a penalty is refused."""
    fake, real = _samples()
    kw = dict(loss="lsgan", arch=_arch(), t=0.3, width=16, lr=0.1, seed=3)
    net = train_discriminator(fake, real, grad_penalty=2.0, **kw)
    ref = train_finite(fake, real, grad_penalty=2.0, **kw)
    plain = train_discriminator(fake, real, **kw)
    for a, b in zip(_leaves(net.params), _leaves(ref.params)):
        assert np.array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(_leaves(net.params), _leaves(plain.params)))
    with pytest.raises(ValueError, match="grad_penalty applies to finite widths"):
        train_discriminator(fake, real, loss="lsgan", arch=_arch(), t=0.3, grad_penalty=1.0)
