r"""The mode-collapse study (Durr et al.): kernel-coupled particles on a Gaussian mixture, swept over g2/g1.

Kernel-coupled particles (``coupling="kernel"``, ``theta="two_number"``, ``g1 = 1``, ``g2 = r``) move as

.. math::
    x_i \leftarrow x_i - \frac{\eta}{N} \sum_j \Theta_{ij}\, \nabla c(f(x_j)), \qquad
    \Theta = (1 - r) I + r\, \mathbf 1 \mathbf 1^\top,

toward a K-mode Gaussian mixture, for each discriminator setting (:data:`SETTINGS`), coupling ratio
:math:`r = g_2 / g_1 \in [0, 1)` and seed.  :math:`\Theta` has the eigenvalue :math:`1 + (N - 1) r` on
the centre of mass and :math:`1 - r` on the :math:`N - 1` relative ("shape") modes, so as :math:`r \to 1`
the cloud translates as a whole much faster than it can split between modes.  The order parameter is the
diversity

.. math::
    D = \log K + \sum_{k=1}^K p_k \log p_k \in [0, \log K],

with :math:`p_k` the fraction of particles nearest to mode :math:`k` (:func:`ntkgan.metrics.diversity`):
0 when every mode gets the same share, :math:`\log K` when all particles sit on one mode.

Setup (defaults).  ``gmm:K`` with the modes on a line in 2-D (``layout="line"``, centres
:math:`(-R, 0), \dots, (R, 0)`, ``R = radius = 3``, component std 0.3), the particles starting from a
narrow source :math:`N(0, 0.5^2 I_2)` at the middle of the line: at :math:`t = 0` almost every particle
is nearest to the middle mode (K odd), so :math:`D(0) \approx \log K`; free particles split between the
modes (:math:`D \to 0`), a rigid cloud (:math:`r \to 1`) cannot.  One :math:`\eta` for every ratio
(``eta = 1``, the per-particle step of free particles is :math:`\eta / N`); it keeps the fast
centre-of-mass mode stable up to :math:`r = 0.98`.

Final diversity.  The mean of :math:`D` over the records of the last ``final_window`` fraction of the run
(default the last 20 %): a persistent, lightly damped discriminator makes the cloud slosh between modes, and
a snapshot of that oscillation at the last step would be noise.

Transition point.  For each setting, with :math:`\bar D(r)` the final diversity averaged over seeds, the
transition point is the smallest :math:`r` at which :math:`\bar D(r)` exceeds half of :math:`\log K`,
linearly interpolated between the two ratios of the grid that bracket the first crossing
(:func:`transition_point`).  There is no transition in the range of ratios when :math:`\bar D` is never
above the threshold, or is above it already at the smallest ratio (the cloud did not split even at the
weakest coupling); the outputs then say so instead of giving a number.  The transition depends on the
step budget: relative modes relax at a rate proportional to :math:`1 - r`, so where a setting converges
slowly, a longer run moves its transition toward 1.

Outputs (in ``out``)::

    collapse_traces.csv     setting, ratio, seed, step, diversity         (every record_every steps)
    collapse_final.csv      setting, ratio, seed, diversity (final window), last (last step),
                            modes_covered, quality (mean distance to the nearest mode; last step), status
    collapse_summary.csv    setting, ratio, mean, std, n_ok                (final diversity over seeds)
    collapse_transitions.csv, collapse_summary.md   transition points; the table of the summary
    collapse_diversity.png  final diversity vs g2/g1, one curve per setting (mean +- std over seeds)
    collapse_traces.png     diversity over time, one panel per setting, one line per ratio
    collapse_study.json     the study's parameters

The work is one task per (setting, ratio, seed), run serially or on Dask (``workers``/``scheduler``), each
single-threaded, so the numbers are the same in every mode.

References
----------
.. [1] Durr, Mroueh, Tu, Wang. Effective Dynamics of Generative Adversarial Networks. Phys. Rev. X 13,
       041004 (2023).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntkgan._validation import check_int, check_real, check_reals
from ntkgan.studies._common import Outputs, StudyResult, check_out, cluster_args, columns_of, run_tasks
from ntkgan.studies._transition import transition_point
from ntkgan.studies._transition import transition_text as _transition_text

__all__ = [
    "DEFAULT_RATIOS",
    "RESERVED",
    "SETTINGS",
    "CollapseResult",
    "collapse_study",
    "transition_point",
]

#: The coupling ratios g2/g1 swept by default.
DEFAULT_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)

#: Discriminator settings: a loss preset of :data:`ntkgan.presets.LOSS_PRESETS` plus Config overrides.
#: ``inf_ipm`` is re-solved from f0 = 0 at every generator step (no memory); the ``finite_*`` settings are
#: one persistent ReLU network (depth 3, width 64, antisymmetric f0 = 0) trained on the LSGAN loss with one
#: gradient step of size ``d_lr`` per generator step, alongside the particles.
SETTINGS: dict[str, dict] = {
    "inf_ipm": {"loss": "inf_ipm", "label": "infinite width, IPM (t = 1, re-solved each step)"},
    "finite_lr0.03": {
        "loss": "lsgan",
        "d_lr": 0.03,
        "d_steps": 1,
        "d_width": 64,
        "d_f0": "zero",
        "label": "finite width 64, persistent, LSGAN, d_lr = 0.03",
    },
    "finite_lr0.3": {
        "loss": "lsgan",
        "d_lr": 0.3,
        "d_steps": 1,
        "d_width": 64,
        "d_f0": "zero",
        "label": "finite width 64, persistent, LSGAN, d_lr = 0.3",
    },
}
DEFAULT_SETTINGS = ("inf_ipm", "finite_lr0.03", "finite_lr0.3")

TRACE_COLUMNS = ("setting", "ratio", "seed", "step", "diversity")
FINAL_COLUMNS = ("setting", "ratio", "seed", "diversity", "last", "modes_covered", "quality", "status")
SUMMARY_COLUMNS = ("setting", "ratio", "mean", "std", "n_ok")


@dataclass(kw_only=True)
class CollapseResult(StudyResult):
    """What :func:`collapse_study` returns: the fields of :class:`~ntkgan.studies._common.StudyResult` and

    Attributes
    ----------
    runs : list of dict
        One per (setting, ratio, seed): ``setting, ratio, seed, steps`` (ndarray), ``diversity``
        (ndarray, NaN after a divergence), ``final`` (mean over the final window), ``last``,
        ``modes_covered``, ``quality``, ``status``.
    summary : list of dict
        One per (setting, ratio): ``mean``, ``std`` of the final diversity over the seeds that finished,
        and their number ``n_ok``.
    transitions : dict
        setting -> transition point (NaN when there is no transition in the range of ratios: the mean
        final diversity never exceeds the threshold, or exceeds it already at the smallest ratio).
    threshold : float
        ``log(K) / 2``.
    """

    transitions: dict
    threshold: float


# ---------------------------------------------------------------------------------------------------------
# one task


#: Config fields the study itself sets; a setting may not override them.
RESERVED = (
    "data",
    "n_source",
    "n_target",
    "coupling",
    "theta",
    "g1",
    "g2",
    "two_number_form",
    "steps",
    "seed",
)


def _setting_overrides(setting) -> tuple[str, str, dict, str]:
    """``(name, loss preset, Config overrides, label)`` of a setting given by name or as a dict."""
    if isinstance(setting, str):
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
        spec = dict(SETTINGS[setting], name=setting)
    elif (
        isinstance(setting, dict)
        and isinstance(setting.get("name"), str)
        and isinstance(setting.get("loss"), str)
    ):
        spec = dict(setting)
    else:
        raise ValueError(
            f"settings must hold names ({', '.join(SETTINGS)}) or dicts with 'name' and 'loss' "
            f"plus Config overrides, got {setting!r}"
        )
    name = spec.pop("name")
    loss = spec.pop("loss")
    label = str(spec.pop("label", name))
    reserved = sorted(set(spec) & set(RESERVED))
    if reserved:
        raise ValueError(f"settings: {name!r} overrides {reserved}, which the study sets itself")
    return name, loss, spec, label


def _config(task: dict):
    from ntkgan.presets import make_config

    k, n = task["k"], task["n"]
    options = {
        "data": f"gmm:{k}",
        "n_source": n,
        "n_target": n,
        "coupling": "kernel",
        "theta": "two_number",
        "g1": 1.0,
        "g2": float(task["ratio"]),
        "eta": task["eta"],
        "steps": task["steps"],
        "seed": task["seed"],
    }
    options.update(task["overrides"])
    return make_config(task["loss"], "relu", **options)


def _dataset(task: dict):
    from ntkgan import datasets

    return datasets.load(
        f"gmm:{task['k']}",
        n_source=task["n"],
        n_target=task["n"],
        seed=task["seed"],
        dim=2,
        layout="line",
        radius=task["radius"],
        std=task["mode_std"],
        source_std=task["source_std"],
    )


def _collapse_task(task: dict) -> dict:
    """One (setting, ratio, seed): the diversity every ``record_every`` steps (module-level: picklable)."""
    from ntkgan import metrics
    from ntkgan.flows import make_flow

    config = _config(task)
    ds = _dataset(task)
    flow = make_flow(config, ds)
    steps, every = task["steps"], task["record_every"]
    record = [s for s in range(steps + 1) if s % every == 0 or s == steps]
    div = np.full(len(record), np.nan)
    div[0] = metrics.diversity(flow.particles, ds.modes)
    status = "ok"
    j = 1
    for s in range(1, steps + 1):
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a divergence is recorded
                flow.step()
        except FloatingPointError as exc:
            status = f"diverged: {exc}"
            break
        if j < len(record) and record[j] == s:
            div[j] = metrics.diversity(flow.particles, ds.modes)
            j += 1
    finished = status == "ok"
    tail = np.asarray(record) >= (1.0 - task["final_window"]) * steps
    return {
        "setting": task["setting"],
        "ratio": float(task["ratio"]),
        "seed": int(task["seed"]),
        "steps": np.asarray(record, dtype=np.int64),
        "diversity": div,
        "final": float(div[tail].mean()) if finished else float("nan"),
        "last": float(div[-1]) if finished else float("nan"),
        "modes_covered": int(metrics.modes_covered(flow.particles, ds.modes)) if finished else None,
        "quality": float(metrics.mean_nearest_distance(flow.particles, ds.modes))
        if finished
        else float("nan"),
        "status": status,
    }


# ---------------------------------------------------------------------------------------------------------
# the study


def collapse_study(
    out,
    *,
    ratios=DEFAULT_RATIOS,
    settings=DEFAULT_SETTINGS,
    seeds: int = 5,
    steps: int = 2000,
    k: int = 3,
    n: int = 60,
    eta: float = 1.0,
    radius: float = 3.0,
    mode_std: float = 0.3,
    source_std: float = 0.5,
    record_every: int = 10,
    final_window: float = 0.2,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> CollapseResult:
    r"""Sweep g2/g1 for each discriminator setting and seed; write traces, summary, transitions and plots.

    Parameters
    ----------
    out : str or path-like
        Output directory (created).
    ratios : sequence of float in [0, 1), default=:data:`DEFAULT_RATIOS`
        Coupling ratios :math:`r = g_2/g_1` (``g1 = 1``, ``g2 = r``).
    settings : sequence of str or dict, default=("inf_ipm", "finite_lr0.03", "finite_lr0.3")
        Names of :data:`SETTINGS`, or dicts ``{"name": ..., "loss": <loss preset>, "label": ... (optional),
        **Config overrides}``; the overrides may not touch :data:`RESERVED` (data, sizes, coupling, steps,
        seed), which the study sets.
    seeds : int >= 1, default=5
        Seeds ``0 .. seeds-1`` (dataset sample, discriminator initialisation).
    steps : int >= 1, default=2000
        Generator steps per run.
    k : int >= 2, default=3
        Number of modes (odd K puts a mode at the source's centre; see the module notes).
    n : int >= 2, default=60
        Number of particles, and of target points.
    eta : float > 0, default=1.0
        Particle step :math:`\eta` (per particle :math:`\eta/N` for free particles).
    radius, mode_std, source_std : float > 0
        Half-length of the line of modes, their std, the source's std.
    record_every : int >= 1, default=10
        Steps between diversity records (the last step is always recorded).
    final_window : float in (0, 1], default=0.2
        The final diversity is the mean over the records at steps :math:`\ge (1 - \text{final_window})`
        ``steps``.
    workers : int, optional
        Run on a local Dask cluster with this many single-threaded worker processes.
    scheduler : str, optional
        Run on the Dask cluster at this address (``tcp://host:port``).  Neither: serially, here.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    CollapseResult

    Raises
    ------
    ValueError
        Naming the argument: ratios outside [0, 1) or repeated, unknown settings or invalid overrides, counts
        below their minimum, non-positive sizes, both ``workers`` and ``scheduler``.
    """
    ratios = check_reals(ratios, "ratios", low=0.0, high=1.0, high_open=True)
    if isinstance(settings, (str, dict)) or not hasattr(settings, "__iter__"):
        raise ValueError(f"settings must be a sequence of setting names or dicts, got {settings!r}")
    specs = [_setting_overrides(s) for s in settings]
    if not specs:
        raise ValueError("settings must name at least one discriminator setting")
    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"settings must not repeat names, got {names}")
    seeds = check_int(seeds, "seeds")
    steps = check_int(steps, "steps")
    k = check_int(k, "k", 2)
    n = check_int(n, "n", 2)
    eta = check_real(eta, "eta", low=0.0, low_open=True)
    radius = check_real(radius, "radius", low=0.0, low_open=True)
    mode_std = check_real(mode_std, "mode_std", low=0.0, low_open=True)
    source_std = check_real(source_std, "source_std", low=0.0, low_open=True)
    record_every = check_int(record_every, "record_every")
    final_window = check_real(final_window, "final_window", low=0.0, high=1.0, low_open=True)
    workers, scheduler = cluster_args(workers, scheduler)
    out_dir = check_out(out)

    common = {
        "steps": steps,
        "k": k,
        "n": n,
        "eta": eta,
        "radius": radius,
        "mode_std": mode_std,
        "source_std": source_std,
        "record_every": record_every,
        "final_window": final_window,
    }
    tasks = [
        dict(common, setting=name, loss=loss, overrides=overrides, ratio=r, seed=s)
        for name, loss, overrides, _ in specs
        for r in ratios
        for s in range(seeds)
    ]
    for name, loss, overrides, _ in specs:  # invalid settings fail here, before any work
        try:
            _config(dict(common, loss=loss, overrides=overrides, ratio=ratios[-1], seed=0))
        except ValueError as exc:
            raise ValueError(f"settings: {name!r} is not a valid configuration: {exc}") from None
    params = dict(
        common,
        ratios=list(ratios),
        seeds=seeds,
        settings=[dict(name=nm, loss=ls, **ov) for nm, ls, ov, _ in specs],
        labels={nm: label for nm, _, _, label in specs},
        workers=workers,
        scheduler=scheduler,
    )

    start = time.perf_counter()
    runs, resumed = run_tasks(_collapse_task, tasks, out_dir, study="collapse", workers=workers, scheduler=scheduler,
                              progress=progress)
    wall = time.perf_counter() - start

    threshold = 0.5 * math.log(k)
    summary = []
    transitions = {}
    for name in names:
        means = []
        for r in ratios:
            finals = np.array([run["final"] for run in runs if run["setting"] == name and run["ratio"] == r])
            ok = finals[np.isfinite(finals)]
            mean = float(ok.mean()) if ok.size else float("nan")
            std = float(ok.std()) if ok.size else float("nan")
            summary.append({"setting": name, "ratio": r, "mean": mean, "std": std, "n_ok": int(ok.size)})
            means.append(mean)
        transitions[name] = transition_point(ratios, means, threshold)

    files = _write_outputs(out_dir, params, runs, summary, transitions, threshold, wall)
    return CollapseResult(
        out_dir=out_dir,
        params=params,
        runs=runs,
        summary=summary,
        transitions=transitions,
        threshold=threshold,
        wall_time=wall,
        files=files,
        resumed=resumed,
    )


# ---------------------------------------------------------------------------------------------------------
# outputs


def _write_outputs(out_dir: Path, params, runs, summary, transitions, threshold, wall) -> dict:
    files = Outputs(out_dir)
    trace_rows = (
        [run["setting"], run["ratio"], run["seed"], int(s), float(v)]
        for run in runs
        for s, v in zip(run["steps"], run["diversity"])
    )
    files.csv("collapse_traces.csv", TRACE_COLUMNS, trace_rows)
    files.csv("collapse_final.csv", FINAL_COLUMNS, columns_of(runs, FINAL_COLUMNS, diversity="final"))
    files.csv("collapse_summary.csv", SUMMARY_COLUMNS, summary)
    transition_rows = ({"setting": s, "transition_ratio": t, "threshold": threshold} for s, t in transitions.items())
    files.csv("collapse_transitions.csv", ("setting", "transition_ratio", "threshold"), transition_rows)
    files.text("collapse_summary.md", _markdown(params, summary, transitions, threshold, runs, wall))
    files.json("collapse_study.json", dict(params, wall_time=wall))
    from ntkgan.plots._studies import plot_collapse_diversity, plot_collapse_traces

    plot_collapse_diversity(files.path("collapse_diversity.png"), summary, transitions, threshold, params)
    plot_collapse_traces(files.path("collapse_traces.png"), runs, threshold, params)
    return files.written


def setting_curve(summary, name) -> tuple[list, list]:
    """The ratios and mean final diversities of one setting (NaN where no seed finished)."""
    rows = [s for s in summary if s["setting"] == name]
    return [s["ratio"] for s in rows], [s["mean"] if s["n_ok"] > 0 else math.nan for s in rows]


def _markdown(params, summary, transitions, threshold, runs, wall) -> str:
    names = [s["name"] for s in params["settings"]]
    lines = [
        "# Mode-collapse study",
        "",
        (
            f"K = {params['k']} modes on a line (radius {params['radius']:g}, std {params['mode_std']:g}), "
            f"N = {params['n']} particles from N(0, {params['source_std']:g}^2 I_2), "
            f"eta = {params['eta']:g}, "
            f"{params['steps']} steps, {params['seeds']} seed(s); g1 = 1, g2 = r. "
            "Final diversity (mean over the "
            f"last {100 * params['final_window']:g} % of the run) "
            "log K + sum p_k log p_k (0: all modes covered evenly, log K = "
            f"{math.log(params['k']):.3f}: one mode), mean ± std over seeds. Wall time {wall:.1f} s."
        ),
        "",
        "| g2/g1 | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    by_key = {(s["setting"], s["ratio"]): s for s in summary}
    for r in params["ratios"]:
        cells = []
        for name in names:
            s = by_key[(name, r)]
            cell = "n/a" if s["n_ok"] == 0 else f"{s['mean']:.3f} ± {s['std']:.3f}"
            if s["n_ok"] < params["seeds"]:
                cell += f" ({params['seeds'] - s['n_ok']} diverged)"
            cells.append(cell)
        lines.append(f"| {r:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            f"Transition point: the smallest g2/g1 where the mean final diversity exceeds log(K)/2 = "
            f"{threshold:.3f}, linearly interpolated on the grid."
        ),
        "",
    ]
    for name in names:
        label = params["labels"].get(name, name)
        text = _transition_text(transitions[name], *setting_curve(summary, name), threshold)
        lines.append(f"- **{name}** ({label}): {text}")
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        lines += ["", "Runs that did not finish:", ""]
        lines += [f"- {r['setting']}, r = {r['ratio']:g}, seed {r['seed']}: {r['status']}" for r in failed]
    return "\n".join(lines) + "\n"
