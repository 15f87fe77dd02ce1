"""The ``ntkgan`` command line.

Each subcommand lives in the module that does the work, which exposes ``add_cli(subparsers)``
registering its parser with ``set_defaults(func=...)``; this file only assembles them (modules with heavy
imports are imported when the command line is built, but their heavy dependencies only when a command runs).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser"]

#: modules contributing subcommands (each has ``add_cli(subparsers)``)
COMMAND_MODULES = (
    "ntkgan._adequation",
    "ntkgan.runner",
    "ntkgan.vector_field",
    "ntkgan.sweep",
    "ntkgan.studies",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ntkgan",
        description="GAN training through the Neural Tangent Kernel (exact infinite-width discriminators).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # a module not written yet or a missing optional dependency
            if exc.name == name:
                continue
            raise
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ntkgan import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"ntkgan {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
