"""The portable wheel (``make wheel``): built as abi3 + manylinux2014 with zig, it installs into a fresh
venv that has no Rust toolchain, from PyPI's runtime dependencies alone, and computes what the dev install
computes.

The wheel is built here with the Makefile's flags (``WHEEL_BUILD_ARGS``) into a temporary folder.  After a
``make wheel`` this is a no-op rebuild (cargo's cache in ``target/``, or ``$CARGO_TARGET_DIR``, is shared),
so the wheel ``make wheel`` wrote to ``dist/`` is in effect reused, never a stale one; ``NTKGAN_WHEEL=path``
tests a given wheel file instead.  Building needs the ``test`` extra (maturin, ziglang, auditwheel).  While
the wheel builds, the fresh venv is already installing the runtime dependencies.  The install-and-run test
is skipped, with the reason, only when PyPI cannot be reached (probed by downloading one small runtime
dependency); the other two need no network.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import ntkgan
import numpy as np
import pytest
from conftest import assert_close
from ntkgan import _core

ROOT = Path(__file__).resolve().parents[1]
#: the Makefile's WHEEL_FLAGS (keep the two in step)
WHEEL_BUILD_ARGS = ["build", "--release", "--zig", "--compatibility", "manylinux2014"]
#: the platform tags maturin writes for --compatibility manylinux2014
WHEEL_PLATFORM = "manylinux2014_x86_64.manylinux_2_17_x86_64"
#: a small runtime dependency whose download tells whether PyPI is reachable
PROBE_PACKAGE = "threadpoolctl"
#: the largest glibc symbol version manylinux2014 allows
GLIBC_MAX = (2, 17)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
        reason="the manylinux2014 wheel is built for x86_64 Linux only",
    ),
]


def _run(cmd, *, what, timeout, **kwargs):
    """Run ``cmd``; on a non-zero exit fail with the command and the end of its output."""
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} took more than {timeout} s: {' '.join(map(str, cmd))}\n"
                    f"{_tail(exc.stdout, exc.stderr)}")
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                    f"{_tail(proc.stdout, proc.stderr)}")
    return proc


def _tail(stdout, stderr, n=4000):
    def text(s):
        return s.decode(errors="replace") if isinstance(s, bytes) else (s or "")
    return f"--- stdout ---\n{text(stdout)[-n:]}\n--- stderr ---\n{text(stderr)[-n:]}"


def _has_rust(entry: str) -> bool:
    low = entry.lower()
    if any(word in low for word in ("cargo", "rustc", "rustup")):
        return True
    return any(os.path.exists(os.path.join(entry, tool)) for tool in ("cargo", "rustc", "rustup"))


def _no_rust_env(venv_dir: Path) -> dict[str, str]:
    """This process's environment for the fresh venv: its bin first, no Rust toolchain on PATH, no Rust or
    Python settings (PYTHONPATH, VIRTUAL_ENV, CARGO_*, RUSTUP_*, ...) carried over."""
    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not _has_rust(p)]
    drop = ("CARGO", "RUSTUP", "RUST", "MATURIN", "PYO3", "PYTHON", "VIRTUAL_ENV", "CONDA_PREFIX")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env["PATH"] = os.pathsep.join([str(venv_dir / "bin"), *keep])
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    assert shutil.which("cargo", path=env["PATH"]) is None, env["PATH"]
    assert shutil.which("rustc", path=env["PATH"]) is None, env["PATH"]
    return env


def _runtime_dependencies() -> list[str] | None:
    """``[project].dependencies`` of pyproject.toml, or None where no TOML reader is at hand (Python 3.10
    without tomli: then the wheel's own install brings them)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            return None
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """The manylinux2014 wheel: ``$NTKGAN_WHEEL``, else built with the Makefile's flags."""
    given = os.environ.get("NTKGAN_WHEEL")
    if given:
        path = Path(given).resolve()
        assert path.is_file(), f"NTKGAN_WHEEL={given} is not a file"
        return path
    for module in ("maturin", "ziglang"):
        try:
            __import__(module)
        except ModuleNotFoundError:
            pytest.fail(f"building the wheel needs {module} in this venv: pip install -e '.[test]' "
                        f"(or `make test`, which installs every extra)")
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ)
    # maturin finds zig as `python3 -m ziglang`: this venv's python must come first on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    _run([sys.executable, "-m", "maturin", *WHEEL_BUILD_ARGS, "--out", str(out)], what="maturin build",
         cwd=ROOT, env=env, timeout=840)
    wheels = sorted(out.glob("ntkgan-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, found {[w.name for w in wheels]}"
    return wheels[0]


@pytest.fixture(scope="module")
def pypi(tmp_path_factory) -> None:
    """Skip (with the reason) when PyPI cannot be reached: a real download of one small package, no cache."""
    dest = tmp_path_factory.mktemp("probe")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "--timeout", "15", "--retries", "1", "-d", str(dest), PROBE_PACKAGE]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip(f"no network to PyPI: `pip download {PROBE_PACKAGE}` did not finish in 120 s")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.skip(f"no network to PyPI: `pip download {PROBE_PACKAGE}` failed: {last}")


@pytest.fixture(scope="module")
def fresh_venv(pypi, tmp_path_factory):
    """A new venv (``python -m venv``) that starts installing the runtime dependencies from PyPI in the
    background; yields ``(venv_dir, env, process or None)``."""
    venv_dir = tmp_path_factory.mktemp("wheel-venv") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    env = _no_rust_env(venv_dir)
    deps = _runtime_dependencies()
    proc = None
    if deps:
        log = open(venv_dir.parent / "deps.log", "w+b")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen([str(venv_dir / "bin" / "python"), "-m", "pip", "install", "-q",
                                 "--only-binary=:all:", *deps],
                                cwd=venv_dir.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        proc.log = log
    try:
        yield venv_dir, env, proc
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.log.close()


@pytest.fixture(scope="module")
def wheel_venv(fresh_venv, built_wheel):
    """The fresh venv with the wheel installed (runtime dependencies from PyPI, binaries only)."""
    venv_dir, env, proc = fresh_venv
    if proc is not None:
        try:
            rc = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        proc.log.seek(0)
        output = proc.log.read().decode(errors="replace")
        assert rc == 0, f"pip install of the runtime dependencies failed ({rc}):\n{output[-4000:]}"
    vpy = venv_dir / "bin" / "python"
    _run([str(vpy), "-m", "pip", "install", "-q", "--only-binary=:all:", str(built_wheel)],
         what="pip install of the wheel", cwd=venv_dir.parent, env=env, timeout=600)
    return venv_dir, env


_KERNEL_SCRIPT = r"""
import shutil, sys, numpy as np, ntkgan
from ntkgan import _core
assert shutil.which("cargo") is None and shutil.which("rustc") is None, "a Rust toolchain is on PATH"
data = np.load(sys.argv[1])
arch = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0)
K = ntkgan.kernel(data["x"], data["y"], arch=arch)
f, G = ntkgan.kernel_value_and_grad(data["x"], data["y"], data["w"], arch=arch)
np.savez(sys.argv[2], K=K, f=f, G=G, simd=np.array(_core.simd_path()),
         module=np.array(ntkgan.__file__), core=np.array(_core.__file__))
"""


# first in this file: its fixtures start the runtime dependencies' install before the wheel builds
@pytest.mark.timeout(1200)
def test_wheel_installs_and_runs_without_rust(wheel_venv, tmp_path):
    venv_dir, env = wheel_venv
    rng = np.random.default_rng(11)
    x, y, w = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) * 1.5, rng.normal(size=30)
    np.savez(tmp_path / "in.npz", x=x, y=y, w=w)
    _run([str(venv_dir / "bin" / "python"), "-c", _KERNEL_SCRIPT, str(tmp_path / "in.npz"),
          str(tmp_path / "out.npz")],
         what="kernel call in the fresh venv", cwd=tmp_path, env=env, timeout=300)
    with np.load(tmp_path / "out.npz") as out:
        got = {k: out[k] for k in out.files}
    # the fresh venv's own copy ran, not this checkout's
    site = venv_dir.resolve()
    for key in ("module", "core"):
        assert Path(str(got[key])).resolve().is_relative_to(site), (key, str(got[key]))
    # the run-time SIMD dispatch survived the portable build: the same clone runs as in the dev install
    assert str(got["simd"]) == _core.simd_path()

    arch = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0)
    f, G = ntkgan.kernel_value_and_grad(x, y, w, arch=arch)
    assert_close(got["K"], ntkgan.kernel(x, y, arch=arch), rtol=1e-12, err_msg="kernel")
    assert_close(got["f"], f, rtol=1e-12, atol=1e-300, err_msg="kernel_value_and_grad f")
    assert_close(got["G"], G, rtol=1e-12, atol=1e-300, err_msg="kernel_value_and_grad G")

    # the main job's command line, 20 steps on small clouds
    run_dir = tmp_path / "run"
    _run([str(venv_dir / "bin" / "ntkgan"), "run", "--steps", "20", "--out", str(run_dir), "--quiet",
          "--set", "n_source=50", "--set", "n_target=50"],
         what="ntkgan run in the fresh venv", cwd=tmp_path, env=env, timeout=300)
    assert (run_dir / "COMPLETE").read_text().strip() == "20"
    lines = (run_dir / "metrics.csv").read_text().strip().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["step", "wall_time", "sinkhorn"], header
    last = dict(zip(header, lines[-1].split(",")))
    assert int(last["step"]) == 20, lines[-1]
    assert np.isfinite(float(last["sinkhorn"])), lines[-1]


@pytest.mark.timeout(900)
def test_wheel_is_abi3_manylinux2014(built_wheel):
    name = built_wheel.name
    assert name == f"ntkgan-{ntkgan.__version__}-cp310-abi3-{WHEEL_PLATFORM}.whl", name


@pytest.mark.timeout(900)
def test_wheel_symbols_satisfy_manylinux2014(built_wheel):
    """auditwheel's own verdict: no glibc symbol newer than 2.17, no external library, baseline ISA."""
    try:
        import auditwheel  # noqa: F401
    except ModuleNotFoundError:
        pytest.fail("auditwheel is not installed in this venv: pip install -e '.[test]'")
    proc = _run([sys.executable, "-m", "auditwheel", "show", "--json", str(built_wheel)],
                what="auditwheel show", timeout=300)
    report = json.loads(proc.stdout)
    assert report["overall_tag"] == "manylinux_2_17_x86_64", report
    assert report["sym_tag"] == "manylinux_2_17_x86_64", report
    assert report["external_libs"] == {}, report
    assert not report["unsupported_isa"], report  # no target-cpu beyond baseline x86-64
    versions = [tuple(map(int, v.split("_", 1)[1].split(".")))
                for vs in report["versioned_symbols"].values() for v in vs if v.startswith("GLIBC_")]
    assert versions and max(versions) <= GLIBC_MAX, report["versioned_symbols"]
