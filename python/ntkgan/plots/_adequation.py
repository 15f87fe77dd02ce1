r"""The adequation figure (Franceschi et al. 2022, Fig. 1): finite- vs infinite-width generator cost.

1-D: curves of :math:`c_f(x)` for every width and seed (one colour per width) and the two infinite-width
references (gradient descent, solid black; gradient flow, orange dashes drawn on top, so both stay visible
where they coincide, as they do for IPM, whose flow and descent are the same), with the fake points ▲
(blue) and the real points ▼ (vermilion) on the x axis.  2-D: heat maps of :math:`c_f` on the grid for the
finite network of the picture width and for the two references, sharing one colour scale, with white
arrows :math:`-\nabla c_f` at the fake points (one arrow scale for all panels).  Both end with a log-log
panel of the error against width (mean :math:`\pm` std over seeds; one colour per error, solid filled
markers against gradient descent, dashed hollow markers against the flow) and a :math:`w^{-1/2}` guide.
Legends sit outside the data, and a legend says when two drawn curves coincide.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ntkgan._io import atomic_target

__all__ = ["plot_adequation"]

COST_LABELS = {
    "ipm": r"$c_f(x) = -f(x)$",
    "lsgan": r"$c_f(x) = f(x)^2$",
    "vanilla": r"$c_f(x) = -\log\sigma(f(x))$",
    "hinge": r"$c_f(x) = -f(x)$",
}
#: Okabe & Ito (2008), colour-blind safe.
BLUE, VERMILION, ORANGE = "#0072B2", "#D55E00", "#E69F00"
FAKE = {"marker": "^", "color": BLUE, "label": "fake (generated)"}
REAL = {"marker": "v", "color": VERMILION, "label": "real (target)"}
#: Two curves closer than this, relative to the larger's scale, are said to coincide in the legend.
COINCIDE_RTOL = 1e-9


def _coincide(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), np.finfo(float).tiny)
    return bool(np.max(np.abs(a - b)) <= COINCIDE_RTOL * scale)


def _ref_titles(result) -> dict:
    p = result.preset
    return {
        "gd": rf"$\infty$, gradient descent (lr {p.lr:g}, {result.steps} steps)",
        "flow": rf"$\infty$, gradient flow (t = {p.t:g})",
    }


def _error_panel(ax, result) -> None:
    """log-log mean ± std of the sup and RMS errors against width, for both references.

    One colour per error (sup, RMS); against gradient descent solid lines and filled markers, against the
    flow dashed lines and larger hollow markers drawn on top, so coinciding series stay visible; the legend
    also says when the two references give the same errors.
    """
    widths = np.asarray(result.widths, dtype=float)
    colours = {"sup": BLUE, "rms": VERMILION}
    markers = {"sup": "o", "rms": "s"}
    names = {"sup": "sup", "rms": "RMS"}
    for r in ("gd", "flow"):
        for m in ("sup", "rms"):
            e = result.errors[r][m]
            mean = e.mean(axis=1)
            std = e.std(axis=1, ddof=1) if e.shape[1] > 1 else np.zeros_like(mean)
            slope = result.slopes[r][m]
            label = f"{names[m]} vs {r}" + ("" if not np.isfinite(slope) else f" (slope {slope:.2f})")
            style = {"linestyle": "-", "marker": markers[m], "ms": 5, "zorder": 3}
            if r == "flow":
                style = {"linestyle": "--", "marker": markers[m], "ms": 9, "mfc": "none", "mew": 1.3,
                         "zorder": 4}
                if _coincide(e, result.errors["gd"][m]):
                    label += ", coincides with gd"
            ax.errorbar(widths, mean, yerr=std, color=colours[m], capsize=3, label=label, **style)
    first = result.errors["gd"]["sup"].mean(axis=1)[0]
    ax.plot(widths, first * np.sqrt(widths[0] / widths), ":", color="grey", label=r"$\propto$ width$^{-1/2}$")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel(r"error of $c_f$ on the grid")
    ax.set_title("error vs width (lower is better)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    ax.grid(True, which="both", alpha=0.3)


def _plot_1d(fig: Figure, result) -> None:
    gs = fig.add_gridspec(1, 2, width_ratios=[2.2, 1])
    ax = fig.add_subplot(gs[0, 0])
    x = result.grid[:, 0]
    colours = colormaps["viridis"](np.linspace(0.0, 0.85, len(result.widths)))
    for i, (w, colour) in enumerate(zip(result.widths, colours)):
        for s in range(result.seeds):
            ax.plot(x, result.cost_finite[i, s], color=colour, lw=1.0, alpha=0.55,
                    label=f"width {w}" if s == 0 else None)
    titles = _ref_titles(result)
    flow_label = titles["flow"]
    if _coincide(result.cost_inf["gd"], result.cost_inf["flow"]):
        flow_label += ": coincides with gradient descent"
    ax.plot(x, result.cost_inf["gd"], color="black", lw=2.4, label=titles["gd"], zorder=3)
    ax.plot(x, result.cost_inf["flow"], color=ORANGE, lw=1.6, ls=(0, (4, 3)), label=flow_label, zorder=4)
    tr = ax.get_xaxis_transform()  # x in data, y in axes coordinates: markers sit on the x axis
    for pts, style in ((result.fake, FAKE), (result.real, REAL)):
        ax.plot(pts[:, 0], np.zeros(len(pts)), linestyle="none", ms=9, transform=tr, clip_on=False,
                zorder=5, markeredgecolor="white", **style)
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("x")
    ax.set_ylabel(COST_LABELS.get(result.preset.loss, r"$c_f(x)$"))
    ax.set_title(f"{result.preset.name}: {result.seeds} seed(s) per width")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    _error_panel(fig.add_subplot(gs[0, 1]), result)


def _plot_2d(fig: Figure, result) -> None:
    gs = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.1])
    xs, ys = result.grid_axes
    shape = (len(ys), len(xs))
    pic = result.picture
    if pic is None:  # no picture network: show the widest one, seed 0
        pic = {"width": int(result.widths[-1]), "seed": 0, "cost": result.cost_finite[-1, 0], "arrows": None}
    titles = _ref_titles(result)
    panels = [(f"width {pic['width']} (seed {pic['seed']})", pic["cost"], "finite"),
              (titles["gd"], result.cost_inf["gd"], "gd"),
              (titles["flow"], result.cost_inf["flow"], "flow")]
    values = np.concatenate([c for _, c, _ in panels])
    norm = Normalize(vmin=float(values.min()), vmax=float(values.max()))
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    arrows = pic["arrows"]
    scale = 1.0
    if arrows is not None:
        longest = max(float(np.linalg.norm(a, axis=1).max()) for a in arrows.values())
        side = max(xs[-1] - xs[0], ys[-1] - ys[0])
        scale = longest / (0.12 * side) if longest > 0 else 1.0
    heat_axes = []
    image = None
    for j, (title, cost, key) in enumerate(panels):
        ax = fig.add_subplot(gs[0, j])
        image = ax.imshow(cost.reshape(shape), origin="lower", extent=extent, cmap="viridis", norm=norm,
                          interpolation="nearest", aspect="equal")
        if arrows is not None:
            a = arrows[key]
            ax.quiver(result.fake[:, 0], result.fake[:, 1], a[:, 0], a[:, 1], color="white", angles="xy",
                      scale_units="xy", scale=scale, width=0.006, zorder=4)
        for pts, style in ((result.fake, FAKE), (result.real, REAL)):
            ax.scatter(pts[:, 0], pts[:, 1], s=22, edgecolors="white", linewidths=0.5, zorder=5,
                       label=style["label"] if j == 0 else None, marker=style["marker"], c=style["color"])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("$x_1$")
        if j == 0:
            ax.set_ylabel("$x_2$")
        heat_axes.append(ax)
    cbar = fig.colorbar(image, ax=heat_axes, shrink=0.8, pad=0.02)
    cbar.set_label(COST_LABELS.get(result.preset.loss, r"$c_f(x)$") + r", arrows $-\nabla c_f$")
    fig.legend(handles=heat_axes[0].get_legend_handles_labels()[0], loc="outside lower left", ncol=2,
               fontsize=8, frameon=False)
    _error_panel(fig.add_subplot(gs[0, 3]), result)
    fig.suptitle(f"{result.preset.name}: finite vs infinite width")


def plot_adequation(result, path=None, *, dpi: int = 150) -> Figure:
    r"""Draw the adequation figure of an :class:`~ntkgan.studies.adequation.AdequationResult`.

    Parameters
    ----------
    result : AdequationResult
        From :func:`ntkgan.adequation` (1-D or 2-D data).
    path : str or path, optional
        Where to write the figure (format from the extension, e.g. ``.png``), with the Agg canvas.
    dpi : int, default=150

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Data of dimension other than 1 or 2.

    Notes
    -----
    1-D: :math:`c_{f_{w,r}}(x)` per width :math:`w` and seed :math:`r`, and :math:`c_{f_\infty}` for both
    references; fake ▲ blue, real ▼ vermilion on the axis.  2-D: heat maps of :math:`c_f` (finite, gd, flow) on
    one colour scale, arrows :math:`-\nabla_x c_f` at the fake points.  Last panel: the errors against
    width on log-log axes.
    """
    d = result.fake.shape[1]
    if d not in (1, 2):
        raise ValueError(f"plot_adequation draws 1-D or 2-D data, got dimension {d}")
    fig = Figure(figsize=(11.5, 5.4) if d == 1 else (17.0, 5.0), layout="constrained")
    fig.get_layout_engine().set(wspace=0.04)
    FigureCanvasAgg(fig)
    (_plot_1d if d == 1 else _plot_2d)(fig, result)
    if path is not None:
        with atomic_target(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    return fig
