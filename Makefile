# The two set-up commands are `make run` and `make test`; `make` alone lists every target.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Both CLIs default to this themselves; exported for the tools run here (pytest, bench).
export TF_CPP_MIN_LOG_LEVEL ?= 2

# Plain `make` only prints the targets: it must never start a 1.6 GB install by surprise.
.DEFAULT_GOAL := help
.PHONY: help run test system-deps bench bench-peers soak train format lock clean

help: ## list the targets (this text)
	@echo "usage: make <target>"
	@echo
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:[^#]*## / {printf "  %-12s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

run: $(VENV)/.runtime ## train a model if none is published yet, then serve on 127.0.0.1:8000
	@$(BIN)/python -m training --if-missing >/dev/null
	@$(BIN)/python -m app

test: $(VENV)/.dev ## lint, type-check and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

system-deps: ## install the system packages the tests need (root)
	./scripts/system-deps

bench: $(VENV)/.dev ## throughput/latency of the service against a ceiling and a naive baseline
	@command -v wrk >/dev/null || ./scripts/system-deps
	$(BIN)/python -m bench

bench-peers: $(VENV)/.dev ## KServe, MLServer, BentoML, LitServe against our APIs (venvs ~1.5 GB each)
	@command -v wrk >/dev/null || ./scripts/system-deps
	$(BIN)/python -m bench.peers

soak: $(VENV)/.dev ## 10 minutes at c=64 with a hot reload every minute (bench/soak-results.md)
	@command -v wrk >/dev/null || ./scripts/system-deps
	$(BIN)/python -m bench.soak --minutes 10

train: $(VENV)/.runtime ## train (or resume) and publish a new version
	$(BIN)/python -m training

format: $(VENV)/.dev ## format the code and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: $(VENV)/.dev ## re-resolve the locks from pyproject.toml (needs network; commit the result)
	$(BIN)/uv pip compile --universal --python-version 3.11 --no-header --quiet \
		pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile --universal --python-version 3.11 --no-header --quiet \
		--extra dev -c requirements.lock pyproject.toml -o requirements-dev.lock
	$(BIN)/uv pip compile --universal --python-version 3.11 --no-header --quiet \
		-c requirements.lock client/pyproject.toml -o client/requirements.lock

clean: ## delete the venv and the tool caches (models/ is kept)
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH" >&2; exit 1; }
	@echo "creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian's own Python install the python3-venv package" >&2; exit 1; }

# The project itself is installed editable without build isolation: setuptools comes from the lock.
# Sizes measured on 2026-11-30: the installed packages take 1.6 GB (TensorFlow 1.3 GB of it),
# the wheels ~0.4 GB to download; pip took 59 s to install them from a local mirror.
# The client (client/: XorClient, `xor-predict`) goes into the same venv, from its own lock
# (httpx; shared packages pinned as in requirements.lock): the service does not depend on it.
$(VENV)/.runtime: $(BIN)/python requirements.lock pyproject.toml client/requirements.lock client/pyproject.toml
	@if [ -e $@ ]; then \
		echo "updating $(VENV) to requirements.lock"; \
	else \
		echo "installing the pinned dependencies into $(VENV) (~1.6 GB: ~0.4 GB to download, then about a minute)"; \
	fi
	@$(BIN)/python -m pip install --quiet --requirement requirements.lock
	@$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	@$(BIN)/python -m pip install --quiet --requirement client/requirements.lock
	@$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable ./client
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	@echo "installing the pinned development tools into $(VENV)"
	@$(BIN)/python -m pip install --quiet --requirement requirements-dev.lock
	@touch $@
