"""End-to-end tests of ``ntkgan run`` and ``ntkgan vector-field`` (python/ntkgan/runner.py,
python/ntkgan/vector_field.py) through ``ntkgan.cli.main`` and real subprocesses, on tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import ntkgan
from ntkgan.cli import main
from ntkgan.presets import make_config
from ntkgan.runner import COMPLETE, read_metrics
from ntkgan.studies.vector_field import vector_field

from conftest import assert_close

TINY = ["--set", "n_source=24", "--set", "n_target=24", "--quiet"]


def _env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_cli_run_writes_every_artefact(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--steps", "4", "--log-every", "2", "--checkpoint-every", "2", "--snapshot-every", "2",
               "--seed", "5", "--out", str(out), *TINY])
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    for name in ("config.json", "config.yaml", "run.json", "metrics.csv", "metrics.png", "animation.gif",
                 "particles.npz", COMPLETE, "checkpoints/step_00000002.npz", "checkpoints/step_00000004.npz",
                 "img/snapshot_00000000.png", "img/snapshot_00000002.png", "img/snapshot_00000004.png"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg == make_config(steps=4, log_every=2, checkpoint_every=2, seed=5, n_source=24,
                              n_target=24).to_dict()
    assert [r["step"] for r in read_metrics(out / "metrics.csv")] == [0, 2, 4]
    with Image.open(out / "metrics.png") as im:
        assert im.format == "PNG"


def test_subprocess_default_out_dir(tmp_path):
    proc = subprocess.run(
        # eta / N = 10 as with the preset's eta = 1000 and 100 particles
        [sys.executable, "-m", "ntkgan.cli", "run", "--steps", "2", "--log-every", "1", "--set", "eta=240",
         *TINY],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "inf_ipm-relu-eight_gaussians-seed0"
    assert str(out.relative_to(tmp_path)) in proc.stdout
    assert (out / COMPLETE).is_file()
    assert (out / "animation.gif").is_file() and (out / "metrics.png").is_file()
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[-1]["sinkhorn"] < rows[0]["sinkhorn"]


def test_killed_subprocess_resumes_bit_identically(tmp_path):
    args = ["--steps", "300", "--log-every", "100", "--checkpoint-every", "5", "--snapshot-every", "0",
            "--set", "n_source=16", "--set", "n_target=16", "--set", "eta=160", "--quiet"]
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "ntkgan.cli", "run", "--out", str(cut), *args],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (cut / "checkpoints" / "step_00000010.npz").exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint at step 10"
            time.sleep(0.005)
        proc.kill()
    finally:
        proc.wait(timeout=60)
    assert not (cut / COMPLETE).exists(), "the run finished before it was killed"
    assert main(["run", "--resume", str(cut), "--quiet"]) == 0
    assert json.loads((cut / "run.json").read_text())["resumed_from"] >= 10
    assert main(["run", "--out", str(tmp_path / "full"), *args]) == 0
    assert (cut / "particles.npz").read_bytes() == (tmp_path / "full" / "particles.npz").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["--loss", "nope"], "unknown loss preset 'nope'"),
    (["--arch", "relu_bias"], "unknown arch preset 'relu_bias'"),
    (["--data", "nowhere"], "unknown data preset or dataset 'nowhere'"),
    (["--steps", "-1"], "steps must be an integer >= 0, got -1"),
    (["--data", "image:/nonexistent.png"], "nonexistent.png"),
    (["--set", "bogus=1"], "unknown option(s) ['bogus']"),
    (["--set", "nokey"], "--set takes KEY=VALUE"),
    (["--loss", "ipm", "--arch", "rbf"], "d_kind='ntk'"),
])
def test_bad_config_is_a_clear_error_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--steps", "2", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ntkgan run: error:" in err and message in err
    assert not out.exists()


def test_bad_config_in_a_subprocess_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ntkgan.cli", "run", "--data", "image:/nonexistent.png"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "error" in proc.stderr and "nonexistent.png" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--steps", "1", "--snapshot-every", "0", "--out", str(out), *TINY]
    assert main(args) == 0
    before = (out / "particles.npz").read_bytes()
    assert main([*args, "--seed", "1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "particles.npz").read_bytes() == before and (out / COMPLETE).is_file()
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert (out / "particles.npz").read_bytes() != before


def test_vector_field_cli(tmp_path):
    rc = main(["vector-field", "--loss", "inf_lsgan", "--arch", "relu_nobias", "--nx", "4", "--ny", "3",
               "--out", str(tmp_path)])
    assert rc == 0
    with Image.open(tmp_path / "vector_field-inf_lsgan-relu_nobias.png") as im:
        assert im.format == "PNG"
    with np.load(tmp_path / "vector_field-inf_lsgan-relu_nobias.npz", allow_pickle=False) as data:
        assert data["grid"].shape == data["force"].shape == (3, 4, 2)
        assert np.isfinite(data["force"]).all()


def test_vector_field_resumes_from_its_row_records_and_equals_dask(tmp_path):
    """One record per grid row in out/tasks/: a call with a record missing recomputes that row only, and
    the numbers equal a serial call without records and a call on a local Dask cluster."""
    kwargs = {"nx": 3, "ny": 4, "t": 2.0}
    plain = vector_field("inf_ipm", "relu", **kwargs)
    first = vector_field("inf_ipm", "relu", out=tmp_path, **kwargs)
    records = sorted((tmp_path / "tasks").glob("vector_field-*.json"))
    assert len(records) == 4
    records[2].unlink()
    again = vector_field("inf_ipm", "relu", out=tmp_path, **kwargs)
    assert len(list((tmp_path / "tasks").glob("vector_field-*.json"))) == 4
    dask = vector_field("inf_ipm", "relu", workers=2, **kwargs)
    for field in (first, again, dask):
        np.testing.assert_array_equal(field.force, plain.force)
        np.testing.assert_array_equal(field.cost, plain.cost)


def test_vector_field_rejects_finite_losses(capsys):
    assert main(["vector-field", "--loss", "ipm", "--nx", "2", "--ny", "2"]) == 2
    assert "infinite-width loss" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["relu", "sigmoid"])
def test_vector_field_ipm_matches_finite_differences(arch):
    """IPM, f_0 = 0: -grad c_{f_T}(x) = T (grad_1 k(x, y) - grad_1 k(x, x)), with the convention
    grad_1 k(x, x) = 1/2 grad [k(x, x)]; reference by central differences of ntkgan.kernel."""
    field = vector_field("inf_ipm", arch, nx=3, ny=2, dim=3, t=2.0)
    mlp = make_config(arch=arch).discriminator_arch()
    y = field.target[None, :]
    h = 1e-5
    for x in field.grid.reshape(-1, 3):
        ref = np.empty(3)
        for k in range(3):
            e = np.zeros(3)
            e[k] = h
            xp, xm = (x + e)[None, :], (x - e)[None, :]
            cross = (ntkgan.kernel(xp, y, arch=mlp) - ntkgan.kernel(xm, y, arch=mlp))[0, 0] / (2 * h)
            diag = (ntkgan.kernel(xp, arch=mlp) - ntkgan.kernel(xm, arch=mlp))[0, 0] / (2 * h)
            ref[k] = 2.0 * (cross - 0.5 * diag)
        i, j = np.argwhere((field.grid == x).all(axis=-1))[0]
        assert_close(field.force[i, j], ref, rtol=1e-6, atol=1e-7)
