#!/usr/bin/env python
r"""The paper's protocol at full length: what one generator step costs, and how far it is from its floor.

Usage::

    python benches/bench_paper_scale.py [--quick] [--rounds R] [--steps K] [--warmup W] [--rate-seconds S]
                                        [--out DIR]

Setting: the default presets (eight_gaussians, 500 vs 500 points, ``relu`` = ReLU depth 3, width 128,
w_std = b_std = 1), float64 unless said, on the CPU, all cores.  Each flow is
``make_flow(make_config(loss, **overrides))``; ``W`` warm-up steps (default 3), then ``R`` rounds of ``K``
``flow.step()`` calls per flow, each timed with :func:`time.perf_counter`: no metrics, no files.  Reported
per loss: median and mean ms per step, and the 50 000-step projection.

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
   over row chunks on the core's pool), each the best of short bursts over ``S`` seconds (default 0.5).
   A shared machine's speed drifts (the same 10 gradient steps take 27-57 ms from one call to the next on
   the 2-core VM these figures come from), so every timed step of a finite flow is paired with a 20 ms
   burst of the Rust kernel's GEMM measured just before it (faster than numpy's here, so the stricter floor;
   numpy's spinning BLAS threads would also slow the step that follows): step / floor is the median over
   steps of step time x burst rate / F.  Also shown: the median step over the floor at the
   best rate seen in the whole run (stricter) and at numpy's best rate (the BLAS the issue's plan
   measured).  The flows run in ``R`` rounds (default 6) of ``K`` steps each (default 8).
   Target: step / floor <= 1.5.  Also the discriminator training alone with today's numpy trainer (``engine="numpy"``) beside
   the Rust engine, on the same data (one BLAS thread and the runner's malloc settings, as in a run).
2. **float32**: the same flows with ``d_dtype="float32"``; target float64 / float32 >= 1.7.
3. **One discriminator step per generator step** (``d_steps=1``, the original ``train.py``'s default; the
   presets' ``round(t / d_lr)`` steps train for time ``T = t`` instead): the same three flows, float64.
4. **Vanilla vs LSGAN**: ``inf_vanilla`` (the paper's Lambert-W solver) and ``inf_vanilla_ode`` (the exact
   flow) against ``inf_lsgan``; target vanilla / LSGAN <= 2.

Nothing is asserted on timings.  Results: a Markdown table on stdout and ``<out>/bench_paper_scale.json``
and ``.md`` (``_quick`` with ``--quick``), with the machine (CPU, cores, commit, versions, load average).
Run it on a quiet machine (``uptime``).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import _loadavg, arg_parser, machine_info, write_report
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
    """Best GFLOP/s of numpy's ``A @ B`` (all BLAS threads), ``A`` (m, k), ``B`` (k, n), over bursts of 10
    products repeated for ``seconds``."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k)).astype(dtype), rng.random((k, n)).astype(dtype)
    out = np.empty((m, n), dtype=dtype)
    np.matmul(a, b, out=out)
    best, start = 0.0, time.perf_counter()
    while best == 0.0 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(10):
            np.matmul(a, b, out=out)
        best = max(best, 20.0 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best


def rust_gemm_rate(m: int, k: int, n: int, dtype: str, seconds: float) -> float:
    """Best GFLOP/s of the Rust engine's GEMM over bursts of 20 ms repeated for ``seconds``."""
    best, start = 0.0, time.perf_counter()
    while best == 0.0 or time.perf_counter() - start < seconds:
        best = max(best, _core.gemm_rate(m, k, n, dtype, 0.02))
    return best


def measure_rates(rates: dict, width: int, n: int, seconds: float) -> None:
    """Append one measurement of numpy's and the Rust engine's GEMM rate per dtype to ``rates``.

    After numpy's products its BLAS threads spin for a while, on the cores the Rust pool needs: the
    function waits 0.3 s before returning (the flows run with one BLAS thread, as in a run)."""
    for dtype in ("float64", "float32"):
        numpy_rate = numpy_gemm_rate(n, width, width, dtype, seconds)
        time.sleep(0.3)
        rust_rate = rust_gemm_rate(n, width, width, dtype, seconds)
        rates[dtype]["numpy_gflops"].append(numpy_rate)
        rates[dtype]["rust_gflops"].append(rust_rate)
        say(f"GEMM {n}x{width}x{width} {dtype}: numpy {numpy_rate:.1f}, rust {rust_rate:.1f} GFLOP/s")


def best_rate(rates: dict, dtype: str) -> float:
    return max(max(rates[dtype]["numpy_gflops"]), max(rates[dtype]["rust_gflops"]))


# --------------------------------------------------------------------------------------------------
# flows


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

    def span(values):
        return f"{min(values):.0f}-{max(values):.0f}"

    lines.append(f"{report['rounds']} rounds of {report['steps_per_round']} steps per flow. "
                 f"GEMM rate for {report['shape']} ({len(rates['float64']['numpy_gflops'])} measurements): "
                 f"float64 numpy {span(rates['float64']['numpy_gflops'])}, rust "
                 f"{span(rates['float64']['rust_gflops'])}; float32 numpy {span(rates['float32']['numpy_gflops'])},"
                 f" rust {span(rates['float32']['rust_gflops'])} GFLOP/s. step / floor: the median over steps of the "
                 "step time over the GEMM work at the rate of a burst measured just before it; the floor column "
                 f"uses the best rate of the run ({rates['float64']['best_gflops']:.0f} and "
                 f"{rates['float32']['best_gflops']:.0f}).")
    lines.append("")
    lines.append("| loss | dtype | GFLOP/step | floor ms | step ms (median) | step / floor | target | met | "
                 "vs best rate | vs numpy rate | 50 000 steps | numpy trainer ms | rust trainer ms |")
    lines.append("|---|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|")
    for row in report["finite"]:
        met = "yes" if row["floor_ratio"] <= TARGET_FLOOR_RATIO else "**no**"
        np_ms = f"{row['numpy_train_ms']:.1f}" if row.get("numpy_train_ms") is not None else "n/a"
        lines.append(f"| {row['loss']} | {row['dtype']} | {row['gflop']:.2f} | {row['floor_ms']:.1f} | "
                     f"{row['median_ms']:.1f} | {row['floor_ratio']:.2f} | <= {TARGET_FLOOR_RATIO} | {met} | "
                     f"{row['floor_ratio_vs_best_rate']:.2f} | {row['floor_ratio_vs_numpy']:.2f} | "
                     f"{row['projected_50k_min']:.0f} min | {np_ms} | "
                     f"{row['rust_train_ms']:.1f} |")
    lines.append("")
    lines.append("| loss | float64 ms | float32 ms | speed-up | target | met |")
    lines.append("|---|---:|---:|---:|---:|:---:|")
    for row in report["float32"]:
        met = "yes" if row["speedup"] >= TARGET_F32_SPEEDUP else "**no**"
        lines.append(f"| {row['loss']} | {row['f64_ms']:.1f} | {row['f32_ms']:.1f} | {row['speedup']:.2f}x | "
                     f">= {TARGET_F32_SPEEDUP}x | {met} |")
    lines.append("")
    lines.append("| loss | d_steps | GFLOP/step | step ms (median) | default (round(t/d_lr)) ms | cheaper | "
                 "50 000 steps |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for row in report["one_step"]:
        lines.append(f"| {row['loss']} | 1 | {row['gflop']:.2f} | {row['median_ms']:.1f} | {row['default_ms']:.1f} | "
                     f"{row['cheaper']:.1f}x | {row['projected_50k_min']:.0f} min |")
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
    p = arg_parser(__doc__, quick="few steps (a smoke run)")
    p.add_argument("--rounds", type=int, default=None, help="rounds over all flows (default 6, quick 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per flow and round (default 8, quick 3)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rate-seconds", type=float, default=None,
                   help="seconds per GEMM rate measurement (default 0.5)")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results")
    args = p.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    steps = args.steps or (3 if args.quick else 8)
    seconds = args.rate_seconds if args.rate_seconds is not None else (0.1 if args.quick else 0.5)
    keep_freed_memory()  # as ntkgan.runner.run does (glibc keeps freed blocks for the numpy trainer)
    say(f"load average before: {_loadavg()}")
    base = make_config("ipm_reset")
    n = base.n_source + base.n_target
    cases = [(loss, dtype, make_config(loss, d_dtype=dtype)) for dtype in ("float64", "float32") for loss in FINITE]
    cases += [(loss, "d_steps=1", make_config(loss, d_steps=1)) for loss in FINITE]  # train.py's cadence
    cases += [("inf_lsgan", "krylov (closed form)", make_config("inf_lsgan")),
              ("inf_vanilla", "lambertw", make_config("inf_vanilla")),
              ("inf_vanilla_ode", "ode (Taylor series)", make_config("inf_vanilla_ode"))]
    flows = {}
    for loss, kind, cfg in cases:
        flows[(loss, kind)] = flow = make_flow(cfg)
        for _ in range(args.warmup):
            flow.step()
    rates = {dtype: {"numpy_gflops": [], "rust_gflops": []} for dtype in ("float64", "float32")}
    times = {key: [] for key in flows}  # per round: the step times (ms)
    paired = {key: [] for key in flows}  # per finite step: (ms, the GEMM rate of a burst just before it)
    finite_keys = {(loss, dtype): cfg for loss, dtype, cfg in cases[:2 * len(FINITE)]}
    for r in range(rounds):
        say(f"round {r + 1} of {rounds}")
        measure_rates(rates, base.d_width, n, seconds)
        for key, flow in flows.items():
            ms = []
            for _ in range(steps):
                if key in finite_keys:  # the Rust kernel's rate (numpy's BLAS is slower; see measure_rates)
                    burst = _core.gemm_rate(n, base.d_width, base.d_width, key[1], 0.02)
                start = time.perf_counter()
                flow.step()
                ms.append(1e3 * (time.perf_counter() - start))
                if key in finite_keys:
                    paired[key].append((ms[-1], burst))
            times[key].append(ms)
    report = {"machine": machine_info(), "rounds": rounds, "steps_per_round": steps, "warmup": args.warmup,
              "shape": f"{n} x {base.d_width} x {base.d_width}", "gemm_rates": rates, "finite": [],
              "float32": [], "one_step": [], "vanilla": []}
    for dtype in ("float64", "float32"):
        rates[dtype]["best_gflops"] = best_rate(rates, dtype)

    def summary(key):
        every = [t for per_round in times[key] for t in per_round]
        median = statistics.median(every)
        return {"median_ms": median, "mean_ms": statistics.fmean(every), "min_ms": min(every),
                "round_medians_ms": [statistics.median(t) for t in times[key]],
                "projected_50k_min": median * PAPER_STEPS / 60_000.0}

    for loss, dtype, cfg in cases[:2 * len(FINITE)]:
        key = (loss, dtype)
        row = {"loss": loss, "dtype": dtype, **summary(key), "gflop": gemm_flops(cfg) / 1e9}
        flops = gemm_flops(cfg)
        per_step = [ms / (flops / rate / 1e6) for ms, rate in paired[key]]
        row["floor_ms"] = flops / rates[dtype]["best_gflops"] / 1e6
        row["floor_ratio"] = statistics.median(per_step)
        row["floor_ratio_steps"] = per_step
        row["burst_gflops_median"] = statistics.median(rate for _, rate in paired[key])
        row["floor_ratio_vs_best_rate"] = row["median_ms"] / row["floor_ms"]
        numpy_rate = max(rates[dtype]["numpy_gflops"])
        row["floor_ratio_vs_numpy"] = row["median_ms"] / (flops / numpy_rate / 1e6)
        say(f"{loss} {dtype}: training alone, rust and numpy")
        row["rust_train_ms"] = time_training(cfg, "rust", 3 if args.quick else 7)
        row["numpy_train_ms"] = time_training(cfg, "numpy", 2 if args.quick else 5) if dtype == "float64" else None
        report["finite"].append(row)
    for loss in FINITE:
        t64, t32 = times[(loss, "float64")], times[(loss, "float32")]
        ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(t64, t32)]
        report["float32"].append({"loss": loss, "f64_ms": summary((loss, "float64"))["median_ms"],
                                  "f32_ms": summary((loss, "float32"))["median_ms"],
                                  "speedup": statistics.median(ratios), "speedup_rounds": ratios})
    for loss, kind, cfg in cases[2 * len(FINITE):3 * len(FINITE)]:
        one = summary((loss, kind))
        ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(times[(loss, "float64")],
                                                                             times[(loss, kind)])]
        report["one_step"].append({"loss": loss, "gflop": gemm_flops(cfg) / 1e9, **one,
                                   "default_ms": summary((loss, "float64"))["median_ms"],
                                   "cheaper": statistics.median(ratios)})
    lsgan_key = ("inf_lsgan", "krylov (closed form)")
    for loss, kind, _ in cases[3 * len(FINITE):]:
        ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(times[(loss, kind)], times[lsgan_key])]
        report["vanilla"].append({"loss": loss, "solver": kind, **summary((loss, kind)),
                                  "ratio": statistics.median(ratios), "ratio_rounds": ratios})
    report["load_after"] = _loadavg()
    write_report(args.out, "bench_paper_scale_quick" if args.quick else "bench_paper_scale", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
