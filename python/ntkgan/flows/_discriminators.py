r"""How a flow gets its discriminator each step: infinite width, or a finite network persistent or reset.

- ``"infinite"``: :func:`ntkgan.discriminator.train_discriminator` with ``width=None``, re-solved from
  :math:`f_0` on the current (fake, real) sets every step, as in the paper.
- ``"persistent"``: one :class:`~ntkgan.discriminator._finite.FiniteDiscriminator` kept across generator
  steps; each step runs ``n_d_steps`` full-batch gradient steps of size ``d_lr`` on the current sets (on the
  loss plus the gradient penalty ``d_grad_penalty`` times the mean squared input gradient, when > 0).
- ``"reset"``: a freshly initialised network every step (from the flow's RNG), then the same steps.

Finite networks run in ``config.d_dtype`` (float64 or float32) on the Rust engine when the activation has
one (every built-in activation), else on the numpy trainer.  Each step's new reset network reuses the
previous one's Rust work space (``workspace_of``), so re-initialising allocates only the parameters.
"""

from __future__ import annotations

import json

import numpy as np

from ntkgan.discriminator import train_discriminator
from ntkgan.discriminator._finite import FiniteDiscriminator
from ntkgan.finite import AntisymmetricParams

__all__ = ["DiscriminatorSource"]

_SEED_HIGH = 2**31 - 1


def _flatten_params(params, prefix: str) -> dict[str, np.ndarray]:
    halves = params if isinstance(params, AntisymmetricParams) else (params,)
    out = {}
    for h, half in enumerate(halves):
        for i, (W, b) in enumerate(half):
            out[f"{prefix}{h}.{i}.W"] = np.array(W, copy=True)
            out[f"{prefix}{h}.{i}.b"] = np.array(b, copy=True)
    return out


def _load_params_inplace(params, state: dict, prefix: str) -> None:
    halves = params if isinstance(params, AntisymmetricParams) else (params,)
    for h, half in enumerate(halves):
        for i, (W, b) in enumerate(half):
            for name, arr in (("W", W), ("b", b)):
                key = f"{prefix}{h}.{i}.{name}"
                if key not in state:
                    raise ValueError(f"state is missing {key!r}")
                value = np.asarray(state[key], dtype=np.float64)
                if value.shape != arr.shape:
                    raise ValueError(f"state[{key!r}] has shape {value.shape}, expected {arr.shape}")
                arr[...] = value


class DiscriminatorSource:
    """Trains (or re-solves) the discriminator of one generator step; holds a persistent network's state.

    Parameters
    ----------
    config : ntkgan.presets.Config
    dim : int
        Data dimension.
    rng : numpy.random.Generator
        The flow's generator (initialisations and random-:math:`f_0` seeds are drawn from it).
    """

    def __init__(self, config, dim: int, rng: np.random.Generator):
        self.config = config
        self.mode = config.discriminator
        self.arch = config.discriminator_arch()
        self.dim = int(dim)
        self.rng = rng
        self.n_steps = config.n_d_steps
        self.network: FiniteDiscriminator | None = None
        self._last_reset: FiniteDiscriminator | None = None
        if self.mode == "persistent":
            self.network = FiniteDiscriminator.init(self.arch, self.dim, loss=config.d_loss, f0=config.d_f0,
                                                    rng=rng, dtype=config.d_dtype)

    def train(self, fake: np.ndarray, real: np.ndarray):
        """The discriminator of this step, trained on ``fake`` (N, d) vs ``real`` (M, d)."""
        c = self.config
        if self.mode == "infinite":
            seed = int(self.rng.integers(_SEED_HIGH)) if c.d_f0 == "random" else 0
            return train_discriminator(fake, real, loss=c.d_loss, arch=self.arch, t=c.t, lr=c.d_lr, seed=seed,
                                       f0=c.d_f0, backend=c.backend, kind=c.d_kind, method=c.d_method)
        if self.mode == "reset":
            net = FiniteDiscriminator.init(self.arch, self.dim, loss=c.d_loss, f0=c.d_f0, rng=self.rng,
                                           dtype=c.d_dtype, workspace_of=self._last_reset)
            self._last_reset = net
        else:
            net = self.network
        return net.step(fake, real, n_steps=self.n_steps, lr=c.d_lr, grad_penalty=c.d_grad_penalty)

    def state_dict(self) -> dict[str, np.ndarray]:
        """A persistent network's parameters and counters (empty otherwise)."""
        if self.network is None:
            return {}
        out = _flatten_params(self.network.params, "disc.")
        out["disc.counters"] = np.array(json.dumps({"steps": self.network.steps, "time": self.network.time}))
        return out

    def load_state_dict(self, state: dict) -> None:
        if self.network is None:
            return
        _load_params_inplace(self.network.params, state, "disc.")
        counters = json.loads(str(state["disc.counters"]))
        self.network.steps = int(counters["steps"])
        self.network.time = float(counters["time"])
