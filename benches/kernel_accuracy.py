#!/usr/bin/env python
r"""Accuracy of the kernels at nearly antipodal pairs, and of erf at large norms, against mpmath.

Usage::

    python benches/kernel_accuracy.py [--quick] [--no-nt] [--out benches/results] [--label NAME]

Measures the relative errors of the Rust backend (whatever ``import ntkgan`` finds: put an older build
first on ``PYTHONPATH`` to measure it) and of neural-tangents (``arch.to_stax()``, float64, CPU, eager)
against the exact reference of ``tests/mp_reference.py`` (80 digits on the float64 inputs, forward-mode
dual numbers for the gradient, the cusp convention ``ds = 0`` where ``s = 0``).  Nothing is asserted:
``tests/test_antipodal.py`` asserts the bounds.

Errors: ``|k - k_ref| / |k_ref|`` for the value, ``||g - g_ref|| / ||g_ref||`` for ``d/dx k(x, y)``, each
with a floor of ``1e-60`` times the natural scale (``sqrt(k(x, x) k(y, y))``, over ``|x|`` for the
gradient; ``pair_errors`` of tests/mp_reference.py): some kernels vanish at ``theta = pi`` (ReLU without
bias), where the reference is ~1e-80 of the terms it cancels, and an error against that is a relative
error of ~1e+60 or more.

Grids (``--quick`` keeps depth {1, 6}, scale 1 and ``d = 1, 2``):

1. Nearly antipodal pairs: relu, leaky_relu(0.2), abs, ABRelu(-0.5, 1.5) x depth {1, 2, 4, 6} x b_std
   {0, 1} x d {1, 2, 3} x scale {2^-20, 1, 2^20}, w_std 1.1, NTK and NNGP.  Per d two random x (norm
   0.3-3 times a unit Gaussian), ``c = 1`` and a random ``c`` in [0.3, 3]; ``y = -c x`` (delta = 0: exactly
   antipodal for ``c = 1``, ``fl(-c x)`` otherwise) and, for ``d >= 2``, ``y = -c x + delta c |x| u``
   (``u`` a random unit vector), delta in 1e-4 ... 1e-12.  With ``d = 1`` every pair is exactly antiparallel.
2. Erf at large norms: erf(1, 0.7, 0.1) depth 2 (w_std 1.3, b_std 0.4) and sigmoid (standard, depth 3, no
   bias) x |x| in {1, 1e4, 1e8, 1e12} x d {1, 3}; ``y = +-1.1 x + delta |x| u`` (delta 1e-3 ... 1e-12), ``y = +-x``
   and a random y of the same scale; NTK and NNGP.

Prints Markdown tables (max error per delta, and per activation at the worst delta); writes
``<out>/kernel_accuracy[_<label>].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import ntkgan  # noqa: E402
from mp_reference import nt_pairs, pair_errors  # noqa: E402

DELTAS = (0.0, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
ERF_DELTAS = (1e-3, 1e-6, 1e-9, 1e-12)
FAMILIES = {
    "relu": "relu",
    "leaky_relu(0.2)": ("leaky_relu", 0.2),
    "abs": "abs",
    "ABRelu(-0.5,1.5)": ntkgan.ABRelu(-0.5, 1.5),
}


def antipodal_pairs(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(x_i, y_i)`` and their delta (see the module docs)."""
    rng = np.random.default_rng(3000 + d)
    xs, ys, ds = [], [], []
    for _ in range(2):
        x = rng.normal(size=d) * rng.uniform(0.3, 3.0)
        for c in (1.0, rng.uniform(0.3, 3.0)):
            u = rng.normal(size=d)
            u /= np.linalg.norm(u)
            for delta in DELTAS if d > 1 else (0.0,):
                xs.append(x)
                ys.append(-c * x + delta * c * np.linalg.norm(x) * u)
                ds.append(delta)
    return np.array(xs), np.array(ys), np.array(ds)


def erf_pairs(d: int, scale: float) -> tuple[np.ndarray, np.ndarray, list]:
    """Rows ``(x_i, y_i)`` of the erf grid and a label per row."""
    rng = np.random.default_rng(4000 + 10 * d + int(np.log10(scale)))
    xs, ys, labels = [], [], []
    for sign in (1.0, -1.0):
        x = rng.normal(size=d) * scale
        u = rng.normal(size=d)
        u /= np.linalg.norm(u)
        for delta in ERF_DELTAS:
            xs.append(x)
            ys.append(sign * 1.1 * x + delta * np.linalg.norm(x) * u)
            labels.append(f"{delta:g}")
        xs.append(x)
        ys.append(sign * x)
        labels.append("0")
        xs.append(x)
        ys.append(rng.normal(size=d) * scale)
        labels.append("random")
    return np.array(xs), np.array(ys), labels


def rust_pairs(x: np.ndarray, y: np.ndarray, arch, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``k(x_i, y_i)`` and ``d/dx k(x, y_i)|_{x_i}`` through the batched drivers."""
    k = np.diag(ntkgan.kernel(x, y, arch=arch, kind=kind, backend="rust")).copy()
    eye = np.eye(len(y))
    g = np.array(
        [ntkgan.kernel_grad(x[i : i + 1], y, eye[i], arch=arch, kind=kind, backend="rust")[0] for i in range(len(x))]
    )
    return k, g


def measure(cases, with_nt: bool) -> list[dict]:
    """One record per pair: the case's labels, the errors of rust (and neural-tangents)."""
    rows = []
    for case in cases:
        arch, kind, x, y, labels = case["arch"], case["kind"], case["x"], case["y"], case["labels"]
        out = {}
        k, g = rust_pairs(x, y, arch, kind)
        out["rust"] = list(zip(*(pair_errors(k[i], g[i], x[i], y[i], arch, kind) for i in range(len(x)))))
        if with_nt:
            kn, gn = nt_pairs(x, y, arch, kind)
            out["nt"] = list(zip(*(pair_errors(kn[i], gn[i], x[i], y[i], arch, kind) for i in range(len(x)))))
        for i, lab in enumerate(labels):
            rec = {key: case[key] for key in case if key not in ("arch", "x", "y", "labels")}
            rec["label"] = lab
            for who, (ek, eg) in out.items():
                rec[f"{who}_value"] = ek[i]
                rec[f"{who}_grad"] = eg[i]
            rows.append(rec)
    return rows


def antipodal_cases(quick: bool):
    depths = (1, 6) if quick else (1, 2, 4, 6)
    scales = (1.0,) if quick else (2.0**-20, 1.0, 2.0**20)
    dims = (1, 2) if quick else (1, 2, 3)
    for fam, act in FAMILIES.items():
        for depth in depths:
            for b_std in (0.0, 1.0):
                arch = ntkgan.Mlp(depth=depth, activation=act, w_std=1.1, b_std=b_std)
                for d in dims:
                    x, y, deltas = antipodal_pairs(d)
                    for scale in scales:
                        for kind in ("ntk", "nngp"):
                            yield {"family": fam, "depth": depth, "b_std": b_std, "d": d, "scale": scale,
                                   "kind": kind, "arch": arch, "x": x * scale, "y": y * scale,
                                   "labels": [f"{v:g}" for v in deltas]}


def erf_cases(quick: bool):
    archs = {
        "erf": ntkgan.Mlp(depth=2, activation=("erf", 1.0, 0.7, 0.1), w_std=1.3, b_std=0.4),
        "sigmoid-std": ntkgan.Mlp(depth=3, activation="sigmoid", w_std=1.0, b_std=0.0,
                                  parameterization="standard", width=16),
    }
    scales = (1.0, 1e8) if quick else (1.0, 1e4, 1e8, 1e12)
    for fam, arch in archs.items():
        for scale in scales:
            for d in (1, 3):
                x, y, labels = erf_pairs(d, scale)
                for kind in ("ntk", "nngp"):
                    yield {"family": fam, "scale": scale, "d": d, "kind": kind, "arch": arch, "x": x, "y": y,
                           "labels": labels}


def table(rows, column: str, columns, who) -> str:
    """Max error per ``column`` value, one line per backend and quantity."""
    head = f"| | {column}: | " + " | ".join(str(c) for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for w in who:
        for q in ("value", "grad"):
            vals = []
            for c in columns:
                sel = [r[f"{w}_{q}"] for r in rows if str(r[column]) == str(c)]
                vals.append(f"{max(sel):.1e}" if sel else "-")
            lines.append(f"| {w} | {q} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small grid (smoke run)")
    ap.add_argument("--no-nt", action="store_true", help="skip neural-tangents")
    ap.add_argument("--out", default=str(REPO / "benches" / "results"), help="directory of the JSON")
    ap.add_argument("--label", default="", help="suffix of the JSON file (e.g. before, after)")
    args = ap.parse_args(argv)
    with_nt = not args.no_nt
    if with_nt:
        try:
            import neural_tangents  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any import failure: measure Rust only
            print(f"neural-tangents not importable ({exc}); Rust only", file=sys.stderr)
            with_nt = False
    who = ("rust", "nt") if with_nt else ("rust",)
    t0 = time.perf_counter()
    anti = measure(antipodal_cases(args.quick), with_nt)
    erf = measure(erf_cases(args.quick), with_nt)
    elapsed = time.perf_counter() - t0
    print(f"ntkgan from {Path(ntkgan.__file__).parent}; {len(anti)} antipodal pairs, {len(erf)} erf pairs, "
          f"{elapsed:.0f} s\n")
    print("Nearly antipodal pairs, max relative error per delta (0: exactly antipodal or fl(-c x)):\n")
    print(table(anti, "label", [f"{v:g}" for v in DELTAS], who))
    print("\nPer activation, max over every delta:\n")
    print(table(anti, "family", list(FAMILIES), who))
    print("\nErf at large norms, max relative error per |x| (every pair of the grid):\n")
    scales = sorted({r["scale"] for r in erf})
    print(table(erf, "scale", scales, who))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "kernel_accuracy" + (f"_{args.label}" if args.label else "") + ("_quick" if args.quick else "")
    (out / f"{name}.json").write_text(json.dumps({"antipodal": anti, "erf": erf, "seconds": elapsed}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
