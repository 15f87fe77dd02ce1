r"""The critical-damping study (Durr et al.): a persistent discriminator with a gradient penalty λ, swept.

A persistent finite discriminator :math:`f_\theta` (antisymmetric, :math:`f_0 = 0`) is trained alongside the
particles on the IPM loss plus the gradient penalty of
:class:`~ntkgan.discriminator._finite.FiniteDiscriminator`,

.. math::
    L_\lambda(\theta) = \operatorname{mean}_i f(x_i) - \operatorname{mean}_j f(y_j)
                      + \lambda \operatorname{mean}_{z \in X \cup Y} \|\nabla_x f(z)\|^2,

with ``d_steps`` gradient steps of size ``d_lr`` per generator step, then the particles move
:math:`x_i \leftarrow x_i + (\eta/N) \sum_j \Theta_{ij} \nabla f(x_j)` (two-number kernel, ``g1 = 1``,
``g2``; ``g2 = 0``: free particles).  The target is the source sample translated by ``shift`` along
:math:`e_1` (source :math:`N(0, I_d)`), so the only mismatch is the mean and the run converges exactly to the
target; the convergence is the mean error :math:`e_t = \|\bar x_t - \bar y\|` (every step) and the Sinkhorn
divergence (every ``sinkhorn_every`` steps), the discriminator's oscillation is the mean of :math:`f` on the
fake samples and :math:`f(\bar y)` at the probe point :math:`\bar y`.

Linearised model (notes §1.6, :func:`linear_model_map`).  For a discriminator that is linear near the
particles, :math:`f(x) = w \cdot x + b`, trained in the lazy (NTK) regime, and :math:`e = \bar x - \bar y`:
one discriminator step is :math:`w \leftarrow w - \kappa A (e + 2\lambda w)` and one particle step
:math:`e \leftarrow e + \eta_G w`, with

.. math::
    \kappa = d_{lr}, \qquad \eta_G = \frac{\eta}{N}\,(g_1 + (N - 1) g_2), \qquad
    A = \sum_p \Big(\operatorname{mean}_z \partial_p \nabla_x f(z)\Big)
              \Big(\operatorname{mean}_{z'} \partial_p \nabla_x f(z')\Big)^\top
      = \operatorname{mean}_{z, z'} \nabla_x \nabla_{z'} \hat\Theta(z, z'),

the mean mixed derivative of the discriminator's empirical NTK over the initial samples (for the linear
network :math:`A \approx 2\sigma_w^4/d\; I`).  In continuous time (one generator step = one time unit, along
an eigenvector of :math:`A` with eigenvalue :math:`a`) this is the damped oscillator
:math:`\ddot e + \gamma \dot e + \omega^2 e = 0` with

.. math::
    \omega^2 = \eta_G\, d_{steps}\, \kappa a, \qquad \gamma = 2\lambda\, d_{steps}\, \kappa a, \qquad
    \lambda_c = \frac{\omega}{d_{steps}\kappa a} = \sqrt{\frac{\eta_G}{d_{steps}\kappa a}}
    \;\;(\gamma = 2\omega),

decay rate :math:`\gamma/2` below :math:`\lambda_c` (underdamped), :math:`\gamma/2 - \sqrt{\gamma^2/4 -
\omega^2}` above (overdamped), maximal :math:`= \omega` at critical damping.  (The notes' :math:`\alpha` of
:math:`(\alpha/2) E|\nabla D|^2` is :math:`2\lambda` here.)  The study also evaluates the exact discrete map
of the alternating scheme (``d_steps`` discriminator steps, then the particles with the new discriminator):
its spectral radius gives the model's per-step rate :math:`-\log\rho(M)`, and complex eigenvalues mark
underdamping.

Convergence rate (:func:`decay_rate`).  The upper envelope :math:`\hat e_t = \max_{s \ge t} e_s` (the peaks of
an oscillation) is fitted by :math:`\log \hat e_t \approx c - \rho t` (least squares) over the steps until
:math:`\hat e_t` first falls below ``tol`` times :math:`\hat e_0` (or to the end); :math:`\rho` is the rate
per generator step.  The same estimator is applied to the linearised model's own trajectory, so the two are
compared like for like (at critical damping the :math:`(1 + \omega t)e^{-\omega t}` prefactor biases both
below :math:`\omega`).  ``steps_to_tol`` is the first step from which :math:`e_t \le` ``tol`` :math:`e_0`.

Outputs (in ``out``)::

    damping_traces.csv     lambda, seed, step, mean_error, f_fake_mean, f_probe, sinkhorn
                           (step t >= 1: mean_error and sinkhorn after the particles' move of step t;
                           f_fake_mean and f_probe = f(mean y) with the discriminator of step t, on
                           the particles before they move; step 0: the initial state)
    damping_rates.csv      lambda, seed, rate, steps_to_tol, status
    damping_summary.csv    lambda, rate_mean, rate_std, steps_to_tol_mean, model_rate, model_rate_fit,
                           model_gamma, model_omega, regime
    damping_summary.md     the table, the fastest lambda, the linearised model's lambda_c
    damping_rate.png       rate vs lambda (measured and model) and the model's eigenvalues vs lambda
    damping_trajectories.png   mean error and discriminator output over time, one line per lambda
    damping_study.json     the study's parameters

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
from ntkgan.studies._damping_model import (
    continuous_roots,
    decay_rate,
    linear_model_map,
    linear_model_rate,
    linear_model_trajectory,
)

__all__ = [
    "ARCHS",
    "DEFAULT_LAMBDAS",
    "DampingResult",
    "continuous_roots",
    "damping_study",
    "decay_rate",
    "linear_model_map",
    "linear_model_rate",
    "linear_model_trajectory",
    "ntk_mixed_mean",
]

#: Gradient-penalty strengths swept by default (0 and a log grid around the default setting's lambda_c = 1).
DEFAULT_LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)

#: Discriminator architectures: ``linear`` (identity activation, one hidden layer: f is exactly linear in x,
#: the linearised model's assumption) and ``relu`` (two ReLU hidden layers).
ARCHS: dict[str, dict] = {
    "linear": {"d_activation": "identity", "d_depth": 1, "d_w_std": 1.0, "d_b_std": 1.0},
    "relu": {"d_activation": "relu", "d_depth": 2, "d_w_std": 1.0, "d_b_std": 1.0},
}

TRACE_COLUMNS = ("lambda", "seed", "step", "mean_error", "f_fake_mean", "f_probe", "sinkhorn")
RATE_COLUMNS = ("lambda", "seed", "rate", "steps_to_tol", "status")
SUMMARY_COLUMNS = (
    "lambda",
    "rate_mean",
    "rate_std",
    "steps_to_tol_mean",
    "model_rate",
    "model_rate_fit",
    "model_gamma",
    "model_omega",
    "regime",
)


@dataclass(kw_only=True)
class DampingResult(StudyResult):
    """What :func:`damping_study` returns: the fields of :class:`~ntkgan.studies._common.StudyResult` and

    Attributes
    ----------
    runs : list of dict
        One per (lambda, seed): ``lam, seed, steps, mean_error, f_fake_mean, f_probe`` (arrays, one entry per
        step from 0), ``sinkhorn_steps, sinkhorn``, ``A`` (d, d), ``rate``, ``steps_to_tol``, ``status``.
    summary : list of dict
        One per lambda (columns of ``damping_summary.csv``).
    fastest_lambda : float
        The grid's lambda with the largest mean measured rate.
    model : dict
        The linearised model: ``A`` (mean over seeds), ``a`` (along the shift), ``eta_g``, ``omega``,
        ``lambda_c`` (continuous time), ``lambda_best`` (maximiser of the discrete map's rate on a fine grid),
        ``rate_best``.
    """

    fastest_lambda: float
    model: dict


# ---------------------------------------------------------------------------------------------------------
# one task


def _config(task: dict):
    from ntkgan.presets import LOSS_PRESETS, Config

    options = dict(LOSS_PRESETS["ipm"])
    options.update(ARCHS[task["arch"]])
    options.update(
        n_source=task["n"],
        n_target=task["n"],
        eta=task["eta"],
        d_lr=task["d_lr"],
        d_steps=task["d_steps"],
        d_width=task["width"],
        d_f0="zero",
        d_grad_penalty=float(task["lam"]),
        coupling="kernel",
        theta="two_number",
        g1=1.0,
        g2=task["g2"],
        steps=task["steps"],
        seed=task["seed"],
    )
    return Config(loss="ipm", arch=task["arch"], data="shifted_gaussian", **options)


def _dataset(task: dict):
    from ntkgan.datasets import Dataset

    rng = np.random.default_rng(task["seed"])
    source = rng.standard_normal((task["n"], task["dim"]))
    shift = np.zeros(task["dim"])
    shift[0] = task["shift"]
    return Dataset(
        name="shifted_gaussian",
        source=source,
        target=source + shift,
        meta={
            "source": f"N(0, I_{task['dim']})",
            "target": f"source + {task['shift']:g} e_1",
            "seed": task["seed"],
        },
    )


def _leaves(params) -> list:
    from ntkgan.finite import AntisymmetricParams

    if isinstance(params, AntisymmetricParams):
        return _leaves(params.theta1) + _leaves(params.theta2)
    return [a for layer in params for a in layer]


def ntk_mixed_mean(network, z) -> np.ndarray:
    r""":math:`A = \operatorname{mean}_{z,z'} \nabla_x\nabla_{z'}\hat\Theta(z, z')` of a finite network.

    :math:`A_{kl} = \langle G_k, G_l\rangle` with :math:`G_k = \nabla_\theta \operatorname{mean}_z
    \partial f(z)/\partial x_k` (:func:`ntkgan.finite.input_grad_vjp`).
    """
    from ntkgan import finite as F

    z = np.asarray(z, dtype=np.float64)
    rows = []
    for k in range(z.shape[1]):
        ct = np.zeros_like(z)
        ct[:, k] = 1.0 / z.shape[0]
        _, grads = F.input_grad_vjp(network.arch, network.params, z, ct)
        rows.append(np.concatenate([a.ravel() for a in _leaves(grads)]))
    G = np.array(rows)
    return G @ G.T


def _damping_task(task: dict) -> dict:
    """One (lambda, seed): the mean error and the discriminator's output at every step (picklable)."""
    from ntkgan import metrics
    from ntkgan.flows import make_flow

    ds = _dataset(task)
    flow = make_flow(_config(task), ds)
    A = ntk_mixed_mean(flow._disc.network, np.concatenate([ds.source, ds.target]))
    ybar = ds.target.mean(axis=0)
    steps, every = task["steps"], task["sinkhorn_every"]
    err = np.full(steps + 1, np.nan)
    f_fake = np.full(steps + 1, np.nan)
    f_probe = np.full(steps + 1, np.nan)
    err[0] = np.linalg.norm(flow.particles.mean(axis=0) - ybar)
    f_fake[0] = float(np.mean(flow._disc.network(flow.particles)))
    f_probe[0] = float(flow._disc.network(ybar[None, :])[0])
    sk_steps, sk = [], []
    if every:
        sk_steps.append(0)
        sk.append(metrics.sinkhorn_divergence(flow.particles, ds.target))
    status = "ok"
    for s in range(1, steps + 1):
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a divergence is recorded
                loss = flow.step()
        except FloatingPointError as exc:
            status = f"diverged: {exc}"
            break
        err[s] = np.linalg.norm(flow.particles.mean(axis=0) - ybar)
        f_fake[s] = -loss  # IPM: c(f) = -f, the step returns mean c(f(x_i)) before the move
        f_probe[s] = float(flow.discriminator(ybar[None, :])[0])
        if every and (s % every == 0 or s == steps):
            sk_steps.append(s)
            sk.append(metrics.sinkhorn_divergence(flow.particles, ds.target))
    return {
        "lam": float(task["lam"]),
        "seed": int(task["seed"]),
        "steps": np.arange(steps + 1),
        "mean_error": err,
        "f_fake_mean": f_fake,
        "f_probe": f_probe,
        "sinkhorn_steps": np.asarray(sk_steps, dtype=np.int64),
        "sinkhorn": np.asarray(sk, dtype=np.float64),
        "A": A,
        "status": status,
    }


# ---------------------------------------------------------------------------------------------------------
# the study


def damping_study(
    out,
    *,
    lambdas=DEFAULT_LAMBDAS,
    seeds: int = 3,
    steps: int = 1000,
    arch: str = "linear",
    width: int = 128,
    n: int = 50,
    dim: int = 2,
    shift: float = 3.0,
    eta: float = 5.0,
    d_lr: float = 0.01,
    d_steps: int = 10,
    g2: float = 0.0,
    tol: float = 1e-3,
    sinkhorn_every: int = 20,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> DampingResult:
    r"""Sweep the gradient penalty λ of a persistent discriminator; measure convergence rates; compare with
    the linearised model.

    Parameters
    ----------
    out : str or path-like
        Output directory (created).
    lambdas : sequence of float >= 0, default=:data:`DEFAULT_LAMBDAS`
        Penalty strengths (include 0 for the undamped oscillation).
    seeds : int >= 1, default=3
        Seeds ``0 .. seeds-1`` (source sample, network initialisation).
    steps : int >= 2, default=1000
        Generator steps per run.
    arch : {"linear", "relu"}, default="linear"
        Discriminator architecture (:data:`ARCHS`).
    width : int >= 1, default=128
        Hidden width of the discriminator.
    n : int >= 2, default=50
        Number of particles (= target points).
    dim : int >= 1, default=2
    shift : float > 0, default=3.0
        Distance of the target from the source, along :math:`e_1`.
    eta : float > 0, default=5.0
        Particle step :math:`\eta` (:math:`\eta_G = (\eta/N)(1 + (N-1) g_2)`).
    d_lr : float > 0, default=0.01
        Discriminator step :math:`\kappa`.
    d_steps : int >= 1, default=10
        Discriminator steps per generator step.
    g2 : float in [0, 1), default=0.0
        Off-diagonal coupling (``g1 = 1``); 0 = free particles.
    tol : float in (0, 1), default=1e-3
        End of the rate fit and the threshold of ``steps_to_tol`` (:func:`decay_rate`).
    sinkhorn_every : int >= 0, default=20
        Steps between Sinkhorn divergences (0: none).
    workers, scheduler, progress
        As in :func:`ntkgan.studies.collapse_study`.

    With the defaults, :math:`\eta_G = 0.1`, :math:`A \approx I`, so :math:`\omega \approx 0.1` per step and
    :math:`\lambda_c \approx 1`.

    Returns
    -------
    DampingResult

    Raises
    ------
    ValueError
        Naming the argument: negative or repeated lambdas, an unknown arch, counts below their minimum,
        non-positive sizes or steps, ``g2`` outside [0, 1), a bad ``tol``, both ``workers`` and ``scheduler``.
    """
    lambdas = check_reals(lambdas, "lambdas", low=0.0)
    seeds = check_int(seeds, "seeds")
    steps = check_int(steps, "steps", 2)
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {tuple(ARCHS)}, got {arch!r}")
    width = check_int(width, "width")
    n = check_int(n, "n", 2)
    dim = check_int(dim, "dim")
    shift = check_real(shift, "shift", low=0.0, low_open=True)
    eta = check_real(eta, "eta", low=0.0, low_open=True)
    d_lr = check_real(d_lr, "d_lr", low=0.0, low_open=True)
    d_steps = check_int(d_steps, "d_steps")
    g2 = check_real(g2, "g2", low=0.0, high=1.0, high_open=True)
    tol = check_real(tol, "tol", low=0.0, high=1.0, low_open=True, high_open=True)
    sinkhorn_every = check_int(sinkhorn_every, "sinkhorn_every", 0)
    workers, scheduler = cluster_args(workers, scheduler)
    out_dir = check_out(out)

    common = {
        "steps": steps,
        "arch": arch,
        "width": width,
        "n": n,
        "dim": dim,
        "shift": shift,
        "eta": eta,
        "d_lr": d_lr,
        "d_steps": d_steps,
        "g2": g2,
        "sinkhorn_every": sinkhorn_every,
    }
    _config(dict(common, lam=lambdas[-1], seed=0))  # invalid combinations fail before any work
    tasks = [dict(common, lam=lam, seed=s) for lam in lambdas for s in range(seeds)]
    params = dict(common, lambdas=list(lambdas), seeds=seeds, tol=tol, workers=workers, scheduler=scheduler)

    start = time.perf_counter()
    runs, resumed = run_tasks(_damping_task, tasks, out_dir, study="damping", workers=workers, scheduler=scheduler,
                              progress=progress)
    wall = time.perf_counter() - start

    for run in runs:
        err = run["mean_error"]
        finite = err[np.isfinite(err)]
        if run["status"] == "ok" and finite.size >= 2:
            run["rate"], run["steps_to_tol"] = decay_rate(err, tol=tol)
        else:
            run["rate"], run["steps_to_tol"] = float("nan"), float("nan")

    model = _model(runs, params)
    summary = []
    for lam in lambdas:
        rates = np.array([r["rate"] for r in runs if r["lam"] == lam])
        reach = np.array([r["steps_to_tol"] for r in runs if r["lam"] == lam])
        ok = rates[np.isfinite(rates)]
        m = model["per_lambda"][lam]
        summary.append(
            {
                "lambda": lam,
                "rate_mean": float(ok.mean()) if ok.size else float("nan"),
                "rate_std": float(ok.std()) if ok.size else float("nan"),
                "steps_to_tol_mean": float(reach.mean()) if np.isfinite(reach).all() else float("nan"),
                "model_rate": m["rate"],
                "model_rate_fit": m["rate_fit"],
                "model_gamma": m["gamma"],
                "model_omega": model["omega"],
                "regime": m["regime"],
            }
        )
    means = np.array([s["rate_mean"] for s in summary])
    fastest = float(lambdas[int(np.nanargmax(means))]) if np.isfinite(means).any() else float("nan")

    files = _write_outputs(out_dir, params, runs, summary, fastest, model, wall)
    return DampingResult(
        out_dir=out_dir,
        params=params,
        runs=runs,
        summary=summary,
        fastest_lambda=fastest,
        model=model,
        wall_time=wall,
        files=files,
        resumed=resumed,
    )


def _model(runs, params) -> dict:
    """The linearised model for the study's setting, with A averaged over the seeds' initial networks."""
    A = np.mean([r["A"] for r in runs], axis=0)
    n, g2, d_lr, d_steps = params["n"], params["g2"], params["d_lr"], params["d_steps"]
    eta_g = params["eta"] / n * (1.0 + (n - 1) * g2)
    a = float(A[0, 0])  # along the shift e_1
    kw = {"eta_g": eta_g, "d_lr": d_lr, "d_steps": d_steps}
    _, omega, _, _ = continuous_roots(a, 0.0, **kw)
    lambda_c = omega / (d_steps * d_lr * a)
    e0 = np.zeros(A.shape[0])
    e0[0] = params["shift"]
    per_lambda = {}
    for lam in params["lambdas"]:
        rate, regime = linear_model_rate(A, lam, **kw)
        traj = linear_model_trajectory(A, lam, e0, params["steps"], **kw)
        rate_fit = decay_rate(traj, tol=params["tol"])[0] if traj[0] > 0 else float("nan")
        gamma, _, sp, _ = continuous_roots(a, lam, **kw)
        per_lambda[lam] = {
            "rate": rate,
            "rate_fit": rate_fit,
            "regime": regime,
            "gamma": gamma,
            "rate_continuous": -sp.real,
        }
    positive = [lam for lam in params["lambdas"] if lam > 0]
    lo = min([*positive, lambda_c]) / 10.0
    # beyond lambda d_lr a_max = 1 a discriminator step no longer contracts (|1 - 2 lambda d_lr a| > 1)
    hi = min(
        max([*positive, lambda_c]) * 10.0, 0.999 / (d_lr * float(np.linalg.eigvalsh(0.5 * (A + A.T))[-1]))
    )
    grid = np.geomspace(lo, max(hi, 2 * lo), 801)
    grid_rates = np.array([linear_model_rate(A, lam, **kw)[0] for lam in grid])
    grid_roots = np.array([continuous_roots(a, lam, **kw)[2:] for lam in grid])
    best = int(np.argmax(grid_rates))
    return {
        "A": A,
        "a": a,
        "eta_g": eta_g,
        "omega": omega,
        "lambda_c": lambda_c,
        "lambda_best": float(grid[best]),
        "rate_best": float(grid_rates[best]),
        "grid": grid,
        "grid_rates": grid_rates,
        "grid_roots": grid_roots,
        "per_lambda": per_lambda,
    }


# ---------------------------------------------------------------------------------------------------------
# outputs


def _write_outputs(out_dir: Path, params, runs, summary, fastest, model, wall) -> dict:
    files = Outputs(out_dir)
    def trace_rows():
        for r in runs:
            sk = dict(zip(r["sinkhorn_steps"].tolist(), r["sinkhorn"].tolist()))
            for s in r["steps"]:
                s = int(s)
                yield [
                    r["lam"],
                    r["seed"],
                    s,
                    r["mean_error"][s],
                    r["f_fake_mean"][s],
                    r["f_probe"][s],
                    sk.get(s, float("nan")),
                ]

    files.csv("damping_traces.csv", TRACE_COLUMNS, trace_rows())
    files.csv("damping_rates.csv", RATE_COLUMNS, columns_of(runs, RATE_COLUMNS, **{"lambda": "lam"}))
    files.csv("damping_summary.csv", SUMMARY_COLUMNS, summary)
    files.text("damping_summary.md", _markdown(params, summary, fastest, model, runs, wall))
    record = dict(
        params,
        wall_time=wall,
        model={
            k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in model.items()
            if k not in ("per_lambda", "grid", "grid_rates", "grid_roots")
        },
    )
    files.json("damping_study.json", record)
    from ntkgan.plots._studies import plot_damping_rate, plot_damping_trajectories

    plot_damping_rate(files.path("damping_rate.png"), summary, model, params)
    plot_damping_trajectories(files.path("damping_trajectories.png"), runs, params)
    return files.written


def _markdown(params, summary, fastest, model, runs, wall) -> str:
    A = model["A"]
    lines = [
        "# Critical-damping study",
        "",
        (
            f"Discriminator: persistent, `{params['arch']}` ({ARCHS[params['arch']]['d_activation']}, depth "
            f"{ARCHS[params['arch']]['d_depth']}, width {params['width']}), "
            "IPM loss + lambda mean |grad f|^2, "
            f"{params['d_steps']} steps of d_lr = {params['d_lr']:g} per generator step. "
            f"Particles: N = {params['n']} "
            f"in d = {params['dim']}, eta = {params['eta']:g}, g2 = {params['g2']:g}; target = source + "
            f"{params['shift']:g} e_1. {params['steps']} steps, {params['seeds']} seed(s), "
            f"wall time {wall:.1f} s."
        ),
        "",
        (
            f"Linearised model: A (mean mixed NTK derivative, mean over seeds) = "
            f"{np.array2string(A, precision=3, separator=', ')}, eta_G = {model['eta_g']:g}, "
            f"omega = {model['omega']:.4f} per step, critical lambda_c = {model['lambda_c']:.3f} "
            "(continuous time); "
            f"the discrete map's fastest lambda = {model['lambda_best']:.3f} (rate {model['rate_best']:.4f})."
        ),
        "",
        (
            "Rate: fitted decay rate of the upper envelope of |mean(x) - mean(y)| per generator step, "
            f"until it falls below {params['tol']:g} of its start; steps_to_tol: first step from which "
            "the error stays below that."
        ),
        "",
        "| lambda | rate (mean ± std) | steps to tol | model rate (same fit) | model -log rho(M) | regime |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary:
        reach = "not reached" if math.isnan(s["steps_to_tol_mean"]) else f"{s['steps_to_tol_mean']:.0f}"
        lines.append(
            f"| {s['lambda']:g} | {s['rate_mean']:.4f} ± {s['rate_std']:.4f} | {reach} | "
            f"{s['model_rate_fit']:.4f} | {s['model_rate']:.4f} | {s['regime']} |"
        )
    lines += [
        "",
        (
            f"Fastest lambda on the grid (largest mean measured rate): **{fastest:g}**; "
            f"linearised model: lambda_c = {model['lambda_c']:.3f}, "
            f"discrete optimum {model['lambda_best']:.3f}."
        ),
    ]
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        lines += ["", "Runs that did not finish:", ""]
        lines += [f"- lambda = {r['lam']:g}, seed {r['seed']}: {r['status']}" for r in failed]
    return "\n".join(lines) + "\n"
