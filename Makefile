# Flotilla: every target sets up what it needs, so a fresh clone runs `make test` directly.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup binaries lint test unit chaos demo down bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The control-plane binaries, built once per machine and cached under ~/.cache/flotilla.
binaries: setup
	$(PY) -m e2e.binaries

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: setup
	$(VENV)/bin/pytest -m "not cluster" -q

test: setup binaries lint
	$(VENV)/bin/pytest -q

# The fault and load scenarios (pytest marker `chaos`) at volume, on the shared test clusters:
# FLOTILLA_CHAOS_RUNS runs of each seeded one (20 unless set); prints N/M converged each.
chaos: setup binaries
	$(PY) -m e2e.chaos

# Minutes long, on local clusters of its own (.e2e-bench/, stopped afterwards); it builds
# helm on first use. Never part of `test`: benchmarks report, they do not gate.
bench: setup binaries
	$(PY) -m bench

demo: setup binaries
	$(PY) -m e2e.demo

down: setup
	$(PY) -m e2e.prometheus down
	$(PY) -m e2e.clusters down

clean: down
	rm -rf .e2e
