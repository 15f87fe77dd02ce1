"""The ``ntkgan`` command line.

Each subcommand lives in the module that does the work, which exposes ``add_cli(subparsers)``
registering its parser with ``set_defaults(func=...)``; this file only assembles them (modules with heavy
imports are imported when the command line is built, but their heavy dependencies only when a command runs).

User mistakes are one line on stderr, ``ntkgan COMMAND: error: ...``, and exit status 2: a ``ValueError``
(bad options, presets, data, paths; every command validates before it works or writes), an ``ImportError``
(an optional extra not installed: the message says what to ``pip install``) or an ``OSError`` (a file
system refusal).  ``--debug`` (on any command) or ``NTKGAN_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``ntkgan run: error: ... (see ntkgan run --help)``); the
    subcommands' parsers are of this class too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ntkgan",
        description="GAN training through the Neural Tangent Kernel (exact infinite-width discriminators).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also NTKGAN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # a module not written yet or a missing optional dependency
            if exc.name == name:
                continue
            raise
        module.add_cli(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error (also NTKGAN_DEBUG=1)")
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
    debug = getattr(args, "debug", False) or os.environ.get("NTKGAN_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except (ValueError, ImportError, OSError) as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in message:
            message = f"{message}: {exc.filename}"
        print(f"ntkgan {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
