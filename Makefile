# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FOCUS  ?=
HOST   ?= 127.0.0.1:8000

.PHONY: demo test install system-deps migrate serve bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

install: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

migrate: install
	$(BIN)/python manage.py migrate --no-input

## Set up, load demo data, run the month-end billing run, serve the app on http://$(HOST)
demo: migrate
	$(BIN)/python manage.py demo $(if $(FOCUS),--focus "$(FOCUS)",)
	$(BIN)/python manage.py runserver $(HOST)

## Set up and run the whole test suite (PostgreSQL when DATABASE_URL names one, else SQLite)
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Benchmarks (PostgreSQL): see bench/README.md
bench: install
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) db.sqlite3 media staticfiles .pytest_cache
