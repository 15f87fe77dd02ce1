"""Flows: free, kernel-coupled and generator dynamics; checkpoints; the IPM = MMD-flow identity."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, central_difference
from hypothesis import given
from hypothesis import strategies as st

import ntkgan
from ntkgan.datasets import Dataset
from ntkgan.flows import (
    GeneratorFlow,
    ParticleFlow,
    generator_ntk,
    latent_codes,
    load_dataset,
    make_flow,
    two_number_coefficients,
    two_number_fit,
    two_number_step,
)
from ntkgan.metrics import mmd2, sinkhorn_divergence
from ntkgan.presets import make_config

SMALL = {"n_source": 24, "n_target": 24}


def _run(cfg, n, dataset=None):
    flow = make_flow(cfg, dataset if dataset is not None else load_dataset(cfg))
    losses = flow.run(n)
    return flow, np.array(losses)


# --------------------------------------------------------------------------------------------------
# couplings
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("g1", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("form", ["offdiag", "plus_ones"])
def test_two_number_g2_zero_is_free_bit_for_bit(g1, form):
    """g2 = 0: x_i <- x_i - (eta g1 / N) grad c, the free flow with eta_free = eta g1 (exact: g1 = 2^k)."""
    eta = 300.0
    free, lf = _run(make_config(**SMALL, eta=eta * g1), 6)
    coupled, lc = _run(make_config(**SMALL, eta=eta, coupling="kernel", theta="two_number", g1=g1, g2=0.0,
                                   two_number_form=form), 6)
    assert np.array_equal(free.particles, coupled.particles)
    assert np.array_equal(lf, lc)
    ident, li = _run(make_config(**SMALL, eta=eta * g1, coupling="kernel", theta="identity"), 6)
    assert np.array_equal(free.particles, ident.particles)


def test_two_number_g2_zero_general_g1_matches_free_to_rounding():
    free, _ = _run(make_config(**SMALL, eta=300.0 * 0.7), 4)
    cfg = make_config(**SMALL, eta=300.0, coupling="kernel", theta="two_number", g1=0.7, g2=0.0)
    coupled, _ = _run(cfg, 4)
    assert_close(coupled.particles, free.particles, rtol=1e-10, atol=1e-12)


def test_two_number_g2_equal_g1_moves_rigidly():
    cfg = make_config(**SMALL, eta=2.0, coupling="kernel", theta="two_number", g1=1.5, g2=1.5)
    flow = make_flow(cfg)
    x0 = flow.particles.copy()
    flow.run(5)
    x = flow.particles
    shift = x - x0
    assert np.linalg.norm(shift.mean(axis=0)) > 1e-2  # the cloud moved ...
    rel0 = x0[:, None, :] - x0[None, :, :]
    rel = x[:, None, :] - x[None, :, :]
    assert_close(rel, rel0, rtol=0, atol=1e-13)  # ... rigidly: every x_i - x_j conserved
    assert np.ptp(shift, axis=0).max() < 1e-13


@pytest.mark.parametrize("form", ["offdiag", "plus_ones"])
def test_two_number_step_equals_dense_matrix(form):
    """The O(Nd) update equals (eta/N) Theta F with the dense N x N Theta built from (g1, g2)."""
    n, eta, g1, g2 = SMALL["n_source"], 3.0, 1.3, 0.4
    # with eta = N and Theta = I one step displaces each particle by exactly F_i = grad c(f(x_i))
    probe = make_flow(make_config(**SMALL, eta=float(n)))
    x0 = probe.particles.copy()
    probe.step()
    forces = x0 - probe.particles
    coupled = make_flow(make_config(**SMALL, eta=eta, coupling="kernel", theta="two_number", g1=g1, g2=g2,
                                    two_number_form=form))
    coupled.step()
    ones = np.ones((n, n))
    theta = (g1 - g2) * np.eye(n) + g2 * ones if form == "offdiag" else g1 * np.eye(n) + g2 * ones
    assert_close(x0 - coupled.particles, (eta / n) * theta @ forces, rtol=1e-9, atol=1e-12)


@given(n=st.integers(1, 7), d=st.integers(1, 3), g1=st.floats(-3, 3), g2=st.floats(-3, 3),
       eta=st.floats(0.0, 100.0), form=st.sampled_from(["offdiag", "plus_ones"]), seed=st.integers(0, 99))
def test_two_number_step_property(n, d, g1, g2, eta, form, seed):
    forces = np.random.default_rng(seed).normal(size=(n, d))
    a, b = two_number_coefficients(eta, n, g1, g2, form)
    diag = g1 if form == "offdiag" else g1 + g2
    theta = np.full((n, n), g2) + (diag - g2) * np.eye(n)
    assert_close(two_number_step(forces, a, b), (eta / n) * theta @ forces, rtol=1e-9, atol=1e-9)


def test_generator_ntk_reduces_to_two_numbers_for_wide_relu_high_dim_latents():
    """z on the sphere of radius sqrt(d_z): Theta_ij ~ Theta(u=0) off the diagonal, spread O(d_z^-1/2)."""
    arch = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0)
    rng = np.random.default_rng(0)
    spreads = {}
    for dz in (3, 1000):
        z = latent_codes(40, dz, "sphere", rng=rng)
        assert_close(np.linalg.norm(z, axis=1), np.full(40, np.sqrt(dz)), rtol=1e-12)
        theta = generator_ntk(z, arch)
        g1, g2, spread = two_number_fit(theta)
        spreads[dz] = spread / g2
        # reference values: Theta at overlap u = 1 (diagonal) and u = 0 (orthogonal codes)
        e = np.sqrt(dz) * np.eye(dz)[:2]
        ref = ntkgan.kernel(e, arch=arch)
        assert_close(g1, ref[0, 0], rtol=1e-10)
        if dz == 1000:
            assert_close(g2, ref[0, 1], rtol=5e-3)
            assert spread < 0.02 * g2 and spread < 0.05 * (g1 - g2)
    assert spreads[3] > 10 * spreads[1000]


def test_ntk_coupling_close_to_its_two_number_fit():
    common = dict(SMALL, eta=1.0, coupling="kernel", gen_latent="sphere", gen_latent_dim=1000)
    ntk = make_flow(make_config(**common, theta="ntk"))
    g1, g2, _ = two_number_fit(ntk.theta)
    two = make_flow(make_config(**common, theta="two_number", g1=g1, g2=g2))
    x0 = ntk.particles.copy()
    ntk.step()
    two.step()
    d_ntk, d_two = x0 - ntk.particles, x0 - two.particles
    assert np.linalg.norm(d_ntk - d_two) < 0.05 * np.linalg.norm(d_two)


# --------------------------------------------------------------------------------------------------
# the paper's particle flow
# --------------------------------------------------------------------------------------------------


def test_sinkhorn_decreases_inf_ipm_relu_eight_gaussians():
    cfg = make_config("inf_ipm", "relu", "eight_gaussians", n_source=100, n_target=100)
    ds = load_dataset(cfg)
    s0 = sinkhorn_divergence(ds.source, ds.target)
    flow, losses = _run(cfg, 30, ds)
    s1 = sinkhorn_divergence(flow.particles, ds.target)
    assert s1 < 0.1 * s0, (s0, s1)
    assert np.isfinite(losses).all() and flow.step_count == 30


def _gaussian_mmd2(x, y, gamma):
    d = x.shape[1]

    def k(a, b):
        return np.exp(-gamma * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / d)

    return k(x, x).mean() - 2 * k(x, y).mean() + k(y, y).mean()


def test_inf_ipm_force_is_half_t_grad_mmd2_gaussian():
    """One step: x_i -> x_i - eta (t/2) grad_{x_i} MMD^2_k (MMD gradient flow), k = exp(-|x-y|^2/4)."""
    rng = np.random.default_rng(3)
    ds = Dataset(name="toy", source=rng.normal(size=(12, 2)), target=rng.normal(1.0, 1.0, size=(10, 2)))
    eta, t = 3.0, 0.7
    flow = make_flow(make_config("inf_ipm", "rbf", eta=eta, t=t), ds)
    flow.step()
    ref = -eta * (t / 2) * central_difference(lambda x: _gaussian_mmd2(x, ds.target, 0.5), ds.source)
    assert_close(flow.particles - ds.source, ref, rtol=1e-6, atol=1e-10)


def test_inf_ipm_force_is_half_t_grad_mmd2_sigmoid_ntk():
    rng = np.random.default_rng(4)
    ds = Dataset(name="toy", source=rng.normal(size=(8, 2)), target=rng.normal(1.0, 1.0, size=(9, 2)))
    eta, t = 2.0, 1.3
    cfg = make_config("inf_ipm", "sigmoid", eta=eta, t=t)
    flow = make_flow(cfg, ds)
    flow.step()
    arch = cfg.discriminator_arch()
    ref = -eta * (t / 2) * central_difference(lambda x: mmd2(x, ds.target, arch), ds.source)
    assert_close(flow.particles - ds.source, ref, rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# generator network, finite discriminators
# --------------------------------------------------------------------------------------------------


def test_generator_flow_decreases_loss_and_mmd():
    cfg = make_config("inf_ipm", "relu", n_source=64, n_target=64, coupling="generator", gen_width=64,
                      gen_latent_dim=8, gen_lr=1.0)
    ds = load_dataset(cfg)
    flow = make_flow(cfg, ds)
    assert isinstance(flow, GeneratorFlow)
    arch = cfg.discriminator_arch()
    m0, s0 = mmd2(flow.particles, ds.target, arch), sinkhorn_divergence(flow.particles, ds.target)
    losses = flow.run(30)
    assert losses[-1] < 0.5 * losses[0]
    assert mmd2(flow.particles, ds.target, arch) < 0.9 * m0
    assert sinkhorn_divergence(flow.particles, ds.target) < 0.9 * s0


def test_generator_gradient_is_the_loss_gradient():
    """The SGD step is -lr * grad_theta mean_z c(f(g(z))): loss change = lr |grad|^2 to first order.

    A smooth (sigmoid) discriminator: the ReLU NTK has a cusp at its training points, where the fakes sit.
    """
    cfg = make_config("inf_ipm", "sigmoid", n_source=16, n_target=16, coupling="generator", gen_width=16,
                      gen_latent_dim=3, gen_depth=1, gen_lr=1e-6)
    flow = make_flow(cfg)
    x0 = flow.particles.copy()
    flow.step()
    disc = flow.discriminator  # trained on x0; moving the generator does not retrain it
    grads = ntkgan.finite.param_grad(flow.arch, flow.params, flow.latent,
                                     disc.cost_grad(x0) / x0.shape[0])
    sq = sum(float((gW**2).sum() + (gb**2).sum()) for gW, gb in grads)
    # loss decrease to first order: lr * |grad|^2
    decrease = disc.cost(x0).mean() - disc.cost(flow.particles).mean()
    assert_close(decrease, cfg.gen_lr * sq, rtol=1e-3)


def test_generator_adam_fresh_z_runs():
    cfg = make_config("inf_ipm", "relu", **SMALL, coupling="generator", gen_width=16, gen_latent_dim=4,
                      gen_optimizer="adam", gen_lr=0.01, gen_fresh_z=True, gen_batch=10)
    flow, losses = _run(cfg, 5)
    assert flow.particles.shape == (24, 2) and np.isfinite(losses).all()


@pytest.mark.parametrize("loss", ["ipm", "ipm_reset", "lsgan"])
def test_finite_discriminators_run(loss):
    eta = min(make_config(loss).eta, 50.0)  # N = 24 particles, not 500
    cfg = make_config(loss, "relu", **SMALL, d_width=16, eta=eta)
    flow = make_flow(cfg)
    x0 = flow.particles.copy()
    discs = []
    for _ in range(3):
        flow.step()
        discs.append(flow.discriminator)
    assert np.isfinite(flow.particles).all() and not np.array_equal(flow.particles, x0)
    assert all(d.width == 16 for d in discs)
    if loss == "ipm_reset":
        assert len({id(d) for d in discs}) == 3 and all(d.steps == 10 for d in discs)
    else:
        assert discs[0] is discs[2] and discs[2].steps == 30  # persistent: 10 steps per generator step
    assert discs[0].antisymmetric == (cfg.d_f0 == "zero")


def test_target_batch_and_other_infinite_losses_run():
    for loss in ("inf_lsgan", "inf_vanilla"):
        flow, losses = _run(make_config(loss, "relu", n_source=12, n_target=12, eta=10.0, target_batch=6), 2)
        assert np.isfinite(losses).all() and np.isfinite(flow.particles).all()


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------


RESUME_CASES = {
    "inf_ipm_free": dict(loss="inf_ipm"),
    "ipm_persistent": dict(loss="ipm", d_width=16),
    "ipm_reset": dict(loss="ipm_reset", d_width=16, eta=50.0),
    "lsgan_random_f0": dict(loss="lsgan", d_width=16),
    "kernel_ntk": dict(loss="inf_ipm", eta=1.0, coupling="kernel", theta="ntk", gen_latent_dim=5),
    "kernel_two_number_batch": dict(loss="inf_ipm", eta=5.0, coupling="kernel", theta="two_number", g2=0.1,
                                    target_batch=10),
    "generator_adam_fresh": dict(loss="inf_ipm", coupling="generator", gen_width=16, gen_latent_dim=3,
                                 gen_optimizer="adam", gen_lr=0.01, gen_fresh_z=True, gen_batch=12),
    "generator_sgd_random_f0": dict(loss="inf_ipm", coupling="generator", gen_width=16, gen_latent_dim=3,
                                    d_f0="random"),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_state_dict_resume_is_bit_identical(case, tmp_path):
    opts = dict(RESUME_CASES[case])
    cfg = make_config(opts.pop("loss"), "relu", **SMALL, **opts)
    ds = load_dataset(cfg)
    straight = make_flow(cfg, ds)
    l_straight = straight.run(10)

    first = make_flow(cfg, ds)
    l_first = first.run(5)
    np.savez(tmp_path / "ckpt.npz", **first.state_dict())
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        state = dict(f)
    resumed = make_flow(cfg, ds, rng=np.random.default_rng(12345))  # the state must override every draw
    resumed.load_state_dict(state)
    assert resumed.step_count == 5
    l_resumed = resumed.run(5)
    assert np.array_equal(resumed.particles, straight.particles)
    assert l_first + l_resumed == l_straight
    if isinstance(straight, GeneratorFlow):
        for (W1, b1), (W2, b2) in zip(straight.params, resumed.params):
            assert np.array_equal(W1, W2) and np.array_equal(b1, b2)


def test_load_state_dict_rejects_other_flows():
    particles = make_flow(make_config(**SMALL))
    gen = make_flow(make_config(**SMALL, coupling="generator", gen_width=8))
    with pytest.raises(ValueError, match="state is of a 'generator' flow"):
        particles.load_state_dict(gen.state_dict())
    particles.step()
    before = particles.state_dict()
    state = dict(before)
    state["particles"] = state["particles"][:3]
    with pytest.raises(ValueError, match="particles"):
        particles.load_state_dict(state)
    with pytest.raises(ValueError, match="flow.rng"):
        particles.load_state_dict({"flow.kind": np.array("particles"), "flow.step": np.array(0)})


def test_failed_load_leaves_the_flow_unchanged():
    flow = make_flow(make_config("ipm", **SMALL, d_width=8, eta=10.0))
    flow.step()
    before = flow.state_dict()
    state = dict(before, **{"flow.step": np.array(0), "particles": before["particles"] + 1.0})
    del state["disc.1.0.W"]  # fails after the particles were read
    with pytest.raises(ValueError, match="disc.1.0.W"):
        flow.load_state_dict(state)
    after = flow.state_dict()
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in after)


def test_make_flow_validates():
    with pytest.raises(ValueError, match="config must be"):
        make_flow({"loss": "inf_ipm"})
    with pytest.raises(ValueError, match="rng must be"):
        make_flow(make_config(**SMALL), rng=3)
    assert isinstance(make_flow(make_config(**SMALL)), ParticleFlow)


def test_diverging_flow_raises():
    flow = make_flow(make_config(**SMALL, eta=1e308))
    with pytest.raises(FloatingPointError, match="diverged"):
        flow.run(3)
