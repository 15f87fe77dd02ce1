r"""Infinite-width adequation: how close real networks come to the NTK discriminator (the paper's Fig. 1).

A discriminator of width :math:`w` (an antisymmetric MLP, :math:`f_0 \equiv 0`, NTK parameterization) is
trained by full-batch gradient descent with step :math:`\eta` for :math:`s = \mathrm{round}(t/\eta)`
steps on the fixed samples of a preset, and its generator cost :math:`c_{f_w}(x) = c(f_w(x))` is compared
on a grid :math:`G` with the two infinite-width references of ``ntkgan.train_discriminator(width=None)``:

- ``"gd"``: kernel gradient descent :math:`f_{k+1} = f_k - \eta\, k(\cdot, Z)\, \nabla_{f(Z)} L(f_k)` for
  the same :math:`s` steps, the exact :math:`w \to \infty` limit of the finite network's steps;
- ``"flow"``: the continuous-time kernel gradient flow up to :math:`t` (the paper's ":math:`\infty`" curve),
  which differs from ``"gd"`` by :math:`O(\eta)`.

For each width :math:`w` and seed :math:`r` (a ``numpy.random.Generator`` seeded by ``(r, w)``) the errors
are

.. math::
    e_{\sup}(w, r) = \max_{x \in G} |c_{f_{w,r}}(x) - c_{f_\infty}(x)|, \qquad
    e_{\mathrm{rms}}(w, r) = \Bigl(\frac1{|G|}\sum_{x \in G} (c_{f_{w,r}}(x) - c_{f_\infty}(x))^2\Bigr)^{1/2},

reported as mean :math:`\pm` standard deviation over seeds, with the least-squares slope of
:math:`\log \bar e` against :math:`\log w`.  NTK theory (the fluctuations of the empirical NTK and of the
network around its linearisation are :math:`O(w^{-1/2})`) predicts a slope of about :math:`-1/2` against
``"gd"``; against ``"flow"`` the error levels off at the gap between the two references.

Presets (3 hidden ReLU layers, :math:`\sigma_w = \sigma_b = 1`, NTK parameterization, :math:`\eta = 0.1`,
:math:`t = 1`):

================= ==================== ====== =====================================================
preset            data                 loss   picture
================= ==================== ====== =====================================================
``ipm_relu``      ``modes_1d_overlap`` ipm    :math:`c_f = -f` on ``linspace(-3, 3, 100)``
``lsgan_relu``    ``modes_1d``         lsgan  :math:`c_f = f^2` on ``linspace(-3, 3, 100)``
``lsgan_relu_2d`` ``two_clouds_2d``    lsgan  heat maps of :math:`c_f` (width 512 vs :math:`\infty`)
                                              on a 100 x 100 grid, arrows :math:`-\nabla c_f` at
                                              the fake points
================= ==================== ====== =====================================================

Command line: ``ntkgan adequation --preset lsgan_relu [--widths 64 128 ...] [--seeds 3] [--out DIR]``.

References
----------
.. [1] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022, Fig. 1.
.. [2] Jacot, Gabriel, Hongler. Neural Tangent Kernel. NeurIPS 2018.
.. [3] Lee et al. Wide neural networks of any depth evolve as linear models under gradient descent.
       NeurIPS 2019.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkgan._io import atomic_write_text, write_npz
from ntkgan._validation import check_int, check_ints, check_real
from ntkgan.arch import Mlp
from ntkgan.studies._common import check_out, cluster_args, map_tasks, run_tasks

__all__ = ["PRESETS", "AdequationPreset", "AdequationResult", "adequation"]

REFERENCES = ("gd", "flow")
METRICS = ("sup", "rms")
DEFAULT_WIDTHS = (64, 128, 256, 512, 1024)

_PAPER_ARCH = Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0, parameterization="ntk")


@dataclass(frozen=True)
class AdequationPreset:
    """One adequation experiment: data, loss, architecture, training time and grid.

    Attributes
    ----------
    name : str
    dataset : str
        A name for :func:`ntkgan.datasets.load` (source = fake, target = real).
    loss : str
        A key of :data:`ntkgan.discriminator.LOSSES`.
    arch : Mlp
        The discriminator (its ``width`` is replaced by each studied width).
    t : float
        Training time; ``round(t / lr)`` gradient-descent steps.
    lr : float
        Gradient-descent step.
    grid_range : tuple of float or None
        1-D: the grid is ``linspace(lo, hi, nx)``.  None: the data's bounding box widened by
        ``grid_margin`` times its largest side on each side.
    grid_margin : float
    picture_width : int or None
        Width of the finite network shown in the 2-D heat maps (None: no heat-map picture).
    description : str
    """

    name: str
    dataset: str
    loss: str
    arch: Mlp = _PAPER_ARCH
    t: float = 1.0
    lr: float = 0.1
    grid_range: tuple[float, float] | None = None
    grid_margin: float = 0.15
    picture_width: int | None = None
    description: str = ""


#: The paper's adequation presets (toolkit ``ade1d_config`` / ``ade2d_config``).
PRESETS: dict[str, AdequationPreset] = {
    p.name: p
    for p in (
        AdequationPreset("ipm_relu", "modes_1d_overlap", "ipm", grid_range=(-3.0, 3.0),
                         description="IPM, 5 fake vs 7 real points on the line (3 real among the fake)"),
        AdequationPreset("lsgan_relu", "modes_1d", "lsgan", grid_range=(-3.0, 3.0),
                         description="LSGAN, 5 fake vs 5 real points on the line"),
        AdequationPreset("lsgan_relu_2d", "two_clouds_2d", "lsgan", picture_width=512,
                         description="LSGAN, two 30-point clouds in the plane (density_a -> density_b)"),
    )
}


# --------------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------------


def _std(a: np.ndarray) -> np.ndarray:
    """Sample standard deviation over the last axis (ddof = 1); NaN for one sample."""
    if a.shape[-1] < 2:
        return np.full(a.shape[:-1], np.nan)
    return a.std(axis=-1, ddof=1)


def _loglog_slope(widths: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``log values`` against ``log widths`` (NaN if undefined)."""
    if len(widths) < 2 or not np.all(values > 0) or not np.all(np.isfinite(values)):
        return float("nan")
    return float(np.polyfit(np.log(widths), np.log(values), 1)[0])


def _activation_name(act) -> str:
    """``"ReLU"`` for ``ABRelu(0, 1)``, else the activation's repr."""
    from ntkgan.arch import ABRelu

    if isinstance(act, ABRelu) and (act.a, act.b) == (0.0, 1.0):
        return "ReLU"
    return repr(act)


def _fmt(v: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.{digits}g}"


@dataclass
class AdequationResult:
    r"""Arrays, errors and table of one adequation study (returned by :func:`adequation`).

    Attributes
    ----------
    preset : AdequationPreset
    fake : ndarray of shape (N, d)
    real : ndarray of shape (M, d)
    grid : ndarray of shape (G, d)
        Evaluation points; in 2-D the rows of ``meshgrid(xs, ys)`` with x varying fastest.
    grid_axes : tuple of ndarray
        ``(xs,)`` in 1-D, ``(xs, ys)`` in 2-D; ``grid_shape = (len(ys), len(xs))`` in 2-D.
    widths : ndarray of shape (W,)
    seeds : int
        Seeds ``0 .. seeds - 1`` per width; the initialisation of (width w, seed r) draws from
        ``numpy.random.default_rng([r, w])``.
    steps : int
        Gradient-descent steps, ``round(t / lr)``.
    f_finite, cost_finite : ndarray of shape (W, seeds, G)
        :math:`f_{w,r}(x)` and :math:`c_{f_{w,r}}(x)` on the grid.
    f_inf, cost_inf : dict of ndarray of shape (G,)
        The infinite-width references ``"gd"`` and ``"flow"``.
    errors : dict
        ``errors[ref][metric]`` of shape (W, seeds), ``ref`` in ``("gd", "flow")``, ``metric`` in
        ``("sup", "rms")``.
    slopes : dict
        ``slopes[ref][metric]``: log-log slope of the seed-mean error against width.
    reference_gap : dict
        ``{"sup": ..., "rms": ...}`` of :math:`c_{f_\infty}^{\mathrm{flow}} - c_{f_\infty}^{\mathrm{gd}}`.
    picture : dict or None
        2-D presets: ``width``, ``seed``, ``cost`` (G,) of the finite network shown, ``arrows``
        :math:`-\nabla c` at the fake points (N, d) for ``"finite"``, ``"gd"`` and ``"flow"``.
    elapsed : float
        Seconds spent.
    resumed : int
        Networks read from the records of an earlier, interrupted call (``out/tasks/``) instead of trained.
    paths : dict
        Files written by :meth:`save` (``"png"``, ``"csv"``, ``"md"``, ``"npz"``).
    """

    preset: AdequationPreset
    fake: np.ndarray
    real: np.ndarray
    grid: np.ndarray
    grid_axes: tuple
    widths: np.ndarray
    seeds: int
    steps: int
    f_finite: np.ndarray
    cost_finite: np.ndarray
    f_inf: dict
    cost_inf: dict
    errors: dict
    slopes: dict
    reference_gap: dict
    picture: dict | None = None
    elapsed: float = 0.0
    resumed: int = 0
    paths: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.fake.shape[1])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in reversed(self.grid_axes))

    # -- the table -----------------------------------------------------------------------------------

    COLUMNS = ("width", "n_seeds") + tuple(
        f"{m}_{r}_{s}" for r in REFERENCES for m in METRICS for s in ("mean", "std")
    )

    def table(self) -> list[dict[str, Any]]:
        """Rows ``{width, n_seeds, sup_gd_mean, sup_gd_std, rms_gd_mean, ..., rms_flow_std}``, then a
        last row with ``width = "slope"`` holding the log-log slopes in the ``*_mean`` columns."""
        rows = []
        for i, w in enumerate(self.widths):
            row: dict[str, Any] = {"width": int(w), "n_seeds": self.seeds}
            for r in REFERENCES:
                for m in METRICS:
                    e = self.errors[r][m][i]
                    row[f"{m}_{r}_mean"] = float(e.mean())
                    row[f"{m}_{r}_std"] = float(_std(e[None, :])[0])
            rows.append(row)
        slope_row: dict[str, Any] = {"width": "slope", "n_seeds": ""}
        for r in REFERENCES:
            for m in METRICS:
                slope_row[f"{m}_{r}_mean"] = self.slopes[r][m]
                slope_row[f"{m}_{r}_std"] = ""
        rows.append(slope_row)
        return rows

    def to_csv(self, path=None) -> str:
        """The :meth:`table` as CSV (floats at full precision); written to ``path`` if given."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.table():
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_markdown(self, path=None) -> str:
        """A Markdown report: settings, the error table (mean ± std over seeds) and the slopes."""
        p = self.preset
        arch = p.arch
        lines = [
            f"# Infinite-width adequation: `{p.name}`",
            "",
            f"{p.description}. Data `{p.dataset}`: {self.fake.shape[0]} fake, {self.real.shape[0]} real "
            f"points in d = {self.dim}. Loss `{p.loss}`. Discriminator: {arch.depth} hidden "
            f"{_activation_name(arch.activation)} layers, w_std {arch.w_std:g}, b_std {arch.b_std:g}, "
            f"{arch.parameterization} parameterization, antisymmetric init (f_0 = 0). Gradient descent "
            f"with lr {p.lr:g} for {self.steps} steps (t = {p.t:g}); {self.seeds} seed(s) per width.",
            "",
            f"Error of c_f on a grid of {self.grid.shape[0]} points to the infinite-width c_f: "
            "`sup` = max over the grid, `RMS` = root mean square over the grid; mean ± standard "
            "deviation over seeds. `gd` = kernel gradient descent with the same lr and steps (the exact "
            "infinite-width limit); `flow` = continuous-time kernel flow to t.",
            "",
            "| width | sup (gd) | RMS (gd) | sup (flow) | RMS (flow) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in self.table()[:-1]:
            cells = [
                f"{_fmt(row[f'{m}_{r}_mean'])} ± {_fmt(row[f'{m}_{r}_std'], 2)}"
                for r in REFERENCES for m in METRICS
            ]
            lines.append(f"| {row['width']} | " + " | ".join(cells) + " |")
        slopes = [_fmt(self.slopes[r][m], 3) for r in REFERENCES for m in METRICS]
        lines.append("| log-log slope | " + " | ".join(slopes) + " |")
        scale = float(np.abs(self.cost_inf["gd"]).max())
        lines += [
            "",
            f"NTK theory predicts a slope of about -1/2 against `gd`. Gap between the two references "
            f"(flow - gd): sup {_fmt(self.reference_gap['sup'])}, RMS {_fmt(self.reference_gap['rms'])}; "
            f"scale max |c_f| (gd) = {_fmt(scale)}.",
            "",
        ]
        text = "\n".join(lines)
        if path is not None:
            atomic_write_text(path, text)
        return text

    def save(self, out) -> dict:
        """Write ``<preset>.png``, ``<preset>_errors.csv``, ``<preset>_errors.md`` and ``<preset>.npz`` in
        the directory ``out`` (created if needed); return and record their paths."""
        from ntkgan.plots import plot_adequation

        out = os.fspath(out)
        os.makedirs(out, exist_ok=True)
        stem = os.path.join(out, self.preset.name)
        paths = {"png": stem + ".png", "csv": stem + "_errors.csv", "md": stem + "_errors.md",
                 "npz": stem + ".npz"}
        plot_adequation(self, paths["png"])
        self.to_csv(paths["csv"])
        self.to_markdown(paths["md"])
        arrays = {
            "fake": self.fake, "real": self.real, "grid": self.grid, "widths": self.widths,
            "f_finite": self.f_finite, "cost_finite": self.cost_finite,
        }
        for i, a in enumerate(self.grid_axes):
            arrays[f"grid_axis_{i}"] = a
        for r in REFERENCES:
            arrays[f"f_inf_{r}"] = self.f_inf[r]
            arrays[f"cost_inf_{r}"] = self.cost_inf[r]
            for m in METRICS:
                arrays[f"{m}_{r}"] = self.errors[r][m]
        write_npz(paths["npz"], arrays, compress=True)
        self.paths = paths
        return paths


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def _resolve_preset(preset) -> AdequationPreset:
    if isinstance(preset, AdequationPreset):
        return preset
    if isinstance(preset, str) and preset in PRESETS:
        return PRESETS[preset]
    raise ValueError(f"preset must be one of {sorted(PRESETS)} or an AdequationPreset, got {preset!r}")


def _check_widths(widths) -> np.ndarray:
    return np.array(sorted(check_ints(widths, "widths", 1, noun="width")), dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------------------------------


def _make_grid(preset: AdequationPreset, fake: np.ndarray, real: np.ndarray, nx: int):
    """Evaluation grid ``(points (G, d), axes)``: 1-D linspace or the 2-D bounding box with a margin."""
    d = fake.shape[1]
    if d == 1:
        if preset.grid_range is not None:
            lo, hi = preset.grid_range
        else:
            pts = np.concatenate([fake, real])[:, 0]
            pad = preset.grid_margin * max(float(np.ptp(pts)), 1e-12)
            lo, hi = float(pts.min()) - pad, float(pts.max()) + pad
        xs = np.linspace(lo, hi, nx)
        return xs[:, None], (xs,)
    if d == 2:
        pts = np.concatenate([fake, real])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = preset.grid_margin * max(float((hi - lo).max()), 1e-12)
        xs = np.linspace(lo[0] - pad, hi[0] + pad, nx)
        ys = np.linspace(lo[1] - pad, hi[1] + pad, nx)
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        return np.column_stack([gx.ravel(), gy.ravel()]), (xs, ys)
    raise ValueError(f"adequation grids exist for d = 1 and d = 2, got data of dimension {d}")


def _samples(preset: AdequationPreset, data_seed: int, nx: int):
    """``(fake, real, grid, axes)`` of a preset (the same in every task: the dataset is seeded)."""
    from ntkgan import datasets

    data = datasets.load(preset.dataset, seed=data_seed)
    fake, real = np.asarray(data.source, dtype=np.float64), np.asarray(data.target, dtype=np.float64)
    return (fake, real, *_make_grid(preset, fake, real, nx))


def _train_network(preset: AdequationPreset, task: dict) -> dict:
    """One task: the finite network of ``task["width"]`` and ``task["seed"]`` trained on the preset's samples,
    its ``f`` on the grid, and with ``task["picture"]`` its arrows :math:`-\nabla c_f` at the fake points."""
    from ntkgan.discriminator import get_loss
    from ntkgan.discriminator._finite import train_finite

    fake, real, grid, _ = _samples(preset, task["data_seed"], task["nx"])
    width, seed = task["width"], task["seed"]
    disc = train_finite(fake, real, width=width, seed=np.random.default_rng([seed, width]),
                        loss=get_loss(preset.loss), arch=preset.arch, t=task["t"], lr=task["lr"])
    out = {"f": disc(grid)}
    if task["picture"]:
        out["arrows"] = -disc.cost_grad(fake)
    return out


def adequation(preset, *, widths=DEFAULT_WIDTHS, seeds: int = 3, out=None, backend: str | None = None,
               nx: int = 100, t: float | None = None, lr: float | None = None,
               picture_width: int | None = None, data_seed: int = 0, workers: int | None = None,
               scheduler: str | None = None, progress: bool = False) -> AdequationResult:
    r"""Train finite discriminators of several widths and compare :math:`c_f` with the infinite-width one.

    Parameters
    ----------
    preset : {"ipm_relu", "lsgan_relu", "lsgan_relu_2d"} or AdequationPreset
        See :data:`PRESETS`.
    widths : sequence of int, default=(64, 128, 256, 512, 1024)
        Finite widths (sorted, distinct).
    seeds : int, default=3
        Networks per width; (width ``w``, seed ``r``) initialises from ``numpy.random.default_rng([r, w])``.
    out : str or path, optional
        Directory to write the PNG, CSV, Markdown and ``.npz`` into (see :meth:`AdequationResult.save`).
    backend : {None, "rust", "jax"}
        Kernel backend of the infinite-width references.
    nx : int, default=100
        Grid points per axis (1-D: ``nx``; 2-D: ``nx * nx``).
    t, lr : float, optional
        Override the preset's training time and step.
    picture_width : int, optional
        Width shown in the 2-D heat maps (default: the preset's, 512); trained with seed 0 if not in
        ``widths``.
    data_seed : int, default=0
        Seed of :func:`ntkgan.datasets.load` (only sampled datasets depend on it).
    workers, scheduler : optional
        Train the networks on a local Dask cluster of ``workers`` processes, or on the cluster at
        ``scheduler``; serial by default.  The numbers are the same either way.  With ``out``, each
        finished network is recorded in ``out/tasks/``, so a killed study resumes where it stopped.
    progress : bool, default=False
        Show a tqdm progress bar.

    Returns
    -------
    AdequationResult
        Grid values, errors, slopes; ``result.table()``, ``result.to_csv()``, ``result.to_markdown()``.

    Raises
    ------
    ValueError
        Unknown preset; bad ``widths``, ``seeds``, ``nx``, ``t``, ``lr``, ``picture_width``, ``data_seed``
        or backend; data of dimension other than 1 or 2.

    Notes
    -----
    The finite network of width :math:`w` is
    ``train_discriminator(fake, real, loss=..., arch=..., t=t, width=w, lr=lr)`` (an antisymmetric MLP
    trained by :math:`\mathrm{round}(t/\eta)` full-batch gradient-descent steps); the references are
    ``train_discriminator(..., width=None, dynamics="gd" | "flow")``.  See the module docstring for the
    error definitions.  Cost: about ``seeds * sum(widths^2)`` times the grid and training-set sizes.

    Examples
    --------
    >>> from ntkgan import adequation
    >>> res = adequation("lsgan_relu", widths=(16, 64), seeds=2, nx=20)
    >>> res.cost_finite.shape, sorted(res.errors)
    ((2, 2, 20), ['flow', 'gd'])
    """
    from ntkgan.discriminator import get_loss, train_discriminator

    start = time.perf_counter()
    preset = _resolve_preset(preset)
    widths = _check_widths(widths)
    seeds = check_int(seeds, "seeds", 1)
    nx = check_int(nx, "nx", 2)
    t = preset.t if t is None else check_real(t, "t", positive=True)
    lr = preset.lr if lr is None else check_real(lr, "lr", positive=True)
    data_seed = check_int(data_seed, "data_seed", 0)
    if picture_width is not None:
        picture_width = check_int(picture_width, "picture_width", 1)
    workers, scheduler = cluster_args(workers, scheduler)
    if out is not None:
        out = check_out(out)
    loss = get_loss(preset.loss)

    fake, real, grid, axes = _samples(preset, data_seed, nx)
    d = fake.shape[1]
    if d == 2 and picture_width is None:
        picture_width = preset.picture_width
    if d != 2:
        picture_width = None

    common = {"loss": loss, "arch": preset.arch, "t": t, "lr": lr}
    refs = {r: train_discriminator(fake, real, width=None, dynamics=r, backend=backend, **common)
            for r in REFERENCES}
    f_inf = {r: refs[r](grid) for r in REFERENCES}
    cost_inf = {r: np.asarray(loss.cost(f_inf[r]), dtype=np.float64) for r in REFERENCES}
    steps = int(round(t / lr))

    # the tasks: every (width, seed), and the pictured network if it is not among them; the setting is in
    # each task so that a record is reused only by the same study
    setting = {"preset": repr(preset), "t": t, "lr": lr, "nx": nx, "data_seed": data_seed}
    tasks = [{**setting, "width": int(w), "seed": s, "picture": s == 0 and int(w) == picture_width}
             for w in widths for s in range(seeds)]
    if picture_width is not None and picture_width not in widths:
        tasks.append({**setting, "width": picture_width, "seed": 0, "picture": True})
    fn = functools.partial(_train_network, preset)
    cluster = {"workers": workers, "scheduler": scheduler, "progress": progress}
    if out is not None:
        done, resumed = run_tasks(fn, tasks, out, study=f"adequation-{preset.name}", **cluster)
    else:
        done, resumed = map_tasks(fn, tasks, desc=f"adequation {preset.name}", **cluster), 0

    n_w, n_g = len(widths), grid.shape[0]
    f_finite = np.array([r["f"] for r in done[: n_w * seeds]], dtype=np.float64).reshape(n_w, seeds, n_g)
    shown = next(((task, r) for task, r in zip(tasks, done) if task["picture"]), None)
    cost_finite = np.asarray(loss.cost(f_finite), dtype=np.float64)

    errors, slopes = {}, {}
    for r in REFERENCES:
        diff = cost_finite - cost_inf[r]
        errors[r] = {"sup": np.abs(diff).max(axis=-1), "rms": np.sqrt(np.mean(diff**2, axis=-1))}
        slopes[r] = {m: _loglog_slope(widths, errors[r][m].mean(axis=1)) for m in METRICS}
    gap = cost_inf["flow"] - cost_inf["gd"]
    reference_gap = {"sup": float(np.abs(gap).max()), "rms": float(np.sqrt(np.mean(gap**2)))}

    picture = None
    if shown is not None:
        _, r = shown
        picture = {
            "width": picture_width,
            "seed": 0,
            "cost": np.asarray(loss.cost(r["f"]), dtype=np.float64),
            "arrows": {"finite": r["arrows"], **{ref: -refs[ref].cost_grad(fake) for ref in REFERENCES}},
        }

    result = AdequationResult(
        preset=preset, fake=fake, real=real, grid=grid, grid_axes=axes, widths=widths, seeds=seeds,
        steps=steps, f_finite=f_finite, cost_finite=cost_finite, f_inf=f_inf, cost_inf=cost_inf,
        errors=errors, slopes=slopes, reference_gap=reference_gap, picture=picture, resumed=resumed,
    )
    if out is not None:
        result.save(out)
    result.elapsed = time.perf_counter() - start
    return result
