"""``sweep()``: expand a grid, run what is not finished yet, write the table, figure and ``sweep.json``."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ntkgan._io import write_json
from ntkgan._paths import check_writable_dir
from ntkgan._validation import check_int
from ntkgan.sweep._grid import Grid
from ntkgan.sweep._records import is_finished, read_record

__all__ = ["DEFAULT_CHECKPOINTS", "DEFAULT_RETRIES", "SweepResult", "sweep"]

#: checkpoints per run by default (enough to resume a killed run, cheap to write)
DEFAULT_CHECKPOINTS = 4
#: Dask retries of a task whose exception escaped the run (the run's own failures are recorded instead)
DEFAULT_RETRIES = 2


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes
    ----------
    out_dir : Path
        The sweep directory (``results.csv``, ``results.md``, ``results.png``, ``sweep.json``, ``runs/``).
    grid : Grid
    runs : list of Setting
        The valid runs.
    skipped : list of Skipped
        The combinations ``make_config`` rejected, with the reasons.
    records : list of dict
        The record (``result.json``) of each run in ``runs``' order; None for a run with no record.
    rows : list of dict
        The table (``results.csv``), one row per (loss, arch, data).
    ran, reused, failed : int
        Runs executed now, runs found finished, runs failed (now or before).
    workers : int
        Workers used (1 for a serial sweep; the most seen connected to the scheduler otherwise).
    wall_time : float
        Seconds this call took.
    """

    out_dir: Path
    grid: Grid
    runs: list
    skipped: list
    records: list
    rows: list
    ran: int = 0
    reused: int = 0
    failed: int = 0
    workers: int = 1
    wall_time: float = 0.0
    paths: dict = field(default_factory=dict)


def _skip_messages(skipped) -> list[str]:
    """One line per (loss, arch, reason), naming the datasets it applies to."""
    groups: dict = {}
    for s in skipped:
        groups.setdefault((s.loss, s.arch, s.reason), []).append(s.data)
    return [f"skipping {loss} × {arch} (data: {', '.join(data)}): {reason}"
            for (loss, arch, reason), data in groups.items()]


def sweep(grid: Grid, out_dir, *, steps: int | None = None, workers: int | None = None,
          scheduler: str | None = None, serial: bool = False, overrides: dict | None = None,
          checkpoint_every: int | None = None, snapshot_every: int = 0, retries: int = DEFAULT_RETRIES,
          progress: bool = True, log=print) -> SweepResult:
    r"""Run every setting of ``grid`` and write the results table of the sweep directory ``out_dir``.

    Each valid setting runs :func:`ntkgan.runner.run` on ``make_config(loss, arch, data, seed=s,
    steps=steps, **overrides)`` into ``out_dir/runs/<loss>-<arch>-<data>-seed<S>`` and records
    ``result.json`` there as soon as it finishes.  Runs already complete for the same configuration are
    not run again, so calling ``sweep`` again after an interruption finishes the missing runs and gives
    the same table.  Then it writes ``results.csv``, ``results.md``, ``results.png`` and ``sweep.json``.

    Parameters
    ----------
    grid : Grid
        Loss × architecture × dataset × seed.
    out_dir : str or path-like
        The sweep directory (created if needed).
    steps : int, optional
        Generator steps of every run; None keeps the presets' (50 000).
    workers : int, optional
        Processes of the local Dask cluster (default: one per core).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) to use instead of a local cluster; the
        workers must see ``out_dir`` (a shared file system) and have ntkgan installed.
    serial : bool, default=False
        Run in this process, one run after another (no Dask).
    overrides : dict, optional
        Config options for every run, applied after the presets (e.g. ``{"n_source": 100}``).
    checkpoint_every : int, optional
        Checkpoint period of each run (0: at the end only); default ``max(1, steps // 4)``, so a run
        killed mid-way resumes from at most a quarter run back.
    snapshot_every : int, default=0
        Snapshot (PNG) period of each run; 0 (default) draws none, which keeps sweeps cheap.
    retries : int, default=2
        Dask retries of a task whose exception escaped the run (a run's own exception is recorded as a
        failure, not retried; a task whose worker died is rescheduled by Dask).
    progress : bool, default=True
        Show a tqdm bar over runs (finished / failed counts).
    log : callable, default=print
        Where the messages go (skipped combinations, the table's path).

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        Before any run: bad ``steps``, ``workers``, ``retries``, ``checkpoint_every`` or ``snapshot_every``;
        ``serial`` with ``workers`` or ``scheduler``; ``workers`` with ``scheduler``; a malformed or
        unreachable ``scheduler``; bad ``overrides`` (see :meth:`Grid.expand`).

    Examples
    --------
    >>> grid = Grid(loss="inf_ipm,inf_lsgan", arch="relu", data="eight_gaussians", seeds=2)
    >>> result = sweep(grid, "sweeps/demo", steps=200, workers=2)  # doctest: +SKIP
    >>> result.rows[0]["sinkhorn_mean"]  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a Grid, got {type(grid).__name__}")
    check_int(workers, "workers", 1, optional=True)
    retries = check_int(retries, "retries", 0)
    snapshot_every = check_int(snapshot_every, "snapshot_every", 0)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", 0, optional=True)
    if serial and (workers is not None or scheduler is not None):
        raise ValueError("serial runs in this process: give no workers or scheduler with it")
    if scheduler is not None and workers is not None:
        raise ValueError("give either scheduler (an existing cluster) or workers (a local one), not both")
    if scheduler is not None:
        from ntkgan._cluster import check_scheduler_address

        scheduler = check_scheduler_address(scheduler)
    out_dir = check_writable_dir(out_dir)
    runs, skipped = grid.expand(steps=steps, overrides=overrides)
    for message in _skip_messages(skipped):
        log(message)
    if checkpoint_every is None:
        checkpoint_every = max(1, runs[0].config.steps // DEFAULT_CHECKPOINTS)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = [s.config.to_dict() for s in runs]
    jobs, records = [], {}
    for s, cfg in zip(runs, configs):
        rec = read_record(s.run_dir(out_dir))
        if is_finished(rec, cfg):
            records[s.key + (s.seed,)] = rec
        else:
            jobs.append((cfg, s.run_dir(out_dir)))
    # finite-width discriminators cost about ten times more per step: start them first (shorter sweeps)
    jobs.sort(key=lambda job: job[0]["discriminator"] == "infinite")
    reused = len(runs) - len(jobs)
    if reused:
        log(f"{reused} of {len(runs)} runs already finished in {out_dir}; running the other {len(jobs)}")

    from ntkgan.sweep._execute import execute

    info = {"workers": 1 if serial else 0}
    finished: list = []

    def finish(interrupted: bool):
        return _finish(out_dir, grid, runs, skipped, steps=runs[0].config.steps, overrides=overrides,
                       serial=serial, scheduler=scheduler, workers=info["workers"], reused=reused,
                       ran=len(finished), t0=t0, checkpoint_every=checkpoint_every,
                       snapshot_every=snapshot_every, interrupted=interrupted)

    try:
        if jobs:
            info = execute(jobs, total=len(runs), reused=reused, serial=serial, scheduler=scheduler,
                           workers=workers, retries=retries, checkpoint_every=checkpoint_every,
                           snapshot_every=snapshot_every, progress=progress, on_record=finished.append)
    except BaseException as exc:
        # Ctrl-C or a lost scheduler: the table shows what finished.  An unreachable scheduler
        # (ValueError before any run) leaves no table behind.
        if finished or not isinstance(exc, ValueError):
            finish(interrupted=True)
        raise
    result = finish(interrupted=False)
    log(f"{out_dir / 'results.md'}: {result.ran} runs now, {result.reused} reused, {result.failed} failed, "
        f"{result.workers} worker(s), {result.wall_time:.1f} s")
    return result


def _history(path) -> list:
    """The calls recorded in an earlier ``sweep.json`` (its own entry and its history), oldest first."""
    try:
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict):
        return []
    history = old.get("history") if isinstance(old.get("history"), list) else []
    keep = ("finished_at", "wall_time", "workers", "serial", "scheduler", "steps", "ran", "reused", "failed",
            "interrupted")
    return history + [{k: old.get(k) for k in keep}]


def _finish(out_dir, grid, runs, skipped, *, steps, overrides, serial, scheduler, workers, reused, ran, t0,
            checkpoint_every, snapshot_every, interrupted) -> SweepResult:
    """Read every run's record from disk and write the table, the figure and ``sweep.json``."""
    from ntkgan.plots._sweep import plot_results
    from ntkgan.sweep._table import summarise, write_csv, write_markdown

    ordered, records = [], {}
    for s in runs:
        rec = read_record(s.run_dir(out_dir))
        if rec is not None and rec.get("config") != s.config.to_dict():
            rec = None  # a record of another configuration (the run did not happen this time)
        ordered.append(rec)
        if rec is not None:
            records[s.key + (s.seed,)] = rec
    rows = summarise(grid, records, skipped)
    paths = {"csv": out_dir / "results.csv", "md": out_dir / "results.md", "png": out_dir / "results.png",
             "json": out_dir / "sweep.json"}
    write_csv(paths["csv"], rows)
    write_markdown(paths["md"], grid, rows, steps=steps)
    try:
        plot_results(paths["png"], grid, rows, steps=steps)
    except Exception as exc:  # noqa: BLE001 - a figure must not lose the table
        print(f"ntkgan sweep: could not draw {paths['png']}: {exc}", file=sys.stderr)
    failed = sum(1 for r in ordered if r is not None and r.get("status") != "complete")
    wall = time.perf_counter() - t0
    meta = {
        "grid": grid.to_dict(), "steps": steps, "overrides": dict(overrides or {}),
        "serial": serial, "scheduler": scheduler, "workers": workers, "wall_time": wall,
        "run_time": sum(r["wall_time"] for r in ordered if r is not None and r.get("status") == "complete"),
        "runs": len(runs), "ran": ran, "reused": reused, "failed": failed,
        "missing": sum(1 for r in ordered if r is None),
        "skipped": [{"loss": s.loss, "arch": s.arch, "data": s.data, "reason": s.reason} for s in skipped],
        "checkpoint_every": checkpoint_every, "snapshot_every": snapshot_every,
        "interrupted": interrupted,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta["history"] = _history(paths["json"])
    write_json(paths["json"], meta)
    return SweepResult(out_dir=out_dir, grid=grid, runs=runs, skipped=skipped, records=ordered, rows=rows,
                       ran=ran, reused=reused, failed=failed, workers=workers, wall_time=wall, paths=paths)
