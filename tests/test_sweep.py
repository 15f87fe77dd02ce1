"""Tests of ``python/ntkgan/sweep/`` and ``python/ntkgan/_cluster.py``: grid expansion, resumable and
fault-tolerant execution on a real local Dask cluster (2 workers), the results table and ``ntkgan sweep``.

Every run is real but tiny (24 particles, 60 steps).  The cluster tests share one ``LocalCluster`` and are
skipped, with the reason, only when ``dask.distributed`` is not installed.
"""

from __future__ import annotations

import csv
import filecmp
import importlib.util
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from ntkgan.cli import main
from ntkgan.sweep import Grid, sweep

HAS_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
requires_distributed = pytest.mark.skipif(
    not HAS_DISTRIBUTED, reason="dask.distributed not installed (pip install 'ntkgan[dask]')"
)

#: tiny runs: 24 particles, a step small enough to be stable at that size, metrics every 10 steps
TINY = {"n_source": 24, "n_target": 24, "eta": 100.0, "log_every": 10}
STEPS = 60
CKPT = 10
GRID = Grid(loss="inf_ipm,inf_lsgan", arch="relu", data="eight_gaussians", seeds=2)


def _quiet(*_):
    pass


def _sweep(out, **kw):
    kw.setdefault("overrides", TINY)
    kw.setdefault("checkpoint_every", CKPT)
    return sweep(kw.pop("grid", GRID), out, steps=kw.pop("steps", STEPS), progress=False, log=_quiet, **kw)


def _csv_rows(path, drop=("wall_time_mean",)):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fh)]


def _mtimes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def _assert_same_results(a: Path, b: Path, runs) -> None:
    """Same table (wall times aside), same Markdown file, byte-identical final particles of every run."""
    assert _csv_rows(a / "results.csv") == _csv_rows(b / "results.csv")
    assert (a / "results.md").read_bytes() == (b / "results.md").read_bytes()
    for s in runs:
        pa, pb = s.run_dir(a) / "particles.npz", s.run_dir(b) / "particles.npz"
        assert filecmp.cmp(pa, pb, shallow=False), f"final particles of {s.name} differ"
        ra = json.loads((s.run_dir(a) / "result.json").read_text())
        rb = json.loads((s.run_dir(b) / "result.json").read_text())
        assert (ra["status"], ra["sinkhorn"], ra["energy"]) == (rb["status"], rb["sinkhorn"], rb["energy"])


@pytest.fixture(scope="module")
def serial_dir(tmp_path_factory) -> Path:
    """The reference: GRID run serially in this process."""
    out = tmp_path_factory.mktemp("serial") / "sweep"
    result = _sweep(out, serial=True)
    assert (result.ran, result.failed, result.workers) == (4, 0, 1)
    return out


@pytest.fixture(scope="module")
def cluster():
    """A client of a real LocalCluster with 2 single-threaded worker processes (ntkgan._cluster)."""
    if not HAS_DISTRIBUTED:
        pytest.skip("dask.distributed not installed (pip install 'ntkgan[dask]')")
    from ntkgan._cluster import open_client

    with open_client(workers=2) as client:
        yield client


# ---------------------------------------------------------------------------------------------------------
# the grid


def test_grid_expansion_order_names_and_skipped_combinations():
    grid = Grid(loss=["inf_ipm", "ipm_reset"], arch="relu, rbf", data="eight_gaussians,density", seeds=2)
    assert grid.seeds == (0, 1) and len(grid) == 16
    runs, skipped = grid.expand(steps=7, overrides={"n_source": 24})
    # table order (loss, data, arch), then seed; ipm_reset × rbf is rejected by make_config
    assert [(s.loss, s.data, s.arch, s.seed) for s in runs][:4] == [
        ("inf_ipm", "eight_gaussians", "relu", 0), ("inf_ipm", "eight_gaussians", "relu", 1),
        ("inf_ipm", "eight_gaussians", "rbf", 0), ("inf_ipm", "eight_gaussians", "rbf", 1)]
    assert len(runs) == 12
    assert [s.key for s in skipped] == [("ipm_reset", "rbf", "eight_gaussians"),
                                        ("ipm_reset", "rbf", "density")]
    assert all("d_kind='ntk'" in s.reason for s in skipped)
    s = runs[-1]
    assert (s.name, s.config.steps, s.config.seed, s.config.n_source) == (
        "ipm_reset-relu-density-seed1", 7, 1, 24)
    assert s.run_dir("/x") == Path("/x/runs/ipm_reset-relu-density-seed1")
    assert Grid(seeds=[3, 7]).seeds == (3, 7)
    assert len(Grid.paper()) == 81


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "inf_ipn"}, "unknown loss preset 'inf_ipn'; known: inf_ipm"),
    ({"arch": "rleu"}, "unknown arch preset 'rleu'"),
    ({"data": "eight_gausians"}, "unknown data preset or dataset 'eight_gausians'"),
    ({"seeds": 0}, "seeds must be >= 1"),
    ({"seeds": [0, -1]}, "seeds must be integers >= 0"),
    ({"loss": "inf_ipm,inf_ipm"}, "lists \\['inf_ipm'\\] more than once"),
    ({"arch": []}, "arch needs at least one name"),
])
def test_grid_rejects_bad_names_and_seeds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Grid(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": -1}, "steps must be an integer >= 0, got -1"),
    ({"overrides": {"seed": 3}}, "overrides may not set \\['seed'\\]"),
    ({"overrides": {"etaa": 3}}, "unknown option\\(s\\) \\['etaa'\\]"),
])
def test_expand_rejects_bad_steps_and_overrides(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRID.expand(**kwargs)


def test_expand_with_no_valid_run_says_why():
    with pytest.raises(ValueError, match="no valid run in the grid: skipping ipm_reset × rbf.*d_kind"):
        Grid(loss="ipm_reset", arch="rbf").expand(steps=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"workers": 0}, "workers must be an integer >= 1"),
    ({"serial": True, "workers": 2}, "serial runs in this process"),
    ({"scheduler": "tcp://127.0.0.1:1", "workers": 2}, "either scheduler .* or workers"),
    ({"scheduler": "127.0.0.1"}, "HOST:PORT"),
    ({"scheduler": "http://127.0.0.1:8787/status"}, "looks like the dashboard's URL"),
    ({"retries": -1}, "retries must be an integer >= 0"),
    ({"steps": -5}, "steps must be an integer >= 0"),
])
def test_sweep_rejects_bad_inputs_before_running(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _sweep(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s" / "runs").exists()


@requires_distributed
@pytest.mark.timeout(60)
def test_unreachable_scheduler_is_a_value_error():
    from ntkgan._cluster import open_client

    with (pytest.raises(ValueError, match="could not connect to a Dask scheduler at 'tcp://127.0.0.1:1'"),
          open_client("tcp://127.0.0.1:1", connect_timeout=1)):
        pass


# ---------------------------------------------------------------------------------------------------------
# resuming


def test_rerun_skips_finished_runs_and_gives_the_same_table(serial_dir, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(serial_dir, out)  # copy2: modification times kept
    before = _mtimes(out / "runs")
    result = _sweep(out, serial=True)
    assert (result.ran, result.reused, result.failed) == (0, 4, 0)
    assert _mtimes(out / "runs") == before, "a finished run was touched"
    assert (out / "results.csv").read_bytes() == (serial_dir / "results.csv").read_bytes()
    assert (out / "results.md").read_bytes() == (serial_dir / "results.md").read_bytes()
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["ran"] == 0 and meta["reused"] == 4 and len(meta["history"]) == 1


def test_partial_run_dirs_of_a_killed_sweep_are_restarted_cleanly(serial_dir, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(serial_dir, out)
    runs, _ = GRID.expand(steps=STEPS, overrides=TINY)
    # run 0 killed after its checkpoint at step 20: later checkpoints, particles, COMPLETE and result gone
    a = runs[0].run_dir(out)
    for name in ("result.json", "COMPLETE", "particles.npz", "animation.gif", "metrics.png"):
        (a / name).unlink(missing_ok=True)
    for ckpt in (a / "checkpoints").glob("step_*.npz"):
        if int(ckpt.stem.split("_")[1]) > 20:
            ckpt.unlink()
    (a / ".metrics.csv.tmp-12345").write_text("half a file")
    # run 1 killed before its config was written; run 2's record belongs to another configuration
    b = runs[1].run_dir(out)
    shutil.rmtree(b)
    b.mkdir()
    (b / ".config.json.tmp-1").write_text("{")
    c = runs[2].run_dir(out)
    rec = json.loads((c / "result.json").read_text())
    rec["config"]["eta"] = 1.0
    (c / "result.json").write_text(json.dumps(rec))
    result = _sweep(out, serial=True)
    assert (result.ran, result.reused, result.failed) == (3, 1, 0)
    records = {r["name"]: r for r in result.records}
    assert (records[runs[0].name]["start"], records[runs[0].name]["resumed_from"]) == ("resume", 20)
    assert records[runs[1].name]["start"] == "restart"
    assert records[runs[2].name]["start"] == "resume"  # its run dir holds this config: finished again
    _assert_same_results(out, serial_dir, runs)


def test_an_interrupted_sweep_keeps_its_finished_runs_and_the_next_call_finishes(serial_dir, tmp_path,
                                                                                 monkeypatch):
    import ntkgan.runner

    real_run, calls = ntkgan.runner.run, []

    def run_then_interrupt(*args, **kwargs):  # Ctrl-C during the third run
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_run(*args, **kwargs)

    out = tmp_path / "sweep"
    monkeypatch.setattr(ntkgan.runner, "run", run_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _sweep(out, serial=True)
    monkeypatch.setattr(ntkgan.runner, "run", real_run)
    rows = _csv_rows(out / "results.csv")
    assert [(r["seeds_done"], r["missing"]) for r in rows] == [("2", "0"), ("0", "2")]
    meta = json.loads((out / "sweep.json").read_text())
    assert (meta["interrupted"], meta["ran"], meta["missing"]) == (True, 2, 2)
    result = _sweep(out, serial=True)
    assert (result.ran, result.reused, result.failed) == (2, 2, 0)
    _assert_same_results(out, serial_dir, result.runs)


def test_more_steps_extend_finished_runs_to_the_same_particles(serial_dir, tmp_path):
    out = tmp_path / "sweep"
    short = _sweep(out, serial=True, steps=STEPS // 2)
    assert short.ran == 4
    result = _sweep(out, serial=True)
    assert (result.ran, result.reused) == (4, 0)
    assert {(r["start"], r["resumed_from"]) for r in result.records} == {("resume", STEPS // 2)}
    _assert_same_results(out, serial_dir, result.runs)


# ---------------------------------------------------------------------------------------------------------
# on a real local cluster


@requires_distributed
@pytest.mark.timeout(120)
def test_local_cluster_binds_localhost_and_runs_single_threaded(cluster):
    import psutil

    assert cluster.scheduler.address.startswith("tcp://127.0.0.1:")
    assert urlparse(cluster.dashboard_link).hostname == "127.0.0.1"
    assert all(addr.startswith("tcp://127.0.0.1:") for addr in cluster.nthreads())
    assert set(cluster.nthreads().values()) == {1}
    # every listening socket of this process (scheduler, dashboard, nannies) and of the workers
    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    listening = []
    for proc in procs:
        conns = getattr(proc, "net_connections", getattr(proc, "connections", None))(kind="inet")
        listening += [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 4 and set(listening) <= {"127.0.0.1"}, listening

    def threads():
        from ntkgan.threads import get_num_threads

        env = os.environ.get
        return env("RAYON_NUM_THREADS"), env("OPENBLAS_NUM_THREADS"), get_num_threads(), env("MALLOC_TRIM_THRESHOLD_")

    # one thread each, and glibc's malloc defaults (no MALLOC_TRIM_THRESHOLD_ added by dask's nanny)
    assert set(cluster.run(threads).values()) == {("1", "1", 1, os.environ.get("MALLOC_TRIM_THRESHOLD_"))}


def test_single_threaded_sets_and_restores_the_thread_count():
    from ntkgan._cluster import single_threaded
    from ntkgan.threads import get_num_threads, set_num_threads

    before = get_num_threads()
    set_num_threads(2)
    try:
        with single_threaded():
            assert get_num_threads() == 1
        assert get_num_threads() == 2
    finally:
        set_num_threads(before)


@requires_distributed
@pytest.mark.timeout(120)
def test_serial_equals_local_cluster_bit_for_bit(cluster, serial_dir, tmp_path):
    out = tmp_path / "dask"
    result = _sweep(out, scheduler=cluster.scheduler.address)
    assert (result.ran, result.failed, result.workers) == (4, 0, 2)
    assert all(r["worker"].split(":")[1] != str(os.getpid()) for r in result.records)  # ran in workers
    _assert_same_results(out, serial_dir, result.runs)


@requires_distributed
@pytest.mark.timeout(120)
def test_a_raising_run_is_recorded_as_failed_and_the_sweep_goes_on(cluster, tmp_path):
    # a config make_config accepts but that fails when the run loads its data
    missing = f"image:{tmp_path / 'missing.png'}"
    grid = Grid(loss="inf_lsgan", arch="relu", data=["eight_gaussians", missing], seeds=1)
    out = tmp_path / "sweep"
    result = _sweep(out, grid=grid, steps=5, scheduler=cluster.scheduler.address)
    assert (result.ran, result.failed) == (2, 1)
    ok, bad = result.rows
    assert (ok["seeds_done"], ok["failed"], bad["seeds_done"], bad["failed"]) == (1, 0, 0, 1)
    assert bad["errors"].startswith("seed 0: ValueError: image file") and "does not exist" in bad["errors"]
    assert "does not exist" in (out / "results.md").read_text()
    assert _csv_rows(out / "results.csv")[1]["errors"] == bad["errors"]
    # a failed run is tried again by the next call; the finished one is not
    again = _sweep(out, grid=grid, steps=5, scheduler=cluster.scheduler.address)
    assert (again.ran, again.reused, again.failed) == (1, 1, 1)


def _run_name(key: str) -> str:
    return key[len("ntkgan-run-"):].rsplit("-", 1)[0]


@requires_distributed
@pytest.mark.timeout(180)
def test_killed_worker_is_retried_and_the_table_equals_the_serial_one(cluster, serial_dir, tmp_path):
    out = tmp_path / "killed"
    pids = cluster.run(os.getpid)
    box = {}

    def target():
        try:
            box["result"] = _sweep(out, scheduler=cluster.scheduler.address)
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    killed = None
    deadline = time.monotonic() + 90
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        for addr, keys in cluster.processing().items():
            for key in keys:
                run_dir = out / "runs" / _run_name(str(key))
                # running for sure: past its first checkpoint and not finished
                first = run_dir / "checkpoints" / f"step_{CKPT:08d}.npz"
                if first.exists() and not (run_dir / "COMPLETE").exists():
                    os.kill(pids[addr], signal.SIGKILL)
                    killed = run_dir.name
                    break
            if killed:
                break
        time.sleep(0.002)
    thread.join(120)
    assert "error" not in box, box.get("error")
    assert killed is not None, "no run was caught running, so no worker was killed"
    result = box["result"]
    assert result.failed == 0 and result.ran == 4
    record = {r["name"]: r for r in result.records}[killed]
    assert record["start"] == "resume" and record["resumed_from"] >= CKPT, record
    _assert_same_results(out, serial_dir, result.runs)
    cluster.wait_for_workers(2, timeout=30)  # the nanny restarted the killed worker


# ---------------------------------------------------------------------------------------------------------
# the command line


@requires_distributed
@pytest.mark.timeout(120)
def test_cli_sweep_end_to_end_on_a_new_local_cluster(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["sweep", "--loss", "inf_lsgan,ipm_reset", "--arch", "relu,rbf", "--data", "eight_gaussians",
               "--seeds", "1", "--steps", "2", "--workers", "2", "--set", "n_source=24", "--set", "n_target=24",
               "--set", "eta=100", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "skipping ipm_reset × rbf (data: eight_gaussians): a finite-width discriminator" in captured.out
    rows = _csv_rows(out / "results.csv", drop=())
    assert [(r["loss"], r["arch"], r["seeds_done"]) for r in rows] == [
        ("inf_lsgan", "relu", "1"), ("inf_lsgan", "rbf", "1"), ("ipm_reset", "relu", "1"), ("ipm_reset", "rbf", "0")]
    assert rows[3]["skipped"] and float(rows[0]["wall_time_mean"]) > 0
    md = (out / "results.md").read_text()
    assert "| loss | eight_gaussians · relu | eight_gaussians · rbf |" in md and "| ipm_reset |" in md
    assert next(line for line in md.splitlines() if line.startswith("| ipm_reset |")).endswith("| n/a |")
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "sweep.json").read_text())
    assert (meta["workers"], meta["ran"], meta["steps"]) == (2, 3, 2) and meta["wall_time"] > 0
    assert {r.name for r in (out / "runs").iterdir()} == {
        "inf_lsgan-relu-eight_gaussians-seed0", "inf_lsgan-rbf-eight_gaussians-seed0",
        "ipm_reset-relu-eight_gaussians-seed0"}


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "seeds must be >= 1"),
    (["--loss", "inf_ipm,nope"], "unknown loss preset 'nope'"),
    (["--steps", "-1"], "steps must be an integer >= 0"),
    (["--scheduler", "localhost"], "HOST:PORT"),
    (["--set", "seed=4"], "overrides may not set \\['seed'\\]"),
    (["--set", "eta"], "--set takes KEY=VALUE"),
])
def test_cli_bad_inputs_exit_2_with_a_message(tmp_path, capsys, argv, message):
    rc = main(["sweep", "--out", str(tmp_path / "s"), "--quiet", *argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("ntkgan sweep: error:") and re.search(message, err), err
