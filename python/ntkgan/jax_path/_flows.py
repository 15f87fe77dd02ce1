r"""Flows whose steps run compiled on the JAX device: :class:`JaxParticleFlow`, :class:`JaxGeneratorFlow`.

They are the host flows (:class:`ntkgan.flows.ParticleFlow`, :class:`~ntkgan.flows.GeneratorFlow`) with
:meth:`advance` replaced: ``advance(k)`` draws the random inputs of ``k`` steps on the host, from the
flow's numpy generator and in the host flow's order (so the generator is in the same state afterwards,
and a reset network gets the same initial parameters), then runs them as chunks of one compiled
:func:`jax.lax.scan` (:func:`ntkgan.jax_path._step.compiled_chunk`).  The state stays on the device
between calls; the host copies (:attr:`particles`, :meth:`state_dict`, the generator's parameters, a
persistent network's parameters and counters) are refreshed only when read, so metrics, checkpoints and
snapshots cost a transfer at their own cadence only.  :meth:`state_dict` and :meth:`load_state_dict` are
the host flows': a checkpoint written by one backend resumes on the other.

Errors are the host flows' errors at the same step (``FloatingPointError`` for a diverged flow or
discriminator, ``RuntimeError`` for a Lanczos solve that does not converge), raised after the chunk; the
flow is then left at the last good step (its numpy generator just after the failing step's draws).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ntkgan import finite as _F
from ntkgan.discriminator._infinite import KernelDiscriminator
from ntkgan.flows._coupling import latent_codes
from ntkgan.flows._flows import _ADAM_B1, _ADAM_B2, GeneratorFlow, ParticleFlow
from ntkgan.jax_path import _infinite as _inf
from ntkgan.jax_path import _step
from ntkgan.jax_path._networks import halves_of

__all__ = ["JaxGeneratorFlow", "JaxParticleFlow"]

#: Most steps in one compiled chunk (the runner asks for at most ``log_every`` at a time).
MAX_CHUNK = 1000
#: Most bytes of per-step random draws in one chunk (re-initialised networks: 270 kB per step for the
#: paper's width-128 networks on 2-D data, so chunks of at most 250 steps).
DRAW_BYTES = 64 * 2**20


def _device(a, dtype=jnp.float64):
    return jnp.asarray(np.asarray(a), dtype=dtype)


def _host(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def _layers_to_device(layers, dtype):
    return [(_device(w, dtype), _device(b, dtype)) for w, b in layers]


def _layers_to_host(layers) -> list:
    return [(_host(w), _host(b)) for w, b in layers]


class _CompiledSteps:
    """What the two JAX flows share: the spec, the device carry, chunked :meth:`advance`, host sync.

    Subclasses provide ``_carry_from_host()``, ``_carry_to_host(carry)`` and ``_draw_one()`` (one step's
    random inputs, drawn from ``self.rng`` in the host flow's order).
    """

    compiled = True

    def _init_compiled(self, spec: _step.StepSpec):
        self.spec = spec
        self._carry = None  # device state; None: build it from the host state
        self._stale = False  # the host copies lag the device state
        self._consts_dev = None
        self._disc_obj = None  # the last discriminator as a host object (built when read)
        self._have_last = False  # the carry holds the discriminator of a step taken on the device
        self._pending_disc_steps = 0  # persistent network: generator steps not yet in its host counters

    # -- the device state -----------------------------------------------------------------------------

    def _base_carry(self) -> dict:
        spec = self.spec
        carry = {"status": jnp.int32(0), "failed_at": jnp.int32(-1), "count": jnp.int32(self.step_count)}
        if spec.mode == "infinite":
            rows = spec.n + spec.batch
            carry["last"] = {"support": jnp.zeros((rows, spec.dim)), "coef": jnp.zeros(rows)}
        else:
            dtype = spec.dtype()
            if spec.mode == "persistent":
                halves = tuple(_layers_to_device(h, dtype) for h in halves_of(self._disc.network.params))
                carry["disc"] = halves
                carry["last"] = halves
            else:  # a placeholder of the trained network's shapes until the first step
                dims = [spec.dim] + [spec.arch.width] * spec.arch.depth + [1]
                zeros = [(jnp.zeros((a, b), dtype), jnp.zeros(b, dtype)) for a, b in itertools.pairwise(dims)]
                carry["last"] = (zeros, list(zeros)) if spec.antisymmetric else (zeros,)
        return carry

    def _ensure_device(self) -> None:
        if self._carry is None:
            self._carry = self._carry_from_host()
            self._consts_dev = {k: jnp.asarray(v) for k, v in self._consts().items()}

    def _sync(self) -> None:
        """Refresh the host copies from the device state."""
        if self._stale:
            self._carry_to_host(self._carry)
            if self.spec.mode == "persistent":
                net = self._disc.network
                net.params = self._params_from_halves(self._carry["disc"])
                for _ in range(self._pending_disc_steps):
                    net.steps += self.spec.n_d_steps
                    net.time += self.spec.n_d_steps * self.config.d_lr
            self._pending_disc_steps = 0
            self._stale = False

    def _params_from_halves(self, halves):
        hs = [_layers_to_host(h) for h in halves]
        return _F.AntisymmetricParams(*hs) if len(hs) == 2 else hs[0]

    # -- stepping -----------------------------------------------------------------------------------

    def _step(self) -> float:
        return self.advance(1)[0]

    def run(self, n_steps: int) -> list[float]:
        """``n_steps`` steps (compiled chunks); returns their generator losses."""
        return self.advance(n_steps)

    def advance(self, n_steps: int) -> list[float]:
        """Take ``n_steps`` generator steps on the device; returns their generator losses (host floats).

        Raises
        ------
        FloatingPointError, RuntimeError
            As the host flow at the same step (after the chunk that holds it; the flow is left at the last
            good step).
        """
        n_steps = int(n_steps)
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        losses: list[float] = []
        self._ensure_device()
        run = _step.compiled_chunk(self.spec)
        while n_steps > 0:
            k = min(n_steps, self.spec.length)
            rng_states = []
            draws = []
            for _ in range(k):
                draws.append(self._draw_one())
                rng_states.append(self.rng.bit_generator.state)
            stacked = self._stack(draws)
            carry, out = run(self._carry, stacked, self._consts_dev, jnp.int32(k))
            status = int(carry["status"])
            done = int(carry["count"]) - self.step_count
            losses.extend(float(v) for v in np.asarray(out)[:done])
            self._carry = carry
            if done:
                self._stale = True
                self._have_last = True
                self._disc_obj = None
                self._pending_disc_steps += done
            self.step_count += done
            if status:
                self.rng.bit_generator.state = rng_states[done]
                self._carry = dict(carry, status=jnp.int32(0), failed_at=jnp.int32(-1))
                self._raise(status, int(carry["failed_at"]))
            n_steps -= k
        return losses

    def _stack(self, draws: list[dict]) -> dict:
        """The per-step draws stacked over the chunk and padded to its compiled length (zeros)."""
        if not draws or not draws[0]:
            return {}
        pad = self.spec.length - len(draws)

        def stack(*leaves):
            arr = np.stack([np.asarray(v) for v in leaves])
            if pad:
                arr = np.concatenate([arr, np.zeros((pad,) + arr.shape[1:], arr.dtype)])
            return jnp.asarray(arr)

        return jax.tree_util.tree_map(stack, *draws)

    def _raise(self, status: int, step: int):
        c = self.config
        if status == _step.NON_FINITE:
            raise FloatingPointError(f"the flow diverged: non-finite generator loss or gradient at step {step}")
        if status == _step.PARTICLES_DIVERGED:
            raise FloatingPointError(f"particles diverged at step {step} (eta={c.eta} too large?)")
        if status == _step.GENERATOR_DIVERGED:
            raise FloatingPointError(f"generator outputs diverged at step {step} (gen_lr={c.gen_lr} too large?)")
        if status == _step.TAYLOR_FAILED:
            raise RuntimeError(f"vanilla Taylor flow: no positive finite step, or more than 100000 steps, at "
                               f"step {step}")
        if status == _step.LANCZOS_FAILED:
            raise RuntimeError(f"Lanczos did not reach rtol={self.spec.tol:g} in maxiter=500 iterations at step "
                               f"{step}; raise maxiter or loosen tol")
        raise FloatingPointError(f"loss {self.spec.loss!r}: a derivative is not finite (step {step}: the "
                                 "discriminator diverged)")

    # -- what a host flow reads ---------------------------------------------------------------------

    @property
    def discriminator(self):
        """The discriminator of the last step (built on the host when read)."""
        return self._host_discriminator()

    @discriminator.setter
    def discriminator(self, value):
        self._disc_obj = value

    def _consts(self) -> dict:
        return _consts(self)

    def _host_discriminator(self):
        """The discriminator of the last step, as a host object (for snapshots), or None before any."""
        if self._disc_obj is None and self._have_last:
            spec, last = self.spec, self._carry["last"]
            if spec.mode == "infinite":
                support = _host(last["support"])
                self._disc_obj = KernelDiscriminator(
                    loss=self.loss, arch=spec.arch, kind=spec.kind, backend="jax", support=support,
                    n_fake=spec.n, coef=_host(last["coef"]), t=spec.t, dynamics="flow", lr=None, steps=None,
                    method=spec.solver, info={"n": support.shape[0], "compiled": True})
            elif spec.mode == "persistent":
                self._sync()
                self._disc_obj = self._disc.network
            else:
                from ntkgan.discriminator._finite import FiniteDiscriminator

                self._disc_obj = FiniteDiscriminator(spec.arch, self._params_from_halves(last), loss=self.loss,
                                                     dtype=spec.d_dtype)
        return self._disc_obj

    def state_dict(self) -> dict[str, np.ndarray]:
        self._sync()
        return super().state_dict()

    def _load(self, state) -> None:
        super()._load(state)
        self._carry = None
        self._stale = False
        self._pending_disc_steps = 0
        self._have_last = False


def _draw_reset(flow) -> dict:
    """A re-initialised network's parameters (``FiniteDiscriminator.init``'s draw), plain layers only."""
    spec = flow.spec
    params = _F.init_params(spec.arch, spec.dim, rng=flow.rng, antisymmetric=spec.antisymmetric)
    return {"init": halves_of(params)[0]}


def _draw_batch(flow) -> dict:
    """The target batch indices of :meth:`ntkgan.flows.Flow._target_batch` (none when all are shown)."""
    spec = flow.spec
    if spec.batch == spec.m:
        return {}
    return {"batch": np.sort(flow.rng.choice(spec.m, size=spec.batch, replace=False)).astype(np.int32)}


class JaxParticleFlow(_CompiledSteps, ParticleFlow):
    """:class:`ntkgan.flows.ParticleFlow` with whole steps compiled on the JAX device (module notes)."""

    def __init__(self, config, dataset, rng, spec_builder):
        ParticleFlow.__init__(self, config, dataset, rng)
        self._init_compiled(spec_builder(self))

    @property
    def particles(self) -> np.ndarray:
        self._sync()
        return self._x

    def _carry_from_host(self) -> dict:
        carry = self._base_carry()
        carry["x"] = _device(self._x)
        return carry

    def _carry_to_host(self, carry) -> None:
        self._x = _host(carry["x"])

    def _draw_one(self) -> dict:
        draw = _draw_batch(self)
        if self.spec.mode == "reset":
            draw.update(_draw_reset(self))
        return draw


class JaxGeneratorFlow(_CompiledSteps, GeneratorFlow):
    """:class:`ntkgan.flows.GeneratorFlow` with whole steps compiled on the JAX device (module notes)."""

    def __init__(self, config, dataset, rng, spec_builder):
        GeneratorFlow.__init__(self, config, dataset, rng)
        self._drawn_adam = 0
        self._init_compiled(spec_builder(self))

    @property
    def particles(self) -> np.ndarray:
        self._sync()
        return GeneratorFlow.particles.fget(self)

    def _carry_from_host(self) -> dict:
        carry = self._base_carry()
        carry["gen"] = _layers_to_device(self.params, jnp.float64)
        if self.config.gen_optimizer == "adam":
            carry["adam_m"] = _layers_to_device(self._m, jnp.float64)
            carry["adam_v"] = _layers_to_device(self._v, jnp.float64)
            carry["adam_count"] = jnp.int32(self._adam_count)
        return carry

    def _carry_to_host(self, carry) -> None:
        self.params = _layers_to_host(carry["gen"])
        if self.config.gen_optimizer == "adam":
            self._m = _layers_to_host(carry["adam_m"])
            self._v = _layers_to_host(carry["adam_v"])
            self._adam_count = int(carry["adam_count"])
        self._cache = None

    def _draw_one(self) -> dict:
        c = self.config
        draw = {}
        if c.gen_fresh_z:
            draw["z"] = latent_codes(self.batch, c.gen_latent_dim, c.gen_latent, rng=self.rng)
        draw.update(_draw_batch(self))
        if self.spec.mode == "reset":
            draw.update(_draw_reset(self))
        if c.gen_optimizer == "adam":
            # the bias corrections of the host's Adam step k (Python floats, the same bits)
            k = self._adam_count + self._drawn_adam + 1
            self._drawn_adam += 1
            draw["adam_c1"] = np.float64(1 - _ADAM_B1**k)
            draw["adam_c2"] = np.float64(1 - _ADAM_B2**k)
        return draw

    def advance(self, n_steps: int) -> list[float]:
        self._sync()  # the Adam counter of the host copy numbers the draws
        self._drawn_adam = 0
        return super().advance(n_steps)


def _consts(flow) -> dict:
    """The run's fixed arrays on the host: target, closed-form weights, coupling matrix, latent codes."""
    spec = flow.spec
    out = {"target": flow.target}
    if spec.mode == "infinite":
        if spec.solver == "closed_form":
            out["coef"] = _inf.linear_coef(flow.loss, spec.n, spec.batch, spec.t)
        elif spec.solver == "vanilla_taylor":
            out["wf"] = np.concatenate([np.full(spec.n, 1.0 / spec.n), np.zeros(spec.batch)])
            out["wr"] = np.concatenate([np.zeros(spec.n), np.full(spec.batch, 1.0 / spec.batch)])
        elif spec.solver.startswith("lambertw_"):
            out["sq"], out["rhs"] = _inf.lambertw_rhs(spec.n, spec.batch)
        else:
            out["sq"], out["rhs"] = _inf.quadratic_weights(flow.loss, spec.n, spec.batch)
    if spec.coupling == "theta":
        out["theta"] = flow.theta
    if spec.flow == "generator" and not spec.fresh_z:
        out["latent"] = flow.latent
    return out

