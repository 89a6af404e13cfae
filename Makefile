# saga-stack: one entry point per job. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
export PATH := $(CURDIR)/.tools/bin:$(PATH)

# Every shell script: the *.sh files (sourced libraries included) and the ones named by a shebang.
SHELL_SCRIPTS = $(sort $(shell git ls-files '*.sh') $(shell git grep -lE '^#! ?/(usr/)?bin/(env )?(ba)?sh'))

# Tiers that exist: a tier is its folder under tests/ with at least one test file.
TIERS := $(foreach t,unit integration e2e,$(if $(wildcard tests/$(t)/test_*.py),$(t)))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'
	@echo "  tiers present: $(TIERS)"

.PHONY: tools
tools: ## pinned Python venv (.venv) and helm v4 + v3 (.tools/bin)
	ci/bootstrap.sh --all

.PHONY: services-deps
services-deps: ## PostgreSQL, Redis, Sentinel, Java and Kafka jars for the integration tier; Chromium for the e2e tier
	ci/install-services.sh

.PHONY: test
test: tools lint ## every test tier that exists (today: see `make help`)
	@echo "==> running tiers: $(TIERS)"
	@$(MAKE) --no-print-directory $(addprefix test-,$(TIERS))

.PHONY: lint
lint: ## ruff and mypy (strict) on all Python, shellcheck on every script, the chart README tables against values.yaml
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy app/src tests ci
	.tools/bin/shellcheck $(SHELL_SCRIPTS)
	$(PY) ci/chart-readme.py --check

.PHONY: test-unit
test-unit: ## chart renders, schemas, bad values, policies; app domain logic (no services)
	$(PYTEST) tests/unit

.PHONY: test-integration
test-integration: services-deps ## the app against real PostgreSQL, Redis, Sentinel and Kafka on loopback
	$(PYTEST) tests/integration

.PHONY: test-e2e
test-e2e: services-deps ## the chart on a real multi-node cluster (created when none is running), the console in headless Chromium
	ci/up.sh --no-install
	$(PYTEST) tests/e2e --durations=12

.PHONY: up
up: ## bring the whole stack up on a local cluster (creating the cluster when there is none)
	ci/up.sh

.PHONY: down
down: ## remove the local cluster (caches stay)
	ci/down.sh

.PHONY: bench
bench: tools services-deps ## benchmarks (SAGA_BENCH_ARGS="--baseline-src OTHER/app/src" adds a before/after): saga throughput/latency, job throughput/latency, make up times and disk, HPA reaction and scaling, every pod's CPU and memory; JSON + PNG under bench-results/
	$(PY) -m tests.bench.saga_bench $(SAGA_BENCH_ARGS)
	$(PY) -m tests.bench.jobs_bench
	$(PY) -m tests.bench.cluster_bench
	$(PY) -m tests.bench.scaling_bench --signal backlog --skip-throughput
	$(PY) -m tests.bench.scaling_bench --signal work --skip-throughput
	$(PY) -m tests.bench.scaling_bench --signal resources
	$(PY) -m tests.bench.footprint_bench

CHAOS_ARGS ?= run --install local-ha.yaml --faults 22
.PHONY: chaos
chaos: tools ## fault campaign (kills, freezes, node stop, partition, dependency cuts) checked against the saga invariants; ARGS="run --faults 100 --seed 7 ..." or ARGS="check DIR" (see --help); report under bench-results/chaos/
	ci/up.sh --no-install
	$(PY) -m tests.chaos $(or $(ARGS),$(CHAOS_ARGS))

.PHONY: chart-readme
chart-readme: ## regenerate the charts' README values tables
	$(PY) ci/chart-readme.py

.PHONY: lock
lock: ## re-resolve requirements/*.lock from app/pyproject.toml and requirements/dev.in
	uv pip compile --quiet app/pyproject.toml -o requirements/app.lock --python-version 3.11 --no-header
	uv pip compile --quiet requirements/dev.in -o requirements/dev.lock --python-version 3.11 --no-header
