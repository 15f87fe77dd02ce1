"""2-D distributions drawn from greyscale images: one Gaussian per pixel, weight proportional to darkness.

The built-in images are the project's own: the glyphs "A" and "B" rendered once from matplotlib's bundled
DejaVu Sans (shipped as 64 x 64 PNGs in ``ntkgan/data/``, re-rendered by :func:`render_glyph`), and two
procedural blobs (:func:`blob_image`) drawn at 100 x 100, after the shapes of the paper's ``density``
images.

References
----------
.. [1] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022 (toolkit gantk2,
   ``data/simple.py``, distribution ``"image"``).
.. [2] Feydy et al. Interpolating between Optimal Transport and MMD using Sinkhorn Divergences.
   AISTATS 2019 (geomloss examples: the images the paper used).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np

from ntkgan.datasets._base import (
    Dataset,
    GaussianMixture,
    check_count,
    check_dim,
    seed_record,
    standard_normal,
    streams,
)

__all__ = [
    "BUILTIN_IMAGES",
    "ab",
    "blob_image",
    "builtin_image",
    "density",
    "image_mixture",
    "image_pair",
    "read_greyscale",
    "render_glyph",
    "two_clouds_2d",
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUILTIN_IMAGES = ("A", "B", "density_a", "density_b")
_SUPERSAMPLE = 4


def read_greyscale(path) -> np.ndarray:
    """Read an image file as 8-bit greyscale ``L = (299 R + 587 G + 114 B) / 1000`` (Pillow's ``"L"``).

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow reads (PNG, JPEG, ...).

    Returns
    -------
    ndarray of shape (h, w), uint8
        Row 0 is the top of the image.

    Raises
    ------
    ValueError
        If the file does not exist or is not an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(os.fspath(path)).expanduser()
    if path.is_dir():
        raise ValueError(f"image file {str(path)!r} is a directory, not an image file")
    if not path.is_file():
        raise ValueError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            return np.array(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"could not read image {str(path)!r}: {exc}") from None


def _pair(value, name: str, *, positive: bool) -> tuple[float, float]:
    values = (value, value) if isinstance(value, numbers.Real) else tuple(value)
    if len(values) != 2:
        raise ValueError(f"{name} must be a number or a pair (x, y), got {value!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
            raise ValueError(f"{name} must hold finite numbers, got {value!r}")
        if positive and v <= 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
        out.append(float(v))
    return out[0], out[1]


def image_mixture(image, *, loc=0.0, scale=1.0) -> GaussianMixture:
    """``p(x) = sum_{r,c} w_rc N(x; (a_x + s_x u_c, a_y - s_y v_r), diag(s_x / w, s_y / h)^2)``.

    One Gaussian per pixel of a greyscale image, with weight ``w_rc`` proportional to its darkness
    ``max(I) - I_rc`` (white pixels have probability 0) and the image drawn the right way up on the
    rectangle ``[a_x - s_x, a_x + s_x] x [a_y - s_y, a_y + s_y]`` (``[-1, 1]^2`` by default).

    Parameters
    ----------
    image : array-like of shape (h, w)
        Greyscale intensities, row 0 at the top (as read by :func:`read_greyscale`); h, w >= 2.
    loc : float or (float, float), default=0.0
        Centre ``a = (a_x, a_y)``.
    scale : float or (float, float), default=1.0
        Half-widths ``s = (s_x, s_y)``, > 0.

    Returns
    -------
    GaussianMixture
        ``h * w`` components in row-major pixel order.

    Raises
    ------
    ValueError
        If the image is not 2-D with h, w >= 2, holds non-finite values, or is uniform (no dark pixel).

    Notes
    -----
    With ``u = linspace(-1, 1, w)`` and ``v = linspace(-1, 1, h)``, pixel (row r, column c) sits at
    ``x = a_x + s_x u_c`` (left to right) and ``y = a_y - s_y v_r`` (top row at ``y = a_y + s_y``).  This
    is the toolkit's convention [1]_ -- the image ``max - I`` transposed then flipped on both axes, on the
    grid ``x = a_x - s_x linspace(-1, 1, w)``, ``y = a_y + s_y linspace(-1, 1, h)``, std
    ``(s_x / w, s_y / h)`` -- written per pixel, since ``linspace(-1, 1, n)[n - 1 - i] = -u_i``.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"image must be 2-D greyscale of shape (h, w) with h, w >= 2, got {img.shape}")
    if img.dtype == object or img.dtype.kind not in "buif":
        raise ValueError(f"image must hold real numbers, got dtype {img.dtype}")
    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        raise ValueError("image contains NaN or inf")
    darkness = img.max() - img
    if not darkness.sum() > 0:
        raise ValueError("image is uniform: no pixel is darker than the brightest, so it has no mass")
    (ax, ay), (sx, sy) = _pair(loc, "loc", positive=False), _pair(scale, "scale", positive=True)
    h, w = img.shape
    xs = ax + sx * np.linspace(-1.0, 1.0, w)
    ys = ay - sy * np.linspace(-1.0, 1.0, h)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    means = np.stack([gx.ravel(), gy.ravel()], axis=1)
    return GaussianMixture(means, darkness.ravel(), np.array([sx / w, sy / h]))


def render_glyph(
    char: str, size: int = 64, *, height: float = 0.72, family: str = "DejaVu Sans"
) -> np.ndarray:
    """Render one character, black on white, centred, with cap height ``height * size`` pixels.

    Uses matplotlib's Agg backend and its bundled font (deterministic for one matplotlib/FreeType
    build; the shipped ``A``/``B`` images were made with ``render_glyph("A")``, ``render_glyph("B")``).

    Parameters
    ----------
    char : str
        A single character.
    size : int, default=64
        Side of the square image in pixels.
    height : float, default=0.72
        Cap height as a fraction of ``size`` (the baseline sits at ``(1 - height) / 2`` from the bottom).
    family : str, default="DejaVu Sans"

    Returns
    -------
    ndarray of shape (size, size), uint8
        Greyscale, 255 = white.
    """
    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"char must be a single character, got {char!r}")
    size = check_count(size, "size", minimum=2)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    dpi = 100
    fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    # DejaVu Sans' cap height is 0.729 em; one point is dpi / 72 pixels.
    fontsize = height * size * 72.0 / dpi / 0.729
    fig.text(0.5, (1.0 - height) / 2.0, char, ha="center", va="baseline", color="black",
             fontproperties=FontProperties(family=family), fontsize=fontsize)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float64)
    grey = (299.0 * rgb[..., 0] + 587.0 * rgb[..., 1] + 114.0 * rgb[..., 2]) / 1000.0
    return np.round(grey).astype(np.uint8)


def _coverage_to_grey(inside: np.ndarray, size: int) -> np.ndarray:
    """Average a supersampled 0/1 mask to pixel coverage, then 255 * (1 - coverage)."""
    s = _SUPERSAMPLE
    coverage = inside.reshape(size, s, size, s).mean(axis=(1, 3))
    return np.round(255.0 * (1.0 - coverage)).astype(np.uint8)


def blob_image(which: str, size: int = 100) -> np.ndarray:
    """The procedural density blobs: ``"a"``, a tilted ellipse; ``"b"``, a crescent with a hook and holes.

    Shapes are set in unit coordinates ``(c, r) in [0, 1]^2`` (column, row from the top) and anti-aliased
    by 4 x 4 supersampling.

    - ``"a"``: ``(p / 0.21)^2 + (q / 0.105)^2 <= 1`` with ``(p, q)`` = ``(c - 0.30, r - 0.45)`` rotated by
      20 degrees (the right end raised).
    - ``"b"``: the disc of centre (0.60, 0.55), radius 0.30, minus the disc of centre (0.47, 0.47),
      radius 0.30; plus a ring of centre (0.70, 0.19), radius 0.06, width 0.03 (touching the upper tip);
      minus three small squares.

    Parameters
    ----------
    which : {"a", "b"}
    size : int, default=100

    Returns
    -------
    ndarray of shape (size, size), uint8
        Greyscale, 255 = white.
    """
    size = check_count(size, "size", minimum=2)
    t = (np.arange(size * _SUPERSAMPLE) + 0.5) / (size * _SUPERSAMPLE)
    r, c = np.meshgrid(t, t, indexing="ij")
    if which == "a":
        theta = np.deg2rad(20.0)
        u, v = c - 0.30, r - 0.45
        p = u * np.cos(theta) - v * np.sin(theta)
        q = u * np.sin(theta) + v * np.cos(theta)
        inside = (p / 0.21) ** 2 + (q / 0.105) ** 2 <= 1.0
    elif which == "b":
        outer = (c - 0.60) ** 2 + (r - 0.55) ** 2 <= 0.30**2
        inner = (c - 0.47) ** 2 + (r - 0.47) ** 2 <= 0.30**2
        inside = outer & ~inner
        inside |= np.abs(np.hypot(c - 0.70, r - 0.19) - 0.06) <= 0.015
        for hc, hr, side in ((0.66, 0.76, 0.05), (0.79, 0.67, 0.035), (0.86, 0.55, 0.025)):
            inside &= ~((np.abs(c - hc) <= side / 2) & (np.abs(r - hr) <= side / 2))
    else:
        raise ValueError(f"which must be 'a' or 'b', got {which!r}")
    return _coverage_to_grey(inside, size)


def builtin_image(name: str) -> np.ndarray:
    """One of the built-in images ``"A"``, ``"B"`` (shipped glyphs, 64 x 64) or ``"density_a"``,
    ``"density_b"`` (procedural blobs, 100 x 100), as uint8 greyscale of shape (h, w)."""
    if name in ("A", "B"):
        return read_greyscale(DATA_DIR / f"glyph_{name}.png")
    if name in ("density_a", "density_b"):
        return blob_image(name[-1])
    raise ValueError(f"name must be one of {BUILTIN_IMAGES}, got {name!r}")


def _as_image(value, what: str) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        return read_greyscale(value)
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a path or a 2-D greyscale array, got shape {arr.shape}")
    return arr


def image_pair(
    source,
    target,
    *,
    n_source: int = 500,
    n_target: int = 500,
    seed=0,
    dim: int | None = None,
    loc=0.0,
    scale=1.0,
    name: str = "image",
) -> Dataset:
    """Source and target drawn from :func:`image_mixture` of two images (or ``N(0, I_2)`` for no source).

    Parameters
    ----------
    source : path, array-like of shape (h, w), or None
        Source image; ``None`` draws the source from ``N(0, I_2)``.
    target : path or array-like of shape (h', w')
        Target image.
    n_source, n_target : int, default=500
    seed : int or numpy.random.Generator, default=0
    dim : None or 2
    loc, scale : float or pair
        Placement of both images, see :func:`image_mixture`.
    name : str
        Recorded as ``Dataset.name``.

    Returns
    -------
    Dataset
        ``meta["source_mixture"]`` (or None) and ``meta["target_mixture"]`` hold the mixtures, and
        ``meta["source_labels"]``/``meta["target_labels"]`` the pixel index of each point.

    Raises
    ------
    ValueError
        On a missing or unreadable file, or an image :func:`image_mixture` rejects.
    """
    check_dim(dim, 2, name)
    n_source = check_count(n_source, "n_source")
    n_target = check_count(n_target, "n_target")
    tgt_mix = image_mixture(_as_image(target, "target"), loc=loc, scale=scale)
    src_mix = None if source is None else image_mixture(_as_image(source, "source"), loc=loc, scale=scale)
    rng_source, rng_target = streams(seed)
    if src_mix is None:
        src, src_labels = standard_normal(n_source, 2, rng_source), None
    else:
        src, src_labels = src_mix.sample(n_source, rng_source)
    tgt, tgt_labels = tgt_mix.sample(n_target, rng_target)
    describe = (lambda v: str(v) if isinstance(v, (str, os.PathLike)) else "array")
    return Dataset(
        name=name,
        source=src,
        target=tgt,
        meta={
            "source": "N(0, I_2)" if source is None else f"image {describe(source)}",
            "target": f"image {describe(target)}",
            "seed": seed_record(seed),
            "source_mixture": src_mix,
            "target_mixture": tgt_mix,
            "source_labels": src_labels,
            "target_labels": tgt_labels,
        },
    )


def density(*, n_source: int = 500, n_target: int = 500, seed=0, dim: int | None = None, loc=0.0, scale=1.0):
    """Source: the blob ``density_a`` (tilted ellipse); target: ``density_b`` (crescent), 500 points each.

    The paper's ``density`` preset [1]_ with the project's own procedural images (:func:`blob_image`);
    see :func:`image_mixture` for the density of each image.
    """
    return image_pair(builtin_image("density_a"), builtin_image("density_b"), n_source=n_source,
                      n_target=n_target, seed=seed, dim=dim, loc=loc, scale=scale, name="density")


def ab(*, n_source: int = 500, n_target: int = 500, seed=0, dim: int | None = None, loc=0.0, scale=1.0):
    """Source: the glyph "A"; target: the glyph "B" (64 x 64 each), 500 points each.

    The paper's ``ab`` preset [1]_ with the project's own glyphs (:func:`render_glyph`); see
    :func:`image_mixture` for the density of each image.
    """
    return image_pair(builtin_image("A"), builtin_image("B"), n_source=n_source, n_target=n_target,
                      seed=seed, dim=dim, loc=loc, scale=scale, name="ab")


def two_clouds_2d(*, n_source: int = 30, n_target: int = 30, seed=0, dim: int | None = None, loc=0.0,
                  scale=1.0):
    """The 2-D adequation set: ``density_a -> density_b`` with 30 points each side.

    The paper's 2-D adequation figure [1]_ (``plot_adequation_2d``) with the project's own images.
    """
    return image_pair(builtin_image("density_a"), builtin_image("density_b"), n_source=n_source,
                      n_target=n_target, seed=seed, dim=dim, loc=loc, scale=scale, name="two_clouds_2d")
