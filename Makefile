# Every target installs what it needs first, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PG_URL  = $$($(BIN)/python scripts/ensure_pg.py)
DBTOOLS = $(BIN)/dbtools

.PHONY: install test lint format demo bench clean verify
.DEFAULT_GOAL := help

help:
	@echo "make demo   run a full dev -> prod sync on two local demo databases"
	@echo "make test   run the test suite against the local PostgreSQL"
	@echo "other: install lint bench verify"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

test: install
	DBTOOLS_PG_URL="$(PG_URL)" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check dbtools tests scripts bench
	$(BIN)/ruff format --check dbtools tests scripts bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix dbtools tests scripts bench
	$(BIN)/ruff format dbtools tests scripts bench

demo: install
	DBTOOLS_PG_URL="$(PG_URL)" $(BIN)/python scripts/demo.py

verify: install
	$(DBTOOLS) verify

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
