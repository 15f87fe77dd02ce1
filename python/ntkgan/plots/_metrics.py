"""The metrics figure of a run: distances to the target, generator loss and mode coverage against step.

Panels (those with data): Sinkhorn divergence, energy distance and MMD² on a log scale; the generator loss
:math:`\\mathbb E_\\alpha c(f(x))`; and, for targets with known modes, the number of modes covered and the
diversity order parameter :math:`\\log K + \\sum_k p_k \\log p_k`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ntkgan.plots._snapshots import _save

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


def plot_metrics(rows, path, *, title: str = "") -> None:
    """Plot the logged metrics against step and write a PNG.

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
    fig = Figure(figsize=(4.2 * ncols, 3.8), layout="constrained")
    ax = fig.add_subplot(1, ncols, 1)
    for key, label in _DISTANCES:
        y = _column(rows, key)
        ok = np.isfinite(y) & (y > 0)
        if ok.any():
            ax.plot(step[ok], y[ok], marker=".", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("distance to the target")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = fig.add_subplot(1, ncols, 2)
    y = _column(rows, "gen_loss")
    ok = np.isfinite(y)
    ax.plot(step[ok], y[ok], marker=".", color="tab:purple")
    ax.set_xlabel("step")
    ax.set_title(r"generator loss $\mathbb{E}_\alpha\, c(f(x))$")
    ax.grid(True, alpha=0.3)

    if has_modes:
        ax = fig.add_subplot(1, ncols, 3)
        ax.plot(step, _column(rows, "diversity"), marker=".", color="tab:green", label="diversity")
        ax.set_xlabel("step")
        ax.set_ylabel(r"$\log K + \sum_k p_k \log p_k$", color="tab:green")
        ax.set_title("mode coverage")
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        covered = _column(rows, "modes_covered")
        n_modes = sum(1 for key in rows[0] if str(key).startswith("mode_")) or np.nanmax(covered)
        twin.plot(step, covered, ls="--", color="tab:brown", label="modes covered")
        twin.set_ylim(-0.3, n_modes + 0.5)
        twin.yaxis.get_major_locator().set_params(integer=True)
        twin.set_ylabel("modes covered", color="tab:brown")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)
