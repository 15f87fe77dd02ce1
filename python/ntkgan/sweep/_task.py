"""One run of a sweep, as a Dask task or a plain call: prepare its directory, run it, write ``result.json``.

:func:`run_setting` is what a worker executes.  It is idempotent: a run already complete for the same
configuration is returned as it is; a run directory left by a killed or failed attempt of the same
configuration is resumed from its last checkpoint (bit-identical to an uninterrupted run); a directory of
another configuration is replaced.  The run itself goes through :func:`ntkgan.runner.run` with one Rust
thread and one BLAS thread (:func:`ntkgan._cluster.single_threaded`), so its numbers do not depend on where
it ran.  An exception raised by the run is recorded (``status: failed`` and the message), not raised.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from ntkgan._resume import config_identity
from ntkgan.sweep._records import RESULT_FILE, is_finished, read_record, write_record

__all__ = ["failed_record", "run_setting"]


def _saved_config(run_dir: Path) -> dict | None:
    try:
        with open(run_dir / "config.json", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _resumable(saved: dict | None, config_dict: dict) -> bool:
    """Same configuration (the checkpoint cadence aside), with as many steps or fewer (the runner then
    extends it)."""
    if saved is None:
        return False
    steps = saved.get("steps")
    return (config_identity(saved) == config_identity(config_dict) and isinstance(steps, int)
            and steps <= config_dict["steps"])


def _prepare(run_dir: Path, config_dict: dict) -> str:
    """Make ``run_dir`` ready; return ``"fresh"`` (absent), ``"resume"`` (a partial run of this config) or
    ``"restart"`` (something else was there and is removed)."""
    if not run_dir.exists():
        return "fresh"
    (run_dir / RESULT_FILE).unlink(missing_ok=True)  # a failed record or one of another configuration
    if run_dir.is_dir() and _resumable(_saved_config(run_dir), config_dict):
        return "resume"
    if run_dir.is_dir():
        shutil.rmtree(run_dir)
    else:
        run_dir.unlink()
    return "restart"


def _base_record(config_dict: dict) -> dict:
    from ntkgan.presets import Config
    from ntkgan.runner import default_out_dir

    config = Config.from_dict(config_dict)
    return {"name": default_out_dir(config).name, "loss": config.loss, "arch": config.arch,
            "data": config.data, "seed": config.seed, "steps": config.steps, "config": config_dict,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def failed_record(config_dict: dict, error: str) -> dict:
    """The record of a run that failed outside the run itself (e.g. its worker died too often)."""
    return dict(_base_record(config_dict), status="failed", error=error, worker=None)


def run_setting(config_dict: dict, run_dir: str, *, checkpoint_every: int, snapshot_every: int) -> dict:
    """Run one configuration into ``run_dir`` and write ``run_dir/result.json``; return the record.

    Parameters
    ----------
    config_dict : dict
        ``Config.to_dict()`` of the run.
    run_dir : str
        Its run directory (``DIR/runs/<name>``).
    checkpoint_every, snapshot_every : int
        Passed to :func:`ntkgan.runner.run` (0: a checkpoint at the end only / no snapshots).

    Returns
    -------
    dict
        The record: ``name, loss, arch, data, seed, status`` (``"complete"`` or ``"failed"``), ``steps``,
        ``sinkhorn`` and ``energy`` (final values), ``wall_time`` (seconds, resumed parts included),
        ``error``, ``resumed_from`` (checkpoint step of a resumed attempt), ``start`` (``"fresh"``,
        ``"resume"``, ``"restart"``), ``worker`` (``host:pid``) and ``config``.
    """
    from ntkgan._cluster import single_threaded
    from ntkgan.presets import Config
    from ntkgan.runner import run

    run_dir = Path(run_dir)
    existing = read_record(run_dir)
    if is_finished(existing, config_dict):
        return existing
    record = _base_record(config_dict)
    config = Config.from_dict(config_dict)
    start = _prepare(run_dir, config_dict)
    record["start"] = start
    t0 = time.perf_counter()
    try:
        with single_threaded():
            result = run(config, run_dir, resume=start == "resume", progress=False,
                         checkpoint_every=checkpoint_every, snapshot_every=snapshot_every)
    except Exception as exc:  # noqa: BLE001 - the run's own failure (divergence, bad data...): record it
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      wall_time=time.perf_counter() - t0)
    else:
        last = result.metrics[-1]
        record.update(status="complete", sinkhorn=float(last["sinkhorn"]), energy=float(last["energy"]),
                      wall_time=float(result.wall_time), resumed_from=result.resumed_from)
    write_record(run_dir, record)
    return record
