# keywarden: `make demo` runs the local stack with demo traffic; `make test` runs every test.
# Both create .venv and install the project from PyPI; Kafka's jars come from Maven Central.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test unit bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/check-prerequisites.sh
	@bash scripts/check-prerequisites.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(BIN)/keywarden demo

test: setup
	$(BIN)/python -m pytest

unit: setup
	$(BIN)/python -m pytest tests/unit

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .keywarden .pytest_cache
