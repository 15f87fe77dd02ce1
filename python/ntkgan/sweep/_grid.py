"""The grid of a sweep: loss × architecture × dataset × seed, expanded into run configurations.

:meth:`Grid.expand` turns each setting into ``make_config(loss, arch, data, seed=s, steps=N, **overrides)``.
A combination that :func:`~ntkgan.presets.make_config` rejects (a finite-width loss with the ``rbf`` NNGP
kernel, say) becomes a :class:`Skipped` entry carrying the reason, not an error; names that are not presets
or datasets, bad seeds and bad overrides are errors (``ValueError``) before anything runs.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from pathlib import Path

from ntkgan._validation import check_int, check_ints

__all__ = ["RESERVED_OVERRIDES", "Grid", "Setting", "Skipped"]

#: options that the grid itself sets (``seed`` from ``seeds``, ``steps`` from the sweep's ``steps``)
RESERVED_OVERRIDES = ("loss", "arch", "data", "seed", "steps")


def _names(value, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    try:
        names = tuple(value)
    except TypeError:
        raise ValueError(f"{what} must be a name or a list of names, got {value!r}") from None
    names = tuple(n.strip() if isinstance(n, str) else n for n in names)
    if not names:
        raise ValueError(f"{what} needs at least one name")
    for n in names:
        if not isinstance(n, str) or not n:
            raise ValueError(f"{what} names must be non-empty strings, got {n!r} in {list(value)!r}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{what} lists {twice} more than once")
    return names


def _check_data(name: str) -> None:
    from ntkgan.datasets import DATASETS, PREFIXES
    from ntkgan.presets import DATA_PRESETS

    prefix = name.partition(":")[0]
    if name not in DATA_PRESETS and name not in DATASETS and not (":" in name and prefix in PREFIXES):
        raise ValueError(f"unknown data preset or dataset {name!r}; presets: {', '.join(DATA_PRESETS)}; "
                         f"datasets: {', '.join(DATASETS)}; parametrised: "
                         f"{', '.join(p + ':...' for p in PREFIXES)}")


def _seeds(value) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"seeds must be >= 1 (the number of seeds, run as 0, 1, ..., seeds-1), "
                             f"got {value!r}")
        return tuple(range(int(value)))
    return check_ints(value, "seeds", 0, noun="seed")


@dataclass(frozen=True)
class _Cell:
    """A cell of the grid: the preset names ``loss, arch, data``."""

    loss: str
    arch: str
    data: str

    @property
    def key(self) -> tuple[str, str, str]:
        """``(loss, arch, data)``: the row of the results table this cell belongs to."""
        return (self.loss, self.arch, self.data)


@dataclass(frozen=True)
class Setting(_Cell):
    """One run of a sweep: a valid configuration and where its run directory goes.

    Attributes
    ----------
    loss, arch, data : str
        The preset names.
    seed : int
    config : Config
        ``make_config(loss, arch, data, seed=seed, steps=..., **overrides)``.
    """

    seed: int
    config: object

    @property
    def name(self) -> str:
        """``<loss>-<arch>-<data>-seed<S>`` (:func:`ntkgan.runner.default_out_dir`)."""
        from ntkgan.runner import default_out_dir

        return default_out_dir(self.config).name

    def run_dir(self, out_dir) -> Path:
        """``out_dir/runs/<name>``."""
        return Path(out_dir) / "runs" / self.name


@dataclass(frozen=True)
class Skipped(_Cell):
    """A (loss, arch, data) combination that :func:`~ntkgan.presets.make_config` rejects, with the reason."""

    reason: str

    def message(self) -> str:
        return f"skipping {self.loss} × {self.arch} × {self.data}: {self.reason}"


@dataclass(frozen=True)
class Grid:
    """Loss × architecture × dataset × seed.

    Each axis takes a list of names, or one string with commas (``"relu,rbf"``).  Names are checked
    against :data:`~ntkgan.presets.LOSS_PRESETS`, :data:`~ntkgan.presets.ARCH_PRESETS` and the data presets
    and datasets when the grid is built.

    Parameters
    ----------
    loss : str or sequence of str
        Loss presets (``inf_ipm``, ``inf_lsgan``, ``ipm_reset``, ...).
    arch : str or sequence of str
        Architecture presets (``relu``, ``relu_nobias``, ``rbf``, ...).
    data : str or sequence of str
        Data presets or dataset names (``eight_gaussians``, ``density``, ``ab``, ``gmm:4``, ...).
    seeds : int or sequence of int, default=1
        A count ``n`` (seeds ``0 .. n-1``) or explicit seeds.

    Examples
    --------
    >>> g = Grid(loss="inf_ipm,ipm_reset", arch=["relu", "rbf"], data="eight_gaussians", seeds=2)
    >>> g.seeds, len(g)
    ((0, 1), 8)
    >>> runs, skipped = g.expand(steps=10)
    >>> len(runs), [s.key for s in skipped]
    (6, [('ipm_reset', 'rbf', 'eight_gaussians')])
    """

    loss: tuple = ("inf_ipm",)
    arch: tuple = ("relu",)
    data: tuple = ("eight_gaussians",)
    seeds: int | tuple = 1

    def __post_init__(self):
        from ntkgan.presets import ARCH_PRESETS, LOSS_PRESETS

        loss, arch, data = _names(self.loss, "loss"), _names(self.arch, "arch"), _names(self.data, "data")
        for name in loss:
            if name not in LOSS_PRESETS:
                raise ValueError(f"unknown loss preset {name!r}; known: {', '.join(LOSS_PRESETS)}")
        for name in arch:
            if name not in ARCH_PRESETS:
                raise ValueError(f"unknown arch preset {name!r}; known: {', '.join(ARCH_PRESETS)}")
        for name in data:
            _check_data(name)
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "arch", arch)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "seeds", _seeds(self.seeds))

    @classmethod
    def paper(cls, seeds=3) -> Grid:
        """The grid of the paper's table: three losses × three architectures × three 2-D datasets."""
        return cls(loss=("inf_ipm", "inf_lsgan", "ipm_reset"), arch=("relu", "relu_nobias", "rbf"),
                   data=("eight_gaussians", "density", "ab"), seeds=seeds)

    def __len__(self) -> int:
        return len(self.loss) * len(self.arch) * len(self.data) * len(self.seeds)

    def table_keys(self) -> list[tuple[str, str, str]]:
        """Every ``(loss, arch, data)`` in table order (loss, then data, then arch)."""
        return [(lo, ar, da) for lo in self.loss for da in self.data for ar in self.arch]

    def to_dict(self) -> dict:
        return {"loss": list(self.loss), "arch": list(self.arch), "data": list(self.data),
                "seeds": list(self.seeds)}

    def expand(self, *, steps: int | None = None, overrides: dict | None = None
               ) -> tuple[list[Setting], list[Skipped]]:
        """The valid runs, in table order then by seed, and the rejected combinations with their reasons.

        Parameters
        ----------
        steps : int, optional
            Generator steps of every run (>= 0); None keeps the presets' (50 000).
        overrides : dict, optional
            Config options applied to every run after the presets (``{"n_source": 100}``).

        Raises
        ------
        ValueError
            ``steps`` < 0; an override that is not a :class:`~ntkgan.presets.Config` option, or one the grid
            sets (``loss``, ``arch``, ``data``, ``seed``, ``steps``); every combination rejected (the
            reasons are listed); two runs whose directory names collide.
        """
        from ntkgan.presets import Config, make_config

        steps = None if steps is None else check_int(steps, "steps", 0)
        overrides = dict(overrides or {})
        reserved = sorted(set(overrides) & set(RESERVED_OVERRIDES))
        if reserved:
            raise ValueError(f"overrides may not set {reserved}: the grid sets them (use the loss/arch/data "
                             "lists, seeds and steps)")
        fields = [f.name for f in dataclasses.fields(Config)]
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} in overrides; known options: {', '.join(fields)}")
        if steps is not None:
            overrides["steps"] = int(steps)
        runs, skipped = [], []
        for loss, arch, data in self.table_keys():
            reasons = []
            for seed in self.seeds:
                try:
                    config = make_config(loss, arch, data, seed=seed, **overrides)
                except ValueError as exc:
                    reasons.append(str(exc))
                    continue
                runs.append(Setting(loss, arch, data, seed, config))
            for reason in dict.fromkeys(reasons):
                skipped.append(Skipped(loss, arch, data, reason))
        if not runs:
            detail = "; ".join(s.message() for s in skipped)
            raise ValueError(f"no valid run in the grid: {detail}")
        names: dict[str, Setting] = {}
        for s in runs:
            other = names.setdefault(s.name, s)
            if other is not s:
                raise ValueError(f"runs {other.key + (other.seed,)} and {s.key + (s.seed,)} would share the "
                                 f"run directory runs/{s.name}; rename one of the datasets")
        return runs, skipped
