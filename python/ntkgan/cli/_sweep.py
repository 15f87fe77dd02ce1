"""``ntkgan sweep``: the command line of :func:`ntkgan.sweep.sweep`."""

from __future__ import annotations

import sys

from ntkgan.cli._options import add_cluster_options, add_command, add_out, add_quiet, parse_set_options

__all__ = ["add_sweep_command"]

_PAPER = {"loss": "inf_ipm,inf_lsgan,ipm_reset", "arch": "relu,relu_nobias,rbf",
          "data": "eight_gaussians,density,ab"}


def _sweep_cli(args) -> int:
    """run a grid loss × arch × data × seed on a local or existing Dask cluster

    Run every combination of loss, architecture and data presets for several seeds, each in its own run
    directory OUT/runs/<loss>-<arch>-<data>-seed<S>, on a local Dask cluster (one single-threaded
    process per core), an existing scheduler (--scheduler) or serially (--serial). Combinations that are
    not valid are skipped with the reason. Writes OUT/results.csv, results.md (the paper's table
    layout), results.png and sweep.json. Running the same command again skips finished runs and resumes
    interrupted ones. Defaults: the paper's grid.
    """
    from ntkgan.sweep._api import sweep
    from ntkgan.sweep._grid import Grid

    grid = Grid(loss=args.loss, arch=args.arch, data=args.data, seeds=args.seeds)
    try:
        result = sweep(grid, args.out, steps=args.steps, workers=args.workers, scheduler=args.scheduler,
                       serial=args.serial, overrides=parse_set_options(args.set),
                       checkpoint_every=args.checkpoint_every, snapshot_every=args.snapshot_every,
                       retries=args.retries, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"ntkgan sweep: interrupted; finished runs are kept in {args.out}/runs and the table shows "
              "them. Run the same command again to finish the others.", file=sys.stderr)
        return 130
    if result.failed:
        print(f"ntkgan sweep: {result.failed} run(s) failed; their errors are in {result.paths['csv']}",
              file=sys.stderr)
        return 1
    return 0


def add_sweep_command(subparsers) -> None:
    """Register ``ntkgan sweep``."""
    p = add_command(subparsers, "sweep", _sweep_cli)
    p.add_argument("--loss", default=_PAPER["loss"],
                   help="loss presets, comma-separated (default: %(default)s)")
    p.add_argument("--arch", default=_PAPER["arch"],
                   help="architecture presets, comma-separated (default: %(default)s)")
    p.add_argument("--data", default=_PAPER["data"],
                   help="data presets or dataset names, comma-separated (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3,
                   help="number of seeds, run as 0..N-1 (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None,
                   help="generator steps of every run (default: the presets', 50000)")
    add_out(p, required=True, help="sweep directory")
    add_cluster_options(p, serial=True)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field in every run (repeatable), e.g. --set n_source=100")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None,
                   help="steps between checkpoints of a run (default: steps/4; 0: at the end only)")
    p.add_argument("--snapshot-every", dest="snapshot_every", type=int, default=0,
                   help="steps between PNG snapshots of a run (default: 0, none)")
    p.add_argument("--retries", type=int, default=2,
                   help="Dask retries of a task whose error is not the run's own (default: %(default)s)")
    add_quiet(p)
