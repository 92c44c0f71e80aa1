# The two set-up commands are `make run` and `make test`; everything else is for developers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test bench soak format train lock clean

run: $(VENV)/.runtime ## train a model if none is published yet, then serve on 127.0.0.1:8000
	$(BIN)/python -m training --if-missing
	$(BIN)/python -m app

test: $(VENV)/.dev ## lint, type-check and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(VENV)/.dev ## throughput/latency of the service against a ceiling and a naive baseline
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench

soak: $(VENV)/.dev ## 10 minutes at c=64 with a hot reload every minute (bench/soak-results.md)
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.soak --minutes 10

train: $(VENV)/.runtime ## train (or resume) and publish a new version
	$(BIN)/python -m training

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-resolve the locks from pyproject.toml (needs network; commit the result).
lock: $(VENV)/.dev
	$(BIN)/uv pip compile --universal --python-version 3.11 --no-header --quiet \
		pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile --universal --python-version 3.11 --no-header --quiet \
		--extra dev -c requirements.lock pyproject.toml -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian's own Python install the python3-venv package" >&2; exit 1; }

# The project itself is installed editable without build isolation: setuptools comes from the lock.
$(VENV)/.runtime: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --requirement requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(BIN)/python -m pip install --quiet --requirement requirements-dev.lock
	@touch $@
