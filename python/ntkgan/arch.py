"""The one description of a fully-connected network, shared by every backend.

``Mlp(depth, activation, w_std, b_std, parameterization, width)`` is the network

.. code-block:: text

    Dense(width, w_std, b_std) -> [activation -> Dense(width, w_std, b_std)] * (depth - 1)
        -> activation -> Dense(1, w_std, b_std=0)

i.e. ``depth`` activations and ``depth + 1`` dense layers, the readout mapping to one output without bias
(Franceschi et al. 2022, toolkit ``models/mlp.py``).  It equals, exactly, the neural-tangents network
``stax.serial(Dense(width, w_std, b_std, p), *[act, Dense(width, w_std, b_std, p)] * (depth - 1), act,
Dense(1, w_std, 0.0, p))`` returned by :meth:`Mlp.to_stax`.

Kernel recursion (neural-tangents conventions, Lee et al. 2019; Jacot et al. 2018)
----------------------------------------------------------------------------------
Inputs enter as ``Sigma0(x, y) = <x, y> / d`` and ``Theta0 = 0``.  A dense layer with the ``"ntk"``
parameterization maps ``Sigma <- w_std**2 Sigma + b_std**2`` and ``Theta <- Sigma_new + w_std**2 Theta``;
with ``"standard"`` it maps ``Theta <- n_in Sigma_old + 1 + w_std**2 Theta`` (``n_in`` = d for the first
layer, ``width`` after; the ``+ 1`` is the bias gradient and is there even when ``b_std == 0``, as in
neural-tangents; the readout has ``b_std = 0``) then ``Sigma <- w_std**2 Sigma + b_std**2``.
Each activation maps ``(Sigma_xx, Sigma_yy, Sigma_xy, Theta)`` through its dual (see the activation
classes).  The NTK is the final ``Theta``, the NNGP the final ``Sigma``.

References
----------
.. [1] Jacot, Gabriel, Hongler. Neural Tangent Kernel. NeurIPS 2018.
.. [2] Lee et al. Wide neural networks of any depth evolve as linear models. NeurIPS 2019.
.. [3] Cho, Saul. Kernel methods for deep learning. NeurIPS 2009.
.. [4] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from ntkgan._validation import check_int, check_real

__all__ = [
    "ACTIVATIONS",
    "ABRelu",
    "Abs",
    "Activation",
    "Erf",
    "Gelu",
    "Identity",
    "LeakyRelu",
    "Mlp",
    "Rbf",
    "Relu",
    "Sigmoid",
    "Sin",
    "parse_activation",
]

PARAMETERIZATIONS = ("ntk", "standard")


class Activation:
    """Base class of activations: a pointwise phi with a closed-form dual kernel map."""

    #: backends that implement this activation's kernel
    backends: tuple[str, ...] = ("rust", "jax")

    def rust_spec(self) -> tuple[str, tuple[float, ...]]:
        """``(name, params)`` understood by ``ntkgan._core``; raises for JAX-only activations."""
        raise ValueError(
            f"activation {self!r} is not implemented in the rust backend; "
            f"use backend='jax' (available for: {', '.join(self.backends)})"
        )

    def to_stax(self):  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def numpy_fn(self, x):
        """phi(x) evaluated with numpy (used by finite-width networks)."""
        raise ValueError(f"activation {self!r} has no numpy implementation")

    def numpy_deriv(self, x):
        """phi'(x) evaluated with numpy (used by finite-width networks)."""
        raise ValueError(f"activation {self!r} has no numpy implementation")

    #: True when phi'' is identically 0 (piecewise linear): the gradient penalty's double backprop skips it
    piecewise_linear: bool = False
    #: True when phi(c x) = c phi(x) for c > 0: bias-free networks then have homogeneous kernels
    positively_homogeneous: bool = False

    def numpy_deriv2(self, x):
        """phi''(x) evaluated with numpy (used by the gradient penalty's double backprop)."""
        raise ValueError(
            f"activation {self!r} has no second derivative, which the gradient penalty needs "
            "(give the activation a numpy_deriv2(x) method, or use grad_penalty=0)"
        )


@dataclass(frozen=True)
class ABRelu(Activation):
    r"""``phi(x) = a * min(x, 0) + b * max(x, 0)`` (the ReLU family).

    Dual map, with :math:`s = \sqrt{\Sigma_{xx}\Sigma_{yy} - \Sigma_{xy}^2}` and
    :math:`\theta = \operatorname{atan2}(s, \Sigma_{xy})` (the angle between the two inputs):

    .. math::
        \dot\Sigma = \frac{a^2+b^2}{2} - \frac{(a-b)^2}{2\pi}\theta, \quad
        \Sigma'_{xy} = \frac{(a-b)^2}{2\pi} s + \dot\Sigma\,\Sigma_{xy}, \quad
        \Sigma'_{xx} = \frac{a^2+b^2}{2}\Sigma_{xx}, \quad \Theta' = \dot\Sigma\,\Theta.

    At ``theta = 0`` (x = y) ``Sigma_dot = (a^2+b^2)/2``; at a zero-variance input (s = Sigma_xy = 0)
    theta is taken as pi/2 (neural-tangents' fill value).  The map has a cusp at ``s = 0``: its input
    gradient is defined with ``ds/d(.) = 0`` there (neural-tangents' safe sqrt), which gives
    ``d/dx k(x, y)|_{y=x} = 1/2 d/dx [k(x, x)]``.
    """

    a: float = 0.0
    b: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "a", check_real(self.a, "ABRelu.a"))
        object.__setattr__(self, "b", check_real(self.b, "ABRelu.b"))

    def rust_spec(self):
        return ("abrelu", (self.a, self.b))

    def to_stax(self):
        from neural_tangents import stax

        return stax.ABRelu(self.a, self.b)

    def numpy_fn(self, x):
        import numpy as np

        return self.a * np.minimum(x, 0.0) + self.b * np.maximum(x, 0.0)

    def numpy_deriv(self, x):
        import numpy as np

        return np.where(x > 0, self.b, self.a)

    piecewise_linear = True
    positively_homogeneous = True

    def numpy_deriv2(self, x):
        """0: piecewise linear (the kink's Dirac mass is dropped, as autodiff does)."""
        import numpy as np

        return np.zeros_like(np.asarray(x, dtype=np.float64))


def Relu() -> ABRelu:
    """``max(x, 0)`` = ``ABRelu(0, 1)``; dual: the arc-cosine kernel of degree 1 (Cho & Saul 2009)."""
    return ABRelu(0.0, 1.0)


def LeakyRelu(alpha: float = 0.2) -> ABRelu:
    """``alpha * min(x, 0) + max(x, 0)`` = ``ABRelu(alpha, 1)``."""
    return ABRelu(check_real(alpha, "leaky_relu.alpha"), 1.0)


def Abs() -> ABRelu:
    """``|x|`` = ``ABRelu(-1, 1)``."""
    return ABRelu(-1.0, 1.0)


def Identity() -> ABRelu:
    """``x`` = ``ABRelu(1, 1)`` (the network is then linear)."""
    return ABRelu(1.0, 1.0)


@dataclass(frozen=True)
class Erf(Activation):
    r"""``phi(x) = a * erf(b * x) + c``.

    Dual map (Williams 1997), after scaling ``Sigma, Theta <- b^2 Sigma, b^2 Theta``, with
    :math:`r = \sqrt{(1+2\Sigma_{xx})(1+2\Sigma_{yy}) - 4\Sigma_{xy}^2}` (always >= 1):

    .. math::
        \Sigma'_{xy} = a^2\frac{2}{\pi}\operatorname{atan2}(2\Sigma_{xy}, r) + c^2, \quad
        \Sigma'_{xx} = a^2\frac{2}{\pi}\operatorname{atan2}(\Sigma_{xx}, \sqrt{\Sigma_{xx}+1/4}) + c^2, \quad
        \Theta' = a^2\frac{4}{\pi r}\Theta.

    Smooth everywhere (no cusp).
    """

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def __post_init__(self):
        for name in ("a", "b", "c"):
            object.__setattr__(self, name, check_real(getattr(self, name), f"Erf.{name}"))

    def rust_spec(self):
        return ("erf", (self.a, self.b, self.c))

    def to_stax(self):
        from neural_tangents import stax

        return stax.Erf(self.a, self.b, self.c)

    def numpy_fn(self, x):
        from scipy.special import erf

        return self.a * erf(self.b * x) + self.c

    def numpy_deriv(self, x):
        import numpy as np

        return self.a * self.b * 2.0 / math.sqrt(math.pi) * np.exp(-((self.b * x) ** 2))

    def numpy_deriv2(self, x):
        """:math:`-2 b^2 x\\,\\phi'(x) = -\\tfrac{4 a b^3}{\\sqrt\\pi}\\, x\\, e^{-b^2 x^2}`."""
        import numpy as np

        a, b = self.a, self.b
        k = a * b * 2.0 / math.sqrt(math.pi)
        return (-2.0 * b * b * k) * x * np.exp(-((b * x) ** 2))


def Sigmoid() -> Erf:
    """The toolkit's ``sigmoid_like``: ``0.5 * erf(x / 2.4020563531719796) + 0.5``."""
    return Erf(0.5, 1.0 / 2.4020563531719796, 0.5)


@dataclass(frozen=True)
class Rbf(Activation):
    r"""``phi(x) = sqrt(2) * sin(sqrt(2 gamma) x + pi/4)``, whose dual is the Gaussian kernel.

    .. math::
        \Sigma'_{xy} = \exp(-\gamma(\Sigma_{xx} + \Sigma_{yy} - 2\Sigma_{xy})), \quad \Sigma'_{xx} = 1,
        \quad \Theta' = 2\gamma\,\Sigma'_{xy}\,\Theta.

    One layer with ``b_std = 0`` and ``w_std = 1`` gives the NNGP ``exp(-gamma |x - y|^2 / d)``.
    """

    gamma: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "gamma", check_real(self.gamma, "Rbf.gamma", positive=True))

    def rust_spec(self):
        return ("rbf", (self.gamma,))

    def to_stax(self):
        from neural_tangents import stax

        return stax.Rbf(self.gamma)

    def numpy_fn(self, x):
        import numpy as np

        return math.sqrt(2.0) * np.sin(math.sqrt(2.0 * self.gamma) * x + math.pi / 4)

    def numpy_deriv(self, x):
        import numpy as np

        k = math.sqrt(2.0 * self.gamma)
        return math.sqrt(2.0) * k * np.cos(k * x + math.pi / 4)

    def numpy_deriv2(self, x):
        """:math:`-k^2 \\phi(x)`, :math:`k = \\sqrt{2\\gamma}`."""
        import numpy as np

        k = math.sqrt(2.0 * self.gamma)
        return (-math.sqrt(2.0) * k * k) * np.sin(k * x + math.pi / 4)


@dataclass(frozen=True)
class Gelu(Activation):
    """``x * Phi(x)`` (Gaussian error linear unit). JAX backend only."""

    backends = ("jax",)

    def to_stax(self):
        from neural_tangents import stax

        return stax.Gelu()

    def numpy_fn(self, x):
        from scipy.special import ndtr

        return x * ndtr(x)

    def numpy_deriv(self, x):
        import numpy as np
        from scipy.special import ndtr

        return ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    def numpy_deriv2(self, x):
        """:math:`(2 - x^2)\\, e^{-x^2/2} / \\sqrt{2\\pi}`."""
        import numpy as np

        return (2.0 - x * x) * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Sin(Activation):
    """``a * sin(b * x + c)``. JAX backend only."""

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0
    backends = ("jax",)

    def __post_init__(self):
        for name in ("a", "b", "c"):
            object.__setattr__(self, name, check_real(getattr(self, name), f"Sin.{name}"))

    def to_stax(self):
        from neural_tangents import stax

        return stax.Sin(self.a, self.b, self.c)

    def numpy_fn(self, x):
        import numpy as np

        return self.a * np.sin(self.b * x + self.c)

    def numpy_deriv(self, x):
        import numpy as np

        return self.a * self.b * np.cos(self.b * x + self.c)

    def numpy_deriv2(self, x):
        """:math:`-a b^2 \\sin(b x + c)`."""
        import numpy as np

        a, b, c = self.a, self.b, self.c
        return (-a * b * b) * np.sin(b * x + c)


#: Registry of activation names accepted by :func:`parse_activation` and :class:`Mlp`.
#: Keep the README's activation list in sync with this table.
ACTIVATIONS = {
    "relu": Relu,
    "leaky_relu": LeakyRelu,
    "abs": Abs,
    "identity": Identity,
    "abrelu": ABRelu,
    "erf": Erf,
    "sigmoid": Sigmoid,
    "sigmoid_like": Sigmoid,
    "rbf": Rbf,
    "gelu": Gelu,
    "sin": Sin,
}


ActivationLike = Union[str, Activation, tuple, dict]


def parse_activation(activation: ActivationLike) -> Activation:
    """Turn a name, ``(name, params...)``, ``{"name": ..., **params}`` or an Activation into an Activation.

    Examples
    --------
    >>> parse_activation("relu")
    ABRelu(a=0.0, b=1.0)
    >>> parse_activation(("leaky_relu", 0.1))
    ABRelu(a=0.1, b=1.0)
    >>> parse_activation({"name": "erf", "b": 2.0})
    Erf(a=1.0, b=2.0, c=0.0)
    """
    if isinstance(activation, Activation):
        return activation
    args: tuple = ()
    kwargs: dict = {}
    if isinstance(activation, str):
        name = activation
    elif isinstance(activation, tuple) and activation and isinstance(activation[0], str):
        name, args = activation[0], tuple(activation[1:])
    elif isinstance(activation, dict) and isinstance(activation.get("name"), str):
        kwargs = {k: v for k, v in activation.items() if k != "name"}
        name = activation["name"]
    else:
        raise ValueError(
            f"activation must be a name, (name, *params), {{'name': ..., **params}} or an Activation, "
            f"got {activation!r}"
        )
    key = name.strip().lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    try:
        return ACTIVATIONS[key](*args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad parameters for activation {name!r}: {exc}") from None


@dataclass(frozen=True)
class Mlp:
    """A fully-connected network: ``Dense -> [activation -> Dense] * depth``, scalar readout without bias.

    Parameters
    ----------
    depth : int, default=3
        Number of hidden activations (the toolkit's ``discr_layers``); ``depth + 1`` dense layers.
    activation : str, Activation, tuple or dict, default="relu"
        See :data:`ACTIVATIONS`; e.g. ``"relu"``, ``("leaky_relu", 0.2)``, ``Erf(a=0.5, b=0.4, c=0.5)``.
    w_std, b_std : float
        Weight and bias standard deviations (``b_std = 0`` means zero-variance biases, as in
        neural-tangents).  The readout never has a bias.
    parameterization : {"ntk", "standard"}
    width : int, default=128
        Hidden width.  Only the ``"standard"`` parameterization's kernel depends on it; finite networks
        use it.

    Examples
    --------
    >>> Mlp(depth=2, activation="erf", b_std=0.5)
    Mlp(depth=2, activation=Erf(a=1.0, b=1.0, c=0.0), w_std=1.0, b_std=0.5, parameterization='ntk', width=128)
    """

    depth: int = 3
    activation: Any = field(default="relu")
    w_std: float = 1.0
    b_std: float = 1.0
    parameterization: str = "ntk"
    width: int = 128

    def __post_init__(self):
        object.__setattr__(self, "depth", check_int(self.depth, "depth"))
        object.__setattr__(self, "activation", parse_activation(self.activation))
        object.__setattr__(self, "w_std", check_real(self.w_std, "w_std", positive=True))
        object.__setattr__(self, "b_std", check_real(self.b_std, "b_std", nonneg=True))
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}"
            )
        object.__setattr__(self, "width", check_int(self.width, "width"))

    @property
    def homogeneous(self) -> bool:
        r"""Whether the kernels are positively 1-homogeneous in each argument,
        :math:`k(a x, b y) = a b\, k(x, y)` for :math:`a, b > 0` (NNGP and NTK): a positively homogeneous
        activation (the ReLU family), ``b_std = 0`` and the ``"ntk"`` parameterization (the
        ``"standard"`` one adds a constant per layer to the NTK).  Such kernels accept inputs of any scale
        (:mod:`ntkgan._homogeneous`)."""
        return (self.activation.positively_homogeneous and self.b_std == 0
                and self.parameterization == "ntk")

    def rust_spec(self) -> dict:
        """The plain description passed to ``ntkgan._core`` (raises for JAX-only activations)."""
        name, params = self.activation.rust_spec()
        return {
            "depth": self.depth,
            "activation": name,
            "params": list(params),
            "w_std": self.w_std,
            "b_std": self.b_std,
            "standard": self.parameterization == "standard",
            "width": float(self.width),
        }

    def to_stax(self, out_dim: int = 1):
        """The equal neural-tangents network ``(init_fn, apply_fn, kernel_fn)``."""
        from neural_tangents import stax

        p = self.parameterization
        act = self.activation.to_stax
        layers = [stax.Dense(self.width, self.w_std, self.b_std, parameterization=p)]
        for _ in range(self.depth - 1):
            layers += [act(), stax.Dense(self.width, self.w_std, self.b_std, parameterization=p)]
        layers += [act(), stax.Dense(out_dim, self.w_std, 0.0, parameterization=p)]
        return stax.serial(*layers)
