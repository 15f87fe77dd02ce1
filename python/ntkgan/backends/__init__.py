"""Interchangeable kernel backends behind one interface.

Each backend module exposes ``kernel(x, y, arch, kind)``, ``kernel_grad(x, y, weights, arch, kind)`` and
``kernel_matvec(x, y, v, arch, kind)``, taking validated C-contiguous float64 arrays (``y`` may be None
for the symmetric case) and returning float64 numpy arrays.

- ``"rust"``: ``ntkgan._core``, multicore CPU, the default.
- ``"jax"``: neural-tangents (the GPU path and the reference oracle), needs ``pip install "ntkgan[jax]"``.

The backend is chosen by the ``backend=`` argument, else the ``NTKGAN_BACKEND`` environment variable,
else ``"rust"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

__all__ = ["BACKENDS", "available", "get_backend", "resolve"]

#: Known backend names, in order of preference.
BACKENDS = ("rust", "jax")

_INSTALL_HINT = {
    "rust": "the compiled extension ntkgan._core is missing; reinstall ntkgan (pip install .)",
    "jax": 'JAX and neural-tangents are not installed; pip install "ntkgan[jax]"',
}


def _importable(name: str) -> bool:
    if name == "rust":
        return importlib.util.find_spec("ntkgan._core") is not None
    if name == "jax":
        return all(importlib.util.find_spec(m) is not None for m in ("jax", "neural_tangents"))
    return False


def available() -> list[str]:
    """Names of the backends that are installed, e.g. ``["rust", "jax"]``."""
    return [name for name in BACKENDS if _importable(name)]


def resolve(backend: str | None = None) -> str:
    """The backend name to use: the argument, else ``$NTKGAN_BACKEND``, else ``"rust"``."""
    name = backend if backend is not None else os.environ.get("NTKGAN_BACKEND") or "rust"
    if not isinstance(name, str) or name not in BACKENDS:
        source = "backend" if backend is not None else "NTKGAN_BACKEND"
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name


def get_backend(backend: str | None = None) -> ModuleType:
    """Import and return the backend module (raises ImportError naming what to install)."""
    name = resolve(backend)
    try:
        return importlib.import_module(f"ntkgan.backends._{name}")
    except ImportError as exc:
        raise ImportError(f"backend {name!r} is not available: {_INSTALL_HINT[name]} ({exc})") from exc
