"""Tests of python/ntkgan/_adequation.py and python/ntkgan/plots/_adequation.py (the Fig. 1 study).

References used: the finite networks retrained independently with the plain loop of
:mod:`ntkgan.finite` (``init_params`` + ``vjp`` + ``sgd_update``); the infinite-width references from
``train_discriminator``; the IPM closed form ``f_t = t (mean k(., real) - mean k(., fake))`` with
:func:`ntkgan.kernel`; the error table recomputed by hand with numpy and read back from the CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest
from conftest import assert_close

import ntkgan
from ntkgan import finite as F
from ntkgan.studies.adequation import PRESETS, AdequationResult, adequation
from ntkgan.cli import main
from ntkgan.discriminator import LOSSES, train_discriminator
from ntkgan.plots import plot_adequation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read_text(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _is_png(path):
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_MAGIC


@pytest.fixture(scope="module")
def lsgan_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("ade_lsgan")
    return adequation("lsgan_relu", widths=(8, 32, 16), seeds=2, nx=21, out=out), out


def test_function_writes_png_csv_md_npz(lsgan_small):
    res, out = lsgan_small
    assert isinstance(res, AdequationResult)
    assert set(res.paths) == {"png", "csv", "md", "npz"}
    for path in res.paths.values():
        assert path.startswith(str(out))
    assert _is_png(res.paths["png"])
    assert list(res.widths) == [8, 16, 32]  # sorted
    assert res.cost_finite.shape == res.f_finite.shape == (3, 2, 21)
    assert res.steps == 10
    assert_close(res.grid[:, 0], np.linspace(-3, 3, 21), rtol=0)
    md = _read_text(res.paths["md"])
    assert "| width | sup (gd) | RMS (gd) | sup (flow) | RMS (flow) |" in md
    assert "log-log slope" in md and "lsgan_relu" in md
    saved = np.load(res.paths["npz"])
    assert_close(saved["cost_finite"], res.cost_finite, rtol=0)
    assert_close(saved["sup_gd"], res.errors["gd"]["sup"], rtol=0)


def _plain_loop(fake, real, loss, width, seed, steps=10, lr=0.1):
    """An independent trainer: finite.py's vjp + sgd_update, the same init stream as adequation."""
    arch = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0, width=width)
    p = F.init_params(arch, fake.shape[1], rng=np.random.default_rng([seed, width]), antisymmetric=True)
    z = np.concatenate([fake, real])
    n = len(fake)
    w = np.concatenate([np.full(n, 1 / n), np.full(len(real), 1 / len(real))])
    for _ in range(steps):
        f, pullback = F.vjp(arch, p, z)
        ct = loss.deriv(f[:, 0], n) * w
        p = F.sgd_update(p, pullback(ct)[0], lr)
    return lambda x: F.apply(arch, p, x)[:, 0]


def test_error_table_is_consistent_with_recomputation(lsgan_small):
    res, _ = lsgan_small
    loss = LOSSES["lsgan"]
    arch = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0)
    cost_inf = {}
    for ref in ("gd", "flow"):
        d = train_discriminator(res.fake, res.real, loss="lsgan", arch=arch, t=1.0, lr=0.1, dynamics=ref)
        cost_inf[ref] = d(res.grid) ** 2
        assert_close(res.cost_inf[ref], cost_inf[ref], rtol=1e-12, atol=1e-14)
    errs = {(r, m): np.zeros((3, 2)) for r in ("gd", "flow") for m in ("sup", "rms")}
    for i, width in enumerate([8, 16, 32]):
        for s in range(2):
            c = loss.cost(_plain_loop(res.fake, res.real, loss, width, s)(res.grid))
            assert_close(res.cost_finite[i, s], c, rtol=1e-10, atol=1e-12)
            for r in ("gd", "flow"):
                diff = c - cost_inf[r]
                errs[r, "sup"][i, s] = np.max(np.abs(diff))
                errs[r, "rms"][i, s] = math.sqrt(np.mean(diff**2))
    rows = _read_csv(res.paths["csv"])
    assert [row["width"] for row in rows] == ["8", "16", "32", "slope"]
    for (r, m), e in errs.items():
        assert_close(res.errors[r][m], e, rtol=1e-9, atol=1e-12)
        mean = e.mean(axis=1)
        std = e.std(axis=1, ddof=1)
        assert_close([float(row[f"{m}_{r}_mean"]) for row in rows[:3]], mean, rtol=1e-9)
        assert_close([float(row[f"{m}_{r}_std"]) for row in rows[:3]], std, rtol=1e-8, atol=1e-12)
        slope = np.polyfit(np.log([8, 16, 32]), np.log(mean), 1)[0]
        assert_close(float(rows[3][f"{m}_{r}_mean"]), slope, rtol=1e-8)
        assert_close(res.slopes[r][m], slope, rtol=1e-8)
    gap = cost_inf["flow"] - cost_inf["gd"]
    assert_close(res.reference_gap["sup"], np.abs(gap).max(), rtol=1e-10)
    md = _read_text(res.paths["md"])
    assert f"| 8 | {float(rows[0]['sup_gd_mean']):.4g} ± " in md


def test_ipm_references_are_the_closed_form(tmp_path):
    """IPM: gd and flow coincide, c = -t (mean k(., real) - mean k(., fake)), on modes_1d_overlap."""
    res = adequation("ipm_relu", widths=(8,), seeds=1, nx=13)
    assert res.paths == {}
    assert res.fake.shape == (5, 1) and res.real.shape == (7, 1)
    arch = ntkgan.Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0)
    k_real = ntkgan.kernel(res.grid, res.real, arch=arch).mean(1)
    f = k_real - ntkgan.kernel(res.grid, res.fake, arch=arch).mean(1)
    for ref in ("gd", "flow"):
        assert_close(res.cost_inf[ref], -1.0 * f, rtol=1e-10, atol=1e-12)
    assert res.reference_gap["sup"] < 1e-10
    assert np.isnan(res.slopes["gd"]["sup"])  # one width: no slope
    text = res.to_csv()
    assert text.splitlines()[0].startswith("width,n_seeds,sup_gd_mean,sup_gd_std")
    assert ",nan," in text.splitlines()[1]  # one seed: no standard deviation


def test_2d_preset_writes_heat_maps_and_arrows(tmp_path):
    res = adequation("lsgan_relu_2d", widths=(8, 16), seeds=1, nx=12, picture_width=24, out=tmp_path)
    assert res.fake.shape == res.real.shape == (30, 2)
    assert res.grid.shape == (144, 2) and res.grid_shape == (12, 12)
    lo, hi = res.grid.min(axis=0), res.grid.max(axis=0)
    pts = np.concatenate([res.fake, res.real])
    assert np.all(lo < pts.min(axis=0)) and np.all(hi > pts.max(axis=0))
    xs, ys = res.grid_axes
    assert_close(res.grid[:12, 0], xs, rtol=0) and np.all(res.grid[:12, 1] == ys[0])  # x fastest
    pic = res.picture
    assert pic["width"] == 24 and pic["cost"].shape == (144,)
    assert set(pic["arrows"]) == {"finite", "gd", "flow"}
    for a in pic["arrows"].values():
        assert a.shape == (30, 2) and np.isfinite(a).all()
    d = train_discriminator(res.fake, res.real, loss="lsgan", arch=PRESETS["lsgan_relu_2d"].arch, t=1.0,
                            dynamics="gd")
    assert_close(pic["arrows"]["gd"], -d.cost_grad(res.fake), rtol=1e-12, atol=1e-14)
    assert _is_png(res.paths["png"])
    assert len(_read_csv(res.paths["csv"])) == 3
    # the picture width among the studied widths: seed 0 of the sweep is shown
    res2 = adequation("lsgan_relu_2d", widths=(8, 16), seeds=1, nx=6, picture_width=16)
    assert_close(res2.picture["cost"], res2.cost_finite[1, 0], rtol=0)


def test_cli_writes_the_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["adequation", "--preset", "ipm_relu", "--widths", "8", "16", "--seeds", "2", "--nx", "15",
                 "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| width | sup (gd)" in printed and "wrote png" in printed
    for name in ("ipm_relu.png", "ipm_relu_errors.csv", "ipm_relu_errors.md", "ipm_relu.npz"):
        assert (out / name).is_file()
    assert _is_png(out / "ipm_relu.png")
    rows = _read_csv(out / "ipm_relu_errors.csv")
    assert [r["width"] for r in rows] == ["8", "16", "slope"]
    assert all(r["n_seeds"] == "2" for r in rows[:2])


def test_unknown_preset_raises():
    names = r"\['ipm_relu', 'lsgan_relu', 'lsgan_relu_2d'\]"
    with pytest.raises(ValueError, match="preset must be one of " + names):
        adequation("lsgan_tanh")


def test_cli_unknown_preset_is_an_error(capsys, tmp_path):
    assert main(["adequation", "--preset", "nope", "--out", str(tmp_path), "--quiet"]) == 2
    assert "preset must be one of" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"widths": ()}, "at least one width"),
        ({"widths": (8, 0)}, "widths must be integers >= 1"),
        ({"widths": (8, 8)}, "distinct"),
        ({"widths": 8}, "sequence of integers"),
        ({"seeds": 0}, "seeds must"),
        ({"nx": 1}, "nx must"),
        ({"lr": -0.1}, "lr must"),
        ({"picture_width": 0}, "picture_width must"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adequation("lsgan_relu", **{"widths": (8,), "seeds": 1, "nx": 5, **kwargs})


def test_plot_rejects_other_dimensions(lsgan_small):
    res, _ = lsgan_small
    fig = plot_adequation(res)
    assert len(fig.axes) == 2
    bad = dataclasses.replace(res, fake=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dimension 3"):
        plot_adequation(bad)


def test_a_killed_study_resumes_from_its_task_records(tmp_path):
    """Each trained network is recorded in out/tasks/; a second call reads them instead of training, and a
    call with a record missing (a study killed before it) trains that one network only: same numbers."""
    kwargs = {"widths": (8, 16), "seeds": 2, "nx": 11}
    first = adequation("lsgan_relu_2d", out=tmp_path, picture_width=12, **kwargs)
    records = sorted((tmp_path / "tasks").glob("adequation-lsgan_relu_2d-*.json"))
    assert first.resumed == 0 and len(records) == 5  # 2 widths x 2 seeds, and the pictured width 12
    records[1].unlink()
    again = adequation("lsgan_relu_2d", out=tmp_path, picture_width=12, **kwargs)
    assert again.resumed == 4
    np.testing.assert_array_equal(again.f_finite, first.f_finite)
    np.testing.assert_array_equal(again.picture["arrows"]["finite"], first.picture["arrows"]["finite"])
    # another setting does not reuse the records
    other = adequation("lsgan_relu_2d", out=tmp_path, picture_width=12, lr=0.05, **kwargs)
    assert other.resumed == 0 and other.steps == 20


def test_on_a_local_dask_cluster_equals_serial(tmp_path):
    kwargs = {"widths": (8, 16), "seeds": 2, "nx": 9}
    serial = adequation("ipm_relu", **kwargs)
    dask = adequation("ipm_relu", out=tmp_path, workers=2, **kwargs)
    np.testing.assert_array_equal(dask.f_finite, serial.f_finite)
    assert dask.to_csv() == serial.to_csv()
