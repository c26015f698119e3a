# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv from pyproject.toml on first use (about 2 minutes: torch is large).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo lint test test-all bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/cosearch run examples/digits.yaml

lint: $(VENV)/.installed
	$(BIN)/ruff check cosearch tests scripts
	$(BIN)/ruff format --check cosearch tests scripts

test: $(VENV)/.installed
	$(BIN)/python -m pytest

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -m ""

bench: $(VENV)/.installed
	$(BIN)/python scripts/bench_spine.py

clean:
	rm -rf $(VENV) runs .pytest_cache
