r"""One experiment: a configuration in, a run directory out (``ntkgan run``).

:func:`run` builds the dataset and the flow of a :class:`ntkgan.presets.Config`, steps it and writes, in
the run directory::

    config.json, config.yaml   the configuration (Config.to_dict(); explicit options already applied)
    run.json                   runner options and status ("running", "failed", "interrupted", "complete")
    metrics.csv                one row per log step (columns below)
    checkpoints/step_XXXXXXXX.npz   flow state every ``checkpoint_every`` steps (default 1 000), at least
                               every minute of work, and at the end
    img/snapshot_XXXXXXXX.png  pictures of particles, target, cost c_f and force -grad c_f (frame 0: the
                               initial particles under the first discriminator, trained on them)
    particles.npz              the final particles (byte-identical for identical runs)
    animation.gif, metrics.png at the end
    COMPLETE                   written last: only a finished run has it

``metrics.csv`` columns: ``step, wall_time`` (seconds since the run began, resumes included),
``sinkhorn`` (debiased Sinkhorn divergence, the paper's metric ``s``), ``energy`` (half the energy
distance, the paper's ``e``), ``mmd`` (MMD² with the discriminator's own kernel), ``gen_loss`` (the
generator loss :math:`\mathbb E_\alpha c(f(x))` returned by the last step; empty at step 0), and for
targets with known modes ``modes_covered``, ``diversity`` (:math:`\log K + \sum_k p_k \log p_k`) and
``mode_k`` (fraction of particles nearest to mode ``k``).

Every file is written to a temporary name and renamed, so a killed run leaves whole files only, and
``run(..., resume=True)`` (``ntkgan run --resume DIR``) continues from the last checkpoint to the same
final particles and the same ``metrics.csv`` (but for the ``wall_time`` column), bit for bit, as an
uninterrupted run.  A run's configuration is fixed when it starts: a resume that would change it is
refused, naming the keys (:mod:`ntkgan._resume`).  An invalid configuration or output directory is rejected
before the directory is created.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ntkgan._io import atomic_write_bytes, atomic_write_text, npz_bytes, write_csv
from ntkgan._malloc import keep_freed_memory
from ntkgan._paths import check_writable_dir
from ntkgan._resume import config_digest, plan_resume, read_json, scan_checkpoints
from ntkgan._validation import check_int

__all__ = ["RunResult", "default_out_dir", "load_checkpoint", "read_metrics", "run"]

COMPLETE = "COMPLETE"
CHECKPOINT_DIR = "checkpoints"
IMAGE_DIR = "img"
BASE_COLUMNS = ("step", "wall_time", "sinkhorn", "energy", "mmd", "gen_loss")
#: Snapshots per run when ``snapshot_every`` is not given, at most: the period is rounded up to a multiple
#: of ``log_every`` (frames on metric rows), so 2 000 steps logged every 100 give 21 frames (0, 100, ...).
DEFAULT_SNAPSHOTS = 40
#: Checkpoints per run when ``checkpoint_every`` is not given and the config has none.
DEFAULT_CHECKPOINTS = 10
#: A checkpoint is also written when this many seconds of work have passed since the last one (the older
#: such interim checkpoints are then removed: the periodic ones are kept).
CHECKPOINT_SECONDS = 60.0
#: Integer columns of metrics.csv (read back as ints, so a resumed table is byte-identical).
INT_COLUMNS = ("step", "modes_covered")
_STATE_PREFIX = "flow."


@dataclass
class RunResult:
    """What :func:`run` returns.

    Attributes
    ----------
    out_dir : Path
        The run directory.
    config : Config
        The configuration that ran.
    step : int
        The last step reached (``config.steps``).
    particles : ndarray of shape (n, d)
        Final particles.
    metrics : list of dict
        The rows of ``metrics.csv`` (floats; NaN where empty).
    wall_time : float
        Seconds spent, resumed parts included.
    resumed_from : int or None
        The checkpoint step the run resumed from (None for a fresh run).
    notes : list of str
        What a resume decided, one line each (which checkpoint; unreadable ones skipped; none found).
    """

    out_dir: Path
    config: object
    step: int
    particles: np.ndarray
    metrics: list = field(default_factory=list)
    wall_time: float = 0.0
    resumed_from: int | None = None
    notes: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# configuration


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", str(text)).strip("_") or "x"


def default_out_dir(config) -> Path:
    """``runs/<loss>-<arch>-<data>-seed<S>``, characters other than letters, digits, ``_`` and ``.``
    replaced by ``_`` (so ``image:/a/b.png`` gives ``image_a_b.png``)."""
    name = f"{_slug(config.loss)}-{_slug(config.arch)}-{_slug(config.data)[-60:]}-seed{config.seed}"
    return Path("runs") / name


def _runner_options(config, checkpoint_every, snapshot_every) -> dict:
    """Validate the step counts and fill in the defaults of the checkpoint and snapshot periods."""
    steps = check_int(config.steps, "steps", 0)
    log_every = check_int(config.log_every, "log_every", 1)
    if checkpoint_every is None:
        checkpoint_every = getattr(config, "checkpoint_every", None)
    if checkpoint_every is None:
        checkpoint_every = max(1, steps // DEFAULT_CHECKPOINTS)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", 0)
    if snapshot_every is None:
        snapshot_every = getattr(config, "snapshot_every", None)
    if snapshot_every is None:
        snapshot_every = max(log_every, math.ceil(steps / DEFAULT_SNAPSHOTS / log_every) * log_every)
    snapshot_every = check_int(snapshot_every, "snapshot_every", 0)
    return {"steps": steps, "log_every": log_every, "checkpoint_every": checkpoint_every,
            "snapshot_every": snapshot_every}


def _load_dataset(config):
    from ntkgan.flows import load_dataset

    return load_dataset(config)


def _metric_kernel(config):
    """The discriminator's kernel for the ``mmd`` column: ``(Mlp, kind, backend)``."""
    return config.discriminator_arch(), config.d_kind, config.backend


# ---------------------------------------------------------------------------------------------------------
# metrics


def _columns(dataset) -> list[str]:
    cols = list(BASE_COLUMNS)
    if dataset.modes is not None:
        cols += ["modes_covered", "diversity"] + [f"mode_{k}" for k in range(dataset.modes.shape[0])]
    return cols


def _measure(particles, dataset, kernel, gen_loss) -> dict:
    from ntkgan.threads import blas_single_thread

    with blas_single_thread():  # as the flow steps: Rust reductions next to small BLAS products
        return _measure_row(particles, dataset, kernel, gen_loss)


def _measure_row(particles, dataset, kernel, gen_loss) -> dict:
    from ntkgan import metrics

    target = dataset.target
    row = {
        "sinkhorn": metrics.sinkhorn_divergence(particles, target),
        "energy": metrics.energy_distance(particles, target),
        "gen_loss": float("nan") if gen_loss is None else float(gen_loss),
    }
    mlp, kind, backend = kernel
    row["mmd"] = metrics.mmd2(particles, target, mlp, kind=kind, backend=backend)
    if dataset.modes is not None:
        counts = metrics.mode_counts(particles, dataset.modes)
        row["modes_covered"] = int((counts > 0).sum())
        row["diversity"] = metrics.diversity(particles, dataset.modes)
        for k, c in enumerate(counts):
            row[f"mode_{k}"] = float(c) / particles.shape[0]
    return row


def read_metrics(path) -> list[dict]:
    """Rows of a ``metrics.csv`` as dicts of floats (``step`` and ``modes_covered`` ints; empty cells NaN)."""
    rows = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row = {k: (float(v) if v != "" else float("nan")) for k, v in raw.items()}
            for key in INT_COLUMNS:
                if key in raw and raw[key] != "":
                    row[key] = int(raw[key])
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------
# checkpoints


def _checkpoint_path(out_dir: Path, step: int) -> Path:
    return out_dir / CHECKPOINT_DIR / f"step_{step:08d}.npz"


def _save_checkpoint(out_dir: Path, step: int, flow, wall_time: float, gen_loss, config) -> None:
    arrays = {f"{_STATE_PREFIX}{k}": np.asarray(v) for k, v in flow.state_dict().items()}
    arrays["step"] = np.asarray(step, dtype=np.int64)
    arrays["wall_time"] = np.asarray(wall_time, dtype=np.float64)
    arrays["gen_loss"] = np.asarray(np.nan if gen_loss is None else gen_loss, dtype=np.float64)
    arrays["config_json"] = np.array(json.dumps(config.to_dict(), sort_keys=True))
    arrays["config_digest"] = np.array(config_digest(config.to_dict()))
    atomic_write_bytes(_checkpoint_path(out_dir, step), npz_bytes(arrays))


def _prune_interim(out_dir: Path, keep_step: int, every: int, final: int) -> None:
    """Remove checkpoints older than ``keep_step`` that are neither periodic (a multiple of ``every``) nor
    the final one: the interim checkpoints of the time rule, superseded by a newer one."""
    for path in (out_dir / CHECKPOINT_DIR).glob("step_*.npz"):
        try:
            step = int(path.stem.split("_")[1])
        except (IndexError, ValueError):
            continue
        if step < keep_step and step != final and not (every and step % every == 0):
            path.unlink(missing_ok=True)


def load_checkpoint(out_dir) -> dict | None:
    """The last readable checkpoint of a run directory: ``{"step", "wall_time", "gen_loss", "state", ...}``.

    Returns None when the run has no readable checkpoint (see :func:`ntkgan._resume.scan_checkpoints`,
    which also reports the unreadable ones it skipped).
    """
    return scan_checkpoints(Path(out_dir))[0]


# ---------------------------------------------------------------------------------------------------------
# pictures


def _title(config, step: int) -> str:
    return f"loss {config.loss} · arch {config.arch} · data {config.data} · step {step}"


def _snapshot(out_dir: Path, config, step, particles, discriminator, dataset, bounds) -> Path:
    """``img/snapshot_<step>.png``: the particles of ``step`` and the discriminator trained on them (None:
    the points only)."""
    from ntkgan.plots._snapshots import plot_snapshot

    path = out_dir / IMAGE_DIR / f"snapshot_{step:08d}.png"
    plot_snapshot(path, np.asarray(particles), dataset.target, discriminator=discriminator, bounds=bounds,
                  title=_title(config, step), image_shape=dataset.meta.get("image_shape"))
    return path


def _finish_pictures(out_dir: Path, config, rows) -> None:
    from ntkgan.plots._metrics import plot_metrics
    from ntkgan.plots._snapshots import animate_snapshots

    frames = sorted((out_dir / IMAGE_DIR).glob("snapshot_*.png"))
    if frames:
        animate_snapshots(frames, out_dir / "animation.gif")
    if rows:
        plot_metrics(rows, out_dir / "metrics.png",
                     title=f"loss {config.loss} · arch {config.arch} · data {config.data}")


# ---------------------------------------------------------------------------------------------------------
# the run


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("config.json", "run.json", COMPLETE, CHECKPOINT_DIR))


def _write_status(out_dir: Path, options: dict, status: str, **extra) -> None:
    record = dict(options, status=status, **extra)
    atomic_write_text(out_dir / "run.json", json.dumps(record, indent=2, sort_keys=True) + "\n")


def _write_config(out_dir: Path, config) -> None:
    import yaml

    data = config.to_dict()
    atomic_write_text(out_dir / "config.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(data, sort_keys=True))


def _check_backend(name) -> None:
    """ValueError (with what to install) when the config's kernel backend is not installed."""
    from ntkgan import backends

    name = backends.resolve(name)
    if name not in backends.available():
        raise ValueError(f"backend {name!r} is not available: {backends._INSTALL_HINT[name]}")


def _jax_path_note(flow, config) -> str | None:
    """With backend "jax": one line saying whether whole steps are compiled, and on which device."""
    from ntkgan import backends

    if backends.resolve(config.backend) != "jax":
        return None
    import jax

    device = jax.devices()[0]
    where = f"{jax.default_backend()} ({device.device_kind}), jax {jax.__version__}"
    if flow.compiled:
        return f"backend jax: whole steps compiled, up to {flow.spec.length} per call, on {where}"
    return f"backend jax: steps on the host ({flow.not_compiled}), kernels on {where}"


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Reject an output directory that cannot hold a new run, before any work: a file, a path under a file,
    an unwritable place, or an existing non-empty directory (without ``overwrite``, or not a run directory).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a directory"
                         + (" (--overwrite replaces run directories only)" if overwrite else ""))
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"out_dir {str(out_dir)!r} exists and is not empty (resume it with --resume, or "
                             "pass --overwrite to replace a run directory)")
        if not _is_run_dir(out_dir):
            raise ValueError(f"out_dir {str(out_dir)!r} is not empty and holds no run: --overwrite only replaces "
                             "run directories")
    check_writable_dir(out_dir)


def run(config=None, out_dir=None, *, resume: bool = False, progress: bool = True,
        checkpoint_every: int | None = None, snapshot_every: int | None = None,
        overwrite: bool = False, verbose: bool | None = None) -> RunResult:
    r"""Run the flow of ``config`` for ``config.steps`` steps and write the run directory ``out_dir``.

    Every ``log_every`` steps (and at steps 0 and ``steps``) the metrics are measured and
    ``metrics.csv`` rewritten; every ``snapshot_every`` steps a PNG goes to ``img/``; every
    ``checkpoint_every`` steps, whenever :data:`CHECKPOINT_SECONDS` of work have passed since the last
    checkpoint, and at the end, the flow state goes to ``checkpoints/`` (with the configuration, so that a
    resume can check it).  At the end the final particles, the animation, the metrics plot and the
    ``COMPLETE`` marker are written.

    On Linux/glibc the process's malloc then keeps freed blocks for reuse
    (:func:`ntkgan._malloc.keep_freed_memory`, unless ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``
    are set): finite-network flows allocate many ~1 MiB temporaries per step (``ipm_reset`` twice as fast).

    Parameters
    ----------
    config : Config or None
        The experiment (:func:`ntkgan.presets.make_config`).  With ``resume=True`` it may be None (the
        run's own) or differ from the configuration the run started with in ``steps`` (not below the steps
        done) and ``checkpoint_every`` only.
    out_dir : str or path-like, optional
        The run directory; default :func:`default_out_dir` (``runs/<loss>-<arch>-<data>-seed<S>``).
    resume : bool, default=False
        Continue the run in ``out_dir`` from its newest readable checkpoint (from step 0 if it has none).
    progress : bool, default=True
        Show a tqdm bar (step, latest Sinkhorn divergence) on stderr.
    checkpoint_every : int, optional
        Checkpoint period in steps (0: only the time rule and the end); default the config's
        ``checkpoint_every`` (1 000).
    snapshot_every : int, optional
        Snapshot period in steps (0: none); default at most :data:`DEFAULT_SNAPSHOTS` frames per run, a
        multiple of ``log_every`` (21 frames for 2 000 steps logged every 100).
    overwrite : bool, default=False
        Replace an existing run directory (else it is an error).
    verbose : bool, optional
        Print one line per resume decision on stderr (which checkpoint, which unreadable ones were
        skipped); default ``progress``.  The lines are also in ``RunResult.notes``.

    Returns
    -------
    RunResult

    Raises
    ------
    ValueError
        Before anything is written: a config that is not valid (negative steps, an unknown preset, an
        unreadable image, ...), an ``out_dir`` that cannot hold the run (a file, not writable, already
        holding a run without ``resume``/``overwrite``), or (``resume``) no run there, a ``config.json``
        or ``config`` that differs from the configuration the run started with, or fewer steps than done.
    """
    out_dir = None if out_dir is None else Path(out_dir)
    verbose = progress if verbose is None else bool(verbose)
    keep_freed_memory()
    plan = None
    if resume:
        if out_dir is None:
            raise ValueError("resume needs out_dir, the run directory to continue")
        plan = plan_resume(out_dir, config)
        config = plan.config
    elif config is None:
        raise ValueError("config must be given for a new run (resume=False)")
    if out_dir is None:
        out_dir = default_out_dir(config)
    if resume:
        saved_opts = {}
        if (out_dir / "run.json").is_file():
            saved_opts = read_json(out_dir / "run.json", "run record")
        if checkpoint_every is None:
            checkpoint_every = saved_opts.get("checkpoint_every")
        if snapshot_every is None:
            snapshot_every = saved_opts.get("snapshot_every")
    else:
        _check_out_dir(out_dir, overwrite)
    options = _runner_options(config, checkpoint_every, snapshot_every)
    _check_backend(config.backend)

    # Everything that can reject the configuration happens before the directory exists.
    dataset = _load_dataset(config)
    from ntkgan.flows import make_flow

    flow = make_flow(config, dataset)
    kernel = _metric_kernel(config)
    columns = _columns(dataset)
    start, offset, gen_loss, rows, resumed_from = 0, 0.0, None, [], None
    if plan is not None and plan.checkpoint is not None:
        ckpt = plan.checkpoint
        flow.load_state_dict(ckpt["state"])
        start, offset, gen_loss = ckpt["step"], ckpt["wall_time"], ckpt["gen_loss"]
        resumed_from = start
        if (out_dir / "metrics.csv").is_file():
            rows = [r for r in read_metrics(out_dir / "metrics.csv") if r["step"] <= start]
    notes = [] if plan is None else list(plan.notes)
    if config.backend is not None or os.environ.get("NTKGAN_BACKEND"):
        jax_note = _jax_path_note(flow, config)
        if jax_note:
            notes.append(jax_note)
    if verbose:
        for line in notes:
            print(f"ntkgan: {line}", file=sys.stderr)

    created = False
    if not resume:
        if out_dir.exists() and any(out_dir.iterdir()):  # overwrite was checked by check_out_dir
            shutil.rmtree(out_dir)
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_config(out_dir, config)
    for sub in (CHECKPOINT_DIR, IMAGE_DIR):
        (out_dir / sub).mkdir(exist_ok=True)
    if resume:
        (out_dir / COMPLETE).unlink(missing_ok=True)
        _write_config(out_dir, config)  # steps may have been extended
    started = config.to_dict()
    _write_status(out_dir, options, "running", resumed_from=resumed_from, config=started,
                  config_digest=config_digest(started))

    bounds = None
    if dataset.dim <= 2 and dataset.meta.get("image_shape") is None:
        from ntkgan.plots._snapshots import plot_bounds

        bounds = plot_bounds(dataset.source, dataset.target)
    steps, log_every = options["steps"], options["log_every"]
    ckpt_every, snap_every = options["checkpoint_every"], options["snapshot_every"]
    t0 = time.perf_counter() - offset
    bar = None
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, disable=not progress, desc=f"{config.loss}/{config.arch}",
                   unit="step", file=sys.stderr, dynamic_ncols=True)

        def log(step):
            row = {"step": step, **_measure(np.asarray(flow.particles), dataset, kernel, gen_loss)}
            row["wall_time"] = time.perf_counter() - t0
            rows.append(row)
            write_csv(out_dir / "metrics.csv", columns, rows)
            bar.set_postfix(sinkhorn=f"{row['sinkhorn']:.4g}", refresh=False)

        first_frame = None  # frame 0 waits for the discriminator trained on the initial particles
        if start == 0:
            log(0)
            if snap_every:
                first_frame = np.array(flow.particles, copy=True)
                if steps == 0:
                    _snapshot(out_dir, config, 0, first_frame, None, dataset, bounds)
        step = start
        last_ckpt = time.perf_counter()
        while step < steps:
            # the steps up to the next event (metric row, snapshot, checkpoint, end) in one call: a compiled
            # flow (backend="jax") runs them as one lax.scan on the device
            k = 1 if first_frame is not None else _steps_to_next_event(step, steps, log_every, snap_every,
                                                                         ckpt_every)
            gen_loss = float(flow.advance(k)[-1])
            step += k
            bar.update(k)
            if first_frame is not None:
                _snapshot(out_dir, config, 0, first_frame, flow.discriminator, dataset, bounds)
                first_frame = None
            if step % log_every == 0 or step == steps:
                log(step)
            if snap_every and (step % snap_every == 0 or step == steps):
                _snapshot(out_dir, config, step, flow.particles, flow.discriminator, dataset, bounds)
            periodic = bool(ckpt_every) and step % ckpt_every == 0
            if periodic or step == steps or time.perf_counter() - last_ckpt >= CHECKPOINT_SECONDS:
                _save_checkpoint(out_dir, step, flow, time.perf_counter() - t0, gen_loss, config)
                _prune_interim(out_dir, step, ckpt_every, steps)
                last_ckpt = time.perf_counter()
        if start == steps and not rows:  # resumed a finished run: measure once so the table is not empty
            log(steps)
        bar.close()
        particles = np.array(flow.particles, dtype=np.float64)
        atomic_write_bytes(out_dir / "particles.npz",
                            npz_bytes({"particles": particles, "step": np.asarray(steps, dtype=np.int64)}))
        write_csv(out_dir / "metrics.csv", columns, rows)
        _finish_pictures(out_dir, config, rows)
        wall = time.perf_counter() - t0
        _write_status(out_dir, options, "complete", resumed_from=resumed_from, wall_time=wall, config=started,
                      config_digest=config_digest(started))
        atomic_write_text(out_dir / COMPLETE, f"{steps}\n")
    except BaseException as exc:
        if bar is not None:
            bar.close()
        has_checkpoint = load_checkpoint(out_dir) is not None
        if created and not has_checkpoint:
            shutil.rmtree(out_dir, ignore_errors=True)  # nothing worth resuming: leave no directory
        elif out_dir.is_dir():
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            _write_status(out_dir, options, status, resumed_from=resumed_from, error=repr(exc), config=started,
                          config_digest=config_digest(started))
        raise
    return RunResult(out_dir=out_dir, config=config, step=steps, particles=particles, metrics=rows,
                     wall_time=wall, resumed_from=resumed_from, notes=notes)


def _steps_to_next_event(step: int, steps: int, *periods: int) -> int:
    """Steps from ``step`` to the next multiple of one of the (nonzero) ``periods``, or to ``steps``."""
    k = steps - step
    for period in periods:
        if period:
            k = min(k, period - step % period)
    return k
