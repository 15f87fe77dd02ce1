"""The skeleton every study follows, and its pieces.

A study validates its arguments (:mod:`ntkgan._validation`, :func:`check_out`, :func:`cluster_args`), builds
a list of tasks (plain dicts: one run each), maps a module-level function over them serially or on Dask
with a record per finished task (:func:`run_tasks`: a killed study resumes where it stopped), reduces the
results to its result object, and writes its outputs (:class:`Outputs`: CSV, markdown, JSON, figures drawn
by :mod:`ntkgan.plots`).  Its command lives in :mod:`ntkgan.cli`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ntkgan._io import atomic_write_text, write_csv, write_json
from ntkgan._validation import check_int

__all__ = [
    "TASKS_DIR", "Outputs", "StudyResult", "check_out", "cluster_args", "columns_of", "map_tasks", "run_tasks",
    "task_key",
]


# ---------------------------------------------------------------------------------------------------------
# validation


def check_out(out) -> Path:
    """The output directory: a directory this process can create or write in (checked before any work)."""
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise ValueError(f"out must be a directory path, got {out!r}")
    from ntkgan._paths import check_writable_dir

    return check_writable_dir(out, "out")


def cluster_args(workers, scheduler) -> tuple[int | None, str | None]:
    """Check the Dask options: neither (serial), ``workers`` (a local cluster) or ``scheduler``."""
    if workers is not None and scheduler is not None:
        raise ValueError(
            "give either workers (a local Dask cluster) or scheduler (an existing one), not both"
        )
    if workers is not None:
        workers = check_int(workers, "workers")
    if scheduler is not None:
        from ntkgan._cluster import check_scheduler_address

        scheduler = check_scheduler_address(scheduler)
    return workers, scheduler


# ---------------------------------------------------------------------------------------------------------
# running tasks


def _single_threaded_call(fn: Callable, task):
    from ntkgan._cluster import single_threaded

    with single_threaded():
        return fn(task)


def map_tasks(
    fn: Callable,
    tasks: list,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    desc: str = "tasks",
    on_result: Callable | None = None,
) -> list:
    """``[fn(t) for t in tasks]``, each call with one Rust and one BLAS thread, in this process or on Dask.

    Serial when ``workers`` and ``scheduler`` are both None; otherwise ``client.map`` on a local
    ``LocalCluster`` of ``workers`` single-threaded processes, or on the cluster at ``scheduler``
    (:func:`ntkgan._cluster.open_client`).  ``fn`` must be a module-level function and each task plain
    data, so both pickle.  The results come back in the order of ``tasks``, and are the same numbers
    in every mode (each task seeds itself and runs single-threaded).  ``on_result(i, result)`` is called
    here, in this process, as each task finishes (in any order on Dask).
    """
    bar = None
    if progress and tasks:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=desc, leave=False)
    out = [None] * len(tasks)

    def done(i, result):
        out[i] = result
        if on_result is not None:
            on_result(i, result)
        if bar is not None:
            bar.update(1)

    try:
        if not tasks:
            return out
        if workers is None and scheduler is None:
            for i, task in enumerate(tasks):
                done(i, _single_threaded_call(fn, task))
            return out
        from distributed import as_completed

        from ntkgan._cluster import open_client

        with open_client(scheduler, workers) as client:
            futures = client.map(_single_threaded_call, [fn] * len(tasks), tasks, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for future in as_completed(futures):
                done(index[future.key], future.result())
        return out
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------------------------------------------------
# the skeleton: tasks with records (a killed study resumes), then the outputs


#: the folder of a study's task records, inside its output directory
TASKS_DIR = "tasks"


def task_key(study: str, task: dict) -> str:
    """``<study>-<16 hex digits>``: the SHA-256 of the task's canonical JSON, so a task's record is found again
    exactly when every parameter of the task is the same."""
    text = json.dumps(task, sort_keys=True, separators=(",", ":"), default=repr)
    return f"{study}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _encode(value):
    """JSON-ready: arrays as ``{"__ndarray__": [...], "dtype": ..., "shape": [...]}`` (floats by repr: exact)."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.ravel().tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _read_record(path: Path, task: dict):
    """The result stored at ``path`` for exactly ``task``, or None (missing, unreadable, another task)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or _decode(data.get("task")) != _decode(_encode(task)):
        return None
    return _decode(data.get("result"))


def run_tasks(fn: Callable, tasks: list, out_dir: Path, *, study: str, workers=None, scheduler=None,
              progress: bool = False) -> tuple[list, int]:
    """The results of ``fn`` over ``tasks`` (:func:`map_tasks`), kept on disk so that a killed study resumes.

    Each finished task's result is written (atomically) to ``out_dir/tasks/<task_key>.json`` as soon as it
    comes back; a task whose record is already there, for exactly the same task, is read instead of run.
    Running a killed study again with the same arguments therefore redoes only the unfinished tasks, and
    gives the same numbers (floats are stored by ``repr``, arrays with their dtype).  Returns the results
    in the order of ``tasks`` and how many were read from records.
    """
    records = Path(out_dir) / TASKS_DIR
    paths = [records / f"{task_key(study, t)}.json" for t in tasks]
    runs = [_read_record(p, t) for p, t in zip(paths, tasks)]
    todo = [i for i, r in enumerate(runs) if r is None]

    def save(j, result):
        i = todo[j]
        runs[i] = result
        write_json(paths[i], {"task": _encode(tasks[i]), "result": _encode(result)})

    map_tasks(fn, [tasks[i] for i in todo], workers=workers, scheduler=scheduler, progress=progress, desc=study,
              on_result=save)
    return runs, len(tasks) - len(todo)


@dataclass(kw_only=True)
class StudyResult:
    """What every study returns (each study's result adds its own fields).

    Attributes
    ----------
    out_dir : Path
    params : dict
        The study's parameters (as in its ``<study>_study.json``).
    runs : list of dict
        One per task, in the order of the tasks.
    summary : list of dict
        One row per table line of the study's summary.
    wall_time : float
        Seconds.
    files : dict
        name -> path of every file written.
    resumed : int
        Tasks read from the records of an earlier, interrupted call (``out/tasks/``) instead of run.
    """

    out_dir: Path
    params: dict
    runs: list
    summary: list
    wall_time: float
    files: dict = field(default_factory=dict)
    resumed: int = 0


def columns_of(rows, columns, **renamed):
    """Each row's ``columns`` (a generator of dicts for :meth:`Outputs.csv`); ``renamed`` maps a column to
    the key it is read from (``diversity="final"``)."""
    return ({c: row[renamed.get(c, c)] for c in columns} for row in rows)


class Outputs:
    """The files a study writes into its output directory, each atomically, remembered by name::

        files = Outputs(out_dir)
        files.csv("x_summary.csv", COLUMNS, rows)
        files.text("x_summary.md", markdown)
        files.json("x_study.json", params)
        plot(files.path("x.png"), ...)
        return files.written      # {name: path}
    """

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.written: dict = {}

    def path(self, name: str) -> Path:
        self.written[name] = self.out_dir / name
        return self.written[name]

    def csv(self, name: str, columns, rows) -> None:
        write_csv(self.path(name), columns, rows)

    def text(self, name: str, text: str) -> None:
        atomic_write_text(self.path(name), text)

    def json(self, name: str, data, *, sort_keys: bool = True) -> None:
        write_json(self.path(name), data, sort_keys=sort_keys)
