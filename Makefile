# keywarden: `make demo` runs the local stack with demo traffic; `make test` runs every test.
# Both create .venv and install the project from PyPI; Kafka's jars come from Maven Central.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# LiteLLM's proxy plus aiokafka in their own venv, for the test of keywarden's LiteLLM callback
# (tests/support/litellm.py installs them, ~2 min once, then this stamp). A failure stops `make test`.
LITELLM_STAMP := .venv-bench/.keywarden-litellm
# Test processes (pytest-xdist): each runs whole files with its own broker and warehouse, since
# most tests wait on a broker, a worker or a timeout rather than on a core. 1: one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

.PHONY: setup demo test faults unit bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/check-prerequisites.sh
	@bash scripts/check-prerequisites.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# A download that arrives damaged (hash mismatch) or cut off is tried once more, around pip's cache.
	$(BIN)/python -m pip install --quiet -e '.[test]' || \
	  { sleep 5; $(BIN)/python -m pip install --quiet --no-cache-dir -e '.[test]'; }
	@touch $(STAMP)

demo: setup
	$(BIN)/keywarden demo

test: setup $(LITELLM_STAMP)
	$(BIN)/python -m pytest $(XDIST)

# The fault-injection suite alone (Kafka restarts, SIGKILLed workers, 30 s and 60 s outages):
# about 2.5 minutes; `make test` runs it too.
faults: setup
	$(BIN)/python -m pytest $(XDIST) tests/faults

unit: setup
	$(BIN)/python -m pytest tests/unit

# LiteLLM (a peer the benchmarks compare against) lives in its own venv, never in the project's.
BENCH_STAMP := .venv-bench/.installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m tests.support.litellm || echo "litellm[proxy] did not install: the benchmark says why and goes on without it"
	@touch $(BENCH_STAMP)

$(LITELLM_STAMP): $(STAMP) tests/support/litellm.py
	$(BIN)/python -m tests.support.litellm
	@touch $(LITELLM_STAMP)

bench: setup $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .venv-bench .keywarden .pytest_cache
