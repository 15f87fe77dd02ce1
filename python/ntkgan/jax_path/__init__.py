r"""The JAX path: with ``backend="jax"`` a flow's whole generator steps run as one compiled function.

``make_flow(config)`` with ``config.backend == "jax"`` (or ``NTKGAN_BACKEND=jax``) returns a
:class:`~ntkgan.jax_path._flows.JaxParticleFlow` or :class:`~ntkgan.jax_path._flows.JaxGeneratorFlow`
when :func:`unsupported` has nothing against the configuration: every step (discriminator, force, move)
is traced into one function, :func:`jax.lax.scan` runs the steps between two metric rows as one call,
and the particles, networks and optimiser state stay on JAX's default device (the GPU when there is
one); metrics, checkpoints and snapshots read them back at their own cadence.  Random inputs (target
batches, fresh latent codes, re-initialised networks) are drawn on the host from the flow's numpy
generator in the host flows' order, so a JAX-path run and a Rust run of the same configuration start from
the same draws, write the same run directory and checkpoints, and resume each other.

What is compiled
----------------
- **Infinite width** (``inf_ipm``, ``inf_lsgan``, ``inf_vanilla``, ``inf_vanilla_ode``): the IPM closed
  form; LSGAN (any quadratic loss) by ``eigh`` up to 64 training points, else Lanczos on the dense Gram
  matrix (:mod:`~ntkgan.jax_path._lanczos`); vanilla's Lambert-W approximation likewise; the exact vanilla
  flow by the host's Taylor-series integrator in two :func:`jax.lax.while_loop` s
  (:mod:`~ntkgan.jax_path._vanilla`); kernels by the traced tiles of the ``"jax"`` backend
  (:mod:`~ntkgan.jax_path._kernels`).
- **Finite width** (``ipm``, ``ipm_reset``, ``lsgan``): the network of :mod:`ntkgan.finite` in
  ``jax.numpy`` (float64 or float32, ``d_dtype``), the antisymmetric pair or one plain network, persistent
  or re-initialised every step, trained by a :func:`jax.lax.fori_loop` of gradient steps (with the
  gradient penalty's double backprop); :mod:`~ntkgan.jax_path._networks`.
- **Moves**: free particles, the two-number and generator-NTK couplings, and a generator network trained by
  SGD or Adam (:mod:`~ntkgan.jax_path._step`).

What is not (these configurations run the host loop, with the ``"jax"`` backend's kernels; the flow's
``compiled`` attribute is False and ``not_compiled`` says why): the hinge loss (an event-driven solver),
custom losses (numpy callables), a random initial infinite-width discriminator (``d_f0="random"`` with
``discriminator="infinite"``), and activations without a traced form.

Agreement with the Rust path (tests/test_jax_path.py): particles after 10 steps within 1e-9 relative to
their spread (inf_ipm, inf_lsgan, ipm_reset, lsgan, float64).  Over longer runs the two drift apart as the
flows amplify rounding differences (docs/jax_path.md).
"""

from __future__ import annotations

import itertools

import numpy as np

from ntkgan.arch import Mlp

__all__ = ["make_jax_flow", "unsupported"]


def _finite_ok(arch: Mlp) -> bool:
    from ntkgan.discriminator._finite_engine import finite_spec

    return finite_spec(arch.activation) is not None


def _solver(config, n: int) -> str | None:
    """The infinite-width solver of ``config`` for ``n`` training points, or None when not traced."""
    from ntkgan.discriminator import get_loss
    from ntkgan.discriminator._infinite import EIGH_MAX_N

    loss = get_loss(config.d_loss)
    method = config.d_method or "auto"
    if loss.closed_form == "linear":
        return "closed_form" if method in ("auto", "closed_form") else None
    if loss.closed_form == "quadratic":
        if method == "auto":
            return "eigh" if n <= EIGH_MAX_N else "krylov"
        return {"eigh": "eigh", "krylov": "krylov", "matrix_free": "krylov"}.get(method)
    if loss.name == "vanilla":
        if method == "lambertw":
            return "lambertw_eigh" if n <= EIGH_MAX_N else "lambertw_krylov"
        return {"lambertw_eigh": "lambertw_eigh", "lambertw_krylov": "lambertw_krylov",
                "lambertw_matrix_free": "lambertw_krylov", "auto": "vanilla_taylor",
                "ode": "vanilla_taylor"}.get(method)
    return None


def unsupported(config, n_source: int | None = None, n_batch: int | None = None) -> str | None:
    """Why ``config`` cannot run compiled on the JAX path (one phrase), or None when it can.

    ``n_source`` and ``n_batch`` (particles and target points per step) pick the infinite-width solver
    by size as the host does; unknown sizes assume a large problem.
    """
    from ntkgan.backends import _jax_native
    from ntkgan.discriminator import get_loss
    from ntkgan.jax_path._losses import jax_loss

    loss = get_loss(config.d_loss)
    if jax_loss(loss) is None:
        return f"the loss {loss.name!r} has no traced form"
    arch = config.discriminator_arch()
    if config.discriminator == "infinite":
        if config.d_f0 == "random":
            return "a random initial discriminator (d_f0='random') at infinite width is drawn on the host"
        n = (n_source or 10**6) + (n_batch or 10**6)
        if _solver(config, n) is None:
            if loss.name == "hinge":
                return "the hinge flow is event-driven"
            return f"d_method={config.d_method!r} has no traced solver for the loss {loss.name!r}"
        if not _jax_native.supports(arch):
            return f"the kernel of activation {arch.activation!r} has no JAX form"
    elif not _finite_ok(arch):
        return f"the finite network of activation {arch.activation!r} has no traced form"
    if config.coupling == "generator" and not _finite_ok(config.generator_arch()):
        return f"the generator activation {config.generator_arch().activation!r} has no traced form"
    return None


def _spec_builder(config):
    """A function ``flow -> StepSpec`` (the flow supplies the sizes and the coupling it built)."""
    from ntkgan.discriminator._infinite import DEFAULT_TOL
    from ntkgan.jax_path._step import StepSpec

    def build(flow) -> StepSpec:
        c = config
        m = flow.target.shape[0]
        batch = m if c.target_batch == 0 or c.target_batch >= m else c.target_batch
        generator = c.coupling == "generator"
        n = flow.batch if generator else flow._x.shape[0]
        theta = getattr(flow, "theta", None)
        a, b = (0.0, 0.0) if generator or theta is not None else flow._ab
        mode = c.discriminator
        return StepSpec(
            flow="generator" if generator else "particles", mode=mode, loss=c.d_loss, arch=c.discriminator_arch(),
            kind=c.d_kind, solver=_solver(c, n + batch) if mode == "infinite" else "", t=float(c.t),
            tol=DEFAULT_TOL, n=int(n), m=int(m), batch=int(batch), dim=int(flow.dim),
            coupling="theta" if theta is not None else "two_number", a=float(a), b=float(b), eta=float(c.eta),
            d_dtype=c.d_dtype, n_d_steps=int(c.n_d_steps), d_lr=float(c.d_lr),
            grad_penalty=float(c.d_grad_penalty), antisymmetric=c.d_f0 == "zero",
            gen_arch=c.generator_arch() if generator else None, latent_dim=int(c.gen_latent_dim),
            optimizer=c.gen_optimizer, gen_lr=float(c.gen_lr), fresh_z=bool(c.gen_fresh_z),
            length=_chunk_length(c, flow.dim, n, batch < m),
        )

    return build


def _chunk_length(config, dim: int, n: int, batched: bool) -> int:
    """Steps per compiled chunk: ``log_every`` (at most ``MAX_CHUNK``), fewer when one chunk's random
    draws would exceed ``DRAW_BYTES`` (a re-initialised network's parameters per step; fresh latent codes)."""
    from ntkgan.jax_path._flows import DRAW_BYTES, MAX_CHUNK

    per_step = 0
    if config.discriminator == "reset":
        widths = [dim] + [config.d_width] * config.d_depth + [1]
        per_step += 8 * sum(a * b + b for a, b in itertools.pairwise(widths))
    if config.coupling == "generator" and config.gen_fresh_z:
        per_step += 8 * n * config.gen_latent_dim
    if batched:
        per_step += 4 * config.target_batch
    cap = max(1, DRAW_BYTES // per_step) if per_step else MAX_CHUNK
    return int(max(1, min(config.log_every, MAX_CHUNK, cap)))


def make_jax_flow(config, dataset, rng: np.random.Generator):
    """The compiled flow of ``config`` (the caller checked :func:`unsupported`)."""
    from ntkgan.jax_path._flows import JaxGeneratorFlow, JaxParticleFlow

    cls = JaxGeneratorFlow if config.coupling == "generator" else JaxParticleFlow
    return cls(config, dataset, rng, _spec_builder(config))
