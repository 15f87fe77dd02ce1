"""``ntkgan adequation`` (the paper's Fig. 1) and ``ntkgan vector-field`` (its Figs. 6-7)."""

from __future__ import annotations

from pathlib import Path

from ntkgan.cli._options import add_cluster_options, add_command, add_out, add_quiet
from ntkgan.studies.adequation import DEFAULT_WIDTHS, PRESETS, adequation
from ntkgan.studies.vector_field import save_vector_field, vector_field

__all__ = ["add_adequation_command", "add_vector_field_command"]


def _adequation_cli(args) -> int:
    """finite vs infinite-width discriminators (the paper's Fig. 1, with an error table)

    Train discriminators of several widths by gradient descent and compare their generator cost c_f with the
    infinite-width (NTK) one on a grid; write a PNG, an error table (CSV and Markdown) and the arrays (.npz).
    Presets: {presets}.
    """
    out = args.out if args.out is not None else f"adequation-{args.preset}"
    result = adequation(
        args.preset, widths=args.widths, seeds=args.seeds, out=out, backend=args.backend, nx=args.nx,
        t=args.t, lr=args.lr, picture_width=args.picture_width, workers=args.workers, scheduler=args.scheduler,
        progress=not args.quiet,
    )
    print(result.to_markdown())
    for kind, path in result.paths.items():
        print(f"wrote {kind}: {path}")
    print(f"elapsed: {result.elapsed:.1f} s")
    return 0


def add_adequation_command(subparsers) -> None:
    """Register ``ntkgan adequation``."""
    p = add_command(subparsers, "adequation", _adequation_cli, presets=", ".join(sorted(PRESETS)))
    p.add_argument("--preset", required=True, help=f"one of {', '.join(sorted(PRESETS))}")
    p.add_argument("--widths", type=int, nargs="+", default=list(DEFAULT_WIDTHS),
                   help="finite widths (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="networks per width (default: %(default)s)")
    add_out(p, help="output directory (default: ./adequation-PRESET)")
    p.add_argument("--backend", default=None, help="kernel backend of the infinite-width references")
    p.add_argument("--nx", type=int, default=100, help="grid points per axis (default: %(default)s)")
    p.add_argument("--t", type=float, default=None, help="training time (default: the preset's, 1)")
    p.add_argument("--lr", type=float, default=None,
                   help="gradient-descent step (default: the preset's, 0.1)")
    p.add_argument("--picture-width", type=int, default=None,
                   help="width shown in the 2-D heat maps (default: the preset's, 512)")
    add_cluster_options(p, workers_help="train the networks on a local Dask cluster of K processes")
    add_quiet(p)


def _vector_field_cli(args) -> int:
    """arrows -grad c_f on a grid for one point vs the target (1, 0) (the paper's Figs. 6-7)

    For each grid point x (x0 in [-2, 2], x1 in [0, 2]) train the infinite-width discriminator on fake
    {x} vs real {(1, 0)} and draw the force -grad c_f(x); writes a PNG and the arrays (.npz).
    """
    overrides = {}
    if args.backend is not None:
        overrides["backend"] = args.backend
    if args.t is not None:
        overrides["t"] = args.t
    out = Path(args.out) if args.out else Path("vector-field")
    field = vector_field(args.loss, args.arch, nx=args.nx, ny=args.ny, dim=args.dim, out=out, workers=args.workers,
                         scheduler=args.scheduler, progress=not args.quiet, **overrides)
    print(save_vector_field(field, out, f"vector_field-{args.loss}-{args.arch}"))
    return 0


def add_vector_field_command(subparsers) -> None:
    """Register ``ntkgan vector-field``."""
    p = add_command(subparsers, "vector-field", _vector_field_cli)
    p.add_argument("--loss", default="inf_ipm", help="infinite-width loss preset (default: %(default)s)")
    p.add_argument("--arch", default="relu", help="architecture preset (default: %(default)s)")
    add_out(p, default="vector-field", help="output directory (default: ./%(default)s)")
    p.add_argument("--nx", type=int, default=15, help="grid points along x0 (default: %(default)s)")
    p.add_argument("--ny", type=int, default=15, help="grid points along x1 (default: %(default)s)")
    p.add_argument("--dim", type=int, default=2, help="dimension, zero-padded (default: %(default)s)")
    p.add_argument("--t", type=float, default=None, help="training time T (default: the loss preset's)")
    p.add_argument("--backend", default=None,
                   help="kernel backend, rust or jax (default: $NTKGAN_BACKEND, else rust)")
    add_cluster_options(p, workers_help="compute the grid rows on a local Dask cluster of K processes")
    add_quiet(p)
