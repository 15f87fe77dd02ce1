"""User mistakes get one line on stderr (``ntkgan COMMAND: error: ...``) and exit status 2, in every command,
before any work or output; ``--debug`` / ``NTKGAN_DEBUG=1`` shows the traceback instead (issue 11, item 4).
And a run's configuration is fixed on resume, from the command line (item 1)."""

from __future__ import annotations

import json

import pytest
from ntkgan import backends
from ntkgan.cli import main

TINY = ["--set", "n_source=20", "--set", "n_target=20", "--snapshot-every", "0", "--quiet"]


def _one_error_line(capsys, command: str, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith(f"ntkgan {command}: error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize("make_argv, needles", [
    (lambda tmp, f: ["run", "--out", "/proc/ntkgan-test"], ["/proc/ntkgan-test", "cannot create it"]),
    (lambda tmp, f: ["run", "--out", str(f / "sub")], ["is a file, not a directory"]),
    (lambda tmp, f: ["run", "--out", str(f), "--overwrite"], ["exists and is not a directory",
                                                              "--overwrite replaces run directories only"]),
    (lambda tmp, f: ["run", "--out", "/dev/null"], ["'/dev/null' exists and is not a directory"]),
    (lambda tmp, f: ["run", "--out", str(tmp / "r"), "--data", f"image:{tmp}"], ["is a directory, not an image"]),
    (lambda tmp, f: ["run", "--out", str(tmp / "r"), "--data", "gmm:0"], ["dataset 'gmm:0': k must be >= 1"]),
    (lambda tmp, f: ["run", "--out", str(tmp / "r"), "--steps", "x"], ["invalid int value", "--help"]),
    (lambda tmp, f: ["sweep", "--out", str(f)], ["exists and is not a directory"]),
    (lambda tmp, f: ["sweep", "--out", str(tmp / "s"), "--loss", "nope"], ["unknown loss preset 'nope'"]),
    (lambda tmp, f: ["collapse", "--out", "/proc/ntkgan-test", "--steps", "5"], ["cannot create it"]),
    (lambda tmp, f: ["damping", "--steps", "5"], ["required: --out"]),
    (lambda tmp, f: ["vector-field", "--loss", "nope"], ["unknown loss preset 'nope'"]),
    (lambda tmp, f: ["adequation", "--preset", "nope"], ["preset must be one of"]),
])
def test_mistakes_are_one_line_and_exit_2(tmp_path, a_file, capsys, make_argv, needles):
    argv = make_argv(tmp_path, a_file)
    command = argv[0]
    try:
        code = main([*argv, *(TINY if command == "run" else [])])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    _one_error_line(capsys, command, *needles)
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_unknown_backend_is_rejected_before_any_progress_output(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--steps", "3", "--backend", "torch"]) == 2  # no --quiet
    _one_error_line(capsys, "run", "backend must be one of ('rust', 'jax')", "'torch'")
    assert not out.exists()


def test_missing_jax_extra_is_one_line_with_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backends, "_importable", lambda name: name == "rust")
    assert main(["run", "--out", str(tmp_path / "r"), "--backend", "jax", "--steps", "2", *TINY]) == 2
    _one_error_line(capsys, "run", "backend 'jax' is not available", 'pip install "ntkgan[jax]"')


def test_missing_dask_extra_is_one_line_with_the_install_command(tmp_path, capsys, monkeypatch):
    import ntkgan._cluster

    def missing():
        raise ImportError("sweeps on a cluster need dask.distributed: pip install 'ntkgan[dask]'")

    monkeypatch.setattr(ntkgan._cluster, "_import_distributed", missing)
    code = main(["sweep", "--out", str(tmp_path / "s"), "--loss", "inf_ipm", "--arch", "relu", "--data",
                 "eight_gaussians", "--seeds", "1", "--steps", "1", "--workers", "2", "--quiet"])
    assert code == 2
    _one_error_line(capsys, "sweep", "pip install 'ntkgan[dask]'")


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="cannot create it"):
        main(["run", "--out", "/proc/ntkgan-test", "--debug", *TINY])
    with pytest.raises(ValueError, match="cannot create it"):
        main(["--debug", "run", "--out", "/proc/ntkgan-test", *TINY])
    monkeypatch.setenv("NTKGAN_DEBUG", "1")
    with pytest.raises(ValueError, match="dataset 'gmm:0'"):
        main(["run", "--out", str(tmp_path / "r"), "--data", "gmm:0", *TINY])


# --------------------------------------------------------------------------------------------------
# resume from the command line: the configuration is fixed
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "base"
    assert main(["run", "--out", str(out), "--steps", "4", "--checkpoint-every", "2", *TINY]) == 0
    return out


def _files(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("extra, needles", [
    (["--set", "eta=5"], ["eta: 1000.0 -> 5"]),
    (["--loss", "inf_lsgan"], ["loss: inf_ipm -> inf_lsgan"]),
    (["--seed", "3", "--set", "d_b_std=0"], ["d_b_std: 1.0 -> 0", "seed: 0 -> 3"]),
    (["--steps", "2"], ["steps 2 is below the 4 steps the run has done"]),
    (["--overwrite"], ["--resume continues a run, --overwrite replaces one"]),
])
def test_resume_refuses_other_options_and_writes_nothing(run_dir, capsys, extra, needles):
    capsys.readouterr()
    before = _files(run_dir)
    assert main(["run", "--resume", str(run_dir), *extra, "--quiet"]) == 2
    _one_error_line(capsys, "run", *needles)
    assert _files(run_dir) == before


def test_resume_refuses_an_edited_config_json(run_dir, capsys):
    saved = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(dict(saved, seed=7)))
    (run_dir / "COMPLETE").unlink()
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--steps", "6", "--quiet"]) == 2
    _one_error_line(capsys, "run", "differs from the configuration the run started with (seed: 0 -> 7)")


def test_resume_accepts_equal_options_and_says_where_it_resumes(run_dir, capsys):
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--steps", "6", "--seed", "0", "--loss", "inf_ipm",
                 "--checkpoint-every", "3", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "ntkgan: resumed from step 4 (checkpoints/step_00000004.npz)" in err
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 6


def test_broken_config_json_names_the_file(run_dir, capsys):
    (run_dir / "config.json").write_text("{not json")
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    _one_error_line(capsys, "run", "config.json' is not valid JSON")
