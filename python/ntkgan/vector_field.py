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

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VectorField", "vector_field", "plot_vector_field", "add_cli"]


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


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def vector_field(loss: str = "inf_ipm", arch: str = "relu", *, nx: int = 15, ny: int = 15, dim: int = 2,
                 target=(1.0, 0.0), x0_range=(-2.0, 2.0), x1_range=(0.0, 2.0), **overrides) -> VectorField:
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
    from ntkgan.discriminator import train_discriminator
    from ntkgan.presets import make_config

    config = make_config(loss=loss, arch=arch, **overrides)
    if config.discriminator != "infinite":
        raise ValueError(f"vector-field needs an infinite-width loss (inf_ipm, inf_lsgan, inf_vanilla), "
                         f"got loss={loss!r} (discriminator={config.discriminator!r})")
    nx = _check_count(nx, "nx", 2)
    ny = _check_count(ny, "ny", 2)
    dim = _check_count(dim, "dim", 2)
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
    mlp = config.discriminator_arch()
    force = np.empty_like(grid)
    cost = np.empty((ny, nx))
    for i in range(ny):
        for j in range(nx):
            x = grid[i, j][None, :]
            disc = train_discriminator(x, y[None, :], loss=config.d_loss, arch=mlp, t=config.t,
                                       seed=config.seed, f0=config.d_f0, backend=config.backend,
                                       kind=config.d_kind, method=config.d_method)
            force[i, j] = -disc.cost_grad(x)[0]
            cost[i, j] = disc.cost(x)[0]
    return VectorField(config=config, target=y, grid=grid, force=force, cost=cost)


def plot_vector_field(field: VectorField, path) -> None:
    r"""Draw the arrows :math:`-\nabla c_{f_T}(x)` (unit length, coloured by :math:`\log_{10}` of their norm).

    Parameters
    ----------
    field : VectorField
    path : str or path-like
        The PNG to write (atomically).
    """
    from matplotlib.figure import Figure

    from ntkgan.plots._snapshots import _save

    g, f = field.grid, field.force
    norm = np.linalg.norm(f[..., :2], axis=-1)
    safe = np.where(norm > 0, norm, 1.0)
    u, v = f[..., 0] / safe, f[..., 1] / safe
    colour = np.log10(np.where(norm > 0, norm, np.nan))
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    q = ax.quiver(g[..., 0], g[..., 1], u, v, colour, cmap="viridis", angles="xy", pivot="mid",
                  scale_units="xy", scale=1.0 / (0.8 * (g[0, 1, 0] - g[0, 0, 0])), width=0.004)
    fig.colorbar(q, ax=ax, label=r"$\log_{10} \|\nabla c_{f_T}(x)\|$ (arrow colour)")
    ax.plot([field.target[0]], [field.target[1]], marker="*", ms=16, color="#D55E00", linestyle="none",
            markeredgecolor="black", markeredgewidth=0.6, label="target $y$", zorder=5)
    from matplotlib.lines import Line2D

    arrow = Line2D([], [], ls="none", marker=r"$\rightarrow$", ms=12, color="0.3",
                   label=r"direction of $-\nabla c_{f_T}(x)$ (same length; size by colour)")
    ax.set_aspect("equal")
    pad = 0.15
    ax.set_xlim(g[..., 0].min() - pad, g[..., 0].max() + pad)
    ax.set_ylim(g[..., 1].min() - pad, g[..., 1].max() + pad)
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    fig.legend(handles=[ax.get_legend_handles_labels()[0][0], arrow], loc="outside lower center", ncol=2,
               fontsize=8, frameon=False)
    c = field.config
    ax.set_title(f"loss {c.loss}, arch {c.arch}, T = {c.t:g}\n"
                 r"force $-\nabla c_{f_T}(x)$ on a lone point $x$ against the target $y = (1, 0)$",
                 fontsize=10)
    _save(fig, path)


def _run_cli(args) -> int:
    overrides = {}
    if args.backend is not None:
        overrides["backend"] = args.backend
    if args.t is not None:
        overrides["t"] = args.t
    field = vector_field(args.loss, args.arch, nx=args.nx, ny=args.ny, dim=args.dim, **overrides)
    out = Path(args.out) if args.out else Path("vector-field")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"vector_field-{args.loss}-{args.arch}"
    png = out / f"{stem}.png"
    plot_vector_field(field, png)
    tmp = out / f".{stem}.tmp-{os.getpid()}.npz"
    np.savez(tmp, grid=field.grid, force=field.force, cost=field.cost, target=field.target)
    os.replace(tmp, out / f"{stem}.npz")
    print(png)
    return 0


def add_cli(subparsers) -> None:
    """Register ``ntkgan vector-field`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "vector-field",
        help="arrows -grad c_f on a grid for one point vs the target (1, 0) (the paper's Figs. 6-7)",
        description=(
            "For each grid point x (x0 in [-2, 2], x1 in [0, 2]) train the infinite-width discriminator on "
            "fake {x} vs real {(1, 0)} and draw the force -grad c_f(x); writes a PNG and the arrays (.npz)."
        ),
    )
    p.add_argument("--loss", default="inf_ipm", help="infinite-width loss preset (default: %(default)s)")
    p.add_argument("--arch", default="relu", help="architecture preset (default: %(default)s)")
    p.add_argument("--out", default="vector-field", help="output directory (default: ./%(default)s)")
    p.add_argument("--nx", type=int, default=15, help="grid points along x0 (default: %(default)s)")
    p.add_argument("--ny", type=int, default=15, help="grid points along x1 (default: %(default)s)")
    p.add_argument("--dim", type=int, default=2, help="dimension, zero-padded (default: %(default)s)")
    p.add_argument("--t", type=float, default=None, help="training time T (default: the loss preset's)")
    p.add_argument("--backend", default=None,
                   help="kernel backend, rust or jax (default: $NTKGAN_BACKEND, else rust)")
    p.set_defaults(func=_run_cli)
