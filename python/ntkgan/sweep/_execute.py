"""Running the pending runs of a sweep: in this process one after another, or as Dask tasks.

With Dask, each run is one task (:func:`ntkgan.sweep._task.run_setting`) submitted with ``retries``: an
exception escaping the task (not the run's own failure, which the task records) is retried, and a task
whose worker dies is rescheduled by the scheduler (up to ``distributed.scheduler.allowed-failures`` times,
3 by default; then the run is recorded as failed with ``KilledWorker``).  Records arrive as runs finish; a
tqdm bar counts finished and failed runs.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable

from ntkgan.sweep._records import write_record
from ntkgan.sweep._task import failed_record, run_setting

__all__ = ["execute"]


def _bar(total: int, initial: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="sweep", unit="run", disable=not progress,
                file=sys.stderr, dynamic_ncols=True)


class _Counter:
    """The progress bar and the finished / failed counts."""

    def __init__(self, bar, reused: int):
        self.bar, self.done, self.failed = bar, reused, 0

    def add(self, record: dict) -> None:
        if record.get("status") == "complete":
            self.done += 1
        else:
            self.failed += 1
        self.bar.set_postfix(finished=self.done, failed=self.failed, refresh=False)
        self.bar.update(1)


def _task_key(name: str) -> str:
    return f"ntkgan-run-{name}-{uuid.uuid4().hex}"


def execute(jobs, *, total: int, reused: int, serial: bool, scheduler: str | None, workers: int | None,
            retries: int, checkpoint_every: int, snapshot_every: int, progress: bool,
            on_record: Callable[[dict], None] | None = None) -> dict:
    """Run ``jobs`` (a list of ``(config_dict, run_dir)``) and return ``{"workers": n}``.

    ``on_record(record)`` is called as each run finishes (in completion order).  ``total`` and ``reused``
    size the progress bar (runs in the grid, runs already finished).
    """
    options = {"checkpoint_every": checkpoint_every, "snapshot_every": snapshot_every}
    bar = _bar(total, reused, progress)
    count = _Counter(bar, reused)

    def finish(record):
        count.add(record)
        if on_record is not None:
            on_record(record)

    try:
        if serial:
            for config_dict, run_dir in jobs:
                finish(run_setting(config_dict, str(run_dir), **options))
            return {"workers": 1}
        return _execute_dask(jobs, scheduler=scheduler, workers=workers, retries=retries, options=options,
                             finish=finish)
    finally:
        bar.close()


def _execute_dask(jobs, *, scheduler, workers, retries, options, finish) -> dict:
    from ntkgan._cluster import count_workers, open_client

    with open_client(scheduler, workers) as client:
        import distributed

        seen = count_workers(client)
        futures = {}
        for config_dict, run_dir in jobs:
            name = run_dir.name
            fut = client.submit(run_setting, config_dict, str(run_dir), key=_task_key(name), retries=retries,
                                pure=False, **options)
            futures[fut] = (config_dict, run_dir)
        try:
            for fut in distributed.as_completed(list(futures)):
                config_dict, run_dir = futures[fut]
                try:
                    record = fut.result()
                except Exception as exc:  # noqa: BLE001 - retries exhausted, KilledWorker: the sweep goes on
                    record = failed_record(config_dict, f"{type(exc).__name__}: {exc}")
                    write_record(run_dir, record)
                fut.release()
                seen = max(seen, count_workers(client))
                finish(record)
        except BaseException:
            client.cancel(list(futures))
            raise
    return {"workers": seen}
