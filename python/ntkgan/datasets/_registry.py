"""The registry of dataset names and ``load``, the one public door that parses a name and validates."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

from ntkgan.datasets._base import Dataset
from ntkgan.datasets._images import ab, density, image_pair, two_clouds_2d
from ntkgan.datasets._real import digits, mnist
from ntkgan.datasets._toy import (
    eight_gaussians,
    gaussian_mixture,
    modes_1d,
    modes_1d_overlap,
    two_couples_2d,
    two_singles_1d,
)

__all__ = ["DATASETS", "PREFIXES", "load", "names"]

# Names -> builders.  Every builder takes keyword arguments n_source, n_target, seed, dim (plus its own
# options) and returns a Dataset.  Keep the module docstring of ntkgan.datasets in step with this table.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "eight_gaussians": eight_gaussians,
    "gaussian_mixture": gaussian_mixture,
    "density": density,
    "ab": ab,
    "two_clouds_2d": two_clouds_2d,
    "modes_1d": modes_1d,
    "modes_1d_overlap": modes_1d_overlap,
    "two_couples_2d": two_couples_2d,
    "two_singles_1d": two_singles_1d,
    "digits": digits,
}

_COMMON = ("n_source", "n_target", "dim", "seed")

# Parametrised names "prefix:ARG" and what ARG is.
PREFIXES = {
    "image": "image:TARGET_PATH or image:SOURCE_PATH,TARGET_PATH (no source -> N(0, I_2))",
    "mnist": "mnist:PATH to an MNIST IDX file (.gz allowed) or .npz",
    "gmm": "gmm:K, a K-mode gaussian_mixture",
}


def names() -> list[str]:
    """The registered names followed by the parametrised forms (``image:PATH``, ``mnist:PATH``, ``gmm:K``)."""
    return list(DATASETS) + [f"{p}:..." for p in PREFIXES]


def _unknown(name) -> ValueError:
    known = ", ".join(DATASETS)
    forms = "; ".join(PREFIXES.values())
    return ValueError(f"unknown dataset {name!r}; known names: {known}; or {forms}")


def _split_image_arg(arg: str):
    """``TARGET`` or ``SOURCE,TARGET``: a comma splits only when the whole string is not a file."""
    if os.path.isfile(os.path.expanduser(arg)) or "," not in arg:
        return None, arg
    source, target = arg.rsplit(",", 1)
    return source, target


def _resolve(name: str):
    """``(builder, positional args, fixed keyword args)`` for a dataset name."""
    if name in DATASETS:
        return DATASETS[name], (), {}
    prefix, sep, arg = name.partition(":")
    if not sep or prefix not in PREFIXES:
        raise _unknown(name)
    if not arg:
        raise ValueError(f"dataset {name!r} needs an argument after ':' ({PREFIXES[prefix]})")
    if prefix == "image":
        source, target = _split_image_arg(arg)
        return image_pair, (source, target), {"name": name}
    if prefix == "mnist":
        return mnist, (arg,), {}
    try:
        k = int(arg)
    except ValueError:
        raise ValueError(f"dataset {name!r}: K in gmm:K must be an integer, got {arg!r}") from None
    return gaussian_mixture, (), {"k": k}


def load(name: str, *, n_source: int | None = None, n_target: int | None = None, seed=0,
         dim: int | None = None, **options) -> Dataset:
    """Build the dataset called ``name``: a source sample (n, d) and a target sample (m, d).

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`, or ``image:PATH``, ``image:SOURCE,TARGET``, ``mnist:PATH``, ``gmm:K``.
    n_source, n_target : int or None
        Sample sizes; ``None`` keeps the dataset's default (500 for the 2-D sets, 30 for
        ``two_clouds_2d``, 1024 for digits/MNIST, the set's size for fixed sets).
    seed : int or numpy.random.Generator, default=0
        Source and target are drawn from two independent streams of ``SeedSequence(seed)``.
    dim : int or None
        The dimension; only ``gaussian_mixture``/``gmm:K`` accept a free value, the others accept ``None``
        or their own dimension.
    **options
        Passed to the builder (e.g. ``std=``, ``layout=`` for mixtures, ``loc=``, ``scale=`` for images,
        ``pad=`` for MNIST).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        On an unknown name (the message lists the known ones), a missing or unreadable file, an option the
        builder does not take, or an invalid size, dimension or seed.

    Examples
    --------
    >>> from ntkgan import datasets
    >>> ds = datasets.load("eight_gaussians", seed=1)
    >>> ds.source.shape, ds.target.shape, ds.modes.shape
    ((500, 2), (500, 2), (8, 2))
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {name!r}")
    builder, args, fixed = _resolve(name.strip())
    sizes = (("n_source", n_source), ("n_target", n_target), ("dim", dim))
    kwargs = {k: v for k, v in sizes if v is not None}
    kwargs["seed"] = seed
    params = inspect.signature(builder).parameters
    accepted = sorted(
        p for p, spec in params.items()
        if spec.kind == inspect.Parameter.KEYWORD_ONLY and p not in fixed and p not in _COMMON
    )
    for key in options:
        if key not in accepted:
            raise ValueError(f"dataset {name!r} takes no option {key!r}; its options are {accepted}")
    try:
        return builder(*args, **fixed, **kwargs, **options)
    except ValueError as exc:
        if str(exc).startswith(("dataset ", "image ", "mnist ")):
            raise
        raise ValueError(f"dataset {name!r}: {exc}") from None
