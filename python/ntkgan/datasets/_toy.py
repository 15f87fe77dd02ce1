"""Gaussian mixtures with known mode centres, and the fixed 1-D/2-D "adequation" point sets.

References
----------
.. [1] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022 (toolkit gantk2,
   ``data/simple.py``: the 8 Gaussians and the fixed sets).
"""

from __future__ import annotations

import math

import numpy as np

from ntkgan.datasets._base import (
    Dataset,
    GaussianMixture,
    check_count,
    check_dim,
    check_positive,
    seed_record,
    standard_normal,
    streams,
)

__all__ = [
    "LAYOUTS",
    "eight_gaussians",
    "gaussian_mixture",
    "mixture_centres",
    "modes_1d",
    "modes_1d_overlap",
    "two_couples_2d",
    "two_singles_1d",
]

LAYOUTS = ("line", "ring", "grid", "axes", "sphere")


def mixture_centres(k: int, dim: int = 2, *, radius: float = 5.0, layout: str | None = None, seed=0):
    """Centres ``mu_1..mu_K`` of a K-mode mixture in ``R^dim``, laid out by ``layout``.

    Parameters
    ----------
    k : int
        Number of modes ``K >= 1``.
    dim : int, default=2
        Dimension ``d >= 1``.
    radius : float, default=5.0
        Size of the layout, > 0 (see Notes).
    layout : {"line", "ring", "grid", "axes", "sphere"} or None
        ``None`` picks ``"line"`` for d = 1, ``"ring"`` for d = 2 and ``"sphere"`` for d >= 3.
    seed : int or numpy.random.Generator, default=0
        Only used by ``"sphere"``; it is the centres' own seed, apart from the sampling seed, so that runs
        with different sampling seeds share their modes.

    Returns
    -------
    ndarray of shape (k, dim)

    Raises
    ------
    ValueError
        On an unknown layout, or one that does not fit ``k`` and ``dim`` (ring and grid need d >= 2, grid
        needs K a perfect square, axes needs K <= 2 d).

    Notes
    -----
    With ``r = radius`` and unused coordinates set to 0:

    - ``line``: ``mu_j = r (2 j / (K - 1) - 1) e_1`` for j = 0..K-1 (K evenly spaced points on
      ``[-r, r]``; ``mu = 0`` when K = 1).
    - ``ring``: ``mu_j = r (cos(2 pi j / K), sin(2 pi j / K), 0, ...)``.
    - ``grid``: the ``m x m`` grid (``K = m^2``) of ``[-r, r]^2`` in the first two coordinates.
    - ``axes``: ``r e_1, ..., r e_d, -r e_1, ..., -r e_d`` truncated to K points (equidistant modes,
      ``||mu_i - mu_j|| = r sqrt(2)``, when K <= d).
    - ``sphere``: K points uniform on the sphere ``||mu|| = r``: ``mu = r g / ||g||``, ``g ~ N(0, I_d)``.
    """
    k = check_count(k, "k")
    dim = check_count(dim, "dim")
    radius = check_positive(radius, "radius")
    if layout is None:
        layout = "line" if dim == 1 else "ring" if dim == 2 else "sphere"
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    centres = np.zeros((k, dim))
    if layout == "line":
        centres[:, 0] = 0.0 if k == 1 else radius * np.linspace(-1.0, 1.0, k)
    elif layout in ("ring", "grid"):
        if dim < 2:
            raise ValueError(f"layout {layout!r} needs dim >= 2, got dim={dim}")
        if layout == "ring":
            angle = 2.0 * np.pi * np.arange(k) / k
            centres[:, 0], centres[:, 1] = radius * np.cos(angle), radius * np.sin(angle)
        else:
            m = math.isqrt(k)
            if m * m != k:
                raise ValueError(f"layout 'grid' needs k to be a perfect square, got k={k}")
            side = np.zeros(1) if m == 1 else radius * np.linspace(-1.0, 1.0, m)
            gx, gy = np.meshgrid(side, side, indexing="ij")
            centres[:, 0], centres[:, 1] = gx.ravel(), gy.ravel()
    elif layout == "axes":
        if k > 2 * dim:
            raise ValueError(f"layout 'axes' needs k <= 2 * dim = {2 * dim}, got k={k}")
        signed = np.concatenate([np.eye(dim), -np.eye(dim)])
        centres = radius * signed[:k]
    else:
        (rng,) = streams(seed, 1)
        g = rng.standard_normal((k, dim))
        norms = np.linalg.norm(g, axis=1, keepdims=True)
        centres = radius * g / np.where(norms > 0, norms, 1.0)
    return centres


def gaussian_mixture(
    *,
    k: int = 8,
    dim: int | None = None,
    radius: float = 5.0,
    std: float = 0.5,
    layout: str | None = None,
    centres_seed=0,
    source_std: float = 1.0,
    n_source: int = 500,
    n_target: int = 500,
    seed=0,
) -> Dataset:
    """Source ``N(0, s^2 I_d)``, target ``(1/K) sum_k N(mu_k, sigma^2 I_d)`` with known centres.

    Parameters
    ----------
    k : int, default=8
        Number of modes ``K``.
    dim : int or None, default=None (= 2)
        Dimension ``d``.
    radius : float, default=5.0
        Layout size, see :func:`mixture_centres`.
    std : float, default=0.5
        Component standard deviation ``sigma``.
    layout : str or None
        Centre layout, see :func:`mixture_centres`.
    centres_seed : int, default=0
        Seed of the ``"sphere"`` layout's centres (kept apart from ``seed``).
    source_std : float, default=1.0
        Source standard deviation ``s``.
    n_source, n_target : int, default=500
        Sample sizes.
    seed : int or numpy.random.Generator, default=0
        Sampling seed (source and target use independent streams).

    Returns
    -------
    Dataset
        ``modes`` holds the K centres (K, d); ``meta["target_labels"]`` the component of each target
        point; ``meta["target_mixture"]`` the :class:`GaussianMixture`.
    """
    dim = 2 if dim is None else check_count(dim, "dim")
    n_source = check_count(n_source, "n_source")
    n_target = check_count(n_target, "n_target")
    std = check_positive(std, "std")
    source_std = check_positive(source_std, "source_std")
    centres = mixture_centres(k, dim, radius=radius, layout=layout, seed=centres_seed)
    mixture = GaussianMixture(centres, np.ones(len(centres)), std)
    rng_source, rng_target = streams(seed)
    source = standard_normal(n_source, dim, rng_source, source_std)
    target, labels = mixture.sample(n_target, rng_target)
    return Dataset(
        name="gaussian_mixture",
        source=source,
        target=target,
        modes=centres,
        meta={
            "source": f"N(0, {source_std:g}^2 I_{dim})",
            "target": f"{len(centres)} equal Gaussians, std {std:g}, layout {layout or 'default'}",
            "seed": seed_record(seed),
            "target_labels": labels,
            "target_mixture": mixture,
        },
    )


def eight_gaussians(*, n_source: int = 500, n_target: int = 500, seed=0, dim: int | None = None) -> Dataset:
    """Source ``N(0, I_2)``, target ``(1/8) sum_k N(5 (cos(k pi/4), sin(k pi/4)), 0.5^2 I_2)``.

    The paper's ``eight_gaussians`` preset [1]_: eight equal Gaussians of std 0.5 centred on the radius-5
    circle at the multiples of 45 degrees, 500 points each side.

    Parameters
    ----------
    n_source, n_target : int, default=500
    seed : int or numpy.random.Generator, default=0
    dim : None or 2

    Returns
    -------
    Dataset
        As :func:`gaussian_mixture`, with ``modes`` the 8 centres (8, 2).

    Notes
    -----
    The toolkit lists the centres in another order (``5 (cos t_k, sqrt(1 - cos^2 t_k) sign(k - 4))``);
    the set of centres, and so the distribution, is the same.
    """
    check_dim(dim, 2, "eight_gaussians")
    ds = gaussian_mixture(
        k=8, dim=2, radius=5.0, std=0.5, layout="ring", n_source=n_source, n_target=n_target, seed=seed
    )
    ds.name = "eight_gaussians"
    return ds


# name -> (source points, target points), the toolkit's values with its factor 1.5 applied.
_FIXED = {
    "modes_1d": ([[-1.8], [-2.01], [-1.2], [-1.05], [-0.45]], [[0.9], [1.5], [1.845], [1.98], [0.3]]),
    "modes_1d_overlap": (
        [[-1.8], [-2.01], [-1.2], [-1.05], [-0.3]],
        [[0.9], [1.5], [1.845], [1.98], [-1.65], [-1.5], [-2.7]],
    ),
    "two_couples_2d": ([[1.0, 1.0], [1.0, -1.0]], [[-1.0, -1.0], [-1.0, 1.0]]),
    "two_singles_1d": ([[-1.0]], [[1.0]]),
}


def _fixed(name: str, n_source, n_target, seed, dim) -> Dataset:
    src, tgt = (np.array(a, dtype=np.float64) for a in _FIXED[name])
    check_dim(dim, src.shape[1], name)
    for arg, value, size in (("n_source", n_source, len(src)), ("n_target", n_target, len(tgt))):
        if value is not None and value != size:
            raise ValueError(f"{arg} must be None or {size} for the fixed set {name!r}, got {value!r}")
    return Dataset(
        name=name,
        source=src,
        target=tgt,
        meta={"source": "fixed points", "target": "fixed points", "seed": seed_record(seed), "fixed": True},
    )


def modes_1d(*, n_source=None, n_target=None, seed=0, dim=None) -> Dataset:
    """Fixed 1-D set: source [-1.8, -2.01, -1.2, -1.05, -0.45], target [0.9, 1.5, 1.845, 1.98, 0.3].

    The LSGAN 1-D adequation figure of [1]_ (toolkit values x 1.5).  ``n_source``/``n_target`` must be
    ``None`` or the set's size; ``seed`` is recorded but unused.
    """
    return _fixed("modes_1d", n_source, n_target, seed, dim)


def modes_1d_overlap(*, n_source=None, n_target=None, seed=0, dim=None) -> Dataset:
    """Fixed 1-D set: source [-1.8, -2.01, -1.2, -1.05, -0.3], target [0.9, 1.5, 1.845, 1.98, -1.65, -1.5,
    -2.7].

    The IPM 1-D adequation figure of [1]_ (toolkit values x 1.5): three target points sit among the
    source points.
    """
    return _fixed("modes_1d_overlap", n_source, n_target, seed, dim)


def two_couples_2d(*, n_source=None, n_target=None, seed=0, dim=None) -> Dataset:
    """Fixed 2-D set: source (1, 1), (1, -1); target (-1, -1), (-1, 1)."""
    return _fixed("two_couples_2d", n_source, n_target, seed, dim)


def two_singles_1d(*, n_source=None, n_target=None, seed=0, dim=None) -> Dataset:
    """Fixed 1-D set: source -1, target 1."""
    return _fixed("two_singles_1d", n_source, n_target, seed, dim)
