"""Networks and samples shared by the infinite-width discriminator tests (test_discriminator_infinite.py,
test_vanilla_solvers.py)."""

from __future__ import annotations

import ntkgan
import numpy as np

#: a depth-3 ReLU network with bias (the paper's default discriminator)
RELU = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0)
#: a smooth kernel (depth-2 erf) where finite differences and ODE solvers are accurate
ERF = ntkgan.Mlp(depth=2, activation="erf", w_std=1.2, b_std=0.5)


def clouds(n_fake, n_real, d=2, seed=0, shift=0.7):
    """``n_fake`` standard normal points and ``n_real`` shifted by ``shift`` in every coordinate."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_fake, d)), rng.normal(size=(n_real, d)) + shift
