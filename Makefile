# The README's two commands: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test proto lint bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,report]'
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
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Re-resolve the newest versions pyproject.toml allows into constraints.txt, in a scratch venv;
# run `make test` after it and commit both when green.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip && .venv-lock/bin/pip install -q -e '.[dev,report]'
	{ sed -n '1,3p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -iv '^sessiongate'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-lock && rm -f $(STAMP)

clean:
	rm -rf $(VENV) .sessiongate .pytest_cache .mypy_cache
