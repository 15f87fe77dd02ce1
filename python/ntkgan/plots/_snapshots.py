r"""Snapshots of a particle flow (Franceschi et al. 2022, Fig. 2) and their animation.

One picture per call, chosen by the dimension ``d`` of the particles:

- ``d = 2``: a heat map of the generator cost :math:`c_f(x) = c(f(x))` of the current discriminator on a
  grid (with a colour bar), the target sample (orange) and the particles (magenta), and white arrows
  :math:`-\nabla c_f` on a coarser grid (the force a particle would feel there).
- ``d = 1``: the curve :math:`c_f(x)` on a line, with histograms of the particles and the target.
- image data (``image_shape`` given, e.g. ``(8, 8)`` for the 64-D digits): a grid of particles shown as
  images, above a row of target images.
- other ``d``: a scatter of the first two coordinates.

:func:`animate_snapshots` turns the saved PNGs into a GIF with matplotlib's ``PillowWriter``.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_snapshot", "plot_bounds", "animate_snapshots"]

TARGET = {"color": "tab:orange", "label": "target"}
PARTICLES = {"color": "magenta", "label": "particles"}
#: Heat-map resolution (points per axis) and arrow grid (the paper's nx = ny = 15).
HEAT_N = 60
ARROW_N = 15
FIGSIZE = (6.4, 5.6)
DPI = 100


def plot_bounds(*clouds, margin: float = 0.15) -> np.ndarray:
    """Bounding box of the given clouds widened by ``margin`` times its largest side, shape (d, 2).

    Parameters
    ----------
    *clouds : ndarray of shape (n_i, d)
    margin : float, default=0.15

    Returns
    -------
    ndarray of shape (d, 2)
        ``[lo, hi]`` per coordinate (a degenerate side gets width 1).
    """
    pts = np.concatenate([np.asarray(c, dtype=np.float64) for c in clouds], axis=0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    side = float(np.max(hi - lo)) if pts.size else 1.0
    side = side if side > 0 else 1.0
    return np.stack([lo - margin * side, hi + margin * side], axis=1)


def _save(fig: Figure, path, dpi: int = DPI) -> None:
    """Render ``fig`` to ``path`` through a temporary file and an atomic rename."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    FigureCanvasAgg(fig)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _plot_2d(fig, particles, target, discriminator, bounds, cost_label):
    ax = fig.add_subplot(1, 1, 1)
    (x0, x1), (y0, y1) = bounds
    if discriminator is not None:
        gx, gy = np.linspace(x0, x1, HEAT_N), np.linspace(y0, y1, HEAT_N)
        xx, yy = np.meshgrid(gx, gy)
        cost = discriminator.cost(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
        mesh = ax.pcolormesh(xx, yy, cost, shading="auto", cmap="viridis", zorder=0)
        fig.colorbar(mesh, ax=ax, label=cost_label)
    ax.scatter(particles[:, 0], particles[:, 1], s=7, alpha=0.8, zorder=2, **PARTICLES)
    ax.scatter(target[:, 0], target[:, 1], s=3, alpha=0.7, zorder=3, **TARGET)  # on top: visible at the end
    if discriminator is not None:
        ax_, ay_ = np.linspace(x0, x1, ARROW_N), np.linspace(y0, y1, ARROW_N)
        axx, ayy = np.meshgrid(ax_, ay_)
        pts = np.column_stack([axx.ravel(), ayy.ravel()])
        force = -discriminator.cost_grad(pts)
        ax.quiver(pts[:, 0], pts[:, 1], force[:, 0], force[:, 1], color="white", alpha=0.9, zorder=4,
                  angles="xy", pivot="tail", width=0.003)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    ax.legend(loc="upper right", fontsize=8, markerscale=2)


def _plot_1d(fig, particles, target, discriminator, bounds, cost_label):
    ax = fig.add_subplot(1, 1, 1)
    now = plot_bounds(particles, target)[0]  # widen the window to the points that left it
    lo, hi = min(bounds[0][0], now[0]), max(bounds[0][1], now[1])
    bins = np.linspace(lo, hi, 61)
    hx = ax.twinx()
    for pts, style in ((target, TARGET), (particles, PARTICLES)):  # fraction per bin (outside: dropped)
        hx.hist(pts[:, 0], bins=bins, alpha=0.4, histtype="stepfilled",
                weights=np.full(len(pts), 1.0 / len(pts)), **style)
    hx.set_ylabel("fraction of points per bin")
    if discriminator is not None:
        x = np.linspace(lo, hi, 400)[:, None]
        ax.plot(x[:, 0], discriminator.cost(x), color="black", lw=1.5, label=cost_label)
        ax.set_ylabel(cost_label)
    ax.set_zorder(hx.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("$x$")
    handles = ax.get_legend_handles_labels()[0] + hx.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right", fontsize=8)


def _plot_images(fig, particles, target, image_shape):
    rows, cols = 6, 8
    gs = fig.add_gridspec(rows + 1, cols, hspace=0.08, wspace=0.08, height_ratios=[1] * rows + [1.15])
    shown = particles[: rows * cols]
    for k in range(rows * cols):
        ax = fig.add_subplot(gs[k // cols, k % cols])
        if k < len(shown):
            ax.imshow(shown[k].reshape(image_shape), cmap="gray_r", vmin=-1.0, vmax=1.0)
        ax.set_axis_off()
    for k in range(min(cols, len(target))):
        ax = fig.add_subplot(gs[rows, k])
        ax.imshow(target[k].reshape(image_shape), cmap="gray_r", vmin=-1.0, vmax=1.0)
        ax.set_axis_off()
        if k == 0:
            ax.set_title("target", fontsize=8, loc="left", color="tab:orange")


def _plot_projection(fig, particles, target):
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(target[:, 0], target[:, 1], s=6, alpha=0.6, **TARGET)
    ax.scatter(particles[:, 0], particles[:, 1], s=6, alpha=0.8, **PARTICLES)
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    ax.legend(loc="upper right", fontsize=8, markerscale=2)


def plot_snapshot(path, particles, target, *, discriminator=None, bounds=None, title: str = "",
                  image_shape=None, cost_label: str = r"$c_f(x)$") -> None:
    r"""Draw the particles, the target and (2-D / 1-D) the cost :math:`c_f` and force :math:`-\nabla c_f`.

    Parameters
    ----------
    path : str or path-like
        The PNG to write (atomically: a temporary file renamed).
    particles : ndarray of shape (n, d)
        Current generated points.
    target : ndarray of shape (m, d)
        Target sample.
    discriminator : object with ``cost(x) -> (k,)`` and ``cost_grad(x) -> (k, d)``, optional
        The discriminator the particles last moved under; None draws the points only.
    bounds : ndarray of shape (d, 2), optional
        Plot window ``[lo, hi]`` per coordinate (keep it fixed across a run so frames line up); default
        :func:`plot_bounds` of the two clouds.
    title : str
        Figure title (e.g. loss, architecture, step).
    image_shape : tuple of int, optional
        View each point as an image of this shape (``prod(image_shape) == d``).
    cost_label : str
        Colour-bar / axis label of the cost.

    Raises
    ------
    ValueError
        If the clouds are not 2-D with the same feature count, or ``image_shape`` does not match ``d``.
    """
    particles = np.asarray(particles, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if particles.ndim != 2 or target.ndim != 2 or particles.shape[1] != target.shape[1]:
        raise ValueError(f"particles and target must be (n, d) and (m, d), got {particles.shape} and "
                         f"{target.shape}")
    d = particles.shape[1]
    if image_shape is not None and int(np.prod(image_shape)) != d:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold d = {d} values")
    if bounds is None and image_shape is None and d <= 2:
        bounds = plot_bounds(particles, target)
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    if image_shape is not None:
        _plot_images(fig, particles, target, tuple(image_shape))
    elif d == 2:
        _plot_2d(fig, particles, target, discriminator, np.asarray(bounds), cost_label)
    elif d == 1:
        _plot_1d(fig, particles, target, discriminator, np.asarray(bounds), cost_label)
    else:
        _plot_projection(fig, particles, target)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def animate_snapshots(pngs, path, *, fps: float = 5.0) -> None:
    """Write the PNG frames ``pngs`` (in order) as an animated GIF with matplotlib's ``PillowWriter``.

    Parameters
    ----------
    pngs : sequence of path-like
        Frames; all are shown at the size of the first.
    path : str or path-like
        The GIF to write (atomically).
    fps : float, default=5.0

    Raises
    ------
    ValueError
        If ``pngs`` is empty.
    """
    from matplotlib.animation import PillowWriter
    from matplotlib.image import imread

    pngs = [os.fspath(p) for p in pngs]
    if not pngs:
        raise ValueError("pngs must name at least one frame, got none")
    first = imread(pngs[0])
    h, w = first.shape[:2]
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    image = ax.imshow(first)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}.gif"
    writer = PillowWriter(fps=fps)
    try:
        with writer.saving(fig, tmp, dpi=DPI):
            for frame in pngs:
                data = imread(frame)
                if data.shape[:2] != (h, w):  # a frame of another size: pad or crop to the first one's
                    canvas = np.ones((h, w, data.shape[2]), dtype=data.dtype)
                    hh, ww = min(h, data.shape[0]), min(w, data.shape[1])
                    canvas[:hh, :ww] = data[:hh, :ww]
                    data = canvas
                image.set_data(data)
                writer.grab_frame()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
