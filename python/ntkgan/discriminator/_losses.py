r"""GAN losses as pointwise terms: the discriminator's :math:`L(f)` and the generator's cost :math:`c(f)`.

Conventions (Franceschi et al. 2022, toolkit sign conventions).  Fake samples
:math:`\hat\alpha = \frac1N \sum_i \delta_{x_i}`, real samples :math:`\hat\beta = \frac1M \sum_j \delta_{y_j}`.
The discriminator **minimises**

.. math::
    L(f) = \frac1N \sum_{i=1}^N \ell_{\mathrm{fake}}(f(x_i)) + \frac1M \sum_{j=1}^M \ell_{\mathrm{real}}(f(y_j)),

and the generator (or the particles) minimises :math:`\mathbb E_\alpha[c(f(x))]`:

=========  ===================================  ===================================  ==========================
loss       :math:`\ell_{\mathrm{fake}}(f)`      :math:`\ell_{\mathrm{real}}(f)`      :math:`c(f)`
=========  ===================================  ===================================  ==========================
ipm        :math:`f`                            :math:`-f`                           :math:`-f`
lsgan      :math:`(f+1)^2`                      :math:`(f-1)^2`                      :math:`f^2`
vanilla    :math:`-\log\sigma(-f)`              :math:`-\log\sigma(f)`               :math:`-\log\sigma(f)`
hinge      :math:`\mathrm{relu}(1+f)`           :math:`\mathrm{relu}(1-f)`           :math:`-f`
=========  ===================================  ===================================  ==========================

(vanilla's generator cost is the non-saturating one).  Everything the solvers need is the pointwise
derivative :math:`\ell'` of each term, so a custom loss is given by its two derivatives (and optionally its
cost): see :meth:`Loss.from_derivatives`.  The derivative of :math:`L` with respect to the value at one
training point carries that point's weight: :math:`\partial L / \partial f(x_i) = \ell'_{\mathrm{fake}}(f(x_i))
/ N` and :math:`\partial L / \partial f(y_j) = \ell'_{\mathrm{real}}(f(y_j)) / M`.

Conventions at kinks: :math:`\mathrm{relu}'(0) = 0` (as autodiff computes it), so hinge's fake derivative is
:math:`\mathbb 1[1 + f > 0]` and its real derivative :math:`-\mathbb 1[1 - f > 0]`.

References
----------
.. [1] Franceschi, Gartrell, Dos Santos, Issenhuth, de Bézenac, Chen, Rakotomamonjy.  A Neural Tangent
       Kernel Perspective of GANs.  ICML 2022.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

__all__ = ["LOSSES", "Loss", "get_loss"]

Pointwise = Callable[[np.ndarray], np.ndarray]

#: The closed-form families the infinite-width solver recognises (None: integrate the ODE).
CLOSED_FORMS = (None, "linear", "quadratic")


def _softplus(f):
    return np.logaddexp(0.0, f)


@dataclass(frozen=True)
class Loss:
    r"""A GAN loss given by its pointwise terms and their derivatives.

    Parameters
    ----------
    name : str
    fake_deriv, real_deriv : callable ndarray -> ndarray
        :math:`\ell'_{\mathrm{fake}}` and :math:`\ell'_{\mathrm{real}}`, vectorised, elementwise.
    cost, cost_deriv : callable ndarray -> ndarray
        The generator cost :math:`c` and its derivative :math:`c'`.
    fake_term, real_term : callable or None
        :math:`\ell_{\mathrm{fake}}`, :math:`\ell_{\mathrm{real}}` (only needed by :meth:`value`).
    closed_form : {None, "linear", "quadratic"}
        ``"linear"``: the derivatives are constant (IPM), so the flow has a closed form.
        ``"quadratic"``: :math:`\ell'(f) = \kappa (f - \rho)` with :math:`\kappa > 0` for each term (LSGAN),
        so the flow is linear and solved in the eigenbasis or by Krylov.  None: ODE.

    Notes
    -----
    For ``"quadratic"`` losses the slope and target are read off the derivative:
    :math:`\kappa = \ell'(1) - \ell'(0)` and :math:`\rho = -\ell'(0) / \kappa` (LSGAN: :math:`\kappa = 2`,
    :math:`\rho = -1` on fake and :math:`+1` on real points).
    """

    name: str
    fake_deriv: Pointwise
    real_deriv: Pointwise
    cost: Pointwise
    cost_deriv: Pointwise
    fake_term: Pointwise | None = None
    real_term: Pointwise | None = None
    closed_form: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Loss.name must be a non-empty string, got {self.name!r}")
        for field in ("fake_deriv", "real_deriv", "cost", "cost_deriv"):
            if not callable(getattr(self, field)):
                raise ValueError(f"Loss.{field} must be callable, got {getattr(self, field)!r}")
        for field in ("fake_term", "real_term"):
            if getattr(self, field) is not None and not callable(getattr(self, field)):
                raise ValueError(f"Loss.{field} must be callable or None, got {getattr(self, field)!r}")
        if self.closed_form not in CLOSED_FORMS:
            raise ValueError(f"Loss.closed_form must be one of {CLOSED_FORMS}, got {self.closed_form!r}")

    @classmethod
    def from_derivatives(
        cls,
        fake_deriv: Pointwise,
        real_deriv: Pointwise,
        *,
        name: str = "custom",
        cost: Pointwise | None = None,
        cost_deriv: Pointwise | None = None,
        fake_term: Pointwise | None = None,
        real_term: Pointwise | None = None,
    ) -> Loss:
        r"""A custom loss from its pointwise derivatives; solved by the ODE at infinite width.

        ``cost`` and ``cost_deriv`` default to the IPM/hinge generator cost :math:`c(f) = -f`; give both or
        neither.

        Examples
        --------
        >>> import numpy as np
        >>> from ntkgan.discriminator import Loss
        >>> softer = Loss.from_derivatives(lambda f: np.tanh(f + 1), lambda f: np.tanh(f - 1))
        >>> softer.name, float(softer.cost(np.array([2.0]))[0])
        ('custom', -2.0)
        """
        if (cost is None) != (cost_deriv is None):
            raise ValueError("give both cost and cost_deriv or neither (default: c(f) = -f)")
        if cost is None:
            cost, cost_deriv = _neg, _minus_one
        return cls(
            name=name,
            fake_deriv=fake_deriv,
            real_deriv=real_deriv,
            cost=cost,
            cost_deriv=cost_deriv,
            fake_term=fake_term,
            real_term=real_term,
        )

    # -- evaluation helpers used by the solvers --------------------------------------------------------

    def deriv(self, f: np.ndarray, n_fake: int) -> np.ndarray:
        r"""Pointwise :math:`\ell'` on the training set: fake terms on ``f[:n_fake]``, real terms after.

        Returns the unweighted derivatives (multiply by ``1/N`` and ``1/M`` to get :math:`\partial L /
        \partial f(z)`).  Raises ``FloatingPointError`` if the callable returns non-finite values.
        """
        out = np.empty_like(f)
        out[:n_fake] = self.fake_deriv(f[:n_fake])
        out[n_fake:] = self.real_deriv(f[n_fake:])
        if not np.isfinite(out).all():
            raise FloatingPointError(f"loss {self.name!r}: a derivative is not finite")
        return out

    def value(self, f_fake, f_real) -> float:
        r""":math:`L = \operatorname{mean}\ell_{\mathrm{fake}}(f(x)) + \operatorname{mean}\ell_{\mathrm{real}}(f(y))`."""
        if self.fake_term is None or self.real_term is None:
            raise ValueError(f"loss {self.name!r} was given without fake_term/real_term, so L has no value")
        return float(np.mean(self.fake_term(np.asarray(f_fake, float)))
                     + np.mean(self.real_term(np.asarray(f_real, float))))

    def quadratic_params(self) -> tuple[float, float, float, float]:
        r"""``(kappa_fake, rho_fake, kappa_real, rho_real)`` of a ``"quadratic"`` loss (see Notes above)."""
        if self.closed_form != "quadratic":
            raise ValueError(f"loss {self.name!r} is not quadratic")
        z, o = np.zeros(1), np.ones(1)
        kf = float(self.fake_deriv(o)[0] - self.fake_deriv(z)[0])
        kr = float(self.real_deriv(o)[0] - self.real_deriv(z)[0])
        if not (kf > 0 and kr > 0):
            raise ValueError(f"loss {self.name!r}: quadratic slopes must be > 0, got {kf}, {kr}")
        return kf, -float(self.fake_deriv(z)[0]) / kf, kr, -float(self.real_deriv(z)[0]) / kr

    def linear_params(self) -> tuple[float, float]:
        """``(g_fake, g_real)``: the constant derivatives of a ``"linear"`` loss."""
        if self.closed_form != "linear":
            raise ValueError(f"loss {self.name!r} is not linear")
        z = np.zeros(1)
        return float(self.fake_deriv(z)[0]), float(self.real_deriv(z)[0])


def _neg(f):
    return -np.asarray(f, dtype=np.float64)


def _minus_one(f):
    return np.full(np.shape(f), -1.0)


def _one(f):
    return np.ones(np.shape(f))


def _ident(f):
    return np.asarray(f, dtype=np.float64).copy()


IPM = Loss(
    name="ipm",
    fake_term=_ident,
    real_term=_neg,
    fake_deriv=_one,
    real_deriv=_minus_one,
    cost=_neg,
    cost_deriv=_minus_one,
    closed_form="linear",
)

LSGAN = Loss(
    name="lsgan",
    fake_term=lambda f: (f + 1.0) ** 2,
    real_term=lambda f: (f - 1.0) ** 2,
    fake_deriv=lambda f: 2.0 * (f + 1.0),
    real_deriv=lambda f: 2.0 * (f - 1.0),
    cost=lambda f: np.square(f),
    cost_deriv=lambda f: 2.0 * np.asarray(f, dtype=np.float64),
    closed_form="quadratic",
)

VANILLA = Loss(
    name="vanilla",
    fake_term=_softplus,  # -log sigma(-f)
    real_term=lambda f: _softplus(-f),  # -log sigma(f)
    fake_deriv=expit,  # sigma(f)
    real_deriv=lambda f: -expit(-f),  # -sigma(-f)
    cost=lambda f: _softplus(-f),  # non-saturating: -log sigma(f)
    cost_deriv=lambda f: -expit(-f),
)

HINGE = Loss(
    name="hinge",
    fake_term=lambda f: np.maximum(1.0 + f, 0.0),
    real_term=lambda f: np.maximum(1.0 - f, 0.0),
    fake_deriv=lambda f: (1.0 + f > 0).astype(np.float64),
    real_deriv=lambda f: -((1.0 - f > 0).astype(np.float64)),
    cost=_neg,
    cost_deriv=_minus_one,
)

#: The losses known by name.  Update the module docstring's table at the same time.
LOSSES: dict[str, Loss] = {loss.name: loss for loss in (IPM, LSGAN, VANILLA, HINGE)}


def get_loss(loss) -> Loss:
    """Resolve ``loss`` (a name in :data:`LOSSES` or a :class:`Loss`) to a :class:`Loss`.

    Raises
    ------
    ValueError
        For an unknown name (the message lists :data:`LOSSES`) or another type.
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"loss must be one of {sorted(LOSSES)} or an ntkgan.discriminator.Loss, got {loss!r}")
