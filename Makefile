# Two entry points a new user needs: `make demo` and `make test`. Both build the venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean chromium

$(BIN)/augworth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/augworth
	$(BIN)/augworth demo

# The report's test renders it in headless Chromium: install Debian's when it is missing (CI runs as root).
test: lint chromium
	$(BIN)/python -m pytest -q tests

chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq || true; DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# ruff, then mypy (pyproject.toml's [tool.mypy]: strict on results/ and search_spaces/); `make test` runs it first
lint: $(BIN)/augworth
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) augworth-store augworth-figures
