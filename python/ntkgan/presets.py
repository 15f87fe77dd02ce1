r"""Run configuration: one plain dataclass :class:`Config` and the paper's presets by name.

:func:`make_config` builds a :class:`Config` from three preset names and explicit options:

.. code-block:: python

    cfg = make_config(loss="inf_ipm", arch="relu", data="eight_gaussians", steps=2000, seed=3)

Precedence.  The loss preset is applied first, then the data preset, then the architecture preset (the
order of the original toolkit's ``parse_args``; a later preset wins), and **the explicit options last**:
an option you pass always wins over every preset.  (The original code applies presets *after* the command
line, so presets silently override explicit values; ntkgan does the reverse.)

Step-size convention.  ``eta`` is the paper's particle step on the *mean* generator loss,

.. math::
    x_i \leftarrow x_i - \eta\, \nabla_{x_i}\Big[\frac1N \sum_{l=1}^N c(f(x_l))\Big]
        = x_i - \frac{\eta}{N}\, \nabla c(f(x_i)),

with the discriminator's training set held fixed, so the per-particle step is :math:`\eta / N`
(``eta = 1000`` with ``N = 500`` moves each particle by :math:`2\,\nabla c`).  The presets carry the
paper's values of :math:`\eta` unchanged.  Kernel-coupled particles use the same :math:`\eta`:
:math:`x_i \leftarrow x_i - (\eta/N)\sum_j \Theta_{ij} \nabla c(f(x_j))`, which is the free flow for
:math:`\Theta = I`.

Finite-width discriminator steps.  The original ``train.py`` runs ``nb_d_steps`` (default 1) SGD steps per
iteration and ignores the integration time ``T``.  ntkgan matches the integration time instead:
``d_steps=None`` (the default) means ``round(t / d_lr)`` full-batch gradient steps of size ``d_lr`` per
generator step, i.e. training time :math:`T = t` as in the infinite-width theory (10 steps for ``ipm``,
``ipm_reset`` and ``lsgan``).  Pass ``d_steps=1`` to reproduce ``train.py``'s default.

References
----------
.. [1] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022 (code: emited/gantk2,
       ``gantk2/args/exp_configs.py``).
.. [2] Durr, Mroueh, Tu, Wang. Effective Dynamics of Generative Adversarial Networks. Phys. Rev. X 13,
       041004 (2023).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ntkgan._validation import KINDS, check_int, check_real
from ntkgan.arch import Mlp

__all__ = [
    "ARCH_PRESETS",
    "COUPLINGS",
    "DATA_PRESETS",
    "DISCRIMINATORS",
    "LOSS_PRESETS",
    "THETAS",
    "Config",
    "make_config",
]

#: ``phi(x) = 0.5 erf(x / 2.4020563531719796) + 0.5``, the toolkit's ``sigmoid_like``.
_SIGMOID_LIKE = {"name": "erf", "a": 0.5, "b": 1.0 / 2.4020563531719796, "c": 0.5}

#: Loss presets: discriminator loss family, infinite or finite network, and the paper's step sizes.
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "inf_ipm": {"d_loss": "ipm", "discriminator": "infinite", "eta": 1000.0, "t": 1.0, "d_f0": "zero"},
    "inf_lsgan": {"d_loss": "lsgan", "discriminator": "infinite", "eta": 1000.0, "t": 1.0, "d_f0": "zero"},
    # the paper's two vanilla solvers: its Lambert-W eigenbasis approximation, and the exact kernel flow
    "inf_vanilla": {"d_loss": "vanilla", "discriminator": "infinite", "eta": 1000.0, "t": 1.0, "d_f0": "zero",
                    "d_method": "lambertw"},
    "inf_vanilla_ode": {"d_loss": "vanilla", "discriminator": "infinite", "eta": 1000.0, "t": 1.0,
                        "d_f0": "zero", "d_method": "ode"},
    "ipm": {"d_loss": "ipm", "discriminator": "persistent", "eta": 100.0, "t": 0.1, "d_lr": 0.01,
            "d_f0": "zero"},
    "ipm_reset": {"d_loss": "ipm", "discriminator": "reset", "eta": 1000.0, "t": 1.0, "d_lr": 0.1,
                  "d_f0": "zero"},
    "lsgan": {"d_loss": "lsgan", "discriminator": "persistent", "eta": 1.0, "t": 1.0, "d_lr": 0.1,
              "d_f0": "random"},
}

#: Architecture presets of the discriminator (``d_depth`` = number of hidden activations).
ARCH_PRESETS: dict[str, dict[str, Any]] = {
    "relu": {"d_depth": 3, "d_activation": "relu", "d_width": 128, "d_w_std": 1.0, "d_b_std": 1.0,
             "d_kind": "ntk"},
    "relu_nobias": {"d_depth": 3, "d_activation": "relu", "d_width": 128, "d_w_std": 1.0, "d_b_std": 0.0,
                    "d_kind": "ntk"},
    "relu_highbias": {"d_depth": 3, "d_activation": "relu", "d_width": 128, "d_w_std": 1.0, "d_b_std": 4.0,
                      "d_kind": "ntk"},
    # exp(-gamma |x - y|^2 / d): the NNGP of one rbf layer; the toolkit's preset also forces T = 1.
    "rbf": {"d_depth": 1, "d_activation": {"name": "rbf", "gamma": 0.5}, "d_width": 512, "d_w_std": 1.0,
            "d_b_std": 0.0, "d_kind": "nngp", "t": 1.0},
    "sigmoid": {"d_depth": 3, "d_activation": dict(_SIGMOID_LIKE), "d_width": 128, "d_w_std": 1.0,
                "d_b_std": 0.2, "d_kind": "ntk"},
}

#: Data presets (the toolkit's ``mnist``/``celeba`` force eta 100, T 1000; ``digits`` stands in for them).
DATA_PRESETS: dict[str, dict[str, Any]] = {
    "eight_gaussians": {"data": "eight_gaussians", "n_source": 500, "n_target": 500},
    "density": {"data": "density", "n_source": 500, "n_target": 500},
    "ab": {"data": "ab", "n_source": 500, "n_target": 500},
    "digits": {"data": "digits", "n_source": 1024, "n_target": 1024, "eta": 100.0, "t": 1000.0},
}

DISCRIMINATORS = ("infinite", "persistent", "reset")
COUPLINGS = ("free", "generator", "kernel")
THETAS = ("identity", "two_number", "ntk")
TWO_NUMBER_FORMS = ("offdiag", "plus_ones")
D_LOSSES = ("ipm", "lsgan", "vanilla", "hinge")
F0S = ("zero", "random")
OPTIMIZERS = ("sgd", "adam")
LATENTS = ("gaussian", "sphere")
D_DTYPES = ("float64", "float32")


@dataclass
class Config:
    r"""Every option of a run; the defaults equal ``make_config()`` (inf_ipm / relu / eight_gaussians).

    Plain values only (str, int, float, bool, None, dict for activations), so :meth:`to_dict` is JSON and
    YAML serialisable and :meth:`from_dict` rebuilds the same config.  Validated on construction.

    Attributes
    ----------
    loss, arch : str
        Names of the loss and architecture presets it was built from (informative; a name of ``""`` means
        none).
    data : str
        Dataset name for :func:`ntkgan.datasets.load` (``"eight_gaussians"``, ``"image:PATH"``, ...).
    n_source, n_target : int or None
        Sample sizes (None: the dataset's default).  ``n_source`` is the number of particles.
    target_batch : int
        Target points shown to the discriminator each step; 0 = the whole target set (the paper).
    seed : int
        Seeds the dataset and the flow (initialisations, latent codes, batches).
    steps, log_every, checkpoint_every : int
        Generator steps of a run (default 50 000), metrics period (100), checkpoint period (1 000; the
        runner also checkpoints after every minute of work).
    backend : str or None
        Kernel backend (``"rust"``, ``"jax"``; None = default).
    eta : float
        Particle step on the mean loss (per particle :math:`\eta/N`, see the module notes).
    d_loss : {"ipm", "lsgan", "vanilla", "hinge"}
        Discriminator loss family (gives the generator cost :math:`c`).
    discriminator : {"infinite", "persistent", "reset"}
        Infinite width (re-solved from :math:`f_0` each step), or a finite network kept across steps or
        re-initialised every step.
    t : float
        Discriminator training time per generator step.
    d_lr : float
        Gradient step of a finite discriminator.
    d_steps : int or None
        Gradient steps per generator step of a finite discriminator (None: ``round(t / d_lr)``).
    d_f0 : {"zero", "random"}
        Initial discriminator: antisymmetric (:math:`f_0 = 0`) or a plain random network / NNGP draw.
    d_kind : {"ntk", "nngp"}
        Kernel of an infinite-width discriminator (``"nngp"``: only the readout trains, e.g. ``rbf``).
    d_method : str or None
        Infinite-width solver (see :func:`ntkgan.discriminator.train_discriminator`); None = auto.
    d_depth, d_activation, d_width, d_w_std, d_b_std, d_parameterization
        The discriminator :class:`~ntkgan.arch.Mlp` (width only matters at finite width).
    d_grad_penalty : float
        Gradient penalty :math:`\lambda \ge 0` of a finite discriminator (``"persistent"`` or ``"reset"``):
        its loss gets :math:`\lambda \frac{1}{N+M}\sum_{z}\|\nabla_x f(z)\|^2` over the fake and real
        samples (:class:`~ntkgan.discriminator._finite.FiniteDiscriminator`).  0 = none; > 0 is refused
        with ``discriminator="infinite"``.
    d_dtype : {"float64", "float32"}
        Floating-point type of a finite discriminator's parameters and passes (``"float32"``: the precision
        of the paper's JAX code, about twice as fast; infinite-width discriminators are float64 only).
    coupling : {"free", "generator", "kernel"}
        Free particles, a generator network, or kernel-coupled particles.
    theta : {"identity", "two_number", "ntk"}
        Coupling kernel of ``coupling="kernel"``.
    g1, g2 : float
        The two numbers; ``two_number_form="offdiag"``: :math:`\Theta_{ii} = g_1`, :math:`\Theta_{i\ne j} =
        g_2`; ``"plus_ones"``: :math:`\Theta = g_1 I + g_2 \mathbf 1\mathbf 1^\top`.
    gen_latent_dim, gen_depth, gen_activation, gen_width, gen_w_std, gen_b_std, gen_parameterization
        The generator :class:`~ntkgan.arch.Mlp` (``coupling="generator"``, and ``theta="ntk"``).
    gen_latent : {"gaussian", "sphere"}
        Latent codes :math:`N(0, I)` or uniform on the sphere of radius :math:`\sqrt{\text{latent dim}}`.
    gen_optimizer : {"sgd", "adam"}
    gen_lr : float
        Generator learning rate (on :math:`\operatorname{mean}_z c(f(g_\theta(z)))`).  The paper's presets
        use no generator; the default 1.0 (SGD) is stable for the default ReLU generator (NTK
        parameterization) against ``inf_ipm``; use about 0.01 with Adam.
    gen_fresh_z : bool
        Draw a fresh latent batch every step (else fixed codes, one per particle).
    gen_batch : int or None
        Latent batch size with fresh codes (None: ``n_source``).
    extra : dict
        Free-form JSON-serialisable values for tools built on top (ignored by the flows).
    """

    loss: str = "inf_ipm"
    arch: str = "relu"
    data: str = "eight_gaussians"
    n_source: int | None = 500
    n_target: int | None = 500
    target_batch: int = 0
    seed: int = 0
    steps: int = 50_000
    log_every: int = 100
    checkpoint_every: int = 1_000
    backend: str | None = None
    eta: float = 1000.0
    # discriminator
    d_loss: str = "ipm"
    discriminator: str = "infinite"
    t: float = 1.0
    d_lr: float = 0.1
    d_steps: int | None = None
    d_f0: str = "zero"
    d_kind: str = "ntk"
    d_method: str | None = None
    d_depth: int = 3
    d_activation: Any = "relu"
    d_width: int = 128
    d_w_std: float = 1.0
    d_b_std: float = 1.0
    d_parameterization: str = "ntk"
    d_grad_penalty: float = 0.0
    d_dtype: str = "float64"
    # coupling
    coupling: str = "free"
    theta: str = "identity"
    g1: float = 1.0
    g2: float = 0.0
    two_number_form: str = "offdiag"
    # generator (coupling="generator", theta="ntk")
    gen_latent_dim: int = 64
    gen_latent: str = "gaussian"
    gen_depth: int = 3
    gen_activation: Any = "relu"
    gen_width: int = 512
    gen_w_std: float = 1.0
    gen_b_std: float = 1.0
    gen_parameterization: str = "ntk"
    gen_optimizer: str = "sgd"
    gen_lr: float = 1.0
    gen_fresh_z: bool = False
    gen_batch: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        _validate(self)

    # -- serialisation -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every option (JSON/YAML serialisable; activations as str or dict)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """Rebuild a config from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            Unknown option names (listing the known ones) or invalid values.
        """
        if not isinstance(d, dict):
            raise ValueError(f"d must be a dict, got {type(d).__name__}")
        _check_names(d)
        return cls(**d)

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    # -- derived objects -----------------------------------------------------------------------------

    @property
    def n_d_steps(self) -> int:
        """Gradient steps per generator step of a finite discriminator: ``d_steps`` or ``round(t / d_lr)``."""
        return self.d_steps if self.d_steps is not None else int(round(self.t / self.d_lr))

    def discriminator_arch(self) -> Mlp:
        """The discriminator :class:`~ntkgan.arch.Mlp` (the ``d_`` network options)."""
        return self.network("d_")

    def generator_arch(self) -> Mlp:
        """The generator :class:`~ntkgan.arch.Mlp` (the ``gen_`` network options; its readout maps to the data
        dimension)."""
        return self.network("gen_")

    def network(self, prefix: str) -> Mlp:
        """The :class:`~ntkgan.arch.Mlp` spelled by the options ``prefix + field`` for each field of
        :data:`NETWORK_OPTIONS` (``prefix`` one of :data:`NETWORKS`)."""
        return _network(self, prefix)


#: The options of a :class:`Config` that describe a network: the fields of :class:`~ntkgan.arch.Mlp`, each
#: spelled after a prefix of :data:`NETWORKS` (``d_depth``, ``gen_w_std``, ...).  They stay flat options, so
#: that ``--set d_b_std=0``, presets and ``config.json`` name them directly.
NETWORK_OPTIONS = tuple(f.name for f in dataclasses.fields(Mlp))
#: Prefix of each network's options -> the network.
NETWORKS = {"d_": "discriminator", "gen_": "generator"}


def _network(c: Config, prefix: str) -> Mlp:
    """Build the network of ``prefix``; errors name the option (``d_depth must be ...``)."""
    spec = {name: getattr(c, prefix + name) for name in NETWORK_OPTIONS}
    activation = spec["activation"]
    if not (isinstance(activation, str) or (isinstance(activation, dict) and isinstance(activation.get("name"), str))):
        raise ValueError(f"{prefix}activation must be a name or a dict {{'name': ..., **params}}, got {activation!r}")
    spec["activation"] = dict(activation) if isinstance(activation, dict) else activation
    try:
        return Mlp(**spec)
    except ValueError as exc:
        msg = str(exc)
        named = next((name for name in NETWORK_OPTIONS if msg.startswith(f"{name} ")), None)
        raise ValueError(prefix + msg if named else f"{prefix}activation: {msg}") from None


_FIELDS = tuple(f.name for f in dataclasses.fields(Config))


def _check_names(options: dict) -> None:
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known options: {', '.join(_FIELDS)}")


def _validate(c: Config) -> None:
    """Check types, ranges and combinations; coerce numbers to float/int in place."""
    def choice(name, allowed):
        v = getattr(c, name)
        if v not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {v!r}")

    def integer(name, lo, *, optional=False):
        setattr(c, name, check_int(getattr(c, name), name, lo, optional=optional))

    def real(name, *, positive=False, nonneg=False):
        setattr(c, name, check_real(getattr(c, name), name, positive=positive, nonneg=nonneg))

    for name in ("loss", "arch", "data"):
        if not isinstance(getattr(c, name), str):
            raise ValueError(f"{name} must be a string, got {getattr(c, name)!r}")
    if not c.data:
        raise ValueError("data must name a dataset, got ''")
    integer("n_source", 1, optional=True)
    integer("n_target", 1, optional=True)
    integer("target_batch", 0)
    integer("seed", 0)
    integer("steps", 0)
    integer("log_every", 1)
    integer("checkpoint_every", 1)
    if c.backend is not None:
        from ntkgan.backends import BACKENDS

        if c.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or None, got {c.backend!r}")
    real("eta", nonneg=True)
    choice("d_loss", D_LOSSES)
    choice("discriminator", DISCRIMINATORS)
    real("t", nonneg=True)
    real("d_lr", positive=True)
    integer("d_steps", 0, optional=True)
    choice("d_f0", F0S)
    choice("d_kind", KINDS)
    if c.d_method is not None and not isinstance(c.d_method, str):
        raise ValueError(f"d_method must be a string or None, got {c.d_method!r}")
    real("d_grad_penalty", nonneg=True)
    choice("d_dtype", D_DTYPES)
    choice("coupling", COUPLINGS)
    choice("theta", THETAS)
    real("g1")
    real("g2")
    choice("two_number_form", TWO_NUMBER_FORMS)
    integer("gen_latent_dim", 1)
    choice("gen_latent", LATENTS)
    choice("gen_optimizer", OPTIMIZERS)
    real("gen_lr", nonneg=True)
    if not isinstance(c.gen_fresh_z, bool):
        raise ValueError(f"gen_fresh_z must be a bool, got {c.gen_fresh_z!r}")
    integer("gen_batch", 1, optional=True)
    if not isinstance(c.extra, dict):
        raise ValueError(f"extra must be a dict, got {c.extra!r}")
    # each network builds (Mlp validates its fields; unknown activation names, bad parameters); the checked
    # numbers are written back as int / float
    for prefix in NETWORKS:
        net = _network(c, prefix)
        for name in ("depth", "width", "w_std", "b_std"):
            setattr(c, prefix + name, getattr(net, name))
    # combinations
    if c.discriminator == "infinite" and c.d_grad_penalty > 0:
        raise ValueError(f"d_grad_penalty applies to a finite-width discriminator ('persistent' or 'reset'), "
                         f"got d_grad_penalty={c.d_grad_penalty!r} with discriminator='infinite'")
    if c.discriminator == "infinite" and c.d_dtype != "float64":
        raise ValueError(f"d_dtype applies to a finite-width discriminator ('persistent' or 'reset'); "
                         f"infinite-width discriminators are float64, got d_dtype={c.d_dtype!r}")
    if c.discriminator != "infinite":
        if c.d_kind != "ntk":
            raise ValueError(
                f"a finite-width discriminator (discriminator={c.discriminator!r}) trains the whole network, "
                f"so it needs d_kind='ntk'; got d_kind={c.d_kind!r} (the 'rbf' preset is an NNGP kernel and "
                "works with the infinite-width losses inf_ipm, inf_lsgan, inf_vanilla only)"
            )
        if c.d_method is not None:
            raise ValueError(f"d_method applies to discriminator='infinite' only, "
                             f"got d_method={c.d_method!r}")
        if c.n_d_steps < 1 and c.t > 0:
            raise ValueError(f"t / d_lr = {c.t} / {c.d_lr} rounds to 0 discriminator steps; set d_steps")


def make_config(loss: str = "inf_ipm", arch: str = "relu", data: str = "eight_gaussians",
                **overrides) -> Config:
    r"""A :class:`Config` from preset names, then explicit options (which win).

    Parameters
    ----------
    loss : str, default="inf_ipm"
        One of :data:`LOSS_PRESETS`.
    arch : str, default="relu"
        One of :data:`ARCH_PRESETS`.
    data : str, default="eight_gaussians"
        One of :data:`DATA_PRESETS`, or any other :func:`ntkgan.datasets.load` name (``"gmm:4"``,
        ``"image:PATH"``, ``"modes_1d"``...), which then only sets ``data`` (sizes: the dataset's defaults).
    **overrides
        Any :class:`Config` field; applied after all presets.  ``None`` is a value here (e.g.
        ``d_steps=None``), not "unset".

    Returns
    -------
    Config

    Raises
    ------
    ValueError
        Unknown preset or option names (listing the known ones), invalid values, or invalid combinations
        (a finite-width loss ``ipm``/``ipm_reset``/``lsgan`` with the ``rbf`` NNGP kernel).

    Examples
    --------
    >>> cfg = make_config("ipm", "relu_nobias", steps=10)
    >>> cfg.eta, cfg.t, cfg.d_lr, cfg.n_d_steps, cfg.discriminator, cfg.d_b_std, cfg.steps
    (100.0, 0.1, 0.01, 10, 'persistent', 0.0, 10)
    """
    if loss not in LOSS_PRESETS:
        raise ValueError(f"unknown loss preset {loss!r}; known: {', '.join(LOSS_PRESETS)}")
    if arch not in ARCH_PRESETS:
        raise ValueError(f"unknown arch preset {arch!r}; known: {', '.join(ARCH_PRESETS)}")
    if not isinstance(data, str):
        raise ValueError(f"data must be a string, got {data!r}")
    if data not in DATA_PRESETS:
        from ntkgan.datasets import DATASETS, PREFIXES

        if data not in DATASETS and not any(data.startswith(p) for p in PREFIXES):
            raise ValueError(f"unknown data preset or dataset {data!r}; presets: {', '.join(DATA_PRESETS)}; "
                             f"datasets: {', '.join(DATASETS)}; prefixes: {', '.join(PREFIXES)}")
    _check_names(overrides)
    options: dict[str, Any] = {"loss": loss, "arch": arch}
    options.update(LOSS_PRESETS[loss])
    options.update(DATA_PRESETS.get(data, {"data": data, "n_source": None, "n_target": None}))
    options.update(ARCH_PRESETS[arch])
    options.update(overrides)
    options = json.loads(json.dumps(options))  # deep copy of the nested activation dicts
    return Config(**options)
