# One-command entry points. `make demo` and `make test` each set up .venv first.
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
# --strict: any warning (a broken link, a docstring griffe cannot parse) fails the build.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor.
DOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

.PHONY: setup demo test docs lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"

demo: setup
	$(BIN)/python -m wsiarray demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest --nbmake notebooks/ -o testpaths= -o addopts= -q
	$(DOCS_BUILD)

docs: setup
	$(DOCS_BUILD)

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
