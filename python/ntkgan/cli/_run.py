"""``ntkgan run``: one experiment (:func:`ntkgan.runner.run`), or the resume of one."""

from __future__ import annotations

import sys
from pathlib import Path

from ntkgan._resume import read_json
from ntkgan.cli._options import add_command, add_quiet, parse_set_options
from ntkgan.runner import default_out_dir, run

__all__ = ["RUN_DEFAULTS", "add_run_command", "config_from_args"]

#: ``ntkgan run`` defaults of the preset options (None in the parser, so that a resume can tell given ones).
RUN_DEFAULTS = {"loss": "inf_ipm", "arch": "relu", "data": "eight_gaussians"}


def config_from_args(args):
    """The :class:`~ntkgan.presets.Config` of parsed ``ntkgan run`` arguments (presets, then options)."""
    from ntkgan.presets import make_config

    overrides = {}
    for key in ("steps", "seed", "backend", "log_every", "checkpoint_every"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    overrides.update(parse_set_options(args.set))
    names = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in RUN_DEFAULTS.items()}
    return make_config(**names, **overrides)


def _resume_config(args):
    """The configuration of ``ntkgan run --resume DIR [options]``: the run's own, with ``--steps`` and
    ``--checkpoint-every`` applied; any other option given must equal the run's (else one line naming
    the keys)."""
    from ntkgan._resume import describe_changes
    from ntkgan.presets import Config

    out = Path(args.resume)
    if not (out / "config.json").is_file():
        raise ValueError(f"resume: {str(out)!r} holds no run (no config.json)"
                         if out.is_dir() else f"resume: {str(out)!r} is not a run directory")
    saved = read_json(out / "config.json", "config file")
    given = {k: getattr(args, k) for k in ("loss", "arch", "data", "seed", "backend", "log_every")
             if getattr(args, k) is not None}
    given.update(parse_set_options(args.set))
    allowed = {"steps", "checkpoint_every", "backend"}
    changes = {k: v for k, v in given.items() if k not in allowed and saved.get(k, "<unset>") != v}
    if changes:
        old = {k: saved.get(k, "<unset>") for k in changes}
        raise ValueError(f"resume: {describe_changes(old, changes)}: a run's configuration is fixed when it "
                         "starts; only --steps, --checkpoint-every, --snapshot-every, --backend and --quiet may "
                         "change")
    if args.out is not None and Path(args.out) != out:
        raise ValueError(f"resume: --out {args.out!r} and --resume {args.resume!r} name different directories")
    updates = {k: v for k, v in (("steps", args.steps), ("checkpoint_every", args.checkpoint_every),
                                 ("backend", args.backend)) if v is not None}
    updates.update({k: v for k, v in given.items() if k in allowed})
    try:
        return Config.from_dict(dict(saved, **updates))
    except ValueError as exc:
        raise ValueError(f"resume: {str(out / 'config.json')!r}: {exc}") from None


def _run_cli(args) -> int:
    """train: move particles toward a target under an (infinite-width) discriminator

    Run one experiment and write its run directory: config.json/yaml, metrics.csv, checkpoints, PNG
    snapshots in img/, animation.gif and metrics.png, then a COMPLETE marker. Presets name the loss,
    architecture and data; explicit options override them.
    """
    try:
        return _run_cli_checked(args)
    except FloatingPointError as exc:  # a diverged flow: the run directory says "failed"
        print(f"ntkgan run: the run failed: {exc} (try a smaller --set eta=...)", file=sys.stderr)
        return 1


def _run_cli_checked(args) -> int:
    if args.resume is not None:
        if args.overwrite:
            raise ValueError("--resume continues a run, --overwrite replaces one: give one of them")
        out = Path(args.resume)
        result = run(_resume_config(args), out, resume=True, progress=not args.quiet,
                     checkpoint_every=args.checkpoint_every, snapshot_every=args.snapshot_every,
                     verbose=True)
    else:
        config = config_from_args(args)
        out = Path(args.out) if args.out else default_out_dir(config)
        result = run(config, out, progress=not args.quiet, snapshot_every=args.snapshot_every,
                     overwrite=args.overwrite)
    last = result.metrics[-1] if result.metrics else {}
    sink = last.get("sinkhorn", float("nan"))
    print(f"{result.out_dir}: {result.step} steps in {result.wall_time:.1f} s, final Sinkhorn {sink:.6g}")
    return 0


def add_run_command(subparsers) -> None:
    """Register ``ntkgan run``."""
    p = add_command(subparsers, "run", _run_cli)
    p.add_argument("--loss", default=None, help=f"loss preset (default: {RUN_DEFAULTS['loss']})")
    p.add_argument("--arch", default=None, help=f"architecture preset (default: {RUN_DEFAULTS['arch']})")
    p.add_argument("--data", default=None,
                   help=f"data preset or dataset name, e.g. image:PATH (default: {RUN_DEFAULTS['data']})")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: the preset's, 50000)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    p.add_argument("--backend", default=None,
                   help="rust, or jax: whole steps compiled on JAX's default device, the GPU when there is one "
                        "(default: $NTKGAN_BACKEND or rust; may change on --resume)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<loss>-<arch>-<data>-seed<S>)")
    p.add_argument("--log-every", dest="log_every", type=int, default=None,
                   help="steps between metric rows (default: the preset's, 100)")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None,
                   help="steps between checkpoints (default: the preset's, 1000; also one after every minute "
                        "of work and one at the end)")
    p.add_argument("--snapshot-every", dest="snapshot_every", type=int, default=None,
                   help="steps between PNG snapshots (default: at most 40 per run, on metric rows: 21 for "
                        "2000 steps logged every 100; 0 = none)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field (repeatable), e.g. --set eta=500 --set n_source=100")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its newest checkpoint; its configuration is fixed: only "
                        "--steps (not below the steps done), --checkpoint-every, --snapshot-every, --backend "
                        "and --quiet may change, any other option given must equal the run's")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    add_quiet(p)
