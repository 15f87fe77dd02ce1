#!/usr/bin/env python
r"""Speed and memory of ntkgan's Rust kernels against neural-tangents (jit, CPU), measured in one process.

Usage::

    python benches/bench_kernels.py [--quick] [--out benches/results] [--repeats K] [--no-jax]

Both backends get the same float64 inputs.  Each timing is a warm-up call (which compiles the JAX
function) followed by the best (min) of ``K`` repeats, or more until 1 s is timed, with :func:`time.perf_counter`; JAX outputs are
blocked on and converted to numpy inside the timed region, because ntkgan's API returns numpy.
Throughput is reported as ``Mpairs/s = N * M / seconds / 1e6`` (also for the symmetric Gram, which
only needs half the pairs), and the ratio is ``rust / neural-tangents``.

Cases (full sizes; ``--quick`` shrinks them for a smoke run):

1. Gram ``kernel(x, arch=relu)`` with ``y=None``, ReLU depth 3, b_std 1, N = M = 2000, d = 2;
2. ``kernel_grad(x, y, w)``, same shapes (NT: ``jax.grad`` of ``sum(kernel_fn(x, y, "ntk") @ w)``);
3. Gram and ``kernel_grad`` at N = M = 1024, d = 784;
4. the erf network ``Mlp(depth=3, activation="erf", b_std=1)``, Gram and gradient as in 1-2;
5. thread scaling of the Rust backend (1 vs 2 threads on cases 1 and 2) and the peak RSS and wall time
   of Rust ``kernel_grad`` at N = M = 50 000, d = 2, run in a fresh subprocess.

The targets are printed beside the measured values; nothing is asserted.  Results go to stdout as a
Markdown table and to ``<out>/bench_kernels[_quick].{json,md}``.  JAX is optional: without it the
neural-tangents column and the ratios read "n/a".
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# neural-tangents is benchmarked on the CPU, as the Rust backend is (set before jax can be imported).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

try:
    import ntkgan  # noqa: E402
except ImportError:  # not installed: use the source tree (the Rust extension is then usually absent)
    sys.path.insert(0, str(REPO / "python"))
    import ntkgan  # noqa: E402

#: Targets (ratio rust / NT unless stated); printed, never asserted.
TARGETS = {
    "gram_relu_d2": 8.0,
    "grad_relu_d2": 8.0,
    "gram_relu_d784": 2.0,
    "grad_relu_d784": 3.0,
    "gram_erf_d2": 8.0,
    "grad_erf_d2": 8.0,
    "thread_speedup": 1.8,
    "peak_rss_mb": 300.0,
}

FULL = {"n_small_d": 2000, "n_big_d": 1024, "big_d": 784, "n_memory": 50_000, "repeats": 3}
QUICK = {"n_small_d": 200, "n_big_d": 64, "big_d": 784, "n_memory": 2000, "repeats": 2}


# --------------------------------------------------------------------------------------------------
# environment


def _simd_path() -> str | None:
    """The Rust tile loops' SIMD path (``avx512``, ``avx2``, ``generic``), None without the extension."""
    try:
        from ntkgan import _core
    except ImportError:
        return None
    return _core.simd_path()


def machine_info() -> dict:
    """CPU model, core counts, git commit and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        commit = commit.stdout.strip() if commit.returncode == 0 else None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO, capture_output=True, text=True, timeout=10,
        )
        if commit and dirty.returncode == 0 and dirty.stdout.strip():
            commit += "-dirty"
    except (OSError, subprocess.SubprocessError):
        commit = None
    versions = {"python": platform.python_version(), "numpy": np.__version__, "ntkgan": ntkgan.__version__}
    for mod in ("jax", "jaxlib", "neural-tangents"):
        try:
            versions[mod.replace("-", "_")] = importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            versions[mod.replace("-", "_")] = None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "platform": platform.platform(),
        "git_commit": commit,
        "versions": versions,
        "simd_path": _simd_path(),
    }


def _loadavg() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def has_rust() -> bool:
    return "rust" in ntkgan.backends.available()


def load_jax():
    """``(jax, jnp)`` with float64 enabled, or ``None`` when JAX/neural-tangents are not installed."""
    if "jax" not in ntkgan.backends.available():
        return None
    try:
        import jax
        import jax.numpy as jnp
        import neural_tangents  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "no NT column"
        print(f"[bench] neural-tangents unavailable ({exc}); NT column is n/a", file=sys.stderr)
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, jnp


# --------------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    best_s: float  # min over repeats
    first_s: float  # the warm-up call (includes JAX compilation)
    out: np.ndarray


#: fast calls are repeated until this much time has passed (like ``timeit``'s autorange), so that a
#: scheduler hiccup or a pool still waking up cannot decide a 20 ms measurement
MIN_TIMED_S = 1.0


def time_best(fn, repeats: int) -> Timing:
    """Warm up once, then the best of at least ``repeats`` calls of ``fn()`` (which must return numpy),
    calling again until :data:`MIN_TIMED_S` seconds have been timed."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    best, total, calls = float("inf"), 0.0, 0
    while calls < repeats or total < MIN_TIMED_S:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best, total, calls = min(best, dt), total + dt, calls + 1
    return Timing(best, first, np.asarray(out))


def rust_gram(arch, x):
    return lambda: ntkgan.kernel(x, arch=arch, backend="rust")


def rust_grad(arch, x, y, w):
    return lambda: ntkgan.kernel_grad(x, y, w, arch=arch, backend="rust")


def nt_gram(jx, arch, x):
    jax, jnp = jx
    kernel_fn = arch.to_stax()[2]
    f = jax.jit(lambda a: kernel_fn(a, None, "ntk"))
    xj = jnp.asarray(x)
    return lambda: np.asarray(f(xj).block_until_ready())


def nt_grad(jx, arch, x, y, w):
    jax, jnp = jx
    kernel_fn = arch.to_stax()[2]
    f = jax.jit(jax.grad(lambda a, b, v: jnp.sum(kernel_fn(a, b, "ntk") @ v)))
    xj, yj, wj = jnp.asarray(x), jnp.asarray(y), jnp.asarray(w)
    return lambda: np.asarray(f(xj, yj, wj).block_until_ready())


# --------------------------------------------------------------------------------------------------
# cases


def data(n: int, m: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((m, d)), rng.standard_normal(m) / m


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: agreement of the two backends on the benchmark data."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def bench_speed(cases, jx, repeats: int, rust: bool) -> list[dict]:
    rows = []
    for name, label, op, arch, n, d in cases:
        x, y, w = data(n, n, d, seed=len(rows))
        row = {"case": name, "label": label, "op": op, "activation": type(arch.activation).__name__,
               "depth": arch.depth, "b_std": arch.b_std, "N": n, "M": n, "d": d, "target_ratio": TARGETS[name]}
        outs = {}
        for backend in ("rust", "nt"):
            if (backend == "rust" and not rust) or (backend == "nt" and jx is None):
                row[f"{backend}_s"] = row[f"{backend}_mpairs_s"] = row[f"{backend}_first_s"] = None
                continue
            if backend == "rust":
                fn = rust_gram(arch, x) if op == "gram" else rust_grad(arch, x, y, w)
            else:
                fn = nt_gram(jx, arch, x) if op == "gram" else nt_grad(jx, arch, x, y, w)
            t = time_best(fn, repeats)
            outs[backend] = t.out
            row[f"{backend}_s"] = t.best_s
            row[f"{backend}_first_s"] = t.first_s
            row[f"{backend}_mpairs_s"] = n * n / t.best_s / 1e6
            print(f"[bench] {name:15s} {backend:4s} best {t.best_s:9.4f} s  (first call {t.first_s:.3f} s)",
                  file=sys.stderr, flush=True)
        both = len(outs) == 2
        row["ratio"] = row["rust_mpairs_s"] / row["nt_mpairs_s"] if both else None
        row["meets_target"] = row["ratio"] >= row["target_ratio"] if both else None
        row["max_rel_diff"] = rel_diff(outs["rust"], outs["nt"]) if both else None
        rows.append(row)
    return rows


def bench_threads(cases, repeats: int) -> list[dict]:
    """Rust at 1 and 2 threads on the given (name, label, op, arch, n, d) cases."""
    rows = []
    before = ntkgan.get_num_threads()
    try:
        for name, label, op, arch, n, d in cases:
            x, y, w = data(n, n, d, seed=100 + len(rows))
            fn = rust_gram(arch, x) if op == "gram" else rust_grad(arch, x, y, w)
            row = {"case": name, "label": label, "op": op, "N": n, "M": n, "d": d,
                   "target_speedup": TARGETS["thread_speedup"]}
            for k in (1, 2):
                ntkgan.set_num_threads(k)
                t = time_best(fn, repeats)
                row[f"t{k}_s"] = t.best_s
                row[f"t{k}_mpairs_s"] = n * n / t.best_s / 1e6
                print(f"[bench] threads {name:15s} {k} thread(s) best {t.best_s:9.4f} s",
                      file=sys.stderr, flush=True)
            row["speedup"] = row["t1_s"] / row["t2_s"]
            row["meets_target"] = row["speedup"] >= row["target_speedup"]
            rows.append(row)
    finally:
        ntkgan.set_num_threads(before)
    return rows


def _peak_rss_mb() -> float:
    """Peak resident set of this process in MB: ``VmHWM`` from /proc (Linux), else ``ru_maxrss``.

    ``VmHWM`` belongs to the address space made by ``exec``, so it starts afresh in a child.  Linux's
    ``ru_maxrss`` does not: it keeps the parent's high-water mark from before the ``exec``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _memory_child(n: int) -> None:
    """Run in a fresh interpreter: one Rust kernel_grad at N = M = n, d = 2; print JSON on stdout."""
    arch = ntkgan.Mlp(depth=3, activation="relu", b_std=1.0)
    x, y, w = data(n, n, 2, seed=7)
    rss_before = _peak_rss_mb()
    t0 = time.perf_counter()
    g = ntkgan.kernel_grad(x, y, w, arch=arch, backend="rust")
    wall = time.perf_counter() - t0
    print(json.dumps({"N": n, "wall_s": wall, "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
                      "finite": bool(np.isfinite(g).all()), "threads": ntkgan.get_num_threads()}))


def bench_memory(n: int) -> dict:
    """Peak RSS and wall time of one Rust kernel_grad at N = M = n in a fresh subprocess.

    The child reports its own peak (``VmHWM``); when psutil is installed the parent also polls the
    child's RSS every 10 ms as a cross-check (``polled_peak_rss_mb``, a lower bound).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_memory-child", str(n)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(ntkgan.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    try:
        import psutil
    except ImportError:
        psutil = None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    polled = None
    if psutil is not None:
        try:
            child = psutil.Process(proc.pid)
            polled = 0.0
            while proc.poll() is None:
                polled = max(polled, child.memory_info().rss / 2**20)
                time.sleep(0.01)
        except psutil.Error:  # the child exited between two polls
            pass
    stdout, stderr = proc.communicate()
    outer_wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed (rc {proc.returncode}):\n{stderr[-2000:]}")
    row = json.loads(stdout.strip().splitlines()[-1])
    row["polled_peak_rss_mb"] = polled
    row["process_wall_s"] = outer_wall
    row["dense_matrix_gb"] = n * n * 8 / 1e9
    row["target_peak_rss_mb"] = TARGETS["peak_rss_mb"]
    row["meets_target"] = row["peak_rss_mb"] < row["target_peak_rss_mb"]
    print(f"[bench] memory N={n}: peak RSS {row['peak_rss_mb']:.0f} MB (polled {_f(polled, '.0f')} MB), "
          f"wall {row['wall_s']:.2f} s", file=sys.stderr, flush=True)
    return row


# --------------------------------------------------------------------------------------------------
# report


def _f(v, fmt: str) -> str:
    """``format(v, fmt)``, or ``n/a`` for a figure not measured (the benchmarks' tables)."""
    return "n/a" if v is None else format(v, fmt)


def _yes(v) -> str:
    """``yes`` / ``**no**`` for a target met or not, ``n/a`` when not measured."""
    return "n/a" if v is None else ("yes" if v else "**no**")


def with_notes(lines: list[str], notes) -> str:
    """The markdown report: ``lines``, then ``notes`` as a list after a blank line (none: nothing)."""
    if notes:
        lines = lines + [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def arg_parser(doc: str, quick: str | None = None) -> argparse.ArgumentParser:
    """A benchmark script's parser, described by the first paragraph of its docstring ``doc``; with ``quick``,
    the ``--quick`` flag (a smoke run) with that help."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def write_report(out, stem: str, report: dict, md: str) -> Path:
    """Print the markdown ``md``, then write ``<stem>.json`` (``report``) and ``<stem>.md`` in the folder ``out``
    (made if missing); returns ``out / stem``."""
    print(md)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / f"{stem}.md").write_text(md if md.endswith("\n") else md + "\n")
    return out / stem


def step_times(flow, steps: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``steps`` calls of ``flow.step()`` (:func:`time.perf_counter`), after ``warmup``
    untimed ones (shared by the flow benchmarks)."""
    for _ in range(warmup):
        flow.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        flow.step()
        times.append(time.perf_counter() - start)
    return times


def markdown(report: dict) -> str:
    m = report["machine"]
    s = report["settings"]
    v = m["versions"]
    lines = [
        f"# ntkgan kernels vs neural-tangents{' (--quick)' if s['quick'] else ''}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable); "
        f"commit {m['git_commit'] or 'unknown'}; Python {v['python']}, numpy {v['numpy']}, "
        f"jax {v['jax'] or 'n/a'}, neural-tangents {v['neural_tangents'] or 'n/a'}; Rust SIMD path "
        f"{m.get('simd_path', 'n/a')}.",
        f"float64 on CPU, best of {s['repeats']} after a warm-up; Rust threads {s['rust_threads'] or 'n/a'}. "
        "Mpairs/s = N*M / s / 1e6; ratio = rust / NT (jit).",
        "",
        "| case | op | N = M | d | rust Mpairs/s | NT Mpairs/s | ratio | target | met | max rel diff |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in report["speed"]:
        lines.append(
            f"| {r['label']} | {r['op']} | {r['N']} | {r['d']} | {_f(r['rust_mpairs_s'], '.2f')} "
            f"| {_f(r['nt_mpairs_s'], '.2f')} | {_f(r['ratio'], '.1f')}{'x' if r['ratio'] is not None else ''} | >= {r['target_ratio']:g}x "
            f"| {_yes(r['meets_target'])} | {_f(r['max_rel_diff'], '.1e')} |"
        )
    if report["threads"]:
        lines += [
            "",
            "Rust thread scaling:",
            "",
            "| case | op | N = M | d | 1 thread Mpairs/s | 2 threads Mpairs/s | speed-up | target | met |",
            "|---|---|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in report["threads"]:
            lines.append(
                f"| {r['label']} | {r['op']} | {r['N']} | {r['d']} | {r['t1_mpairs_s']:.2f} "
                f"| {r['t2_mpairs_s']:.2f} | {r['speedup']:.2f}x | >= {r['target_speedup']:g}x "
                f"| {_yes(r['meets_target'])} |"
            )
    mem = report["memory"]
    if mem:
        lines += [
            "",
            "Rust kernel_grad memory (fresh subprocess, ReLU depth 3, d = 2):",
            "",
            "| N = M | dense K would be | peak RSS MB | polled RSS MB | RSS before call MB | wall s | threads "
            "| target | met |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
            f"| {mem['N']} | {mem['dense_matrix_gb']:.2f} GB | {mem['peak_rss_mb']:.0f} "
            f"| {_f(mem['polled_peak_rss_mb'], '.0f')} "
            f"| {mem['rss_before_mb']:.0f} | {mem['wall_s']:.2f} | {mem['threads']} "
            f"| < {mem['target_peak_rss_mb']:g} MB | {_yes(mem['meets_target'])} |",
        ]
    return with_notes(lines, report["notes"])


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = arg_parser(__doc__, quick="small sizes for a smoke run (< 30 s)")
    parser.add_argument("--out", default=str(REPO / "benches" / "results"), help="folder for JSON/Markdown")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats after the warm-up")
    parser.add_argument("--no-jax", action="store_true", help="skip neural-tangents (rust-only numbers)")
    parser.add_argument("--_memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._memory_child is not None:
        _memory_child(args._memory_child)
        return {}

    sizes = dict(QUICK if args.quick else FULL)
    repeats = args.repeats if args.repeats is not None else sizes["repeats"]
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    rust = has_rust()
    t_start = time.perf_counter()
    load_start = _loadavg()
    # The memory child runs first, while this process is small and has not imported JAX.
    memory = bench_memory(sizes["n_memory"]) if rust else None
    jx = None if args.no_jax else load_jax()
    notes = []
    if not rust:
        notes.append("Rust extension ntkgan._core not importable: rust columns are n/a.")
    if jx is None:
        notes.append("neural-tangents not used (absent or --no-jax): NT columns and ratios are n/a.")

    relu = ntkgan.Mlp(depth=3, activation="relu", b_std=1.0)
    erf = ntkgan.Mlp(depth=3, activation="erf", b_std=1.0)
    n, nb, db = sizes["n_small_d"], sizes["n_big_d"], sizes["big_d"]
    cases = [
        ("gram_relu_d2", "1 ReLU Gram", "gram", relu, n, 2),
        ("grad_relu_d2", "2 ReLU grad", "grad", relu, n, 2),
        ("gram_relu_d784", "3 ReLU Gram", "gram", relu, nb, db),
        ("grad_relu_d784", "3 ReLU grad", "grad", relu, nb, db),
        ("gram_erf_d2", "4 erf Gram", "gram", erf, n, 2),
        ("grad_erf_d2", "4 erf grad", "grad", erf, n, 2),
    ]
    speed = bench_speed(cases, jx, repeats, rust)
    threads = bench_threads(cases[:2], repeats) if rust else []
    for r in speed:
        if r["max_rel_diff"] is not None and r["max_rel_diff"] > 1e-6:
            notes.append(f"{r['label']}: rust and NT outputs differ (max rel diff {r['max_rel_diff']:.1e}).")
    load = {"start": load_start, "end": _loadavg()}
    busy = max((v for v in load.values() if v is not None), default=None)
    if busy is not None and busy > (os.cpu_count() or 1):  # this run alone adds up to ~cores
        notes.append(f"the machine was busy (1-min load average {busy:.1f} on {os.cpu_count()} cores): "
                     "timings, and above all the thread speed-up, are noisy.")
    if rust and (os.cpu_count() or 1) < 2:
        notes.append("fewer than 2 cores: the 2-thread numbers cannot show a speed-up.")

    report = {
        "machine": dict(machine_info(), load_average_1min=load),
        "settings": {"quick": args.quick, "repeats": repeats, "dtype": "float64", "device": "cpu",
                     "rust_threads": ntkgan.get_num_threads() if rust else None, "sizes": sizes},
        "targets": TARGETS,
        "speed": speed,
        "threads": threads,
        "memory": memory,
        "notes": notes,
        "total_s": time.perf_counter() - t_start,
    }
    written = write_report(args.out, "bench_kernels_quick" if args.quick else "bench_kernels", report, markdown(report))
    print(f"[bench] wrote {written}.json and .md in {report['total_s']:.1f} s", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
