"""Figures, drawn with matplotlib's object-oriented API on the Agg canvas (no pyplot, no global state).

- :func:`plot_adequation` — the paper's Fig. 1: finite-width vs infinite-width generator cost
  :math:`c_f` (1-D curves or 2-D heat maps with :math:`-\\nabla c_f` arrows) and the error against width.
- :func:`plot_snapshot`, :func:`animate_snapshots`, :func:`plot_bounds` — a flow's particles, target,
  heat map of :math:`c_f` and arrows with their key (or image grids), and the GIF of a run; every frame of
  a run has the same layout and one :class:`SnapshotScale` (:func:`snapshot_scale`,
  :func:`read_snapshot_scale`).
- :func:`plot_metrics` — a run's metrics.csv against steps (which way is better on every panel).
- :func:`plot_vector_field` — the force :math:`-\\nabla c_f` on a lone point (``ntkgan vector-field``).
- ``_studies`` (the collapse and damping studies' figures) and ``_sweep`` (a sweep's grouped bars) draw
  what those commands computed.

Models compute, this package draws: it imports no computation module (from the studies only the leaf
``studies._transition``, which words the collapse study's transition point).

matplotlib is imported when this package is; ``import ntkgan`` does not import it.
"""

from __future__ import annotations

from ntkgan.plots._adequation import plot_adequation
from ntkgan.plots._metrics import plot_metrics
from ntkgan.plots._snapshots import (
    SnapshotScale,
    animate_snapshots,
    plot_bounds,
    plot_snapshot,
    read_snapshot_scale,
    snapshot_scale,
)
from ntkgan.plots._vector_field import plot_vector_field

__all__ = [
    "SnapshotScale",
    "animate_snapshots",
    "plot_adequation",
    "plot_bounds",
    "plot_metrics",
    "plot_snapshot",
    "plot_vector_field",
    "read_snapshot_scale",
    "snapshot_scale",
]
