# Two entry points a new user needs: `make demo` and `make test`. Both build the venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/augworth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/augworth
	$(BIN)/augworth demo

test: $(BIN)/augworth
	$(BIN)/python -m pytest -q tests

lint: $(BIN)/augworth
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) augworth-store augworth-figures
