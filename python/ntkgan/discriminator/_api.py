r"""``train_discriminator``: one door to infinite-width (kernel) and finite-width (network) discriminators."""

from __future__ import annotations

import numbers

import numpy as np

from ntkgan._validation import check_array, check_kind
from ntkgan._validation import check_real as _check_real
from ntkgan.arch import Mlp
from ntkgan.discriminator._base import Discriminator
from ntkgan.discriminator._infinite import DEFAULT_TOL, LAMBERTW_METHODS, train_infinite
from ntkgan.discriminator._losses import LOSSES, get_loss

__all__ = ["METHODS", "train_discriminator"]

#: Infinite-width solvers by loss family (``"auto"`` is always accepted).
METHODS = {
    "linear": ("closed_form",),
    "quadratic": ("eigh", "krylov", "matrix_free", "ode"),
    None: ("ode",),
}
DYNAMICS = ("flow", "gd")
F0 = ("zero", "random")


def _check_samples(fake, real) -> tuple[np.ndarray, np.ndarray]:
    fake = check_array(fake, "fake")
    real = check_array(real, "real")
    for name, arr in (("fake", fake), ("real", real)):
        if arr.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one point, got shape {arr.shape}")
        if arr.shape[1] == 0:
            raise ValueError(f"{name} must have at least one feature, got shape {arr.shape}")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real has {real.shape[1]} features but fake has {fake.shape[1]}")
    return fake, real


def _check_method(method, loss, width) -> str:
    if method is None:
        return "auto"
    if width is not None:
        raise ValueError(f"method applies to width=None only, got method={method!r} with width={width!r}")
    allowed = ("auto",) + METHODS[loss.closed_form]
    if loss is LOSSES["vanilla"]:
        allowed += LAMBERTW_METHODS
    if loss is LOSSES["hinge"]:
        allowed = ("auto", "piecewise_linear")
    if method not in allowed:
        raise ValueError(f"method must be one of {allowed} for loss {loss.name!r}, got {method!r}")
    return method


def train_discriminator(fake, real, *, loss, arch: Mlp, t: float, width: int | None = None, lr: float = 0.1,
                        dynamics: str | None = None, seed: int = 0, f0: str = "zero", backend: str | None = None,
                        kind: str = "ntk", method: str | None = None, tol: float = DEFAULT_TOL,
                        grad_penalty: float = 0.0) -> Discriminator:
    r"""Train a discriminator of architecture ``arch`` for time ``t`` on fake vs real samples.

    The discriminator minimises :math:`L(f) = \frac1N\sum_i \ell_{\mathrm{fake}}(f(x_i)) +
    \frac1M \sum_j \ell_{\mathrm{real}}(f(y_j))` (see :data:`LOSSES`) starting from :math:`f_0`.  At infinite
    width (``width=None``) it follows the kernel gradient flow

    .. math::
        \partial_t f_t(x) = -\sum_{z \in Z} k(x, z)\, \frac{\partial L}{\partial f(z)}(f_t),
        \qquad Z = [x_1..x_N, y_1..y_M],

    i.e. :math:`\partial_t f_t = -T_{k,\hat\gamma} \nabla_{L^2(\hat\gamma)} L(f_t)` with
    :math:`\hat\gamma = (\hat\alpha + \hat\beta)/2`, the weights :math:`1/N` and :math:`1/M` carried by
    :math:`\partial L / \partial f(z)` (right for :math:`N \ne M` and for duplicated points), so that
    :math:`f_t = f_0 + \sum_z a_z(t)\, k(\cdot, z)`.  At a finite width it trains a real network.

    Parameters
    ----------
    fake : array-like of shape (N, d)
        Generated samples :math:`\hat\alpha` (where the generator feels :math:`c(f)`).
    real : array-like of shape (M, d)
        Target samples :math:`\hat\beta`.
    loss : str or Loss
        ``"ipm"``, ``"lsgan"``, ``"vanilla"``, ``"hinge"`` (:data:`LOSSES`) or a custom :class:`Loss`
        (e.g. :meth:`Loss.from_derivatives`).
    arch : Mlp
        The discriminator network; its NTK is :math:`k`.
    t : float
        Training time, ``>= 0``.
    width : int or None, default=None
        None: the infinite-width solution.  An integer: a real network of that width trained by full-batch
        gradient descent (step ``lr``, ``round(t / lr)`` steps, antisymmetric init so :math:`f_0 = 0`
        unless ``f0="random"``).
    lr : float, default=0.1
        Step of gradient descent (``dynamics="gd"`` and finite widths).
    dynamics : {None, "flow", "gd"}, default=None
        ``"flow"``: continuous time (the default for ``width=None``).  ``"gd"``: kernel gradient descent
        with step ``lr`` for ``round(t / lr)`` steps, what a finite network of growing width converges to
        (the default and only choice for finite widths).
    grad_penalty : float, default=0.0
        Finite widths only: adds :math:`\lambda \frac{1}{N+M}\sum_{z} \|\nabla_x f(z)\|^2` over fake and
        real samples to the loss (see :func:`~ntkgan.discriminator._finite.train_finite`).  At infinite
        width the penalised dynamics is not a kernel flow of this form: ``> 0`` with ``width=None`` raises.
    seed : int, default=0
        Seeds the random initial function (``f0="random"``) and the finite network.
    f0 : {"zero", "random"}, default="zero"
        ``"random"``: at infinite width, a seeded draw of the NNGP prior on :math:`Z`, extended off
        :math:`Z` by its conditional mean (see :class:`~ntkgan.discriminator._infinite.GaussianProcessPrior`).
    backend : {None, "rust", "jax"}
        Kernel backend (infinite width).
    kind : {"ntk", "nngp"}, default="ntk"
        The kernel of the flow (``"nngp"``: the kernel regime of a network whose last layer only is
        trained, e.g. the paper's RBF/Gaussian-kernel runs).  Finite widths need ``"ntk"``.
    method : str, default=None (= "auto")
        Infinite-width solver.  IPM: ``"closed_form"``.  LSGAN (quadratic losses): ``"eigh"``,
        ``"krylov"`` (dense Gram + Lanczos), ``"matrix_free"`` (Lanczos on :func:`ntkgan.kernel_matvec`, no
        n x n matrix) or ``"ode"``; ``"auto"`` picks by size.  vanilla, custom: ``"ode"``; vanilla also
        ``"lambertw"`` (the paper's explicit eigenbasis approximation, flow and ``f0="zero"`` only; by
        eigh, dense Lanczos or matrix-free Lanczos, picked by size like ``"auto"``, or forced with
        ``"lambertw_eigh"``, ``"lambertw_krylov"``, ``"lambertw_matrix_free"``).
        hinge: ``"piecewise_linear"`` (exact event-driven flow with sliding modes).  ``dynamics="gd"``
        iterates the steps except for the IPM and quadratic closed forms.
    tol : float, default=1e-10
        Relative tolerance of the Lanczos and ODE solvers.

    Returns
    -------
    Discriminator
        With ``__call__(x) -> (n,)``, ``grad(x) -> (n, d)``, ``cost(x) -> (n,)`` :math:`= c(f(x))` and
        ``cost_grad(x) -> (n, d)``; at infinite width a
        :class:`~ntkgan.discriminator._infinite.KernelDiscriminator`.

    Raises
    ------
    ValueError
        Naming the argument: unknown loss, method, dynamics or f0; ``t < 0``; ``lr <= 0``;
        ``grad_penalty < 0``, or ``> 0`` at infinite width; empty or
        non-2-D sample sets, mismatched dimensions, NaN or inf; a bad width.

    Notes
    -----
    Closed forms for :math:`f_0 = 0` (derivations in :mod:`ntkgan.discriminator._infinite`):

    - IPM: :math:`f_t = t\,(\mathbb E_{\hat\beta} k(\cdot, y) - \mathbb E_{\hat\alpha} k(\cdot, x))`, so
      :math:`\mathbb E_{\hat\beta} f_t - \mathbb E_{\hat\alpha} f_t = t\,\mathrm{MMD}^2_k` and the particle
      force is :math:`(t/2)\nabla \mathrm{MMD}^2_k` (MMD gradient flow).
    - LSGAN: :math:`f_t|_Z = \rho + D^{-1/2} e^{-tA} D^{1/2}(f_0 - \rho)` with
      :math:`D = 2\operatorname{diag}(1/N.., 1/M..)`, :math:`A = D^{1/2} K D^{1/2}`, :math:`\rho = \mp 1`;
      for :math:`N = M` this is the paper's :math:`\rho + e^{-4tK/n}(f_0 - \rho)`.

    Examples
    --------
    >>> import numpy as np, ntkgan
    >>> from ntkgan.discriminator import train_discriminator
    >>> d = train_discriminator([[-1.0], [-0.5]], [[0.5], [1.0]], loss="lsgan", arch=ntkgan.Mlp(), t=1.0)
    >>> d(np.array([[-1.0], [1.0]])).round(2)
    array([-0.82,  0.82])
    """
    loss = get_loss(loss)
    if not isinstance(arch, Mlp):
        raise ValueError(f"arch must be an ntkgan.Mlp, got {type(arch).__name__}")
    t = _check_real(t, "t", nonneg=True)
    lr = _check_real(lr, "lr", positive=True)
    if width is not None and (isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1):
        raise ValueError(f"width must be None or an integer >= 1, got {width!r}")
    if dynamics is not None and dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {DYNAMICS} or None, got {dynamics!r}")
    if width is not None and dynamics == "flow":
        raise ValueError("dynamics='flow' needs width=None: a finite network is trained by gradient descent "
                         f"(got width={width!r})")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if f0 not in F0:
        raise ValueError(f"f0 must be one of {F0}, got {f0!r}")
    kind = check_kind(kind)
    method = _check_method(method, loss, width)
    tol = _check_real(tol, "tol", positive=True)
    grad_penalty = _check_real(grad_penalty, "grad_penalty", nonneg=True)
    if width is None and grad_penalty > 0:
        raise ValueError(f"grad_penalty applies to finite widths only, got grad_penalty={grad_penalty!r} with "
                         "width=None")
    fake, real = _check_samples(fake, real)

    if width is not None:
        if kind != "ntk":
            raise ValueError(f"kind must be 'ntk' for a finite width, got {kind!r}")
        from ntkgan.discriminator._finite import train_finite

        return train_finite(fake, real, loss=loss, arch=arch, t=t, width=int(width), lr=lr, seed=int(seed), f0=f0,
                            grad_penalty=grad_penalty)

    dynamics = dynamics or "flow"
    if method in LAMBERTW_METHODS and (dynamics != "flow" or f0 != "zero"):
        raise ValueError(f"method={method!r} needs dynamics='flow' and f0='zero', got dynamics={dynamics!r}, "
                         f"f0={f0!r}")
    return train_infinite(fake, real, loss=loss, arch=arch, t=t, dynamics=dynamics, lr=lr, seed=int(seed), f0=f0,
                          backend=backend, kind=kind, method=method, tol=tol)
