# Every target installs what it needs first, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROD_STAMP := $(VENV)/.installed-prod-stamp
PG_URL  = $$($(BIN)/python scripts/ensure_pg.py)
DBTOOLS = $(BIN)/dbtools

.PHONY: help install install-prod test lint format demo bench clean verify backup \
        sync-schema sync-data full-sync sync rollback prune check seed-demo diff status plan \
        apply history migrate-lint migrate-test
# YES=1 confirms destructive steps without a terminal (CI); DRY_RUN=1 plans only.
FLAGS   = $(if $(filter 1,$(YES)),--yes,) $(if $(filter 1,$(DRY_RUN)),--dry-run,) $(DBTOOLS_FLAGS)
.DEFAULT_GOAL := help

# One line per target; `make demo` and `make test` first (tests/test_newcomer.py checks that
# every target is listed).
help:
	@echo "make demo           run a full dev -> prod sync on two local demo databases"
	@echo "make test           run the test suite against the local PostgreSQL (PYTEST_ARGS=...)"
	@echo "make install        .venv with dbtools and its test extras (development)"
	@echo "make install-prod   .venv with dbtools only: what production and CI's sync jobs need"
	@echo "make lint           ruff and mypy, as CI runs them"
	@echo "make format         apply ruff's fixes and formatting"
	@echo "make bench          export/load and sync benchmarks (BENCH_ARGS=...)"
	@echo "make seed-demo      seed the demo marketplace into a database (SEED_ARGS=--url ...)"
	@echo "make clean          remove .venv, build output and tool caches"
	@echo "make verify         pre-flight check of dev and prod"
	@echo "make backup         snapshot prod into snapshots/prod/"
	@echo "make sync-schema    apply to prod the migrations dev already has"
	@echo "make sync-data      copy dev's rows to prod (preserved tables keep prod's rows)"
	@echo "make full-sync      verify, backup, sync-schema, sync-data, check"
	@echo "make sync           the same as make full-sync"
	@echo "make check          run checks/*.sql against prod (TARGET=dev for dev)"
	@echo "make rollback       restore prod to the backup taken before its last sync"
	@echo "make plan           save a row-level plan of a sync into snapshots/plans/"
	@echo "make apply          apply exactly a reviewed plan (PLAN=snapshots/plans/<file>.json)"
	@echo "make history        prod's own record of its syncs and rollbacks"
	@echo "make diff           dev vs prod: schema, migrations, row counts"
	@echo "make status         migrations applied and pending on dev and prod"
	@echo "make prune          delete snapshots older than the retention"
	@echo "make migrate-lint   lint the migrations prod has not applied (FILES=... for others)"
	@echo "make migrate-test   apply, roll back, re-apply every migration on a scratch database"
	@echo "make help           this list"
	@echo ""
	@echo "YES=1 confirms without a terminal (CI); DRY_RUN=1 previews and writes nothing"
	@echo "(sync-schema, sync-data, full-sync, rollback, prune); DBTOOLS_FLAGS=... adds options."
	@echo "dbtools on PATH: source .venv/bin/activate (or run .venv/bin/dbtools)"
	@echo 'tab completion (bash; zsh: zsh_source): source .venv/bin/activate && eval "$$(_DBTOOLS_COMPLETE=bash_source dbtools)"'

install: $(STAMP)

# `make install`: dbtools with its test extras (pytest, ruff, mypy, ...), for development.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP) $(PROD_STAMP)

# `make install-prod`: dbtools and its run-time dependencies only, none of the test extras.
# Into the same .venv, not a venv of its own: on a CI runner or a production host nothing
# else goes into it, so it holds exactly what production needs, and every caller of dbtools
# (the targets below, the workflows' .venv/bin/dbtools, scripts/*) keeps its one path. On a
# developer's machine `make install` adds the test extras to the same venv (and satisfies
# this target); `make clean install-prod` starts a production-only venv again. Editable (-e)
# like `make install`, so both run the checkout's code and neither replaces the other's.
# The operation targets below need only this.
install-prod: $(PROD_STAMP)

$(PROD_STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(PROD_STAMP)

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
verify: install-prod
	$(DBTOOLS) verify $(DBTOOLS_FLAGS)

backup: install-prod
	$(DBTOOLS) backup $(DBTOOLS_FLAGS)

sync-schema: install-prod
	$(DBTOOLS) sync-schema $(FLAGS)

sync-data: install-prod
	$(DBTOOLS) sync-data $(FLAGS)

full-sync: install-prod
	$(DBTOOLS) full-sync $(FLAGS)

sync: full-sync

# Promotion in two steps: a plan a person reviews, then exactly that plan applied.
plan: install-prod
	$(DBTOOLS) plan --save $(DBTOOLS_FLAGS)

apply: install-prod
	@test -n "$(PLAN)" || { echo "usage: make apply PLAN=snapshots/plans/<file>.json [YES=1]" >&2; exit 2; }
	$(DBTOOLS) apply "$(PLAN)" $(if $(filter 1,$(YES)),--yes,) $(DBTOOLS_FLAGS)

history: install-prod
	$(DBTOOLS) history $(DBTOOLS_FLAGS)

# For migration authors (.github/workflows/migrations.yml runs both on pull requests).
migrate-lint: install-prod
	$(DBTOOLS) migrate lint $(FILES) $(DBTOOLS_FLAGS)

migrate-test: install-prod
	$(DBTOOLS) migrate test $(DBTOOLS_FLAGS)

# DRY_RUN=1 shows which backup rollback would restore and what it would undo; writes nothing.
rollback: install-prod
	$(DBTOOLS) rollback $(FLAGS)

prune: install-prod
	$(DBTOOLS) snapshot prune $(FLAGS)

check: install-prod
	$(DBTOOLS) check --target $(or $(TARGET),prod) $(DBTOOLS_FLAGS)

diff: install-prod
	$(DBTOOLS) diff $(DBTOOLS_FLAGS)

status: install-prod
	$(DBTOOLS) migrate status --target both $(DBTOOLS_FLAGS)

seed-demo: install
	DBTOOLS_PG_URL="$(PG_URL)" $(BIN)/python scripts/seed_demo.py $(SEED_ARGS)

bench: install
	DBTOOLS_PG_URL="$(PG_URL)" $(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
