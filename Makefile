# Two commands do all the set-up:  `make demo` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test check bench install

$(BIN)/fsql: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $(BIN)/fsql

install: $(BIN)/fsql

## demo: install, create the example data if absent, build every training set
demo: install
	$(BIN)/python scripts/generate_demo_data.py --if-missing
	$(BIN)/fsql build

## test: install and run the whole test suite (what CI runs)
test: install
	$(BIN)/python -m pytest -q

## check: lint and type-check
check: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

## bench: the point-in-time build, online, time-window and CLI start-up benchmarks (see benchmarks/)
bench: install
	$(BIN)/python benchmarks/pit_build.py
	$(BIN)/python benchmarks/online.py
	$(BIN)/python benchmarks/windows.py
	$(BIN)/python benchmarks/cli.py
