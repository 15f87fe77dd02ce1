"""The metrics figure of a run: distances to the target, generator loss and mode coverage against step.

Panels (those with data): Sinkhorn divergence, energy distance and MMD² on a log scale (lower is better);
the generator loss :math:`\\mathbb E_\\alpha c(f(x))` (no better direction: each step measures it against a
new discriminator); and, for targets with known modes, the diversity order parameter
:math:`\\log K + \\sum_k p_k \\log p_k` (lower is better: 0 when every mode gets the same share) and the
number of modes covered (higher is better).  Every drawn line has a legend entry.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ntkgan.plots._snapshots import _save

#: Okabe & Ito (2008), colour-blind safe.
BLUE, ORANGE, GREEN, PURPLE, VERMILION = "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00"

__all__ = ["plot_metrics"]

_DISTANCES = (("sinkhorn", "Sinkhorn divergence"), ("energy", "energy distance"),
              ("mmd", "MMD$^2$ (discriminator kernel)"))


def _column(rows, key) -> np.ndarray:
    out = []
    for row in rows:
        value = row.get(key, "")
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.asarray(out, dtype=np.float64)


def plot_metrics(rows, path, *, title: str = "") -> Figure:
    """Plot the logged metrics against step and write a PNG.

    Every panel says in its title which way is better, and every drawn line has a legend entry.

    Parameters
    ----------
    rows : sequence of dict
        One dict per log step (as read from ``metrics.csv``): keys ``step``, ``sinkhorn``, ``energy``,
        ``mmd``, ``gen_loss`` and optionally ``modes_covered``, ``diversity``; values numbers or strings
        (empty = missing).
    path : str or path-like
        The PNG to write (atomically).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure written (for inspection).

    Raises
    ------
    ValueError
        If ``rows`` is empty.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows must hold at least one logged step, got none")
    step = _column(rows, "step")
    has_modes = np.isfinite(_column(rows, "diversity")).any()
    ncols = 3 if has_modes else 2
    fig = Figure(figsize=(4.3 * ncols, 4.0), layout="constrained")
    ax = fig.add_subplot(1, ncols, 1)
    for (key, label), colour in zip(_DISTANCES, (BLUE, ORANGE, GREEN)):
        y = _column(rows, key)
        ok = np.isfinite(y) & (y > 0)
        if ok.any():
            ax.plot(step[ok], y[ok], marker=".", color=colour, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("distance to the target (lower is better)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = fig.add_subplot(1, ncols, 2)
    y = _column(rows, "gen_loss")
    ok = np.isfinite(y)
    ax.plot(step[ok], y[ok], marker=".", color=PURPLE, label=r"$\mathbb{E}_\alpha\, c(f(x))$ before the step")
    ax.set_xlabel("step")
    ax.set_title("generator loss (no better direction:\na new discriminator every step)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)

    if has_modes:
        ax = fig.add_subplot(1, ncols, 3)
        covered = _column(rows, "modes_covered")
        n_modes = sum(1 for key in rows[0] if str(key).startswith("mode_")) or int(np.nanmax(covered))
        (div,) = ax.plot(step, _column(rows, "diversity"), marker=".", color=GREEN,
                         label=r"diversity $\log K + \sum_k p_k \log p_k$ (left; lower is better)")
        ax.set_xlabel("step")
        ax.set_ylabel(r"diversity (0: modes even, $\log K$: one)", color=GREEN)
        ax.set_ylim(-0.05 * np.log(max(n_modes, 2)), 1.05 * np.log(max(n_modes, 2)))
        ax.set_title(f"mode coverage, K = {n_modes}\n(diversity: lower is better; modes: higher)", fontsize=10)
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        (cov,) = twin.plot(step, covered, ls="--", color=VERMILION,
                           label=f"modes covered (right; higher is better, at most {n_modes})")
        twin.set_ylim(-0.3, n_modes + 0.5)
        twin.yaxis.get_major_locator().set_params(integer=True)
        twin.set_ylabel("modes covered", color=VERMILION)
        ax.legend(handles=[div, cov], fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return fig
