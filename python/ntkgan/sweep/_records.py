"""The files of a sweep: one ``result.json`` per run, written atomically, and the run's state on disk.

``DIR/runs/<name>/result.json`` is written (temporary file + ``os.replace``) when the run finishes or fails;
it is the sweep's record of that run.  A run counts as finished when its ``result.json`` says ``complete``
for exactly the configuration asked for now; anything else in the run directory (a run killed mid-way, a
failed run, a run of another configuration) is restarted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ntkgan._io import write_json
from ntkgan._resume import config_identity

__all__ = ["RESULT_FILE", "is_finished", "read_record", "write_record"]

RESULT_FILE = "result.json"

#: fields of a record (``result.json``), in order
RECORD_FIELDS = ("name", "loss", "arch", "data", "seed", "status", "steps", "sinkhorn", "energy",
                 "wall_time", "error", "resumed_from", "start", "worker", "config")


def _clean(value):
    """JSON-safe: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_record(run_dir, record: dict) -> None:
    """Write ``record`` as ``run_dir/result.json`` (atomically)."""
    data = {k: _clean(record.get(k)) for k in RECORD_FIELDS}
    write_json(Path(run_dir) / RESULT_FILE, data)


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
