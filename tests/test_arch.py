"""Tests of python/ntkgan/arch.py: the ``Mlp`` description, activations and ``parse_activation``.

Everything here is backend-free (no kernel is evaluated); kernel-level identities between activations
(LeakyRelu(0) = Relu, Abs = ABRelu(-1, 1), ...) are checked on every backend in tests/test_kernels.py.
"""

from __future__ import annotations

import math

import ntkgan
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ntkgan.arch import (
    ACTIVATIONS,
    ABRelu,
    Abs,
    Activation,
    Erf,
    Gelu,
    Identity,
    LeakyRelu,
    Mlp,
    Rbf,
    Relu,
    Sigmoid,
    Sin,
    parse_activation,
)

# --------------------------------------------------------------------------------------------------
# identities between activation constructors (ReLU family = ABRelu(a, b), sigmoid = erf preset)
# --------------------------------------------------------------------------------------------------


def test_relu_family_constructors_are_abrelu():
    assert Relu() == ABRelu(0.0, 1.0)
    assert LeakyRelu(0.0) == Relu()
    assert LeakyRelu(0.3) == ABRelu(0.3, 1.0)
    assert LeakyRelu() == ABRelu(0.2, 1.0)
    assert Abs() == ABRelu(-1.0, 1.0)
    assert Identity() == ABRelu(1.0, 1.0)


def test_sigmoid_is_the_toolkit_erf_preset():
    s = Sigmoid()
    assert s == Erf(0.5, 1.0 / 2.4020563531719796, 0.5)
    assert parse_activation("sigmoid_like") == s


@given(st.floats(-50, 50, allow_nan=False))
def test_numpy_fn_and_deriv_of_relu_family(x):
    import numpy as np

    for act, ref, dref in (
        (Relu(), max(x, 0.0), 1.0 if x > 0 else 0.0),
        (Abs(), abs(x), 1.0 if x > 0 else -1.0),
        (Identity(), x, 1.0),
        (LeakyRelu(0.1), x if x > 0 else 0.1 * x, 1.0 if x > 0 else 0.1),
    ):
        assert act.numpy_fn(np.float64(x)) == pytest.approx(ref, rel=1e-15, abs=0)
        assert act.numpy_deriv(np.float64(x)) == dref


def test_numpy_fn_of_smooth_activations():
    import numpy as np
    from scipy.special import erf

    x = np.linspace(-3, 3, 13)
    e = Erf(0.7, 1.3, -0.2)
    np.testing.assert_allclose(e.numpy_fn(x), 0.7 * erf(1.3 * x) - 0.2, rtol=1e-15)
    h = 1e-6
    np.testing.assert_allclose(
        e.numpy_deriv(x), (e.numpy_fn(x + h) - e.numpy_fn(x - h)) / (2 * h), rtol=1e-7, atol=1e-9
    )
    r = Rbf(0.5)
    np.testing.assert_allclose(r.numpy_fn(x), math.sqrt(2) * np.sin(x + math.pi / 4), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(
        r.numpy_deriv(x), (r.numpy_fn(x + h) - r.numpy_fn(x - h)) / (2 * h), rtol=1e-6, atol=1e-8
    )


# --------------------------------------------------------------------------------------------------
# parse_activation: every accepted form, and the documented errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("relu", ABRelu(0.0, 1.0)),
        ("  ReLU ", ABRelu(0.0, 1.0)),
        ("abs", ABRelu(-1.0, 1.0)),
        ("identity", ABRelu(1.0, 1.0)),
        ("leaky_relu", ABRelu(0.2, 1.0)),
        (("leaky_relu", 0.1), ABRelu(0.1, 1.0)),
        (("abrelu", -0.5, 2.0), ABRelu(-0.5, 2.0)),
        ({"name": "abrelu", "a": 0.25, "b": 3}, ABRelu(0.25, 3.0)),
        ("erf", Erf(1.0, 1.0, 0.0)),
        (("erf", 2.0, 0.5, 1.0), Erf(2.0, 0.5, 1.0)),
        ({"name": "erf", "b": 2.0}, Erf(1.0, 2.0, 0.0)),
        ("sigmoid", Sigmoid()),
        (("rbf", 0.5), Rbf(0.5)),
        ({"name": "RBF", "gamma": 3}, Rbf(3.0)),
        ("gelu", Gelu()),
        (("sin", 1.0, 2.0, 0.5), Sin(1.0, 2.0, 0.5)),
    ],
)
def test_parse_activation_forms(spec, expected):
    act = parse_activation(spec)
    assert act == expected
    assert type(act) is type(expected)
    # Mlp accepts the same forms and stores the parsed object
    assert Mlp(activation=spec).activation == expected


def test_parse_activation_passes_objects_through():
    obj = Erf(0.3, 0.4, 0.5)
    assert parse_activation(obj) is obj
    assert Mlp(activation=obj).activation is obj


def test_activation_params_are_floats():
    act = parse_activation(("abrelu", 1, 2))
    assert isinstance(act.a, float) and isinstance(act.b, float)
    assert isinstance(Rbf(2).gamma, float)


def test_every_registered_name_parses():
    for name in ACTIVATIONS:
        assert isinstance(parse_activation(name), Activation)


def test_unknown_activation_lists_known_names():
    with pytest.raises(ValueError, match="unknown activation 'rleu'") as info:
        parse_activation("rleu")
    for name in ACTIVATIONS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="unknown activation"):
        Mlp(activation="tanh")


@pytest.mark.parametrize("spec", [None, 3, 1.5, (), (1, 2), [("relu")], {"gamma": 1.0}, {"name": 5}, b"relu"])
def test_parse_activation_rejects_bad_forms(spec):
    with pytest.raises(ValueError, match="activation must be a name"):
        parse_activation(spec)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (("relu", 3.0), "bad parameters for activation 'relu'"),
        (("erf", 1, 2, 3, 4), "bad parameters for activation 'erf'"),
        ({"name": "rbf", "sigma": 1.0}, "bad parameters for activation 'rbf'"),
        (("rbf", 0.0), r"Rbf.gamma must be > 0, got 0.0"),
        (("rbf", -1.0), r"Rbf.gamma must be > 0, got -1.0"),
        (("leaky_relu", float("nan")), "leaky_relu.alpha must be finite, got nan"),
        (("leaky_relu", "0.2"), "leaky_relu.alpha must be a real number, got '0.2'"),
        (("abrelu", True, 1.0), "ABRelu.a must be a real number, got True"),
        (("erf", 1.0, float("inf")), "Erf.b must be finite, got inf"),
        (("sin", None), "Sin.a must be a real number, got None"),
    ],
)
def test_parse_activation_bad_parameters(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_activation(spec)


# --------------------------------------------------------------------------------------------------
# Mlp fields
# --------------------------------------------------------------------------------------------------


def test_mlp_defaults_and_normalisation():
    m = Mlp()
    assert (m.depth, m.activation, m.w_std, m.b_std, m.parameterization, m.width) == (
        3, Relu(), 1.0, 1.0, "ntk", 128,
    )
    m = Mlp(depth=2, activation="erf", w_std=2, b_std=0, parameterization="standard", width=64)
    assert isinstance(m.w_std, float) and isinstance(m.b_std, float) and isinstance(m.width, int)
    assert m.b_std == 0.0
    import numpy as np

    m = Mlp(depth=np.int64(2), w_std=np.float32(0.5), width=np.int32(7))
    assert type(m.depth) is int and m.depth == 2 and type(m.width) is int and m.width == 7
    assert m.w_std == 0.5


def test_mlp_is_frozen_and_hashable():
    m = Mlp(depth=2)
    with pytest.raises(AttributeError):
        m.depth = 3  # type: ignore[misc]
    assert hash(m) == hash(Mlp(depth=2, activation=("relu",)))
    assert m == Mlp(depth=2, activation={"name": "relu"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": 0}, r"depth must be an integer >= 1, got 0"),
        ({"depth": -2}, r"depth must be an integer >= 1, got -2"),
        ({"depth": 2.0}, r"depth must be an integer >= 1, got 2.0"),
        ({"depth": True}, r"depth must be an integer >= 1, got True"),
        ({"depth": "3"}, r"depth must be an integer >= 1, got '3'"),
        ({"b_std": -0.1}, r"b_std must be >= 0, got -0.1"),
        ({"b_std": float("nan")}, r"b_std must be finite, got nan"),
        ({"b_std": None}, r"b_std must be a real number, got None"),
        ({"w_std": 0}, r"w_std must be > 0, got 0.0"),
        ({"w_std": -1.0}, r"w_std must be > 0, got -1.0"),
        ({"w_std": float("inf")}, r"w_std must be finite, got inf"),
        ({"w_std": "1"}, r"w_std must be a real number, got '1'"),
        ({"w_std": 1 + 0j}, r"w_std must be a real number"),
        ({"parameterization": "NTK"}, r"parameterization must be one of \('ntk', 'standard'\), got 'NTK'"),
        ({"parameterization": None}, r"parameterization must be one of .* got None"),
        ({"width": 1.5}, r"width must be an integer >= 1, got 1.5"),
        ({"width": 0}, r"width must be an integer >= 1, got 0"),
        ({"width": False}, r"width must be an integer >= 1, got False"),
        ({"activation": "tanh"}, r"unknown activation 'tanh'; known: "),
    ],
)
def test_mlp_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Mlp(**kwargs)


@given(
    depth=st.one_of(st.integers(-5, 12), st.floats(allow_nan=True), st.none(), st.text(max_size=2)),
    w_std=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.none()),
    b_std=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.booleans()),
    width=st.one_of(st.integers(-3, 300), st.floats(0, 10)),
    parameterization=st.sampled_from(["ntk", "standard", "Standard", "", "ntk "]),
)
def test_mlp_valid_or_documented_error(depth, w_std, b_std, width, parameterization):
    """Any field values: a valid Mlp (fields of the right type and range) or exactly a ValueError."""
    try:
        m = Mlp(depth=depth, w_std=w_std, b_std=b_std, width=width, parameterization=parameterization)
    except ValueError as exc:
        assert str(exc).split(" ")[0] in {"depth", "w_std", "b_std", "width", "parameterization"}
        return
    assert type(m.depth) is int and m.depth >= 1
    assert type(m.width) is int and m.width >= 1
    assert math.isfinite(m.w_std) and m.w_std > 0
    assert math.isfinite(m.b_std) and m.b_std >= 0
    assert m.parameterization in ("ntk", "standard")


# --------------------------------------------------------------------------------------------------
# rust_spec: the plain description handed to ntkgan._core
# --------------------------------------------------------------------------------------------------


def test_rust_spec_contents():
    spec = Mlp(depth=2, activation=("leaky_relu", 0.1), w_std=1.5, b_std=0.2, width=32).rust_spec()
    assert spec == {
        "depth": 2, "activation": "abrelu", "params": [0.1, 1.0], "w_std": 1.5, "b_std": 0.2,
        "standard": False, "width": 32.0,
    }
    spec = Mlp(activation="sigmoid", parameterization="standard").rust_spec()
    assert spec["activation"] == "erf" and spec["params"] == [0.5, 1.0 / 2.4020563531719796, 0.5]
    assert spec["standard"] is True
    assert Mlp(activation=("rbf", 0.5)).rust_spec()["params"] == [0.5]


@pytest.mark.parametrize("act", ["gelu", ("sin", 1.0, 2.0, 0.0)])
def test_jax_only_activations_name_the_jax_backend(act):
    with pytest.raises(ValueError, match=r"not implemented in the rust backend; use backend='jax'"):
        Mlp(activation=act).rust_spec()
    assert parse_activation(act).backends == ("jax",)
    assert Relu().backends == ("rust", "jax")


def test_public_namespace_reexports():
    names = ("Mlp", "Relu", "LeakyRelu", "Abs", "Identity", "ABRelu", "Erf", "Sigmoid", "Rbf", "Gelu", "Sin")
    for name in names:
        assert getattr(ntkgan, name) is globals()[name]
    assert ntkgan.ACTIVATIONS is ACTIVATIONS
