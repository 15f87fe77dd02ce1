"""``ntkgan sweep --scheduler`` on a Dask cluster started by its own commands, as dask-jobqueue does on SLURM.

A ``dask scheduler`` and two ``dask worker`` processes (each under its nanny, dask-jobqueue's default) are
started on 127.0.0.1 as separate OS processes, each in its own process group, with the single-thread
environment of the SLURM recipe in docs/sweeps.md.  The sweep runs through the ``ntkgan`` command in a
process of its own.  Mid-sweep one worker is lost for good -- its worker process and its nanny are killed
with SIGKILL, like a node that dies or a job killed at its walltime -- and the sweep must finish on the
other worker, with the killed run resumed from its last checkpoint, and give the same table and
byte-identical final particles as the same sweep run serially.

Skipped, with the reason, only when the ``dask`` command or ``dask.distributed`` is not installed.
"""

from __future__ import annotations

import csv
import filecmp
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ntkgan.cli import main
from ntkgan.sweep import Grid

#: the grid: 2 losses × 1 architecture × 2 datasets × 2 seeds = 8 runs of about a second each
LOSS, ARCH, DATA, SEEDS = "inf_ipm,inf_lsgan", "relu", "eight_gaussians,gmm:3", 2
STEPS = 200
CKPT = STEPS // 4  # the sweep's default checkpoint period (four checkpoints per run)
OVERRIDES = {"n_source": 60, "n_target": 60}
SWEEP_ARGS = ["sweep", "--loss", LOSS, "--arch", ARCH, "--data", DATA, "--seeds", str(SEEDS),
              "--steps", str(STEPS), "--quiet"]
for _key, _value in OVERRIDES.items():
    SWEEP_ARGS += ["--set", f"{_key}={_value}"]

#: seconds allowed for each stage before the test fails with a message (instead of hanging)
START_TIMEOUT = 90  # scheduler up and both workers registered (2 busy cores: imports are slow)
KILL_TIMEOUT = 90  # a run caught past its first checkpoint
SWEEP_TIMEOUT = 180  # the sweep done after the kill


def _bin(name: str) -> str | None:
    """The console script ``name`` of this Python's environment, else one on PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else shutil.which(name)


DASK = _bin("dask")
HAS_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
pytestmark = pytest.mark.skipif(
    DASK is None or not HAS_DISTRIBUTED,
    reason="the dask command or dask.distributed is not installed (pip install 'ntkgan[dask]')",
)


def _ntkgan_cmd() -> list:
    script = _bin("ntkgan")
    if script is not None:
        return [script]
    return [sys.executable, "-c", "import sys; from ntkgan.cli import main; sys.exit(main())"]


def _csv_rows(path, drop=("wall_time_mean",)):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fh)]


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


class _Procs:
    """Processes started in their own process groups, with their output in log files; stopped by group."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir, self.env, self.procs = log_dir, env, {}

    def start(self, name: str, argv: list) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "wb") as log:  # a file, not a pipe: dask logs a lot
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def logs(self) -> str:
        """The end of every log, the sweep's first."""
        names = sorted(self.procs, key=lambda n: n != "sweep")
        return "\n".join(f"--- {n} (exit code {self.procs[n].poll()}) ---\n{_tail(self.log_dir / f'{n}.log')}"
                         for n in names)

    def check_alive(self, *names: str) -> None:
        dead = [n for n in names if self.procs[n].poll() is not None]
        assert not dead, f"{', '.join(dead)} exited early\n{self.logs()}"

    def kill_group(self, name: str) -> None:
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group is the process's own (start_new_session)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignored
            pass

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.kill_group(name)


def _wait_for_file(path: Path, procs: _Procs, name: str, deadline: float) -> None:
    while not path.exists():
        procs.check_alive(name)
        assert time.monotonic() < deadline, f"{name} did not write {path.name} in time\n{procs.logs()}"
        time.sleep(0.1)


def _assert_listening_on_localhost_only(procs: _Procs) -> None:
    """Every listening socket of the scheduler, the nannies and the workers is on 127.0.0.1."""
    import psutil  # a dependency of dask.distributed
    listening = []
    for p in procs.procs.values():
        top = psutil.Process(p.pid)
        for proc in [top, *top.children(recursive=True)]:
            conns = getattr(proc, "net_connections", getattr(proc, "connections", None))(kind="inet")
            listening += [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
    # scheduler: comm + HTTP; each worker: nanny, worker, HTTP
    assert len(listening) >= 8 and set(listening) == {"127.0.0.1"}, listening


def _run_name(key: str) -> str:
    return key[len("ntkgan-run-"):].rsplit("-", 1)[0]


@pytest.mark.timeout(START_TIMEOUT + KILL_TIMEOUT + SWEEP_TIMEOUT + 120)
def test_sweep_on_a_cluster_started_by_dask_commands_survives_a_lost_worker(tmp_path):
    import distributed
    from ntkgan._cluster import SINGLE_THREAD_ENV

    logs = tmp_path / "logs"
    logs.mkdir()
    # the environment of the SLURM recipe's job_script_prologue (docs/sweeps.md); dask's scratch
    # directories (left behind by a killed worker) under tmp_path
    env = dict(os.environ, **SINGLE_THREAD_ENV, DASK_TEMPORARY_DIRECTORY=str(tmp_path / "dask-scratch"))
    procs = _Procs(logs, env)
    client = sweep_proc = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # port 0: a free port chosen by the OS (another cluster may be running on this machine)
        scheduler_file = tmp_path / "scheduler.json"
        # --no-dashboard alone still serves HTTP (health, metrics) on 0.0.0.0:8787 (scheduler) or on
        # 0.0.0.0:<random> (worker): bind those to 127.0.0.1 too
        http = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
        procs.start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", *http,
                                  "--scheduler-file", str(scheduler_file), "--idle-timeout", "1800"])
        _wait_for_file(scheduler_file, procs, "scheduler", deadline)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        for i in range(2):
            procs.start(f"worker{i}", [DASK, "worker", address, "--host", "127.0.0.1", "--nworkers", "1",
                                       "--nthreads", "1", "--nanny", *http, "--name", f"w{i}",
                                       "--death-timeout", "60"])

        # the reference, serially in this process, while the cluster starts
        serial = tmp_path / "serial"
        assert main([*SWEEP_ARGS, "--serial", "--out", str(serial)]) == 0

        deadline = max(deadline, time.monotonic() + 30)  # however long the serial sweep took
        try:
            client = distributed.Client(address, timeout=deadline - time.monotonic(), set_as_default=False)
        except OSError as exc:  # TimeoutError, connection refused
            pytest.fail(f"no scheduler answering at {address} ({type(exc).__name__}: {exc})\n{procs.logs()}")
        try:
            client.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            pytest.fail(f"the 2 workers did not register with {address} in time\n{procs.logs()}")
        assert set(client.nthreads().values()) == {1}
        # worker address -> our process (its group is the dask worker command's: nanny and worker)
        groups = {p.pid: name for name, p in procs.procs.items()}
        owner = {addr: groups[pgid] for addr, pgid in client.run(os.getpgrp).items()}
        assert sorted(owner.values()) == ["worker0", "worker1"], owner
        _assert_listening_on_localhost_only(procs)
        pids = client.run(os.getpid)

        out = tmp_path / "cluster"
        sweep_proc = procs.start("sweep", [*_ntkgan_cmd(), *SWEEP_ARGS, "--scheduler", address,
                                           "--out", str(out)])

        # lose the worker of a run caught past its first checkpoint and not finished
        killed = killed_worker = None
        deadline = time.monotonic() + KILL_TIMEOUT
        while killed is None:
            assert sweep_proc.poll() is None, f"the sweep ended before a worker was killed\n{procs.logs()}"
            assert time.monotonic() < deadline, f"no run caught running within {KILL_TIMEOUT} s\n{procs.logs()}"
            for addr, keys in client.processing().items():
                for key in keys:
                    run_dir = out / "runs" / _run_name(str(key))
                    first = run_dir / "checkpoints" / f"step_{CKPT:08d}.npz"
                    if first.exists() and not (run_dir / "COMPLETE").exists():
                        procs.kill_group(owner[addr])
                        killed, killed_worker = run_dir.name, addr
                        break
                if killed:
                    break
            else:
                time.sleep(0.01)

        try:
            rc = sweep_proc.wait(timeout=SWEEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweep did not finish within {SWEEP_TIMEOUT} s of the kill\n{procs.logs()}")
        assert rc == 0, f"ntkgan sweep exited with {rc}\n{procs.logs()}"
        # the killed worker stayed lost: the sweep finished on the other one
        survivor = next(a for a in owner if a != killed_worker)
        assert list(client.nthreads()) == [survivor], client.nthreads()

        runs, _ = Grid(loss=LOSS, arch=ARCH, data=DATA, seeds=SEEDS).expand(steps=STEPS, overrides=OVERRIDES)
        assert len(runs) == 8
        records = {s.name: json.loads((s.run_dir(out) / "result.json").read_text()) for s in runs}
        assert {r["status"] for r in records.values()} == {"complete"}
        # the killed run was resumed from its checkpoint on the surviving worker
        rec = records[killed]
        assert rec["start"] == "resume" and rec["resumed_from"] >= CKPT, rec
        assert rec["worker"].rsplit(":", 1)[1] == str(pids[survivor]), (rec["worker"], pids)
        workers_used = {r["worker"].rsplit(":", 1)[1] for r in records.values()}
        assert workers_used <= {str(p) for p in pids.values()}, workers_used  # every run ran in a worker
        meta = json.loads((out / "sweep.json").read_text())
        assert (meta["workers"], meta["ran"], meta["failed"], meta["missing"]) == (2, 8, 0, 0), meta

        # the same table (wall times aside) and byte-identical final particles as the serial sweep
        assert _csv_rows(out / "results.csv") == _csv_rows(serial / "results.csv")
        assert (out / "results.md").read_bytes() == (serial / "results.md").read_bytes()
        for s in runs:
            a, b = s.run_dir(out) / "particles.npz", s.run_dir(serial) / "particles.npz"
            assert filecmp.cmp(a, b, shallow=False), f"final particles of {s.name} differ"
    finally:
        if client is not None:
            client.close(timeout=10)
        procs.stop_all()
