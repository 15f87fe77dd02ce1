"""Toy and image-derived source/target distributions, all generated or shipped locally (nothing downloaded).

``load(name, n_source=None, n_target=None, seed=0, dim=None, **options)`` returns a :class:`Dataset`
(``source`` (n, d), ``target`` (m, d), ``modes``, ``meta``).  The names (registry :data:`DATASETS`):

==================== ======================================================= ============================
name                 source -> target                                         default sizes, d
==================== ======================================================= ============================
``eight_gaussians``  N(0, I_2) -> 8 equal Gaussians, std 0.5, radius-5 circle  500 / 500, d = 2
``gaussian_mixture`` N(0, I_d) -> K equal Gaussians with known centres         500 / 500, any d
``gmm:K``            the same with K modes                                     500 / 500, any d
``density``          blob ``density_a`` -> blob ``density_b`` (100 x 100)      500 / 500, d = 2
``ab``               glyph "A" -> glyph "B" (64 x 64)                           500 / 500, d = 2
``two_clouds_2d``    ``density_a`` -> ``density_b``, the 2-D adequation set     30 / 30, d = 2
``image:PATH``       N(0, I_2) -> the image at PATH (``image:SRC,TGT``: both)   500 / 500, d = 2
``modes_1d``         5 fixed points -> 5 fixed points                          5 / 5, d = 1
``modes_1d_overlap`` 5 fixed points -> 7 fixed points (3 among the source)     5 / 7, d = 1
``two_couples_2d``   (1, 1), (1, -1) -> (-1, -1), (-1, 1)                        2 / 2, d = 2
``two_singles_1d``   -1 -> 1                                                   1 / 1, d = 1
``digits``           N(0, I_64) -> scikit-learn 8 x 8 digits in [-1, 1]        1024 / 1024, d = 64
``mnist:PATH``       N(0, I_1024) -> local MNIST (IDX/.gz/.npz), padded to 32  1024 / 1024, d = 1024
==================== ======================================================= ============================

An image becomes ``p(x) = sum_pixels w_p N(x; c_p, diag(1/w, 1/h)^2)`` with ``w_p`` proportional to the
pixel's darkness and ``c_p`` its place on ``[-1, 1]^2``, the right way up (:func:`image_mixture`).
Everything is deterministic given ``seed``: the source and target come from two independent streams of
``numpy.random.SeedSequence(seed)``.

References
----------
.. [1] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022.
"""

from __future__ import annotations

from ntkgan.datasets._base import Dataset, GaussianMixture
from ntkgan.datasets._images import (
    BUILTIN_IMAGES,
    ab,
    blob_image,
    builtin_image,
    density,
    image_mixture,
    image_pair,
    read_greyscale,
    render_glyph,
    two_clouds_2d,
)
from ntkgan.datasets._real import PIXEL_SCALE, center_crop, digits, mnist, read_idx, read_mnist
from ntkgan.datasets._registry import DATASETS, PREFIXES, load, names
from ntkgan.datasets._toy import (
    LAYOUTS,
    eight_gaussians,
    gaussian_mixture,
    mixture_centres,
    modes_1d,
    modes_1d_overlap,
    two_couples_2d,
    two_singles_1d,
)

__all__ = [
    "BUILTIN_IMAGES",
    "DATASETS",
    "LAYOUTS",
    "PIXEL_SCALE",
    "PREFIXES",
    "Dataset",
    "GaussianMixture",
    "ab",
    "blob_image",
    "builtin_image",
    "center_crop",
    "density",
    "digits",
    "eight_gaussians",
    "gaussian_mixture",
    "image_mixture",
    "image_pair",
    "load",
    "mixture_centres",
    "mnist",
    "modes_1d",
    "modes_1d_overlap",
    "names",
    "read_greyscale",
    "read_idx",
    "read_mnist",
    "render_glyph",
    "two_clouds_2d",
    "two_couples_2d",
    "two_singles_1d",
]
