# citytwin — two commands: `make demo` and `make test`. Everything else is installed by them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip's progress bars are noise in CI logs
PIP := $(BIN)/pip --disable-pip-version-check --no-input -q

.PHONY: install demo test lint typecheck pytest bench clean system-deps node-deps web broker

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install citytwin with dev tools (idempotent)

system-deps:  ## Debian packages the tests need (Chromium renders 3D Tiles with CesiumJS; mosquitto is the MQTT broker; PostgreSQL 15 + PostGIS for the production store)
	@bash scripts/system-deps.sh chromium mosquitto postgresql-15 postgresql-15-postgis-3

node-deps:  ## Node dev tools pinned in package-lock.json (glTF-Validator, CesiumJS, playwright-core)
	@bash scripts/node-deps.sh

web:  ## build the operator dashboard (web/ → src/citytwin/ui/static; MapLibre GL + deck.gl, no CDN)
	@bash scripts/web.sh

demo: install web  ## build the demo city, then run the whole loop (live city, rules, dashboard) at http://127.0.0.1:8000 until Ctrl-C
	$(BIN)/citytwin demo --out demo-data

broker: install  ## citytwin's own mosquitto on 127.0.0.1:1883 (persistent, state in .citytwin/mosquitto) until Ctrl-C
	@bash scripts/system-deps.sh mosquitto
	$(BIN)/citytwin broker

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

pytest: install system-deps node-deps web
	$(BIN)/pytest -q

test: lint typecheck pytest  ## lint (ruff), types (mypy --strict), the whole pytest suite

bench: install  ## benchmarks: each prints its figure, a same-run baseline and the ratio
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/tiles.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/mqtt.py
	$(BIN)/python bench/kriging.py
	$(BIN)/python bench/assignment.py
	$(BIN)/python bench/plume.py
	$(BIN)/python bench/control.py
	$(BIN)/python bench/pg_ingest.py
	$(BIN)/python bench/rollup.py
	$(BIN)/python bench/load.py  # 11 min: 10x S-DoT through mosquitto and PostgreSQL

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache bench/out node_modules \
		web/node_modules src/citytwin/ui/static
