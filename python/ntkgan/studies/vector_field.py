r"""The generator's vector field of an infinite-width discriminator for one point against one target.

The paper's Figs. 6–7 (Franceschi et al. 2022, appendix; toolkit ``plot_vector_field``): one target point
:math:`y = (1, 0)` (zero-padded when ``dim > 2``); for every point :math:`x` of the grid
:math:`x_0 \in \mathrm{linspace}(-2, 2, n_x)`, :math:`x_1 \in \mathrm{linspace}(0, 2, n_y)` the generated set
is :math:`\{x\}` alone, the discriminator :math:`f_T` is trained on (fake :math:`\{x\}`, real
:math:`\{y\}`) for the preset's time :math:`T`, and the arrow at :math:`x` is the force
:math:`-\nabla c_{f_T}(x)`.  For IPM with :math:`f_0 = 0` this is
:math:`f_T = T\,(k(\cdot, y) - k(\cdot, x))` and

.. math::
    -\nabla c_{f_T}(x) = \nabla f_T(x) = T\,\big(\nabla_1 k(x, y) - \nabla_1 k(x, x)\big),

so the picture shows how the architecture's kernel (bias or not, ReLU cusp or smooth activation) shapes
the direction in which a lone generated point is pushed.  Infinite-width losses only
(``inf_ipm``, ``inf_lsgan``, ``inf_vanilla``).

``ntkgan vector-field --loss L --arch A [--out DIR]`` writes ``vector_field-L-A.png`` and the arrays
(``.npz``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntkgan._io import write_npz
from ntkgan._validation import check_int
from ntkgan.studies._common import check_out, cluster_args, map_tasks, run_tasks

__all__ = ["VectorField", "save_vector_field", "vector_field"]


@dataclass
class VectorField:
    """The grid and the force on a lone generated point at each grid point.

    Attributes
    ----------
    config : Config
    target : ndarray of shape (d,)
    grid : ndarray of shape (ny, nx, d)
        The points :math:`x` (coordinates beyond the first two are 0).
    force : ndarray of shape (ny, nx, d)
        :math:`-\\nabla c_{f_T}(x)` with :math:`f_T` trained on :math:`(\\{x\\}, \\{y\\})`.
    cost : ndarray of shape (ny, nx)
        :math:`c_{f_T}(x)`.
    """

    config: object
    target: np.ndarray
    grid: np.ndarray
    force: np.ndarray
    cost: np.ndarray


def _row_forces(task: dict) -> dict:
    """One task: the force and the cost at every point of one grid row (``task["points"]``), each point
    against the target alone."""
    from ntkgan.discriminator import train_discriminator
    from ntkgan.presets import Config

    config = Config.from_dict(task["config"])
    mlp = config.discriminator_arch()
    y = np.asarray(task["target"], dtype=np.float64)[None, :]
    force, cost = [], []
    for point in task["points"]:
        x = np.asarray(point, dtype=np.float64)[None, :]
        disc = train_discriminator(x, y, loss=config.d_loss, arch=mlp, t=config.t, seed=config.seed,
                                   f0=config.d_f0, backend=config.backend, kind=config.d_kind,
                                   method=config.d_method)
        force.append(-disc.cost_grad(x)[0])
        cost.append(disc.cost(x)[0])
    return {"force": np.array(force), "cost": np.array(cost)}


def vector_field(loss: str = "inf_ipm", arch: str = "relu", *, nx: int = 15, ny: int = 15, dim: int = 2,
                 target=(1.0, 0.0), x0_range=(-2.0, 2.0), x1_range=(0.0, 2.0), out=None,
                 workers: int | None = None, scheduler: str | None = None, progress: bool = False,
                 **overrides) -> VectorField:
    r"""The force :math:`-\nabla c_{f_T}(x)` on a lone generated point :math:`x` against one target point.

    Parameters
    ----------
    loss : str, default="inf_ipm"
        An infinite-width loss preset of :data:`ntkgan.presets.LOSS_PRESETS`.
    arch : str, default="relu"
        An architecture preset of :data:`ntkgan.presets.ARCH_PRESETS`.
    nx, ny : int, default=15
        Grid points along :math:`x_0` and :math:`x_1` (the toolkit's defaults), >= 2.
    dim : int, default=2
        Dimension of the points (>= 2); the grid and the target are zero-padded.
    target : sequence of 2 floats, default=(1, 0)
    x0_range, x1_range : (float, float)
        The grid is ``linspace(*x0_range, nx)`` by ``linspace(*x1_range, ny)``.
    out : str or path, optional
        A directory for the task records (``out/tasks/``, one per grid row): a killed call resumes where it
        stopped.  :func:`save_vector_field` writes the picture and the arrays.
    workers, scheduler : optional
        Compute the rows on a local Dask cluster of ``workers`` processes, or on the cluster at
        ``scheduler``; serial by default.  The numbers are the same either way.
    progress : bool, default=False
        Show a tqdm progress bar over the rows.
    **overrides
        Other :class:`~ntkgan.presets.Config` options (e.g. ``t=2.0``, ``backend="jax"``).

    Returns
    -------
    VectorField

    Raises
    ------
    ValueError
        Unknown presets or options, a finite-width loss, or bad grid sizes or ranges.
    """
    from ntkgan.presets import make_config

    config = make_config(loss=loss, arch=arch, **overrides)
    if config.discriminator != "infinite":
        raise ValueError(f"vector-field needs an infinite-width loss (inf_ipm, inf_lsgan, inf_vanilla), "
                         f"got loss={loss!r} (discriminator={config.discriminator!r})")
    nx = check_int(nx, "nx", 2)
    ny = check_int(ny, "ny", 2)
    dim = check_int(dim, "dim", 2)
    y = np.zeros(dim)
    y[:2] = np.asarray(target, dtype=np.float64).reshape(2)
    for name, rng in (("x0_range", x0_range), ("x1_range", x1_range)):
        lo, hi = (float(v) for v in rng)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"{name} must be (lo, hi) with lo < hi, got {rng!r}")
    gx = np.linspace(*map(float, x0_range), nx)
    gy = np.linspace(*map(float, x1_range), ny)
    grid = np.zeros((ny, nx, dim))
    grid[..., 0], grid[..., 1] = np.meshgrid(gx, gy)
    workers, scheduler = cluster_args(workers, scheduler)
    tasks = [{"config": config.to_dict(), "target": y.tolist(), "points": grid[i].tolist()} for i in range(ny)]
    cluster = {"workers": workers, "scheduler": scheduler, "progress": progress}
    if out is not None:
        rows, _ = run_tasks(_row_forces, tasks, check_out(out), study="vector_field", **cluster)
    else:
        rows = map_tasks(_row_forces, tasks, desc="vector field", **cluster)
    force = np.stack([r["force"] for r in rows])
    cost = np.stack([r["cost"] for r in rows])
    return VectorField(config=config, target=y, grid=grid, force=force, cost=cost)


def save_vector_field(field: VectorField, out_dir, stem: str | None = None) -> Path:
    """Write ``<stem>.png`` (:func:`ntkgan.plots.plot_vector_field`) and ``<stem>.npz`` (``grid``, ``force``,
    ``cost``, ``target``) to ``out_dir`` (created); ``stem`` defaults to ``vector_field-<loss>-<arch>``.
    Returns the PNG's path."""
    from ntkgan.plots import plot_vector_field

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"vector_field-{field.config.loss}-{field.config.arch}"
    png = out / f"{stem}.png"
    plot_vector_field(field, png)
    write_npz(out / f"{stem}.npz", {"grid": field.grid, "force": field.force, "cost": field.cost,
                                    "target": field.target})
    return png
