# Two commands do all the setup: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := app

PIP := $(BIN)/pip install --quiet --disable-pip-version-check
# Locked versions, with hashes (`make lock` writes them from pyproject.toml).
RUN_LOCK := requirements/run.lock
PROD_LOCK := requirements/prod.lock
DEV_LOCK := requirements/dev.lock
# Only `make lock` needs uv; installs use plain pip.
UV_VERSION ?= 0.13.9
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes \
	--python-version 3.11 \
	--custom-compile-command "make lock" $(LOCK_ARGS)

.PHONY: run test lint fmt typecheck lock lock-upgrade clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime dependencies only, from the lock; then the project itself without resolving.
$(VENV)/.runtime: $(RUN_LOCK) pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r $(RUN_LOCK)
	$(PIP) --no-deps -e .
	touch $@

# Runtime plus every extra (postgres, redis, prod) and the dev tools, from the lock.
$(VENV)/.dev: $(DEV_LOCK) pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r $(DEV_LOCK)
	$(PIP) --no-deps -e .
	touch $@ $(VENV)/.runtime

instance/secret_key instance/audit_key:
	mkdir -p instance
	$(BIN)/python -c "import secrets; print(secrets.token_hex(32))" > $@
	chmod 600 $@

## make run: install, migrate the SQLite database, seed demo data and a first admin when
## empty (printing the login once), then serve on 127.0.0.1:5000 with the scheduler.
## A laptop needs no authenticator app: no role must use two-factor sign-in unless
## TWO_FACTOR_REQUIRED_ROLES says otherwise (`make run TWO_FACTOR_REQUIRED_ROLES=admin`).
run: export TWO_FACTOR_REQUIRED_ROLES ?=
run: $(VENV)/.runtime instance/secret_key instance/audit_key
	$(BIN)/flask db upgrade
	$(BIN)/flask bootstrap --url http://$(HOST):$(PORT)
	SCHEDULER_ENABLED=1 $(BIN)/flask run --host $(HOST) --port $(PORT) --no-reload

## make test: the whole suite (PostgreSQL too when TEST_DATABASE_URL is set).
test: $(VENV)/.dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

## make fmt: fix what ruff can and format (FMT_PATHS, default: the whole tree).
FMT_PATHS ?= .
fmt: $(VENV)/.dev
	$(BIN)/ruff check --fix $(FMT_PATHS)
	$(BIN)/ruff format $(FMT_PATHS)

## make bench: the benchmarks of bench/ against PostgreSQL databases of their own, which
## they empty or fill (created when missing). Figures, not pass/fail. bench_jobs seeds its
## own data; bench_export and bench_pages run on a `flask seed-scale` database (SCALE_ARGS,
## full size by default: about 10 minutes the first time, nothing the next); bench_pages
## adds audit events to it until the log has PAGES_ARGS' number (once, about 2 minutes).
## The scale database's steps all run with FLASK_DEBUG=1, so the benchmarks sign its audit
## chain with the key it was seeded with (instance/audit_key, else the development key).
BENCH_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench
SCALE_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_scale
JOBS_ARGS ?= --subscriptions 100000 --customers 50000
SCALE_ARGS ?=
PAGES_ARGS ?= --audit-events 500000
CREATE_DB = $(BIN)/python -c "import sqlalchemy as sa, sys; u = sa.make_url(sys.argv[1]); \
	c = sa.create_engine(u.set(database='postgres'), isolation_level='AUTOCOMMIT').connect(); \
	c.exec_driver_sql('SELECT 1 FROM pg_database WHERE datname = %s', (u.database,)).first() \
	or c.exec_driver_sql('CREATE DATABASE \"%s\"' % u.database)"
bench: $(VENV)/.dev
	$(CREATE_DB) "$(BENCH_DATABASE_URL)"
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python bench/bench_jobs.py $(JOBS_ARGS)
	$(CREATE_DB) "$(SCALE_DATABASE_URL)"
	DATABASE_URL=$(SCALE_DATABASE_URL) FLASK_DEBUG=1 $(BIN)/flask db upgrade
	DATABASE_URL=$(SCALE_DATABASE_URL) FLASK_DEBUG=1 $(BIN)/flask seed-scale $(SCALE_ARGS)
	DATABASE_URL=$(SCALE_DATABASE_URL) FLASK_DEBUG=1 $(BIN)/python bench/bench_export.py
	DATABASE_URL=$(SCALE_DATABASE_URL) FLASK_DEBUG=1 $(BIN)/python bench/bench_pages.py $(PAGES_ARGS)

## make typecheck: mypy on backoffice/ (settings in pyproject.toml).
typecheck: $(VENV)/.dev
	$(BIN)/mypy

$(BIN)/uv: | $(BIN)/python
	$(PIP) uv==$(UV_VERSION)

## make lock: rewrite the locks from pyproject.toml, keeping every pin that still fits;
## make lock-upgrade: move every package to its newest version within the bounds.
## dev.lock is resolved first; run.lock and prod.lock take the same versions from it.
lock: $(BIN)/uv
	$(UV_COMPILE) --extra dev -o $(DEV_LOCK)
	$(UV_COMPILE) -c $(DEV_LOCK) -o $(RUN_LOCK)
	$(UV_COMPILE) --extra postgres --extra redis --extra prod -c $(DEV_LOCK) -o $(PROD_LOCK)

lock-upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .mypy_cache
