r"""One generator step as a traced function, and :func:`jax.lax.scan` over a chunk of steps.

:class:`StepSpec` is everything static about a run's step (the parts of the configuration that shape
the computation, and the array sizes); :func:`compiled_chunk` builds, once per spec, the jit-compiled

.. code-block:: text

    run(carry, draws, consts, active) -> (carry, losses)

that takes ``length`` steps with :func:`jax.lax.scan`, skipping (``lax.cond``) the steps at index
``>= active``, so one compilation serves every chunk up to ``length`` steps.  ``consts`` are the run's
fixed arrays (target, coupling matrix, latent codes, closed-form weights); ``draws`` the per-step random
inputs drawn on the host from the flow's numpy generator in the host flows' order (target batch indices,
fresh latent codes, a re-initialised network's parameters), stacked over the chunk; ``carry`` the state
(particles or generator parameters and optimiser moments, a persistent network's parameters, the last
discriminator, the step counter and the failure status).

A step mirrors :meth:`ntkgan.flows.ParticleFlow.step` / :meth:`~ntkgan.flows.GeneratorFlow.step`:

1. (generator) :math:`x = g_\theta(z)`; outputs beyond :data:`~ntkgan._validation.MAX_SCALE` or not finite
   fail the step (status :data:`GENERATOR_DIVERGED`);
2. the discriminator on ``(x, target batch)``: infinite width (:mod:`ntkgan.jax_path._infinite`,
   :mod:`ntkgan.jax_path._vanilla`, kernels by :mod:`ntkgan.jax_path._kernels`) or a finite network trained ``n_d_steps`` steps
   (:mod:`ntkgan.jax_path._networks`), then :math:`f(x)`, :math:`\nabla f(x)`;
3. the generator loss :math:`\operatorname{mean}_i c(f(x_i))` and the force :math:`c'(f(x_i))\nabla f(x_i)`
   (not finite: :data:`NON_FINITE`);
4. the move: :math:`x_i \leftarrow x_i - a F_i - b\sum_j F_j` (free and two-number coupling),
   :math:`x \leftarrow x - (\eta/N)\Theta F` (generator NTK coupling), or SGD / Adam on
   :math:`\theta` with :math:`\nabla_\theta = J_\theta g(z)^\top F / B` (one VJP); particles beyond
   ``MAX_SCALE`` fail the step (:data:`PARTICLES_DIVERGED`).

A failed step leaves the carry as it was before it and sets ``status`` (and ``failed_at``, the step
count); every later step of the chunk is skipped.  The host raises the error the host flow would have
raised at that step (:func:`ntkgan.jax_path._flows`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ntkgan._validation import MAX_SCALE
from ntkgan.arch import Mlp
from ntkgan.discriminator._losses import get_loss
from ntkgan.jax_path import _infinite as _inf
from ntkgan.jax_path import _kernels as _kern
from ntkgan.jax_path import _networks as _net
from ntkgan.jax_path import _vanilla
from ntkgan.jax_path._losses import jax_loss

__all__ = ["GENERATOR_DIVERGED", "LANCZOS_FAILED", "NON_FINITE", "NOT_FINITE_DISC", "PARTICLES_DIVERGED",
           "TAYLOR_FAILED", "StepSpec", "compiled_chunk"]

#: Failure codes of the ``status`` in the carry (0: running).
NON_FINITE, PARTICLES_DIVERGED, GENERATOR_DIVERGED, LANCZOS_FAILED, NOT_FINITE_DISC, TAYLOR_FAILED = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class StepSpec:
    """Static description of one generator step (hashable: the compilation cache key).

    Attributes
    ----------
    flow : {"particles", "generator"}
    mode : {"infinite", "persistent", "reset"}
        The discriminator (:attr:`ntkgan.presets.Config.discriminator`).
    loss : str
        Built-in loss name.
    arch : Mlp
        The discriminator architecture (with its width for finite networks).
    kind : {"ntk", "nngp"}
    solver : str
        Infinite width: ``"closed_form"``, ``"eigh"``, ``"krylov"``, ``"lambertw_eigh"``,
        ``"lambertw_krylov"`` or ``"vanilla_taylor"``; ``""`` for finite networks.
    t, tol : float
        Training time and the Lanczos tolerance.
    n, m, batch, dim : int
        Particles (or generator batch), target points, target points per step (``m`` when all), data
        dimension.
    coupling : {"two_number", "theta"}
        ``"two_number"``: :math:`a F_i + b\\sum_j F_j` with the static ``a, b``; ``"theta"``: a matrix.
    a, b, eta : float
    d_dtype : {"float64", "float32"}
    n_d_steps : int
    d_lr, grad_penalty : float
    antisymmetric : bool
        Finite networks: the antisymmetric pair (``f0="zero"``) or one plain network.
    gen_arch : Mlp or None
    latent_dim : int
    optimizer : {"sgd", "adam"}
    gen_lr : float
    fresh_z : bool
    length : int
        Steps per compiled chunk.
    """

    flow: str
    mode: str
    loss: str
    arch: Mlp
    kind: str
    solver: str
    t: float
    tol: float
    n: int
    m: int
    batch: int
    dim: int
    coupling: str
    a: float
    b: float
    eta: float
    d_dtype: str
    n_d_steps: int
    d_lr: float
    grad_penalty: float
    antisymmetric: bool
    gen_arch: Mlp | None
    latent_dim: int
    optimizer: str
    gen_lr: float
    fresh_z: bool
    length: int

    def dtype(self):
        return jnp.float32 if self.d_dtype == "float32" else jnp.float64


# --------------------------------------------------------------------------------------------------
# the discriminator of one step: (f(x), grad f(x)) and what a snapshot needs of it
# --------------------------------------------------------------------------------------------------


def _diverged(x):
    return ~jnp.all(jnp.isfinite(x)) | (jnp.max(jnp.abs(x)) > MAX_SCALE)


def _infinite(spec: StepSpec, consts, fake, real):
    """``(f, g, last, status)`` of the infinite-width discriminator trained on ``(fake, real)``."""
    z = jnp.concatenate([fake, real], axis=0)
    status = jnp.int32(0)
    if spec.solver == "closed_form":
        coef = consts["coef"]
    elif spec.solver == "vanilla_taylor":
        coef, ok = _vanilla.vanilla_taylor_coef(_kern.gram(spec.arch, spec.kind, z), consts["wf"], consts["wr"],
                                               spec.t, spec.tol)
        status = jnp.where(ok, 0, TAYLOR_FAILED).astype(jnp.int32)
    else:
        gram = _kern.gram(spec.arch, spec.kind, z)
        if spec.solver.startswith("lambertw_"):
            method = spec.solver[len("lambertw_"):]
            fun = functools.partial(_inf.lambertw_ratio, t=spec.t)
        else:
            method = spec.solver
            fun = functools.partial(_inf.psi_flow, t=spec.t)
        coef, _, converged = _inf.spectral_coef(gram, consts["sq"], consts["rhs"], fun, method, tol=spec.tol)
        status = jnp.where(converged, 0, LANCZOS_FAILED).astype(jnp.int32)
    f, g = _kern.value_and_grad(spec.arch, spec.kind, fake, z, coef)
    return f, g, {"support": z, "coef": coef}, status


def _finite(spec: StepSpec, lscales, halves, fake, real):
    """``(f, g, trained halves, status)`` of a finite network trained on ``(fake, real)``."""
    dtype = spec.dtype()
    jl = jax_loss(get_loss(spec.loss))
    z = jnp.concatenate([fake, real], axis=0).astype(dtype)
    halves, ok = _net.train(spec.arch, lscales, halves, z, spec.n, jl.fake_deriv, jl.real_deriv, lr=spec.d_lr,
                            n_steps=spec.n_d_steps, grad_penalty=spec.grad_penalty)
    f, g = _net.input_grad(spec.arch, lscales, halves, fake.astype(dtype))
    status = jnp.where(ok, 0, NOT_FINITE_DISC).astype(jnp.int32)
    return f.astype(jnp.float64), g.astype(jnp.float64), halves, status


def disc_scales(spec: StepSpec) -> list:
    return _net.scales(spec.arch, [spec.dim] + [spec.arch.width] * spec.arch.depth + [1])


def gen_scales(spec: StepSpec) -> list:
    return _net.scales(spec.gen_arch, [spec.latent_dim] + [spec.gen_arch.width] * spec.gen_arch.depth + [spec.dim])


def _discriminate(spec: StepSpec, consts, carry, draw, fake):
    """``(f, g, carry updates, status)``: the discriminator of this step at ``fake``."""
    real = consts["target"] if spec.batch == spec.m else consts["target"][draw["batch"]]
    if spec.mode == "infinite":
        f, g, last, status = _infinite(spec, consts, fake, real)
        return f, g, {"last": last}, status
    dtype = spec.dtype()
    if spec.mode == "persistent":
        halves = carry["disc"]
    else:  # reset: a fresh network from this step's draw (theta_2 = theta_1 for f0 = 0)
        theta = jax.tree_util.tree_map(lambda a: a.astype(dtype), draw["init"])
        halves = (theta, theta) if spec.antisymmetric else (theta,)
    f, g, halves, status = _finite(spec, disc_scales(spec), halves, fake, real)
    updates = {"last": halves}
    if spec.mode == "persistent":
        updates["disc"] = halves
    return f, g, updates, status


# --------------------------------------------------------------------------------------------------
# the step
# --------------------------------------------------------------------------------------------------


def _force(spec: StepSpec, f, g):
    jl = jax_loss(get_loss(spec.loss))
    cost = jl.cost(f)
    force = jl.cost_deriv(f)[:, None] * g
    finite = jnp.all(jnp.isfinite(cost)) & jnp.all(jnp.isfinite(force))
    return jnp.mean(cost), force, finite


def _particle_step(spec: StepSpec, consts, carry, draw):
    x = carry["x"]
    f, g, updates, status = _discriminate(spec, consts, carry, draw, x)
    loss, force, finite = _force(spec, f, g)
    status = jnp.where(status != 0, status, jnp.where(finite, 0, NON_FINITE))
    if spec.coupling == "theta":
        move = (spec.eta / spec.n) * jnp.matmul(consts["theta"], force, precision=jax.lax.Precision.HIGHEST)
    else:
        move = spec.a * force
        if spec.b != 0.0:
            move = move + spec.b * jnp.sum(force, axis=0)
    new = x - move
    status = jnp.where(status != 0, status, jnp.where(_diverged(new), PARTICLES_DIVERGED, 0))
    return dict(carry, x=new, **updates), loss, status


def _generator_step(spec: StepSpec, consts, carry, draw):
    params = carry["gen"]
    lscales = gen_scales(spec)
    z = draw["z"] if spec.fresh_z else consts["latent"]

    def outputs(p):
        return _net.apply(spec.gen_arch, lscales, (p,), z)

    x, pull = jax.vjp(outputs, params)
    gen_status = jnp.where(_diverged(x), GENERATOR_DIVERGED, 0)
    f, g, updates, status = _discriminate(spec, consts, carry, draw, x)
    loss, force, finite = _force(spec, f, g)
    status = jnp.where(gen_status != 0, gen_status,
                       jnp.where(status != 0, status, jnp.where(finite, 0, NON_FINITE)))
    grads = pull(force / z.shape[0])[0]
    new = dict(carry, **updates)
    if spec.optimizer == "sgd":
        new["gen"] = jax.tree_util.tree_map(lambda p, gr: p - spec.gen_lr * gr, params, grads)
    else:
        b1, b2, eps = 0.9, 0.999, 1e-8
        m = jax.tree_util.tree_map(lambda a, gr: b1 * a + (1 - b1) * gr, carry["adam_m"], grads)
        v = jax.tree_util.tree_map(lambda a, gr: b2 * a + (1 - b2) * gr * gr, carry["adam_v"], grads)
        c1, c2 = draw["adam_c1"], draw["adam_c2"]
        new["gen"] = jax.tree_util.tree_map(
            lambda p, mm, vv: p - spec.gen_lr * (mm / c1) / (jnp.sqrt(vv / c2) + eps), params, m, v)
        new["adam_m"], new["adam_v"] = m, v
        new["adam_count"] = carry["adam_count"] + 1
    return new, loss, status


@functools.lru_cache(maxsize=32)
def compiled_chunk(spec: StepSpec):
    """The jit-compiled ``run(carry, draws, consts, active) -> (carry, losses)`` of ``spec`` (cached)."""
    step_fn = _particle_step if spec.flow == "particles" else _generator_step

    def run(carry, draws, consts, active):
        def body(c, inputs):
            index, draw = inputs

            def take(c):
                new, loss, status = step_fn(spec, consts, c, draw)
                ok = status == 0
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, c)
                new["status"] = status
                new["failed_at"] = jnp.where(ok, c["failed_at"], c["count"])
                new["count"] = jnp.where(ok, c["count"] + 1, c["count"])
                return new, jnp.where(ok, loss, jnp.nan)

            def skip(c):
                return c, jnp.asarray(jnp.nan, jnp.float64)

            return jax.lax.cond((c["status"] == 0) & (index < active), take, skip, c)

        indices = jnp.arange(spec.length, dtype=jnp.int32)
        return jax.lax.scan(body, carry, (indices, draws))

    return jax.jit(run)
