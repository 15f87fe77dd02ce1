#!/usr/bin/env python
r"""Single-thread cost of the Rust kernel engine, in ns per pair: the "Cost" table of docs/kernel_accuracy.md.

Usage::

    python benches/stable_path_cost.py [--build LABEL=PATH.so ...] [--rounds 3] [--repeat 5] [--quick]

Each ``--build`` is a copy of the extension (``python/ntkgan/_core.abi3.so``, e.g. saved before a change:
``cp python/ntkgan/_core.abi3.so /tmp/core_before.so``); without one, the build that ``import ntkgan``
finds is measured.  Every measurement runs in a fresh interpreter that loads that file as a module of
its own and calls its ``kernel`` / ``kernel_grad`` directly (with ``Mlp.rust_spec()`` of the current
Python package), on one thread (``set_num_threads(1)``, ``RAYON_NUM_THREADS=1``).

Time is CPU time (``time.process_time``), not wall time, so that a busy machine (other processes on
the same cores) costs little; the figure is the best of ``--repeat`` calls, and the best again over
``--rounds`` rounds in which the builds take turns (interleaved, so that a change of load affects them
alike).  ns per pair is the time over ``N * M`` (the symmetric Gram matrix ``kernel(x)`` counts all
``N^2`` entries, though it evaluates about half of them).

The cases: ReLU depth 3 with ``b_std`` 1 (``d`` = 2, ``N`` = 2000, and ``d`` = 784, ``N`` = 1024), erf
depth 3, and ReLU depth 1 without bias and with ``b_std`` 1 (``d`` = 2), each as a Gram matrix and as
``kernel_grad(x, y, w)`` with an independent ``y`` of the same size (the plain row pass).  Inputs are
standard normal.  Prints a Markdown table (the first build is the reference of the last column).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: (label, activation, depth, b_std, d, N, what)
CASES = [
    ("ReLU depth 3, `b_std` 1, Gram `kernel(x)`, d = 2, 2000", "relu", 3, 1.0, 2, 2000, "gram"),
    ("the same, `kernel_grad`", "relu", 3, 1.0, 2, 2000, "grad"),
    ("the same, Gram, d = 784, 1024", "relu", 3, 1.0, 784, 1024, "gram"),
    ("the same, `kernel_grad`, d = 784", "relu", 3, 1.0, 784, 1024, "grad"),
    ("erf depth 3, Gram, d = 2", "erf", 3, 1.0, 2, 2000, "gram"),
    ("erf depth 3, `kernel_grad`, d = 2", "erf", 3, 1.0, 2, 2000, "grad"),
    ("ReLU depth 1, no bias, Gram, d = 2", "relu", 1, 0.0, 2, 2000, "gram"),
    ("ReLU depth 1, no bias, `kernel_grad`, d = 2", "relu", 1, 0.0, 2, 2000, "grad"),
    ("ReLU depth 1, `b_std` 1, Gram, d = 2", "relu", 1, 1.0, 2, 2000, "gram"),
    ("ReLU depth 1, `b_std` 1, `kernel_grad`, d = 2", "relu", 1, 1.0, 2, 2000, "grad"),
]

_CHILD = r"""
import importlib.util, json, sys, time
import numpy as np
path, repeat, cases = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
spec = importlib.util.spec_from_file_location("_core", path)
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)
core.set_num_threads(1)
import ntkgan
out = []
for act, depth, b_std, d, n, what in cases:
    arch = ntkgan.Mlp(depth=depth, activation=act, w_std=1.0, b_std=b_std)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d))
    w = rng.normal(size=n)
    if what == "gram":
        call = lambda: core.kernel(x, None, arch.rust_spec(), True)
    else:
        call = lambda: core.kernel_grad(x, y, w, arch.rust_spec(), True)
    call()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        call()
        best = min(best, time.process_time() - t0)
    out.append(best / (n * n) * 1e9)
print(json.dumps(out))
"""


def measure(path: str, repeat: int, cases: list) -> list[float]:
    env = dict(os.environ, RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    args = json.dumps([list(c[1:]) for c in cases])
    res = subprocess.run([sys.executable, "-c", _CHILD, path, str(repeat), args], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="append", default=[], help="LABEL=PATH of an extension (.so)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the depth-1 cases only")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.build] or [["current", str(REPO / "python/ntkgan/_core.abi3.so")]]
    cases = [c for c in CASES if not args.quick or c[2] == 1]
    best = {label: [float("inf")] * len(cases) for label, _ in builds}
    for r in range(args.rounds):
        order = builds if r % 2 == 0 else builds[::-1]
        for label, path in order:
            for k, v in enumerate(measure(path, args.repeat, cases)):
                best[label][k] = min(best[label][k], v)
            print(f"round {r + 1}, {label}: " + " ".join(f"{v:.2f}" for v in best[label]), file=sys.stderr)
    labels = [label for label, _ in builds]
    ref = labels[0]
    cols = labels + [f"{b}/{ref}" for b in labels[1:]]
    print("| case (N = M) | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for k, c in enumerate(cases):
        vals = [best[b][k] for b in labels]
        cells = [f"{v:.2f}" for v in vals] + [f"{v / vals[0]:.2f}" for v in vals[1:]]
        print(f"| {c[0]} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"cases": [c[0] for c in cases], "ns_per_pair": best}, indent=1))


if __name__ == "__main__":
    main()
