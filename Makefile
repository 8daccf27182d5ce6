# Clearhouse: `make demo` runs the demo, `make test` runs the test suite on PostgreSQL + Redis.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

# Tests run on the real PostgreSQL and Redis of the machine (started if installed but down).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/clearhouse
TEST_BROKER_URL ?= redis://127.0.0.1:6379/14
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

# anvil (local Ethereum JSON-RPC node, from npm) for the multi-process chain tests, bench and demo
ANVIL = .tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

.PHONY: demo test lint typecheck services bench-ingest bench-crypto bench-netting bench-fiat bench-recon bench-dashboard bench-report clean

$(ANVIL):
	bash scripts/ensure_anvil.sh >/dev/null

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	-bash scripts/ensure_anvil.sh >/dev/null
	bash scripts/demo.sh

services:
	bash scripts/ensure_services.sh

# pytest on PYTEST_WORKERS xdist workers (0: one process), each with its own copy of the migrated
# test database and its own Redis db (gw<k>: db n+k of TEST_BROKER_URL's n, so 14 and 15 here); the
# type check runs alongside it and its output follows pytest's (scripts/test_suite.sh).
test: $(STAMP) $(ANVIL) services
	bash scripts/ensure_browser.sh
	$(BIN)/ruff check .
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) SECRET_KEY=test-only-secret \
		PYTEST_WORKERS=$(PYTEST_WORKERS) BIN=$(BIN) MAKE="$(MAKE)" bash scripts/test_suite.sh $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory typecheck

# The architecture guards (configured in pyproject.toml): import contracts, no use of another
# package's private names, then mypy with the Django plugin, which loads config.settings: it needs
# a DATABASE_URL to parse but connects to nothing.
typecheck: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_private_imports.py
	DEBUG=1 DATABASE_URL=postgres://typecheck@127.0.0.1:5432/typecheck CELERY_BROKER_URL= $(BIN)/mypy

bench-ingest: $(STAMP) services
	$(BIN)/python bench/ingest.py

bench-crypto: $(STAMP) $(ANVIL) services
	$(BIN)/python bench/crypto_settlement.py

bench-netting: $(STAMP) services
	$(BIN)/python bench/netting.py --trades 100000 --trades 1000000

bench-fiat: $(STAMP) services
	$(BIN)/python bench/fiat_settlement.py --participants 1000 --trades 20000

bench-recon: $(STAMP) services
	$(BIN)/python bench/reconciliation.py --records 1000000

bench-dashboard: $(STAMP) services
	$(BIN)/python bench/dashboard.py --instructions 1000000

bench-report: $(STAMP) services
	$(BIN)/python bench/daily_report.py --instructions 1000000

clean:
	rm -rf $(VENV) var .tools .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
