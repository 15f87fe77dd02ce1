"""The results table of a sweep: one row per (loss, arch, data), written as CSV and as Markdown.

``results.csv`` columns: ``loss, arch, data, seeds`` (asked for), ``seeds_done``, ``sinkhorn_mean``,
``sinkhorn_std`` (population standard deviation over the finished seeds, numpy's default ``ddof=0``),
``energy_mean``, ``wall_time_mean`` (seconds per finished run), ``failed`` (count), ``errors``
(``seed S: message``, joined by `` | ``), ``missing`` (seeds neither finished nor failed: not run yet or
interrupted) and ``skipped`` (the reason when ``make_config`` rejects the combination).  Floats are written
with ``repr``, so equal numbers give equal text.

``results.md`` is laid out like the paper's table: rows are losses, columns dataset × architecture, cells
``mean ± std`` of the final Sinkhorn divergence, the best (lowest) mean of each column in bold.  It holds
no timing, so two sweeps of the same grid give the same file wherever they ran.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from ntkgan._io import atomic_write_text

__all__ = ["CSV_COLUMNS", "summarise", "write_csv", "write_markdown"]

CSV_COLUMNS = ("loss", "arch", "data", "seeds", "seeds_done", "sinkhorn_mean", "sinkhorn_std", "energy_mean",
               "wall_time_mean", "failed", "errors", "missing", "skipped")


def summarise(grid, records: dict, skipped) -> list[dict]:
    """One row per ``(loss, arch, data)`` of ``grid`` in table order.

    ``records`` maps ``(loss, arch, data, seed)`` to a run's record (missing runs are absent);
    ``skipped`` lists the rejected combinations.
    """
    reasons: dict = {}
    for s in skipped:
        reasons.setdefault(s.key, []).append(s.reason)
    rows = []
    for key in grid.table_keys():
        runs = [records.get(key + (seed,)) for seed in grid.seeds]
        done = [r for r in runs if r is not None and r.get("status") == "complete"]
        failed = [r for r in runs if r is not None and r.get("status") != "complete"]
        sink = np.array([r["sinkhorn"] for r in done], dtype=np.float64)
        energy = np.array([r["energy"] for r in done], dtype=np.float64)
        wall = np.array([r["wall_time"] for r in done], dtype=np.float64)
        skip = "; ".join(reasons.get(key, []))
        rows.append({
            "loss": key[0], "arch": key[1], "data": key[2],
            "seeds": len(grid.seeds),
            "seeds_done": len(done),
            "sinkhorn_mean": float(sink.mean()) if done else math.nan,
            "sinkhorn_std": float(sink.std()) if done else math.nan,
            "energy_mean": float(energy.mean()) if done else math.nan,
            "wall_time_mean": float(wall.mean()) if done else math.nan,
            "failed": len(failed),
            "errors": " | ".join(f"seed {r['seed']}: {r.get('error')}" for r in failed),
            "missing": 0 if skip else len(grid.seeds) - len(done) - len(failed),
            "skipped": skip,
        })
    return rows


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv(path, rows) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    atomic_write_text(path, buf.getvalue())


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def markdown(grid, rows, *, steps) -> str:
    """The Markdown text of :func:`write_markdown`."""
    by_key = {(r["loss"], r["arch"], r["data"]): r for r in rows}
    columns = [(data, arch) for data in grid.data for arch in grid.arch]
    best = {}
    for data, arch in columns:
        means = [by_key[(lo, arch, data)]["sinkhorn_mean"] for lo in grid.loss]
        finite = [m for m in means if not math.isnan(m)]
        best[(data, arch)] = min(finite) if len(finite) > 1 else None
    seeds = ", ".join(str(s) for s in grid.seeds)
    lines = [
        (f"Final Sinkhorn divergence (lower is better) after {steps} steps: mean ± std over seeds {seeds}; "
         "best mean of each column in bold; n/a: combination not valid."),
        "",
        "| loss | " + " | ".join(f"{data} · {arch}" for data, arch in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    notes = []
    for loss in grid.loss:
        cells = []
        for data, arch in columns:
            r = by_key[(loss, arch, data)]
            if r["skipped"]:
                cells.append("n/a")
                continue
            if r["seeds_done"] == 0:
                text = "failed" if r["failed"] else "—"
            else:
                text = f"{_fmt(r['sinkhorn_mean'])} ± {_fmt(r['sinkhorn_std'])}"
                if best[(data, arch)] is not None and r["sinkhorn_mean"] == best[(data, arch)]:
                    text = f"**{text}**"
            extra = []
            if r["failed"]:
                extra.append(f"{r['failed']} failed")
                notes.append(f"- {loss} · {data} · {arch}: {r['errors']}")
            if r["missing"]:
                extra.append(f"{r['missing']} missing")
            if extra and r["seeds_done"]:
                text += f" ({', '.join(extra)})"
            cells.append(text)
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    skipped = sorted({r["skipped"] for r in rows if r["skipped"]})
    if skipped:
        lines += ["", "Not valid (n/a):"]
        lines += [f"- {reason}" for reason in skipped]
    if notes:
        lines += ["", "Failed runs:"] + notes
    return "\n".join(lines) + "\n"


def write_markdown(path, grid, rows, *, steps) -> None:
    """Write ``results.md`` (see the module notes)."""
    atomic_write_text(path, markdown(grid, rows, steps=steps))
