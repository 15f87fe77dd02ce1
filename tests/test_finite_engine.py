"""The Rust engine of finite discriminators (python/ntkgan/discriminator/_finite_engine.py, rust/src/mlp/).

The reference is the numpy trainer (``engine="numpy"``, the passes of ``ntkgan.finite``): the two must agree
within 1e-12 over 20 gradient steps for every activation with a Rust implementation, both
parameterizations, both initial functions, with and without the gradient penalty, for built-in and custom
losses.  Then: the same bits for any thread count, float32 close to float64, the flows' ``d_dtype``, and
clear errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from ntkgan import Mlp, _core
from ntkgan import finite as F
from ntkgan.discriminator import Loss
from ntkgan.discriminator._finite import FiniteDiscriminator, train_finite
from ntkgan.discriminator._finite_engine import finite_spec, pick_engine
from ntkgan.presets import make_config
from ntkgan.threads import get_num_threads, set_num_threads

ACTIVATIONS = ["relu", ("leaky_relu", 0.2), "abs", "identity", ("abrelu", -0.3, 1.7), "erf", "sigmoid",
               {"name": "rbf", "gamma": 0.5}, "gelu", ("sin", 1.3, 0.7, 0.2)]


def _leaves(params) -> list[np.ndarray]:
    halves = params if isinstance(params, F.AntisymmetricParams) else (params,)
    return [a for half in halves for layer in half for a in layer]


def _samples(n_fake=150, n_real=131, d=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_fake, d)), rng.normal(size=(n_real, d)) * 0.8 + 0.6


def _pair(arch, d, loss, f0, seed=1, **kw):
    a = FiniteDiscriminator.init(arch, d, loss=loss, f0=f0, seed=seed, engine="numpy")
    b = FiniteDiscriminator.init(arch, d, loss=loss, f0=f0, seed=seed, engine="rust", **kw)
    return a, b


def _assert_same_network(a, b, x, rtol):
    """Parameters within ``rtol`` of their largest entry; values and input gradients within ``rtol`` of the
    scale of one half's (the antisymmetric f is a difference of two such numbers)."""
    pa, pb = np.concatenate([v.ravel() for v in _leaves(a.params)]), np.concatenate(
        [v.ravel() for v in _leaves(b.params)])
    scale = np.abs(pa).max()
    assert np.isfinite(pb).all()
    assert np.abs(pa - pb).max() <= rtol * scale, np.abs(pa - pb).max() / scale
    half = a.params.theta1 if a.antisymmetric else a.params
    f_half, pullback = F.vjp(a.arch, half, x)
    g_half = pullback(np.ones(x.shape[0]))[1]
    fa, ga = a.value_and_grad(x)
    fb, gb = b.value_and_grad(x)
    f_scale = max(np.abs(fa).max(), np.abs(f_half).max())
    g_scale = max(np.abs(ga).max(), np.abs(g_half).max())
    assert np.abs(fa - fb).max() <= rtol * f_scale, np.abs(fa - fb).max() / f_scale
    assert np.abs(ga - gb).max() <= rtol * g_scale, np.abs(ga - gb).max() / g_scale


@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("par", ["ntk", "standard"])
@pytest.mark.parametrize("penalty", [0.0, 0.3])
def test_rust_engine_equals_numpy_trainer_over_20_steps(act, par, penalty):
    fake, real = _samples()
    arch = Mlp(depth=3, activation=act, width=32, b_std=0.5, parameterization=par)
    lr = 0.05 if par == "ntk" else 0.005  # the standard NTK grows with the width: a stable step is smaller
    for f0, loss in (("zero", "vanilla"), ("random", "lsgan")):
        a, b = _pair(arch, 2, loss, f0)
        assert (a.engine, b.engine) == ("numpy", "rust")
        before = a.loss_value(fake, real)
        a.step(fake, real, n_steps=20, lr=lr, grad_penalty=penalty)
        b.step(fake, real, n_steps=20, lr=lr, grad_penalty=penalty)
        assert a.loss_value(fake, real) < before  # a stable run (rounding differences are not amplified)
        assert (a.steps, b.steps) == (20, 20)
        _assert_same_network(a, b, np.vstack([fake, real]), 1e-12)


@pytest.mark.parametrize("loss", ["ipm", "hinge"])
def test_rust_engine_equals_numpy_for_other_losses_and_depths(loss):
    fake, real = _samples(40, 77, d=3)
    for depth in (1, 2, 4):
        arch = Mlp(depth=depth, activation="relu", width=65, b_std=1.0)
        a, b = _pair(arch, 3, loss, "zero")
        a.step(fake, real, n_steps=20, lr=0.1)
        b.step(fake, real, n_steps=20, lr=0.1)
        _assert_same_network(a, b, fake, 1e-12)


def test_any_loss_works_because_the_cotangent_is_formed_in_python():
    softer = Loss.from_derivatives(lambda f: np.tanh(f + 1.0), lambda f: np.tanh(f - 1.0))
    fake, real = _samples(60, 60)
    a, b = _pair(Mlp(depth=2, activation="erf", width=24), 2, softer, "random")
    a.step(fake, real, n_steps=20, lr=0.2, grad_penalty=0.1)
    b.step(fake, real, n_steps=20, lr=0.2, grad_penalty=0.1)
    _assert_same_network(a, b, fake, 1e-12)


def test_the_step_is_the_numpy_gradient_step():
    """One Rust step equals ``sgd_update(params, param_grad)`` computed by numpy backprop (penalty on)."""
    fake, real = _samples(30, 45)
    disc = FiniteDiscriminator.init(Mlp(depth=3, activation="gelu", width=20), 2, loss="vanilla", seed=3)
    for _ in range(3):
        expected = F.sgd_update(disc.params, disc.param_grad(fake, real, grad_penalty=0.5), 0.2)
        disc.step(fake, real, lr=0.2, grad_penalty=0.5)
        for u, v in zip(_leaves(disc.params), _leaves(expected)):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("penalty", [0.0, 0.2])
def test_same_bits_for_any_thread_count(dtype, penalty):
    """Rows and weight blocks are fixed partitions (333 rows: not a multiple of the 64-row chunk; width 96:
    not a multiple of the 64-row weight block), so 1 and 3 threads give the same bits."""
    fake, real = _samples(200, 133, d=3)
    arch = Mlp(depth=3, activation="erf", width=96, b_std=0.3)
    out = []
    threads_before = get_num_threads()
    for threads in (1, 3):
        set_num_threads(threads)
        try:
            disc = FiniteDiscriminator.init(arch, 3, loss="vanilla", seed=2, dtype=dtype)
            disc.step(fake, real, n_steps=5, lr=0.1, grad_penalty=penalty)
            out.append((_leaves(disc.params), disc.value_and_grad(fake)))
        finally:
            set_num_threads(threads_before)
    (p1, (f1, g1)), (p3, (f3, g3)) = out
    assert all(np.array_equal(u, v) for u, v in zip(p1, p3))
    assert np.array_equal(f1, f3) and np.array_equal(g1, g3)


def test_float32_tracks_float64():
    """The same initial draws rounded to float32, trained 50 steps: within float32 rounding of float64."""
    fake, real = _samples()
    arch = Mlp(depth=3, activation="relu", width=64)
    d64 = FiniteDiscriminator.init(arch, 2, loss="lsgan", f0="random", seed=4)
    d32 = FiniteDiscriminator.init(arch, 2, loss="lsgan", f0="random", seed=4, dtype="float32")
    assert d32.dtype == "float32" and all(a.dtype == np.float32 for a in _leaves(d32.params))
    for d in (d64, d32):
        d.step(fake, real, n_steps=50, lr=0.1)
    f64, g64 = d64.value_and_grad(fake)
    f32, g32 = d32.value_and_grad(fake)
    assert f32.dtype == np.float64  # evaluation returns float64 arrays
    assert np.abs(f32 - f64).max() <= 1e-4 * np.abs(f64).max()
    assert np.abs(g32 - g64).max() <= 1e-4 * np.abs(g64).max()
    assert np.abs(f32 - f64).max() > 0  # really float32


def test_params_are_views_updated_in_place_and_assignable():
    fake, real = _samples(20, 20)
    disc = FiniteDiscriminator.init(Mlp(depth=2, width=8), 2, loss="ipm", seed=0)
    W = disc.params.theta1[1][0]
    before = W.copy()
    disc.step(fake, real, n_steps=1)
    assert not np.array_equal(W, before)  # the view sees the update
    fresh = F.init_params(Mlp(depth=2, width=8), 2, seed=9, antisymmetric=True)
    disc.params = fresh
    assert np.array_equal(disc(fake), np.zeros(20))  # theta2 == theta1 again
    with pytest.raises(ValueError, match="structure and shapes"):
        disc.params = F.init_params(Mlp(depth=2, width=8), 2, seed=9)  # plain, not antisymmetric


def test_reset_networks_share_one_work_space_and_stay_independent():
    fake, real = _samples(50, 50)
    arch = Mlp(depth=2, width=16)
    first = FiniteDiscriminator.init(arch, 2, loss="lsgan", f0="random", seed=0).step(fake, real, 3)
    second = FiniteDiscriminator.init(arch, 2, loss="lsgan", f0="random", seed=1, workspace_of=first)
    assert second._engine.core is first._engine.core
    kept = first(fake)
    second.step(fake, real, 3)
    assert np.array_equal(first(fake), kept)
    alone = FiniteDiscriminator.init(arch, 2, loss="lsgan", f0="random", seed=1).step(fake, real, 3)
    assert np.array_equal(second(fake), alone(fake))


def test_engine_choice_and_errors():
    class Cube(type(Mlp().activation)):  # a user's ABRelu subclass: numpy only
        def numpy_fn(self, x):
            return x**3

    relu, custom = Mlp(width=8), Mlp(width=8, activation=Cube())
    assert finite_spec(relu.activation) == ("abrelu", (0.0, 1.0)) and finite_spec(custom.activation) is None
    assert pick_engine(relu, "auto", "float64") == "rust"
    assert pick_engine(custom, "auto", "float64") == "numpy"
    with pytest.raises(ValueError, match="no Rust implementation"):
        pick_engine(custom, "rust", "float64")
    with pytest.raises(ValueError, match="needs the Rust engine"):
        pick_engine(custom, "auto", "float32")
    with pytest.raises(ValueError, match="engine must be one of"):
        FiniteDiscriminator.init(relu, 2, loss="ipm", engine="torch")
    with pytest.raises(ValueError, match="dtype must be one of"):
        FiniteDiscriminator.init(relu, 2, loss="ipm", dtype="float16")
    with pytest.raises(ValueError, match="d_dtype applies to a finite-width"):
        make_config("inf_ipm", d_dtype="float32")
    with pytest.raises(ValueError, match="d_dtype must be one of"):
        make_config("ipm", d_dtype="half")


def test_core_checks_shapes_and_order():
    disc = FiniteDiscriminator.init(Mlp(depth=2, width=8), 2, loss="ipm", seed=0)
    core, flats = disc._engine.core, disc._engine.flats
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="forward pass on the same 5 points first"):
        core.backward_update(flats, x, np.zeros(5), 0.1, 0.0)
    with pytest.raises(ValueError, match="parameter buffers"):
        core.forward(flats[:1], x)
    with pytest.raises(ValueError, match="x has 15 values"):
        core.forward(flats, np.zeros((5, 3)))
    core.forward(flats, x)
    core.backward_update(flats, x, np.zeros(5), 0.1, 0.0)
    with pytest.raises(ValueError, match="forward pass"):  # activations are stale after an update
        core.backward_update(flats, x, np.zeros(5), 0.1, 0.0)
    with pytest.raises(ValueError, match="dims"):
        _core.FiniteNet64("abrelu", [0.0, 1.0], [2, 8, 3], [(1.0, 1.0), (1.0, 0.0)], [1.0])
    with pytest.raises(ValueError, match="finite-network implementation"):
        _core.FiniteNet64("tanh", [], [2, 8, 1], [(1.0, 1.0), (1.0, 0.0)], [1.0])


def test_divergent_training_raises():
    fake, real = _samples(20, 20)
    disc = FiniteDiscriminator.init(Mlp(depth=3, width=16), 2, loss="lsgan", f0="random", seed=0)
    with pytest.raises(FloatingPointError, match="not finite"):
        disc.step(fake, real, n_steps=200, lr=1e6)


def test_train_finite_float32_and_flow_d_dtype():
    fake, real = _samples(30, 30)
    d = train_finite(fake, real, loss="ipm", arch=Mlp(), t=0.5, width=16, lr=0.1, dtype="float32")
    assert d.dtype == "float32" and d.steps == 5
    from ntkgan.flows import make_flow

    cfg = make_config("ipm_reset", n_source=24, n_target=24, d_width=16, eta=50.0, d_dtype="float32")
    flow = make_flow(cfg)
    flow.step()
    assert flow.discriminator.dtype == "float32" and np.isfinite(flow.particles).all()


def test_gemm_rate_is_a_positive_rate():
    assert _core.gemm_rate(64, 32, 16, "float64", 0.0) > 0
    assert _core.gemm_rate(64, 32, 16, "float32", 0.0) > 0
    with pytest.raises(ValueError, match="dtype"):
        _core.gemm_rate(4, 4, 4, "float16", 0.0)


@pytest.mark.parametrize("loss", ["ipm", "lsgan", "vanilla", "hinge"])
@pytest.mark.parametrize("penalty", [0.0, 0.2])
def test_fused_rust_loop_equals_two_call_steps(loss, penalty):
    """A built-in loss runs the whole loop in Rust (cotangents formed there); a copy of the same loss is not
    built in, so it takes the forward / Python cotangent / backward_update path: the same numbers to
    rounding (exp in Rust vs numpy)."""
    import dataclasses

    from ntkgan.discriminator import LOSSES

    fake, real = _samples(70, 90)
    arch = Mlp(depth=3, activation="erf", width=40, b_std=0.5)
    twin = dataclasses.replace(LOSSES[loss])
    assert twin is not LOSSES[loss]
    a = FiniteDiscriminator.init(arch, 2, loss=loss, seed=6).step(fake, real, 20, 0.1, grad_penalty=penalty)
    b = FiniteDiscriminator.init(arch, 2, loss=twin, seed=6).step(fake, real, 20, 0.1, grad_penalty=penalty)
    _assert_same_network(a, b, fake, 1e-13)


@pytest.mark.parametrize(("loss", "eta", "max_sinkhorn_rel", "max_move"),
                         [("lsgan", None, 1e-3, 3e-2), ("ipm_reset", 60.0, 1e-5, 1e-5)])
def test_float32_flow_ends_near_the_float64_flow(loss, eta, max_sinkhorn_rel, max_move):
    """100 generator steps (64 vs 64 points, width 32) in float32 and float64 from the same seed.  Measured:
    lsgan (a persistent network, f0 random) Sinkhorn 1e-5 relative apart, particles 0.3 % of the cloud's
    spread; ipm_reset (a network re-drawn each step) 9e-8 and 1.4e-7.  The paper-size 2 000-step figures
    are in docs/paper_scale.md."""
    from ntkgan.flows import make_flow
    from ntkgan.metrics import sinkhorn_divergence

    out = {}
    for dtype in ("float64", "float32"):
        kw = {"n_source": 64, "n_target": 64, "d_width": 32, "d_dtype": dtype}
        if eta is not None:
            kw["eta"] = eta
        flow = make_flow(make_config(loss, **kw))
        start = sinkhorn_divergence(flow.particles, flow.target)
        flow.run(100)
        out[dtype] = (flow.particles.copy(), sinkhorn_divergence(flow.particles, flow.target))
    (x64, s64), (x32, s32) = out["float64"], out["float32"]
    assert s64 < 0.7 * start  # the flow moved toward the target
    spread = np.abs(x64 - x64.mean(axis=0)).max()
    assert abs(s32 - s64) <= max_sinkhorn_rel * s64
    assert 0 < np.abs(x32 - x64).max() <= max_move * spread
