"""Command-line pieces shared by several commands: option groups defined once, and ``--set`` parsing.

The commands' parsers add these groups instead of repeating them, so ``--workers``/``--scheduler`` (the Dask
options), ``--out`` and ``--quiet`` read the same wherever they appear.
"""

from __future__ import annotations

import inspect

__all__ = ["add_cluster_options", "add_command", "add_out", "add_quiet", "add_study_options",
           "add_values_option", "parse_set_options",
           "parse_value"]


def add_command(subparsers, name: str, run, **fields):
    """Register ``ntkgan NAME``, which calls ``run(args)``; returns its parser for the command's options.

    The command documents itself in ``run``'s docstring: the first line is its one-line help, the rest its
    description (``str.format``-ed with ``fields`` when given)."""
    doc = inspect.cleandoc(run.__doc__ or "")
    summary, _, rest = doc.partition("\n")
    description = " ".join(rest.split())
    if fields:
        description = description.format(**fields)
    parser = subparsers.add_parser(name, help=summary or None, description=description or None)
    parser.set_defaults(func=run)
    return parser


def add_cluster_options(parser, *, serial: bool = False, workers_help: str | None = None) -> None:
    """``--workers K`` (a local Dask cluster) or ``--scheduler ADDRESS`` (an existing one), mutually
    exclusive; with ``serial``, also ``--serial`` (run in this process)."""
    group = parser.add_mutually_exclusive_group()
    if serial:
        group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                "(from dask-jobqueue)")
        group.add_argument("--workers", type=int, default=None,
                           help=workers_help or "processes of the local Dask cluster (default: one per core)")
        group.add_argument("--serial", action="store_true", help="run in this process, one run after another")
    else:
        group.add_argument("--workers", type=int, default=None,
                           help=workers_help or "local Dask cluster with K worker processes")
        group.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")


def add_study_options(parser) -> None:
    """What every study takes: the Dask options, ``--out`` (required) and ``--quiet``."""
    add_cluster_options(parser)
    add_out(parser, required=True)
    add_quiet(parser)


def add_values_option(parser, flag: str, what: str, defaults) -> None:
    """``FLAG v1,v2,...``: a study's grid of values (default None: the study's ``defaults``)."""
    shown = ",".join(f"{v:g}" for v in defaults)
    parser.add_argument(flag, default=None, help=f"comma-separated {what} (default: {shown})")


def add_out(parser, *, default: str | None = None, required: bool = False, help: str = "output directory") -> None:
    """``--out DIR``."""
    parser.add_argument("--out", default=default, required=required, help=help)


def add_quiet(parser) -> None:
    """``--quiet``: no progress bar."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_value(text: str):
    """A ``--set`` value as YAML reads it (``500`` -> 500, ``1e-3`` -> 0.001, ``true`` -> True,
    ``[1, 2]`` -> a list), else the text itself."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_set_options(items) -> dict:
    """``["eta=500", "n-source=100"]`` -> ``{"eta": 500, "n_source": 100}``; ValueError on an item
    without ``=``."""
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip().replace("-", "_")] = parse_value(value)
    return overrides
