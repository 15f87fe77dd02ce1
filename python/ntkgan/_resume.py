r"""Resuming a run directory: which checkpoint, and whether the configuration is still the one it started with.

A run's configuration is fixed when it starts.  ``run.json`` and every checkpoint record the configuration
the run started with (``config``) and a digest of the part that decides the numbers
(:func:`config_identity`: everything but the fields in :data:`MUTABLE_ON_RESUME`, which may change on
resume: ``steps``, to extend a run, ``checkpoint_every``, a cadence, and ``backend``: the Rust and JAX
paths compute the same steps up to rounding and read and write the same checkpoints, so a run started on
one may continue on the other; a resume on the same backend stays bit-identical).  :func:`plan_resume` compares the
directory's ``config.json`` (which a user may have edited) and the configuration a caller asks for with
it, and refuses any difference with one line naming the keys (``seed: 0 -> 7``); it checks that the steps
asked for are not below the steps done; it picks the newest readable checkpoint and says so, or says that it
skipped an unreadable one or found none.  Nothing is written before the plan is accepted.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["MUTABLE_ON_RESUME", "ResumePlan", "config_digest", "config_identity", "describe_changes",
           "plan_resume", "read_json", "scan_checkpoints"]

#: Config fields a resume may change: they do not change the numbers of the steps already taken.
MUTABLE_ON_RESUME = ("steps", "checkpoint_every", "backend")
CHECKPOINT_DIR = "checkpoints"
STATE_PREFIX = "flow."


def config_identity(config_dict: dict) -> dict:
    """The configuration without the fields a resume may change (:data:`MUTABLE_ON_RESUME`)."""
    return {k: v for k, v in config_dict.items() if k not in MUTABLE_ON_RESUME}


def config_digest(config_dict: dict) -> str:
    """SHA-256 of the canonical JSON of :func:`config_identity` (hex)."""
    text = json.dumps(config_identity(config_dict), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_changes(old: dict, new: dict) -> str:
    """``"seed: 0 -> 7; eta: 1000.0 -> 5.0"`` for the keys whose values differ (sorted)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    return "; ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}".replace("'", "")
                     for k in keys)


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; ValueError naming the file when it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{what} {str(path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {str(path)!r} holds a {type(data).__name__}, not a JSON object")
    return data


def _load_npz(path: Path) -> dict:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:  # our handle: closed on errors too
        return {k: data[k] for k in data.files}


def scan_checkpoints(out_dir: Path) -> tuple[dict | None, list[str]]:
    """The newest readable checkpoint of ``out_dir`` and notes on the unreadable ones skipped on the way.

    The checkpoint is ``{"step", "wall_time", "gen_loss", "state", "config" (dict or None), "path"}``.
    """
    folder = Path(out_dir) / CHECKPOINT_DIR
    paths = sorted(folder.glob("step_*.npz")) if folder.is_dir() else []
    notes = []
    for path in reversed(paths):
        try:
            data = _load_npz(path)
            step, wall, gen_loss = int(data["step"]), float(data["wall_time"]), float(data["gen_loss"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            notes.append(f"skipped unreadable checkpoint {CHECKPOINT_DIR}/{path.name} "
                         f"({type(exc).__name__}: {exc})")
            continue
        state = {k[len(STATE_PREFIX):]: v for k, v in data.items() if k.startswith(STATE_PREFIX)}
        config = json.loads(str(data["config_json"][()])) if "config_json" in data else None
        return ({"step": step, "wall_time": wall, "gen_loss": None if math.isnan(gen_loss) else gen_loss,
                 "state": state, "config": config, "path": path}, notes)
    return None, notes


@dataclass
class ResumePlan:
    """What :func:`plan_resume` decided.

    Attributes
    ----------
    config : Config
        The configuration to run (the started one, with ``steps``, ``checkpoint_every`` and ``backend`` as
        asked).
    checkpoint : dict or None
        The checkpoint to continue from (:func:`scan_checkpoints`), or None: from step 0.
    steps_done : int
        Steps the directory holds (the checkpoint's).
    notes : list of str
        One line each: the checkpoint chosen (or none), the unreadable ones skipped.
    """

    config: object
    checkpoint: dict | None
    steps_done: int
    notes: list = field(default_factory=list)


def plan_resume(out_dir: Path, config=None) -> ResumePlan:
    """Check that ``out_dir`` may be resumed (with ``config``, or its own configuration) and how.

    Raises
    ------
    ValueError
        ``out_dir`` holds no run; its ``config.json`` is unreadable or differs from the configuration the
        run started with; ``config`` differs from it in more than ``steps``, ``checkpoint_every`` and
        ``backend``; or
        ``config.steps`` is below the steps done.  Each message is one line naming the keys
        (``seed: 0 -> 7``).
    """
    from ntkgan.presets import Config

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ValueError(f"resume: {str(out_dir)!r} is not a run directory"
                         + (" (it is a file)" if out_dir.exists() else " (it does not exist)"))
    if not (out_dir / "config.json").exists():
        raise ValueError(f"resume: {str(out_dir)!r} holds no run (no config.json)")
    on_disk = read_json(out_dir / "config.json", "config file")
    try:
        saved = Config.from_dict(on_disk)
    except ValueError as exc:
        raise ValueError(f"resume: {str(out_dir / 'config.json')!r}: {exc}") from None
    checkpoint, notes = scan_checkpoints(out_dir)
    started = checkpoint["config"] if checkpoint is not None and checkpoint["config"] is not None else None
    if started is None and (out_dir / "run.json").is_file():
        started = read_json(out_dir / "run.json", "run record").get("config")
    if started is not None and config_digest(started) != config_digest(saved.to_dict()):
        raise ValueError(f"resume: {str(out_dir / 'config.json')!r} differs from the configuration the run "
                         f"started with ({describe_changes(config_identity(started), config_identity(saved.to_dict()))}); "
                         "restore it, or start a new run")
    if config is None:
        config = saved
    else:
        reference = config_identity(started if started is not None else saved.to_dict())
        asked = config_identity(config.to_dict())
        if asked != reference:
            raise ValueError(f"resume: the configuration differs from the run's ({describe_changes(reference, asked)});"
                             f" only {', '.join(MUTABLE_ON_RESUME)} may change on resume")
    steps_done = checkpoint["step"] if checkpoint is not None else 0
    if config.steps < steps_done:
        raise ValueError(f"resume: steps {config.steps} is below the {steps_done} steps the run has done "
                         f"({CHECKPOINT_DIR}/{checkpoint['path'].name}); give --steps {steps_done} or more")
    if checkpoint is not None:
        notes.append(f"resumed from step {steps_done} ({CHECKPOINT_DIR}/{checkpoint['path'].name})")
    else:
        notes.append(f"no readable checkpoint in {str(out_dir)!r}: starting again from step 0")
    return ResumePlan(config=config, checkpoint=checkpoint, steps_done=steps_done, notes=notes)
