# Set-up on a fresh machine is two commands (see README.md): `make run` and `make test`.
# Each creates .venv and installs the pinned dependencies (requirements.lock) when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench ui

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test,distributed]'
	touch $(STAMP)

# The main job: the quickstart study sweep, recorded in ./mlruns (run it again to resume or to re-print).
run: $(STAMP)
	$(BIN)/harness sweep studies/quickstart.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_distributed.py

ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--host 127.0.0.1 --port 5000 --workers 1
