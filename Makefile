# ntkgan developer commands.  `make test` and `make run` do all set-up on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all install build-dev build-prod test test-rust test-py run bench lint lint-python lint-rust format clean

all: build-dev lint test

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

# Python deps (with the JAX extra, so the agreement tests really run) + the Rust extension, built in release.
$(STAMP): $(VPY) pyproject.toml Cargo.toml $(shell find rust -name '*.rs')
	$(VPY) -m pip install -q "maturin>=1.7,<2"
	$(VPY) -m pip install -q -e ".[jax,test,bench,dask]"
	@touch $(STAMP)

install: $(STAMP)

build-dev: $(VPY)
	rm -f python/ntkgan/_core*.so
	$(VENV)/bin/maturin develop --release

build-prod: $(VPY)
	$(VENV)/bin/maturin build --release

test-rust:
	cargo test --release

test-py: $(STAMP)
	$(VPY) -m pytest

test: install test-rust test-py

# The main job on its defaults: a short particle run (inf_ipm, relu, eight_gaussians, 2 000 steps)
# writing runs/quickstart (metrics.csv, snapshots, animation.gif, metrics.png).
run: install
	$(VENV)/bin/ntkgan run --steps 2000 --out runs/quickstart --overwrite

bench: install
	$(VPY) benches/bench_kernels.py

lint: lint-python lint-rust

lint-python: $(STAMP)
	$(VPY) -m pip install -q ruff mypy
	$(VENV)/bin/ruff check python tests benches
	$(VPY) -m mypy.stubtest ntkgan._core --allowlist .stubtest-allowlist

lint-rust:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

format:
	cargo fmt
	$(VENV)/bin/ruff format python tests benches || true

clean:
	rm -rf target $(VENV) python/ntkgan/_core*.so .pytest_cache .hypothesis
