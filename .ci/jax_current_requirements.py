#!/usr/bin/env python3
"""Print the requirements of the current-JAX test venv (`make install-jax-current`), one per line.

pyproject.toml's runtime dependencies, its `jax` extra (no upper bound: pip takes the latest release) and
the test runners of its `test` extra; not neural-tangents, not the wheel tools (maturin, ziglang,
auditwheel), not ntkgan itself (the tests import it from python/).
"""

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the copy pip vendors
    from pip._vendor import tomli as tomllib

RUNNERS = ("pytest", "hypothesis", "mpmath", "pytest-timeout")

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]
runners = [r for r in extras["test"] if r.split(">")[0].split("=")[0].split("<")[0] in RUNNERS]
print("\n".join(project["dependencies"] + extras["jax"] + runners))
