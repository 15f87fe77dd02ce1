#!/usr/bin/env python
r"""How far the JAX path's particles drift from the Rust path's, step by step (issue 14, item 3).

Usage::

    python benches/jax_path_drift.py [--steps 300] [--losses inf_ipm,inf_lsgan,ipm_reset,lsgan]
                                     [--at 1,10,30,100,300] [--out benches/results]

For each loss preset (relu, eight_gaussians 500 vs 500, float64 on the CPU) a Rust flow and a JAX-path flow
start from the same dataset and seed; at the listed steps the script records the largest particle
difference relative to the particles' spread (max |x_jax - x_rust| / std(x_rust)) and, at the last step,
the Sinkhorn divergence of both clouds to the target (``ntkgan.metrics.sinkhorn_divergence``, the run's
metric).  The two paths compute the same steps up to rounding (kernels within ~1e-13, other summation
orders); the flows then amplify those differences, so the drift grows with the step count.  Nothing is
asserted (``tests/test_jax_path.py`` asserts 1e-9 at step 10 and 1e-3 on Sinkhorn at step 300).  Writes
``<out>/jax_path_drift.{json,md}``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import _loadavg, arg_parser, machine_info, write_report
from ntkgan.flows import load_dataset, make_flow
from ntkgan.metrics import sinkhorn_divergence
from ntkgan.presets import make_config


def drift(loss: str, at: list[int]) -> dict:
    rust_cfg = make_config(loss, backend="rust")
    ds = load_dataset(rust_cfg)
    rust = make_flow(rust_cfg, ds)
    jflow = make_flow(make_config(loss, backend="jax", log_every=min(100, at[-1])), ds)
    rows, done = [], 0
    t_rust = t_jax = 0.0
    for step in at:
        t0 = time.perf_counter()
        rust.advance(step - done)
        t_rust += time.perf_counter() - t0
        t0 = time.perf_counter()
        jflow.advance(step - done)
        t_jax += time.perf_counter() - t0
        done = step
        rel = float(np.abs(jflow.particles - rust.particles).max() / rust.particles.std())
        rows.append({"step": step, "rel_to_spread": rel})
        print(f"[drift] {loss:9s} step {step:5d}: max |dx| / spread = {rel:.2e}", file=sys.stderr, flush=True)
    s_rust = sinkhorn_divergence(rust.particles, rust.target)
    s_jax = sinkhorn_divergence(jflow.particles, jflow.target)
    return {"loss": loss, "rows": rows, "sinkhorn_rust": s_rust, "sinkhorn_jax": s_jax,
            "sinkhorn_rel": abs(s_jax - s_rust) / s_rust, "seconds_rust": t_rust, "seconds_jax": t_jax}


def markdown(report: dict) -> str:
    m = report["machine"]
    at = report["at"]
    lines = [
        "# JAX path vs Rust path: particle drift",
        "",
        (f"Machine: {m['cpu_model']}, {m['cores']} cores; commit {m['git_commit'] or 'unknown'}; jax "
         f"{m['versions']['jax']}; 1-min load average {report['load_start']}. Presets on relu, eight_gaussians "
         "500 vs 500, float64, CPU; max |x_jax - x_rust| / std(x_rust) after each step count, and the "
         f"Sinkhorn divergences after {at[-1]} steps."),
        "",
        "| loss | " + " | ".join(f"step {s}" for s in at) + " | Sinkhorn rust | Sinkhorn JAX path | rel. diff |",
        "|---|" + "---:|" * (len(at) + 3),
    ]
    for r in report["losses"]:
        cells = " | ".join(f"{row['rel_to_spread']:.1e}" for row in r["rows"])
        lines.append(f"| {r['loss']} | {cells} | {r['sinkhorn_rust']:.6g} | {r['sinkhorn_jax']:.6g} "
                     f"| {r['sinkhorn_rel']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = arg_parser(__doc__)
    parser.add_argument("--losses", default="inf_ipm,inf_lsgan,ipm_reset,lsgan")
    parser.add_argument("--at", default="1,10,30,100,300", help="step counts at which to compare")
    parser.add_argument("--out", default=str(REPO / "benches" / "results"))
    args = parser.parse_args(argv)
    at = sorted({int(v) for v in args.at.split(",")})
    if not at or at[0] < 1:
        parser.error(f"--at must list step counts >= 1, got {args.at!r}")
    report = {"machine": machine_info(), "load_start": _loadavg(), "at": at,
              "losses": [drift(loss, at) for loss in args.losses.split(",")]}
    report["load_end"] = _loadavg()
    write_report(args.out, "jax_path_drift", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
