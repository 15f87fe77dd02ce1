r"""The experiments wing: every study beyond a single run, each a module on one skeleton
(:mod:`ntkgan.studies._common`: tasks, a task map serial or on Dask with a record per finished task so a
killed study resumes, a result, its outputs; figures in :mod:`ntkgan.plots`, commands in :mod:`ntkgan.cli`).

- :func:`~ntkgan.studies.adequation.adequation` (:mod:`ntkgan.studies.adequation`, ``ntkgan adequation``):
  finite-width discriminators against the infinite-width one (the paper's Fig. 1).
- :func:`~ntkgan.studies.vector_field.vector_field` (``ntkgan vector-field``): the force on a lone point
  (the paper's Figs. 6-7).

Studies of the effective GAN dynamics of Durr, Mroueh, Tu and Wang (*Effective Dynamics of Generative
Adversarial Networks*, Phys. Rev. X 13, 041004, 2023; ``ntkgan collapse`` and ``ntkgan damping``):

- :func:`collapse_study` (:mod:`ntkgan.studies.collapse`): kernel-coupled particles on a Gaussian mixture,
  swept over the coupling :math:`g_2/g_1`, for several discriminator settings; the diversity order
  parameter :math:`\log K + \sum_k p_k \log p_k` over time and at the end, and the transition points.
- :func:`damping_study` (:mod:`ntkgan.studies.damping`): a persistent finite discriminator with the gradient
  penalty :math:`\lambda\,\mathbb E\|\nabla_x f\|^2`, swept over :math:`\lambda`; convergence rates
  against the linearised (damped-oscillator) model and its critical damping.

Both run one task per setting and seed, serially or on a Dask cluster (``workers=K`` for a local one,
``scheduler=ADDRESS`` for an existing one), each task single-threaded, so the numbers do not depend on where
they ran.  Their commands are in :mod:`ntkgan.cli._studies`.
"""

from ntkgan.studies.collapse import CollapseResult, collapse_study, transition_point
from ntkgan.studies.damping import (
    DampingResult,
    continuous_roots,
    damping_study,
    decay_rate,
    linear_model_map,
    linear_model_rate,
)

__all__ = [
    "CollapseResult",
    "DampingResult",
    "collapse_study",
    "continuous_roots",
    "damping_study",
    "decay_rate",
    "linear_model_map",
    "linear_model_rate",
    "transition_point",
]
