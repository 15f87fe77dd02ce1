"""Figures of the studies (``ntkgan collapse``, ``ntkgan damping``), drawn with matplotlib's object-oriented API on
the Agg canvas (no pyplot).  The studies compute (transition points, the linearised model's roots); this
module only draws what they pass in."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ntkgan.plots._snapshots import _save as _save_png
from ntkgan.studies._transition import transition_text

__all__ = [
    "plot_collapse_diversity",
    "plot_collapse_traces",
    "plot_damping_rate",
    "plot_damping_trajectories",
]

DPI = 110
_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def _save(fig: Figure, path) -> None:
    """Write ``fig`` atomically (the runner's PNG writer) at this module's resolution."""
    _save_png(fig, path, dpi=DPI)


# ---------------------------------------------------------------------------------------------------------
# collapse


def plot_collapse_diversity(path, summary, transitions, threshold, params) -> Figure:
    """Final diversity (mean ± std over seeds) against g2/g1, one curve per setting, transitions marked.

    A setting's transition is drawn as a dotted vertical line in its colour and given in its legend entry,
    or "no transition in range" when its mean final diversity does not cross the threshold inside the grid
    of ratios (already above it at the smallest ratio, or never above it).  The legend sits under the axes,
    off the data.  Returns the figure written.
    """
    fig = Figure(figsize=(7.2, 5.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    log_k = math.log(params["k"])
    for i, spec in enumerate(params["settings"]):
        name = spec["name"]
        color = _COLORS[i % len(_COLORS)]
        rows = sorted((s for s in summary if s["setting"] == name), key=lambda s: s["ratio"])
        r = np.array([s["ratio"] for s in rows])
        m = np.array([s["mean"] for s in rows])
        sd = np.array([s["std"] for s in rows])
        label = params["labels"].get(name, name)
        t = transitions[name]
        text = transition_text(t, r, m, threshold, digits=2)
        label += f"  (transition {text})" if math.isfinite(t) else f"\n    {text}"
        if math.isfinite(t):
            ax.axvline(t, color=color, ls=":", lw=1.2)
        ax.plot(r, m, marker="o", ms=4, color=color, label=label)
        ax.fill_between(r, m - sd, m + sd, color=color, alpha=0.15, lw=0)
    ax.axhline(threshold, color="0.4", ls="--", lw=1, label=r"threshold $\frac{1}{2}\log K$")
    ax.axhline(
        log_k,
        color="0.6",
        ls=":",
        lw=1,
        label=r"$\log K$: all particles on one mode (0: modes covered evenly)",
    )
    handles, labels = ax.get_legend_handles_labels()
    if any(math.isfinite(t) for t in transitions.values()):
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.2))
        labels.append("transition: first crossing of the threshold (setting's colour)")
    ax.set_xlim(-0.02, 1.0)
    ax.set_ylim(-0.05, log_k * 1.08)
    ax.set_xlabel(r"coupling $g_2/g_1$")
    ax.set_ylabel(r"final diversity $\log K + \sum_k p_k \log p_k$")
    ax.set_title(
        f"mode collapse: K = {params['k']}, N = {params['n']}, {params['steps']} steps, "
        f"{params['seeds']} seed(s); mean ± std over seeds",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=1, frameon=False)
    _save(fig, path)
    return fig


def plot_collapse_traces(path, runs, threshold, params) -> None:
    """Diversity over time (mean over seeds), one panel per setting, one line per ratio."""
    names = [s["name"] for s in params["settings"]]
    ratios = params["ratios"]
    fig = Figure(figsize=(4.4 * len(names), 3.9), layout="constrained")
    norm = Normalize(vmin=0.0, vmax=1.0)
    cmap = "viridis"
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    axes = []
    for j, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), j + 1, sharey=axes[0] if axes else None)
        axes.append(ax)
        for r in ratios:
            group = [run for run in runs if run["setting"] == name and run["ratio"] == r]
            if not group:
                continue
            steps = group[0]["steps"]
            values = np.array([run["diversity"] for run in group])
            finite = np.isfinite(values)
            count = finite.sum(axis=0)
            total = np.where(finite, values, 0.0).sum(axis=0)
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)  # over the seeds still running
            ax.plot(steps, mean, color=mappable.to_rgba(r), lw=1.2)
        ax.axhline(threshold, color="0.4", ls="--", lw=1)
        ax.set_xlabel("generator step")
        ax.set_title(params["labels"].get(name, name), fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("diversity (mean over seeds)")
    fig.colorbar(mappable, ax=axes, label=r"$g_2/g_1$ (line colour)", shrink=0.9)
    fig.legend(
        handles=[Line2D([], [], color="0.4", ls="--", lw=1)],
        labels=[r"threshold $\frac{1}{2}\log K$ (the transition: where the final diversity crosses it)"],
        loc="outside lower center",
        fontsize=8,
        frameon=False,
    )
    _save(fig, path)


# ---------------------------------------------------------------------------------------------------------
# damping


def _lambda_positions(lambdas) -> tuple[np.ndarray, float]:
    """x positions on a log axis: lambda itself, and 0 placed half a decade below the smallest positive."""
    positive = [v for v in lambdas if v > 0]
    zero_at = (min(positive) if positive else 1.0) / 10**0.75
    return np.array([v if v > 0 else zero_at for v in lambdas]), zero_at


def _lambda_colors(lambdas):
    positive = sorted(v for v in lambdas if v > 0)
    norm = Normalize(vmin=0, vmax=max(1, len(positive) - 1))
    mappable = ScalarMappable(norm=norm, cmap="plasma")
    return {v: ("black" if v == 0 else mappable.to_rgba(positive.index(v) * 0.85)) for v in lambdas}


def plot_damping_rate(path, summary, model, params) -> None:
    """Measured rate vs lambda with the linearised model; and the model's eigenvalues vs lambda."""
    lambdas = [s["lambda"] for s in summary]
    x, zero_at = _lambda_positions(lambdas)
    fig = Figure(figsize=(11.5, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    grid, grid_rates = model["grid"], model["grid_rates"]
    ax.plot(grid, grid_rates, color="0.3", lw=1.5, label=r"linearised model, $-\log\rho(M)$ (discrete map)")
    fit = np.array([s["model_rate_fit"] for s in summary])
    ax.plot(
        x,
        fit,
        ls="none",
        marker="s",
        mfc="none",
        color="0.3",
        ms=7,
        label="linearised model, same envelope fit",
    )
    mean = np.array([s["rate_mean"] for s in summary])
    sd = np.array([s["rate_std"] for s in summary])
    ax.errorbar(
        x,
        mean,
        yerr=sd,
        ls="-",
        marker="o",
        color="tab:red",
        ms=5,
        capsize=3,
        label=f"measured ({params['arch']} discriminator, mean ± std)",
    )
    lam_c = model["lambda_c"]
    ax.axvline(lam_c, color="tab:blue", ls="--", lw=1, label=rf"$\lambda_c$ = {lam_c:.2f} (continuous time)")
    ax.set_xscale("log")
    ticks = [zero_at] + [v for v in ax.get_xticks() if zero_at * 3 < v]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0"] + [f"{v:g}" for v in ticks[1:]])
    ax.set_xlim(zero_at / 2, max(grid[-1], max(x) * 2))
    ax.set_xlabel(r"gradient penalty $\lambda$")
    ax.set_ylabel("convergence rate per generator step")
    ax.set_title("convergence rate of |mean(x) - mean(y)|", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")

    top = np.nanmax(np.concatenate([grid_rates, mean + np.nan_to_num(sd), fit]))
    ax.set_ylim(min(0.0, np.nanmin(mean)) - 0.05 * top, 1.2 * top)

    ax = fig.add_subplot(1, 2, 2)
    s_plus, s_minus = model["grid_roots"][:, 0], model["grid_roots"][:, 1]
    ax.plot(grid, -s_plus.real, color="tab:red", label=r"$-\mathrm{Re}\,s_+$ (decay rate)")
    ax.plot(grid, -s_minus.real, color="tab:orange", ls="--", label=r"$-\mathrm{Re}\,s_-$")
    im = np.abs(s_plus.imag)
    ax.plot(grid[im > 0], im[im > 0], color="tab:purple", label=r"$|\mathrm{Im}\,s|$ (angular frequency)")
    positive = np.array(lambdas) > 0
    ax.plot(
        np.array(lambdas)[positive],
        mean[positive],
        ls="none",
        marker="o",
        color="tab:red",
        mfc="white",
        label="measured rate",
    )
    ax.axvspan(grid[0], lam_c, color="tab:blue", alpha=0.07, lw=0)
    ax.axvline(lam_c, color="tab:blue", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.3 * float(np.min(-s_plus.real)), 3 * model["omega"])
    ax.text(lam_c / 1.4, 2.2 * model["omega"], "underdamped", ha="right", fontsize=8, color="tab:blue")
    ax.text(lam_c * 1.4, 2.2 * model["omega"], "overdamped", ha="left", fontsize=8, color="0.3")
    ax.set_xlabel(r"gradient penalty $\lambda$")
    ax.set_ylabel("per generator step")
    ax.set_title(
        r"linearised model: $s_\pm = -\gamma/2 \pm \sqrt{\gamma^2/4 - \omega^2}$, "
        rf"$\omega$ = {model['omega']:.3f}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    _save(fig, path)


def plot_damping_trajectories(path, runs, params) -> None:
    """Mean error, discriminator output on the fakes and Sinkhorn divergence over time (seed 0) per lambda."""
    lambdas = params["lambdas"]
    colors = _lambda_colors(lambdas)
    first = {r["lam"]: r for r in sorted(runs, key=lambda r: r["seed"]) if r["seed"] == 0}
    fig = Figure(figsize=(14.5, 4.2), layout="constrained")
    ax_e = fig.add_subplot(1, 3, 1)
    ax_f = fig.add_subplot(1, 3, 2)
    ax_s = fig.add_subplot(1, 3, 3)
    for lam in lambdas:
        run = first.get(lam)
        if run is None:
            continue
        c = colors[lam]
        label = rf"$\lambda$ = {lam:g}"
        err = np.where(run["mean_error"] > 0, run["mean_error"], np.nan)
        ax_e.plot(run["steps"], err, color=c, lw=1.1, label=label)
        ax_f.plot(run["steps"], run["f_fake_mean"], color=c, lw=1.1, label=label)
        if run["sinkhorn"].size:
            sk = np.where(run["sinkhorn"] > 0, run["sinkhorn"], np.nan)
            ax_s.plot(run["sinkhorn_steps"], sk, color=c, lw=1.1, marker=".", ms=3, label=label)
    ax_e.set_yscale("log")
    ax_e.set_ylabel(r"$\|\bar x_t - \bar y\|$")
    ax_e.set_title("distance of the means (seed 0)", fontsize=10)
    ax_f.set_ylabel(r"mean of $f$ on the fake samples")
    ax_f.set_title("discriminator output (oscillation)", fontsize=10)
    ax_s.set_yscale("log")
    ax_s.set_ylabel("Sinkhorn divergence")
    ax_s.set_title("Sinkhorn divergence to the target", fontsize=10)
    for ax in (ax_e, ax_f, ax_s):
        ax.set_xlabel("generator step")
        ax.grid(True, alpha=0.3)
    ax_f.legend(fontsize=7, ncol=2, loc="upper right")
    _save(fig, path)
