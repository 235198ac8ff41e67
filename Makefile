# The README's two commands: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test proto lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/sessiongate serve

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

proto: $(STAMP)
	$(BIN)/python tools/genproto.py

lint: $(STAMP)
	$(BIN)/ruff check src tests tools bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .sessiongate .pytest_cache .mypy_cache
