"""The figure of ``ntkgan vector-field`` (the paper's Figs. 6-7): the force on a lone generated point."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ntkgan.plots._snapshots import _save

if TYPE_CHECKING:
    from ntkgan.studies.vector_field import VectorField

__all__ = ["plot_vector_field"]


def plot_vector_field(field: VectorField, path) -> None:
    r"""Draw the arrows :math:`-\nabla c_{f_T}(x)` (unit length, coloured by :math:`\log_{10}` of their norm).

    Parameters
    ----------
    field : ntkgan.studies.vector_field.VectorField
    path : str or path-like
        The PNG to write (atomically).
    """
    g, f = field.grid, field.force
    norm = np.linalg.norm(f[..., :2], axis=-1)
    safe = np.where(norm > 0, norm, 1.0)
    u, v = f[..., 0] / safe, f[..., 1] / safe
    colour = np.log10(np.where(norm > 0, norm, np.nan))
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    q = ax.quiver(g[..., 0], g[..., 1], u, v, colour, cmap="viridis", angles="xy", pivot="mid",
                  scale_units="xy", scale=1.0 / (0.8 * (g[0, 1, 0] - g[0, 0, 0])), width=0.004)
    fig.colorbar(q, ax=ax, label=r"$\log_{10} \|\nabla c_{f_T}(x)\|$ (arrow colour)")
    ax.plot([field.target[0]], [field.target[1]], marker="*", ms=16, color="#D55E00", linestyle="none",
            markeredgecolor="black", markeredgewidth=0.6, label="target $y$", zorder=5)
    arrow = Line2D([], [], ls="none", marker=r"$\rightarrow$", ms=12, color="0.3",
                   label=r"direction of $-\nabla c_{f_T}(x)$ (same length; size by colour)")
    ax.set_aspect("equal")
    pad = 0.15
    ax.set_xlim(g[..., 0].min() - pad, g[..., 0].max() + pad)
    ax.set_ylim(g[..., 1].min() - pad, g[..., 1].max() + pad)
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    fig.legend(handles=[ax.get_legend_handles_labels()[0][0], arrow], loc="outside lower center", ncol=2,
               fontsize=8, frameon=False)
    c = field.config
    ax.set_title(f"loss {c.loss}, arch {c.arch}, T = {c.t:g}\n"
                 r"force $-\nabla c_{f_T}(x)$ on a lone point $x$ against the target $y = (1, 0)$",
                 fontsize=10)
    _save(fig, path)
