"""ntkgan: GAN training through the Neural Tangent Kernel, with a Rust core.

Everyday names are re-exported here; ``ntkgan.backends`` lists and picks kernel backends.
"""

from __future__ import annotations

from ntkgan import backends, datasets, metrics
from ntkgan.arch import ACTIVATIONS, ABRelu, Abs, Erf, Gelu, Identity, LeakyRelu, Mlp, Rbf, Relu, Sigmoid, Sin
from ntkgan.discriminator import LOSSES, Discriminator, train_discriminator
from ntkgan.kernels import kernel, kernel_grad, kernel_matvec, kernel_value_and_grad
from ntkgan.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"


def __getattr__(name):
    # heavier parts on first use: ntkgan.adequation(...), ntkgan.flows, ntkgan.presets, ntkgan.runner, ...
    import importlib

    if name == "adequation":  # the function (its module is ntkgan.studies.adequation)
        return importlib.import_module("ntkgan.studies.adequation").adequation
    if name == "vector_field":  # the module, as before it moved into the studies
        return importlib.import_module("ntkgan.studies.vector_field")
    if name in ("flows", "presets", "runner", "finite", "plots", "studies"):
        return importlib.import_module(f"ntkgan.{name}")
    raise AttributeError(f"module 'ntkgan' has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS", "LOSSES", "ABRelu", "Abs", "Discriminator", "Erf", "Gelu", "Identity", "LeakyRelu", "Mlp", "Rbf",
    "Relu", "Sigmoid", "Sin", "adequation", "backends", "datasets", "flows", "get_num_threads", "kernel",
    "kernel_grad", "kernel_matvec", "kernel_value_and_grad", "metrics", "presets", "set_num_threads",
    "train_discriminator",
]
