# make demo   run the example notebooks on a local session pool; executed copies land in examples/output/
# make test   ruff, then the whole pytest suite (slow and browser tests included)
# make stress the local pool under load (a few minutes, not in CI); prints the table docs/reliability.md records
# Works from a clean clone on Debian/Ubuntu with Python >= 3.10; as root it apt-installs what is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.aca-sessions-installed
PYTEST_ARGS ?=
# Two pytest workers, a test file each at a time: most tests wait on kernels and pools, so this halves the run on
# a 2-core machine (each worker has its own pool and kernelspecs). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo 1)

.PHONY: help demo test stress lint clean distclean install pool-deps browser-deps

help:
	@echo "make demo       run examples/*.ipynb on the local session pool (outputs in examples/output/)"
	@echo "make test       ruff + the whole test suite"
	@echo "make stress     the local pool under load: sessions x cells, parallel uploads, ulimit -n 1024, memory"
	@echo "make lint       ruff only"
	@echo "make clean      remove build and test leftovers (keeps $(VENV)); make distclean also removes $(VENV)"

$(BIN)/python:
	@py="$(PYTHON)"; \
	if [ -z "$$py" ]; then echo "make: no python3 found; install Python 3.10 or newer" >&2; exit 1; fi; \
	if ! "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then \
		echo "make: $$py is older than Python 3.10; run make PYTHON=/path/to/python3.11" >&2; exit 1; fi; \
	if ! "$$py" -m venv $(VENV) >/dev/null 2>&1; then \
		rm -rf $(VENV); \
		if [ -n "$(IS_ROOT)" ] && command -v apt-get >/dev/null; then \
			echo "make: installing python3-venv"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
			"$$py" -m venv $(VENV); \
		else echo "make: '$$py -m venv' failed; install the python3-venv package" >&2; exit 1; fi; \
	fi
	$(BIN)/python -m pip install -q --upgrade pip

# The stamp skips the install on later runs until pyproject.toml changes.
$(INSTALLED): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,pool]'
	@touch $@

install: $(INSTALLED)

# bubblewrap sandboxes each local session; without it the pool still runs, unsandboxed, and says so.
pool-deps:
	@if ! command -v bwrap >/dev/null; then \
		if [ -n "$(IS_ROOT)" ] && command -v apt-get >/dev/null; then \
			echo "make: installing bubblewrap"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
		else echo "make: bubblewrap (bwrap) not found and not root: local sessions will run without a sandbox" >&2; fi; \
	fi

# The JupyterLab browser test drives Debian's chromium; without it (and not root) that test skips with a reason.
browser-deps:
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
		if [ -n "$(IS_ROOT)" ] && command -v apt-get >/dev/null; then \
			echo "make: installing chromium (for the browser test)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "make: chromium not found and not root: the browser test will be skipped" >&2; fi; \
	fi

demo: $(INSTALLED) pool-deps
	$(BIN)/python examples/run_demo.py

lint: $(INSTALLED)
	$(BIN)/ruff check aca_kernel aca_sessions tests bench examples

# A private local-pool directory: tests never reuse or stop the developer's own pool, and any pool a test
# started through the fallback is stopped afterwards.
test: $(INSTALLED) pool-deps browser-deps lint
	@export ACA_LOCAL_POOL_DIR="$$(mktemp -d)"; \
	trap '$(BIN)/aca-sessions pool stop >/dev/null 2>&1 || true; rm -rf "$$ACA_LOCAL_POOL_DIR"' EXIT; \
	echo "$(BIN)/python -m pytest -q --timeout 300 -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)"; \
	$(BIN)/python -m pytest -q --timeout 300 -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Not part of `test`: minutes of load whose numbers depend on the machine. Pools are private and on loopback.
stress: $(INSTALLED) pool-deps
	$(BIN)/python tests/reliability/stress.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache examples/output artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
