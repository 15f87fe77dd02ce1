"""ntkgan: GAN training through the Neural Tangent Kernel, with a Rust core.

Everyday names are re-exported here; ``ntkgan.backends`` lists and picks kernel backends.
"""

from __future__ import annotations

from ntkgan import backends, datasets, metrics
from ntkgan.discriminator import LOSSES, Discriminator, train_discriminator
from ntkgan.arch import ACTIVATIONS, ABRelu, Abs, Erf, Gelu, Identity, LeakyRelu, Mlp, Rbf, Relu, Sigmoid, Sin
from ntkgan.kernels import kernel, kernel_grad, kernel_matvec, kernel_value_and_grad
from ntkgan.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"


def __getattr__(name):
    # heavier parts on first use: ntkgan.adequation(...), ntkgan.flows, ntkgan.presets, ntkgan.runner, ...
    import importlib

    if name == "adequation":  # the function (its module, with the CLI, is ntkgan._adequation)
        return importlib.import_module("ntkgan._adequation").adequation
    if name in ("flows", "presets", "runner", "finite", "plots", "vector_field"):
        return importlib.import_module(f"ntkgan.{name}")
    raise AttributeError(f"module 'ntkgan' has no attribute {name!r}")

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "Discriminator",
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
    "kernel_value_and_grad",
    "set_num_threads",
    "train_discriminator",
    "adequation",
    "flows",
    "presets",
]
