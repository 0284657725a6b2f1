# bfx — run `make help` for the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
CARGO ?= cargo
# Rebuild the native module only when the Rust sources changed.
CORE_SO := python/bfx/_core.abi3.so
RUST_SOURCES := $(shell find rust/src -name '*.rs') rust/Cargo.toml Cargo.toml
STAMP := .make-installed

.DEFAULT_GOAL := help
.PHONY: help dev build test test-rust test-py bench bench-deps bench-http bench-locust bench-capacity serve lint fmt clean ts ts-generate dashboard-screenshot

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PIP) install -e '.[test]'
	@touch $(STAMP) $(CORE_SO)

$(CORE_SO): $(RUST_SOURCES) | $(STAMP)
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $(CORE_SO)

dev: ## install bfx editable with test, bench and lint tools
	$(PIP) install -e '.[dev]'
	@touch $(STAMP) $(CORE_SO)

build: $(STAMP) $(CORE_SO) ## build the native module (release) into the package

test: test-rust test-py ## run the whole test suite (Rust, then Python)

test-rust: ## Rust unit and integration tests
	$(CARGO) test --manifest-path rust/Cargo.toml

test-py: build ## Python tests (unit, property, HTTP, end-to-end)
	$(PYTHON) -m pytest

# Criterion's per-benchmark time: enough for stable medians, short enough that
# `make bench` stays within a few minutes on 2 cores.
CRITERION_ARGS ?= --noplot --warm-up-time 1 --measurement-time 3
BENCH_DEPS = $(PYTHON) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))"

# The bench tools: the Python ones (the `bench` extra) and wrk, which drives the HTTP
# part of `make bench` and `make bench-http`. wrk is a Debian package, not a pip one:
# installed with apt-get when run as root on a machine that has it; otherwise the
# reason and the command to run are printed, and `make bench` skips its HTTP part.
.PHONY: bench-deps-python bench-deps-wrk
bench-deps: bench-deps-python bench-deps-wrk ## install the bench tools (bench extra; wrk via apt-get as root)

bench-deps-python:
	@$(PYTHON) -c "import pytest_benchmark, locust, rustworkx" 2>/dev/null || $(PIP) install -q $$($(BENCH_DEPS))

bench-deps-wrk:
	@if command -v wrk >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "bench-deps: wrk is not installed; installing it: apt-get update && apt-get install -y wrk"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
		if command -v wrk >/dev/null 2>&1; then echo "bench-deps: wrk installed ($$(command -v wrk))"; \
		else echo "bench-deps: WARNING: apt-get could not install wrk (see its output above);" \
			"the HTTP part of make bench will be skipped."; fi; \
	else \
		if [ "$$(id -u)" != 0 ]; then why="not running as root"; else why="apt-get is not available"; fi; \
		echo "bench-deps: WARNING: wrk is not installed and was not installed automatically ($$why)," \
			"so the HTTP part of make bench (benches/http/run_wrk.py) will be skipped." \
			"Install it with 'sudo apt-get install -y wrk' (Debian/Ubuntu) or from https://github.com/wg/wrk," \
			"then run make bench-http."; \
	fi

bench: build bench-deps ## paired Rust/Python benchmarks + memory; summary in target/bench-summary.md
	@mkdir -p target && touch target/bench-start
	$(CARGO) bench --manifest-path rust/Cargo.toml --bench core -- $(CRITERION_ARGS)
	$(PYTHON) -m pytest benches/python --benchmark-only --benchmark-columns=min,median,mean,ops,rounds \
		-p no:randomly --benchmark-json target/bench-python.json
	$(PYTHON) benches/summary.py --python-json target/bench-python.json --since target/bench-start
	$(PYTHON) benches/python/memory.py
	@if command -v wrk >/dev/null 2>&1; then $(PYTHON) benches/http/run_wrk.py --duration 5; \
	else echo "bench-http SKIPPED: wrk is not installed (bench-deps said why above);" \
		"install it (sudo apt-get install -y wrk), then run make bench-http."; fi

bench-http: build bench-deps-wrk ## HTTP load with wrk: each route against a bare Granian app, same run
	$(PYTHON) benches/http/run_wrk.py --duration 5

bench-instructions: build ## instructions per request of bfx and the bare apps in a real Granian worker (callgrind)
	$(PYTHON) benches/http/worker_instructions.py

# The locust run: users, spawn rate, duration, and the mix (env BFX_MIX, see locustfile.py).
LOCUST_USERS ?= 20
LOCUST_RATE ?= 10
LOCUST_TIME ?= 30s
bench-locust: build bench-deps ## mixed HTTP workload with locust against a bfx serve it starts (loopback)
	$(PYTHON) benches/http/run_locust.py --users $(LOCUST_USERS) --spawn-rate $(LOCUST_RATE) --run-time $(LOCUST_TIME)

CAPACITY_SUBSTRATES ?= 1000000
CAPACITY_RAM ?= 15GiB
bench-capacity: build ## bfx capacity: memory per substrate, projected for CAPACITY_RAM
	$(PYTHON) -m bfx.capacity --substrates $(CAPACITY_SUBSTRATES) --ram $(CAPACITY_RAM)

serve: build ## start the service on 127.0.0.1:8000 with the embedded default store
	bfx serve

dashboard-screenshot: build ## a PNG of the live dashboard (headless chromium, a bfx serve with traffic): target/dashboard.png
	PYTHONPATH=$(CURDIR)/python:$(CURDIR)/tests $(PYTHON) tests/dashboard_screenshot.py --out target/dashboard.png

ts: ## build the TypeScript client (tsc, Debian's node-typescript) into clients/typescript/dist
	tsc -p clients/typescript

ts-generate: ## regenerate the TypeScript client's types from this checkout's openapi.json
	PYTHONPATH=python $(PYTHON) clients/typescript/generate.py

lint: ## ruff, cargo fmt --check, clippy
	$(PYTHON) -m ruff check python tests benches
	$(PYTHON) -m ruff format --check python tests benches
	$(CARGO) fmt --manifest-path rust/Cargo.toml --check
	$(CARGO) clippy --manifest-path rust/Cargo.toml --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path rust/Cargo.toml --all-targets --features python -- -D warnings

fmt: ## format Rust and Python sources
	$(PYTHON) -m ruff format python tests benches
	$(CARGO) fmt --manifest-path rust/Cargo.toml

clean: ## remove build products
	$(CARGO) clean
	rm -f $(CORE_SO) $(STAMP)
	rm -rf clients/typescript/dist
