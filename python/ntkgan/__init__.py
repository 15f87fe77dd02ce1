"""ntkgan: GAN training through the Neural Tangent Kernel, with a Rust core.

Everyday names are re-exported here; ``ntkgan.backends`` lists and picks kernel backends.
"""

from __future__ import annotations

from ntkgan import backends, datasets, metrics
from ntkgan.arch import ACTIVATIONS, ABRelu, Abs, Erf, Gelu, Identity, LeakyRelu, Mlp, Rbf, Relu, Sigmoid, Sin
from ntkgan.kernels import kernel, kernel_grad, kernel_matvec
from ntkgan.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "ABRelu",
    "Abs",
    "Erf",
    "Gelu",
    "Identity",
    "LeakyRelu",
    "Mlp",
    "Rbf",
    "Relu",
    "Sigmoid",
    "Sin",
    "backends",
    "datasets",
    "metrics",
    "get_num_threads",
    "kernel",
    "kernel_grad",
    "kernel_matvec",
    "set_num_threads",
]
