#!/usr/bin/env python
r"""JAX path / Rust path step-time ratio for any loss preset, measured paired (issue 14, item 4).

Usage::

    python benches/bench_jax_path.py [--losses inf_ipm,inf_lsgan,inf_vanilla,ipm,ipm_reset,lsgan]
                                     [--rounds 5] [--chunk 20] [--set d_dtype=float32] [--out benches/results]

For each preset (relu, eight_gaussians 500 vs 500, CPU) a Rust flow and a JAX-path flow run ``rounds``
rounds of ``chunk`` steps each, back to back (:func:`bench_flows.paired_ratio`: the JAX path compiles in
its first chunk, untimed); reported: the median per-step times and the median (min-max) of the per-round
ratios.  ``benches/bench_flows.py`` does the same for inf_ipm and inf_lsgan with the issue's targets,
the JAX host loop and the neural-tangents loop beside them.  Nothing is asserted.  Writes
``<out>/bench_jax_path.{json,md}``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_flows import REPO, paired_ratio  # also puts the source tree on sys.path
from bench_kernels import _loadavg, arg_parser, machine_info, write_report


def main(argv=None) -> dict:
    parser = arg_parser(__doc__)
    parser.add_argument("--losses", default="inf_ipm,inf_lsgan,inf_vanilla,ipm,ipm_reset,lsgan")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config option for every preset (repeatable), e.g. --set d_dtype=float32")
    parser.add_argument("--out", default=str(REPO / "benches" / "results"))
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.chunk < 1:
        parser.error("--rounds and --chunk must be >= 1")
    options = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    load_start = _loadavg()
    rows = [paired_ratio(loss, args.rounds, args.chunk, **options) for loss in args.losses.split(",")]
    m = machine_info()
    lines = [
        "# JAX path vs Rust path: step time, paired",
        "",
        (f"Machine: {m['cpu_model']}, {m['cores']} cores; commit {m['git_commit'] or 'unknown'}; jax "
         f"{m['versions']['jax']}; 1-min load average {load_start:.1f} at the start, {_loadavg():.1f} at the end. "
         f"Presets on relu, eight_gaussians 500 vs 500, CPU{', ' + str(options) if options else ''}; "
         f"{args.rounds} rounds of {args.chunk} steps per path, back to back."),
        "",
        "| loss | rust ms/step | JAX path ms/step | JAX path / rust | first chunk (compile) s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['loss']} | {np.median(r['rust_ms']):.1f} | {np.median(r['jax_path_ms']):.1f} "
                     f"| {r['median_ratio']:.2f}x ({r['min_ratio']:.2f}-{r['max_ratio']:.2f}) "
                     f"| {r['first_chunk_s']:.1f} |")
    md = "\n".join(lines) + "\n"
    stem = "bench_jax_path" + ("_" + "_".join(f"{k}-{v}" for k, v in options.items()) if options else "")
    write_report(args.out, stem, {"machine": m, "rows": rows, "options": options}, md)
    return {"rows": rows}


if __name__ == "__main__":
    main()
