"""The Rust tile loops run as generic, AVX2 or AVX-512 clones of the same code (chosen at run time, capped
by ``$NTKGAN_SIMD``); every path must give the same bits.  Each path runs in a fresh interpreter (the
choice is made once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

_SCRIPT = r"""
import sys, numpy as np, ntkgan
from ntkgan import _core
rng = np.random.default_rng(0)
out = {"path": np.array(_core.simd_path())}
archs = {
    "relu": ntkgan.Mlp(depth=3, b_std=1.0),
    "erf": ntkgan.Mlp(depth=2, activation="erf", b_std=0.3),
    "rbf": ntkgan.Mlp(depth=1, activation=ntkgan.arch.Rbf(gamma=0.5), b_std=0.0),
}
for d in (2, 40):
    x = rng.normal(size=(150, d)); y = rng.normal(size=(90, d)) * 2.0
    y[3] = x[5]; x[7] = x[6] * (1 + 1e-9)  # a duplicate and a near-coincident pair
    w = rng.normal(size=240)
    z = np.concatenate([x, y])
    for name, arch in archs.items():
        key = f"{name}_d{d}"
        out[key + "_gram"] = ntkgan.kernel(z, arch=arch)
        out[key + "_rect"] = ntkgan.kernel(x, y, arch=arch, kind="nngp")
        out[key + "_matvec"] = ntkgan.kernel_matvec(x, z, w, arch=arch)
        for tag, (yy, ww) in {"plain": (y, w[:90]), "self": (z, w)}.items():
            f, g = ntkgan.kernel_value_and_grad(x, yy, ww, arch=arch)
            out[f"{key}_{tag}_value"], out[f"{key}_{tag}_grad"] = f, g
cost = rng.random((120, 130)) * 5.0
out["softmin"] = _core.softmin(cost, rng.normal(size=130), 0.05)
out["sinkhorn"] = np.array(ntkgan.metrics.sinkhorn_divergence(rng.normal(size=(80, 2)), rng.normal(size=(70, 2))))
np.savez(sys.argv[1], **out)
"""


def _run(level: str, path: Path) -> dict:
    env = dict(os.environ, NTKGAN_SIMD=level)
    subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], env=env, check=True, timeout=300)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_every_simd_path_gives_the_same_bits(tmp_path):
    results = {level: _run(level, tmp_path / f"{level}.npz") for level in ("generic", "avx2", "avx512")}
    paths = {level: str(r.pop("path")) for level, r in results.items()}
    assert paths["generic"] == "generic"
    assert paths["avx2"] in ("avx2", "generic")
    assert paths["avx512"] in ("avx512", "avx2", "generic")
    base = results["generic"]
    for level in ("avx2", "avx512"):
        assert results[level].keys() == base.keys()
        for key, value in base.items():
            assert np.array_equal(results[level][key], value), f"{key}: {paths[level]} differs from generic"


def test_unknown_simd_cap_means_the_best_path(tmp_path):
    """An unrecognised ``$NTKGAN_SIMD`` does not fail; it leaves the best path the CPU has."""
    best = _run("avx512", tmp_path / "best.npz")["path"]
    other = _run("nonsense", tmp_path / "other.npz")["path"]
    assert str(best) == str(other)


def test_simd_path_names_a_known_path():
    from ntkgan import _core

    assert _core.simd_path() in ("avx512", "avx2", "generic")
