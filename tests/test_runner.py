"""Tests of python/ntkgan/runner.py and python/ntkgan/plots/_snapshots.py, _metrics.py.

Tiny runs (tens of particles, a few steps): the run directory's files, the metrics table against
independent metric calls, resume after an interruption reaching byte-identical final particles, and the
clean-up of runs that fail before any checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import ntkgan.flows
import numpy as np
import pytest
from conftest import assert_close
from ntkgan import metrics
from ntkgan.datasets import load
from ntkgan.presets import Config, make_config
from ntkgan.runner import (
    BASE_COLUMNS,
    COMPLETE,
    default_out_dir,
    load_checkpoint,
    read_metrics,
    run,
)
from PIL import Image

TINY = {"n_source": 24, "n_target": 24}


def tiny(steps=6, **kw):
    return make_config(**{"steps": steps, "log_every": 2, "checkpoint_every": 3, **TINY, **kw})


class _Interrupt(Exception):
    pass


def _interrupting(monkeypatch, at_step: int, exc=KeyboardInterrupt):
    """Make every flow raise ``exc`` when asked for step ``at_step`` (1-based)."""
    real = ntkgan.flows.make_flow

    def make_flow(config, dataset=None, *, rng=None):
        flow = real(config, dataset, rng=rng)
        step = flow.step
        count = {"n": 0}

        def stepping():
            count["n"] += 1
            if count["n"] == at_step:
                raise exc("stopped by the test")
            return step()

        flow.step = stepping
        return flow

    monkeypatch.setattr(ntkgan.flows, "make_flow", make_flow)


def test_run_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    res = run(tiny(), out, progress=False, snapshot_every=3)
    for name in ("config.json", "config.yaml", "run.json", "metrics.csv", "particles.npz", "animation.gif",
                 "metrics.png", COMPLETE):
        assert (out / name).is_file(), name
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["step_00000003.npz", "step_00000006.npz"]
    assert sorted(p.name for p in (out / "img").iterdir()) == [
        "snapshot_00000000.png", "snapshot_00000003.png", "snapshot_00000006.png"]
    with Image.open(out / "animation.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert Config.from_dict(json.loads((out / "config.json").read_text())) == tiny()
    with np.load(out / "particles.npz", allow_pickle=False) as data:
        assert data["particles"].shape == (24, 2)
        assert_close(data["particles"], res.particles, rtol=0)
    assert res.step == 6 and res.resumed_from is None
    assert not list(out.rglob("*.tmp-*")), "temporary files left behind"


def test_metrics_columns_and_values(tmp_path):
    cfg = tiny()
    res = run(cfg, tmp_path / "run", progress=False, snapshot_every=0)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    modes = [f"mode_{k}" for k in range(8)]
    assert header == list(BASE_COLUMNS) + ["modes_covered", "diversity"] + modes
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [r["step"] for r in rows] == [0, 2, 4, 6]
    assert np.isnan(rows[0]["gen_loss"]) and all(np.isfinite(r["gen_loss"]) for r in rows[1:])
    wall = [r["wall_time"] for r in rows]
    assert wall == sorted(wall)
    ds = load("eight_gaussians", seed=cfg.seed, **TINY)
    # step 0 is the source sample: compare with direct metric calls
    assert_close(rows[0]["sinkhorn"], metrics.sinkhorn_divergence(ds.source, ds.target), rtol=1e-12)
    assert_close(rows[0]["energy"], metrics.energy_distance(ds.source, ds.target), rtol=1e-12)
    assert_close(rows[0]["mmd"], metrics.mmd2(ds.source, ds.target, cfg.discriminator_arch()), rtol=1e-12)
    # the last row is the final particles
    assert_close(rows[-1]["sinkhorn"], metrics.sinkhorn_divergence(res.particles, ds.target), rtol=1e-12)
    counts = metrics.mode_counts(res.particles, ds.modes)
    assert_close([rows[-1][m] for m in modes], counts / 24, rtol=0)
    assert rows[-1]["modes_covered"] == metrics.modes_covered(res.particles, ds.modes)
    assert_close(rows[-1]["diversity"], metrics.diversity(res.particles, ds.modes), rtol=1e-12)


def test_dataset_without_modes_has_base_columns(tmp_path):
    cfg = make_config(data="modes_1d", steps=2, log_every=1)
    run(cfg, tmp_path / "run", progress=False, snapshot_every=1)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(BASE_COLUMNS)
    assert len(list((tmp_path / "run" / "img").glob("*.png"))) == 3


def test_resume_after_interrupt_is_bit_identical(tmp_path, monkeypatch):
    cfg = make_config(steps=10, log_every=2, checkpoint_every=4, **TINY)
    full = run(cfg, tmp_path / "full", progress=False, snapshot_every=0)

    _interrupting(monkeypatch, at_step=7)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", progress=False, snapshot_every=0)
    cut = tmp_path / "cut"
    assert not (cut / COMPLETE).exists()
    assert json.loads((cut / "run.json").read_text())["status"] == "interrupted"
    assert load_checkpoint(cut)["step"] == 4
    monkeypatch.undo()

    resumed = run(None, cut, resume=True, progress=False)
    assert resumed.resumed_from == 4
    assert (cut / COMPLETE).is_file()
    assert (cut / "particles.npz").read_bytes() == (tmp_path / "full" / "particles.npz").read_bytes()
    with np.load(cut / "checkpoints" / "step_00000008.npz", allow_pickle=False) as a, \
            np.load(tmp_path / "full" / "checkpoints" / "step_00000008.npz", allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if key != "wall_time":
                assert np.array_equal(a[key], b[key]), key
    a, b = read_metrics(cut / "metrics.csv"), read_metrics(tmp_path / "full" / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 2, 4, 6, 8, 10]
    for ra, rb in zip(a, b):
        assert_close(ra["sinkhorn"], rb["sinkhorn"], rtol=0)
    assert full.step == resumed.step == 10


def test_resume_extends_a_finished_run(tmp_path):
    short = run(tiny(steps=4), tmp_path / "a", progress=False, snapshot_every=0)
    assert short.step == 4
    longer = run(tiny(steps=6), tmp_path / "a", resume=True, progress=False)
    direct = run(tiny(steps=6), tmp_path / "b", progress=False, snapshot_every=0)
    assert longer.resumed_from == 4
    assert (tmp_path / "a" / "particles.npz").read_bytes() == (tmp_path / "b" / "particles.npz").read_bytes()


def test_resume_rejects_a_changed_config(tmp_path):
    run(tiny(steps=2), tmp_path / "a", progress=False, snapshot_every=0)
    with pytest.raises(ValueError, match=r"differs from the run's \(eta: 1000.0 -> 5.0\)"):
        run(tiny(steps=2, eta=5.0), tmp_path / "a", resume=True, progress=False)
    with pytest.raises(ValueError, match="is not a run directory \\(it does not exist\\)"):
        run(None, tmp_path / "nothing", resume=True, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no run"):
        run(None, tmp_path / "empty", resume=True, progress=False)


def test_failure_before_any_checkpoint_leaves_no_directory(tmp_path, monkeypatch):
    _interrupting(monkeypatch, at_step=2, exc=_Interrupt)
    with pytest.raises(_Interrupt):
        run(tiny(), tmp_path / "run", progress=False, snapshot_every=0)
    assert not (tmp_path / "run").exists()


def test_failure_after_a_checkpoint_is_marked_failed(tmp_path, monkeypatch):
    _interrupting(monkeypatch, at_step=5, exc=_Interrupt)
    with pytest.raises(_Interrupt):
        run(tiny(), tmp_path / "run", progress=False, snapshot_every=0)
    status = json.loads((tmp_path / "run" / "run.json").read_text())
    assert status["status"] == "failed" and "stopped by the test" in status["error"]
    assert not (tmp_path / "run" / COMPLETE).exists()


def test_existing_directory_needs_overwrite(tmp_path):
    run(tiny(steps=2), tmp_path / "a", progress=False, snapshot_every=0)
    before = (tmp_path / "a" / "particles.npz").read_bytes()
    with pytest.raises(ValueError, match="exists and is not empty"):
        run(tiny(steps=2, seed=1), tmp_path / "a", progress=False)
    assert (tmp_path / "a" / "particles.npz").read_bytes() == before
    run(tiny(steps=2, seed=1), tmp_path / "a", progress=False, snapshot_every=0, overwrite=True)
    assert (tmp_path / "a" / "particles.npz").read_bytes() != before


@pytest.mark.parametrize("field, value, match", [
    ("steps", -1, "steps must be an integer >= 0"),
    ("log_every", 0, "log_every must be an integer >= 1"),
])
def test_invalid_values_write_nothing(tmp_path, field, value, match):
    cfg = tiny()
    object.__setattr__(cfg, field, value)  # bypass Config's own check: the runner checks again
    with pytest.raises(ValueError, match=match):
        run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_default_out_dir():
    assert str(default_out_dir(make_config(seed=3))) == "runs/inf_ipm-relu-eight_gaussians-seed3"
    assert "/" not in default_out_dir(make_config(data="image:/a/b.png")).name


class _Bowl:
    """c(x) = |x|^2 / 2, force -x: a discriminator stand-in for the pictures."""

    def cost(self, x):
        return 0.5 * (np.asarray(x) ** 2).sum(axis=1)

    def cost_grad(self, x):
        return np.asarray(x, dtype=float)


@pytest.mark.parametrize("d, image_shape", [(1, None), (2, None), (3, None), (16, (4, 4))])
def test_plot_snapshot_every_kind(tmp_path, d, image_shape):
    from ntkgan.plots._snapshots import plot_snapshot

    rng = np.random.default_rng(0)
    path = tmp_path / "s.png"
    plot_snapshot(path, rng.standard_normal((20, d)), rng.standard_normal((20, d)), discriminator=_Bowl(),
                  title="t", image_shape=image_shape)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (640, 560)


def test_plot_snapshot_rejects_bad_shapes(tmp_path):
    from ntkgan.plots._snapshots import plot_snapshot

    with pytest.raises(ValueError, match="image_shape"):
        plot_snapshot(tmp_path / "s.png", np.zeros((3, 5)), np.zeros((3, 5)), image_shape=(2, 2))
    with pytest.raises(ValueError, match="particles and target"):
        plot_snapshot(tmp_path / "s.png", np.zeros((3, 2)), np.zeros((3, 3)))


def test_progress_bar_shows_step_and_sinkhorn(tmp_path, capsys):
    run(tiny(steps=2), tmp_path / "run", progress=True, snapshot_every=0)
    err = capsys.readouterr().err
    assert "2/2" in err and "sinkhorn=" in err


_FAULTS_SCRIPT = r"""
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from ntkgan._malloc import keep_freed_memory
    assert keep_freed_memory()
x = np.random.default_rng(0).normal(size=(1000, 128))  # a finite network's layer activations, ~1 MiB
for _ in range(3):
    ys = [x * 2.0 for _ in range(12)]
    del ys
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    ys = [x * 2.0 for _ in range(12)]
    del ys
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings are Linux-only")
def test_keep_freed_memory_stops_page_faults_of_repeated_temporaries():
    """With the runner's malloc settings, freed ~1 MiB numpy blocks are reused (no fresh pages): with glibc's
    defaults the same loop faults in tens of thousands of pages."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], env=env, check=True,
                             capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip())

    kept, default = faults("keep"), faults("default")
    assert default > 10_000
    assert kept < default / 100


def test_keep_freed_memory_respects_the_users_malloc_variables(monkeypatch):
    from ntkgan import _malloc

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert _malloc.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    if sys.platform.startswith("linux"):
        assert _malloc.keep_freed_memory() is True
        assert _malloc.keep_freed_memory() is True  # idempotent


# --------------------------------------------------------------------------------------------------
# a run's configuration is fixed when it starts; resume says what it does (issue 11)
# --------------------------------------------------------------------------------------------------


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))
            if p.is_file()}


def test_resume_refuses_an_edited_config_json_and_writes_nothing(tmp_path):
    out = tmp_path / "a"
    run(tiny(steps=4, checkpoint_every=2), out, progress=False, snapshot_every=0)
    saved = json.loads((out / "config.json").read_text())
    assert saved["seed"] == 0
    (out / "config.json").write_text(json.dumps(dict(saved, seed=7, eta=5.0)))
    before = _tree(out)
    with pytest.raises(ValueError, match=r"config.json' differs from the configuration the run started with "
                                         r"\(eta: 1000.0 -> 5.0; seed: 0 -> 7\)"):
        run(None, out, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"seed: 0 -> 7"):
        run(tiny(steps=6, seed=7), out, resume=True, progress=False)
    assert _tree(out) == before


def test_resume_refuses_fewer_steps_than_done(tmp_path):
    out = tmp_path / "a"
    run(tiny(steps=6, checkpoint_every=3), out, progress=False, snapshot_every=0)
    before = _tree(out)
    with pytest.raises(ValueError, match="steps 2 is below the 6 steps the run has done"):
        run(tiny(steps=2, checkpoint_every=3), out, resume=True, progress=False)
    assert _tree(out) == before
    again = run(tiny(steps=6, checkpoint_every=5), out, resume=True, progress=False)  # cadence may change
    assert again.resumed_from == 6 and again.notes == ["resumed from step 6 (checkpoints/step_00000006.npz)"]


def test_resume_says_which_checkpoint_and_skips_a_truncated_one(tmp_path, capsys):
    out = tmp_path / "a"
    run(tiny(steps=6, checkpoint_every=2), out, progress=False, snapshot_every=0)
    newest = out / "checkpoints" / "step_00000006.npz"
    newest.write_bytes(newest.read_bytes()[:100])  # a truncated file
    (out / COMPLETE).unlink()
    result = run(None, out, resume=True, progress=False, verbose=True)
    assert result.resumed_from == 4
    err = capsys.readouterr().err
    assert "skipped unreadable checkpoint checkpoints/step_00000006.npz" in err
    assert "resumed from step 4 (checkpoints/step_00000004.npz)" in err
    full = run(tiny(steps=6, checkpoint_every=2), tmp_path / "b", progress=False, snapshot_every=0)
    assert np.array_equal(result.particles, full.particles)


def test_resume_without_checkpoint_says_it_starts_again(tmp_path, monkeypatch):
    out = tmp_path / "a"
    run(tiny(steps=2, checkpoint_every=2), out, progress=False, snapshot_every=0)
    for path in (out / "checkpoints").iterdir():
        path.unlink()
    result = run(None, out, resume=True, progress=False)
    assert result.resumed_from is None
    assert result.notes == [f"no readable checkpoint in {str(out)!r}: starting again from step 0"]


def test_default_cadence_and_the_one_minute_rule(tmp_path, monkeypatch):
    """The default period is 1 000 steps; a checkpoint is also written after CHECKPOINT_SECONDS of work,
    and the older such interim checkpoints are removed (periodic and final ones kept)."""
    import ntkgan.runner as runner_module

    assert make_config().checkpoint_every == 1000
    monkeypatch.setattr(runner_module, "CHECKPOINT_SECONDS", 0.0)  # every step is "a minute later"
    out = tmp_path / "a"
    run(tiny(steps=7, checkpoint_every=3), out, progress=False, snapshot_every=0)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_00000003.npz", "step_00000006.npz", "step_00000007.npz"]


def test_metrics_csv_is_byte_identical_after_a_checkpoint_resume(tmp_path, monkeypatch):
    """Rows read back from metrics.csv keep integer columns as integers (modes_covered was written 8.0)."""
    cfg = make_config(steps=10, log_every=2, checkpoint_every=4, **TINY)
    _interrupting(monkeypatch, at_step=6, exc=_Interrupt)
    with pytest.raises(_Interrupt):
        run(cfg, tmp_path / "cut", progress=False, snapshot_every=0)
    monkeypatch.undo()
    run(None, tmp_path / "cut", resume=True, progress=False)
    run(cfg, tmp_path / "full", progress=False, snapshot_every=0)

    def without_wall_time(path):
        lines = (path / "metrics.csv").read_text().splitlines()
        col = lines[0].split(",").index("wall_time")
        return [",".join(c for i, c in enumerate(line.split(",")) if i != col) for line in lines]

    cut, full = without_wall_time(tmp_path / "cut"), without_wall_time(tmp_path / "full")
    assert "modes_covered" in cut[0]
    assert cut == full
