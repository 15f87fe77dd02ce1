# ntkgan developer commands.  `make run`, `make test` and `make wheel` do all set-up on a fresh clone.
#
# The venv is installed in levels, each with its own stamp file:
#   $(RUN_STAMP)   the package, its runtime dependencies and the Rust extension (release):
#                  what `make run` needs
#   $(FULL_STAMP)  + the extras jax, oracle (the pinned jax 0.4.30 + neural-tangents set), test, bench, dask:
#                  what `make test`, `make bench` and `make lint` need
# `make run` on a fresh clone installs only the first level; a later `make test` adds the extras to that venv.
#
# A second, light venv $(JAXNEW_VENV) holds the current JAX release (no neural-tangents) with the runtime and
# test dependencies only; it runs the JAX tests ($(JAXNEW_TESTS)) on the package of the source tree
# (PYTHONPATH=python, with the Rust extension level 1 built there), so the "jax" backend and the compiled
# flow steps are tested on both JAX versions.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
FULL_STAMP := $(VENV)/.installed-full
EXTRAS := jax,oracle,test,bench,dask
JAXNEW_VENV := .venv-jaxnew
JAXNEW_PY := $(JAXNEW_VENV)/bin/python
JAXNEW_STAMP := $(JAXNEW_VENV)/.installed
JAXNEW_TESTS := tests/test_jax_native.py tests/test_jax_path.py
RUST_SOURCES := $(shell find rust -name '*.rs')
MATURIN := maturin>=1.7,<2

# The portable wheel: abi3 (CPython >= 3.10), manylinux2014 (glibc 2.17) through zig as the linker.  The crate
# is compiled for baseline x86-64 and picks its AVX2/AVX-512 clones at run time: no target-cpu flags here.
# tests/test_wheel.py builds with the same flags (WHEEL_BUILD_ARGS there); keep ZIGLANG in step with the
# `test` extra in pyproject.toml.
ZIGLANG := ziglang==0.15.2
WHEEL_FLAGS := --release --zig --compatibility manylinux2014
WHEEL_DIR := dist

.PHONY: all install install-run install-jax-current build-dev build-prod wheel test test-rust test-py \
        test-jax-current run bench lint lint-python lint-rust format clean

all: build-dev lint test

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

# Level 1: the package with its runtime dependencies only, and the Rust extension built in release.
$(RUN_STAMP): $(VPY) pyproject.toml Cargo.toml Cargo.lock $(RUST_SOURCES)
	$(VPY) -m pip install -q "$(MATURIN)"
	$(VPY) -m pip install -q --no-build-isolation -e .
	@touch $@

# Level 2: the extras (with the JAX extra, so the agreement tests really run).
# Rust changes rebuild level 1 only.
$(FULL_STAMP): pyproject.toml | $(RUN_STAMP)
	$(VPY) -m pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	@touch $@

install-run: $(RUN_STAMP)

# The current-JAX venv: pyproject's runtime dependencies, its `jax` extra (unpinned above: the latest
# release) and pytest + hypothesis; not ntkgan itself (the tests import it from python/).
$(JAXNEW_STAMP): pyproject.toml
	$(PY) -m venv $(JAXNEW_VENV)
	$(JAXNEW_PY) -m pip install -q --upgrade pip
	$(JAXNEW_PY) -m pip install -q $$($(PY) .ci/jax_current_requirements.py)
	@touch $@

install-jax-current: $(JAXNEW_STAMP)

install: $(RUN_STAMP) $(FULL_STAMP)

build-dev: $(VPY)
	$(VPY) -m pip install -q "$(MATURIN)"
	rm -f python/ntkgan/_core*.so
	$(VENV)/bin/maturin develop --release

# The wheel to distribute, written to dist/ (see WHEEL_FLAGS); `auditwheel show` prints its glibc
# symbol check.
# zig is found by maturin as `python3 -m ziglang`, hence the venv first on PATH.
wheel: $(VPY)
	$(VPY) -m pip install -q "$(MATURIN)" "$(ZIGLANG)" "auditwheel>=6"
	rm -f $(WHEEL_DIR)/ntkgan-*.whl
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build $(WHEEL_FLAGS) --out $(WHEEL_DIR)
	$(VENV)/bin/auditwheel show $(WHEEL_DIR)/ntkgan-*.whl

build-prod: wheel

test-rust:
	cargo test --release

test-py: install
	$(VPY) -m pytest

# The JAX tests again on the current JAX release (the oracle's tests skip there, naming why); the 300-step
# agreement runs (marked slow, 2.5 min) only on the pinned set, in test-py.
test-jax-current: $(JAXNEW_STAMP) $(RUN_STAMP)
	PYTHONPATH=python $(JAXNEW_PY) -m pytest -q -m "not slow" $(JAXNEW_TESTS)

test: install test-rust test-py test-jax-current

# The main job on its defaults: a short particle run (inf_ipm, relu, eight_gaussians, 2 000 steps)
# writing runs/quickstart (metrics.csv, snapshots, animation.gif, metrics.png).  Needs level 1 only.
run: install-run
	$(VENV)/bin/ntkgan run --steps 2000 --out runs/quickstart --overwrite

bench: install
	$(VPY) benches/bench_kernels.py

lint: lint-python lint-rust

lint-python: install
	$(VPY) -m pip install -q ruff mypy
	$(VENV)/bin/ruff check python tests benches
	$(VPY) -m mypy.stubtest ntkgan._core --allowlist .stubtest-allowlist --ignore-unused-allowlist

lint-rust:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

format:
	cargo fmt
	$(VENV)/bin/ruff format python tests benches || true

clean:
	rm -rf target $(VENV) $(JAXNEW_VENV) python/ntkgan/_core*.so .pytest_cache .hypothesis $(WHEEL_DIR)
