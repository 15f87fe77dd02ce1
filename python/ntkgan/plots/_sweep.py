"""The figure of a sweep: final Sinkhorn divergence as grouped bars, one panel per dataset.

In each panel the groups are architectures and the bars losses (height: mean over seeds, error bar: std,
log scale); a combination that is not valid is marked ``n/a``, one whose seeds all failed ``failed``.
"""

from __future__ import annotations

import io
import math

import numpy as np

from ntkgan._io import atomic_write_bytes

__all__ = ["plot_results"]


def plot_results(path, grid, rows, *, steps) -> None:
    """Write the grouped-bar figure of ``rows`` (:func:`ntkgan.sweep._table.summarise`) to ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    by_key = {(r["loss"], r["arch"], r["data"]): r for r in rows}
    n_data, n_arch, n_loss = len(grid.data), len(grid.arch), len(grid.loss)
    fig = Figure(figsize=(max(3.5, 0.5 * n_arch * n_loss + 1.0) * n_data, 4.2), layout="constrained")
    width = 0.8 / n_loss
    colors = [f"C{i % 10}" for i in range(n_loss)]
    for p, data in enumerate(grid.data):
        ax = fig.add_subplot(1, n_data, p + 1)
        cells = [by_key[(lo, ar, data)] for lo in grid.loss for ar in grid.arch]
        lows = [r["sinkhorn_mean"] for r in cells if r["seeds_done"] and r["sinkhorn_mean"] > 0]
        floor = min(lows) / 3 if lows else 1e-3
        for i, loss in enumerate(grid.loss):
            xs = np.arange(n_arch) + (i - (n_loss - 1) / 2) * width
            for x, arch in zip(xs, grid.arch):
                r = by_key[(loss, arch, data)]
                if r["skipped"] or not r["seeds_done"] or not r["sinkhorn_mean"] > 0:
                    mark = "n/a" if r["skipped"] else "failed" if r["failed"] else "—"
                    ax.text(x, floor * 1.1, mark, ha="center", va="bottom", fontsize=7, rotation=90,
                            color="0.35")
                    continue
                mean, std = r["sinkhorn_mean"], r["sinkhorn_std"]
                std = std if math.isfinite(std) else 0.0
                ax.bar(x, mean, width=width * 0.95, color=colors[i])
                # the lower error bar stops above the floor of the log axis
                ax.errorbar(x, mean, yerr=[[min(std, mean - floor)], [std]], color="k", capsize=2, lw=0.8)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.set_xlim(-0.5, n_arch - 0.5)
        ax.set_xticks(np.arange(n_arch), grid.arch, fontsize=8)
        ax.set_title(data)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        if p == 0:
            ax.set_ylabel(f"final Sinkhorn divergence ({steps} steps)")
    handles = [Patch(color=colors[i], label=loss) for i, loss in enumerate(grid.loss)]
    fig.legend(handles=handles, loc="outside upper center", ncols=n_loss, fontsize=8)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
