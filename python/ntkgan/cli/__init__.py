"""The ``ntkgan`` command line: every command's parser is built in this package, and nowhere else.

- ``ntkgan run`` (:mod:`ntkgan.cli._run`): one experiment, or its resume.
- ``ntkgan adequation``, ``ntkgan vector-field`` (:mod:`ntkgan.cli._figures`): the paper's figures.
- ``ntkgan sweep`` (:mod:`ntkgan.cli._sweep`): a grid of runs, serially or on Dask.
- ``ntkgan collapse``, ``ntkgan damping`` (:mod:`ntkgan.cli._studies`): the effective-dynamics studies.

The computation modules know nothing of argparse; option groups used by several commands (the Dask
options, ``--out``, ``--quiet``, ``--set``) are defined once in :mod:`ntkgan.cli._options`.  Heavy
dependencies (matplotlib, dask, JAX) are imported when a command runs, not when the parser is built.

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

__all__ = ["build_parser", "main"]

#: the commands, in the order ``ntkgan --help`` lists them: (module of ``cli``, its registering function)
COMMANDS = (
    ("_figures", "add_adequation_command"),
    ("_run", "add_run_command"),
    ("_figures", "add_vector_field_command"),
    ("_sweep", "add_sweep_command"),
    ("_studies", "add_collapse_command"),
    ("_studies", "add_damping_command"),
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
    for module, register in COMMANDS:
        getattr(importlib.import_module(f"ntkgan.cli.{module}"), register)(sub)
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
