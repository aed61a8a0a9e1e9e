# corral — developer entry points. Needs only python3 (3.11+) and make; uses uv when present.
#
#   make demo        run `corral demo` in a fresh .venv
#   make check       the inner loop: lint, twins, incremental mypy, pytest -n auto at quick
#                    counts without the hammer, slow, Redis and Dask tests
#   make test        the full suite CI runs: lint, twins, mypy --strict, tests, hammer tests
#   make stress      hammer tests + reliability figures with CORRAL_STRESS=1 (more seeds)
#   make bench       install the peers and run `corral bench`
#   make docs        build the docs site into site/ (open site/index.html)
#   make docs-check  load every page in headless Chromium at 1280 and 390 px (screenshots)
#   make package     build the sdist and wheel, check them, test the installed wheel
#
# PYTHON and VENV pick the interpreter and the venv: make test PYTHON=python3.13 VENV=.venv-3.13

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# uv must never try to download an interpreter: use exactly $(PYTHON).
export UV_PYTHON_DOWNLOADS := never
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# A free-threaded interpreter (3.13t, built by scripts/build-python-ft.sh) gets the test extra
# without mypy (no wheel for it: `make typecheck` says so and skips) and only binary wheels of
# hypothesis (its newest releases build a Rust extension, which needs network for crates).
FREE_THREADED := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("Py_GIL_DISABLED") or 0)' 2>/dev/null)
ifeq ($(FREE_THREADED),1)
TEST_EXTRA := test-ft
INSTALL_FLAGS := --only-binary hypothesis
else
TEST_EXTRA := test
INSTALL_FLAGS :=
endif

# pytest exits 5 when it collects no test; the hammer pass may legitimately select none.
HAMMER_OK := || test $$? -eq 5

# Extra pytest arguments for `make pytest`/`make test`: paths, -k, -n 2 (.ci/run's 3.14 lane with
# the context flags runs a subset this way).
PYTEST_ARGS ?=

.PHONY: help venv demo check test lint fmt typecheck pytest hammer bench stress docs docs-check package clean

help:
	@sed -n '1,13p' Makefile | sed 's/^# \{0,1\}//'

# One stamp per set of extras, newer than pyproject.toml: a changed dependency list reinstalls.
# The test venv's extras go in one install (one editable build, one resolve: pip is slow):
# corral[redis]: its tests (tests/redis_ext) and bench rows need the client; redis-server is apt's.
# corral[dask]: its tests (tests/on_dask, marker `dask`) start LocalClusters; bench rows dask.*.
venv: $(VENV)/.stamp-$(TEST_EXTRA),redis,dask

$(VENV)/.stamp-%: pyproject.toml
	@set -e; \
	py=$$($(PYTHON) -c 'import sys; print(sys.executable if sys.version_info >= (3, 11) else "")' 2>/dev/null || true); \
	if [ -z "$$py" ]; then \
	  echo "error: corral needs Python >= 3.11; PYTHON=$(PYTHON) is missing or older (set PYTHON=...)" >&2; \
	  exit 1; \
	fi; \
	want=$$("$$py" -c 'import sys; print(*sys.version_info[:2])'); \
	if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print(*sys.version_info[:2])' 2>/dev/null)" != "$$want" ]; then \
	  echo "==> $(VENV) was made with another Python; recreating it"; \
	  rm -rf "$(VENV)"; \
	fi; \
	if command -v uv >/dev/null 2>&1; then \
	  echo "==> $(VENV): installing .[$*] with uv for $$py"; \
	  [ -x $(BIN)/python ] || uv venv --quiet --python "$$py" "$(VENV)"; \
	  uv pip install --quiet $(INSTALL_FLAGS) --python "$(BIN)/python" -e ".[$*]"; \
	else \
	  echo "==> $(VENV): installing .[$*] with pip for $$py"; \
	  if [ ! -x $(BIN)/python ]; then \
	    "$$py" -m venv "$(VENV)"; \
	    $(BIN)/python -m pip install --quiet --upgrade pip; \
	  fi; \
	  $(BIN)/python -m pip install --quiet $(INSTALL_FLAGS) -e ".[$*]"; \
	fi; \
	touch $@

demo: venv
	$(BIN)/corral demo

# The thread flavour of the patterns and Redis shells is generated from the asyncio one
# (scripts/unasync_patterns.py): --check fails when a generated twin is stale.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/unasync_patterns.py --check

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
ifeq ($(FREE_THREADED),1)
	@echo "==> typecheck skipped: $(PYTHON) is free-threaded and mypy has no wheel for it (the GIL builds run it)"
else
	$(BIN)/mypy
endif

pytest: venv
	$(BIN)/pytest -q -m "not hammer" --durations=12 $(PYTEST_ARGS)

hammer: venv
	$(BIN)/pytest -q -m hammer $(HAMMER_OK)

test: lint typecheck pytest hammer

# The inner loop, meant to take under two minutes on 2 cores: what `make test` checks minus the
# hammer pass, the tests that take seconds (marked slow: process pools, bench runs), the Redis
# and Dask servers (marked redis/dask) and the figure counts (CORRAL_FIGURES=0).
# mypy is incremental (its cache in .mypy_cache); pytest-xdist spreads the tests over the cores,
# each worker a process of its own (the leak check in tests/conftest.py is per process).
check: lint typecheck
	CORRAL_FIGURES=0 $(BIN)/pytest -q -n auto -p no:cacheprovider -m "not hammer and not slow and not dask and not redis" $(PYTEST_ARGS)

# Stress: the hammer tests and every reliability figure at the larger counts.
stress: venv
	CORRAL_STRESS=1 $(BIN)/pytest -q -m hammer $(HAMMER_OK)
	CORRAL_STRESS=1 $(BIN)/pytest -q -m "not hammer" tests/reliability

bench: venv $(VENV)/.stamp-bench
	$(BIN)/corral bench

# Docs: mkdocs-material + mkdocstrings (the docs extra); --strict turns every warning (a
# broken link or reference, a missing example) into an error, as in CI.
docs: venv $(VENV)/.stamp-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "docs: built into $(CURDIR)/site/ -- open file://$(CURDIR)/site/index.html in a browser"

# The site as readers see it: every page in Debian's headless Chromium at 1280 and 390 px; fails
# on code cut off at the right edge, a request leaving the machine, or a missing/broken search
# (scripts/docs_check.py). Needs `apt-get install chromium`; screenshots go to site-shots/.
docs-check: venv $(VENV)/.stamp-docs
	$(BIN)/python scripts/docs_check.py

# Packaging: sdist + wheel built, checked, the wheel installed in a fresh venv and exercised.
package: venv $(VENV)/.stamp-dist
	scripts/check-package.sh $(BIN)/python

clean:
	rm -rf $(VENV) .venv-3.* .mypy_cache .ruff_cache .pytest_cache .hypothesis dist build site site-shots
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
