r"""Flows: a generated distribution moved toward a target by an (infinite- or finite-width) discriminator.

:func:`make_flow` ``(config, dataset)`` returns a :class:`Flow`; each :meth:`Flow.step` trains (or
re-solves) the discriminator on (current fake samples, target batch) and then moves the fake samples:

1. free particles (the paper's setting):
   :math:`x_i \leftarrow x_i - \eta\,\nabla_{x_i}[\frac1N\sum_l c(f(x_l))] = x_i - (\eta/N)\nabla c(f(x_i))`;
2. a generator network :math:`g_\theta` (:class:`GeneratorFlow`): SGD/Adam on
   :math:`\operatorname{mean}_z c(f(g_\theta(z)))` through the Jacobian;
3. kernel-coupled particles (Durr et al.'s effective model):
   :math:`x_i \leftarrow x_i - (\eta/N)\sum_j \Theta_{ij} \nabla c(f(x_j))`, with :math:`\Theta` the
   identity, the two-number kernel (:math:`g_1` on the diagonal, :math:`g_2` off it, or
   :math:`g_1 I + g_2 \mathbf 1\mathbf 1^\top`) or the exact generator NTK at fixed latent codes.

:meth:`Flow.state_dict` / :meth:`Flow.load_state_dict` save and restore everything (particles,
generator and persistent-discriminator parameters, optimiser moments, step counter, RNG state) as numpy
arrays that ``np.savez(..., allow_pickle=False)`` can hold; a restored flow continues bit-identically.

References
----------
.. [1] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022.
.. [2] Durr, Mroueh, Tu, Wang. Effective Dynamics of Generative Adversarial Networks. Phys. Rev. X 13,
       041004 (2023).
"""

from __future__ import annotations

from ntkgan.flows._coupling import (
    generator_ntk,
    latent_codes,
    two_number_coefficients,
    two_number_fit,
    two_number_step,
)
from ntkgan.flows._flows import Flow, GeneratorFlow, ParticleFlow, load_dataset, make_flow

__all__ = [
    "Flow",
    "GeneratorFlow",
    "ParticleFlow",
    "generator_ntk",
    "latent_codes",
    "load_dataset",
    "make_flow",
    "two_number_coefficients",
    "two_number_fit",
    "two_number_step",
]
