r"""Kernel evaluations inside a compiled step: the tiles of :mod:`ntkgan.backends._jax_native`, traced.

The host-side backend (``backend="jax"`` in :func:`ntkgan.kernel`) cuts each call into padded tiles on the
host and finds exact duplicates by row labels; a compiled flow step cannot leave the device, so here the
same tile functions (:func:`~ntkgan.backends._jax_native.tile_parts`, ``tile_contract``, ``tile_kernel``)
run over row blocks with :func:`jax.lax.map`, and duplicates are found on the device by comparing rows
(:func:`~ntkgan.backends._jax_native.same_rows`: ``x_i == z_j`` coordinate by coordinate, exact).  The
numbers are the backend's: same recursion, same conventions at coincident points (the ReLU cusp), same
tile size on the CPU.

.. math::
    f_i = \sum_j w_j\, k(x_i, z_j), \qquad
    G_i = \sum_j w_j\, \nabla_1 k(x_i, z_j), \qquad
    K_{ij} = k(z_i, z_j).

Row blocks hold at most :func:`~ntkgan.backends._jax_native._chunk_entries` kernel entries (``rows * m``;
at least one row, so a block of a very wide ``z`` is one row: memory ``O(m)``); the last block is padded
with zero rows whose results are dropped.  Between the elementwise part of a block and its contractions an
:func:`jax.lax.optimization_barrier` keeps XLA from fusing the recursion into the reductions (the reason
the host backend makes two compiled calls per tile: such fusions run unvectorised on the CPU), and for
``d <= 8`` the contractions over ``j`` are row sums rather than matrix products
(``tile_contract(..., by_sums=True)``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ntkgan.arch import Mlp
from ntkgan.backends import _jax_native as _nat

__all__ = ["gram", "value_and_grad"]

try:  # public since jax 0.4.31; the pinned 0.4.30 has it under its private name
    _barrier = jax.lax.optimization_barrier
except AttributeError:  # pragma: no cover - jax 0.4.30
    from jax._src.ad_checkpoint import _optimization_barrier as _barrier


def _row_blocks(n: int, m: int, arch: Mlp, d: int) -> tuple[int, int]:
    """``(rows, blocks)``: ``blocks`` row blocks of ``rows`` rows (``rows * blocks >= n``, balanced)."""
    cost = 1 + d // 8 if _nat._uses_dist(arch) else 1
    budget = max(1, _nat._chunk_entries() // cost)
    rows_max = max(1, min(n, budget // max(m, 1)))
    blocks = math.ceil(n / rows_max)
    return math.ceil(n / blocks), blocks


def _blocked(x, rows: int, blocks: int):
    """``x`` (n, d) padded with zero rows to ``rows * blocks`` and shaped (blocks, rows, d)."""
    pad = rows * blocks - x.shape[0]
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, x.shape[1]), x.dtype)], axis=0)
    return x.reshape(blocks, rows, x.shape[1])


#: Up to this input dimension the contractions over ``j`` are elementwise products and row sums
#: (``tile_contract(..., by_sums=True)``) instead of matrix products: inside the compiled step XLA's CPU dot
#: with ``d`` output columns measured 1.7x slower for the whole tile (d = 2, 500 x 1000 pairs).
_SUM_MAX_D = 8


def value_and_grad(arch: Mlp, kind: str, x, z, w):
    r"""``(f, G)``: :math:`f_i = \sum_j w_j k(x_i, z_j)` (n,) and :math:`G_i = \sum_j w_j \nabla_1 k(x_i, z_j)`
    (n, d), traced (inside :func:`jax.jit`).

    Parameters
    ----------
    arch : Mlp
    kind : {"ntk", "nngp"}
    x : array of shape (n, d)
    z : array of shape (m, d)
    w : array of shape (m,)
    """
    n, d = x.shape
    rows, blocks = _row_blocks(n, z.shape[0], arch, d)

    def block(xb):
        parts = _nat.tile_parts(arch, kind, xb, z, _nat.same_rows(xb, z), w)
        parts = _barrier(parts)
        return _nat.tile_contract(arch, kind, xb, z, w, *parts, by_sums=d <= _SUM_MAX_D)

    f, g = jax.lax.map(block, _blocked(x, rows, blocks))
    return f.reshape(-1)[:n], g.reshape(-1, d)[:n]


def gram(arch: Mlp, kind: str, z):
    r""":math:`K_{ij} = k(z_i, z_j)`, (m, m), exactly symmetric (the upper triangle mirrored), traced."""
    m, d = z.shape
    rows, blocks = _row_blocks(m, m, arch, d)
    k = jax.lax.map(lambda zb: _nat.tile_kernel(arch, kind, zb, z, _nat.same_rows(zb, z)),
                    _blocked(z, rows, blocks))
    k = k.reshape(-1, m)[:m]
    upper = jnp.arange(m)[:, None] <= jnp.arange(m)[None, :]
    return jnp.where(upper, k, k.T)
