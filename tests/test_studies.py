"""Tests of python/ntkgan/studies/ (collapse.py, damping.py, _common.py, _plots.py): Durr et al.'s studies.

References used: hand-computed interpolation and decay rates of synthetic curves; the closed-form damped
oscillator of the notes (§1.6 and the theory row of the check table in §3.4); a direct loop over the
linearised model's scalar recursion; the mixed derivative of the empirical NTK by centred finite differences;
the limits of the collapse model on real runs (free particles cover the modes, a rigid cloud cannot); serial
runs against a local Dask cluster of 2 workers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close
from ntkgan import finite as F
from ntkgan.arch import Mlp
from ntkgan.cli import main
from ntkgan.discriminator._finite import FiniteDiscriminator
from ntkgan.studies import (
    collapse_study,
    continuous_roots,
    damping_study,
    decay_rate,
    linear_model_map,
    linear_model_rate,
    transition_point,
)
from ntkgan.studies.damping import linear_model_trajectory, ntk_mixed_mean

LOG3 = math.log(3.0)

# --------------------------------------------------------------------------------------------------
# pure functions
# --------------------------------------------------------------------------------------------------


def test_transition_point_interpolates_the_first_crossing():
    assert_close(transition_point([0.0, 0.5, 1.0], [0.1, 0.3, 0.9], 0.6), 0.75)
    # unsorted input, a later dip below the threshold does not matter, NaN entries are skipped
    # sorted: r = 0.2, 0.4, 0.6, 0.8 with D = 0.2, 0.5, 0.9, 0.2: 0.4 + (0.7 - 0.5) * 0.2 / 0.4 = 0.5
    assert_close(transition_point([0.8, 0.2, 0.4, 0.6, 0.0], [0.2, 0.2, 0.5, 0.9, np.nan], 0.7), 0.5)
    # no crossing inside the grid: above already at its start (issue 11: was r_0, printed "0.000"), or never
    assert math.isnan(transition_point([0.1, 0.2], [0.8, 0.9], 0.5))
    assert math.isnan(transition_point([0.1, 0.2], [0.1, 0.2], 0.5))
    with pytest.raises(ValueError, match="same non-zero length"):
        transition_point([0.1, 0.2], [0.1], 0.5)
    with pytest.raises(ValueError, match="threshold"):
        transition_point([0.1], [0.1], float("nan"))


def test_decay_rate_of_known_signals():
    t = np.arange(400)
    rate, steps = decay_rate(np.exp(-0.03 * t), tol=1e-3)
    assert_close(rate, 0.03, rtol=1e-9)
    assert steps == math.ceil(math.log(1e3) / 0.03)
    # an oscillation under an exponential envelope: the upper envelope follows the peaks
    rate, _ = decay_rate(np.exp(-0.02 * t) * np.abs(np.cos(0.2 * t)), tol=1e-3)
    assert_close(rate, 0.02, rtol=0.05)
    rate, steps = decay_rate(2.0 + np.cos(0.2 * t))  # undamped: no decay, tolerance never reached
    assert abs(rate) < 1e-3 and math.isnan(steps)
    for bad in ([1.0], [0.0, 1.0], [1.0, np.nan], [1.0, -0.5]):
        with pytest.raises(ValueError, match="err"):
            decay_rate(bad)
    with pytest.raises(ValueError, match="tol"):
        decay_rate([1.0, 0.5], tol=1.0)


# the notes' critical-damping check (§3.4): eta_G = eta_D = 1, g1 = 1, g2 = 0.3, N = 10, so g_bar = 0.37,
# omega = 0.6083, alpha_c = 1.2166; the notes' alpha (penalty (alpha/2) E|grad D|^2) is 2 lambda here.
NOTES_ALPHA = [0.1, 0.5, 1.0, 2 * math.sqrt(0.37), 1.5, 2.0, 3.0, 5.0]
NOTES_THEORY = [0.0500, 0.2500, 0.5000, 0.6083, 0.3113, 0.2063, 0.1289, 0.0751]


@pytest.mark.parametrize("alpha, rate", list(zip(NOTES_ALPHA, NOTES_THEORY)))
def test_continuous_roots_reproduce_the_notes_theory(alpha, rate):
    gamma, omega, s_plus, s_minus = continuous_roots(1.0, alpha / 2, eta_g=0.37, d_lr=1.0, d_steps=1)
    assert_close(omega, 0.6083, atol=5e-5)
    assert_close(gamma, alpha, rtol=1e-12)
    assert_close(-s_plus.real, rate, atol=5e-5)
    assert_close((s_plus * s_minus).real, omega**2, rtol=1e-12)  # product of the roots


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_discrete_map_with_small_steps_is_the_continuous_oscillator(alpha):
    """dt = 1e-3: eta_G and d_lr scaled by dt, so -log rho(M) / dt -> the continuous decay rate."""
    dt = 1e-3
    rate, regime = linear_model_rate(1.0, alpha / 2, eta_g=0.37 * dt, d_lr=dt, d_steps=1)
    _, _, s_plus, _ = continuous_roots(1.0, alpha / 2, eta_g=0.37, d_lr=1.0, d_steps=1)
    assert_close(rate / dt, -s_plus.real, rtol=5e-3)
    assert regime == ("underdamped" if alpha < 2 * math.sqrt(0.37) else "overdamped")
    assert linear_model_rate(1.0, 0.0, eta_g=0.37 * dt, d_lr=dt, d_steps=1) == (
        pytest.approx(0.0, abs=1e-12),
        "underdamped",
    )


def test_linear_model_trajectory_is_the_alternating_recursion():
    """d_steps discriminator steps w -= k a (e + 2 lam w), then e += eta_g w, written out as a loop."""
    a, lam, eta_g, d_lr, d_steps = 0.8, 0.4, 0.07, 0.02, 3
    e, w = 1.7, 0.0
    expected = [abs(e)]
    for _ in range(25):
        for _ in range(d_steps):
            w = w - d_lr * a * (e + 2 * lam * w)
        e = e + eta_g * w
        expected.append(abs(e))
    got = linear_model_trajectory([[a]], lam, [1.7], 25, eta_g=eta_g, d_lr=d_lr, d_steps=d_steps)
    assert_close(got, expected, rtol=1e-12)
    M = linear_model_map(a, lam, eta_g=eta_g, d_lr=d_lr, d_steps=d_steps)
    assert M.shape == (2, 2)
    with pytest.raises(ValueError, match="lam"):
        linear_model_map(a, -1.0, eta_g=eta_g, d_lr=d_lr, d_steps=d_steps)
    with pytest.raises(ValueError, match="A"):
        linear_model_map(np.ones((2, 3)), 0.1, eta_g=eta_g, d_lr=d_lr, d_steps=d_steps)


def test_ntk_mixed_mean_is_the_mixed_derivative_of_the_empirical_ntk():
    arch = Mlp(depth=2, activation="erf", width=7, w_std=1.2, b_std=0.5)
    net = FiniteDiscriminator.init(arch, 2, loss="ipm", seed=3, f0="random")
    z = np.random.default_rng(0).standard_normal((4, 2))
    h = 1e-4
    fd = np.zeros((2, 2))
    for k in range(2):
        for m in range(2):
            ek, em = np.eye(2)[k] * h, np.eye(2)[m] * h
            total = 0.0
            for sk, sm, sign in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
                total += sign * F.empirical_ntk(arch, net.params, z + sk * ek, z + sm * em).mean()
            fd[k, m] = total / (4 * h * h)
    assert_close(ntk_mixed_mean(net, z), fd, rtol=1e-5, atol=1e-7)


def test_linear_network_mixed_ntk_is_two_w4_over_d():
    """Identity activation, depth 1, NTK parameterization: A -> 2 w_std^4 / d I as the width grows."""
    arch = Mlp(depth=1, activation="identity", width=4000, w_std=1.1, b_std=1.0)
    net = FiniteDiscriminator.init(arch, 2, loss="ipm", seed=0)
    z = np.random.default_rng(1).standard_normal((6, 2))
    assert_close(ntk_mixed_mean(net, z), 2 * 1.1**4 / 2 * np.eye(2), atol=0.1)


# --------------------------------------------------------------------------------------------------
# the collapse study
# --------------------------------------------------------------------------------------------------


def test_collapse_limits_free_particles_cover_the_modes_and_a_rigid_cloud_does_not(tmp_path):
    res = collapse_study(
        tmp_path, ratios=[0.0, 0.98], settings=["inf_ipm"], seeds=1, steps=600, record_every=50
    )
    by_ratio = {run["ratio"]: run for run in res.runs}
    assert_close(by_ratio[0.0]["diversity"][0], LOG3, rtol=1e-12)  # narrow source on the middle mode
    assert by_ratio[0.0]["final"] < 0.15 and by_ratio[0.0]["modes_covered"] == 3
    assert by_ratio[0.98]["final"] > 0.8
    assert 0.0 < res.transitions["inf_ipm"] < 0.98
    assert_close(res.threshold, LOG3 / 2)


def test_collapse_study_files_and_determinism(tmp_path):
    kwargs = {
        "ratios": [0.9, 0.0],
        "settings": ["inf_ipm", "finite_lr0.3"],
        "seeds": 2,
        "steps": 40,
        "record_every": 10,
        "n": 20,
    }
    a = collapse_study(tmp_path / "a", **kwargs)
    b = collapse_study(tmp_path / "b", **kwargs)
    for name in (
        "collapse_traces.csv",
        "collapse_final.csv",
        "collapse_summary.csv",
        "collapse_transitions.csv",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for name in ("collapse_diversity.png", "collapse_traces.png"):
        assert (tmp_path / "a" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Transition point" in (tmp_path / "a" / "collapse_summary.md").read_text()
    lines = (tmp_path / "a" / "collapse_traces.csv").read_text().splitlines()
    assert lines[0] == "setting,ratio,seed,step,diversity"
    assert len(lines) == 1 + 2 * 2 * 2 * 5  # settings x ratios x seeds x records (steps 0, 10, .., 40)
    assert a.params["ratios"] == [0.0, 0.9]  # sorted
    for run in a.runs:  # the final diversity is the mean over the last 20 % of the run: steps 40 and 32+
        assert_close(run["final"], run["diversity"][run["steps"] >= 32].mean(), rtol=1e-14)
        assert run["last"] == run["diversity"][-1]
    assert [r["final"] for r in a.runs] == [r["final"] for r in b.runs]
    assert {s["setting"] for s in a.summary} == {"inf_ipm", "finite_lr0.3"}


def test_a_diverging_run_is_recorded_and_the_study_goes_on(tmp_path):
    res = collapse_study(
        tmp_path, ratios=[0.0, 0.98], settings=["inf_ipm", "finite_lr0.3"], seeds=1, steps=20, eta=1e4, n=16
    )
    status = {(run["setting"], run["ratio"]): run["status"] for run in res.runs}
    assert status[("inf_ipm", 0.0)] == "ok"  # the other runs go on
    for key in (("finite_lr0.3", 0.0), ("finite_lr0.3", 0.98)):
        assert status[key].startswith("diverged: particles diverged at step")
    failed = [run for run in res.runs if run["status"] != "ok"]
    assert all(math.isnan(run["final"]) and run["modes_covered"] is None for run in failed)
    assert all(
        s["n_ok"] == 0 and math.isnan(s["mean"]) for s in res.summary if s["setting"] == "finite_lr0.3"
    )
    text = (tmp_path / "collapse_summary.md").read_text()
    assert "Runs that did not finish" in text and "n/a (no run finished)" in text
    assert (tmp_path / "collapse_traces.png").is_file()


def test_collapse_on_a_local_dask_cluster_equals_serial(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed not installed (pip install 'ntkgan[dask]')")
    kwargs = {
        "ratios": [0.0, 0.5],
        "settings": ["inf_ipm", "finite_lr0.03"],
        "seeds": 1,
        "steps": 25,
        "record_every": 5,
        "n": 16,
    }
    serial = collapse_study(tmp_path / "serial", **kwargs)
    dask = collapse_study(tmp_path / "dask", workers=2, **kwargs)
    for a, b in zip(serial.runs, dask.runs):
        assert (a["setting"], a["ratio"], a["seed"]) == (b["setting"], b["ratio"], b["seed"])
        assert np.array_equal(a["diversity"], b["diversity"])
    assert (tmp_path / "serial" / "collapse_traces.csv").read_bytes() == (
        tmp_path / "dask" / "collapse_traces.csv"
    ).read_bytes()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ratios": [1.0]}, "ratios"),
        ({"ratios": [-0.1, 0.5]}, "ratios"),
        ({"ratios": [0.5, 0.5]}, "ratios"),
        ({"ratios": []}, "ratios"),
        ({"settings": ["nope"]}, "setting"),
        ({"settings": "inf_ipm"}, "settings"),
        ({"settings": [{"name": "x", "loss": "lsgan", "d_lr": -1.0}]}, "settings.*d_lr"),
        ({"settings": [{"name": "x", "loss": "lsgan", "g2": 0.5}]}, "settings.*g2"),
        ({"seeds": 0}, "seeds"),
        ({"steps": 0}, "steps"),
        ({"k": 1}, "k"),
        ({"eta": 0.0}, "eta"),
        ({"final_window": 0.0}, "final_window"),
        ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "workers"),
        ({"workers": 0}, "workers"),
        ({"scheduler": "http://127.0.0.1:8787"}, "scheduler"),
    ],
)
def test_collapse_rejects_bad_inputs(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        collapse_study(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# the damping study
# --------------------------------------------------------------------------------------------------

# linear discriminator, kappa * d_steps = 0.1 and eta_G = 0.1, so omega ~ 0.1 sqrt(a) and lambda_c ~ 1/sqrt(a)
DAMPING_SMALL = {
    "lambdas": [0.0, 0.1, 1.0, 10.0],
    "seeds": 1,
    "steps": 300,
    "width": 32,
    "d_steps": 2,
    "d_lr": 0.05,
    "sinkhorn_every": 100,
}


@pytest.fixture(scope="module")
def damping_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("damping")
    return damping_study(out, **DAMPING_SMALL)


def test_damping_ranks_lambda_as_the_linearised_model(damping_small):
    res = damping_small
    rate = {s["lambda"]: s["rate_mean"] for s in res.summary}
    a = res.model["a"]
    # undamped: the oscillation does not decay; weak damping: rate gamma / 2 = lambda d_steps d_lr a
    assert abs(rate[0.0]) < 1e-3
    assert_close(rate[0.1], 0.1 * 0.1 * a, rtol=0.05)
    assert rate[1.0] > rate[0.1] > rate[0.0] and rate[1.0] > rate[10.0]
    assert res.fastest_lambda == 1.0
    # overdamped: gamma / 2 - sqrt(gamma^2 / 4 - omega^2)
    gamma, omega = 2 * 10.0 * 0.1 * a, math.sqrt(0.1 * 0.1 * a)
    assert_close(rate[10.0], gamma / 2 - math.sqrt(gamma**2 / 4 - omega**2), rtol=0.05)
    assert 0.5 < res.model["lambda_c"] < 2.0
    assert {s["lambda"]: s["regime"] for s in res.summary}[0.1] == "underdamped"
    assert {s["lambda"]: s["regime"] for s in res.summary}[10.0] == "overdamped"
    for s in res.summary:  # the finite network follows the linearised model closely
        assert abs(s["rate_mean"] - s["model_rate_fit"]) < 0.1 * abs(s["model_rate_fit"]) + 2e-4


def test_undamped_discriminator_output_oscillates(damping_small):
    run = next(r for r in damping_small.runs if r["lam"] == 0.0)
    f = run["f_fake_mean"][1:]
    crossings = np.count_nonzero(np.diff(np.sign(f - f.mean())) != 0)
    assert crossings >= 4  # omega ~ 0.09 per step: about 4 half-periods in 300 steps
    damped = next(r for r in damping_small.runs if r["lam"] == 1.0)
    assert damped["mean_error"][-1] < 1e-6 * damped["mean_error"][0] < run["mean_error"][-1]


def test_damping_study_files(damping_small):
    out = damping_small.out_dir
    for name in (
        "damping_traces.csv",
        "damping_rates.csv",
        "damping_summary.csv",
        "damping_summary.md",
        "damping_study.json",
        "damping_rate.png",
        "damping_trajectories.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    lines = (out / "damping_traces.csv").read_text().splitlines()
    assert lines[0] == "lambda,seed,step,mean_error,f_fake_mean,f_probe,sinkhorn"
    assert len(lines) == 1 + 4 * 301
    sinkhorn = [row.split(",")[-1] for row in lines[1:302]]
    assert [i for i, v in enumerate(sinkhorn) if v] == [0, 100, 200, 300]
    assert "Fastest lambda" in (out / "damping_summary.md").read_text()


def test_damping_study_is_deterministic(tmp_path):
    kwargs = {
        "lambdas": [0.0, 2.0],
        "seeds": 2,
        "steps": 30,
        "width": 8,
        "d_steps": 1,
        "d_lr": 0.1,
        "arch": "relu",
        "sinkhorn_every": 10,
    }
    damping_study(tmp_path / "a", **kwargs)
    damping_study(tmp_path / "b", **kwargs)
    for name in ("damping_traces.csv", "damping_rates.csv", "damping_summary.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lambdas": [-1.0]}, "lambdas"),
        ({"lambdas": [0.0, 0.0]}, "lambdas"),
        ({"lambdas": [float("inf")]}, "lambdas"),
        ({"arch": "tanh"}, "arch"),
        ({"g2": 1.0}, "g2"),
        ({"tol": 0.0}, "tol"),
        ({"steps": 1}, "steps"),
        ({"d_steps": 0}, "d_steps"),
        ({"sinkhorn_every": -1}, "sinkhorn_every"),
        ({"workers": 1, "scheduler": "tcp://127.0.0.1:1"}, "workers"),
    ],
)
def test_damping_rejects_bad_inputs(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        damping_study(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def test_cli_end_to_end(tmp_path, capsys):
    rc = main(
        [
            "collapse",
            "--ratios",
            "0,0.9",
            "--settings",
            "inf_ipm",
            "--seeds",
            "1",
            "--steps",
            "30",
            "--particles",
            "16",
            "--out",
            str(tmp_path / "c"),
            "--quiet",
        ]
    )
    assert rc == 0
    assert "transition g2/g1 (inf_ipm)" in capsys.readouterr().out
    assert (tmp_path / "c" / "collapse_diversity.png").is_file()
    rc = main(
        [
            "damping",
            "--lambdas",
            "0,1",
            "--seeds",
            "1",
            "--steps",
            "30",
            "--width",
            "8",
            "--d-steps",
            "1",
            "--d-lr",
            "0.1",
            "--out",
            str(tmp_path / "d"),
            "--quiet",
        ]
    )
    assert rc == 0
    assert "fastest lambda on the grid" in capsys.readouterr().out
    assert (tmp_path / "d" / "damping_rate.png").is_file()


def test_cli_reports_bad_inputs(tmp_path, capsys):
    assert main(["collapse", "--ratios", "0,1.5", "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "ratios" in capsys.readouterr().err
    assert main(["damping", "--lambdas", "0,x", "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "--lambdas" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["collapse", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path)])


# --------------------------------------------------------------------------------------------------
# resume: a killed study redoes only its unfinished tasks (issue 13)
# --------------------------------------------------------------------------------------------------

_RESUME_FILES = ("collapse_traces.csv", "collapse_final.csv", "collapse_summary.csv", "collapse_transitions.csv")


def test_a_killed_collapse_study_resumes_to_the_same_files(tmp_path, monkeypatch):
    from ntkgan.studies import collapse as collapse_module

    kwargs = {"ratios": [0.0, 0.5], "settings": ["inf_ipm"], "seeds": 2, "steps": 20, "record_every": 5, "n": 12}
    whole = collapse_study(tmp_path / "whole", **kwargs)
    assert whole.resumed == 0 and len(list((tmp_path / "whole" / "tasks").glob("collapse-*.json"))) == 4

    real_task, calls = collapse_module._collapse_task, []

    def killed_at_the_third(task):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_task(task)

    monkeypatch.setattr(collapse_module, "_collapse_task", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        collapse_study(tmp_path / "cut", **kwargs)
    assert len(list((tmp_path / "cut" / "tasks").glob("collapse-*.json"))) == 2
    monkeypatch.setattr(collapse_module, "_collapse_task", real_task)

    resumed = collapse_study(tmp_path / "cut", **kwargs)
    assert resumed.resumed == 2
    for a, b in zip(whole.runs, resumed.runs):
        assert a["steps"].dtype == b["steps"].dtype and np.array_equal(a["steps"], b["steps"])
        assert np.array_equal(a["diversity"], b["diversity"], equal_nan=True)
    for name in _RESUME_FILES:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes(), name
    # other parameters are other tasks: nothing is read from the records of the first call
    other = collapse_study(tmp_path / "cut", **dict(kwargs, steps=25))
    assert other.resumed == 0


def test_damping_study_resumes_from_its_records(tmp_path):
    kwargs = {"lambdas": [0.0, 2.0], "seeds": 1, "steps": 20, "width": 8, "d_steps": 1, "d_lr": 0.1,
              "arch": "relu", "sinkhorn_every": 10}
    first = damping_study(tmp_path / "a", **kwargs)
    records = sorted((tmp_path / "a" / "tasks").glob("damping-*.json"))
    assert first.resumed == 0 and len(records) == 2
    before = {n: (tmp_path / "a" / n).read_bytes() for n in ("damping_traces.csv", "damping_rates.csv")}
    records[0].unlink()  # as if the study had been killed before that task finished
    again = damping_study(tmp_path / "a", **kwargs)
    assert again.resumed == 1
    for name, data in before.items():
        assert (tmp_path / "a" / name).read_bytes() == data, name
    for a, b in zip(first.runs, again.runs):
        assert np.array_equal(a["A"], b["A"]) and np.array_equal(a["mean_error"], b["mean_error"])
