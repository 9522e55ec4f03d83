# Set-up on a fresh machine is two commands (see README.md): `make run` and `make test`.
# Each creates .venv and installs the pinned dependencies (requirements.lock) when missing.
# Another Python in its own venv: make test PYTHON=python3.13 VENV=.venv313 (what .ci/run does).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test test-fast test-e2e lint bench ui

# Every dependency of every extra (test, distributed, dashboard) at its locked version, each file checked
# against the lock's hashes; then the harness itself, without asking the index for anything (its build
# backend, setuptools, is in the lock too).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The main job: the quickstart study sweep, recorded in ./mlruns (run it again to resume or to re-print).
# SWEEP_FLAGS passes flags to it, e.g. make run SWEEP_FLAGS="--workers 2".
SWEEP_FLAGS ?=
run: $(STAMP)
	$(BIN)/harness sweep studies/quickstart.toml $(SWEEP_FLAGS)

# Every test: unit, end-to-end (commands against stores on disk) and services (PostgreSQL, MLflow server,
# browser), on two processes: most of an end-to-end test's time is spent waiting on the commands it runs.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# The unit tier alone (about 10 s): what to run while editing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e and not services"

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "e2e or services"

# Lint, format and types, as CI checks them before the tests.
lint: $(STAMP)
	$(BIN)/ruff check harness harness_model tests scripts benchmarks
	$(BIN)/ruff format --check harness harness_model tests scripts benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_distributed.py
	$(BIN)/python benchmarks/bench_vs_plain.py
	$(BIN)/python benchmarks/bench_leaderboard.py
	$(BIN)/python benchmarks/bench_growth.py
	$(BIN)/python benchmarks/bench_recorder.py
	$(BIN)/python benchmarks/bench_store.py

ui: $(STAMP)
	$(BIN)/harness ui
