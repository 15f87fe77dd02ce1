"""The Rust backend: thin calls into ``ntkgan._core`` (validation happens in ``ntkgan.kernels``)."""

from __future__ import annotations

import numpy as np

from ntkgan import _core

__all__ = ["kernel", "kernel_grad", "kernel_matvec", "kernel_value_and_grad"]


def kernel(x: np.ndarray, y: np.ndarray | None, arch, kind: str) -> np.ndarray:
    return _core.kernel(x, y, arch.rust_spec(), kind == "ntk")


def kernel_grad(x: np.ndarray, y: np.ndarray, weights: np.ndarray, arch, kind: str) -> np.ndarray:
    return _core.kernel_grad(x, y, weights, arch.rust_spec(), kind == "ntk")


def kernel_matvec(x: np.ndarray, y: np.ndarray | None, v: np.ndarray, arch, kind: str) -> np.ndarray:
    return _core.kernel_matvec(x, x if y is None else y, v, arch.rust_spec(), kind == "ntk")


def kernel_value_and_grad(x: np.ndarray, y: np.ndarray, weights: np.ndarray, arch, kind: str):
    return _core.kernel_value_and_grad(x, y, weights, arch.rust_spec(), kind == "ntk")
