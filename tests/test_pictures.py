"""Tests of the pictures (issue 11): python/ntkgan/plots/_snapshots.py, _metrics.py, _adequation.py,
python/ntkgan/plots/_studies.py and the transition text of studies/collapse.py, and the help texts.

What a reader sees is checked on the figure objects (axes positions, colour-bar limits, legend entries,
artists) and, for a real run, on the saved PNGs: every snapshot frame has the same size and its plot box at
the same pixels, with or without a discriminator, and all frames of a run share one colour scale.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.quiver import QuiverKey
from ntkgan.cli import build_parser, main
from ntkgan.plots._snapshots import (
    SnapshotScale,
    _snapshot_figure,
    plot_snapshot,
    read_snapshot_scale,
    snapshot_scale,
)
from PIL import Image

BOUNDS = np.array([[-3.0, 3.0], [-3.0, 3.0]])


class _Bowl:
    """c(x) = a (|x|^2 / 2 - 1): a discriminator stand-in of amplitude ``a`` (both signs on BOUNDS)."""

    def __init__(self, a=1.0):
        self.a = a

    def cost(self, x):
        return self.a * (0.5 * (np.asarray(x) ** 2).sum(axis=1) - 1.0)

    def cost_grad(self, x):
        return self.a * np.asarray(x, dtype=float)


def _clouds(d=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((30, d)), rng.standard_normal((40, d)) + 0.5


def _draw(path, particles, target, **kw):
    """Write the frame as a run does (plot_snapshot), then return its figure and scale for inspection."""
    scale = plot_snapshot(path, particles, target, **kw)
    fig, again = _snapshot_figure(path, particles, target, **kw)
    assert again == scale
    return fig, scale


def _positions(fig):
    """Where the plot box is drawn, and the places of all axes (a colour bar's triangles sit inside its)."""
    fig.canvas.draw()
    box = tuple(np.round(fig.axes[0].get_position().bounds, 6))
    return [box] + [tuple(np.round(ax.get_position(original=True).bounds, 6)) for ax in fig.axes]


# --------------------------------------------------------------------------------------------------
# snapshots: one layout, one scale
# --------------------------------------------------------------------------------------------------


def test_snapshot_frames_share_layout_and_one_scale(tmp_path):
    particles, target = _clouds()
    frames = [(0, None), (10, _Bowl(1.0)), (20, _Bowl(0.3)), (30, _Bowl(3.0))]
    layouts, scales, bars = [], [], []
    for step, disc in frames:
        fig, scale = _draw(tmp_path / f"snapshot_{step:08d}.png", particles, target, discriminator=disc,
                           bounds=BOUNDS, title=f"step {step}")
        layouts.append(_positions(fig))
        scales.append(scale)
        if disc is not None:  # the colour bar: the second axes, its norm's limits
            cax = fig.axes[1]
            bars.append(cax.get_ylim())
    assert all(layout == layouts[0] for layout in layouts), layouts  # frame 0 too (no discriminator)
    assert scales[0] is None  # nothing to fix a scale with before the first discriminator
    assert scales[1] == scales[2] == scales[3]  # fixed by the first discriminator, kept after
    assert scales[1].fixed_at == "step 10"
    assert scales[1].cost_lo == -scales[1].cost_hi  # both signs: symmetric about 0
    assert all(bar == bars[0] for bar in bars), bars


def test_snapshot_scale_survives_a_new_process_and_is_explicit_when_given(tmp_path):
    particles, target = _clouds()
    assert plot_snapshot(tmp_path / "snapshot_00000000.png", particles, target, bounds=BOUNDS) is None
    first = plot_snapshot(tmp_path / "snapshot_00000005.png", particles, target, discriminator=_Bowl(2.0),
                          bounds=BOUNDS)
    assert first.fixed_at == "step 5"
    # kept in the frame itself (a PNG text chunk), no other file; a resumed run reads it from there (no
    # state in the module), so a much smaller discriminator keeps the scale
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot_00000000.png", "snapshot_00000005.png"]
    assert read_snapshot_scale(tmp_path) == first
    again = plot_snapshot(tmp_path / "snapshot_00000100.png", particles, target, discriminator=_Bowl(0.01),
                          bounds=BOUNDS)
    assert again == first
    with Image.open(tmp_path / "snapshot_00000100.png") as im:
        assert SnapshotScale.from_json(im.text["ntkgan:snapshot_scale"]) == first
    own = snapshot_scale(_Bowl(0.01), BOUNDS)
    assert plot_snapshot(tmp_path / "other.png", particles, target, discriminator=_Bowl(0.01), bounds=BOUNDS,
                         scale=own) == own
    assert own.cost_hi < first.cost_hi and own.force_max < first.force_max


def test_snapshot_scale_values():
    s = snapshot_scale(_Bowl(1.0), BOUNDS)
    # c from -1 (centre) to 0.5 * 18 - 1 = 8 (corners): symmetric, 2 significant digits, rounded up
    assert (s.cost_lo, s.cost_hi) == (-8.0, 8.0)
    assert math.isclose(s.force_max, math.hypot(3, 3), rel_tol=1e-12)  # longest arrow, at a corner
    assert s.key == 2.0  # 1-2-5 series, not above the longest arrow
    positive = snapshot_scale(_Bowl(1.0), np.array([[1.0, 3.0], [1.0, 3.0]]))  # c from 0 to 8: one sign
    assert positive.cost_lo == -8.0 and positive.cost_hi == 8.0 and positive.diverging  # later frames: both
    # symmetric-log colours and log arrow lengths over DECADES decades: one scale for a shrinking field
    from matplotlib.colors import SymLogNorm
    from ntkgan.plots._snapshots import DECADES

    assert isinstance(s.norm(), SymLogNorm) and math.isclose(s.linthresh, 8.0 * 10.0**-DECADES)
    lengths = np.linalg.norm(s.arrow_length(np.array([[s.force_max, 0.0], [0.0, s.force_max / 100], [0.0, 0.0]])),
                             axis=1)
    assert math.isclose(lengths[0], 1.0) and 0.4 < lengths[1] < 0.6 and lengths[2] == 0.0
    direction = s.arrow_length(np.array([[3.0, -4.0]]))[0]
    assert math.isclose(direction[0] / direction[1], -0.75)  # the direction is kept


def test_snapshot_marks_clipping_and_states_the_frame_range(tmp_path):
    particles, target = _clouds()
    plot_snapshot(tmp_path / "snapshot_00000001.png", particles, target, discriminator=_Bowl(0.5),
                  bounds=BOUNDS)
    fig, _ = _snapshot_figure(tmp_path / "snapshot_00000002.png", particles, target,
                              discriminator=_Bowl(2.0), bounds=BOUNDS)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "this frame" in texts and "beyond the scale" in texts
    assert "one scale for the run, fixed at step 1" in fig.axes[1].get_ylabel()


def test_snapshot_has_an_arrow_key_and_distinguishable_points(tmp_path):
    particles, target = _clouds()
    fig, scale = _snapshot_figure(tmp_path / "s.png", particles, target, discriminator=_Bowl(), bounds=BOUNDS)
    ax = fig.axes[0]
    keys = [a for a in ax.artists if isinstance(a, QuiverKey)]
    values = [scale.key, scale.key / 10, scale.key / 100]
    assert len(keys) == 3  # three reference arrows: the log length shown over two decades
    for key, value in zip(keys, values):
        assert math.isclose(key.U, float(np.linalg.norm(scale.arrow_length(np.array([[value, 0.0]])))))
        assert f"{value:.2g}" in key.text.get_text()
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == 2
    fills = sorted(float(c.get_facecolors()[:, 3].max()) if len(c.get_facecolors()) else 0.0 for c in points)
    assert fills[0] == 0.0 and fills[1] > 0.5  # hollow target rings, filled particle dots
    sizes = [float(np.max(c.get_sizes())) for c in points]
    assert sizes[0] != sizes[1]
    legend_texts = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert {"particles", "target"} <= legend_texts


@pytest.mark.parametrize("d", [1, 2])
def test_snapshot_1d_and_2d_frames_keep_their_layout(tmp_path, d):
    particles, target = _clouds(d)
    bounds = BOUNDS[:d]
    figs = [_draw(tmp_path / f"snapshot_{k}.png", particles, target, discriminator=disc, bounds=bounds)[0]
            for k, disc in enumerate([None, _Bowl(1.0), _Bowl(0.1)])]
    layouts = [_positions(fig) for fig in figs]
    assert layouts[1] == layouts[2]
    assert [p for p in layouts[0]] == [p for p in layouts[1]][: len(layouts[0])]
    if d == 1:  # the cost axis keeps the run's limits
        assert figs[1].axes[0].get_ylim() == figs[2].axes[0].get_ylim()


def _plot_box(png):
    """Pixel columns of the long dark vertical lines (axes spines) of a PNG, left to right."""
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=int)
    dark = (rgb < 80).all(axis=2)
    return np.flatnonzero(dark.sum(axis=0) > 0.4 * rgb.shape[0])


def test_run_snapshots_have_one_size_and_the_plot_at_the_same_pixels(tmp_path):
    from ntkgan.presets import make_config
    from ntkgan.runner import run

    out = tmp_path / "run"
    cfg = make_config(steps=4, log_every=2, checkpoint_every=4, n_source=24, n_target=24)
    run(cfg, out, progress=False, snapshot_every=2)
    frames = sorted((out / "img").glob("snapshot_*.png"))
    assert len(frames) == 3
    sizes = set()
    for frame in frames:
        with Image.open(frame) as im:
            sizes.add(im.size)
    assert len(sizes) == 1
    left_spines = [int(_plot_box(f)[0]) for f in frames]
    assert len(set(left_spines)) == 1, left_spines
    # frame 0 shows the initial particles under the first discriminator (trained on them): it fixes the scale
    scale = read_snapshot_scale(out / "img")
    assert scale is not None and scale.fixed_at == "step 0"
    for frame in frames:
        with Image.open(frame) as im:
            assert SnapshotScale.from_json(im.text["ntkgan:snapshot_scale"]) == scale


# --------------------------------------------------------------------------------------------------
# metrics.png
# --------------------------------------------------------------------------------------------------


def _rows(with_modes=True):
    rows = []
    for step in range(0, 50, 10):
        row = {"step": step, "sinkhorn": 1.0 / (step + 1), "energy": 0.5 / (step + 1), "mmd": 0.2 / (step + 1),
               "gen_loss": "" if step == 0 else -0.01 * step}
        if with_modes:
            row.update({"modes_covered": min(3, 1 + step // 10), "diversity": 1.0 / (step + 1),
                        "mode_0": 0.3, "mode_1": 0.3, "mode_2": 0.4})
        rows.append(row)
    return rows


@pytest.mark.parametrize("with_modes", [True, False])
def test_metrics_every_line_in_a_legend_and_every_panel_says_which_way_is_better(tmp_path, with_modes):
    from ntkgan.plots._metrics import plot_metrics

    fig = plot_metrics(_rows(with_modes), tmp_path / "m.png", title="t")
    assert (tmp_path / "m.png").is_file()
    legend_texts = set()
    for ax in fig.axes:
        if ax.get_legend() is not None:
            legend_texts |= {t.get_text() for t in ax.get_legend().get_texts()}
    for legend in fig.legends:
        legend_texts |= {t.get_text() for t in legend.get_texts()}
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    assert len(lines) == (6 if with_modes else 4)
    for line in lines:
        assert line.get_label() in legend_texts, line.get_label()
    titled = [ax for ax in fig.axes if ax.get_title()]  # the twin axes shares its panel's title
    assert len(titled) == (3 if with_modes else 2)
    for ax in titled:
        assert "better" in ax.get_title(), ax.get_title()
    if with_modes:
        assert any("lower is better" in t for t in legend_texts)  # diversity
        assert any("higher is better" in t for t in legend_texts)  # modes covered


# --------------------------------------------------------------------------------------------------
# adequation: coinciding references stay visible and are said to coincide
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ipm_small(tmp_path_factory):
    from ntkgan.studies.adequation import adequation

    return adequation("ipm_relu", widths=(8, 16), seeds=2, nx=21, out=tmp_path_factory.mktemp("ipm"))


def test_adequation_coinciding_references_are_visible_and_labelled(ipm_small):
    from ntkgan.plots import plot_adequation

    res = ipm_small
    assert np.max(np.abs(res.cost_inf["gd"] - res.cost_inf["flow"])) < 1e-9  # IPM: descent = flow
    fig = plot_adequation(res)
    ax_curves, ax_err = fig.axes[0], fig.axes[1]
    by_label = {line.get_label(): line for line in ax_curves.get_lines()}
    flow = next(line for label, line in by_label.items() if "gradient flow" in label)
    gd = next(line for label, line in by_label.items() if "gradient descent" in label and line is not flow)
    assert "coincides" in flow.get_label()
    assert flow.get_zorder() > gd.get_zorder()  # drawn on top ...
    assert flow.get_color() != gd.get_color() and flow.get_linestyle() != gd.get_linestyle()  # ... and unlike
    err_labels = [t.get_text() for t in ax_err.get_legend().get_texts()]
    assert sum("coincides with gd" in t for t in err_labels) == 2
    flow_series = [c for c in ax_err.containers if "vs flow" in c.get_label()]
    assert flow_series and all(c.lines[0].get_markerfacecolor() == "none" for c in flow_series)  # hollow


def test_adequation_distinct_references_are_not_said_to_coincide(tmp_path):
    from ntkgan.studies.adequation import adequation
    from ntkgan.plots import plot_adequation

    res = adequation("lsgan_relu", widths=(8, 16), seeds=2, nx=21)
    fig = plot_adequation(res)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    labels += [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert not any("coincide" in label for label in labels)


# --------------------------------------------------------------------------------------------------
# the collapse study: legend off the data, "no transition in range"
# --------------------------------------------------------------------------------------------------


def _collapse_params():
    return {"k": 3, "n": 20, "steps": 10, "seeds": 1, "ratios": [0.0, 0.5, 0.9],
            "settings": [{"name": "a"}, {"name": "b"}], "labels": {"a": "setting a", "b": "setting b"}}


def test_collapse_plot_legend_off_the_data_and_no_transition_text(tmp_path):
    from ntkgan.plots._studies import plot_collapse_diversity
    from ntkgan.studies.collapse import transition_point

    threshold = math.log(3) / 2
    means = {"a": [0.1, 0.4, 0.9], "b": [0.9, 1.0, 1.05]}  # a crosses; b is above already at r = 0
    summary = [{"setting": n, "ratio": r, "mean": m, "std": 0.05, "n_ok": 1}
               for n, ms in means.items() for r, m in zip([0.0, 0.5, 0.9], ms)]
    transitions = {n: transition_point([0.0, 0.5, 0.9], ms, threshold) for n, ms in means.items()}
    assert math.isfinite(transitions["a"]) and math.isnan(transitions["b"])
    fig = plot_collapse_diversity(tmp_path / "c.png", summary, transitions, threshold, _collapse_params())
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(fig.legends) == 1
    renderer = fig.canvas.get_renderer()
    legend_box = fig.legends[0].get_window_extent(renderer)
    assert not legend_box.overlaps(ax.get_window_extent(renderer))
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(f"transition {transitions['a']:.2f}" in t for t in texts)
    assert any("setting b" in t and "no transition in range" in t and "0.000" not in t for t in texts)


def test_transition_text_says_no_transition_in_range():
    from ntkgan.studies.collapse import _transition_text, transition_point

    r = [0.0, 0.5, 0.9]
    above = [0.9, 1.0, 1.05]
    t = transition_point(r, above, 0.55)
    assert math.isnan(t)
    assert _transition_text(t, r, above, 0.55) == (
        "no transition in range (above the threshold already at g2/g1 = 0)")
    assert _transition_text(math.nan, r, [0.1, 0.2, 0.3], 0.55) == (
        "no transition in range (below the threshold up to g2/g1 = 0.9)")
    assert _transition_text(math.nan, r, [math.nan] * 3, 0.55) == "n/a (no run finished)"
    assert _transition_text(0.8617, r, [0.1, 0.2, 0.9], 0.55) == "0.862"


def test_collapse_cli_prints_no_transition_in_range(tmp_path, capsys):
    # 10 steps: the cloud still sits on the middle mode, diversity near log 3 > threshold at every ratio
    rc = main(["collapse", "--ratios", "0,0.5", "--settings", "inf_ipm", "--seeds", "1", "--steps", "10",
               "--particles", "12", "--out", str(tmp_path / "c"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "transition g2/g1 (inf_ipm): no transition in range (above the threshold already at g2/g1 = 0)" \
        in out
    assert "0.000" not in out
    assert "no transition in range" in (tmp_path / "c" / "collapse_summary.md").read_text()


# --------------------------------------------------------------------------------------------------
# help texts
# --------------------------------------------------------------------------------------------------


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_help_has_no_doubled_default(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for line in text.splitlines():
        assert line.count("(default:") <= 1, line
        assert "(default: None)" not in line, line
