# webstack: `make run` starts the stack on loopback, `make test` runs every
# test. Both create the virtual environment from the lock files first.
# `make help` lists every target.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/services/src
export WEBSTACK_CONFIG ?= $(CURDIR)/config/stack.toml

# Benchmark knobs (see README, "Benchmarks").
BENCH_OUT ?= bench-results
BENCH_CONCURRENCY ?= 5000
BENCH_DURATION ?= 5

.DEFAULT_GOAL := help
.PHONY: help venv run test test-unit test-integration bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: services/requirements.lock services/requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "webstack needs Python 3.11 or newer as $(PYTHON) (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "installing python3-venv with apt-get"; \
	      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; \
	    else echo "$(PYTHON) cannot make a virtual environment: install python3-venv"; exit 1; fi; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r services/requirements-dev.lock
	@touch $@

venv: $(VENV)/.installed ## Create .venv from the lock files

run: venv ## Run the whole stack as local processes (front on 127.0.0.1:8080)
	$(PY) -m webstack.localstack

test: venv ## Run every test (unit, integration over loopback)
	$(PY) -m pytest services/tests

test-unit: venv ## Only the in-memory tests
	$(PY) -m pytest services/tests -m "not integration"

test-integration: venv ## Only the tests over real sockets and processes
	$(PY) -m pytest services/tests -m integration

bench: venv ## Benchmark front vs direct vs stock proxy; writes $(BENCH_OUT)/
	$(PY) -m webstack.bench --out $(BENCH_OUT) --concurrency $(BENCH_CONCURRENCY) --duration $(BENCH_DURATION)

clean: ## Remove the virtual environment and results
	rm -rf $(VENV) $(BENCH_OUT) .pytest_cache
