# ECM: the two commands of the README (`make demo`, `make test`) do the whole set-up.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-postgres browser-deps lint bench bench-evaluation bench-backfill dev clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ecm demo

test: $(STAMP) browser-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The Dagster instance on PostgreSQL: installs (Debian package) and starts a local server if
# none is running, then runs a daily run end to end against it.
test-postgres: $(STAMP)
	ECM_DAGSTER_PG_URL="$$(bash scripts/postgres_up.sh)" $(BIN)/python -m pytest -q -m postgres

# Debian's chromium and chromium-driver for the portal's browser test (installed if missing)
browser-deps:
	@bash scripts/install_chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/ecm bench allocation --players 20
	$(BIN)/ecm bench allocation --players 1000

bench-evaluation: $(STAMP)
	$(BIN)/python benchmarks/bench_evaluation.py

# Issue #7's 14-day backfill (empty home, then again); add --year for the 243 demo days.
bench-backfill: $(STAMP)
	$(BIN)/python benchmarks/bench_backfill.py

dev: $(STAMP)
	$(BIN)/ecm dev

clean:
	rm -rf .ecm
