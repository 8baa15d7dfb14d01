# Two set-up commands work from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck pytest pytest-uvloop docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[demo]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/python -m examples.demo $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests benchmarks examples docs/hooks.py
	$(BIN)/ruff format --check src tests benchmarks examples docs/hooks.py

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy --strict src

pytest: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -W error $(PYTEST_ARGS)

# The suite again on uvloop, the loop LangGraph's API server runs nodes on. The docs
# pages run in subprocesses of their own (asyncio's loop, as a reader runs them), so
# that module would only repeat the first pass.
pytest-uvloop: $(VENV)/.dev-installed
	ACT_TEST_LOOP=uvloop $(BIN)/python -m pytest -W error --ignore=tests/test_docs.py $(PYTEST_ARGS)

# The site (docs/ and the API reference from the docstrings) in build/site; --strict
# fails on a public name without a docstring, a broken cross-reference or link.
docs: $(VENV)/.dev-installed
	$(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs pytest pytest-uvloop

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .demo build/site
