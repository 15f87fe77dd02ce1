"""Tests of python/ntkgan/finite.py: finite-width networks, hand-written backprop, empirical NTK.

References used: centred finite differences (float64), JAX autodiff of the same network built by
``Mlp.to_stax(out_dim)`` with the same parameter values (requires_nt), an explicit Jacobian ``J J^T``,
and the first-order effect of a gradient step.  The Monte Carlo check of the empirical NTK against the
closed-form kernels lives in tests/test_empirical_ntk.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close, central_difference, requires_nt
from finite_helpers import leaves as _leaves
from finite_helpers import to_stax_params as _to_stax_params
from finite_helpers import with_leaves as _with_leaves
from hypothesis import given, settings
from hypothesis import strategies as st
from ntkgan import finite as F
from ntkgan.arch import Erf, Gelu, Mlp, Rbf, Sigmoid

SMOOTH = ["erf", Erf(0.7, 1.3, 0.2), Sigmoid(), Rbf(0.5)]
ACTIVATIONS = SMOOTH + ["relu", ("leaky_relu", 0.2), "abs", "identity"]
PARAMS = ["ntk", "standard"]


def _arch(act="erf", par="ntk", depth=2, width=5, w_std=1.3, b_std=0.7):
    return Mlp(depth=depth, activation=act, w_std=w_std, b_std=b_std, parameterization=par, width=width)


def _data(n=4, d=3, out_dim=2, seed=7):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, out_dim))


def _objective(arch, params, x, ct):
    return float(np.sum(ct * F.apply(arch, params, x)))


# --------------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------------


def test_init_shapes_and_readout_bias():
    arch = _arch(depth=3, width=6)
    p = F.init_params(arch, 4, out_dim=2, seed=0)
    assert [(W.shape, b.shape) for W, b in p] == [
        ((4, 6), (6,)), ((6, 6), (6,)), ((6, 6), (6,)), ((6, 2), (2,)),
    ]
    assert all(W.dtype == np.float64 and b.dtype == np.float64 for W, b in p)
    assert np.all(p[-1][1] == 0.0)
    assert F.num_params(p) == 4 * 6 + 6 + 2 * (36 + 6) + 12 + 2


def test_init_is_deterministic_from_seed_or_rng():
    arch = _arch()
    a, b = F.init_params(arch, 3, seed=3), F.init_params(arch, 3, seed=3)
    c = F.init_params(arch, 3, seed=4)
    d = F.init_params(arch, 3, rng=np.random.default_rng(3))
    for u, v, w in zip(_leaves(a), _leaves(b), _leaves(d)):
        assert np.array_equal(u, v) and np.array_equal(u, w)
    assert not np.array_equal(a[0][0], c[0][0])


def test_standard_init_is_the_scaled_ntk_init_and_the_same_function():
    """Same seed, same draws: W_std = w_std / sqrt(fan_in) * W_ntk, b_std = b_std * b_ntk (hidden)."""
    ntk, std = _arch(par="ntk", depth=3), _arch(par="standard", depth=3)
    pn = F.init_params(ntk, 3, out_dim=2, seed=1)
    ps = F.init_params(std, 3, out_dim=2, seed=1)
    for i, ((Wn, bn), (Ws, bs)) in enumerate(zip(pn, ps)):
        assert_close(Ws, ntk.w_std / math.sqrt(Wn.shape[0]) * Wn, rtol=1e-15)
        assert_close(bs, (0.0 if i == len(pn) - 1 else ntk.b_std) * bn, rtol=1e-15)
    x, _ = _data()
    assert_close(F.apply(std, ps, x), F.apply(ntk, pn, x), rtol=1e-12, atol=1e-14)


def test_init_statistics_match_the_parameterization():
    arch = Mlp(depth=1, width=400, w_std=1.7, b_std=0.4, parameterization="standard")
    (W0, b0), (W1, _) = F.init_params(arch, 300, seed=0)
    assert abs(W0.std() - 1.7 / math.sqrt(300)) < 0.01 * 1.7 / math.sqrt(300)
    assert abs(W1.std() - 1.7 / math.sqrt(400)) < 0.1 * 1.7 / math.sqrt(400)
    assert abs(b0.std() - 0.4) < 0.1 * 0.4


# --------------------------------------------------------------------------------------------------
# backprop against centred finite differences
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("antisymmetric", [False, True])
@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_param_grad_matches_finite_differences(act, par, antisymmetric):
    arch = _arch(act, par)
    x, ct = _data()
    p = F.init_params(arch, 3, out_dim=2, seed=11, antisymmetric=antisymmetric)
    if antisymmetric:  # theta2 != theta1 so that both halves matter
        p = F.AntisymmetricParams(p.theta1, F.init_params(arch, 3, out_dim=2, seed=13))
    grads = _leaves(F.param_grad(arch, p, x, ct))
    leaves = _leaves(p)
    h = 1e-6
    for k, leaf in enumerate(leaves):
        fd = np.empty(leaf.size)
        for j in range(leaf.size):
            plus = [a.copy() for a in leaves]
            minus = [a.copy() for a in leaves]
            plus[k].flat[j] += h
            minus[k].flat[j] -= h
            f_plus = _objective(arch, _with_leaves(p, plus), x, ct)
            f_minus = _objective(arch, _with_leaves(p, minus), x, ct)
            fd[j] = (f_plus - f_minus) / (2 * h)
        assert_close(grads[k].ravel(), fd, rtol=1e-6, atol=1e-8, err_msg=f"leaf {k}")


@pytest.mark.parametrize("antisymmetric", [False, True])
@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_input_grad_matches_finite_differences(act, par, antisymmetric):
    arch = _arch(act, par, depth=3)
    x, ct = _data(n=5, d=4, out_dim=3)
    p = F.init_params(arch, 4, out_dim=3, seed=5, antisymmetric=antisymmetric)
    if antisymmetric:
        p = F.AntisymmetricParams(p.theta1, F.init_params(arch, 4, out_dim=3, seed=6))
    G = F.input_grad(arch, p, x, ct)
    fd = central_difference(lambda z: _objective(arch, p, z, ct), x, h=1e-6)
    assert_close(G, fd, rtol=1e-6, atol=1e-8)


@settings(max_examples=25)
@given(
    depth=st.integers(1, 3),
    width=st.integers(1, 7),
    d=st.integers(1, 4),
    out_dim=st.integers(1, 3),
    act=st.sampled_from(SMOOTH),
    par=st.sampled_from(PARAMS),
    seed=st.integers(0, 2**16),
)
def test_directional_derivatives_match_finite_differences(depth, width, d, out_dim, act, par, seed):
    """Random small networks: <grad, v> equals the centred difference along a random direction v."""
    arch = Mlp(depth=depth, activation=act, parameterization=par, width=width, b_std=0.5)
    rng = np.random.default_rng(seed)
    x, ct = rng.standard_normal((3, d)), rng.standard_normal((3, out_dim))
    p = F.init_params(arch, d, out_dim=out_dim, rng=rng)
    v = F.tree_map(lambda a: rng.standard_normal(a.shape), p)
    vx = rng.standard_normal(x.shape)
    f, pullback = F.vjp(arch, p, x)
    assert_close(f, F.apply(arch, p, x), rtol=0)
    gp, gx = pullback(ct)
    h = 1e-5
    fd_p = (
        _objective(arch, F.sgd_update(p, v, -h), x, ct) - _objective(arch, F.sgd_update(p, v, h), x, ct)
    ) / (2 * h)
    dot_p = sum(float(np.sum(a * b)) for a, b in zip(_leaves(gp), _leaves(v)))
    assert abs(dot_p - fd_p) <= 1e-6 * (1 + abs(fd_p))
    fd_x = (_objective(arch, p, x + h * vx, ct) - _objective(arch, p, x - h * vx, ct)) / (2 * h)
    assert abs(float(np.sum(gx * vx)) - fd_x) <= 1e-6 * (1 + abs(fd_x))


def test_scalar_output_accepts_1d_cotangent():
    arch = _arch()
    x, _ = _data()
    p = F.init_params(arch, 3, seed=0)
    ct = np.arange(4.0)
    assert_close(F.input_grad(arch, p, x, ct), F.input_grad(arch, p, x, ct[:, None]), rtol=0)


# --------------------------------------------------------------------------------------------------
# against JAX autodiff of the stax network with the same parameter values
# --------------------------------------------------------------------------------------------------


@requires_nt
@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_against_jax_autodiff_of_stax_network(act, par):
    import jax
    import jax.numpy as jnp

    arch = _arch(act, par, depth=3, width=6)
    d, out_dim = 3, 2
    x, ct = _data(n=5, d=d, out_dim=out_dim)
    p = F.init_params(arch, d, out_dim=out_dim, seed=2)
    if par == "standard":  # a non-zero readout bias, which stax adds in this parameterization
        p[-1] = (p[-1][0], np.array([0.3, -0.2]))
    init_fn, apply_fn, _ = arch.to_stax(out_dim)
    _, ref_params = init_fn(jax.random.PRNGKey(0), (-1, d))
    sp = _to_stax_params(p)
    assert jax.tree_util.tree_structure(ref_params) == jax.tree_util.tree_structure(sp)
    assert [np.shape(a) for a in jax.tree_util.tree_leaves(ref_params)] == [
        np.shape(a) for a in jax.tree_util.tree_leaves(sp)
    ]

    def loss(params, xx):
        return jnp.sum(ct * apply_fn(params, xx))

    assert_close(F.apply(arch, p, x), np.asarray(apply_fn(sp, x)), rtol=1e-12, atol=1e-14)
    g_params, g_x = jax.grad(loss, argnums=(0, 1))(sp, x)
    assert_close(F.input_grad(arch, p, x, ct), np.asarray(g_x), rtol=1e-10, atol=1e-13)
    mine = _to_stax_params(F.param_grad(arch, p, x, ct))
    for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(g_params)):
        assert_close(a, np.asarray(b), rtol=1e-10, atol=1e-13)


@requires_nt
@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("act", ["relu", "erf"])
def test_empirical_ntk_matches_jax_jacobian(act, par):
    """K = J J^T with J the jax Jacobian of the stax network's scalar output w.r.t. all its parameters."""
    import jax

    arch = _arch(act, par, depth=2, width=6)
    x, _ = _data(n=5, d=3)
    y, _ = _data(n=3, d=3, seed=8)
    p = F.init_params(arch, 3, seed=4)
    _, apply_fn, _ = arch.to_stax()
    sp = _to_stax_params(p)

    def jac(z):
        j = jax.jacobian(lambda q: apply_fn(q, z)[:, 0])(sp)
        leaves = jax.tree_util.tree_leaves(j)
        return np.concatenate([np.asarray(a).reshape(z.shape[0], -1) for a in leaves], axis=1)

    assert_close(F.empirical_ntk(arch, p, x, y), jac(x) @ jac(y).T, rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------------------------------
# empirical NTK / NNGP
# --------------------------------------------------------------------------------------------------


def _jacobian(arch, params, x, output=0):
    """Explicit Jacobian (n, P) of f_output from one param_grad per sample (one-hot cotangents)."""
    out_dim = (params.theta1 if isinstance(params, F.AntisymmetricParams) else params)[-1][0].shape[1]
    rows = []
    for i in range(x.shape[0]):
        ct = np.zeros((x.shape[0], out_dim))
        ct[i, output] = 1.0
        rows.append(np.concatenate([a.ravel() for a in _leaves(F.param_grad(arch, params, x, ct))]))
    return np.array(rows)


@pytest.mark.parametrize("antisymmetric", [False, True])
@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("act", ["relu", "erf", "abs", Rbf(0.7)])
def test_empirical_ntk_equals_explicit_jacobian_gram(act, par, antisymmetric):
    arch = _arch(act, par, depth=3, width=4, b_std=0.0 if act == "relu" else 0.7)
    x, _ = _data(n=6, d=2)
    y, _ = _data(n=3, d=2, seed=9)
    p = F.init_params(arch, 2, out_dim=2, seed=3, antisymmetric=antisymmetric)
    if antisymmetric:
        p = F.AntisymmetricParams(p.theta1, F.init_params(arch, 2, out_dim=2, seed=4))
    for output in (0, 1):
        Jx, Jy = _jacobian(arch, p, x, output), _jacobian(arch, p, y, output)
        # the antisymmetric Jacobian carries the 1/sqrt(2) factors, so J J^T = (K1 + K2) / 2
        assert_close(F.empirical_ntk(arch, p, x, y, output=output), Jx @ Jy.T, rtol=1e-12, atol=1e-14)
        K = F.empirical_ntk(arch, p, x, output=output)
        assert_close(K, Jx @ Jx.T, rtol=1e-12, atol=1e-14)
        assert np.array_equal(K, K.T)


def test_empirical_ntk_blocks_agree_with_y_none():
    arch = _arch("relu", depth=3, width=16)
    x, _ = _data(n=5, d=3)
    y, _ = _data(n=4, d=3, seed=1)
    p = F.init_params(arch, 3, seed=0)
    full = F.empirical_ntk(arch, p, np.vstack([x, y]))
    assert_close(F.empirical_ntk(arch, p, x, y), full[:5, 5:], rtol=1e-12)
    assert_close(F.empirical_ntk(arch, p, y, x), full[5:, :5], rtol=1e-12)
    nfull = F.empirical_nngp(arch, p, np.vstack([x, y]))
    assert_close(F.empirical_nngp(arch, p, x, y), nfull[:5, 5:], rtol=1e-12)
    assert np.array_equal(nfull, nfull.T)


@pytest.mark.parametrize("antisymmetric", [False, True])
@pytest.mark.parametrize("par", PARAMS)
def test_gradient_step_moves_f_by_the_empirical_ntk(par, antisymmetric):
    """d/dh f(x; p - h * grad_p <ct, f(z)>) at h = 0 equals -K(x, z) @ ct (the NTK's defining identity)."""
    arch = _arch("erf", par, depth=2, width=8)
    x, _ = _data(n=4, d=3)
    z, ct = _data(n=5, d=3, out_dim=1, seed=2)
    p = F.init_params(arch, 3, seed=1, antisymmetric=antisymmetric)
    g = F.param_grad(arch, p, z, ct)
    h = 1e-5
    fd = (F.apply(arch, F.sgd_update(p, g, h), x) - F.apply(arch, F.sgd_update(p, g, -h), x)) / (2 * h)
    assert_close(fd, -F.empirical_ntk(arch, p, x, z) @ ct, rtol=1e-7, atol=1e-9)


def test_empirical_nngp_is_the_readout_feature_gram():
    arch = _arch("relu", "standard", depth=2, width=7, w_std=1.4)
    x, _ = _data(n=4, d=3)
    p = F.init_params(arch, 3, seed=0)
    h = np.maximum(0.0, np.maximum(0.0, x @ p[0][0] + p[0][1]) @ p[1][0] + p[1][1])
    assert_close(F.empirical_nngp(arch, p, x), 1.4**2 / 7 * h @ h.T, rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# antisymmetric networks
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_antisymmetric_init_is_exactly_zero(act, par):
    arch = _arch(act, par, depth=3, width=9)
    x, ct = _data(n=6, d=3, out_dim=2)
    p = F.init_params(arch, 3, out_dim=2, seed=0, antisymmetric=True)
    plain = F.init_params(arch, 3, out_dim=2, seed=0)
    assert np.all(F.apply(arch, p, x) == 0.0)
    assert np.all(F.input_grad(arch, p, x, ct) == 0.0)
    assert all(a is not b for a, b in zip(_leaves(p.theta1), _leaves(p.theta2)))
    # the kernel is the plain network's, bit for bit
    assert np.array_equal(F.empirical_ntk(arch, p, x), F.empirical_ntk(arch, plain, x))
    # one gradient step makes f non-zero (the two halves move in opposite directions)
    p1 = F.sgd_update(p, F.param_grad(arch, p, x, ct), 0.1)
    assert np.abs(F.apply(arch, p1, x)).max() > 0


def test_antisymmetric_halves_do_not_alias():
    arch = _arch()
    p = F.init_params(arch, 3, seed=0, antisymmetric=True)
    p.theta1[0][0][0, 0] += 1.0
    x, _ = _data()
    assert np.abs(F.apply(arch, p, x)).max() > 0


# --------------------------------------------------------------------------------------------------
# tree helpers
# --------------------------------------------------------------------------------------------------


def test_sgd_update_and_tree_map():
    arch = _arch()
    p = F.init_params(arch, 3, seed=0)
    g = F.init_params(arch, 3, seed=1)
    q = F.sgd_update(p, g, 0.5)
    for a, b, c in zip(_leaves(p), _leaves(g), _leaves(q)):
        assert_close(c, a - 0.5 * b, rtol=1e-15)
    assert np.array_equal(p[0][0], F.init_params(arch, 3, seed=0)[0][0])  # inputs untouched
    with pytest.raises(ValueError, match="both be antisymmetric"):
        F.sgd_update(p, F.init_params(arch, 3, seed=0, antisymmetric=True), 0.1)
    with pytest.raises(ValueError, match="lr must be"):
        F.sgd_update(p, g, float("nan"))
    with pytest.raises(ValueError, match="layers"):
        F.tree_map(np.add, p, p[:-1])


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def test_validation_errors():
    arch = _arch(depth=2, width=5)
    p = F.init_params(arch, 3, out_dim=2, seed=0)
    x, ct = _data()
    with pytest.raises(ValueError, match="arch must be an ntkgan.Mlp"):
        F.apply("relu", p, x)
    # every registered activation has a numpy form (gelu and sin included), so finite networks take them
    assert np.isfinite(F.apply(Mlp(activation=Gelu(), width=4), F.init_params(Mlp(activation=Gelu(), width=4), 3,
                                                                               seed=0), x)).all()
    with pytest.raises(ValueError, match=r"depth \+ 1 = 3 \(W, b\) pairs, got length 2"):
        F.apply(arch, p[:2], x)
    with pytest.raises(ValueError, match="5 columns but arch.width is 4"):
        F.apply(_arch(depth=2, width=4), p, x)
    with pytest.raises(ValueError, match=r"params\[1\]\[0\] has 4 rows"):
        F.apply(arch, [p[0], (p[1][0][:4], p[1][1]), p[2]], x)
    with pytest.raises(ValueError, match=r"params\[0\]\[1\] has length 4"):
        F.apply(arch, [(p[0][0], p[0][1][:4])] + p[1:], x)
    with pytest.raises(ValueError, match=r"params\[0\] must be a \(W, b\) pair"):
        F.apply(arch, [p[0][0]] + p[1:], x)
    with pytest.raises(ValueError, match="x has 2 features but the network takes 3"):
        F.apply(arch, p, x[:, :2])
    with pytest.raises(ValueError, match="y has 2 features"):
        F.empirical_ntk(arch, p, x, x[:, :2])
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="x contains NaN at row 2"):
        F.apply(arch, p, bad)
    with pytest.raises(ValueError, match="x must be 2-D"):
        F.apply(arch, p, x[0])
    with pytest.raises(ValueError, match=r"cotangent must have shape \(n, out_dim\) = \(4, 2\)"):
        F.param_grad(arch, p, x, ct[:, :1])
    with pytest.raises(ValueError, match="cotangent contains inf"):
        F.input_grad(arch, p, x, np.full_like(ct, np.inf))
    with pytest.raises(ValueError, match=r"output must be an integer in \[0, 2\), got 2"):
        F.empirical_ntk(arch, p, x, output=2)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        F.init_params(arch, 3, seed=-1)
    with pytest.raises(ValueError, match="not both"):
        F.init_params(arch, 3, seed=1, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="d_in must be an integer >= 1"):
        F.init_params(arch, 0, seed=1)
    with pytest.raises(ValueError, match="out_dim must be an integer >= 1"):
        F.init_params(arch, 3, out_dim=1.5, seed=1)
    with pytest.raises(ValueError, match="antisymmetric network's output is 0"):
        F.empirical_nngp(arch, F.init_params(arch, 3, seed=0, antisymmetric=True), x)
    mixed = F.AntisymmetricParams(p, F.init_params(arch, 3, out_dim=1, seed=0))
    with pytest.raises(ValueError, match="same shapes"):
        F.apply(arch, mixed, x)


def test_empty_batch():
    arch = _arch()
    p = F.init_params(arch, 3, seed=0)
    x = np.zeros((0, 3))
    assert F.apply(arch, p, x).shape == (0, 1)
    assert F.input_grad(arch, p, x, np.zeros((0, 1))).shape == (0, 3)
    assert F.empirical_ntk(arch, p, x).shape == (0, 0)
