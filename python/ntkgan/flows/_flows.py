r"""The flows: free particles, kernel-coupled particles, and a generator network, under one interface."""

from __future__ import annotations

import json

import numpy as np

from ntkgan import finite as _F
from ntkgan._validation import MAX_SCALE
from ntkgan.datasets import Dataset
from ntkgan.discriminator import get_loss
from ntkgan.flows._coupling import (
    generator_ntk,
    latent_codes,
    two_number_coefficients,
    two_number_step,
)
from ntkgan.flows._discriminators import DiscriminatorSource, _flatten_params, _load_params_inplace
from ntkgan.threads import blas_single_thread

__all__ = ["Flow", "GeneratorFlow", "ParticleFlow", "load_dataset", "make_flow"]

_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8


def _diverged(x: np.ndarray) -> bool:
    """Non-finite samples, or samples beyond the kernels' supported range (``_validation.MAX_SCALE``)."""
    return not np.isfinite(x).all() or (x.size > 0 and float(np.abs(x).max()) > MAX_SCALE)


def _rng_to_array(rng: np.random.Generator) -> np.ndarray:
    """The bit generator's state as a 0-d unicode array (JSON text; storable with ``allow_pickle=False``)."""
    return np.array(json.dumps(rng.bit_generator.state))


def _rng_from_array(rng: np.random.Generator, arr) -> None:
    state = json.loads(str(np.asarray(arr)[()]))
    if state.get("bit_generator") != type(rng.bit_generator).__name__:
        raise ValueError(
            f"state holds a {state.get('bit_generator')!r} RNG state but the flow uses "
            f"{type(rng.bit_generator).__name__!r}"
        )
    rng.bit_generator.state = state


def load_dataset(config) -> Dataset:
    """:func:`ntkgan.datasets.load` with the config's ``data``, ``n_source``, ``n_target`` and ``seed``."""
    from ntkgan.datasets import load

    return load(config.data, n_source=config.n_source, n_target=config.n_target, seed=config.seed)


class Flow:
    r"""A generated distribution moved toward a target by a discriminator; subclasses define the move.

    One :meth:`step`: draw the target batch, train (or re-solve) the discriminator on (current fake
    samples, target batch), then move the fake samples along :math:`-\nabla c(f)`.

    Attributes
    ----------
    config : ntkgan.presets.Config
    target : ndarray of shape (M, d)
        The whole target sample.
    rng : numpy.random.Generator
        Every random draw of the flow (initialisations, latent codes, batches).
    step_count : int
        Generator steps taken.
    discriminator : Discriminator or None
        The last discriminator (None before the first step).
    loss : ntkgan.discriminator.Loss
        The discriminator loss; ``loss.cost`` is the generator cost :math:`c`.
    """

    kind = "base"
    #: Whether whole steps run compiled on the JAX device (:mod:`ntkgan.jax_path`).
    compiled = False
    #: Why a ``backend="jax"`` flow runs the host loop instead (None otherwise).
    not_compiled: str | None = None

    def __init__(self, config, dataset: Dataset, rng: np.random.Generator):
        self.config = config
        self.target = np.ascontiguousarray(dataset.target, dtype=np.float64)
        self.dim = self.target.shape[1]
        self.rng = rng
        self.loss = get_loss(config.d_loss)
        self.step_count = 0
        self.discriminator = None
        self._disc = DiscriminatorSource(config, self.dim, rng)

    # -- to implement --------------------------------------------------------------------------------

    @property
    def particles(self) -> np.ndarray:
        """Current generated samples, shape (n, d)."""
        raise NotImplementedError

    def _step(self) -> float:
        """One generator step (subclasses); see :meth:`step`."""
        raise NotImplementedError

    def step(self) -> float:
        """One generator step; returns the generator loss, the mean of c(f(x_i)) before the move.

        Runs with one BLAS thread (:func:`ntkgan.threads.blas_single_thread`): a step alternates Rust
        kernels, which use every core, with small BLAS products, and spinning BLAS threads would take
        the cores from the Rust pool.
        """
        with blas_single_thread():
            return self._step()

    # -- shared pieces -------------------------------------------------------------------------------

    def _target_batch(self) -> np.ndarray:
        b = self.config.target_batch
        m = self.target.shape[0]
        if b == 0 or b >= m:
            return self.target
        return self.target[np.sort(self.rng.choice(m, size=b, replace=False))]

    def _train_and_force(self, fake: np.ndarray) -> tuple[float, np.ndarray]:
        """Train the discriminator on (fake, target batch); return mean c(f(fake)) and grad c(f(fake))."""
        real = self._target_batch()
        disc = self._disc.train(fake, real)
        self.discriminator = disc
        f, g = disc.value_and_grad(fake)
        cost = np.asarray(self.loss.cost(f), dtype=np.float64)
        force = np.asarray(self.loss.cost_deriv(f), dtype=np.float64)[:, None] * g
        if not (np.isfinite(cost).all() and np.isfinite(force).all()):
            raise FloatingPointError(f"the flow diverged: non-finite generator loss or gradient at step "
                                     f"{self.step_count}")
        return float(cost.mean()), force

    def run(self, n_steps: int) -> list[float]:
        """``n_steps`` calls of :meth:`step`; returns their losses."""
        return [self.step() for _ in range(int(n_steps))]

    def advance(self, n_steps: int) -> list[float]:
        """``n_steps`` generator steps; returns their losses.  The runner's unit of work between two events
        (metric rows, snapshots, checkpoints): the host flows step one by one, the compiled flows of
        :mod:`ntkgan.jax_path` run the steps as one :func:`jax.lax.scan` on the device."""
        return self.run(n_steps)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume bit-identically, as numpy arrays (``allow_pickle=False`` safe)."""
        out = {
            "flow.kind": np.array(self.kind),
            "flow.step": np.array(self.step_count, dtype=np.int64),
            "flow.rng": _rng_to_array(self.rng),
        }
        out.update(self._disc.state_dict())
        out.update(self._state())
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (from the same config); the next :meth:`step` continues the run.

        Raises
        ------
        ValueError
            A state of another flow kind, with missing keys or mismatched shapes.
        """
        state = dict(state)
        for key in ("flow.kind", "flow.step", "flow.rng"):
            if key not in state:
                raise ValueError(f"state is missing {key!r}")
        kind = str(np.asarray(state["flow.kind"])[()])
        if kind != self.kind:
            raise ValueError(f"state is of a {kind!r} flow, this flow is {self.kind!r}")
        backup = self.state_dict()
        try:
            self._restore(state)
        except Exception:
            self._restore(backup)  # leave the flow as it was
            raise
        self.discriminator = self._disc.network if self._disc.network is not None else None

    def _restore(self, state: dict) -> None:
        self._load(state)
        self._disc.load_state_dict(state)
        _rng_from_array(self.rng, state["flow.rng"])
        self.step_count = int(state["flow.step"])

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _load(self, state: dict) -> None:
        raise NotImplementedError


def _get(state: dict, key: str, shape: tuple) -> np.ndarray:
    if key not in state:
        raise ValueError(f"state is missing {key!r}")
    arr = np.array(state[key], dtype=np.float64, copy=True)
    if arr.shape != shape:
        raise ValueError(f"state[{key!r}] has shape {arr.shape}, expected {shape}")
    return arr


class ParticleFlow(Flow):
    r"""Free or kernel-coupled particles: :math:`x_i \gets x_i - (\eta/N)\sum_j\Theta_{ij}\nabla c(f(x_j))`.

    ``coupling="free"`` or ``theta="identity"``: :math:`\Theta = I` (the paper's particles).
    ``theta="two_number"``: :math:`g_1`/:math:`g_2` (see :func:`~ntkgan.flows.two_number_coefficients`),
    applied in :math:`O(Nd)`.  ``theta="ntk"``: the generator architecture's NTK at fixed latent codes
    :math:`z_i` (:func:`~ntkgan.flows.generator_ntk`), an (N, N) matrix computed once.

    Step sizes: :math:`\Theta` has eigenvalue :math:`g_1 + (N - 1) g_2` on the centre of mass (offdiag
    form), so with :math:`g_2 > 0` the cloud's mean moves about :math:`N g_2 / g_1` times faster than a free
    particle; scale ``eta`` down accordingly (the paper's ``eta = 1000`` is for :math:`\Theta = I`).  The
    same holds for ``theta="ntk"``, whose off-diagonal entries are :math:`\Theta_g(u \approx 0) > 0`.

    Attributes
    ----------
    theta : ndarray of shape (N, N) or None
        The coupling matrix for ``theta="ntk"``.
    latent : ndarray of shape (N, latent_dim) or None
        Its latent codes.
    """

    kind = "particles"

    def __init__(self, config, dataset: Dataset, rng: np.random.Generator):
        super().__init__(config, dataset, rng)
        self._x = np.array(dataset.source, dtype=np.float64, order="C", copy=True)
        n = self._x.shape[0]
        self.mode = "identity" if config.coupling == "free" else config.theta
        self.theta = None
        self.latent = None
        if self.mode == "identity":
            self._ab = two_number_coefficients(config.eta, n, 1.0, 0.0)
        elif self.mode == "two_number":
            self._ab = two_number_coefficients(config.eta, n, config.g1, config.g2, config.two_number_form)
        else:
            self.latent = latent_codes(n, config.gen_latent_dim, config.gen_latent, rng=rng)
            self.theta = generator_ntk(self.latent, config.generator_arch(), backend=config.backend)

    @property
    def particles(self) -> np.ndarray:
        return self._x

    def _step(self) -> float:
        loss, force = self._train_and_force(self._x)
        if self.theta is None:
            move = two_number_step(force, *self._ab)
        else:
            move = (self.config.eta / self._x.shape[0]) * (self.theta @ force)
        new = self._x - move
        if _diverged(new):
            raise FloatingPointError(f"particles diverged at step {self.step_count} "
                                     f"(eta={self.config.eta} too large?)")
        self._x = new
        self.step_count += 1
        return loss

    def _state(self):
        out = {"particles": self._x.copy()}
        if self.latent is not None:
            out["latent"] = self.latent.copy()
        return out

    def _load(self, state):
        self._x = _get(state, "particles", self._x.shape)
        if self.latent is not None:
            latent = _get(state, "latent", self.latent.shape)
            if not np.array_equal(latent, self.latent):
                self.latent = latent
                self.theta = generator_ntk(latent, self.config.generator_arch(), backend=self.config.backend)


class GeneratorFlow(Flow):
    r"""A generator network :math:`g_\theta` (numpy MLP) trained on :math:`\mathbb E_z c(f(g_\theta(z)))`.

    Each step: latent batch :math:`z` (the fixed codes, or a fresh batch when ``gen_fresh_z``), fake samples
    :math:`x = g_\theta(z)`, discriminator trained on (x, target batch), then

    .. math::
        \nabla_\theta \frac1B \sum_b c(f(g_\theta(z_b)))
            = \frac1B \sum_b J_\theta g(z_b)^\top \nabla c(f(x_b))

    (one vector-Jacobian product, :func:`ntkgan.finite.param_grad`) and an SGD or Adam
    (:math:`\beta_1 = 0.9`, :math:`\beta_2 = 0.999`, :math:`\epsilon = 10^{-8}`) step of size ``gen_lr``.

    :attr:`particles` are :math:`g_\theta(z_i)` at fixed evaluation codes (one per source point).
    """

    kind = "generator"

    def __init__(self, config, dataset: Dataset, rng: np.random.Generator):
        super().__init__(config, dataset, rng)
        self.arch = config.generator_arch()
        n = dataset.source.shape[0]
        self.params = _F.init_params(self.arch, config.gen_latent_dim, out_dim=self.dim, rng=rng)
        self.latent = latent_codes(n, config.gen_latent_dim, config.gen_latent, rng=rng)
        self.batch = config.gen_batch or n
        self._m = _F.tree_map(np.zeros_like, self.params)
        self._v = _F.tree_map(np.zeros_like, self.params)
        self._adam_count = 0
        self._cache = None

    @property
    def particles(self) -> np.ndarray:
        if self._cache is None:
            self._cache = _F.apply(self.arch, self.params, self.latent)
        return self._cache

    def _step(self) -> float:
        c = self.config
        if c.gen_fresh_z:
            z = latent_codes(self.batch, c.gen_latent_dim, c.gen_latent, rng=self.rng)
            x = _F.apply(self.arch, self.params, z)
        else:
            z = self.latent
            x = self.particles
        if _diverged(x):
            raise FloatingPointError(f"generator outputs diverged at step {self.step_count} "
                                     f"(gen_lr={c.gen_lr} too large?)")
        loss, force = self._train_and_force(x)
        grads = _F.param_grad(self.arch, self.params, z, force / z.shape[0])
        self._update(grads)
        self._cache = None
        self.step_count += 1
        return loss

    def _update(self, grads) -> None:
        lr = self.config.gen_lr
        if self.config.gen_optimizer == "sgd":
            self.params = _F.tree_map(lambda p, g: p - lr * g, self.params, grads)
            return
        self._adam_count += 1
        k = self._adam_count
        self._m = _F.tree_map(lambda m, g: _ADAM_B1 * m + (1 - _ADAM_B1) * g, self._m, grads)
        self._v = _F.tree_map(lambda v, g: _ADAM_B2 * v + (1 - _ADAM_B2) * g * g, self._v, grads)
        c1, c2 = 1 - _ADAM_B1**k, 1 - _ADAM_B2**k
        self.params = _F.tree_map(
            lambda p, m, v: p - lr * (m / c1) / (np.sqrt(v / c2) + _ADAM_EPS), self.params, self._m, self._v
        )

    def _state(self):
        out = {"latent": self.latent.copy(), "gen.adam_count": np.array(self._adam_count, dtype=np.int64)}
        out.update(_flatten_params(self.params, "gen.params."))
        out.update(_flatten_params(self._m, "gen.adam_m."))
        out.update(_flatten_params(self._v, "gen.adam_v."))
        return out

    def _load(self, state):
        self.latent = _get(state, "latent", self.latent.shape)
        trees = (("gen.params.", self.params), ("gen.adam_m.", self._m), ("gen.adam_v.", self._v))
        for prefix, tree in trees:
            _load_params_inplace(tree, state, prefix)
        if "gen.adam_count" not in state:
            raise ValueError("state is missing 'gen.adam_count'")
        self._adam_count = int(state["gen.adam_count"])
        self._cache = None


def make_flow(config, dataset: Dataset | None = None, *, rng: np.random.Generator | None = None) -> Flow:
    r"""The flow of ``config`` on ``dataset``: free / kernel-coupled particles or a generator network.

    Parameters
    ----------
    config : ntkgan.presets.Config
    dataset : Dataset, optional
        Source (initial particles; their count N for a generator) and target.  None:
        :func:`load_dataset` ``(config)``.
    rng : numpy.random.Generator, optional
        Every random draw of the flow; default ``numpy.random.default_rng(config.seed)``.

    Returns
    -------
    Flow
        :class:`ParticleFlow` (``coupling="free"`` or ``"kernel"``) or :class:`GeneratorFlow`; with
        ``backend="jax"`` (the config's, else ``$NTKGAN_BACKEND``) their compiled versions
        (:mod:`ntkgan.jax_path`, ``flow.compiled`` True) unless :func:`ntkgan.jax_path.unsupported` names a
        reason, which ``flow.not_compiled`` then holds (the host loop runs, with the JAX kernels).

    Raises
    ------
    ValueError
        ``config`` not a Config, ``rng`` of the wrong type, an empty dataset, or a discriminator that does not
        accept the data dimension.

    Notes
    -----
    Step-size convention (:mod:`ntkgan.presets`): ``eta`` is the paper's step on the mean loss, so a free
    particle moves by :math:`(\eta/N)\nabla c(f(x_i))`; the generator uses ``gen_lr`` on
    :math:`\operatorname{mean}_z c(f(g_\theta(z)))`.
    """
    from ntkgan.presets import Config

    if not isinstance(config, Config):
        raise ValueError(f"config must be an ntkgan.presets.Config, got {type(config).__name__}")
    if rng is None:
        rng = np.random.default_rng(config.seed)
    elif not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    if dataset is None:
        dataset = load_dataset(config)
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be an ntkgan.datasets.Dataset, got {type(dataset).__name__}")
    if dataset.source.shape[0] == 0 or dataset.target.shape[0] == 0:
        raise ValueError(f"dataset must have points on both sides, got source {dataset.source.shape}, "
                         f"target {dataset.target.shape}")
    from ntkgan import backends

    reason = None
    if backends.resolve(config.backend) == "jax":
        from ntkgan import jax_path

        m = dataset.target.shape[0]
        batch = m if config.target_batch == 0 or config.target_batch >= m else config.target_batch
        n = (config.gen_batch or dataset.source.shape[0]) if config.coupling == "generator" else dataset.source.shape[0]
        reason = jax_path.unsupported(config, n, batch)
        if reason is None:
            return jax_path.make_jax_flow(config, dataset, rng)
    flow = GeneratorFlow(config, dataset, rng) if config.coupling == "generator" else ParticleFlow(config, dataset, rng)
    flow.not_compiled = reason
    return flow

