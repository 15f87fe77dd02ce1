#!/usr/bin/env python
r"""The paper's protocol at full length: what one generator step costs, and how far it is from its floor.

Usage::

    python benches/bench_paper_scale.py [--quick] [--steps N] [--warmup W] [--rate-seconds S] [--out DIR]

Setting: the default presets (eight_gaussians, 500 vs 500 points, ``relu`` = ReLU depth 3, width 128,
w_std = b_std = 1), float64 unless said, on the CPU, all cores.  Each flow is
``make_flow(make_config(loss, **overrides))``; ``W`` warm-up steps (default 3), then ``N`` timed
``flow.step()`` calls (default 30; ``--quick`` 6), each timed with :func:`time.perf_counter`: no metrics, no
files.  Reported per loss: median and mean ms per step, and the 50 000-step projection.

1. **Finite-width discriminators at the GEMM limit** (``ipm``, ``ipm_reset``, ``lsgan``; float64 and
   float32).  A generator step of a finite discriminator is ``s = n_d_steps`` gradient steps of the network
   on the ``n = N + M`` training points, then one forward and input-gradient pass at the ``N`` particles.
   Its GEMM work, with :math:`a_l = n_l n_{l+1}` the sizes of the dense layers (``[2, 128, 128, 128, 1]``)
   and :math:`h` the number of plain halves (2 for the antisymmetric ``f0="zero"``, 1 for ``"random"``), is

   .. math::
       F = h\Big[s \cdot 2n\big(2\textstyle\sum_l a_l + \sum_{l\ge1} a_l\big)
           + 2N\big(\textstyle\sum_l a_l + \sum_{l\ge1} a_l + a_0\big)\Big]

   (forward, backward to the first hidden layer, weight update; then forward, backward, input gradient):
   4.10 GFLOP for ``ipm_reset``.  The **floor** is :math:`F / R` with :math:`R` the machine's GEMM rate
   for the networks' shape (1000 x 128 times 128 x 128), measured in the same run as the best of numpy's
   ``@`` (OpenBLAS, all threads) and the Rust engine's GEMM (``ntkgan._core.gemm_rate``: matrixmultiply
   over row chunks on the core's pool), each for ``S`` seconds (default 2).  Target: step / floor
   <= 1.5.  Also the discriminator training alone with today's numpy trainer (``engine="numpy"``) beside
   the Rust engine, on the same data (one BLAS thread and the runner's malloc settings, as in a run).
2. **float32**: the same flows with ``d_dtype="float32"``; target float64 / float32 >= 1.7.
3. **Vanilla vs LSGAN**: ``inf_vanilla`` (the paper's Lambert-W solver) and ``inf_vanilla_ode`` (the exact
   flow) against ``inf_lsgan``; target vanilla / LSGAN <= 2.

Nothing is asserted on timings.  Results: a Markdown table on stdout and ``<out>/bench_paper_scale.json``
and ``.md`` (``_quick`` with ``--quick``), with the machine (CPU, cores, commit, versions, load average).
Run it on a quiet machine (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import ntkgan
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(REPO / "python"))
    import ntkgan

from bench_kernels import _loadavg, machine_info
from ntkgan import _core
from ntkgan._malloc import keep_freed_memory
from ntkgan.discriminator._finite import FiniteDiscriminator
from ntkgan.flows import make_flow
from ntkgan.presets import make_config
from ntkgan.threads import blas_single_thread

PAPER_STEPS = 50_000
FINITE = ("ipm", "ipm_reset", "lsgan")
TARGET_FLOOR_RATIO = 1.5
TARGET_F32_SPEEDUP = 1.7
TARGET_VANILLA_RATIO = 2.0


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# the floor


def gemm_flops(cfg) -> float:
    """GEMM floating-point operations of one generator step of ``cfg``'s finite discriminator (module doc)."""
    dims = [2] + [cfg.d_width] * cfg.d_depth + [1]
    a = [dims[i] * dims[i + 1] for i in range(len(dims) - 1)]
    halves = 2 if cfg.d_f0 == "zero" else 1
    n_fake, n = cfg.n_source, cfg.n_source + cfg.n_target
    train = cfg.n_d_steps * 2 * n * (2 * sum(a) + sum(a[1:]))
    evaluate = 2 * n_fake * (sum(a) + sum(a[1:]) + a[0])
    return float(halves * (train + evaluate))


def numpy_gemm_rate(m: int, k: int, n: int, dtype: str, seconds: float) -> float:
    """GFLOP/s of numpy's ``A @ B`` (all BLAS threads) for ``A`` (m, k), ``B`` (k, n)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k)).astype(dtype), rng.random((k, n)).astype(dtype)
    out = np.empty((m, n), dtype=dtype)
    np.matmul(a, b, out=out)
    reps, start = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - start < seconds:
        np.matmul(a, b, out=out)
        reps += 1
    return 2.0 * m * k * n * reps / (time.perf_counter() - start) / 1e9


def gemm_rates(width: int, n: int, seconds: float) -> dict:
    out = {}
    for dtype in ("float64", "float32"):
        numpy_rate = numpy_gemm_rate(n, width, width, dtype, seconds)
        rust_rate = _core.gemm_rate(n, width, width, dtype, seconds)
        out[dtype] = {"numpy_gflops": numpy_rate, "rust_gflops": rust_rate, "best_gflops": max(numpy_rate, rust_rate)}
        say(f"GEMM {n}x{width}x{width} {dtype}: numpy {numpy_rate:.1f}, rust {rust_rate:.1f} GFLOP/s")
    return out


# --------------------------------------------------------------------------------------------------
# flows


def time_flow(cfg, steps: int, warmup: int) -> dict:
    flow = make_flow(cfg)
    for _ in range(warmup):
        flow.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        flow.step()
        times.append(time.perf_counter() - start)
    ms = [1e3 * t for t in times]
    median = statistics.median(ms)
    return {"steps": steps, "median_ms": median, "mean_ms": statistics.fmean(ms), "min_ms": min(ms),
            "projected_50k_min": median * PAPER_STEPS / 60_000.0}


def time_training(cfg, engine: str, repeats: int) -> float:
    """Median ms of one generator step's discriminator training (``n_d_steps`` steps from a fresh network)."""
    flow = make_flow(cfg)
    fake, real = flow.particles, flow.target
    ms = []
    with blas_single_thread():  # as inside a flow step
        for r in range(repeats + 1):
            disc = FiniteDiscriminator.init(cfg.discriminator_arch(), 2, loss=cfg.d_loss, f0=cfg.d_f0, seed=r,
                                            dtype=cfg.d_dtype, engine=engine)
            start = time.perf_counter()
            disc.step(fake, real, n_steps=cfg.n_d_steps, lr=cfg.d_lr)
            if r:
                ms.append(1e3 * (time.perf_counter() - start))
    return statistics.median(ms)


# --------------------------------------------------------------------------------------------------
# report


def markdown(report: dict) -> str:
    lines = []
    rates = report["gemm_rates"]
    lines.append(f"GEMM rate for {report['shape']}: float64 numpy {rates['float64']['numpy_gflops']:.1f}, "
                 f"rust {rates['float64']['rust_gflops']:.1f}; float32 numpy "
                 f"{rates['float32']['numpy_gflops']:.1f}, rust {rates['float32']['rust_gflops']:.1f} GFLOP/s "
                 "(the floor uses the best of each type).")
    lines.append("")
    lines.append("| loss | dtype | GFLOP/step | floor ms | step ms (median) | step / floor | target | met | "
                 "50 000 steps | numpy trainer ms | rust trainer ms |")
    lines.append("|---|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|")
    for row in report["finite"]:
        met = "yes" if row["floor_ratio"] <= TARGET_FLOOR_RATIO else "**no**"
        np_ms = f"{row['numpy_train_ms']:.1f}" if row.get("numpy_train_ms") is not None else "n/a"
        lines.append(f"| {row['loss']} | {row['dtype']} | {row['gflop']:.2f} | {row['floor_ms']:.1f} | "
                     f"{row['median_ms']:.1f} | {row['floor_ratio']:.2f} | <= {TARGET_FLOOR_RATIO} | {met} | "
                     f"{row['projected_50k_min']:.0f} min | {np_ms} | {row['rust_train_ms']:.1f} |")
    lines.append("")
    lines.append("| loss | float64 ms | float32 ms | speed-up | target | met |")
    lines.append("|---|---:|---:|---:|---:|:---:|")
    for row in report["float32"]:
        met = "yes" if row["speedup"] >= TARGET_F32_SPEEDUP else "**no**"
        lines.append(f"| {row['loss']} | {row['f64_ms']:.1f} | {row['f32_ms']:.1f} | {row['speedup']:.2f}x | "
                     f">= {TARGET_F32_SPEEDUP}x | {met} |")
    lines.append("")
    lines.append("| loss | solver | step ms (median) | / inf_lsgan | target | met | 50 000 steps |")
    lines.append("|---|---|---:|---:|---:|:---:|---:|")
    for row in report["vanilla"]:
        target = f"<= {TARGET_VANILLA_RATIO}" if row["loss"].startswith("inf_vanilla") else ""
        met = "" if not target else ("yes" if row["ratio"] <= TARGET_VANILLA_RATIO else "**no**")
        lines.append(f"| {row['loss']} | {row['solver']} | {row['median_ms']:.1f} | {row['ratio']:.2f} | "
                     f"{target} | {met} | {row['projected_50k_min']:.0f} min |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps (a smoke run)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per flow (default 30, quick 6)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rate-seconds", type=float, default=None, help="seconds per GEMM rate (default 2)")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results")
    args = p.parse_args(argv)
    steps = args.steps or (6 if args.quick else 30)
    seconds = args.rate_seconds if args.rate_seconds is not None else (0.2 if args.quick else 2.0)
    keep_freed_memory()  # as ntkgan.runner.run does (glibc keeps freed blocks for the numpy trainer)
    say(f"load average before: {_loadavg()}")
    base = make_config("ipm_reset")
    n = base.n_source + base.n_target
    report = {"machine": machine_info(), "steps": steps, "warmup": args.warmup,
              "shape": f"{n} x {base.d_width} x {base.d_width}",
              "gemm_rates": gemm_rates(base.d_width, n, seconds), "finite": [], "float32": [], "vanilla": []}
    by = {}
    for dtype in ("float64", "float32"):
        for loss in FINITE:
            cfg = make_config(loss, d_dtype=dtype)
            say(f"{loss} {dtype}")
            row = {"loss": loss, "dtype": dtype, **time_flow(cfg, steps, args.warmup)}
            flops = gemm_flops(cfg)
            rate = report["gemm_rates"][dtype]["best_gflops"]
            row.update(gflop=flops / 1e9, floor_ms=flops / rate / 1e6)
            row["floor_ratio"] = row["median_ms"] / row["floor_ms"]
            row["rust_train_ms"] = time_training(cfg, "rust", 3 if args.quick else 7)
            row["numpy_train_ms"] = time_training(cfg, "numpy", 2 if args.quick else 5) if dtype == "float64" else None
            report["finite"].append(row)
            by[(loss, dtype)] = row
    for loss in FINITE:
        f64, f32 = by[(loss, "float64")]["median_ms"], by[(loss, "float32")]["median_ms"]
        report["float32"].append({"loss": loss, "f64_ms": f64, "f32_ms": f32, "speedup": f64 / f32})
    lsgan = {"loss": "inf_lsgan", "solver": "krylov (closed form)", **time_flow(make_config("inf_lsgan"), steps,
                                                                              args.warmup)}
    for loss, solver, cfg in (("inf_vanilla", "lambertw", make_config("inf_vanilla")),
                              ("inf_vanilla_ode", "ode (Taylor series)", make_config("inf_vanilla_ode"))):
        say(f"{loss} {solver}")
        report["vanilla"].append({"loss": loss, "solver": solver, **time_flow(cfg, steps, args.warmup)})
    report["vanilla"].insert(0, lsgan)
    for row in report["vanilla"]:
        row["ratio"] = row["median_ms"] / lsgan["median_ms"]
    report["load_after"] = _loadavg()
    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_paper_scale_quick" if args.quick else "bench_paper_scale"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (args.out / f"{stem}.md").write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
