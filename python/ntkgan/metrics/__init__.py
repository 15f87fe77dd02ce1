r"""Distances between point clouds and mode-coverage statistics, to score generated samples.

- :func:`sinkhorn_divergence` — debiased Sinkhorn divergence, exactly geomloss's
  ``SamplesLoss("sinkhorn", p=2, blur=0.001, scaling=0.95)`` at the defaults (the paper's metric ``s``).
- :func:`energy_distance` — geomloss's ``SamplesLoss("energy")``, half the Székely-Rizzo energy
  distance (the paper's metric ``e``).
- :func:`mmd2` — squared MMD with a named kernel, a callable, or the NTK/NNGP of an :class:`ntkgan.Mlp`.
- :func:`nearest_mode`, :func:`mode_counts`, :func:`modes_covered`, :func:`diversity`,
  :func:`mean_nearest_distance`, :func:`mean_abs_cosine` — mode coverage of samples of a mixture with
  known centres (Durr et al.'s order parameter :math:`\log K + \sum_k p_k \log p_k`).

All functions take float arrays of shape (n, d), validate them (``ValueError`` naming the argument) and
return Python floats or numpy integer arrays.  None needs torch or JAX (an ``Mlp`` kernel uses the
configured kernel backend).
"""

from __future__ import annotations

from ntkgan.metrics._kernel_norms import NAMED_KERNELS, energy_distance, mmd2
from ntkgan.metrics._modes import (
    METRICS,
    diversity,
    mean_abs_cosine,
    mean_nearest_distance,
    mode_counts,
    modes_covered,
    nearest_mode,
)
from ntkgan.metrics._sinkhorn import sinkhorn_divergence

__all__ = [
    "METRICS",
    "NAMED_KERNELS",
    "diversity",
    "energy_distance",
    "mean_abs_cosine",
    "mean_nearest_distance",
    "mmd2",
    "mode_counts",
    "modes_covered",
    "nearest_mode",
    "sinkhorn_divergence",
]
