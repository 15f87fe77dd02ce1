#!/usr/bin/env python
r"""What a cluster buys: the paper's whole grid at full length, projected from measured single-worker costs.

Usage::

    python benches/project_grid.py [--steps K] [--rows R] [--workers 1,2,16,64] [--seeds 3] [--out DIR]
    python benches/project_grid.py --records docs/sweeps/full_length [--workers ...] [--seeds 3]

The grid: losses ``inf_ipm, inf_lsgan, ipm, ipm_reset, lsgan`` x architectures ``relu, relu_nobias, rbf``
x data ``eight_gaussians, density, ab`` x seeds (default 3), at the presets' 50 000 steps with a metric row
every 100 steps (501 rows), as ``ntkgan sweep`` runs them: one single-threaded process per worker (one Rust
thread, one BLAS thread; ``ntkgan._cluster.single_threaded``).  The finite losses with the ``rbf`` NNGP
kernel are not valid runs, which leaves 108 runs.

For each valid (loss, arch, data) this process, single-threaded as a sweep worker, times ``K`` flow steps
(default 20, after 2 warm-up steps) and ``R`` metric rows (default 3), and projects one run as
``50 000 x (median step) + 501 x (median row)``; seeds cost the same.  The grid's wall time on ``W`` workers
is the makespan of the longest-first (LPT) assignment of the runs to workers, which is what Dask's
scheduler achieves for equal-priority tasks submitted longest first (within 4/3 of the optimum); it is
never below the longest run.  Scheduler and start-up overheads (seconds per run) are left out.

The projection uses costs measured at the start of a run; late in a run the infinite-width flows slow down
a little (converged particles sit on target points, so more near-coincident kernel pairs take the stable
path: the full inf_ipm run measured in issue 4 took 8 % longer than its 5 000-step projection).  The
measured full-length runs are in docs/sweeps/full_length.md.

With ``--records DIR`` nothing is timed: each (loss, arch, data) costs what its measured full-length run
took, ``wall_time x 50 000 / steps`` from the ``result.json`` records under ``DIR`` (``ntkgan sweep``'s, each
run on one single-threaded worker; the longest run when a combination has several), and a combination without
a record takes the cost of the same loss and data on the other ReLU architecture (``relu`` and
``relu_nobias`` have the same shapes and the same work per step), marked ``(from relu)``.  Records measured on
a loaded machine make this an upper bound.  Results go to ``<out>/project_grid_records.{json,md}``.

Results: a Markdown table on stdout and ``<out>/project_grid.{json,md}``.
"""

from __future__ import annotations

import heapq
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import _loadavg, arg_parser, machine_info, step_times, write_report
from ntkgan._cluster import single_threaded
from ntkgan._malloc import keep_freed_memory
from ntkgan.flows import make_flow
from ntkgan.presets import make_config
from ntkgan.runner import _columns, _measure, _metric_kernel

LOSSES = ("inf_ipm", "inf_lsgan", "ipm", "ipm_reset", "lsgan")
ARCHS = ("relu", "relu_nobias", "rbf")
DATA = ("eight_gaussians", "density", "ab")
PAPER_STEPS = 50_000
LOG_EVERY = 100


def say(msg: str) -> None:
    print(f"[project] {msg}", file=sys.stderr, flush=True)


def cost(loss: str, arch: str, data: str, steps: int, rows: int) -> dict | None:
    """Median seconds per flow step and per metric row, single-threaded; None for an invalid combination."""
    try:
        cfg = make_config(loss, arch, data)
    except ValueError:
        return None
    flow = make_flow(cfg)
    dataset_columns = None
    with single_threaded():
        step_s = step_times(flow, steps, warmup=2)
        from ntkgan.flows import load_dataset

        dataset = load_dataset(cfg)
        dataset_columns = _columns(dataset)
        kernel = _metric_kernel(cfg)
        row_s = []
        for _ in range(rows):
            t0 = time.perf_counter()
            _measure(flow.particles, dataset, kernel, 0.0)
            row_s.append(time.perf_counter() - t0)
    step, row = statistics.median(step_s), statistics.median(row_s)
    run_s = PAPER_STEPS * step + (PAPER_STEPS // LOG_EVERY + 1) * row
    return {"loss": loss, "arch": arch, "data": data, "step_ms": 1e3 * step, "row_s": row, "run_min": run_s / 60,
            "columns": len(dataset_columns)}


def costs_from_records(root: Path) -> list[dict]:
    """One cost per valid (loss, arch, data) from the sweep records under ``root`` (see the module notes)."""
    measured = {}
    for path in sorted(root.glob("**/result.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") != "complete" or not rec.get("steps") or rec.get("wall_time") is None:
            continue
        key = (rec["loss"], rec["arch"], rec["data"])
        run_s = float(rec["wall_time"]) * PAPER_STEPS / int(rec["steps"])
        if run_s > measured.get(key, (0.0, ""))[0]:
            measured[key] = (run_s, f"{rec['steps']} steps, {path.parents[2].name}")
    costs = []
    for loss in LOSSES:
        for arch in ARCHS:
            for data in DATA:
                try:
                    make_config(loss, arch, data)
                except ValueError:
                    continue
                source = (loss, arch, data)
                if source not in measured and arch in ("relu", "relu_nobias"):
                    source = (loss, "relu" if arch == "relu_nobias" else "relu_nobias", data)
                if source not in measured:
                    raise SystemExit(f"no record for {loss} {arch} {data} under {root}")
                run_s, origin = measured[source]
                if source[1] != arch:
                    origin += f" (from {source[1]})"
                costs.append({"loss": loss, "arch": arch, "data": data, "run_min": run_s / 60, "origin": origin})
    return costs


def makespan(durations: list[float], workers: int) -> float:
    """Longest-first list scheduling of ``durations`` on ``workers`` identical workers."""
    loads = [0.0] * workers
    heapq.heapify(loads)
    for d in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + d)
    return max(loads)


def markdown(report: dict) -> str:
    if report.get("records"):
        lines = ["| loss | arch | data | one run (50 000 steps) | measured on |", "|---|---|---|---:|---|"]
        for c in report["costs"]:
            lines.append(f"| {c['loss']} | {c['arch']} | {c['data']} | {c['run_min']:.0f} min | {c['origin']} |")
    else:
        lines = ["| loss | arch | data | step ms | metric row s | one run (50 000 steps) |",
                 "|---|---|---|---:|---:|---:|"]
        for c in report["costs"]:
            lines.append(f"| {c['loss']} | {c['arch']} | {c['data']} | {c['step_ms']:.1f} | {c['row_s']:.2f} | "
                         f"{c['run_min']:.0f} min |")
    lines.append("")
    total = report["total_hours"]
    lines.append(f"{report['runs']} runs ({report['seeds']} seeds), {total:.1f} h of single-worker time; the "
                 f"longest run {report['longest_hours']:.2f} h.")
    lines.append("")
    lines.append("| workers | wall time (LPT makespan) | efficiency |")
    lines.append("|---:|---:|---:|")
    for w, hours in report["wall_hours"].items():
        lines.append(f"| {w} | {hours:.2f} h | {total / (int(w) * hours):.0%} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = arg_parser(__doc__)
    p.add_argument("--steps", type=int, default=20, help="timed flow steps per combination (default 20)")
    p.add_argument("--rows", type=int, default=3, help="timed metric rows per combination (default 3)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", default="1,2,16,64")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results")
    p.add_argument("--records", type=Path, default=None,
                   help="project from the result.json records under this directory instead of timing")
    args = p.parse_args(argv)
    keep_freed_memory()
    say(f"load average before: {_loadavg()}")
    if args.records is not None:
        costs = costs_from_records(args.records)
    else:
        costs = []
        for loss in LOSSES:
            for arch in ARCHS:
                for data in DATA:
                    c = cost(loss, arch, data, args.steps, args.rows)
                    if c is not None:
                        say(f"{loss} {arch} {data}: {c['step_ms']:.1f} ms/step, {c['row_s']:.2f} s/row")
                        costs.append(c)
    durations = [60 * c["run_min"] for c in costs for _ in range(args.seeds)]
    report = {"machine": machine_info(), "steps": args.steps, "rows": args.rows, "seeds": args.seeds,
              "records": None if args.records is None else str(args.records),
              "costs": costs, "runs": len(durations), "total_hours": sum(durations) / 3600,
              "longest_hours": max(durations) / 3600,
              "wall_hours": {w: makespan(durations, int(w)) / 3600 for w in args.workers.split(",")},
              "load_after": _loadavg()}
    write_report(args.out, "project_grid" if args.records is None else "project_grid_records", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
