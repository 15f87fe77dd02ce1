"""Tests of python/ntkgan/datasets/ (registry and ``load``, mixtures, image distributions, digits, MNIST).

References used: closed forms (mixture moments, fixed point sets, the toolkit's centre formula), an
independent re-implementation of the toolkit's transposed-and-flipped image convention, scipy's
multivariate normal, and Monte Carlo with tolerances stated in sigmas of the sampling error.
The paper's own images are read from ../shared/data (tests only; skipped with the reason when absent).
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ntkgan import datasets
from ntkgan.datasets import Dataset, GaussianMixture

PAPER_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
requires_paper_images = pytest.mark.skipif(
    not (PAPER_DATA / "A.png").is_file(), reason=f"paper images not found under {PAPER_DATA}"
)

# name -> (n_source, n_target, d) with default arguments
DEFAULT_SHAPES = {
    "eight_gaussians": (500, 500, 2),
    "gaussian_mixture": (500, 500, 2),
    "density": (500, 500, 2),
    "ab": (500, 500, 2),
    "two_clouds_2d": (30, 30, 2),
    "modes_1d": (5, 5, 1),
    "modes_1d_overlap": (5, 7, 1),
    "two_couples_2d": (2, 2, 2),
    "two_singles_1d": (1, 1, 1),
    "digits": (1024, 1024, 64),
}


def _corr(a, b):
    a = np.ravel(a) - np.mean(a)
    b = np.ravel(b) - np.mean(b)
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


# --------------------------------------------------------------------------------------------- registry


def test_registry_matches_documented_shapes():
    assert set(datasets.DATASETS) == set(DEFAULT_SHAPES)


@pytest.mark.parametrize("name", sorted(DEFAULT_SHAPES))
def test_every_name_loads_with_default_shapes(name):
    ds = datasets.load(name)
    n, m, d = DEFAULT_SHAPES[name]
    assert isinstance(ds, Dataset)
    assert ds.name == name
    assert ds.source.shape == (n, d) and ds.target.shape == (m, d)
    assert (ds.n_source, ds.n_target, ds.dim) == (n, m, d)
    assert ds.source.dtype == np.float64 and ds.target.dtype == np.float64
    assert np.isfinite(ds.source).all() and np.isfinite(ds.target).all()
    assert "source" in ds.meta and "target" in ds.meta and "seed" in ds.meta
    assert name in repr(ds)


@pytest.mark.parametrize("name", ["eight_gaussians", "density", "ab", "two_clouds_2d", "gmm:5"])
def test_load_is_deterministic_and_streams_are_independent(name):
    a = datasets.load(name, seed=3)
    b = datasets.load(name, seed=3)
    assert np.array_equal(a.source, b.source) and np.array_equal(a.target, b.target)
    c = datasets.load(name, seed=4)
    assert not np.array_equal(a.source, c.source) and not np.array_equal(a.target, c.target)
    # the source does not depend on n_target, nor the target on n_source
    d = datasets.load(name, seed=3, n_target=7)
    e = datasets.load(name, seed=3, n_source=11)
    assert np.array_equal(d.source, a.source) and np.array_equal(e.target, a.target)
    # a Generator seed is deterministic given the generator's own seed
    g1 = datasets.load(name, seed=np.random.default_rng(9))
    g2 = datasets.load(name, seed=np.random.default_rng(9))
    assert np.array_equal(g1.target, g2.target) and g1.meta["seed"] == "generator"


@settings(max_examples=20)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    k=st.integers(1, 6),
    dim=st.integers(1, 5),
)
def test_gmm_shapes_and_labels_property(seed, n, m, k, dim):
    ds = datasets.load(f"gmm:{k}", n_source=n, n_target=m, seed=seed, dim=dim)
    assert ds.source.shape == (n, dim) and ds.target.shape == (m, dim) and ds.modes.shape == (k, dim)
    labels = ds.meta["target_labels"]
    assert labels.shape == (m,) and labels.min() >= 0 and labels.max() < k


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown dataset 'eigth_gaussians'.*eight_gaussians.*digits"):
        datasets.load("eigth_gaussians")
    with pytest.raises(ValueError, match="unknown dataset 'foo:bar'"):
        datasets.load("foo:bar")
    with pytest.raises(ValueError, match="name must be a string"):
        datasets.load(3)
    assert "image:..." in datasets.names() and "eight_gaussians" in datasets.names()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"seed": True}, "seed must be a non-negative integer"),
        ({"n_source": 0}, "n_source must be >= 1, got 0"),
        ({"n_target": 2.0}, "n_target must be an integer"),
        ({"dim": 3}, "dim must be None or 2 for dataset 'eight_gaussians', got 3"),
        ({"std": 0.1}, "takes no option 'std'"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load("eight_gaussians", **kwargs)


def test_bad_parametrised_names_raise(tmp_path):
    with pytest.raises(ValueError, match="needs an argument after ':'"):
        datasets.load("image:")
    with pytest.raises(ValueError, match="does not exist"):
        datasets.load(f"image:{tmp_path / 'missing.png'}")
    with pytest.raises(ValueError, match="does not exist"):
        datasets.load(f"mnist:{tmp_path / 'missing-idx3-ubyte'}")
    with pytest.raises(ValueError, match="K in gmm:K must be an integer, got 'x'"):
        datasets.load("gmm:x")
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        datasets.load("gmm:0")
    with pytest.raises(ValueError, match="takes no option 'k'"):
        datasets.load("gmm:3", k=4)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(ValueError, match="could not read image"):
        datasets.load(f"image:{not_an_image}")


# ------------------------------------------------------------------------------------------- mixtures


def test_eight_gaussians_centres_match_the_toolkit_formula():
    ds = datasets.load("eight_gaussians")
    k = np.arange(8)
    cx = np.cos(2 * np.pi * k / 8)
    toolkit = 5 * np.stack([cx, np.sqrt(np.clip(1 - cx**2, 0, None)) * np.sign(k - 4)], axis=1)
    ours = ds.modes[np.lexsort(ds.modes.T[::-1].round(9))]
    theirs = toolkit[np.lexsort(toolkit.T[::-1].round(9))]
    assert_close(ours, theirs, atol=1e-12)
    assert_close(np.linalg.norm(ds.modes, axis=1), np.full(8, 5.0))


def test_eight_gaussians_sample_statistics():
    """Monte Carlo, n = 8000: counts within 5 binomial sigmas, means within 5 standard errors, stds within
    5 standard errors (se(std) = sigma / sqrt(2 n_k)); source mean/cov within 5 standard errors of 0, I."""
    m = 8000
    ds = datasets.load("eight_gaussians", n_source=m, n_target=m, seed=1)
    labels = ds.meta["target_labels"]
    counts = np.bincount(labels, minlength=8)
    assert np.all(np.abs(counts - m / 8) <= 5 * math.sqrt(m * (1 / 8) * (7 / 8)))
    for j in range(8):
        pts = ds.target[labels == j]
        assert np.all(np.abs(pts.mean(axis=0) - ds.modes[j]) <= 5 * 0.5 / math.sqrt(len(pts)))
        assert np.all(np.abs(pts.std(axis=0, ddof=1) - 0.5) <= 5 * 0.5 / math.sqrt(2 * len(pts)))
    # the labels are the nearest centres, up to rare overlaps (half the gap between modes is 3.8 sigma)
    nearest = np.argmin(((ds.target[:, None, :] - ds.modes[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.995
    assert np.all(np.abs(ds.source.mean(axis=0)) <= 5 / math.sqrt(m))
    cov = np.cov(ds.source.T)
    assert np.all(np.abs(cov - np.eye(2)) <= 5 * math.sqrt(2 / m))


def test_mixture_moments_and_pdf_against_scipy():
    means = np.array([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5]])
    mix = GaussianMixture(means, [1.0, 3.0], [0.5, 1.0, 2.0])
    assert_close(mix.weights, [0.25, 0.75])
    x = np.random.default_rng(0).normal(size=(50, 3))
    ref = sum(
        w * stats.multivariate_normal(mu, np.diag(mix.std**2)).pdf(x) for w, mu in zip(mix.weights, means)
    )
    assert_close(mix.pdf(x), ref, rtol=1e-12)
    # moments: Monte Carlo with n = 40000 against the closed forms, 5 standard errors
    n = 40000
    sample, labels = mix.sample(n, np.random.default_rng(1))
    sd = np.sqrt(np.diag(mix.cov()))
    assert np.all(np.abs(sample.mean(axis=0) - mix.mean()) <= 5 * sd / math.sqrt(n))
    assert_close(np.cov(sample.T), mix.cov(), atol=5 * 2 * np.max(sd) ** 2 / math.sqrt(n))
    assert abs((labels == 1).mean() - 0.75) <= 5 * math.sqrt(0.75 * 0.25 / n)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"means": np.zeros((2, 2)), "weights": [1.0], "std": 1.0}, r"weights must have shape \(2,\)"),
        ({"means": np.zeros((2, 2)), "weights": [1.0, -1.0], "std": 1.0}, "weights must be >= 0"),
        ({"means": np.zeros((2, 2)), "weights": [0.0, 0.0], "std": 1.0}, "weights sum to 0"),
        ({"means": np.zeros((2, 2)), "weights": [1.0, 1.0], "std": 0.0}, "std must be > 0"),
        ({"means": np.zeros((2, 2)), "weights": [1.0, 1.0], "std": [1.0, 1.0, 1.0]}, "std must be a number"),
        ({"means": [[np.nan, 0.0]], "weights": [1.0], "std": 1.0}, "means must be finite"),
    ],
)
def test_mixture_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_mixture_centres_layouts():
    ring = datasets.mixture_centres(6, 3, radius=2.0, layout="ring")
    assert_close(np.linalg.norm(ring, axis=1), np.full(6, 2.0))
    assert_close(ring[:, 2], np.zeros(6))
    assert_close(ring[1], [2 * math.cos(math.pi / 3), 2 * math.sin(math.pi / 3), 0.0], atol=1e-15)
    assert_close(datasets.mixture_centres(3, 1, radius=1.0), [[-1.0], [0.0], [1.0]])
    grid = datasets.mixture_centres(9, 2, radius=1.0, layout="grid")
    assert sorted(map(tuple, grid)) == [(a, b) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0)]
    axes = datasets.mixture_centres(4, 4, radius=3.0, layout="axes")
    dist = np.linalg.norm(axes[:, None] - axes[None], axis=-1)
    assert_close(dist[~np.eye(4, dtype=bool)], np.full(12, 3 * math.sqrt(2)))
    sphere = datasets.mixture_centres(10, 5, radius=4.0)  # d >= 3 defaults to "sphere"
    assert_close(np.linalg.norm(sphere, axis=1), np.full(10, 4.0))
    assert np.array_equal(sphere, datasets.mixture_centres(10, 5, radius=4.0, layout="sphere", seed=0))
    assert not np.array_equal(sphere, datasets.mixture_centres(10, 5, radius=4.0, seed=1))
    for args, kwargs, match in [
        ((3, 1), {"layout": "ring"}, "needs dim >= 2"),
        ((5, 2), {"layout": "grid"}, "perfect square"),
        ((5, 2), {"layout": "axes"}, r"k <= 2 \* dim = 4"),
        ((5, 2), {"layout": "spiral"}, "layout must be one of"),
        ((5, 2), {"radius": -1.0}, "radius must be > 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            datasets.mixture_centres(*args, **kwargs)


def test_gaussian_mixture_in_high_dimension():
    """Modes are shared across sampling seeds; the target mean is the mean of the modes (5 s.e.)."""
    a = datasets.load("gaussian_mixture", k=4, dim=10, std=0.1, layout="axes", n_target=4000, seed=0)
    b = datasets.load("gaussian_mixture", k=4, dim=10, std=0.1, layout="axes", seed=1)
    assert np.array_equal(a.modes, b.modes) and a.modes.shape == (4, 10)
    sd = np.sqrt(np.diag(a.meta["target_mixture"].cov()))
    assert np.all(np.abs(a.target.mean(axis=0) - a.modes.mean(axis=0)) <= 5 * sd / math.sqrt(4000))
    residual = a.target - a.modes[a.meta["target_labels"]]
    assert abs(residual.std() - 0.1) <= 5 * 0.1 / math.sqrt(2 * residual.size)


# -------------------------------------------------------------------------------------- fixed sets


def test_adequation_sets_exact_values():
    exact = {
        "modes_1d": ([-1.8, -2.01, -1.2, -1.05, -0.45], [0.9, 1.5, 1.845, 1.98, 0.3]),
        "modes_1d_overlap": ([-1.8, -2.01, -1.2, -1.05, -0.3], [0.9, 1.5, 1.845, 1.98, -1.65, -1.5, -2.7]),
        "two_singles_1d": ([-1.0], [1.0]),
    }
    for name, (src, tgt) in exact.items():
        ds = datasets.load(name)
        assert_close(ds.source, np.array(src)[:, None], rtol=0, atol=1e-15)
        assert_close(ds.target, np.array(tgt)[:, None], rtol=0, atol=1e-15)
    # the toolkit's values were written before a factor 1.5
    ds = datasets.load("modes_1d_overlap")
    assert_close(ds.target[:, 0], 1.5 * np.array([0.6, 1.0, 1.23, 1.32, -1.1, -1.0, -1.8]), rtol=1e-15)
    ds = datasets.load("two_couples_2d")
    assert np.array_equal(ds.source, [[1.0, 1.0], [1.0, -1.0]])
    assert np.array_equal(ds.target, [[-1.0, -1.0], [-1.0, 1.0]])


def test_fixed_sets_reject_other_sizes_and_dims():
    assert datasets.load("modes_1d", n_source=5, n_target=5).n_source == 5
    with pytest.raises(ValueError, match="n_target must be None or 7 for the fixed set 'modes_1d_overlap'"):
        datasets.load("modes_1d_overlap", n_target=500)
    with pytest.raises(ValueError, match="dim must be None or 2 for dataset 'two_couples_2d', got 3"):
        datasets.load("two_couples_2d", dim=3)


# ------------------------------------------------------------------------------------------ images


def _toolkit_mixture(img, loc=0.0, scale=1.0):
    """The toolkit's construction re-expressed in numpy: grid, transpose, flips, then flatten."""
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape
    xx = loc - scale * np.linspace(-1, 1, w)
    yy = loc + scale * np.linspace(-1, 1, h)
    gx, gy = np.meshgrid(xx, yy, indexing="ij")  # torch.meshgrid's default
    means = np.stack([gx.ravel(), gy.ravel()], axis=1)
    probs = (img.max() - img).T[:, ::-1][::-1, :].ravel()  # .T.flip(1).flipud()
    return means, probs / probs.sum(), np.array([scale / w, scale / h])


def _sorted_components(means, weights):
    order = np.lexsort((means[:, 1].round(12), means[:, 0].round(12)))
    return means[order], weights[order]


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (8, 4)])
def test_image_mixture_equals_the_toolkit_convention(shape):
    img = np.random.default_rng(sum(shape)).integers(0, 256, size=shape)
    mix = datasets.image_mixture(img, loc=0.3, scale=2.0)
    ref_means, ref_w, ref_std = _toolkit_mixture(img, loc=0.3, scale=2.0)
    ours = _sorted_components(mix.means, mix.weights)
    theirs = _sorted_components(ref_means, ref_w)
    assert_close(ours[0], theirs[0], atol=1e-14)
    assert_close(ours[1], theirs[1], rtol=1e-14)
    assert_close(mix.std, ref_std, rtol=1e-15)


def test_image_mixture_single_dark_pixel_places_mass_the_right_way_up():
    """A non-square image (h=3, w=5) with one dark pixel in the top-right corner: all mass at (1, 1)."""
    img = np.full((3, 5), 255, dtype=np.uint8)
    img[0, 4] = 0
    mix = datasets.image_mixture(img)
    assert_close(mix.std, [1 / 5, 1 / 3])
    assert np.count_nonzero(mix.weights) == 1
    x, labels = mix.sample(2000, np.random.default_rng(0))
    assert np.all(labels == 4)  # row-major index of (row 0, column 4)
    assert_close(mix.means[4], [1.0, 1.0])
    assert np.all(np.abs(x.mean(axis=0) - [1.0, 1.0]) <= 5 * mix.std / math.sqrt(2000))
    # bottom-left pixel -> (-1, -1); weights proportional to max - pixel
    img2 = np.array([[10.0, 10.0], [4.0, 7.0]])
    mix2 = datasets.image_mixture(img2)
    assert_close(mix2.weights, [0.0, 0.0, 6 / 9, 3 / 9])
    assert_close(mix2.means, [[-1, 1], [1, 1], [-1, -1], [1, -1]])


def test_image_mixture_rejects_bad_images():
    with pytest.raises(ValueError, match="image is uniform"):
        datasets.image_mixture(np.full((4, 4), 7))
    with pytest.raises(ValueError, match=r"got \(4,\)"):
        datasets.image_mixture(np.zeros(4))
    with pytest.raises(ValueError, match=r"h, w >= 2, got \(1, 4\)"):
        datasets.image_mixture(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="scale must be > 0"):
        datasets.image_mixture(np.eye(3), scale=0.0)
    with pytest.raises(ValueError, match="loc must be a number or a pair"):
        datasets.image_mixture(np.eye(3), loc=(1.0, 2.0, 3.0))


_SYMMETRIES = {
    "identity": lambda a: a,
    "flipud": lambda a: a[::-1],
    "fliplr": lambda a: a[:, ::-1],
    "rot180": lambda a: a[::-1, ::-1],
    "T": lambda a: a.T,
    "T flipud": lambda a: a.T[::-1],
    "T fliplr": lambda a: a.T[:, ::-1],
    "T rot180": lambda a: a.T[::-1, ::-1],
}


def _darkness(img):
    return img.max() - img.astype(np.float64)


def _orientation_scores(img, n=20000, seed=0):
    """Correlation of the sampled 2-D histogram (drawn as an image: top row = largest y) with the
    darkness map, for the identity and the other 7 symmetries of the square (3 for a rectangle)."""
    h, w = img.shape
    x, _ = datasets.image_mixture(img).sample(n, np.random.default_rng(seed))
    dx, dy = 2 / (w - 1), 2 / (h - 1)
    edges = [np.linspace(-1 - dx / 2, 1 + dx / 2, w + 1), np.linspace(-1 - dy / 2, 1 + dy / 2, h + 1)]
    hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=edges)
    est = hist.T[::-1, :]
    keys = list(_SYMMETRIES) if h == w else ["identity", "flipud", "fliplr", "rot180"]
    return {k: _corr(_SYMMETRIES[k](est), _darkness(img)) for k in keys}


@requires_paper_images
@pytest.mark.parametrize("name", ["A", "B", "density_a", "density_b"])
def test_paper_images_sample_the_right_way_up(name):
    """20000 samples: the histogram matches the darkness map (corr > 0.9), every flip/transpose far less."""
    scores = _orientation_scores(datasets.read_greyscale(PAPER_DATA / f"{name}.png"))
    best = scores.pop("identity")
    assert best > 0.9, best
    assert max(scores.values()) < best - 0.15, scores


def _letter_checks(a_target, b_target):
    """A: apex on top (the x-spread of the top band is well under the bottom band's).  B: the stem, a dense
    vertical bar, makes the x-marginal peak on the left."""
    top, bottom = a_target[a_target[:, 1] > 0.4], a_target[a_target[:, 1] < -0.4]
    assert len(top) > 100 and len(bottom) > 100
    assert np.ptp(top[:, 0]) < 0.6 * np.ptp(bottom[:, 0])
    counts, edges = np.histogram(b_target[:, 0], bins=16, range=(-1, 1))
    assert edges[np.argmax(counts)] < -0.25, counts


@requires_paper_images
def test_paper_letters_are_the_right_way_up():
    ds = datasets.load(f"image:{PAPER_DATA / 'A.png'},{PAPER_DATA / 'B.png'}", n_source=4000, n_target=4000)
    _letter_checks(ds.source, ds.target)


def test_builtin_letters_are_the_right_way_up():
    ds = datasets.load("ab", n_source=4000, n_target=4000)
    _letter_checks(ds.source, ds.target)


@pytest.mark.parametrize("name", datasets.BUILTIN_IMAGES)
def test_builtin_images_sample_the_right_way_up(name):
    """As for the paper's images; symmetries the image nearly has (our A is left-right symmetric) are
    exempt from the margin: those whose darkness map correlates > 0.7 with itself transformed."""
    img = datasets.builtin_image(name)
    scores = _orientation_scores(img, seed=1)
    best = scores.pop("identity")
    assert best > 0.9, best
    for key, score in scores.items():
        if _corr(_SYMMETRIES[key](_darkness(img)), _darkness(img)) < 0.7:
            assert score < best - 0.15, (key, score, best)


def test_shipped_glyphs_match_a_fresh_render():
    """The shipped PNGs are render_glyph's output; another FreeType build may move edge pixels slightly."""
    for ch in "AB":
        shipped = datasets.builtin_image(ch).astype(np.float64)
        fresh = datasets.render_glyph(ch).astype(np.float64)
        assert shipped.shape == (64, 64)
        assert np.abs(shipped - fresh).mean() < 2.0
        assert (shipped < 128).mean() > 0.1


@requires_paper_images
def test_own_images_resemble_the_papers():
    """Same size and a dark area within 25% of the paper's image (our shapes are drawn after theirs)."""
    for name in datasets.BUILTIN_IMAGES:
        ours, theirs = datasets.builtin_image(name), datasets.read_greyscale(PAPER_DATA / f"{name}.png")
        assert ours.shape == theirs.shape
        ratio = (ours < 128).mean() / (theirs < 128).mean()
        assert 0.75 < ratio < 1.25, (name, ratio)


def test_density_and_two_clouds_use_the_blobs():
    ds = datasets.load("density", seed=2)
    assert ds.source[:, 0].mean() < -0.2 and ds.target[:, 0].mean() > 0.2  # ellipse left, crescent right
    mix_a = ds.meta["source_mixture"]
    assert np.array_equal(mix_a.weights, datasets.image_mixture(datasets.blob_image("a")).weights)
    small = datasets.load("two_clouds_2d", seed=2)
    assert small.source.shape == (30, 2) and small.target.shape == (30, 2)
    assert np.all(np.abs(small.source) <= 1.2) and np.all(np.abs(small.target) <= 1.2)


def test_image_prefix_one_or_two_paths(tmp_path):
    from PIL import Image

    img = np.full((6, 6), 255, dtype=np.uint8)
    img[0, 0] = 0  # top-left -> (-1, 1)
    Image.fromarray(img).save(tmp_path / "tl.png")
    img2 = np.full((6, 6), 255, dtype=np.uint8)
    img2[5, 5] = 0  # bottom-right -> (1, -1)
    Image.fromarray(img2).save(tmp_path / "br.png")
    one = datasets.load(f"image:{tmp_path / 'tl.png'}", n_source=200, n_target=200)
    assert one.meta["source"] == "N(0, I_2)" and one.meta["source_mixture"] is None
    assert np.all(np.abs(one.target.mean(axis=0) - [-1.0, 1.0]) < 0.05)
    two = datasets.load(f"image:{tmp_path / 'tl.png'},{tmp_path / 'br.png'}", n_source=200, n_target=200)
    assert np.all(np.abs(two.source.mean(axis=0) - [-1.0, 1.0]) < 0.05)
    assert np.all(np.abs(two.target.mean(axis=0) - [1.0, -1.0]) < 0.05)
    # a file whose name holds a comma is read as one path
    Image.fromarray(img2).save(tmp_path / "a,b.png")
    comma = datasets.load(f"image:{tmp_path / 'a,b.png'}", n_target=50)
    assert np.all(np.abs(comma.target.mean(axis=0) - [1.0, -1.0]) < 0.1)
    # loc/scale options move the picture
    moved = datasets.load(f"image:{tmp_path / 'tl.png'}", n_target=50, loc=(2.0, 0.0), scale=0.5)
    assert np.all(np.abs(moved.target.mean(axis=0) - [1.5, 0.5]) < 0.05)


# ---------------------------------------------------------------------------------- digits / MNIST


def test_digits_range_and_pixel_map():
    ds = datasets.load("digits", n_target=1797, seed=0)
    assert ds.target.shape == (1797, 64) and ds.meta["image_shape"] == (8, 8, 1)
    assert ds.target.min() >= -1.0 and ds.target.max() <= 1.0
    assert_close([ds.target.min(), ds.target.max()], [-0.9995, 0.9995], rtol=1e-14)
    levels = (ds.target / datasets.PIXEL_SCALE + 0.5) * 16  # integers 0..16
    assert_close(levels, np.round(levels), atol=1e-9)
    assert sorted(ds.meta["target_indices"]) == list(range(1797))
    with pytest.raises(ValueError, match="n_target must be <= 1797"):
        datasets.load("digits", n_target=1798)
    with pytest.raises(ValueError, match="dim must be None or 64"):
        datasets.load("digits", dim=2)


def _write_idx(path, array, type_code=0x08, compress=False):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.fixture
def tiny_mnist(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    return images, _write_idx(tmp_path / "train-images-idx3-ubyte", images)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips(tmp_path, compress):
    for code, dtype in [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                        (0x0D, np.float32), (0x0E, np.float64)]:
        arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        path = _write_idx(tmp_path / f"t{code}", arr, code, compress)
        back = datasets.read_idx(path)
        assert back.dtype == np.dtype(dtype) and np.array_equal(back, arr)


def test_mnist_reader_on_a_synthetic_idx_file(tiny_mnist, tmp_path):
    images, path = tiny_mnist
    ds = datasets.load(f"mnist:{path}", n_source=3, n_target=4, seed=5)
    assert ds.source.shape == (3, 1024) and ds.target.shape == (4, 1024)
    assert ds.meta["image_shape"] == (32, 32, 1)
    chosen = ds.meta["target_indices"]
    assert len(set(chosen.tolist())) == 4
    # reference: pad 2 zero pixels each side (CenterCrop(32)), v / 255, then 1.999 (v - 1/2)
    ref = 1.999 * (np.pad(images[chosen], ((0, 0), (2, 2), (2, 2))).reshape(4, -1) / 255.0 - 0.5)
    assert_close(ds.target, ref, rtol=1e-15, atol=1e-15)
    # gzipped file and npz give the same dataset
    gz = _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, compress=True)
    np.savez(tmp_path / "mnist.npz", x_train=images, y_train=np.zeros(6, dtype=np.uint8))
    flat = tmp_path / "flat.npz"
    np.savez(flat, images=images.reshape(6, 784))
    for other in (gz, tmp_path / "mnist.npz", flat):
        again = datasets.load(f"mnist:{other}", n_source=3, n_target=4, seed=5)
        assert np.array_equal(again.target, ds.target) and np.array_equal(again.source, ds.source)
    # pad=False keeps 28 x 28; the default n_target is all images when fewer than 1024
    raw = datasets.load(f"mnist:{path}", pad=False)
    assert raw.target.shape == (6, 784) and raw.meta["image_shape"] == (28, 28, 1)
    assert raw.source.shape == (1024, 784)


def test_mnist_reader_errors(tiny_mnist, tmp_path):
    _, path = tiny_mnist
    with pytest.raises(ValueError, match="n_target must be <= 6"):
        datasets.load(f"mnist:{path}", n_target=7)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_mnist(bad)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="IDX header says shape"):
        datasets.read_idx(truncated)
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 28, 28)), b=np.zeros(2))
    with pytest.raises(ValueError, match="no image array among keys"):
        datasets.read_mnist(tmp_path / "two.npz")
    np.savez(tmp_path / "float.npz", x_train=np.full((2, 28, 28), 3.0))
    with pytest.raises(ValueError, match=r"float pixels must be finite and lie in \[0, 1\]"):
        datasets.load(f"mnist:{tmp_path / 'float.npz'}")
    labels = _write_idx(tmp_path / "labels-idx1-ubyte", np.arange(5, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"expected images of shape \(n, h, w\)"):
        datasets.read_mnist(labels)


def test_center_crop_pads_and_crops_like_torchvision():
    small = np.ones((1, 28, 28))
    padded = datasets.center_crop(small, 32)
    assert padded.shape == (1, 32, 32)
    assert padded[0, 2:30, 2:30].min() == 1 and padded.sum() == 28 * 28
    big = np.arange(37 * 37, dtype=float).reshape(1, 37, 37)
    cropped = datasets.center_crop(big, 32)
    top = int(round((37 - 32) / 2.0))
    assert np.array_equal(cropped[0], big[0, top : top + 32, top : top + 32])
