#!/usr/bin/env python
r"""Depth-1 ReLU-like kernels at moderate angles from antiparallel, against mpmath (docs/kernel_accuracy.md).

Usage::

    python benches/depth1_moderate_angles.py [PATH.so] [PER]

Loads the extension at ``PATH.so`` (default: this checkout's build) as a module of its own, so that a saved
copy of an older build can be measured.  Depth 1, relu, leaky_relu(0.01) and ABRelu(0, 2), ``b_std`` 0 and
0.7, both parameterizations, ``d`` 1-3, NTK and NNGP; ``PER`` pairs per configuration (default 10) with
``eps = pi - theta`` from 1e-3 to 0.3 in input space (``d = 1``: exactly antiparallel).  Prints the worst
relative value and gradient errors per configuration (``pair_errors`` of tests/mp_reference.py) and marks
those above 1e-14 (value) or 3e-14 (gradient).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
path = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "python/ntkgan/_core.abi3.so")
spec = importlib.util.spec_from_file_location("_core", path)
core = importlib.util.module_from_spec(spec); spec.loader.exec_module(core)
import ntkgan
from mp_reference import pair_errors

nper = int(sys.argv[2]) if len(sys.argv) > 2 else 10
acts = {"relu": "relu", "leaky0.01": ("leaky_relu", 0.01), "ab(0,2)": ntkgan.ABRelu(0.0, 2.0)}
rng = np.random.default_rng(7)
worst = {}
rows = []
for an, act in acts.items():
    for b in (0.0, 0.7):
        for std in (False, True):
            arch = ntkgan.Mlp(depth=1, activation=act, w_std=1.1, b_std=b,
                              **({"parameterization": "standard", "width": 16} if std else {}))
            for d in (1, 2, 3):
                xs, ys, eps_l = [], [], []
                for eps in np.geomspace(1e-3, 0.3, nper):
                    x = rng.normal(size=d) * rng.uniform(0.3, 3)
                    c = rng.uniform(0.3, 3.0)
                    if d == 1:
                        y = -c * x
                    else:
                        u = rng.normal(size=d); u -= u @ x / (x @ x) * x; u /= np.linalg.norm(u)
                        xh = x / np.linalg.norm(x)
                        y = -c * np.linalg.norm(x) * (np.cos(eps) * xh - np.sin(eps) * u)
                    xs.append(x); ys.append(y); eps_l.append(eps)
                X, Y = np.array(xs), np.array(ys)
                for kind in ("ntk", "nngp"):
                    sp = arch.rust_spec()
                    K = np.diag(core.kernel(X, Y, sp, kind == "ntk"))
                    eye = np.eye(len(Y))
                    G = np.array([core.kernel_grad(X[i:i+1], Y, eye[i], sp, kind == "ntk")[0] for i in range(len(X))])
                    for i in range(len(X)):
                        ek, eg = pair_errors(K[i], G[i], X[i], Y[i], arch, kind)
                        key = (an, b, std, d, kind)
                        w = worst.setdefault(key, [0, 0, 0, 0])
                        if ek > w[0]: w[0], w[1] = ek, eps_l[i]
                        if eg > w[2]: w[2], w[3] = eg, eps_l[i]
allk = max(v[0] for v in worst.values()); allg = max(v[2] for v in worst.values())
for k, v in worst.items():
    flag = " <--" if v[0] > 1e-14 or v[2] > 3e-14 else ""
    print(f"{k}: value {v[0]:.1e} (eps {v[1]:.3g}) grad {v[2]:.1e} (eps {v[3]:.3g}){flag}")
print(f"MAX value {allk:.2e} grad {allg:.2e}")
