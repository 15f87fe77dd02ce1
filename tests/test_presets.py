"""Presets and Config: the paper's values, precedence, errors, serialisation."""

from __future__ import annotations

import json

import pytest
import yaml

from ntkgan.arch import Erf, Mlp, Rbf
from ntkgan.presets import ARCH_PRESETS, DATA_PRESETS, LOSS_PRESETS, Config, make_config


@pytest.mark.parametrize(
    "loss, eta, t, d_lr, disc, f0, n_d_steps",
    [
        ("inf_ipm", 1000.0, 1.0, None, "infinite", "zero", None),
        ("inf_lsgan", 1000.0, 1.0, None, "infinite", "zero", None),
        ("inf_vanilla", 1000.0, 1.0, None, "infinite", "zero", None),
        ("ipm", 100.0, 0.1, 0.01, "persistent", "zero", 10),
        ("ipm_reset", 1000.0, 1.0, 0.1, "reset", "zero", 10),
        ("lsgan", 1.0, 1.0, 0.1, "persistent", "random", 10),
    ],
)
def test_loss_presets_paper_values(loss, eta, t, d_lr, disc, f0, n_d_steps):
    cfg = make_config(loss)
    assert (cfg.eta, cfg.t, cfg.discriminator, cfg.d_f0) == (eta, t, disc, f0)
    if d_lr is not None:
        assert cfg.d_lr == d_lr
        assert cfg.n_d_steps == n_d_steps  # integration time T matched: T / lr steps
    assert cfg.d_loss == {"inf_ipm": "ipm", "ipm": "ipm", "ipm_reset": "ipm", "inf_lsgan": "lsgan",
                          "lsgan": "lsgan", "inf_vanilla": "vanilla"}[loss]
    assert cfg.steps == 50_000 and cfg.log_every == 100


def test_arch_presets_paper_values():
    relu = make_config(arch="relu").discriminator_arch()
    assert relu == Mlp(depth=3, activation="relu", w_std=1.0, b_std=1.0, width=128)
    assert make_config(arch="relu_nobias").discriminator_arch().b_std == 0.0
    assert make_config(arch="relu_highbias").discriminator_arch().b_std == 4.0
    rbf = make_config(arch="rbf")
    assert rbf.discriminator_arch().depth == 1 and rbf.d_b_std == 0.0 and rbf.d_kind == "nngp"
    assert rbf.discriminator_arch().activation == Rbf(gamma=0.5)
    sig = make_config(arch="sigmoid").discriminator_arch()
    assert sig.depth == 3 and sig.b_std == 0.2
    assert sig.activation == Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)
    assert set(ARCH_PRESETS) == {"relu", "relu_nobias", "relu_highbias", "rbf", "sigmoid"}
    assert set(LOSS_PRESETS) == {"inf_ipm", "inf_lsgan", "inf_vanilla", "inf_vanilla_ode", "ipm", "ipm_reset",
                                 "lsgan"}
    assert set(DATA_PRESETS) == {"eight_gaussians", "density", "ab", "digits"}


def test_data_presets():
    for name in ("eight_gaussians", "density", "ab"):
        cfg = make_config(data=name)
        assert (cfg.data, cfg.n_source, cfg.n_target) == (name, 500, 500)
    digits = make_config(data="digits")
    assert (digits.n_source, digits.eta, digits.t) == (1024, 100.0, 1000.0)  # like the toolkit's mnist preset
    assert make_config(data="gmm:4").n_source is None  # any dataset name, default sizes


def test_defaults_are_the_default_presets():
    assert Config() == make_config()
    assert make_config() == make_config("inf_ipm", "relu", "eight_gaussians")


def test_explicit_options_override_presets():
    assert make_config("ipm", eta=5.0).eta == 5.0
    assert make_config("inf_ipm", "rbf", t=3.0).t == 3.0  # the rbf preset alone forces t = 1
    assert make_config("inf_ipm", "rbf").t == 1.0
    assert make_config("ipm", "relu", "digits").eta == 100.0  # a data preset wins over the loss preset
    assert make_config("ipm", "relu", "digits", eta=7.0).eta == 7.0  # ... and explicit options over both
    assert make_config("ipm", d_steps=1).n_d_steps == 1
    assert make_config("lsgan", d_f0="zero").d_f0 == "zero"


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown loss preset 'wgan'.*inf_ipm"):
        make_config("wgan")
    with pytest.raises(ValueError, match="unknown arch preset 'tanh'.*relu_nobias"):
        make_config(arch="tanh")
    with pytest.raises(ValueError, match="unknown data preset or dataset 'cifar'.*eight_gaussians"):
        make_config(data="cifar")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['etaa'\].*eta"):
        make_config(etaa=1.0)
    with pytest.raises(ValueError, match="unknown option"):
        Config.from_dict({**Config().to_dict(), "bogus": 1})


@pytest.mark.parametrize("loss", ["ipm", "ipm_reset", "lsgan"])
def test_finite_losses_reject_the_rbf_nngp(loss):
    with pytest.raises(ValueError, match="d_kind='ntk'"):
        make_config(loss, "rbf")


@pytest.mark.parametrize(
    "option, value",
    [("steps", -1), ("eta", -1.0), ("t", float("nan")), ("d_lr", 0.0), ("discriminator", "frozen"),
     ("coupling", "glued"), ("theta", "dense"), ("gen_optimizer", "rmsprop"), ("d_activation", "swish"),
     ("n_source", 0), ("seed", -3), ("gen_fresh_z", 1), ("d_steps", 1.5)],
)
def test_bad_values_raise(option, value):
    with pytest.raises(ValueError, match=option if option != "d_activation" else "unknown activation"):
        make_config(**{option: value})


@pytest.mark.parametrize("loss, arch, data", [
    ("inf_ipm", "relu", "eight_gaussians"), ("lsgan", "sigmoid", "ab"), ("inf_lsgan", "rbf", "digits"),
    ("ipm_reset", "relu_nobias", "density"),
])
def test_round_trip_json_yaml(loss, arch, data):
    cfg = make_config(loss, arch, data, coupling="kernel", theta="two_number", g2=0.25, seed=4)
    d = cfg.to_dict()
    assert Config.from_dict(d) == cfg
    assert Config.from_dict(json.loads(json.dumps(d))) == cfg
    assert Config.from_json(cfg.to_json()) == cfg
    assert Config.from_dict(yaml.safe_load(yaml.safe_dump(d))) == cfg
    assert d is not cfg.to_dict() and d == cfg.to_dict()
