"""End-to-end ``ntkgan run`` for every loss preset x coupling (python/ntkgan/runner.py, python/ntkgan/cli.py,
python/ntkgan/flows/), in-process through ``ntkgan.cli.main`` on tiny settings.

Each case runs 3 steps on 16 vs 16 eight_gaussians points and checks the whole run directory: the files
(config, status, metrics, checkpoint, final particles, snapshots, animation, metrics plot, ``COMPLETE``),
that ``config.json`` is exactly the config the options describe, finite metrics at step 0 and at the last
step (the last row measured on the final particles), and particles that moved away from those of step 0.
Steps are scaled as in the paper's presets: ``eta / N`` equals the preset's ``eta / 500``.

Also here: the Sinkhorn divergence decreases along a short inf_ipm/relu eight_gaussians run, and a
``--backend jax`` run reaches the Rust run's final particles (skipped when JAX is absent).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import assert_close, requires_jax
from ntkgan import metrics
from ntkgan.cli import main
from ntkgan.flows import load_dataset, make_flow
from ntkgan.presets import LOSS_PRESETS, Config, make_config
from ntkgan.runner import COMPLETE, load_checkpoint, read_metrics

N = 16
STEPS = 3
LOG_EVERY = 2
PRESET_N = 500  # the data preset's number of particles, for which the presets' eta is meant

#: coupling name -> config options.  Generator widths are small (the generator NTK of theta="ntk" is the
#: infinite-width one, width is irrelevant there).  Kernel couplings with g2 > 0 or the NTK move the
#: centre of mass about N g2 / g1 times faster than free particles, so their eta is scaled down.
COUPLINGS = {
    "free": {},
    "generator": {"coupling": "generator", "gen_width": 32, "gen_latent_dim": 8},
    "kernel-identity": {"coupling": "kernel", "theta": "identity"},
    "kernel-two_number-offdiag": {"coupling": "kernel", "theta": "two_number", "g1": 1.0, "g2": 0.25,
                                  "two_number_form": "offdiag", "eta_factor": 0.25},
    "kernel-two_number-plus_ones": {"coupling": "kernel", "theta": "two_number", "g1": 1.0, "g2": 0.25,
                                    "two_number_form": "plus_ones", "eta_factor": 0.2},
    "kernel-ntk": {"coupling": "kernel", "theta": "ntk", "gen_width": 32, "gen_latent_dim": 8,
                   "eta_factor": 0.02},
}

#: every file of a finished run
RUN_FILES = ("config.json", "config.yaml", "run.json", "metrics.csv", "metrics.png", "particles.npz",
             COMPLETE, f"checkpoints/step_{STEPS:08d}.npz")
#: and with snapshots (the default period, a multiple of log_every, exceeds the run: step 0 and the end);
#: pictures cost about as much as the tiny run itself, so only the free couplings draw them
PICTURES = ("animation.gif", "img/snapshot_00000000.png", f"img/snapshot_{STEPS:08d}.png")


def _options(loss: str, coupling: str) -> dict:
    opts = dict(COUPLINGS[coupling])
    factor = opts.pop("eta_factor", 1.0)
    opts.update(n_source=N, n_target=N, eta=LOSS_PRESETS[loss]["eta"] * N / PRESET_N * factor)
    if LOSS_PRESETS[loss]["discriminator"] != "infinite":
        opts["d_width"] = 32  # a finite discriminator (the presets' 128 changes nothing tested here)
    return opts


def _set_args(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        out += ["--set", f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"]
    return out


def _finite_row(row: dict, *, skip=()) -> list[str]:
    return [k for k, v in row.items() if k not in skip and not math.isfinite(v)]


@pytest.mark.parametrize("coupling", list(COUPLINGS))
@pytest.mark.parametrize("loss", list(LOSS_PRESETS))
def test_cli_run_every_loss_and_coupling(tmp_path, capsys, loss, coupling):
    out = tmp_path / "run"
    options = _options(loss, coupling)
    pictures = coupling == "free"
    rc = main(["run", "--loss", loss, "--steps", str(STEPS), "--log-every", str(LOG_EVERY), "--out", str(out),
               "--quiet", *([] if pictures else ["--snapshot-every", "0"]), *_set_args(options)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"{out}: {STEPS} steps" in captured.out

    for name in RUN_FILES + (PICTURES if pictures else ()):
        assert (out / name).is_file(), name
    if not pictures:
        assert not (out / "animation.gif").exists() and not any((out / "img").iterdir())
    assert (out / COMPLETE).read_text() == f"{STEPS}\n"
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "complete" and status["steps"] == STEPS

    # the options reached the config, and nothing else changed
    cfg = Config.from_dict(json.loads((out / "config.json").read_text()))
    assert cfg.to_dict() == make_config(loss, steps=STEPS, log_every=LOG_EVERY, **options).to_dict()

    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == [0, LOG_EVERY, STEPS]
    assert "modes_covered" in rows[0]  # eight_gaussians has modes
    assert math.isnan(rows[0]["gen_loss"])  # no step taken yet
    assert _finite_row(rows[0], skip=("gen_loss",)) == []
    assert _finite_row(rows[-1]) == []
    assert rows[-1]["wall_time"] >= rows[0]["wall_time"] >= 0.0

    with np.load(out / "particles.npz", allow_pickle=False) as data:
        final = data["particles"]
        assert int(data["step"]) == STEPS
    assert final.shape == (N, 2)
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == STEPS and ckpt["state"]["flow.step"] == STEPS

    # step 0: a fresh flow of the saved config (same seed: same data, initialisation and latent codes)
    ds = load_dataset(cfg)
    start = make_flow(cfg, ds).particles
    assert_close(rows[0]["sinkhorn"], metrics.sinkhorn_divergence(start, ds.target), rtol=1e-12)
    assert_close(rows[-1]["sinkhorn"], metrics.sinkhorn_divergence(final, ds.target), rtol=1e-12)
    moved = np.abs(final - start).max()
    assert moved > 1e-4 * np.abs(start).max(), f"particles barely moved: max displacement {moved:.3g}"
    assert np.isfinite(final).all()


def test_sinkhorn_decreases_inf_ipm_relu_eight_gaussians(tmp_path):
    """60 steps of the paper's setting with 100 vs 100 points and eta = 200 (eta / N = 1000 / 500)."""
    out = tmp_path / "run"
    rc = main(["run", "--loss", "inf_ipm", "--arch", "relu", "--data", "eight_gaussians", "--steps", "60",
               "--log-every", "10", "--snapshot-every", "0", "--out", str(out), "--quiet",
               "--set", "n_source=100", "--set", "n_target=100", "--set", "eta=200.0"])
    assert rc == 0
    rows = read_metrics(out / "metrics.csv")
    sink = np.array([r["sinkhorn"] for r in rows])
    assert [r["step"] for r in rows] == list(range(0, 61, 10))
    assert np.isfinite(sink).all()
    assert (np.diff(sink) < 0).all(), sink
    assert sink[-1] < 0.05 * sink[0], sink
    assert rows[-1]["modes_covered"] == 8


@requires_jax
@pytest.mark.parametrize("loss", ["inf_ipm", "inf_lsgan"])
def test_jax_backend_run_matches_rust(tmp_path, loss):
    """The same run with --backend jax and --backend rust: final particles and metrics agree."""
    common = ["run", "--loss", loss, "--steps", str(STEPS), "--log-every", "1", "--snapshot-every", "0",
              "--quiet", *_set_args(_options(loss, "free"))]
    results = {}
    for backend in ("rust", "jax"):
        out = tmp_path / backend
        assert main([*common, "--backend", backend, "--out", str(out)]) == 0
        assert json.loads((out / "config.json").read_text())["backend"] == backend
        with np.load(out / "particles.npz", allow_pickle=False) as data:
            results[backend] = (data["particles"], read_metrics(out / "metrics.csv"))
    (x_rust, rows_rust), (x_jax, rows_jax) = results["rust"], results["jax"]
    x0 = load_dataset(make_config(loss, **_options(loss, "free"))).source
    assert np.abs(x_rust - x0).max() > 1e-2  # a real move, not a trivial agreement
    assert_close(x_jax, x_rust, rtol=1e-8, atol=1e-8 * np.abs(x_rust).max())
    for a, b in zip(rows_jax, rows_rust):
        assert a["step"] == b["step"]
        assert_close(a["mmd"], b["mmd"], rtol=1e-8, atol=1e-12)
        if b["step"] > 0:
            assert_close(a["gen_loss"], b["gen_loss"], rtol=1e-8, atol=1e-12)
