#!/usr/bin/env python
r"""Speed of the paper's particle flows (``inf_ipm``, ``inf_lsgan``): the Rust path vs the JAX path (whole
steps compiled), with the JAX kernels in the host loop and a pure neural-tangents loop beside them, in one
process.

Usage::

    python benches/bench_flows.py [--quick] [--steps N] [--warmup W] [--check-steps K]
                                  [--backend {all,rust,jax}] [--rounds R] [--chunk C]
                                  [--jax-steps J] [--host-steps H] [--nt-steps T]
                                  [--blas-threads T] [--full [--full-steps K]] [--out benches/results]

Setting: eight_gaussians, 500 vs 500 points, discriminator ``relu`` (ReLU depth 3, w_std = b_std = 1,
NTK parameterisation; the width does not matter at infinite width), the presets' ``eta = 1000`` and
``t = 1``, float64 on the CPU.

1. **Rust path**: ``make_flow(make_config(loss, backend="rust"))`` and ``flow.step()`` in a loop.  ``W``
   warm-up steps, then ``N`` timed steps (default 2000; ``--quick`` 50), each timed with
   :func:`time.perf_counter`.  Only flow steps are timed: no metrics, no files.
2. **JAX path** (``backend="jax"``, :mod:`ntkgan.jax_path`): ``flow.advance(C)`` (``C`` = ``--chunk``,
   default 100 = the runner's chunk between metric rows: one compiled ``lax.scan``), after one warm-up
   chunk (the compilation), for ``J`` steps; ms/step = chunk time / ``C``.
3. **The ratio** JAX path / Rust (issue 14's target: at most 5x) is measured **paired**: ``R`` rounds
   (``--rounds``, default 10) of one Rust chunk and one JAX-path chunk of ``C`` steps each, back to back
   from their own flows; the median of the per-round ratios is reported (on a shared machine the load
   changes over a run; adjacent chunks see about the same load).
4. **JAX host loop**: the host flow with the ``"jax"`` backend's kernels (the JAX backend before the
   compiled path: every step back to the host, numpy solvers), ``H`` steps.
5. **Reference loop** (needs the neural-tangents oracle, the pinned set): a gantk2-style loop on
   neural-tangents, ``jax.jit``, CPU, one jitted function per step:

   - IPM: :math:`f(x) = t\,(\operatorname{mean}_j k(x, y_j) - \operatorname{mean}_j k(x, x_j))` with
     ``kernel_fn`` of ``arch.to_stax()`` and the training points held fixed (``stop_gradient``), generator
     cost :math:`c(f) = -f`, and :math:`x \leftarrow x - \eta\,\nabla_x \operatorname{mean}_i c(f(x_i))`
     by ``jax.grad`` (a per-particle step :math:`\eta/N`, ntkgan's convention).  gantk2 writes the
     discriminator with the opposite sign and :math:`c(f) = f`: the same move.
   - LSGAN: on the training points :math:`Z = [x; y]` (:math:`n = N + M`, here :math:`N = M`) the paper's
     closed form :math:`f_t|_Z = \rho + e^{-4tK/n}(f_0 - \rho)`, :math:`f_0 = 0`, :math:`\rho = -1` on
     fake and :math:`+1` on real points (``discriminator/_losses.py``: :math:`\kappa = 2`), from
     ``eigh`` of the NTK Gram :math:`K = V \Lambda V^\top`; extended off :math:`Z` as ntkgan's solver does
     (``discriminator/_infinite.py``), :math:`f(x) = k(x, Z)\,a` with
     :math:`a = V \psi(\Lambda) V^\top \rho`, :math:`\psi(\lambda) = (1 - e^{-4t\lambda/n})/\lambda`
     (:math:`= K^{-1}(I - e^{-4tK/n})\rho` for invertible :math:`K`; :math:`\psi(0) = 4t/n`, eigenvalues
     clipped at 0); cost :math:`c(f) = f^2`; :math:`a` and :math:`Z` held fixed in ``jax.grad``.

   Before timing, ``K`` (``--check-steps``, default 5) steps of the JAX path (and of the reference loop)
   from the same particles must agree with the Rust flow to 1e-6 relative (max |dx| / max |x|); the
   script stops with an error otherwise.
6. ``--full``: the paper's full runs through the runner, ``ntkgan.runner.run(make_config(loss),
   out_dir=tmp, progress=False)`` with the Rust backend (50 000 steps, metrics every 100, checkpoints
   and snapshots as by default), for inf_ipm then inf_lsgan: total wall time and the parts spent in
   metrics, metrics.csv writes, snapshots, checkpoints and final pictures (timed by wrapping the
   runner's private helpers).  Long (about 10 + 30 minutes at the targets); ``--full-steps K`` runs K
   steps and extrapolates each part to 50 000 steps by its count (steps, metric rows, snapshots,
   checkpoints).

``--backend rust`` (or ``--no-jax``) times the Rust path only; ``--backend jax`` the Rust path and the JAX
path (with the paired ratio) only; ``all`` (the default) adds the host loop and the reference loop.
The Rust flows are timed first, then the ``--full`` runs, before this process runs any JAX code.
Targets are printed beside the numbers; nothing is asserted on timings.  Results: a Markdown table on
stdout, ``<out>/bench_flows.{json,md}`` (``bench_flows_quick.*`` with ``--quick``,
``bench_flows_steps<N>.*`` with a non-default ``--steps``; ``_blas<T>`` appended with
``--blas-threads T``), with the machine (CPU, cores, commit, versions, BLAS threads, load average).

``--blas-threads 1`` limits numpy/scipy's OpenBLAS pool (threadpoolctl) for the whole process.  On a
2-core machine the Rust (rayon) and OpenBLAS thread pools compete: a BLAS call right after a Rust call
(the LSGAN solver's Lanczos products ``K @ v`` after the Rust Gram) can run ten times slower than alone,
so compare both settings.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

# neural-tangents runs on the CPU, as the Rust backend does (set before jax can be imported).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import (  # ntkgan: installed, or the source tree
    _f,
    _loadavg,
    _yes,
    arg_parser,
    machine_info,
    ntkgan,
    step_times,
    with_notes,
    write_report,
)
from ntkgan.flows import load_dataset, make_flow
from ntkgan.presets import make_config

LOSSES = ("inf_ipm", "inf_lsgan")
PAPER_STEPS = 50_000
DEFAULT_STEPS = 2000
#: Issue 4's targets: 50 000 steps with Rust (minutes).
TARGET_FULL_MIN = {"inf_ipm": 10.0, "inf_lsgan": 30.0}
#: Issue 14's target: a JAX-path step within this factor of the Rust step (CPU).
TARGET_JAX_PATH_RATIO = {"inf_ipm": 5.0, "inf_lsgan": 5.0}
#: Steps per JAX-path chunk: the runner's default (metrics every 100 steps).
DEFAULT_CHUNK = 100
#: The issue's planning numbers (gantk2-style neural-tangents loop, jit, CPU, 2 cores), ms per step.
PLANNING_MS = {"inf_ipm": 48.0, "inf_lsgan": 390.0}
#: Agreement required between the reference loop (or the JAX backend) and the Rust flow.
AGREE_RTOL = 1e-6


# --------------------------------------------------------------------------------------------------
# environment


def blas_info() -> list[dict] | None:
    """Thread pools of the BLAS libraries numpy/scipy use (threadpoolctl), or None without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: p.get(k) for k in ("internal_api", "num_threads", "version")} for p in threadpool_info()]


def load_jax():
    """``(jax, jnp)`` with float64 enabled, or None when JAX is not installed."""
    if "jax" not in ntkgan.backends.available():
        return None
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    return jax, jnp


def has_neural_tangents() -> bool:
    """Whether the neural-tangents oracle imports (the pinned set only)."""
    try:
        ntkgan.backends.get_backend("neural_tangents")
    except ImportError as exc:
        say(f"neural-tangents unavailable ({exc}); the NT loop column is n/a")
        return False
    return True


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# ntkgan flows


def config(loss: str, backend: str, **kw):
    """The preset run: eight_gaussians 500 vs 500, relu, eta 1000, t 1."""
    return make_config(loss, "relu", "eight_gaussians", backend=backend, **kw)


def _summary(times: list[float], first_s: float) -> dict:
    t = np.asarray(times)
    mean = float(t.mean())
    return {"steps": int(t.size), "total_s": float(t.sum()), "mean_ms": 1e3 * mean,
            "median_ms": 1e3 * float(np.median(t)), "p90_ms": 1e3 * float(np.quantile(t, 0.9)),
            "min_ms": 1e3 * float(t.min()), "warmup_s": first_s,
            "projected_50k_min": mean * PAPER_STEPS / 60.0}


def time_flow(loss: str, backend: str, steps: int, warmup: int) -> dict:
    """Mean/median ms per ``flow.step()`` after ``warmup`` untimed steps."""
    flow = make_flow(config(loss, backend))
    t0 = time.perf_counter()
    for _ in range(warmup):
        flow.step()
    first = time.perf_counter() - t0
    times = step_times(flow, steps)
    if not np.isfinite(flow.particles).all():
        raise RuntimeError(f"{loss}/{backend}: non-finite particles after {warmup + steps} steps")
    row = {"loss": loss, "backend": backend, **_summary(times, first)}
    row["method"] = getattr(flow.discriminator, "method", None)
    say(f"{loss:9s} {backend:4s} {row['mean_ms']:8.2f} ms/step (median {row['median_ms']:.2f}, "
        f"warm-up {first:.2f} s for {warmup} steps)")
    return row


def time_jax_path(loss: str, steps: int, chunk: int) -> dict:
    """ms per step of the compiled JAX path: ``advance(chunk)`` after one warm-up chunk (the compilation)."""
    flow = make_flow(config(loss, "jax", log_every=chunk))
    if not flow.compiled:
        raise RuntimeError(f"{loss}: the JAX path did not compile ({flow.not_compiled})")
    t0 = time.perf_counter()
    flow.advance(chunk)
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(1, math.ceil(steps / chunk))):
        t0 = time.perf_counter()
        flow.advance(chunk)
        times.append((time.perf_counter() - t0) / chunk)
    if not np.isfinite(flow.particles).all():
        raise RuntimeError(f"{loss}/jax path: non-finite particles")
    row = {"loss": loss, "backend": "jax path", "chunk": chunk, **_summary(times, first)}
    row["steps"] = len(times) * chunk
    say(f"{loss:9s} jax path {row['mean_ms']:8.2f} ms/step (chunks of {chunk}; compile + first chunk "
        f"{first:.1f} s)")
    return row


def time_host_loop(loss: str, steps: int, warmup: int) -> dict:
    """The host flow with the "jax" backend's kernels (each step back to the host)."""
    from ntkgan.flows import ParticleFlow

    cfg = config(loss, "jax")
    flow = ParticleFlow(cfg, load_dataset(cfg), np.random.default_rng(cfg.seed))
    times = step_times(flow, steps, warmup)
    row = {"loss": loss, "backend": "jax host loop", **_summary(times, 0.0)}
    say(f"{loss:9s} jax host loop {row['mean_ms']:8.2f} ms/step")
    return row


def paired_ratio(loss: str, rounds: int, chunk: int, **kw) -> dict:
    """Median over ``rounds`` of (JAX-path chunk time) / (Rust chunk time), the chunks back to back
    (``kw``: more config options, e.g. ``d_dtype``)."""
    rust = make_flow(config(loss, "rust", **kw))
    jflow = make_flow(config(loss, "jax", log_every=chunk, **kw))
    if not jflow.compiled:
        raise RuntimeError(f"{loss}: the JAX path did not compile ({jflow.not_compiled})")
    t0 = time.perf_counter()
    jflow.advance(chunk)  # compile
    compile_s = time.perf_counter() - t0
    rust.advance(chunk)
    ratios, r_ms, j_ms = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        rust.advance(chunk)
        tr = time.perf_counter() - t0
        t0 = time.perf_counter()
        jflow.advance(chunk)
        tj = time.perf_counter() - t0
        ratios.append(tj / tr)
        r_ms.append(1e3 * tr / chunk)
        j_ms.append(1e3 * tj / chunk)
    row = {"loss": loss, "rounds": rounds, "chunk": chunk, "ratios": ratios,
           "median_ratio": float(np.median(ratios)), "min_ratio": float(min(ratios)),
           "max_ratio": float(max(ratios)), "rust_ms": r_ms, "jax_path_ms": j_ms,
           "first_chunk_s": compile_s, "options": kw, "target": TARGET_JAX_PATH_RATIO.get(loss)}
    say(f"{loss:9s} JAX path / rust, paired over {rounds} rounds of {chunk} steps: median "
        f"{row['median_ratio']:.2f}x (range {row['min_ratio']:.2f}-{row['max_ratio']:.2f}; rust "
        f"{np.median(r_ms):.2f} ms, jax path {np.median(j_ms):.2f} ms per step)")
    return row


# --------------------------------------------------------------------------------------------------
# the reference loop (pure neural-tangents, gantk2 style)


_REFERENCE_STEPS: dict = {}


def reference_step(jx, loss: str, cfg, n_fake: int, n_real: int):
    """A jitted ``x, y -> x_next`` of ``loss`` on neural-tangents (see the module docstring); cached."""
    key = (loss, cfg.eta, cfg.t, cfg.discriminator_arch(), n_fake, n_real)
    if key not in _REFERENCE_STEPS:
        _REFERENCE_STEPS[key] = _reference_step(jx, loss, cfg, n_fake, n_real)
    return _REFERENCE_STEPS[key]


def _reference_step(jx, loss: str, cfg, n_fake: int, n_real: int):
    jax, jnp = jx
    kernel_fn = cfg.discriminator_arch().to_stax()[2]
    eta, t = cfg.eta, cfg.t
    sg = jax.lax.stop_gradient

    if loss == "inf_ipm":
        # f = sum_z a_z k(., z): a = -t/N on fake, +t/M on real points; c(f) = -f
        coef = jnp.concatenate([jnp.full(n_fake, -t / n_fake), jnp.full(n_real, t / n_real)])

        def step(x, y):
            z = sg(jnp.concatenate([x, y], axis=0))

            def gen_loss(xq):
                return jnp.mean(-(kernel_fn(xq, z, "ntk") @ coef))

            return x - eta * jax.grad(gen_loss)(x)

    elif loss == "inf_lsgan":
        if n_fake != n_real:
            raise ValueError("the paper's LSGAN closed form exp(-4tK/n) assumes N = M")
        n = n_fake + n_real
        rho = jnp.concatenate([-jnp.ones(n_fake), jnp.ones(n_real)])  # fake / real labels

        def step(x, y):
            z = sg(jnp.concatenate([x, y], axis=0))
            gram = kernel_fn(z, None, "ntk")
            lam, vec = jnp.linalg.eigh(gram)
            lam = jnp.maximum(lam, 0.0)
            rate = 4.0 * t / n
            small = rate * lam < 1e-12
            # psi(lam) = (1 - exp(-rate lam)) / lam, entire (psi(0) = rate); K a = rho - e^{-rate K} rho
            psi = jnp.where(small, rate * (1.0 - 0.5 * rate * lam),
                            -jnp.expm1(-rate * lam) / jnp.where(small, 1.0, lam))
            a = sg(vec @ (psi * (vec.T @ rho)))

            def gen_loss(xq):
                return jnp.mean(jnp.square(kernel_fn(xq, z, "ntk") @ a))

            return x - eta * jax.grad(gen_loss)(x)

    else:
        raise ValueError(f"no reference loop for {loss!r}")
    return jax.jit(step)


def time_reference(jx, loss: str, steps: int, warmup: int) -> dict:
    _jax, jnp = jx
    cfg = config(loss, "rust")
    ds = load_dataset(cfg)
    step = reference_step(jx, loss, cfg, ds.source.shape[0], ds.target.shape[0])
    x, y = jnp.asarray(ds.source), jnp.asarray(ds.target)
    t0 = time.perf_counter()
    for _ in range(warmup):
        x = step(x, y).block_until_ready()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        x = step(x, y).block_until_ready()
        times.append(time.perf_counter() - t0)
    if not np.isfinite(np.asarray(x)).all():
        raise RuntimeError(f"reference {loss}: non-finite particles")
    row = {"loss": loss, "backend": "neural-tangents loop", **_summary(times, first)}
    say(f"{loss:9s} ref  {row['mean_ms']:8.2f} ms/step (median {row['median_ms']:.2f}, "
        f"warm-up {first:.2f} s for {warmup} steps)")
    return row


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def check_agreement(jx, loss: str, steps: int, with_reference: bool) -> dict:
    """``steps`` steps from the same particles: the JAX path (and the reference loop) against the Rust flow."""
    _jax, jnp = jx
    cfg = config(loss, "rust")
    ds = load_dataset(cfg)
    rust = make_flow(cfg, ds)
    jflow = make_flow(config(loss, "jax", log_every=1), ds)
    step = reference_step(jx, loss, cfg, ds.source.shape[0], ds.target.shape[0]) if with_reference else None
    x, y = jnp.asarray(ds.source), jnp.asarray(ds.target)
    ref_rel, jax_rel = [], []
    for _ in range(steps):
        rust.step()
        jflow.advance(1)
        if step is not None:
            x = step(x, y)
            ref_rel.append(rel_diff(np.asarray(x), rust.particles))
        jax_rel.append(rel_diff(jflow.particles, rust.particles))
    moved = float(np.abs(rust.particles - ds.source).max())
    row = {"loss": loss, "steps": steps, "reference_rel_diff": ref_rel or None, "jax_path_rel_diff": jax_rel,
           "max_displacement": moved, "rtol": AGREE_RTOL}
    say(f"{loss:9s} agreement after {steps} steps (max |dx| / max |x|, particles moved up to {moved:.3g}): "
        f"JAX path {jax_rel[-1]:.2e}" + (f", reference loop {ref_rel[-1]:.2e}" if ref_rel else ""))
    bad = [name for name, vals in (("reference loop", ref_rel), ("JAX path", jax_rel))
           if not all(math.isfinite(v) and v <= AGREE_RTOL for v in vals)]
    if bad or moved < 1e-3:
        raise SystemExit(
            f"bench_flows: {loss}: {' and '.join(bad) or 'nothing'} disagree(s) with the Rust flow beyond "
            f"{AGREE_RTOL:g} relative (reference {ref_rel}, jax path {jax_rel}; max displacement {moved:.3g}): "
            "the timings would not compare the same computation"
        )
    return row


# --------------------------------------------------------------------------------------------------
# the paper's full runs through the runner


class _PartTimer:
    """Wrap the runner's helpers to accumulate the seconds (and calls) spent in each."""

    PARTS: ClassVar[dict[str, str]] = {
        "metrics": "_measure", "metrics_csv": "_write_metrics", "snapshots": "_snapshot",
        "checkpoints": "_save_checkpoint", "final_pictures": "_finish_pictures",
    }

    def __init__(self):
        from ntkgan import runner

        self.runner = runner
        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self.calls = dict.fromkeys(self.PARTS, 0)
        self.saved = {}

    def __enter__(self):
        for part, name in self.PARTS.items():
            original = getattr(self.runner, name)
            self.saved[name] = original

            def wrapped(*args, _part=part, _fn=original, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    self.seconds[_part] += time.perf_counter() - t0
                    self.calls[_part] += 1

            setattr(self.runner, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(self.runner, name, fn)
        return False


def full_run(loss: str, steps: int) -> dict:
    from ntkgan.runner import run

    cfg = make_config(loss, "relu", "eight_gaussians", backend="rust", steps=steps)
    with tempfile.TemporaryDirectory(prefix="ntkgan-bench-") as tmp, _PartTimer() as parts:
        say(f"full run {loss}: {steps} steps, metrics every {cfg.log_every} ...")
        t0 = time.perf_counter()
        result = run(cfg, Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t0
        final_sinkhorn = float(result.metrics[-1]["sinkhorn"])
    # a 50 000-step run: the runner's defaults (runner._runner_options) at that length
    from ntkgan.runner import _runner_options

    full_opts = _runner_options(make_config(loss, steps=PAPER_STEPS), None, None)
    this_opts = _runner_options(cfg, None, None)

    def count(opts, period_key, with_zero):
        """Calls of a periodic action: every ``period`` steps and at the last step (and at step 0)."""
        period = opts[period_key]
        if not period:  # 0: snapshots never, checkpoints only at the end
            return 1 if period_key == "checkpoint_every" else 0
        return math.ceil(opts["steps"] / period) + (1 if with_zero else 0)

    counts = {
        "metrics": (count(this_opts, "log_every", True), count(full_opts, "log_every", True)),
        "metrics_csv": (count(this_opts, "log_every", True) + 1, count(full_opts, "log_every", True) + 1),
        "snapshots": (count(this_opts, "snapshot_every", True), count(full_opts, "snapshot_every", True)),
        "checkpoints": (count(this_opts, "checkpoint_every", False),
                        count(full_opts, "checkpoint_every", False)),
        "final_pictures": (1, 1),
    }
    measured = dict(parts.seconds)
    flow_s = wall - sum(measured.values())
    # per-call cost times the calls of a 50 000-step run (approximate: metrics.csv is rewritten whole at
    # each log, so its cost per call grows with the rows); the final animation has one frame per snapshot
    per_call = {part: measured[part] / max(parts.calls[part], 1) for part in counts}
    projected = {"flow_steps": flow_s * PAPER_STEPS / steps}
    for part in ("metrics", "metrics_csv", "snapshots", "checkpoints"):
        projected[part] = per_call[part] * counts[part][1]
    snaps_here, snaps_full = counts["snapshots"]
    projected["final_pictures"] = measured["final_pictures"] * snaps_full / max(snaps_here, 1)
    row = {
        "loss": loss, "backend": "rust", "steps": steps, "log_every": cfg.log_every, "wall_s": wall,
        "parts_s": dict(measured, flow_steps=flow_s), "calls": dict(parts.calls),
        "logging_s": measured["metrics"] + measured["metrics_csv"], "final_sinkhorn": final_sinkhorn,
        "extrapolated": steps != PAPER_STEPS, "projected_50k_s": sum(projected.values()),
        "projected_50k_parts_s": projected, "projected_50k_logging_s": projected["metrics"]
        + projected["metrics_csv"], "target_min": TARGET_FULL_MIN[loss],
    }
    row["meets_target"] = row["projected_50k_s"] / 60.0 < TARGET_FULL_MIN[loss]
    say(f"full run {loss}: {wall:.1f} s for {steps} steps (metrics {row['logging_s']:.1f} s); "
        f"50 000 steps {'projected ' if row['extrapolated'] else ''}{row['projected_50k_s'] / 60:.1f} min")
    return row


# --------------------------------------------------------------------------------------------------
# report


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    v = m["versions"]
    pools = m.get("blas") or []
    blas = ", ".join(f"{p['internal_api']} {p['num_threads']} threads" for p in pools) or "n/a"
    load = m["load_average_1min"]
    lines = [
        f"# ntkgan flows: Rust path vs JAX path{' (--quick)' if s['quick'] else ''}",
        "",
        (f"Machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable); commit "
        f"{m['git_commit'] or 'unknown'}; Python {v['python']}, numpy {v['numpy']}, jax {v['jax'] or 'n/a'}, "
        f"neural-tangents {v['neural_tangents'] or 'n/a'}; Rust threads {s['rust_threads']} "
        f"(SIMD {m.get('simd_path', 'n/a')}); BLAS {blas}; "
        f"1-min load average {_f(load['start'], '.2f')} at the start, {_f(load['end'], '.2f')} at the end."),
        (f"eight_gaussians {s['n_source']} vs {s['n_target']}, relu (depth 3, b_std 1), eta {s['eta']:g}, "
        f"t {s['t']:g}, float64, CPU. Rust: {s['steps']} timed steps after {s['warmup']} warm-up steps; JAX "
        f"path: chunks of {s['chunk']} steps (one lax.scan each) after one warm-up chunk, {s['jax_steps']} steps; "
        f"JAX host loop {s['host_steps']} steps; NT loop {s['nt_steps']} steps; ms/step = mean (median). "
        f"JAX path / rust: median of {s['rounds']} paired rounds of {s['chunk']} steps each (min-max); "
        "50k = projected time of 50 000 Rust steps."),
        "",
        ("| loss | rust ms/step | JAX path ms/step | JAX path / rust (paired) | target | met "
        "| JAX host loop ms/step | NT loop ms/step | rust 50k min | target | met |"),
        "|---|---:|---:|---:|---:|:---:|---:|---:|---:|---:|:---:|",
    ]
    for r in report["flows"]:
        pair = r["paired"]

        def ms(x):
            return "n/a" if x is None else f"{x['mean_ms']:.2f} ({x['median_ms']:.2f})"

        ratio = "n/a" if pair is None else (f"{pair['median_ratio']:.2f}x ({pair['min_ratio']:.2f}-"
                                           f"{pair['max_ratio']:.2f})")
        met = None if pair is None else pair["median_ratio"] <= pair["target"]
        lines.append(
            f"| {r['loss']} | {ms(r['rust'])} | {ms(r['jax_path'])} | {ratio} "
            f"| <= {TARGET_JAX_PATH_RATIO[r['loss']]:g}x | {_yes(met)} | {ms(r['host_loop'])} "
            f"| {ms(r['reference'])} | {r['rust']['projected_50k_min']:.1f} | < {TARGET_FULL_MIN[r['loss']]:g} "
            f"| {_yes(r['rust']['projected_50k_min'] < TARGET_FULL_MIN[r['loss']])} |"
        )
    if report["agreement"]:
        lines += ["", (f"Agreement with the Rust flow after {s['check_steps']} steps from the same particles "
                  f"(max |dx| / max |x|; required <= {AGREE_RTOL:g}):"), "",
                  "| loss | JAX path | NT loop | particles moved up to |", "|---|---:|---:|---:|"]
        for a in report["agreement"]:
            ref = a["reference_rel_diff"]
            lines.append(f"| {a['loss']} | {a['jax_path_rel_diff'][-1]:.1e} "
                         f"| {'n/a' if not ref else format(ref[-1], '.1e')} | {a['max_displacement']:.3g} |")
    if report["full"]:
        lines += ["", ("Full runs through the runner (Rust; metrics every 100 steps, default checkpoints and "
                  "snapshots):"), "",
                  ("| loss | steps run | wall s | metrics s | snapshots s | checkpoints s | pictures s "
                  "| 50k min | of which metrics min | target | met |"),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
        for r in report["full"]:
            p = r["parts_s"]
            lines.append(
                f"| {r['loss']} | {r['steps']} | {r['wall_s']:.1f} | {r['logging_s']:.1f} "
                f"| {p['snapshots']:.1f} "
                f"| {p['checkpoints']:.1f} | {p['final_pictures']:.1f} "
                f"| {r['projected_50k_s'] / 60:.1f}{' (extrapolated)' if r['extrapolated'] else ''} "
                f"| {r['projected_50k_logging_s'] / 60:.1f} | < {r['target_min']:g} "
                f"| {_yes(r['meets_target'])} |"
            )
    return with_notes(lines, report["notes"])


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = arg_parser(__doc__, quick="50 timed steps, 2 warm-up, 3 check steps, chunks of 10, 3 paired rounds")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per case (default {DEFAULT_STEPS}, quick 50)")
    parser.add_argument("--jax-steps", type=int, default=None,
                        help="timed steps of the JAX path (default: --steps, rounded up to whole chunks)")
    parser.add_argument("--host-steps", type=int, default=None,
                        help="timed steps of the JAX host loop (default 100, quick 10)")
    parser.add_argument("--nt-steps", type=int, default=None,
                        help="timed steps of the neural-tangents loop (default 60, quick 10)")
    parser.add_argument("--chunk", type=int, default=None,
                        help=f"steps per JAX-path chunk (default {DEFAULT_CHUNK}, quick 10)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="paired rounds of the JAX path / rust ratio (default 10, quick 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5, quick 2)")
    parser.add_argument("--check-steps", type=int, default=None,
                        help="steps of the agreement check (default 5, quick 3)")
    parser.add_argument("--backend", choices=("all", "rust", "jax"), default="all",
                        help="rust: the Rust path only; jax: Rust and the JAX path (paired ratio); all: also "
                             "the JAX host loop and the neural-tangents loop (default)")
    parser.add_argument("--no-jax", action="store_true", help="the same as --backend rust")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit numpy/scipy's BLAS to this many threads (threadpoolctl; default: as is)")
    parser.add_argument("--full", action="store_true", help="also time the paper's full runs (runner)")
    parser.add_argument("--full-steps", type=int, default=PAPER_STEPS,
                        help="steps of each --full run; fewer than 50 000 are extrapolated")
    parser.add_argument("--out", default=str(REPO / "benches" / "results"), help="folder for JSON/Markdown")
    args = parser.parse_args(argv)

    steps = args.steps if args.steps is not None else (50 if args.quick else DEFAULT_STEPS)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    check_steps = args.check_steps if args.check_steps is not None else (3 if args.quick else 5)
    chunk = args.chunk if args.chunk is not None else (10 if args.quick else DEFAULT_CHUNK)
    jax_steps = args.jax_steps if args.jax_steps is not None else steps
    host_steps = args.host_steps if args.host_steps is not None else (10 if args.quick else 100)
    nt_steps = args.nt_steps if args.nt_steps is not None else (10 if args.quick else 60)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 10)
    backend = "rust" if args.no_jax else args.backend
    for name, value in (("--steps", steps), ("--warmup", warmup), ("--check-steps", check_steps),
                        ("--jax-steps", jax_steps), ("--host-steps", host_steps), ("--nt-steps", nt_steps),
                        ("--chunk", chunk), ("--rounds", rounds), ("--full-steps", args.full_steps)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    if "rust" not in ntkgan.backends.available():
        parser.error("the Rust extension ntkgan._core is not importable (build it: make build-dev)")
    if args.blas_threads is not None:
        if args.blas_threads < 1:
            parser.error(f"--blas-threads must be >= 1, got {args.blas_threads}")
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            parser.error("--blas-threads needs threadpoolctl (pip install threadpoolctl)")
        threadpool_limits(limits=args.blas_threads, user_api="blas")  # for the rest of the process

    t_start = time.perf_counter()
    load_start = _loadavg()
    notes = []
    # 1. Rust flows, then the full runs, before any JAX code runs in this process
    rust = {loss: time_flow(loss, "rust", steps, warmup) for loss in LOSSES}
    full = [full_run(loss, args.full_steps) for loss in LOSSES] if args.full else []
    # 2. agreement, the JAX path (and the paired ratio), the JAX host loop and the neural-tangents loop
    jx = None if backend == "rust" else load_jax()
    agreement, jpath, pairs, host, ref = [], {}, {}, {}, {}
    if jx is not None:
        nt = backend == "all" and has_neural_tangents()
        agreement = [check_agreement(jx, loss, check_steps, nt) for loss in LOSSES]
        jpath = {loss: time_jax_path(loss, jax_steps, chunk) for loss in LOSSES}
        pairs = {loss: paired_ratio(loss, rounds, chunk) for loss in LOSSES}
        if backend == "all":
            host = {loss: time_host_loop(loss, host_steps, warmup) for loss in LOSSES}
        if nt:
            ref = {loss: time_reference(jx, loss, nt_steps, warmup) for loss in LOSSES}
        else:
            notes.append("the neural-tangents oracle was not used (absent, or --backend jax): NT loop is n/a.")
    else:
        notes.append("JAX not used (absent or --backend rust): the JAX columns are n/a.")

    flows = []
    for loss in LOSSES:
        flows.append({
            "loss": loss, "rust": rust[loss], "jax_path": jpath.get(loss), "paired": pairs.get(loss),
            "host_loop": host.get(loss), "reference": ref.get(loss),
            "target_jax_path_ratio": TARGET_JAX_PATH_RATIO[loss], "planning_reference_ms": PLANNING_MS[loss],
        })
    load = {"start": load_start, "end": _loadavg()}
    busy = max((v for v in load.values() if v is not None), default=None)
    if busy is not None and busy > 1.5 * (os.cpu_count() or 1):
        notes.append(f"the machine was busy (1-min load average up to {busy:.1f} on {os.cpu_count()} cores): "
                     "timings are noisy; rerun on a quiet machine.")
    cfg = config(LOSSES[0], "rust")
    report = {
        "machine": dict(machine_info(), load_average_1min=load, blas=blas_info()),
        "settings": {"quick": args.quick, "steps": steps, "jax_steps": jax_steps, "nt_steps": nt_steps,
                     "host_steps": host_steps, "chunk": chunk, "rounds": rounds, "backend": backend,
                     "warmup": warmup, "check_steps": check_steps,
                     "data": cfg.data, "n_source": cfg.n_source, "n_target": cfg.n_target, "arch": cfg.arch,
                     "eta": cfg.eta, "t": cfg.t, "dtype": "float64", "device": "cpu",
                     "rust_threads": ntkgan.get_num_threads(), "blas_threads_limit": args.blas_threads,
                     "full_steps": args.full_steps if args.full else None},
        "targets": {"full_min": TARGET_FULL_MIN, "jax_path_over_rust": TARGET_JAX_PATH_RATIO},
        "planning_reference_ms": PLANNING_MS,
        "flows": flows,
        "agreement": agreement,
        "full": full,
        "notes": notes,
        "total_s": time.perf_counter() - t_start,
    }
    stem = "bench_flows_quick" if args.quick else (
        "bench_flows" if steps == DEFAULT_STEPS else f"bench_flows_steps{steps}")
    if args.blas_threads is not None:
        stem += f"_blas{args.blas_threads}"
    written = write_report(args.out, stem, report, markdown(report))
    say(f"wrote {written}.json and .md in {report['total_s']:.1f} s")
    return report


if __name__ == "__main__":
    main()
