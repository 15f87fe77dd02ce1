"""The dataset record, the Gaussian-mixture sampler, seeds and the argument checks shared by the builders.

Every builder draws its source sample and its target sample from two independent random streams spawned
from one ``numpy.random.SeedSequence(seed)``: stream 0 for the source, stream 1 for the target.  So a
dataset is a pure function of its arguments, and changing ``n_target`` never changes the source sample
(nor the reverse).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Dataset", "GaussianMixture"]

# Largest (points x components) block that ``GaussianMixture.pdf`` evaluates at once (~32 MB of float64).
_PDF_BLOCK = 4_000_000


@dataclass(eq=False)
class Dataset:
    """A source sample (where the particles start) and a target sample, both in ``R^d``.

    Attributes
    ----------
    name : str
        The name the dataset was loaded by (``"eight_gaussians"``, ``"image:PATH"``, ...).
    source : ndarray of shape (n, d)
        Source sample, float64.
    target : ndarray of shape (m, d)
        Target sample, float64.
    modes : ndarray of shape (K, d) or None
        Centres of the target's modes when the target is a mixture with known centres (mode-collapse
        studies), else ``None``.
    meta : dict
        What was drawn and how: ``"source"`` and ``"target"`` (text), ``"seed"``, and per dataset e.g.
        ``"target_labels"`` (component of each target point), ``"target_mixture"`` (a
        :class:`GaussianMixture`), ``"image_shape"`` (to view a flattened sample as an image).

    Raises
    ------
    ValueError
        If ``source`` or ``target`` is not 2-D, their feature counts differ, or ``modes`` has another
        feature count.
    """

    name: str
    source: np.ndarray
    target: np.ndarray
    modes: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for what in ("source", "target"):
            arr = np.ascontiguousarray(getattr(self, what), dtype=np.float64)
            if arr.ndim != 2:
                raise ValueError(f"{what} must be 2-D of shape (n, d), got shape {arr.shape}")
            setattr(self, what, arr)
        if self.source.shape[1] != self.target.shape[1]:
            raise ValueError(
                f"target has {self.target.shape[1]} features but source has {self.source.shape[1]}"
            )
        if self.modes is not None:
            modes = np.ascontiguousarray(self.modes, dtype=np.float64)
            if modes.ndim != 2 or modes.shape[1] != self.dim:
                raise ValueError(f"modes must have shape (K, {self.dim}), got {modes.shape}")
            self.modes = modes

    @property
    def dim(self) -> int:
        """Number of features ``d``."""
        return int(self.source.shape[1])

    @property
    def n_source(self) -> int:
        """Number of source points ``n``."""
        return int(self.source.shape[0])

    @property
    def n_target(self) -> int:
        """Number of target points ``m``."""
        return int(self.target.shape[0])

    def __repr__(self) -> str:
        modes = "None" if self.modes is None else f"<{self.modes.shape[0]} centres>"
        return (
            f"Dataset(name={self.name!r}, source=<{self.n_source} x {self.dim}>, "
            f"target=<{self.n_target} x {self.dim}>, modes={modes})"
        )


@dataclass(eq=False, frozen=True)
class GaussianMixture:
    """``p(x) = sum_k w_k N(x; mu_k, diag(sigma)^2)``: Gaussians with one shared diagonal std.

    Parameters
    ----------
    means : array-like of shape (K, d)
        Component centres ``mu_k``.
    weights : array-like of shape (K,)
        Non-negative mixing weights, normalised here to sum to 1.
    std : float or array-like of shape (d,)
        Per-coordinate standard deviation ``sigma`` shared by all components, > 0.

    Raises
    ------
    ValueError
        On shapes that do not match, a non-finite value, a negative weight, weights summing to 0, or
        ``std <= 0``.

    Notes
    -----
    Sampling draws a component ``k ~ Categorical(w)`` then ``x = mu_k + sigma * z`` with
    ``z ~ N(0, I_d)``.  The moments are ``E[x] = sum_k w_k mu_k`` and
    ``Cov[x] = sum_k w_k mu_k mu_k^T - E[x] E[x]^T + diag(sigma^2)``.
    """

    means: np.ndarray
    weights: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        means = _finite_float_array(self.means, "means")
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got {means.shape}")
        k, d = means.shape
        weights = _finite_float_array(self.weights, "weights")
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) to match means, got {weights.shape}")
        if (weights < 0).any():
            raise ValueError(f"weights must be >= 0, got {weights.min()!r} at index {int(weights.argmin())}")
        total = weights.sum()
        if not total > 0:
            raise ValueError("weights sum to 0: the mixture has no mass")
        std = _finite_float_array(self.std, "std")
        if std.ndim == 0:
            std = np.full(d, float(std))
        if std.shape != (d,):
            raise ValueError(f"std must be a number or have shape ({d},), got {std.shape}")
        if (std <= 0).any():
            raise ValueError(f"std must be > 0, got {std.tolist()}")
        for name, arr in (("means", means), ("weights", weights / total), ("std", std)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        """Dimension ``d``."""
        return int(self.means.shape[1])

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` points: ``k_i ~ Categorical(w)``, ``x_i = mu_{k_i} + sigma * z_i``.

        Parameters
        ----------
        n : int
            Number of points, >= 0.
        rng : numpy.random.Generator
            The random stream (one ``choice`` call, then one ``standard_normal`` call).

        Returns
        -------
        x : ndarray of shape (n, d)
        labels : ndarray of shape (n,), int64
            The component of each point.
        """
        n = check_count(n, "n", minimum=0)
        labels = rng.choice(self.n_components, size=n, p=self.weights).astype(np.int64)
        noise = rng.standard_normal((n, self.dim))
        return self.means[labels] + noise * self.std, labels

    def pdf(self, x) -> np.ndarray:
        """Density ``p(x_i) = sum_k w_k prod_j N(x_ij; mu_kj, sigma_j^2)`` at each row of ``x``.

        Parameters
        ----------
        x : array-like of shape (n, d)

        Returns
        -------
        ndarray of shape (n,)
        """
        x = _finite_float_array(x, "x")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {x.shape}")
        norm = np.prod(1.0 / (math.sqrt(2.0 * math.pi) * self.std))
        out = np.empty(x.shape[0])
        step = max(1, _PDF_BLOCK // self.n_components)
        for start in range(0, x.shape[0], step):
            block = x[start : start + step]
            z = (block[:, None, :] - self.means[None, :, :]) / self.std
            out[start : start + step] = norm * (np.exp(-0.5 * np.einsum("nkd,nkd->nk", z, z)) @ self.weights)
        return out

    def mean(self) -> np.ndarray:
        """``E[x] = sum_k w_k mu_k``, shape (d,)."""
        return self.weights @ self.means

    def cov(self) -> np.ndarray:
        """``Cov[x] = sum_k w_k mu_k mu_k^T - E[x] E[x]^T + diag(sigma^2)``, shape (d, d)."""
        m = self.mean()
        centred = self.means - m
        return (centred.T * self.weights) @ centred + np.diag(self.std**2)


def _finite_float_array(value, name: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold real numbers: {exc}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got a NaN or inf")
    return arr


def check_count(n: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``n`` as an int >= ``minimum``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return int(n)


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a finite float > 0; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_dim(dim: Any, native: int, dataset: str) -> int:
    """Return ``native``; ``dim`` must be ``None`` or equal to it (datasets of a fixed dimension)."""
    if dim is None:
        return native
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim != native:
        raise ValueError(f"dim must be None or {native} for dataset {dataset!r}, got {dim!r}")
    return native


def streams(seed: Any, count: int = 2) -> list[np.random.Generator]:
    """``count`` independent generators spawned from ``SeedSequence(seed)``: [source, target, ...].

    ``seed`` is a non-negative integer, or a ``numpy.random.Generator`` from which one 63-bit integer is
    drawn to seed the sequence.
    """
    if isinstance(seed, np.random.Generator):
        entropy = int(seed.integers(2**63))
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        entropy = int(seed)
    else:
        raise ValueError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return [np.random.default_rng(child) for child in np.random.SeedSequence(entropy).spawn(count)]


def seed_record(seed: Any) -> Any:
    """What ``meta["seed"]`` records: the integer, or ``"generator"``."""
    return "generator" if isinstance(seed, np.random.Generator) else int(seed)


def standard_normal(n: int, d: int, rng: np.random.Generator, std: float = 1.0) -> np.ndarray:
    """``n`` draws of ``N(0, std^2 I_d)``, shape (n, d)."""
    return std * rng.standard_normal((n, d))
