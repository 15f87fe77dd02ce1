"""Accuracy and speed of ntkgan.metrics.sinkhorn_divergence against POT, on the geomloss reference clouds.

Run from the repository root::

    PYTHONPATH=python python benches/bench_metrics.py           # ~30 s: ours on every setting, quick POT
    PYTHONPATH=python python benches/bench_metrics.py --slow    # + POT solvers run to convergence (minutes)
    PYTHONPATH=python python benches/bench_metrics.py --n 1000  # also time ours on random n x n clouds

Reference values: geomloss 0.3.1 ``SamplesLoss("sinkhorn", p=2, blur, scaling)`` in float64 on case 2 of
``../shared/vectors`` (500 x 500 points in 2-D).  POT (``pip install pot``) is optional; its rows are skipped
when it is not importable.  POT's Sinkhorn solvers return the linear cost ``<P, C>`` of the entropic plan,
not the dual value that geomloss returns, so they differ from the reference by the entropic term even when
converged; ``ot.emd2`` gives the exact ``W_2^2 / 2`` that both approach as ``blur -> 0``.
Each time is the median of ``--repeat`` runs (one run for the POT solvers), wall clock, one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
from ntkgan.metrics import energy_distance, mmd2, sinkhorn_divergence
from ntkgan.metrics._sinkhorn import _bounding_box_diameter, _epsilon_schedule

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
PAPER = (0.001, 0.95)  # the paper's blur and scaling


def _timed(fn, repeat: int):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return value, statistics.median(times)


def _import_pot():
    for lib in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):  # keep POT's import light
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{lib}", "1")
    try:
        import ot
    except ImportError:
        return None
    return ot


def _row(method, setting, value, ref, seconds, note=""):
    err = f"{(value - ref) / ref:+.2e}" if ref is not None and np.isfinite(value) else "-"
    print(f"| {method:<34} | {setting:<20} | {value:>14.10f} | {err:>10} | {seconds:>9.3f} | {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="run POT's Sinkhorn solvers to convergence")
    parser.add_argument(
        "--pot-iter", type=int, default=2000, help="numItermax of POT sinkhorn_log with --slow"
    )
    parser.add_argument("--n", type=int, nargs="*", default=[], help="extra random n x n timings of ours")
    args = parser.parse_args()

    ref = json.loads((VECTORS / "geomloss_reference.json").read_text())["cases"]
    with np.load(VECTORS / "geomloss_inputs.npz") as data:
        x, y = data["x2"], data["y2"]
    sink_ref = {
        (c["blur"], c["scaling"]): c["value"] for c in ref if c["case"] == 2 and c["loss"] == "sinkhorn"
    }
    ot = _import_pot()
    print(
        f"# machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, POT {getattr(ot, '__version__', 'not installed')}"
    )
    print(
        f"# clouds: case 2, x {x.shape}, y {y.shape}; error = relative to geomloss 0.3.1 at the same setting"
    )
    print("| method | setting | value | rel. error | time (s) | note")
    print("|---|---|---|---|---|---")

    diam = _bounding_box_diameter(x, y)
    for (blur, scaling), value_ref in sorted(sink_ref.items()):
        value, sec = _timed(
            lambda b=blur, s=scaling: sinkhorn_divergence(x, y, blur=b, scaling=s), args.repeat
        )
        n_eps = len(_epsilon_schedule(2, diam, blur, scaling))
        _row(
            "ntkgan sinkhorn_divergence (numpy)",
            f"blur={blur} sc={scaling}",
            value,
            value_ref,
            sec,
            f"{n_eps} eps steps, {1e3 * sec / (4 * (n_eps + 2)):.2f} ms per 500x500 logsumexp",
        )

    energy_ref = next(c["value"] for c in ref if c["case"] == 2 and c["loss"] == "energy")
    value, sec = _timed(lambda: energy_distance(x, y), args.repeat)
    _row(
        "ntkgan energy_distance",
        "exact",
        value,
        energy_ref,
        sec,
        "geomloss clamps |x-x| to 1e-4: +1.9e-7 expected",
    )
    mmd_ref = next(
        c["value"] for c in ref if c["case"] == 2 and c["loss"] == "gaussian_mmd" and c["blur"] == 1.0
    )
    value, sec = _timed(lambda: mmd2(x, y, "gaussian", blur=1.0) / 2, args.repeat)
    _row("ntkgan mmd2 / 2", "gaussian blur=1", value, mmd_ref, sec)

    for n in args.n:
        rng = np.random.default_rng(n)
        u, v = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
        value, sec = _timed(lambda u=u, v=v: sinkhorn_divergence(u, v), args.repeat)
        _row("ntkgan sinkhorn_divergence (numpy)", f"random {n}x{n} paper", value, None, sec)

    if ot is None:
        print("# POT not importable: its rows are skipped (pip install pot)")
        return
    a = np.full(len(x), 1 / len(x))
    b = np.full(len(y), 1 / len(y))
    costs = (ot.dist(x, y) / 2, ot.dist(x, x) / 2, ot.dist(y, y) / 2)
    weights = ((a, b), (a, a), (b, b))

    def debiased(solve):
        xy, xx, yy = (float(solve(w1, w2, c)) for (w1, w2), c in zip(weights, costs, strict=True))
        return xy - 0.5 * (xx + yy)

    value, sec = _timed(lambda: float(ot.emd2(a, b, costs[0])), args.repeat)
    _row("POT emd2 (exact W2^2/2)", "-", value, sink_ref[PAPER], sec, "error vs the paper setting")

    warnings.simplefilter("ignore")  # POT warns on non-convergence, which some rows show on purpose
    iters = 50
    _, sec = _timed(
        lambda: ot.sinkhorn2(a, b, costs[0], 0.05**2, method="sinkhorn_log", numItermax=iters, stopThr=0.0), 1
    )
    print(
        f"# POT sinkhorn_log: {1e3 * sec / iters:.1f} ms per iteration (two 500x500 logsumexps) at reg=blur^2"
    )
    if not args.slow:
        print("# (--slow runs POT sinkhorn_log and sinkhorn_epsilon_scaling to convergence)")
        return
    for blur, max_iter in ((0.5, 5 * args.pot_iter), (0.05, args.pot_iter), (0.001, args.pot_iter)):
        value, sec = _timed(
            lambda bl=blur, it=max_iter: debiased(
                lambda w1, w2, c: ot.sinkhorn2(
                    w1, w2, c, bl**2, method="sinkhorn_log", numItermax=it, stopThr=1e-9
                )
            ),
            1,
        )
        _row(
            "POT sinkhorn_log debiased <P,C>",
            f"blur={blur} (no anneal)",
            value,
            sink_ref[(blur, 0.95)],
            sec,
            f"numItermax={max_iter}",
        )
    value, sec = _timed(
        lambda: debiased(
            lambda w1, w2, c: np.sum(
                c
                * ot.bregman.sinkhorn_epsilon_scaling(
                    w1,
                    w2,
                    c,
                    1e-6,
                    numItermax=max(1, args.pot_iter // 20),
                    epsilon0=1e3,
                    numInnerItermax=50,
                    stopThr=1e-9,
                )
            )
        ),
        1,
    )
    _row(
        "POT sinkhorn_epsilon_scaling <P,C>",
        "blur=0.001",
        value,
        sink_ref[PAPER],
        sec,
        f"numItermax={max(1, args.pot_iter // 20)}",
    )


if __name__ == "__main__":
    main()
