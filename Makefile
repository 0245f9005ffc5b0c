# gameday: the two commands a newcomer needs are `make drill` and `make test`.
# Every target installs what it is missing first (Debian packages, then the venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup host-packages test-packages venv test test-fast lint drill evidence bench clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: host-packages venv ## install Debian packages and the Python venv (idempotent, fast when done)

host-packages: ## install the Debian packages the local platform runs (apt-get)
	@infra/local/install-host.sh

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "gameday needs Python 3.11 or newer (got $$($(BIN)/python -V))"; exit 2; }
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

test-packages:
	@infra/local/install-host.sh --test

test: setup test-packages ## run the whole test suite (unit, integration, end-to-end)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: setup test-packages ## unit tests and the quick integration tests only
	$(BIN)/pytest -m 'not slow' $(PYTEST_ARGS)

lint: setup ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

drill: setup ## bring up the local platform, kill a region under load, print the verdict
	$(BIN)/gameday run region-kill

EVIDENCE_ARGS ?= --since 90
evidence: venv ## export the drills of a period as a verifiable bundle (EVIDENCE_ARGS="--since 90")
	$(BIN)/gameday evidence $(EVIDENCE_ARGS)

bench: setup ## run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m tests.bench

clean: ## remove the venv, caches and any local world state
	-@test -x $(BIN)/gameday && $(BIN)/gameday testbed down >/dev/null 2>&1 || true
	rm -rf $(VENV) .gameday .mypy_cache .ruff_cache .pytest_cache test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
