# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FOCUS  ?=
# `make demo STRIPE=local`: payments against a localstripe server (a fake Stripe) on port 8420.
STRIPE ?=
HOST   ?= 127.0.0.1:8000
EMBEDDED_DB := $(BIN)/python scripts/embedded_db.py

# The start of a recipe line that needs a database. When DATABASE_URL names a server (CI,
# production) the line runs against it and nothing is started. Otherwise the embedded PostgreSQL in
# .pgdata/ (scripts/embedded_db.py) is started and DATABASE_URL pointed at it; the trap stops it
# when the line ends, however it ends (Ctrl-C included). A server that was already running before
# (started by hand) is left running.
WITH_DATABASE = set -e; \
	if [ -z "$${DATABASE_URL:-}" ]; then \
	  if ! $(EMBEDDED_DB) status >/dev/null; then \
	    trap '$(EMBEDDED_DB) stop' EXIT; trap 'exit 130' INT TERM HUP; \
	  fi; \
	  DATABASE_URL="$$($(EMBEDDED_DB) start)"; export DATABASE_URL; \
	  echo "DATABASE_URL is unset: using the embedded PostgreSQL ($$DATABASE_URL)" >&2; \
	fi;

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
	@$(WITH_DATABASE) $(BIN)/python manage.py migrate --no-input

## Set up, load demo data, run the month-end billing run, serve the app on http://$(HOST) with a
## background-jobs worker beside it (Ctrl-C stops both, and the embedded PostgreSQL with them)
demo: install
	@$(WITH_DATABASE) \
	$(BIN)/python manage.py migrate --no-input; \
	$(BIN)/python manage.py demo --host "$(HOST)" $(if $(FOCUS),--focus "$(FOCUS)",); \
	$(if $(filter local,$(STRIPE)),LOCALSTRIPE_PORT=8420 ,)$(BIN)/python scripts/serve.py $(HOST)

## Set up and run the whole test suite (on DATABASE_URL's server, else on the embedded PostgreSQL)
test: install
	@$(WITH_DATABASE) $(BIN)/python -m pytest $(PYTEST_ARGS)

## Benchmarks (on DATABASE_URL's server, else on the embedded PostgreSQL): see bench/README.md
bench: install
	@$(WITH_DATABASE) for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

## Remove the virtualenv, the embedded database (stopped first) and generated files
clean:
	-@[ -x $(BIN)/python ] && $(EMBEDDED_DB) stop
	rm -rf $(VENV) .pgdata media staticfiles .pytest_cache
