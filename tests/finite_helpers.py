"""Helpers shared by the tests of the numpy networks (:mod:`ntkgan.finite`) and the finite discriminators."""

from __future__ import annotations

from ntkgan import finite as F


def leaves(params):
    """Flat list of the parameter arrays (W_0, b_0, W_1, ...; theta1 then theta2)."""
    if isinstance(params, F.AntisymmetricParams):
        return leaves(params.theta1) + leaves(params.theta2)
    return [a for layer in params for a in layer]


def with_leaves(params, new_leaves):
    """``params`` with its arrays replaced, in :func:`leaves` order."""
    it = iter(new_leaves)
    return F.tree_map(lambda _: next(it), params)


def to_stax_params(params):
    """finite params -> stax.serial params: Dense ``(W, b[None, :])``, activations ``()``."""
    out = []
    for i, (W, b) in enumerate(params):
        if i:
            out.append(())
        out.append((W, b[None, :]))
    return out
