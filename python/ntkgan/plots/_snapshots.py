r"""Snapshots of a particle flow (Franceschi et al. 2022, Fig. 2) and their animation.

One picture per call, chosen by the dimension ``d`` of the particles:

- ``d = 2``: a heat map of the generator cost :math:`c_f(x) = c(f(x))` of the current discriminator on a
  grid (with a colour bar), arrows :math:`-\nabla c_f` on a coarser grid (the force a particle would feel
  there, with a key giving an arrow's length), the target sample (vermilion rings) and the particles (blue
  dots, so a particle sitting on a target point shows as a dot inside a ring).
- ``d = 1``: the curve :math:`c_f(x)` on a line, with histograms of the particles and the target.
- image data (``image_shape`` given, e.g. ``(8, 8)`` for the 64-D digits): a grid of particles shown as
  images, above a row of target images.
- other ``d``: a scatter of the first two coordinates.

**One layout and one scale per run.**  The axes sit at fixed places on a fixed-size canvas (no layout
engine), so every frame of a run has the same layout, with or without a discriminator.  The frames of a
run also share one :class:`SnapshotScale`: the colour scale of :math:`c_f` (the cost axis in 1-D) and the
arrow length of a unit force.  By default it is fixed by the first frame drawn with a discriminator, and
every frame drawn with it keeps it in a PNG text chunk (:data:`SCALE_KEY`), where the later frames, and
those of a resumed run, read it (:func:`read_snapshot_scale`; no other file is written).  A discriminator usually flattens as the particles reach the target: on the fixed scale its colours
then fade and its arrows shrink, which is what happens; each frame prints its own range of :math:`c_f`,
its longest arrow and the share of the window beyond the scale (drawn in the colour bar's end colours).
The colours are Okabe & Ito's colour-blind-safe palette; the heat map is a light diverging map (ColorBrewer
PuOr, white at 0) when the cost takes both signs, a light sequential one (grey) otherwise.

:func:`animate_snapshots` turns the saved PNGs into a GIF with matplotlib's ``PillowWriter``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, SymLogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from ntkgan._io import atomic_target

__all__ = ["SnapshotScale", "animate_snapshots", "plot_bounds", "plot_snapshot", "read_snapshot_scale",
           "snapshot_scale"]

#: Okabe & Ito (2008), colour-blind safe.
BLUE, VERMILION, ORANGE, GREY = "#0072B2", "#D55E00", "#E69F00", "#999999"
#: Particles: filled blue dots; target: vermilion rings, larger, drawn on top (a dot inside a ring when a
#: particle sits on a target point).
PARTICLES = {"marker": "o", "s": 9, "color": BLUE, "edgecolors": "none", "alpha": 0.85, "label": "particles"}
TARGET = {"marker": "o", "s": 26, "facecolors": "none", "edgecolors": VERMILION, "linewidths": 0.9,
          "label": "target"}
#: Heat-map resolution (points per axis) and arrow grid (the paper's nx = ny = 15).
HEAT_N = 60
ARROW_N = 15
#: The longest arrow of the frame that fixes the scale spans this fraction of the arrow grid's spacing.
ARROW_FILL = 0.9
FIGSIZE = (6.4, 5.6)
DPI = 100
#: Fixed places (figure fractions: left, bottom, width, height) of the plot, its colour bar and the key row.
MAIN_RECT = (0.10, 0.215, 0.68, 0.70)
CBAR_RECT = (0.82, 0.215, 0.03, 0.70)
#: The plot of 1-D and projected frames (no colour bar; room for a second axis on the right).
WIDE_RECT = (0.14, 0.215, 0.71, 0.70)
#: The arrow key (figure fraction), on the row of the points' legend.
KEY_AT = (0.66, 0.075)
#: The PNG text key under which a frame keeps its run's :class:`SnapshotScale` (JSON).
SCALE_KEY = "ntkgan:snapshot_scale"


def _light(name: str, colours) -> LinearSegmentedColormap:
    return LinearSegmentedColormap.from_list(name, colours, N=256)


#: Light maps, so the points and the dark arrows stay readable on them; the end colours mark clipping.
#: Diverging: the light middle of ColorBrewer PuOr (colour-blind safe), white at 0, its dark ends for clipping.  Sequential: white to grey.
DIVERGING = _light("ntkgan_puor", ["#a59bcc", "#d8daeb", "#f7f7f7", "#fee0b6", "#f4b15e"]).with_extremes(
    under="#542788", over="#b35806")
SEQUENTIAL = _light("ntkgan_greys", ["#ffffff", "#d9d9d9", "#969696"]).with_extremes(under="#b8e186",
                                                                                      over="#252525")
ARROWS = "#222222"


#: Decades of the shared scales below their top: the colour scale is linear within ``top * 10**-DECADES`` of
#: 0 and logarithmic beyond; arrow lengths are logarithmic in the force over the same range.  A run's
#: discriminator shrinks by orders of magnitude as the particles converge (the IPM one like the MMD between
#: them), so one linear scale would leave the late frames blank.
DECADES = 4


@dataclass(frozen=True)
class SnapshotScale:
    r"""The colour scale of :math:`c_f` and the arrow scale shared by the frames of one run.

    Both are logarithmic over :data:`DECADES` decades below their top, so that one scale serves the whole
    run while the discriminator shrinks.

    Attributes
    ----------
    cost_lo, cost_hi : float
        Colour limits of :math:`c_f`, symmetric about 0 (``cost_lo = -cost_hi``; the cost axis of 1-D
        frames); values beyond them are clipped and drawn in the colour bar's end colours.  The colour
        map is diverging, white at 0, symmetric-logarithmic: linear within ``linthresh`` of 0.
    force_max : float
        The force :math:`|\nabla c_f|` drawn as an arrow of :data:`ARROW_FILL` times the arrow grid's
        spacing (the longest arrow of the frame that fixed the scale).  Arrow lengths are
        :math:`\log(1 + |F|/F_0)/\log(1 + F_{\max}/F_0)` of that, :math:`F_0 = F_{\max}\,10^{-3}`.
    key : float
        The largest force of the reference arrows in the key (a round number not above ``force_max``; the
        key also shows ``key/10`` and ``key/100``).
    fixed_at : str
        Where the scale comes from (e.g. ``"step 0"``), written on the colour bar; may be empty.
    """

    cost_lo: float
    cost_hi: float
    force_max: float
    key: float
    fixed_at: str = ""

    @property
    def diverging(self) -> bool:
        """Whether the limits straddle 0 (always, for a scale made by :func:`snapshot_scale`)."""
        return self.cost_lo < 0.0 < self.cost_hi

    @property
    def linthresh(self) -> float:
        """Half-width of the linear part of the colour scale around 0."""
        return max(abs(self.cost_lo), abs(self.cost_hi)) * 10.0**-DECADES

    @property
    def force_floor(self) -> float:
        """:math:`F_0`: forces much below it get arrows proportional to them, above it logarithmic."""
        return self.force_max * 10.0**-DECADES

    def norm(self) -> Normalize:
        if self.diverging:
            return SymLogNorm(linthresh=self.linthresh, linscale=0.5, vmin=self.cost_lo, vmax=self.cost_hi,
                              base=10)
        return Normalize(vmin=self.cost_lo, vmax=self.cost_hi)

    def cmap(self):
        return DIVERGING if self.diverging else SEQUENTIAL

    def arrow_length(self, force: np.ndarray) -> np.ndarray:
        """Arrow vectors for the forces (n, d): the direction kept, the length compressed (see above) so
        that ``force_max`` maps to 1."""
        force = np.asarray(force, dtype=np.float64)
        mag = np.linalg.norm(force, axis=1, keepdims=True)
        f0 = self.force_floor
        length = np.log1p(mag / f0) / math.log1p(self.force_max / f0)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(mag > 0, force / mag, 0.0)
        return unit * length

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SnapshotScale:
        """Parse :meth:`to_json`'s output; raises ``ValueError`` on anything else."""
        try:
            data = json.loads(text)
            scale = cls(float(data["cost_lo"]), float(data["cost_hi"]), float(data["force_max"]),
                        float(data["key"]), str(data.get("fixed_at", "")))
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a snapshot scale: {exc}") from None
        values = (scale.cost_lo, scale.cost_hi, scale.force_max, scale.key)
        if not all(math.isfinite(v) for v in values) or not scale.cost_lo < scale.cost_hi \
                or scale.force_max <= 0 or scale.key <= 0:
            raise ValueError(f"not a valid snapshot scale: {scale}")
        return scale


def _round_up(value: float, digits: int = 2) -> float:
    """``value`` > 0 rounded up to ``digits`` significant digits."""
    e = math.floor(math.log10(value)) - digits + 1
    return math.ceil(value / 10.0**e * (1 - 1e-12)) * 10.0**e


def _key_value(value: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``value`` > 0."""
    e = 10.0 ** math.floor(math.log10(value))
    return max(m * e for m in (1.0, 2.0, 5.0) if m * e <= value * (1 + 1e-12))


def _cost_limits(lo: float, hi: float) -> tuple[float, float]:
    """Colour limits for costs in [lo, hi]: symmetric about 0, the largest |c| rounded up (2 digits)."""
    a = max(abs(lo), abs(hi))
    a = _round_up(a) if a > 0 else 1.0
    return -a, a


def _fields(discriminator, bounds) -> dict:
    """The cost on the heat-map grid (2-D) or line (1-D) and the force on the arrow grid (2-D) or line."""
    bounds = np.asarray(bounds, dtype=np.float64)
    if bounds.shape == (1, 2):
        x = np.linspace(bounds[0, 0], bounds[0, 1], 400)[:, None]
        cost = np.asarray(discriminator.cost(x), dtype=np.float64).reshape(-1)
        force = -np.asarray(discriminator.cost_grad(x), dtype=np.float64).reshape(len(x), -1)
        return {"x": x, "cost": cost, "arrows_at": x, "force": force}
    (x0, x1), (y0, y1) = bounds
    xx, yy = np.meshgrid(np.linspace(x0, x1, HEAT_N), np.linspace(y0, y1, HEAT_N))
    cost = np.asarray(discriminator.cost(np.column_stack([xx.ravel(), yy.ravel()])), dtype=np.float64)
    axx, ayy = np.meshgrid(np.linspace(x0, x1, ARROW_N), np.linspace(y0, y1, ARROW_N))
    pts = np.column_stack([axx.ravel(), ayy.ravel()])
    force = -np.asarray(discriminator.cost_grad(pts), dtype=np.float64).reshape(len(pts), 2)
    return {"xx": xx, "yy": yy, "cost": cost.reshape(xx.shape), "arrows_at": pts, "force": force,
            "spacing": min((x1 - x0), (y1 - y0)) / (ARROW_N - 1)}


def snapshot_scale(discriminator, bounds, *, fixed_at: str = "") -> SnapshotScale:
    r"""The :class:`SnapshotScale` that ``discriminator`` fixes on the window ``bounds``.

    Parameters
    ----------
    discriminator : object with ``cost(x) -> (k,)`` and ``cost_grad(x) -> (k, d)``
    bounds : ndarray of shape (d, 2), d = 1 or 2
        The plot window (:func:`plot_bounds`).
    fixed_at : str
        Written on the colour bar, e.g. ``"step 100"``.

    Returns
    -------
    SnapshotScale
        Colour limits: :math:`\pm` the largest :math:`|c_f|` on the heat-map grid (2 significant digits,
        rounded up), symmetric-logarithmic over :data:`DECADES` decades; arrows: the longest force on the
        arrow grid fills :data:`ARROW_FILL` of the grid spacing, shorter ones logarithmically.

    Raises
    ------
    ValueError
        If the cost or the force is not finite on the window.
    """
    fields = _fields(discriminator, bounds)
    cost, force = fields["cost"], fields["force"]
    if not (np.isfinite(cost).all() and np.isfinite(force).all()):
        raise ValueError("the discriminator's cost or force is not finite on the plot window")
    lo, hi = _cost_limits(float(cost.min()), float(cost.max()))
    longest = float(np.linalg.norm(force, axis=1).max())
    if not longest > 0:
        longest = 1.0
    return SnapshotScale(lo, hi, longest, _key_value(longest), fixed_at)


def read_snapshot_scale(folder) -> SnapshotScale | None:
    """The shared scale of the frames in ``folder``: the first PNG (by name) that carries one, else None.

    Each frame drawn with a scale keeps it in a PNG text chunk (key :data:`SCALE_KEY`); no other file
    is written.  Unreadable files and chunks are skipped.
    """
    from PIL import Image

    for png in sorted(Path(folder).glob("*.png")):
        try:
            with Image.open(png) as im:
                text = getattr(im, "text", {}).get(SCALE_KEY)
            if text:
                return SnapshotScale.from_json(text)
        except (OSError, ValueError, SyntaxError):
            continue
    return None


def _shared_scale(path: Path, discriminator, bounds) -> SnapshotScale | None:
    """The scale of the frames beside ``path``; else the one ``discriminator`` fixes; else None."""
    scale = read_snapshot_scale(path.parent)
    if scale is not None or discriminator is None:
        return scale
    match = re.search(r"(\d+)$", path.stem)
    return snapshot_scale(discriminator, bounds, fixed_at=f"step {int(match.group(1))}" if match else "")


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


def _save(fig: Figure, path, dpi: int = DPI, metadata: dict | None = None) -> None:
    """Render ``fig`` to ``path`` through a temporary file and an atomic rename (``metadata``: PNG text)."""
    FigureCanvasAgg(fig)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=dpi, metadata=metadata)


def _scale_label(cost_label: str, scale: SnapshotScale | None) -> str:
    if scale is None:
        return cost_label
    where = f", fixed at {scale.fixed_at}" if scale.fixed_at else ""
    return f"{cost_label}: one scale for the run{where}"


def _symlog_ticks(scale: SnapshotScale) -> list[float]:
    """0 and +-top / 10**k for every other decade of the log part (readable, not crowded near 0)."""
    top = scale.cost_hi
    mags = [top * 10.0**-k for k in range(0, DECADES, 2)]
    return sorted([-m for m in mags] + [0.0] + mags)


def _frame_note(fields, scale: SnapshotScale) -> str:
    """This frame's own range of c_f, longest arrow and clipped share, for the key row."""
    cost = fields["cost"]
    lo, hi = float(cost.min()), float(cost.max())
    longest = float(np.linalg.norm(fields["force"], axis=1).max())
    clipped = float(np.mean((cost < scale.cost_lo) | (cost > scale.cost_hi)))
    note = f"this frame: $c_f$ in [{lo:.3g}, {hi:.3g}], longest arrow $|\\nabla c_f|$ = {longest:.3g}"
    if clipped > 0:
        note += f"; {100 * clipped:.2g} % of the window beyond the scale (end colours)"
    return note


def _key_row(fig, handles, note: str) -> None:
    """The legend of the points at the bottom left, under the plot; the frame's note below it."""
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.01, KEY_AT[1]), ncol=len(handles),
               fontsize=8, frameon=False, handletextpad=0.3, columnspacing=1.0)
    fig.text(0.02, 0.02, note, fontsize=7.5, color="0.2", ha="left", va="bottom")


def _point_handles() -> list:
    return [Line2D([], [], ls="none", marker="o", ms=4, color=BLUE, label="particles"),
            Line2D([], [], ls="none", marker="o", ms=6.5, mfc="none", mec=VERMILION, mew=1.0, label="target")]


def _plot_2d(fig, particles, target, discriminator, bounds, cost_label, scale):
    ax = fig.add_axes(MAIN_RECT)
    cax = fig.add_axes(CBAR_RECT)
    (x0, x1), (y0, y1) = bounds
    note = "no discriminator yet: the first is trained at step 1 (no heat map, no arrows)"
    fields = _fields(discriminator, bounds) if discriminator is not None else None
    if fields is not None:
        ax.pcolormesh(fields["xx"], fields["yy"], fields["cost"], shading="auto", cmap=scale.cmap(),
                      norm=scale.norm(), zorder=0)
        pts = fields["arrows_at"]
        arrows = scale.arrow_length(fields["force"])
        q = ax.quiver(pts[:, 0], pts[:, 1], arrows[:, 0], arrows[:, 1], color=ARROWS, alpha=0.75, zorder=1,
                      angles="xy", scale_units="xy", scale=1.0 / (ARROW_FILL * fields["spacing"]),
                      pivot="mid", width=0.0035)
        fig.text(0.40, KEY_AT[1], r"force $-\nabla c_f$ (log length):", fontsize=8, ha="left", va="center")
        for i, value in enumerate((scale.key, scale.key / 10, scale.key / 100)):
            length = float(scale.arrow_length(np.array([[value, 0.0]]))[0, 0])
            ax.quiverkey(q, 0.64 + 0.11 * i, KEY_AT[1], length, f"{value:.2g}", labelpos="E",
                         coordinates="figure", fontproperties={"size": 8})
        note = _frame_note(fields, scale)
    else:
        ax.set_facecolor("0.93")
    if scale is not None:
        cbar = fig.colorbar(ScalarMappable(norm=scale.norm(), cmap=scale.cmap()), cax=cax, extend="both",
                            label=_scale_label(cost_label, scale))
        if scale.diverging:
            cbar.set_ticks(_symlog_ticks(scale))
            cbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            cbar.ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        cax.set_axis_off()
        cax.text(0.5, 0.5, f"{cost_label}: no discriminator yet", rotation=90, ha="center", va="center",
                 fontsize=9, color="0.4", transform=cax.transAxes)
    ax.scatter(particles[:, 0], particles[:, 1], zorder=2, **PARTICLES)
    ax.scatter(target[:, 0], target[:, 1], zorder=3, **TARGET)  # rings on top: a dot inside a ring shows
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    _key_row(fig, _point_handles(), note)


def _plot_1d(fig, particles, target, discriminator, bounds, cost_label, scale):
    ax = fig.add_axes(WIDE_RECT)
    lo, hi = bounds[0]
    bins = np.linspace(lo, hi, 61)
    hx = ax.twinx()
    outside = []
    for pts, colour, label in ((target, VERMILION, "target"), (particles, BLUE, "particles")):
        x = pts[:, 0]  # fraction per bin; points outside the window are counted below
        hx.hist(x, bins=bins, alpha=0.45 if label == "particles" else 0.3, histtype="stepfilled",
                weights=np.full(len(x), 1.0 / len(x)), color=colour, label=label)
        n_out = int(np.sum((x < lo) | (x > hi)))
        if n_out:
            outside.append(f"{n_out} {label} outside the window")
    hx.set_ylabel("fraction of points per bin")
    handles = hx.get_legend_handles_labels()[0]
    note = "no discriminator yet: the first is trained at step 1"
    if discriminator is not None:
        fields = _fields(discriminator, bounds)
        (line,) = ax.plot(fields["x"][:, 0], fields["cost"], color="black", lw=1.5, label=cost_label)
        handles = [line] + handles
        note = _frame_note(fields, scale).replace(", longest arrow $|\\nabla c_f|$", ", max $|c_f'|$")
    if scale is not None:
        if scale.diverging:
            ax.set_yscale("symlog", linthresh=scale.linthresh, linscale=0.5)
        ax.set_ylim(scale.cost_lo, scale.cost_hi)
        ax.set_ylabel(_scale_label(cost_label, scale))
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{cost_label}: no discriminator yet")
    ax.set_zorder(hx.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("$x$")
    _key_row(fig, handles, "; ".join([note] + outside))


def _plot_images(fig, particles, target, image_shape):
    rows, cols = 6, 8
    top = fig.add_gridspec(rows, cols, left=0.17, right=0.83, bottom=0.25, top=0.92, hspace=0.08, wspace=0.08)
    bottom = fig.add_gridspec(1, cols, left=0.17, right=0.83, bottom=0.04, top=0.15, wspace=0.08)
    shown = particles[: rows * cols]
    for k in range(rows * cols):
        ax = fig.add_subplot(top[k // cols, k % cols])
        if k < len(shown):
            ax.imshow(shown[k].reshape(image_shape), cmap="gray_r", vmin=-1.0, vmax=1.0)
        ax.set_axis_off()
    for k in range(min(cols, len(target))):
        ax = fig.add_subplot(bottom[0, k])
        ax.imshow(target[k].reshape(image_shape), cmap="gray_r", vmin=-1.0, vmax=1.0)
        ax.set_axis_off()
    fig.text(0.17, 0.935, f"particles (first {min(len(particles), rows * cols)} of {len(particles)})",
             fontsize=8, color=BLUE, ha="left", va="bottom")
    fig.text(0.17, 0.165, f"target (first {min(len(target), cols)} of {len(target)})", fontsize=8,
             color=VERMILION, ha="left", va="bottom")


def _plot_projection(fig, particles, target, bounds):
    ax = fig.add_axes(WIDE_RECT)
    ax.scatter(particles[:, 0], particles[:, 1], zorder=2, **PARTICLES)
    ax.scatter(target[:, 0], target[:, 1], zorder=3, **TARGET)
    if bounds is not None:
        ax.set_xlim(*bounds[0])
        ax.set_ylim(*bounds[1])
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    _key_row(fig, _point_handles(), f"first two of d = {particles.shape[1]} coordinates")


def plot_snapshot(path, particles, target, *, discriminator=None, bounds=None, title: str = "",
                  image_shape=None, cost_label: str = r"$c_f(x)$", scale=None) -> SnapshotScale | None:
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
        The discriminator the particles last moved under; None draws the points only, in the same layout
        (the heat map's place left grey, saying that there is no discriminator yet).
    bounds : ndarray of shape (d, 2), optional
        Plot window ``[lo, hi]`` per coordinate (keep it fixed across a run so frames line up); default
        :func:`plot_bounds` of the two clouds.  For ``d > 2``, the window of the first two coordinates.
    title : str
        Figure title (e.g. loss, architecture, step).
    image_shape : tuple of int, optional
        View each point as an image of this shape (``prod(image_shape) == d``).
    cost_label : str
        Colour-bar / axis label of the cost.
    scale : SnapshotScale, optional
        The colour and arrow scale (1-D and 2-D).  Default: the run's shared scale, read from the PNGs
        in the folder of ``path`` (:func:`read_snapshot_scale`); when there is none yet and
        ``discriminator`` is given, :func:`snapshot_scale` of this frame (``fixed_at`` from the step
        number ending the file name).  The scale used is kept in the PNG's text chunk :data:`SCALE_KEY`.

    Returns
    -------
    SnapshotScale or None
        The scale used (None for image and projection frames, and for a first frame without
        discriminator).

    Raises
    ------
    ValueError
        If the clouds are not 2-D with the same feature count, or ``image_shape`` does not match ``d``.
    """
    fig, scale = _snapshot_figure(path, particles, target, discriminator=discriminator, bounds=bounds,
                                  title=title, image_shape=image_shape, cost_label=cost_label, scale=scale)
    _save(fig, path, metadata=None if scale is None else {SCALE_KEY: scale.to_json()})
    return scale


def _snapshot_figure(path, particles, target, *, discriminator=None, bounds=None, title="", image_shape=None,
                     cost_label=r"$c_f(x)$", scale=None) -> tuple[Figure, SnapshotScale | None]:
    """:func:`plot_snapshot` without the writing of the PNG: the figure and the scale (``path`` locates the
    run's shared scale)."""
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
    fig = Figure(figsize=FIGSIZE)
    FigureCanvasAgg(fig)
    if image_shape is not None:
        scale = None
        _plot_images(fig, particles, target, tuple(image_shape))
    elif d <= 2:
        bounds = np.asarray(bounds, dtype=np.float64)
        if scale is None:
            scale = _shared_scale(Path(os.fspath(path)), discriminator, bounds)
        (_plot_2d if d == 2 else _plot_1d)(fig, particles, target, discriminator, bounds, cost_label, scale)
    else:
        scale = None
        _plot_projection(fig, particles, target, None if bounds is None else np.asarray(bounds)[:2])
    if title:
        fig.suptitle(title, fontsize=10, y=0.975)
    return fig, scale


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
    writer = PillowWriter(fps=fps)
    with atomic_target(path) as tmp, writer.saving(fig, tmp, dpi=DPI):
        for frame in pngs:
            data = imread(frame)
            if data.shape[:2] != (h, w):  # a frame of another size: pad or crop to the first one's
                canvas = np.ones((h, w, data.shape[2]), dtype=data.dtype)
                hh, ww = min(h, data.shape[0]), min(w, data.shape[1])
                canvas[:hh, :ww] = data[:hh, :ww]
                data = canvas
            image.set_data(data)
            writer.grab_frame()
