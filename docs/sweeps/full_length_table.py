#!/usr/bin/env python
"""Regenerate ``docs/sweeps/full_length.csv`` and print the tables of ``full_length.md`` from the runs' records.

Usage (from the repository root)::

    python docs/sweeps/full_length_table.py

It reads every ``docs/sweeps/full_length/*/runs/*/result.json`` (the records ``ntkgan sweep`` writes, committed
as the runs finish) and writes one CSV row per complete run: ``sweep, loss, arch, data, seed, steps,
sinkhorn, energy, wall_time`` (seconds, resumed parts included), then prints, per sweep, a Markdown table of
the final Sinkhorn divergence (losses x architecture . data) with the runs still missing marked ``…``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("sweep", "loss", "arch", "data", "seed", "steps", "sinkhorn", "energy", "wall_time")
DATA = ("eight_gaussians", "density", "ab")


def records() -> list[dict]:
    out = []
    for path in sorted(HERE.glob("full_length/*/runs/*/result.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") == "complete":
            out.append(dict(rec, sweep=path.parents[2].name))
    return out


def table(rows: list[dict], sweep: str, losses, archs) -> str:
    lines = ["| loss | " + " | ".join(f"{d} · {a}" for d in DATA for a in archs) + " |",
             "|---|" + "---:|" * (len(DATA) * len(archs))]
    for loss in losses:
        cells = []
        for d in DATA:
            for a in archs:
                hit = [r for r in rows if (r["sweep"], r["loss"], r["arch"], r["data"]) == (sweep, loss, a, d)]
                cells.append(f"{hit[0]['sinkhorn']:.3g}" if hit else "…")
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    rows = records()
    with open(HERE / "full_length.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r["sweep"], r["loss"], r["arch"], r["data"], r["seed"], r["steps"],
                             repr(float(r["sinkhorn"])), repr(float(r["energy"])), f"{float(r['wall_time']):.1f}"])
    print(f"{len(rows)} complete runs -> {HERE / 'full_length.csv'}", file=sys.stderr)
    print("finite_5000 (5 000 steps):\n")
    print(table(rows, "finite_5000", ("inf_ipm", "inf_lsgan", "ipm", "ipm_reset", "lsgan"), ("relu",)))
    print("\ninfinite_50000 (50 000 steps):\n")
    print(table(rows, "infinite_50000", ("inf_ipm", "inf_lsgan"), ("relu", "relu_nobias", "rbf")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
