r"""Coupling kernels of particle flows: identity, Durr et al.'s two-number kernel, the generator NTK.

A kernel-coupled step moves every particle by

.. math::
    x_i \leftarrow x_i - \frac{\eta}{N} \sum_{j=1}^N \Theta_{ij}\, \nabla c(f(x_j)),

with :math:`\Theta \otimes I_d` (output dimensions uncorrelated).  The two-number kernel is applied in
:math:`O(Nd)` through :math:`\Theta = a' I + b' \mathbf 1 \mathbf 1^\top`:
:math:`\sum_j \Theta_{ij} F_j = a' F_i + b' \sum_j F_j`.

References
----------
.. [1] Durr, Mroueh, Tu, Wang. Effective Dynamics of Generative Adversarial Networks. Phys. Rev. X 13,
       041004 (2023).
"""

from __future__ import annotations

import math

import numpy as np

from ntkgan._validation import check_array, check_int
from ntkgan.arch import Mlp

__all__ = ["generator_ntk", "latent_codes", "two_number_coefficients", "two_number_fit", "two_number_step"]

LATENTS = ("gaussian", "sphere")
FORMS = ("offdiag", "plus_ones")


def latent_codes(n: int, dim: int, kind: str = "gaussian", *, rng: np.random.Generator) -> np.ndarray:
    r"""``n`` latent codes: :math:`N(0, I_{dim})` or uniform on the sphere of radius :math:`\sqrt{dim}`.

    Parameters
    ----------
    n, dim : int
        Number of codes and latent dimension (both ``>= 1``).
    kind : {"gaussian", "sphere"}
    rng : numpy.random.Generator
        Drawn from (advanced in place).

    Returns
    -------
    ndarray of shape (n, dim)
        On the sphere :math:`\|z\|^2 = dim`, so the kernels' input covariance :math:`\langle z, z'\rangle/dim`
        is the overlap :math:`u \in [-1, 1]` with :math:`u = 1` on the diagonal.

    Raises
    ------
    ValueError
        Bad ``n``, ``dim``, ``kind`` or ``rng``.
    """
    n, dim = check_int(n, "n"), check_int(dim, "dim")
    if kind not in LATENTS:
        raise ValueError(f"kind must be one of {LATENTS}, got {kind!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    z = rng.standard_normal((int(n), int(dim)))
    if kind == "sphere":
        z *= math.sqrt(dim) / np.linalg.norm(z, axis=1, keepdims=True)
    return z


def generator_ntk(z, arch: Mlp, *, backend: str | None = None) -> np.ndarray:
    r""":math:`\Theta_{ij} = \Theta_g(z_i, z_j)`: the NTK of the generator ``arch`` at latent codes ``z``.

    The infinite-width NTK of a multi-output network is :math:`\Theta_g(z, z') \otimes I_d` (outputs
    uncorrelated), with :math:`\Theta_g` the scalar-output NTK of :func:`ntkgan.kernel`.

    Parameters
    ----------
    z : array-like of shape (N, latent_dim)
    arch : Mlp
    backend : str, optional

    Returns
    -------
    ndarray of shape (N, N)
        Symmetric.
    """
    from ntkgan.kernels import kernel

    z = check_array(z, "z")
    theta = np.asarray(kernel(z, arch=arch, kind="ntk", backend=backend), dtype=np.float64)
    return 0.5 * (theta + theta.T)


def two_number_fit(theta) -> tuple[float, float, float]:
    r"""The two numbers of a kernel :math:`\Theta`: mean diagonal :math:`g_1`, mean off-diagonal :math:`g_2`.

    Parameters
    ----------
    theta : array-like of shape (N, N), N >= 2

    Returns
    -------
    g1, g2, spread : float
        ``spread`` is the standard deviation of the off-diagonal entries: :math:`\Theta` is well described
        by two numbers when ``spread`` is small compared with ``g1 - g2`` and ``g2``.

    Notes
    -----
    For latent codes uniform on the sphere of radius :math:`\sqrt{d_z}` the overlaps
    :math:`u_{ij} = \langle z_i, z_j\rangle / d_z` are :math:`O(d_z^{-1/2})`, so
    :math:`\Theta_{ij} \approx \Theta(u = 0) + \Theta'(0)\,u_{ij}`: the spread shrinks like
    :math:`d_z^{-1/2}` while :math:`\Theta_{ii} = \Theta(u = 1)`.
    """
    theta = check_array(theta, "theta")
    n = theta.shape[0]
    if theta.shape != (n, n) or n < 2:
        raise ValueError(f"theta must be square with N >= 2, got shape {theta.shape}")
    off = theta[~np.eye(n, dtype=bool)]
    return float(np.mean(np.diag(theta))), float(off.mean()), float(off.std())


def two_number_coefficients(eta: float, n: int, g1: float, g2: float,
                            form: str = "offdiag") -> tuple[float, float]:
    r"""``(a, b)`` with :math:`(\eta/N)\sum_j \Theta_{ij} F_j = a F_i + b \sum_j F_j`.

    ``form="offdiag"``: :math:`\Theta_{ii} = g_1`, :math:`\Theta_{i \ne j} = g_2`, i.e.
    :math:`\Theta = (g_1 - g_2) I + g_2 \mathbf 1\mathbf 1^\top`, so :math:`a = (\eta/N)(g_1 - g_2)`,
    :math:`b = (\eta/N) g_2`.  ``form="plus_ones"``: :math:`\Theta = g_1 I + g_2 \mathbf 1\mathbf 1^\top`, so
    :math:`a = (\eta/N) g_1`, :math:`b = (\eta/N) g_2`.

    Notes
    -----
    Eigenvalues of :math:`\Theta` (offdiag form): :math:`g_1 + (N-1) g_2` on the centre of mass,
    :math:`g_1 - g_2` on the N - 1 relative modes; :math:`g_2 = 0` gives free particles with step
    :math:`\eta g_1 / N`, :math:`g_2 = g_1` a rigid translation (:math:`a = 0`).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    scale = float(eta) / int(n)
    if form == "offdiag":
        return scale * (float(g1) - float(g2)), scale * float(g2)
    return scale * float(g1), scale * float(g2)


def two_number_step(forces: np.ndarray, a: float, b: float) -> np.ndarray:
    r""":math:`a F_i + b \sum_j F_j` for all i, in :math:`O(Nd)` (``forces`` (N, d) -> (N, d)).

    With ``b == 0`` the sum is skipped, so the result is exactly ``a * forces`` (bit-for-bit the free
    flow); with ``a == 0`` every row is exactly the same vector (a rigid translation).
    """
    out = a * forces
    if b != 0.0:
        out = out + b * forces.sum(axis=0)
    return out
