# Two commands do all the setup: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := app

.PHONY: run test lint serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime dependencies only.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

# Runtime plus the dev extras (pytest, playwright, hypothesis, time-machine, ruff).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.runtime

instance/secret_key:
	mkdir -p instance
	$(BIN)/python -c "import secrets; print(secrets.token_hex(32))" > $@
	chmod 600 $@

## make run: install, migrate the SQLite database, seed demo data and a first admin when
## empty (printing the login once), then serve on 127.0.0.1:5000 with the scheduler.
run: $(VENV)/.runtime instance/secret_key
	$(BIN)/flask db upgrade
	$(BIN)/flask bootstrap
	SCHEDULER_ENABLED=1 $(BIN)/flask run --host $(HOST) --port $(PORT) --no-reload

## make test: the whole suite (PostgreSQL too when TEST_DATABASE_URL is set).
test: $(VENV)/.dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
