#!/usr/bin/env python
r"""Speed of the infinite-width discriminator solvers (``ntkgan.train_discriminator(width=None)``).

Usage::

    python benches/bench_discriminator.py [--quick] [--big] [--flows] [--out benches/results] [--repeats K]
                                          [--threads T]

Cases (ReLU depth 3, w_std = b_std = 1, d = 2, N = M = n / 2, t = 1, ``f0 = 0``; fake ~ N(0, I),
real ~ N(0.7, I), seeded):

1. LSGAN at n = 1000, each solver, **including the Gram matrix**: ``eigh`` (dense eigendecomposition),
   ``krylov`` (dense Gram + Lanczos), ``matrix_free`` (Lanczos on ``kernel_matvec``, no n x n matrix), and
   for reference scipy's ``expm_multiply`` on the augmented matrix ``[[-tA, t b], [0, 0]]`` (dense);
   the Gram matrix alone; the ``dynamics="gd"`` closed form.  Target: < 30 ms.
2. The crossover: ``eigh`` vs ``krylov`` vs ``matrix_free`` for n in 100 .. 1600, against the thresholds
   ``EIGH_MAX_N`` and ``DENSE_MAX_N`` that ``method="auto"`` uses.
3. vanilla at n = 1000, t = 1: the ODE (Taylor series, tol 1e-10), a custom loss (``tanh(f +- 1)``,
   DOP853) and the Lambert-W approximation by Lanczos (``"lambertw"``) and by eigh
   (``"lambertw_eigh"``), with the Lanczos-vs-eigh difference and the approximation's sup-norm distance
   to the ODE on the training set (see ``docs/vanilla_solvers.md``).
4. (``--big``, run it once) LSGAN at n = 10 000 by the matrix-free path, 2 threads.  Target: < 60 s.
5. (``--flows``) whole particle-flow steps (``ntkgan.flows.make_flow``, eight_gaussians, 500 vs 500
   points): ``inf_lsgan``, ``inf_vanilla`` (Lambert-W) and ``inf_vanilla`` with ``d_method="ode"``, median
   of 10 steps after 2 warm-up steps, and their ratios to ``inf_lsgan``.  Target: <= 2x.

Each timing is the best (min) of ``K`` calls after one warm-up call (the big case: one call).  Nothing is
asserted.  Results go to stdout as Markdown and to ``<out>/bench_discriminator[_quick].{json,md}``.  The
machine is shared: the load average is recorded beside the timings.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# ntkgan: installed, or the source tree
from bench_kernels import _loadavg, arg_parser, machine_info, ntkgan, step_times, write_report
from ntkgan.discriminator import Loss, _infinite, train_discriminator

ARCH = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0)
TARGETS = {"lsgan_1000_s": 0.030, "lsgan_10000_s": 60.0}


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n // 2, 2)), rng.normal(size=(n - n // 2, 2)) + 0.7


def best(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def expm_multiply_reference(fake, real, t=1.0):
    """LSGAN coefficients from scipy's expm_multiply on the augmented matrix (dense Gram included)."""
    from scipy.sparse.linalg import expm_multiply

    z = np.vstack([fake, real])
    n, nf = z.shape[0], fake.shape[0]
    d = np.concatenate([np.full(nf, 2.0 / nf), np.full(n - nf, 2.0 / (n - nf))])
    rho = np.concatenate([-np.ones(nf), np.ones(n - nf)])
    sq = np.sqrt(d)
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = -t * sq[:, None] * ntkgan.kernel(z, arch=ARCH) * sq[None, :]
    aug[:n, n] = t * sq * rho
    e = np.zeros(n + 1)
    e[n] = 1.0
    return sq * expm_multiply(aug, e, traceA=float(np.trace(aug)))[:n]


def case_lsgan_1000(n: int, repeats: int) -> dict:
    fake, real = data(n)
    z = np.vstack([fake, real])
    out: dict = {"n": n}
    out["gram_s"], _ = best(lambda: ntkgan.kernel(z, arch=ARCH), repeats)
    ref = None
    for method in ("krylov", "eigh", "matrix_free", "auto"):
        sec, disc = best(lambda m=method: train_discriminator(fake, real, loss="lsgan", arch=ARCH, t=1.0,
                                                              method=m), repeats)
        out[f"{method}_s"] = sec
        if method == "eigh":
            ref = disc.coef
        if method in ("krylov", "matrix_free"):
            out[f"{method}_iterations"] = disc.info["iterations"]
        if method == "auto":
            out["auto_method"] = disc.method
    coefs = {m: train_discriminator(fake, real, loss="lsgan", arch=ARCH, t=1.0, method=m).coef
             for m in ("krylov", "matrix_free")}
    for m, c in coefs.items():
        out[f"{m}_rel_err_vs_eigh"] = float(np.abs(c - ref).max() / np.abs(ref).max())
    out["expm_multiply_s"], c = best(lambda: expm_multiply_reference(fake, real), repeats)
    out["expm_multiply_rel_err_vs_eigh"] = float(np.abs(c - ref).max() / np.abs(ref).max())
    out["gd_auto_s"], _ = best(lambda: train_discriminator(fake, real, loss="lsgan", arch=ARCH, t=1.0,
                                                           dynamics="gd"), repeats)
    return out


def case_crossover(sizes, repeats: int) -> list[dict]:
    rows = []
    for n in sizes:
        fake, real = data(n, seed=n)
        row = {"n": n}
        for method in ("eigh", "krylov", "matrix_free"):
            row[f"{method}_s"], _ = best(lambda m=method, fk=fake, rl=real: train_discriminator(
                fk, rl, loss="lsgan", arch=ARCH, t=1.0, method=m), repeats)
        rows.append(row)
        print(f"  crossover n={n}: " + ", ".join(f"{k}={v * 1e3:.1f} ms" for k, v in row.items() if k != "n"),
              file=sys.stderr)
    return rows


def case_vanilla(n: int, repeats: int) -> dict:
    fake, real = data(n)
    out: dict = {"n": n}
    out["ode_s"], ode = best(lambda: train_discriminator(fake, real, loss="vanilla", arch=ARCH, t=1.0), repeats)
    out["ode_nfev"] = ode.info["nfev"]
    out["ode_method"] = ode.info["ode_method"]
    soft = Loss.from_derivatives(lambda f: np.tanh(f + 1.0), lambda f: np.tanh(f - 1.0))
    out["custom_s"], custom = best(lambda: train_discriminator(fake, real, loss=soft, arch=ARCH, t=1.0),
                                   repeats)
    out["custom_nfev"] = custom.info["nfev"]
    out["lambertw_s"], lw = best(lambda: train_discriminator(fake, real, loss="vanilla", arch=ARCH, t=1.0,
                                                            method="lambertw"), repeats)
    out["lambertw_solver"] = lw.info["solver"]
    out["lambertw_iterations"] = lw.info.get("iterations", 0)
    out["lambertw_eigh_s"], lwe = best(lambda: train_discriminator(fake, real, loss="vanilla", arch=ARCH,
                                                                  t=1.0, method="lambertw_eigh"), 1)
    out["lambertw_rel_diff_vs_eigh"] = float(np.abs(lw.coef - lwe.coef).max() / np.abs(lwe.coef).max())
    out["lambertw_sup_err"] = float(np.abs(lw.support_values - ode.support_values).max())
    out["f_sup"] = float(np.abs(ode.support_values).max())
    return out


def case_flow_steps(steps: int = 10) -> dict:
    """Median seconds of a whole flow step (one BLAS thread inside), 2 warm-up steps."""
    from ntkgan.flows import make_flow
    from ntkgan.presets import make_config

    def median_step(loss, **kw):
        flow = make_flow(make_config(loss=loss, steps=steps + 2, **kw))
        return float(np.median(step_times(flow, steps, warmup=2)))

    out = {"inf_lsgan_s": median_step("inf_lsgan"), "inf_vanilla_s": median_step("inf_vanilla"),
           "inf_vanilla_ode_s": median_step("inf_vanilla", d_method="ode")}
    out["vanilla_ratio"] = out["inf_vanilla_s"] / out["inf_lsgan_s"]
    out["vanilla_ode_ratio"] = out["inf_vanilla_ode_s"] / out["inf_lsgan_s"]
    return out


def case_big(n: int) -> dict:
    fake, real = data(n)
    start = time.perf_counter()
    disc = train_discriminator(fake, real, loss="lsgan", arch=ARCH, t=1.0, method="matrix_free")
    sec = time.perf_counter() - start
    return {"n": n, "matrix_free_s": sec, "iterations": disc.info["iterations"],
            "kernel_products": disc.info["kernel_products"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": ntkgan.get_num_threads()}


def to_markdown(res: dict) -> str:
    a = res["lsgan"]
    lines = [
        f"## LSGAN discriminator, n = {a['n']} (ReLU depth 3, d = 2, t = 1), best of {res['repeats']}",
        "",
        "| solver | seconds | Lanczos its | max rel. diff. of coef vs eigh |",
        "|---|---|---|---|",
        f"| Gram matrix alone | {a['gram_s']:.4f} | | |",
        (f"| krylov (Gram + Lanczos) | {a['krylov_s']:.4f} | {a['krylov_iterations']} | "
        f"{a['krylov_rel_err_vs_eigh']:.1e} |"),
        f"| eigh (Gram + eigh) | {a['eigh_s']:.4f} | | 0 |",
        (f"| matrix_free (kernel_matvec) | {a['matrix_free_s']:.4f} | {a['matrix_free_iterations']} | "
        f"{a['matrix_free_rel_err_vs_eigh']:.1e} |"),
        (f"| scipy expm_multiply, augmented (Gram incl.) | {a['expm_multiply_s']:.4f} | | "
        f"{a['expm_multiply_rel_err_vs_eigh']:.1e} |"),
        f"| auto (= {a['auto_method']}) | {a['auto_s']:.4f} | | |",
        f"| auto, dynamics='gd' | {a['gd_auto_s']:.4f} | | |",
        "",
        f"Target: < {TARGETS['lsgan_1000_s'] * 1e3:.0f} ms including the Gram matrix.",
        "",
        "## Crossover (seconds, Gram included)",
        "",
        "| n | eigh | krylov | matrix_free |",
        "|---|---|---|---|",
    ]
    for r in res["crossover"]:
        lines.append(f"| {r['n']} | {r['eigh_s']:.4f} | {r['krylov_s']:.4f} | {r['matrix_free_s']:.4f} |")
    lines += [
        "",
        (f"`method='auto'` uses eigh for n <= {_infinite.EIGH_MAX_N}, krylov for n <= {_infinite.DENSE_MAX_N}, "
        "matrix_free above (memory: the dense Gram needs 8 n^2 bytes)."),
        "",
    ]
    v = res["vanilla"]
    lines += [
        f"## vanilla, n = {v['n']}, t = 1",
        "",
        f"- ODE ({v['ode_method']}, tol 1e-10): {v['ode_s']:.4f} s, {v['ode_nfev']} kernel products",
        (f"- custom loss tanh(f +- 1) (DOP853, tol 1e-10): {v['custom_s']:.4f} s, {v['custom_nfev']} kernel "
         "products"),
        (f"- Lambert-W approximation ({v['lambertw_solver']}, {v['lambertw_iterations']} iterations): "
         f"{v['lambertw_s']:.4f} s (eigh: {v['lambertw_eigh_s']:.4f} s; max rel. diff. of coef "
         f"{v['lambertw_rel_diff_vs_eigh']:.1e}); sup-norm distance to the ODE on the training set "
         f"{v['lambertw_sup_err']:.2e} (|f| up to {v['f_sup']:.2f})"),
        "",
    ]
    if "flows" in res:
        fs = res["flows"]
        lines += [
            "## Flow steps (eight_gaussians, 500 vs 500, t = 1; median of 10 after 2 warm-up steps)",
            "",
            "| preset | ms per step | ratio to inf_lsgan |",
            "|---|---|---|",
            f"| inf_lsgan | {fs['inf_lsgan_s'] * 1e3:.1f} | 1 |",
            f"| inf_vanilla (Lambert-W) | {fs['inf_vanilla_s'] * 1e3:.1f} | {fs['vanilla_ratio']:.2f} |",
            (f"| inf_vanilla, d_method='ode' | {fs['inf_vanilla_ode_s'] * 1e3:.1f} | "
             f"{fs['vanilla_ode_ratio']:.2f} |"),
            "",
        ]
    if "big" in res:
        b = res["big"]
        lines += [
            f"## LSGAN, n = {b['n']}, matrix-free, {b['threads']} threads (run once)",
            "",
            (f"- {b['matrix_free_s']:.1f} s, {b['iterations']} Lanczos iterations "
            f"({b['kernel_products']} kernel_matvec calls), peak RSS {b['peak_rss_mb']:.0f} MB "
            f"(target < {TARGETS['lsgan_10000_s']:.0f} s)"),
            "",
        ]
    m = res["machine"]
    lines.append(f"Machine: {m['cpu_model']}, {m['cores_usable']} usable cores, commit {m['git_commit']}, "
                 f"load average {res['loadavg_start']} -> {res['loadavg_end']}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = arg_parser(__doc__, quick="small sizes (smoke run)")
    ap.add_argument("--big", action="store_true", help="also run n = 10 000 matrix-free (once)")
    ap.add_argument("--flows", action="store_true",
                    help="also time whole flow steps (inf_lsgan vs inf_vanilla)")
    ap.add_argument("--out", default=str(REPO / "benches" / "results"))
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    ntkgan.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    n = 200 if args.quick else 1000
    sizes = (50, 100, 200) if args.quick else (100, 200, 400, 800, 1600)
    res: dict = {"machine": machine_info(), "repeats": repeats, "threads": args.threads, "quick": args.quick,
                 "loadavg_start": _loadavg()}
    print("lsgan ...", file=sys.stderr)
    res["lsgan"] = case_lsgan_1000(n, repeats)
    print("crossover ...", file=sys.stderr)
    res["crossover"] = case_crossover(sizes, max(1, repeats // 2))
    print("vanilla ...", file=sys.stderr)
    res["vanilla"] = case_vanilla(n, max(1, repeats // 2))
    if args.flows:
        print("flow steps ...", file=sys.stderr)
        res["flows"] = case_flow_steps()
    if args.big:
        print("n = 10 000 matrix-free (once) ...", file=sys.stderr)
        res["big"] = case_big(2000 if args.quick else 10_000)
    res["loadavg_end"] = _loadavg()
    write_report(args.out, "bench_discriminator_quick" if args.quick else "bench_discriminator", res, to_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
