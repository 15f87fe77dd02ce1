"""Tests of the JAX path, ``python/ntkgan/jax_path/`` (whole flow steps compiled with JAX).

Run on the pinned set (jax 0.4.30, in ``.venv``) and on the current JAX release (``.venv-jaxnew``,
``make test-jax-current``).  References: the Rust path (the host flows with ``backend="rust"``) from the
same dataset and seed, the host Lanczos solver and the host ``"jax"`` backend.

- Agreement (issue 14, item 3): after 10 steps of the paper's presets (eight_gaussians, 500 vs 500,
  relu), particles within 1e-9 of the Rust path's, relative to their spread, for inf_ipm, inf_lsgan,
  ipm_reset and lsgan (float64); after 300 steps the Sinkhorn divergences within 1e-3 relative (the flows
  amplify rounding differences: docs/jax_path.md; marked slow: ``make test-jax-current`` leaves them to
  the pinned set's run).
- The other compiled configurations against the Rust path over a few small steps: vanilla's Lambert-W
  and exact (Taylor-series) flows,
  persistent ipm with the gradient penalty, float32 networks, target batches, the two-number and
  generator-NTK couplings, generator networks with SGD and Adam and fresh latent codes.
- The run directory: a JAX-path run resumes a Rust run's checkpoint (and the reverse) and ends where an
  uninterrupted Rust run ends, to rounding; the same files.
- Errors at the same step with the same message as the host flow; configurations that are not compiled
  run the host loop and say why.

Every configuration compiles once per process (a few seconds), hence the small sizes where the issue does
not fix them.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, requires_jax
from ntkgan.flows import load_dataset, make_flow
from ntkgan.presets import make_config

pytestmark = [requires_jax, pytest.mark.jax]

#: Relative to the particles' spread (issue 14, item 3).
AGREE_10 = 1e-9

SMALL = {"n_source": 48, "n_target": 40}


def _pair(loss, **kw):
    """Rust and JAX flows of the same configuration from the same dataset."""
    rust = make_config(loss, backend="rust", **kw)
    jx = make_config(loss, backend="jax", **kw)
    ds = load_dataset(rust)
    return make_flow(rust, ds), make_flow(jx, ds)


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / b.std())


# --------------------------------------------------------------------------------------------------
# agreement with the Rust path on the paper's presets
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["inf_ipm", "inf_lsgan", "ipm_reset", "lsgan"])
def test_ten_steps_agree_with_rust(loss):
    rust, jx = _pair(loss, log_every=10)
    assert jx.compiled and not rust.compiled
    losses_j = jx.advance(10)
    losses_r = rust.advance(10)
    assert jx.step_count == rust.step_count == 10
    assert _rel(jx.particles, rust.particles) <= AGREE_10
    assert np.abs(rust.particles - load_dataset(make_config(loss)).source).max() > 1e-3  # they moved
    assert_close(losses_j, losses_r, rtol=1e-9, atol=1e-12)
    # the same numpy generator state afterwards (reset networks drew the same initialisations)
    assert jx.rng.bit_generator.state == rust.rng.bit_generator.state


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["inf_ipm", "inf_lsgan", "ipm_reset", "lsgan"])
def test_sinkhorn_after_300_steps_agrees_with_rust(loss):
    """Measured (benches/jax_path_drift.py): 8e-5, 2e-7, 4e-15 and 0 relative."""
    from ntkgan.metrics import sinkhorn_divergence

    rust, jx = _pair(loss, log_every=100)
    for _ in range(3):
        jx.advance(100)
        rust.advance(100)
    s_j = sinkhorn_divergence(jx.particles, jx.target)
    s_r = sinkhorn_divergence(rust.particles, rust.target)
    assert abs(s_j - s_r) <= 1e-3 * s_r, (s_j, s_r, _rel(jx.particles, rust.particles))


# --------------------------------------------------------------------------------------------------
# the other compiled configurations, small
# --------------------------------------------------------------------------------------------------

CASES = {
    "inf_vanilla": ("inf_vanilla", {}),
    "inf_vanilla_ode": ("inf_vanilla_ode", {}),
    "inf_lsgan_eigh_batch": ("inf_lsgan", {"n_source": 24, "n_target": 40, "target_batch": 30}),
    "ipm_penalty": ("ipm", {"d_grad_penalty": 0.5, "d_width": 32}),
    "two_number": ("inf_ipm", {"coupling": "kernel", "theta": "two_number", "g2": 0.5, "eta": 50.0}),
    "generator_ntk": ("inf_lsgan", {"coupling": "kernel", "theta": "ntk", "gen_width": 32, "eta": 2.0}),
    "generator_sgd": ("ipm_reset", {"coupling": "generator", "gen_width": 32, "d_width": 32}),
    "generator_adam": ("inf_ipm", {"coupling": "generator", "gen_width": 32, "gen_optimizer": "adam",
                                   "gen_lr": 0.01, "gen_fresh_z": True, "gen_batch": 32, "target_batch": 20}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_small_configurations_agree_with_rust(case):
    loss, kw = CASES[case]
    rust, jx = _pair(loss, **{**SMALL, "log_every": 4, **kw})
    assert jx.compiled, jx.not_compiled
    assert_close(jx.advance(5), rust.advance(5), rtol=1e-9, atol=1e-12, err_msg=case)
    assert _rel(jx.particles, rust.particles) <= AGREE_10, case
    state_j, state_r = jx.state_dict(), rust.state_dict()
    assert sorted(state_j) == sorted(state_r)
    for key, value in state_r.items():
        if value.dtype.kind == "f":
            assert_close(state_j[key], value, rtol=1e-8, atol=1e-10 * max(1.0, float(np.abs(value).max())),
                         err_msg=f"{case}: {key}")
        else:
            assert np.array_equal(state_j[key], value), f"{case}: {key}"


def test_float32_networks_stay_near_float64():
    """d_dtype="float32": the network in float32 on both paths (their rounding differs: 1e-5 here)."""
    rust, jx = _pair("lsgan", **SMALL, log_every=5, d_dtype="float32", d_width=32)
    jx.advance(5)
    rust.advance(5)
    assert jx.discriminator.dtype == "float32"
    assert _rel(jx.particles, rust.particles) <= 1e-5


# --------------------------------------------------------------------------------------------------
# runs, checkpoints, resume across backends
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["rust", "jax"])
def test_resume_across_backends(tmp_path, first):
    """6 steps on one backend with a checkpoint at 3, resumed on the other for 9: the Rust path's end."""
    from ntkgan.runner import load_checkpoint, read_metrics, run

    second = "jax" if first == "rust" else "rust"
    cfg = make_config("lsgan", **SMALL, d_width=32, steps=6, log_every=3, checkpoint_every=3, backend=first)
    out = tmp_path / "run"
    run(cfg, out, progress=False, snapshot_every=3)
    assert load_checkpoint(out)["step"] == 6
    res = run(make_config("lsgan", **SMALL, d_width=32, steps=9, log_every=3, checkpoint_every=3,
                          backend=second), out, resume=True, progress=False, snapshot_every=3)
    assert res.resumed_from == 6
    ref = run(make_config("lsgan", **SMALL, d_width=32, steps=9, log_every=3, checkpoint_every=3,
                          backend="rust"), tmp_path / "ref", progress=False, snapshot_every=3)
    assert _rel(res.particles, ref.particles) <= AGREE_10
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        p.name for p in (tmp_path / "ref").rglob("*") if p.is_file())
    rows, rows_ref = read_metrics(out / "metrics.csv"), read_metrics(tmp_path / "ref" / "metrics.csv")
    assert [r["step"] for r in rows] == [r["step"] for r in rows_ref] == [0, 3, 6, 9]
    assert_close([r["sinkhorn"] for r in rows], [r["sinkhorn"] for r in rows_ref], rtol=1e-8)


def test_jax_run_is_reproducible_and_resumes_bit_identically(tmp_path):
    from ntkgan.runner import run

    def cfg(steps):
        return make_config("inf_ipm", **SMALL, steps=steps, log_every=2, checkpoint_every=2, backend="jax")

    full = run(cfg(6), tmp_path / "full", progress=False, snapshot_every=0)
    assert any(n.startswith("backend jax: whole steps compiled, up to 2 per call, on cpu") for n in full.notes)
    run(cfg(4), tmp_path / "cut", progress=False, snapshot_every=0)
    resumed = run(cfg(6), tmp_path / "cut", resume=True, progress=False, snapshot_every=0)
    assert np.array_equal(full.particles, resumed.particles)
    text = [(p / "metrics.csv").read_text().splitlines() for p in (tmp_path / "full", tmp_path / "cut")]
    strip = [[",".join(c for i, c in enumerate(line.split(",")) if i != 1) for line in t] for t in text]
    assert strip[0] == strip[1]  # all but wall_time


# --------------------------------------------------------------------------------------------------
# errors and fallbacks
# --------------------------------------------------------------------------------------------------


def test_divergence_raises_the_host_error_at_the_same_step():
    rust, jx = _pair("inf_ipm", **SMALL, eta=1e60, log_every=4)
    with pytest.raises(FloatingPointError) as host:
        rust.advance(4)
    with pytest.raises(FloatingPointError) as compiled:
        jx.advance(4)
    assert str(compiled.value) == str(host.value)
    assert jx.step_count == rust.step_count
    assert np.array_equal(jx.particles, rust.particles)


@pytest.mark.parametrize(("loss", "kw", "why"), [
    ("inf_ipm", {"d_loss": "hinge"}, "event-driven"),
    ("inf_ipm", {"d_f0": "random"}, "d_f0='random'"),
    ("inf_lsgan", {"d_method": "ode"}, "d_method='ode'"),
])
def test_configurations_that_are_not_compiled_run_the_host_loop(loss, kw, why):
    flow = make_flow(make_config(loss, **SMALL, backend="jax", **kw))
    assert not flow.compiled and why in flow.not_compiled
    flow.advance(1)
    assert np.isfinite(flow.particles).all()


# --------------------------------------------------------------------------------------------------
# the pieces: traced kernels and Lanczos
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", ("erf", 1.0, 0.7, 0.1), ("rbf", 0.5)])
def test_traced_kernels_equal_the_jax_backend(activation):
    import jax
    import ntkgan
    from ntkgan.jax_path import _kernels

    arch = ntkgan.Mlp(depth=2, activation=activation, b_std=0.5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)), rng.normal(size=(7, 3))
    y[2], y[5] = x[4], -x[1]  # an exact duplicate and an antipodal point
    z = np.concatenate([x, y])
    w = rng.normal(size=z.shape[0])
    for kind in ("ntk", "nngp"):
        f, g = jax.jit(lambda a, b, c, kind=kind: _kernels.value_and_grad(arch, kind, a, b, c))(x, z, w)
        f_ref, g_ref = ntkgan.kernel_value_and_grad(x, z, w, arch=arch, kind=kind, backend="jax")
        assert_close(f, f_ref, rtol=1e-13, atol=1e-14 * np.abs(f_ref).max())
        assert_close(g, g_ref, rtol=1e-12, atol=1e-13 * np.abs(g_ref).max())
        k = np.asarray(jax.jit(lambda a, kind=kind: _kernels.gram(arch, kind, a))(z))
        assert np.array_equal(k, k.T)
        assert_close(k, ntkgan.kernel(z, arch=arch, kind=kind, backend="jax"), rtol=1e-13)


def test_traced_lanczos_equals_the_host_solver():
    import jax
    from ntkgan.discriminator._spectral import lanczos_apply as host_lanczos
    from ntkgan.discriminator._spectral import psi_flow as host_psi
    from ntkgan.jax_path._infinite import psi_flow
    from ntkgan.jax_path._lanczos import lanczos_apply

    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    a = (q * np.linspace(0.0, 12.0, 60)) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=60)
    expected, iterations = host_lanczos(lambda v: a @ v, b, lambda lam: host_psi(lam, 1.0), rtol=1e-10)
    y, its, ok = jax.jit(lambda m, v: lanczos_apply(lambda u: m @ u, v, lambda lam: psi_flow(lam, 1.0),
                                                      rtol=1e-10))(a, b)
    assert bool(ok) and int(its) == iterations
    assert_close(y, expected, rtol=1e-12, atol=1e-13 * np.abs(expected).max())
    lam, vec = np.linalg.eigh(a)
    assert_close(y, vec @ (host_psi(lam, 1.0) * (vec.T @ b)), rtol=1e-9, atol=1e-10 * np.abs(expected).max())
    y0, its0, ok0 = jax.jit(lambda m, v: lanczos_apply(lambda u: m @ u, v, lambda lam: psi_flow(lam, 1.0),
                                                         rtol=1e-10))(a, np.zeros(60))
    assert bool(ok0) and int(its0) == 0 and not np.asarray(y0).any()


def test_chunk_length_bounds_the_random_draws():
    """A chunk is log_every steps (at most 1 000), fewer when re-initialised networks would pass 64 MB."""
    from ntkgan.jax_path import _chunk_length

    assert _chunk_length(make_config("inf_ipm", log_every=100), 2, 500, False) == 100
    assert _chunk_length(make_config("inf_ipm", log_every=5000), 2, 500, False) == 1000
    assert _chunk_length(make_config("ipm_reset", log_every=1000), 2, 500, False) == 250  # 268 kB a step
    assert _chunk_length(make_config("ipm_reset", d_width=4096, log_every=100), 2, 500, False) == 1
