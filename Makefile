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

# a seeded mutation-fuzzing run over every reader's formats, each mutant through OpenSlide,
# tiffslide and tifffile too (fuzz/README.md); the report lists each failure with its
# reproducer. Then the stress run (threads and processes on real slides, appended to the
# report) and the killed-worker tests; the status is 1 if any part failed:
# make fuzz N=1500 SEED=1 STRESS_SECONDS=30
N ?= 1500
SEED ?= 1
STRESS_SECONDS ?= 30
fuzz: setup
	status=0; \
	$(BIN)/python -m fuzz --seed $(SEED) --count $(N) --timeout 30 --report fuzz-report.md || status=1; \
	$(BIN)/python -m fuzz.stress --seconds $(STRESS_SECONDS) --seed $(SEED) --report fuzz-report.md --append || status=1; \
	$(BIN)/python -m pytest tests/test_cluster.py tests/test_distributed.py -k killed -q -p no:cacheprovider || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
