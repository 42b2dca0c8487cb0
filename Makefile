# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup browser clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

## Extract the eval documents with the embedded model into data/pipeline.duckdb, then score them.
demo: $(STAMP)
	$(BIN)/pipeline extract evals/docs --db data/pipeline.duckdb
	$(BIN)/pipeline eval --db data/pipeline.duckdb

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests schemas bench
	$(BIN)/ruff format --check pipeline tests schemas bench
	$(BIN)/mypy

## Headless Chromium and its WebDriver for the report's browser tests (Debian packages).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)

## Lint, type-check, then the whole test suite (pytest exit 5 = no tests ran = failure).
test: lint browser
	$(BIN)/pytest -q -rs; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) data
