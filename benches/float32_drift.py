#!/usr/bin/env python
"""How far a float32 finite-discriminator run ends from the float64 one, and how far the flow carries a
rounding-size difference in float64 alone.

Usage::

    python benches/float32_drift.py [--steps 2000] [--losses lsgan,ipm_reset,ipm] [--chaos lsgan,ipm_reset]
                                    [--trace ipm_reset --trace-steps 12] [--out DIR]

For each loss in ``--losses``: the preset's run (eight_gaussians, 500 vs 500, ``relu``, seed 0) for ``--steps``
generator steps with ``d_dtype="float64"`` and with ``"float32"``; the final Sinkhorn divergences and the
distances between matched particles (particle i of one run vs particle i of the other; median and max, beside
the cloud's spread, the largest coordinate deviation of a particle from the mean).  For each loss in ``--chaos``: the
float64 run against the same run with its initial particles multiplied by ``1 + 1e-12 N(0, 1)``, the same
figures: a chaotic flow amplifies any difference, a stable one keeps it at its size.  For the loss in
``--trace``: the float64 and float32 runs side by side for ``--trace-steps`` steps, with the quantiles of the
matched particles' distances after each step (how a difference spreads from a few particles to all).

Results: a Markdown table on stdout and ``<out>/float32_drift.{json,md}``.  Timings are not the point here
(several minutes per run on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:
    import ntkgan  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(REPO / "python"))

from ntkgan._malloc import keep_freed_memory
from ntkgan.flows import make_flow
from ntkgan.metrics import sinkhorn_divergence
from ntkgan.presets import make_config


def final_state(loss: str, steps: int, dtype: str, perturb: bool = False) -> tuple[np.ndarray, float]:
    flow = make_flow(make_config(loss, d_dtype=dtype))
    if perturb:
        x = flow.particles  # the flow's own array
        x *= 1.0 + 1e-12 * np.random.default_rng(1).standard_normal(x.shape)
    flow.run(steps)
    x = np.array(flow.particles, copy=True)
    return x, float(sinkhorn_divergence(x, flow.target))


def compare(a: tuple, b: tuple) -> dict:
    (xa, sa), (xb, sb) = a, b
    d = np.linalg.norm(xa - xb, axis=1)
    return {"sinkhorn_a": sa, "sinkhorn_b": sb, "sinkhorn_rel": abs(sb - sa) / sa,
            "particles_median": float(np.median(d)), "particles_max": float(d.max()),
            "spread": float(np.abs(xa - xa.mean(axis=0)).max())}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--losses", default="lsgan,ipm_reset,ipm")
    p.add_argument("--chaos", default="lsgan,ipm_reset")
    p.add_argument("--trace", default="ipm_reset")
    p.add_argument("--trace-steps", type=int, default=12)
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results")
    args = p.parse_args(argv)
    keep_freed_memory()
    report = {"steps": args.steps, "float32": {}, "chaos": {}}
    lines = [f"{args.steps} steps, seed 0; particles matched one to one.", "",
             "| loss | comparison | Sinkhorn a | Sinkhorn b | relative | particle distance, median (max) | spread |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for loss in filter(None, args.losses.split(",")):
        row = compare(final_state(loss, args.steps, "float64"), final_state(loss, args.steps, "float32"))
        report["float32"][loss] = row
        lines.append(f"| {loss} | float64 vs float32 | {row['sinkhorn_a']:.5g} | {row['sinkhorn_b']:.5g} | "
                     f"{row['sinkhorn_rel']:.2g} | {row['particles_median']:.2g} ({row['particles_max']:.2g}) | "
                     f"{row['spread']:.2g} |")
        print(lines[-1], flush=True)
    for loss in filter(None, args.chaos.split(",")):
        row = compare(final_state(loss, args.steps, "float64"),
                      final_state(loss, args.steps, "float64", perturb=True))
        report["chaos"][loss] = row
        lines.append(f"| {loss} | float64 vs float64 perturbed 1e-12 | {row['sinkhorn_a']:.5g} | "
                     f"{row['sinkhorn_b']:.5g} | {row['sinkhorn_rel']:.2g} | {row['particles_median']:.2g} "
                     f"({row['particles_max']:.2g}) | {row['spread']:.2g} |")
        print(lines[-1], flush=True)
    if args.trace:
        flows = [make_flow(make_config(args.trace, d_dtype=dt)) for dt in ("float64", "float32")]
        lines += ["", f"{args.trace}, float64 vs float32, step by step: distances of matched particles", "",
                  "| step | median | 90 % | 99 % | max | particles moved > 1e-3 apart |", "|---:|---:|---:|---:|---:|---:|"]
        report["trace"] = []
        for step in range(1, args.trace_steps + 1):
            for flow in flows:
                flow.step()
            d = np.linalg.norm(flows[0].particles - flows[1].particles, axis=1)
            q = [float(v) for v in np.quantile(d, [0.5, 0.9, 0.99, 1.0])]
            report["trace"].append({"step": step, "quantiles": q, "apart": int((d > 1e-3).sum())})
            lines.append(f"| {step} | {q[0]:.1e} | {q[1]:.1e} | {q[2]:.1e} | {q[3]:.1e} | {int((d > 1e-3).sum())} |")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "float32_drift.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "float32_drift.md").write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
