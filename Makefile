# The single entry point: `make run` serves, `make test` runs every test (lint included).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_CONCURRENCY ?= 2
WEB_THREADS ?= 4
export HOST PORT WEB_CONCURRENCY WEB_THREADS

.PHONY: run test lint fmt bench clean venv dev

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.dev-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed
dev: $(BIN)/.dev-installed

run: $(BIN)/.installed
	$(BIN)/lms-scim db upgrade
	$(BIN)/lms-scim tokens bootstrap
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $(WEB_CONCURRENCY) --worker-class gthread \
		--threads $(WEB_THREADS) --graceful-timeout 30 'app:create_app()'

lint: $(BIN)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app scim_schemas

fmt: $(BIN)/.dev-installed
	$(BIN)/ruff format app scim_schemas tests
	$(BIN)/ruff check --fix .

test: $(BIN)/.dev-installed lint
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

$(BIN)/.bench-installed: pyproject.toml $(BIN)/.dev-installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(BIN)/.bench-installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/chart.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .coverage
