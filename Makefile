# One-command entry points. `make demo` and `make test` each set up .venv first.
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
# --strict: any warning (a broken link, a docstring griffe cannot parse) fails the build.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor.
DOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

.PHONY: setup demo test docs lint bench fuzz clean

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

# a seeded mutation-fuzzing run over every reader's formats (fuzz/README.md); the report
# lists each failure with its reproducer: make fuzz N=1500 SEED=1
N ?= 1500
SEED ?= 1
fuzz: setup
	$(BIN)/python -m fuzz --seed $(SEED) --count $(N) --timeout 30 --report fuzz-report.md

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
