"""The files of a sweep: one ``result.json`` per run, written atomically, and the run's state on disk.

``DIR/runs/<name>/result.json`` is written (temporary file + ``os.replace``) when the run finishes or fails;
it is the sweep's record of that run.  A run counts as finished when its ``result.json`` says ``complete``
for exactly the configuration asked for now; anything else in the run directory (a run killed mid-way, a
failed run, a run of another configuration) is restarted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

from ntkgan._resume import config_identity

__all__ = ["RESULT_FILE", "atomic_write_bytes", "atomic_write_text", "is_finished", "read_record",
           "write_record"]

RESULT_FILE = "result.json"

#: fields of a record (``result.json``), in order
RECORD_FIELDS = ("name", "loss", "arch", "data", "seed", "status", "steps", "sinkhorn", "energy",
                 "wall_time", "error", "resumed_from", "start", "worker", "config")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the other users of a shared disk
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _clean(value):
    """JSON-safe: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_record(run_dir, record: dict) -> None:
    """Write ``record`` as ``run_dir/result.json`` (atomically)."""
    data = {k: _clean(record.get(k)) for k in RECORD_FIELDS}
    atomic_write_text(Path(run_dir) / RESULT_FILE, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_record(run_dir) -> dict | None:
    """The ``result.json`` of ``run_dir``, or None when it is missing or unreadable."""
    path = Path(run_dir) / RESULT_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_finished(record: dict | None, config_dict: dict) -> bool:
    """True when ``record`` is a complete run of ``config_dict`` (the same steps and configuration; the
    checkpoint cadence may differ, it does not change the numbers)."""
    if not record or record.get("status") != "complete" or not isinstance(record.get("config"), dict):
        return False
    saved = record["config"]
    return saved.get("steps") == config_dict.get("steps") and config_identity(saved) == config_identity(config_dict)
