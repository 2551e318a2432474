# Every target installs what it needs first, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PG_URL  = $$($(BIN)/python scripts/ensure_pg.py)
DBTOOLS = $(BIN)/dbtools

.PHONY: install test lint format demo bench clean verify backup sync-schema sync-data \
        full-sync sync rollback prune check seed-demo diff status plan apply history \
        migrate-lint migrate-test
# YES=1 confirms destructive steps without a terminal (CI); DRY_RUN=1 plans only.
FLAGS   = $(if $(filter 1,$(YES)),--yes,) $(if $(filter 1,$(DRY_RUN)),--dry-run,) $(DBTOOLS_FLAGS)
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

# The seed's process, step by step (docs/OPERATIONS.md).
verify: install
	$(DBTOOLS) verify $(DBTOOLS_FLAGS)

backup: install
	$(DBTOOLS) backup $(DBTOOLS_FLAGS)

sync-schema: install
	$(DBTOOLS) sync-schema $(FLAGS)

sync-data: install
	$(DBTOOLS) sync-data $(FLAGS)

full-sync: install
	$(DBTOOLS) full-sync $(FLAGS)

sync: full-sync

# Promotion in two steps: a plan a person reviews, then exactly that plan applied.
plan: install
	$(DBTOOLS) plan --save $(DBTOOLS_FLAGS)

apply: install
	@test -n "$(PLAN)" || { echo "usage: make apply PLAN=snapshots/plans/<file>.json [YES=1]" >&2; exit 2; }
	$(DBTOOLS) apply "$(PLAN)" $(if $(filter 1,$(YES)),--yes,) $(DBTOOLS_FLAGS)

history: install
	$(DBTOOLS) history $(DBTOOLS_FLAGS)

# For migration authors (.github/workflows/migrations.yml runs both on pull requests).
migrate-lint: install
	$(DBTOOLS) migrate lint $(FILES) $(DBTOOLS_FLAGS)

migrate-test: install
	$(DBTOOLS) migrate test $(DBTOOLS_FLAGS)

rollback: install
	$(DBTOOLS) rollback $(FLAGS)

prune: install
	$(DBTOOLS) snapshot prune $(FLAGS)

check: install
	$(DBTOOLS) check --target $(or $(TARGET),prod) $(DBTOOLS_FLAGS)

diff: install
	$(DBTOOLS) diff $(DBTOOLS_FLAGS)

status: install
	$(DBTOOLS) migrate status --target both $(DBTOOLS_FLAGS)

seed-demo: install
	DBTOOLS_PG_URL="$(PG_URL)" $(BIN)/python scripts/seed_demo.py $(SEED_ARGS)

bench: install
	DBTOOLS_PG_URL="$(PG_URL)" $(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
