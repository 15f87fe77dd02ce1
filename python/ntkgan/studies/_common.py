"""Pieces shared by the studies: argument checks, the task map (serial or Dask), atomic CSV/text files."""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "check_count",
    "check_out",
    "check_real",
    "check_reals",
    "cluster_args",
    "format_value",
    "map_tasks",
    "parse_floats",
    "write_csv",
    "write_text",
]


# ---------------------------------------------------------------------------------------------------------
# validation


def check_count(value, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools refused); ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the given interval; ValueError naming ``name``."""
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
    if not bad:
        v = float(value)
        if low is not None and (v < low or (low_open and v == low)):
            bad = True
        if high is not None and (v > high or (high_open and v == high)):
            bad = True
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        cond = " and ".join(c for c in (lo, hi) if c)
        raise ValueError(f"{name} must be a finite real number{' ' + cond if cond else ''}, got {value!r}")
    return float(value)


def check_reals(values, name: str, **bounds) -> tuple[float, ...]:
    """A non-empty sequence of distinct numbers, each checked by :func:`check_real`, sorted ascending."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}")
    out = [check_real(v, f"{name}[{i}]", **bounds) for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name} must hold at least one value, got {values!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat values, got {out}")
    return tuple(sorted(out))


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
        workers = check_count(workers, "workers")
    if scheduler is not None:
        from ntkgan._cluster import check_scheduler_address

        scheduler = check_scheduler_address(scheduler)
    return workers, scheduler


def parse_floats(text: str, name: str) -> list[float]:
    """``"0,0.5,0.9"`` -> ``[0.0, 0.5, 0.9]``; ValueError naming ``name`` on a bad item."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"{name} must be a comma-separated list of numbers, got {text!r}")
    try:
        return [float(t) for t in items]
    except ValueError:
        raise ValueError(f"{name} must be a comma-separated list of numbers, got {text!r}") from None


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
) -> list:
    """``[fn(t) for t in tasks]``, each call with one Rust and one BLAS thread, in this process or on Dask.

    Serial when ``workers`` and ``scheduler`` are both None; otherwise ``client.map`` on a local
    ``LocalCluster`` of ``workers`` single-threaded processes, or on the cluster at ``scheduler``
    (:func:`ntkgan._cluster.open_client`).  ``fn`` must be a module-level function and each task plain
    data, so both pickle.  The results come back in the order of ``tasks``, and are the same numbers
    in every mode (each task seeds itself and runs single-threaded).
    """
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=desc, leave=False)
    try:
        if workers is None and scheduler is None:
            out = []
            for task in tasks:
                out.append(_single_threaded_call(fn, task))
                if bar is not None:
                    bar.update(1)
            return out
        from ntkgan._cluster import open_client

        with open_client(scheduler, workers) as client:
            futures = client.map(_single_threaded_call, [fn] * len(tasks), tasks, pure=False)
            if bar is not None:
                from distributed import as_completed

                for _ in as_completed(futures):
                    bar.update(1)
            return client.gather(futures)
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------------------------------------------------
# files


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name and rename it, so readers see whole files only."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def format_value(value) -> str:
    """CSV cell: ints as is, floats by ``repr`` (round-trips exactly), NaN/None empty, others ``str``."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (numbers.Integral, np.integer)):
        return str(int(value))
    if isinstance(value, (numbers.Real, np.floating)):
        v = float(value)
        return "" if math.isnan(v) else repr(v)
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows) -> None:
    """A CSV file with a header ``columns`` and one line per row (a dict or a sequence), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = [row.get(c) for c in columns] if isinstance(row, dict) else row
        writer.writerow([format_value(v) for v in values])
    write_text(path, buf.getvalue())
