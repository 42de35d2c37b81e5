# sitewatch task runner.  `make demo` and `make test` work on a fresh clone: they create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# the train extra (torch, CPU wheel): `make train`, and the tests that compare the learned model's ONNX export
# with its torch weights
TRAIN_STAMP := $(VENV)/.train-stamp
# the web app's map libraries, built from npm packages (scripts/build-web.sh); the package serves them
WEB_STAMP := src/sitewatch/web/static/vendor/.built

# Python writes the bytecode of what it imports (an environment may switch that off with
# PYTHONDONTWRITEBYTECODE=1): otherwise every process the suite starts (~70 CLI runs, the servers, the
# benchmarks' commands) compiles sitewatch, xarray, pandas and the rest again, 1-3 s each
export PYTHONDONTWRITEBYTECODE :=

.PHONY: demo test test-fast test-postgres lint typecheck bench bench-series bench-api bench-scale screenshots clean venv docs train system-deps web

venv: $(STAMP)

web: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json scripts/build-web.sh
	sh scripts/build-web.sh
	touch $(WEB_STAMP)

$(STAMP): pyproject.toml $(WEB_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev,clouds]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sitewatch demo --out sitewatch-demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# system packages some tests need (PostgreSQL + PostGIS, nginx): installed by the project's script, as root
system-deps:
	sh scripts/system-deps.sh

# everything in one install (the venv's first, on a fresh clone: a second resolve on top of $(STAMP)'s cost ~25 s).
# --no-compile: pip byte-compiles every installed module (torch, scipy, ...) otherwise, half of a fresh install's
# 95 s; Python compiles the modules a program imports when it first imports them (~5 s for sitewatch's)
$(TRAIN_STAMP): pyproject.toml $(WEB_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev,train,clouds]"
	touch $(STAMP) $(TRAIN_STAMP)

# the whole suite, on every core (pytest-xdist): tests that share a costly fixture run in one worker
# (xdist_group marks, set in tests/conftest.py), the others spread over all of them
PYTEST_PARALLEL ?= -n auto --dist loadgroup --no-loadscope-reorder

test: $(TRAIN_STAMP) lint typecheck system-deps
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL)
	SITEWATCH_TEST_STORE=postgres $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m storage

# the storage suite (the tests marked `storage`) again, each of its homes on a new PostgreSQL database
test-postgres: $(STAMP) system-deps
	SITEWATCH_TEST_STORE=postgres $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m storage

# the edit-run loop (under 2 minutes): the suite without the tests marked slow (the demo world, the real-data
# series, the servers); `make test` before a commit
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not slow"

# the API under load on loopback (#13): 50 locust users listing detections and fetching tiles for 60 s
bench-api: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-compile -e ".[load]"
	$(BIN)/python benchmarks/load_api.py --users 50 --seconds 60

# scale (#14): detect-pair on a full Sentinel-2-sized tile (10980² px, 6 bands, 2 dates, COGs built from the OSCD
# cities) beside the read-only floor, a plain numpy baseline and Orfeo ToolBox's MAD (installed by system-deps
# bench, as root), one 20 km x 20 km site monitored over 100 dates (its dates read one at a time), then a
# 100 km x 100 km search on a local Dask cluster of 1 and 2 workers; writes benchmarks/results/scale-latest.json.
# The generated files (~15 GB) are kept in $TMPDIR for the next run.
bench-scale: $(STAMP)
	sh scripts/system-deps.sh bench
	$(BIN)/python benchmarks/scale_bench.py

# the README's pictures of the web app: the browser tests, saving their screenshots into docs/images
screenshots: $(TRAIN_STAMP)
	SITEWATCH_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/test_web.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/search_oscd.py
	$(BIN)/python benchmarks/search_bench.py
	$(BIN)/python benchmarks/search_series.py
	$(BIN)/python benchmarks/series_bench.py $(SERIES_ARGS)

# the time-series benchmark alone (semi-real cloudy series of the ten OSCD cities, sitewatch's CLI end to end);
# e.g. make bench-series SERIES_ARGS="--jobs 2 --methods index,cva"
bench-series: $(STAMP)
	$(BIN)/python benchmarks/series_bench.py $(SERIES_ARGS)

# the learned detector: one model per left-out OSCD city (benchmarks/models) and the final model on all
# of them (src/sitewatch/models); needs torch (the train extra, a CPU wheel)
train: $(TRAIN_STAMP)
	$(BIN)/python -m sitewatch.train
	$(BIN)/python -m sitewatch.train --bands 6

clean:
	rm -rf $(VENV) sitewatch-demo .pytest_cache .mypy_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/typer sitewatch.cli utils docs --name sitewatch --output docs/cli.md
