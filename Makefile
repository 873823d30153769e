# Chekar Payments Ops: developer commands.
#   make run    everything up locally (SQLite + PortOne sandbox + demo data); prints the URLs
#   make serve  production: the Procfile's processes against PortOne (test or live), JSON logs
#   make test   the whole test suite (needs Debian's `postgresql` package for the PostgreSQL tests)
#   make lint   ruff check, ruff format --check, mypy services api, import contracts (lint-imports)
# Ports: make run API_PORT=8001 SANDBOX_PORT=8091 DASHBOARD_PORT=8502
# Tests: make test PYTEST_ARGS="-k refund -x"

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
REQUIREMENTS := requirements.txt requirements-dev.txt

API_PORT ?= 8000
SANDBOX_PORT ?= 8090
DASHBOARD_PORT ?= 8501
PYTEST_ARGS ?=
AUDIT_ARGS ?=
BENCH_ARGS ?=
SOAK_SECONDS ?= 600
SOAK_DB ?= sqlite

.PHONY: help venv run serve test lint format audit migrate bench bench-smoke soak reliability-table clean distclean

help:
	@echo "make run       start sandbox :$(SANDBOX_PORT), API :$(API_PORT), dashboard :$(DASHBOARD_PORT) (demo data)"
	@echo "make serve     production: check-config, migrate, then API (API_WORKERS), dashboard and scheduler"
	@echo "               as the Procfile lists them; JSON log lines on stdout; PORTONE_MODE test or live"
	@echo "make test      run the test suite (PYTEST_ARGS=... to pass options)"
	@echo "make lint      ruff check, ruff format --check, mypy services api, and the import contracts"
	@echo "               of pyproject.toml's [tool.importlinter] (who may import whom: lint-imports)"
	@echo "make format    ruff format and safe ruff fixes"
	@echo "make bench     every benchmark at full size beside its peer; table in bench/results/latest.md and README"
	@echo "               (BENCH_ARGS=\"--only export\" for some cases; about 15 minutes in all)"
	@echo "make bench-smoke  the same at small sizes (CI runs it so the suite never rots)"
	@echo "make soak      mixed load on API + sandbox for SOAK_SECONDS=$(SOAK_SECONDS) (SOAK_DB=sqlite|postgresql); bench/results/soak.json"
	@echo "make audit     pip-audit of the installed packages against PyPI's advisories (CI runs it;"
	@echo "               AUDIT_ARGS=--strict fails when a package could not be checked)"
	@echo "make reliability-table  README's reliability table from the last test run's results"
	@echo "make migrate   upgrade the database (DATABASE_URL, default SQLite) to the latest schema"
	@echo "make venv      create $(VENV) and install requirements-dev.txt (again only when requirements change)"
	@echo "make clean     remove caches; make distclean also removes $(VENV)"

venv: $(STAMP)

# The stamp is newer than both requirements files once they are installed; editing either reinstalls.
$(STAMP): $(REQUIREMENTS)
	@if [ ! -x "$(PY)" ]; then \
		if [ -z "$(PYTHON)" ]; then echo "No python3.11 or python3 on PATH: install Python 3.11." >&2; exit 1; fi; \
		echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	@touch $@

run: venv
	$(PY) -m tools.devserver --api-port $(API_PORT) --sandbox-port $(SANDBOX_PORT) --dashboard-port $(DASHBOARD_PORT)

serve: venv
	$(PY) -m tools.serve

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# Fails on a known vulnerability. Packages PyPI's advisory data does not answer for are listed as
# not checked; a run that checked nothing says so in a banner (AUDIT_ARGS=--strict: fail then too).
audit: venv
	$(PY) tools/audit.py $(AUDIT_ARGS)

reliability-table: venv
	$(PY) tools/reliability_table.py --readme

# All four checks run; the target fails if any of them did. lint-imports runs without its cache
# (the graph takes well under a second to build) so it leaves no .import_linter_cache behind.
lint: venv
	@status=0; \
	echo "+ ruff check ."; $(PY) -m ruff check . || status=1; \
	echo "+ ruff format --check ."; $(PY) -m ruff format --check . || status=1; \
	echo "+ mypy services api"; $(PY) -m mypy services api || status=1; \
	echo "+ lint-imports --no-cache"; $(VENV)/bin/lint-imports --no-cache --no-logo || status=1; \
	exit $$status

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

migrate: venv
	$(PY) -m cli migrate

bench: venv
	$(PY) -m bench.run $(BENCH_ARGS)

bench-smoke: venv
	$(PY) -m bench.run --smoke $(BENCH_ARGS)

soak: venv
	$(PY) -m bench.soak --seconds $(SOAK_SECONDS) --database $(SOAK_DB)

clean:
	find "$(CURDIR)" \( -path "$(CURDIR)/.git" -o -path "$(abspath $(VENV))" \) -prune -o -type d \
		\( -name __pycache__ -o -name .pytest_cache -o -name .ruff_cache -o -name .mypy_cache \) -print0 \
		| xargs -0 rm -rf
	rm -rf test-artifacts

distclean: clean
	rm -rf $(VENV)
