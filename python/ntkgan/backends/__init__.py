"""Interchangeable kernel backends behind one interface.

Each backend module exposes ``kernel(x, y, arch, kind)``, ``kernel_grad(x, y, weights, arch, kind)``,
``kernel_matvec(x, y, v, arch, kind)`` and ``kernel_value_and_grad(x, y, weights, arch, kind)``, taking
validated C-contiguous float64 arrays (``y`` may be None for the symmetric case) and returning float64
numpy arrays.

- ``"rust"``: ``ntkgan._core``, multicore CPU, the default.
- ``"jax"``: the closed-form recursions written in ``jax.numpy`` (:mod:`ntkgan.backends._jax_native`), on
  JAX's default device (the GPU when there is one); needs JAX only, any release from 0.4.30 to the current
  one: ``pip install "ntkgan[jax]"`` (CPU) or ``"ntkgan[jax-cuda]"`` (NVIDIA GPU, CUDA 12).  With
  ``backend="jax"`` a flow also runs its whole steps compiled on that device (:mod:`ntkgan.jax_path`).

The oracle ``"neural_tangents"`` (:mod:`ntkgan.backends._neural_tangents`: neural-tangents' ``stax`` kernels
with the cusp convention made exact) is what the tests compare both backends against.  neural-tangents
is archived upstream and imports only on the pinned set ``pip install "ntkgan[oracle]"`` (jax 0.4.30); it
is accepted by ``backend=`` and :func:`resolve` but is not in :data:`BACKENDS` (runs and configurations
take ``"rust"`` or ``"jax"``).

The backend is chosen by the ``backend=`` argument, else the ``NTKGAN_BACKEND`` environment variable,
else ``"rust"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

__all__ = ["BACKENDS", "ORACLES", "available", "get_backend", "resolve"]

#: Backend names a run may use, in order of preference.
BACKENDS = ("rust", "jax")
#: Reference implementations accepted by ``backend=`` for tests and benchmarks (not by run configurations).
ORACLES = ("neural_tangents",)

_MODULES = {"rust": "_rust", "jax": "_jax_native", "neural_tangents": "_neural_tangents"}

_INSTALL_HINT = {
    "rust": "the compiled extension ntkgan._core is missing; reinstall ntkgan (pip install .)",
    "jax": 'JAX is not installed; pip install "ntkgan[jax]" (CPU) or "ntkgan[jax-cuda]" (NVIDIA GPU)',
    "neural_tangents": ('the neural-tangents oracle is not installed or does not import on this JAX; it needs '
                        'the pinned set: pip install "ntkgan[oracle]"'),
}


def _importable(name: str) -> bool:
    if name == "rust":
        return importlib.util.find_spec("ntkgan._core") is not None
    if name == "jax":
        return importlib.util.find_spec("jax") is not None
    if name == "neural_tangents":
        return all(importlib.util.find_spec(m) is not None for m in ("jax", "neural_tangents"))
    return False


def available(oracles: bool = False) -> list[str]:
    """Names of the backends that are installed, e.g. ``["rust", "jax"]``.

    ``oracles=True`` adds the installed reference implementations (:data:`ORACLES`); being installed is
    not importing: neural-tangents 0.6.5 fails to import on jax >= 0.4.38.
    """
    names = BACKENDS + (ORACLES if oracles else ())
    return [name for name in names if _importable(name)]


def resolve(backend: str | None = None) -> str:
    """The backend name to use: the argument, else ``$NTKGAN_BACKEND``, else ``"rust"``.

    Raises
    ------
    ValueError
        A name outside :data:`BACKENDS` (and :data:`ORACLES`), naming where it came from.
    """
    name = backend if backend is not None else os.environ.get("NTKGAN_BACKEND") or "rust"
    if not isinstance(name, str) or name not in BACKENDS + ORACLES:
        source = "backend" if backend is not None else "NTKGAN_BACKEND"
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name


def get_backend(backend: str | None = None) -> ModuleType:
    """Import and return the backend module (raises ImportError naming what to install)."""
    name = resolve(backend)
    try:
        return importlib.import_module(f"ntkgan.backends.{_MODULES[name]}")
    except ImportError as exc:
        raise ImportError(f"backend {name!r} is not available: {_INSTALL_HINT[name]} ({exc})") from exc
    except Exception as exc:  # neural-tangents on a newer jax fails with AttributeError etc.
        if name != "neural_tangents":
            raise
        raise ImportError(f"backend {name!r} is not available: {_INSTALL_HINT[name]} "
                          f"({type(exc).__name__}: {exc})") from exc
