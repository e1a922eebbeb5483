# marketpipe: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
MP := $(VENV)/bin/marketpipe
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

##@ Everyday

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: install
install: $(STAMP) ## Install system packages (PostgreSQL, Java) if missing and the venv

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	@touch $@

.PHONY: demo
demo: install ## Run the pipeline locally on embedded defaults and print what it did
	bash scripts/demo.sh

.PHONY: test
test: install lint typecheck ## Lint, typecheck and run the whole test suite (unit + integration)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Only the unit tests (no services needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: fuzz
fuzz: install ## Property tests with fresh random examples (make test draws the same ones every run)
	HYPOTHESIS_PROFILE=explore $(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff lint and format check, contract schema up to date
	$(VENV)/bin/ruff check src tests benchmarks images scripts
	$(VENV)/bin/ruff format --check src tests benchmarks images scripts
	$(MP) contracts --check

.PHONY: typecheck
typecheck: install ## mypy (strict) over src/
	$(VENV)/bin/mypy

.PHONY: bench
bench: install ## Throughput benchmarks; prints medians and ratios to plain client loops
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_quality.py
	$(PY) benchmarks/bench_sinks.py
	$(PY) benchmarks/bench_features.py --runs 3
	$(PY) benchmarks/bench_latency.py --runs 3 --seconds 60

##@ Local stack

.PHONY: local-up
local-up: install ## Start the local broker, PostgreSQL and S3 server (idempotent)
	$(MP) local up

.PHONY: local-status
local-status: install ## Show the local services and their endpoints
	$(MP) local status

.PHONY: local-down
local-down: install ## Stop the local services (data is kept; `marketpipe local down --purge` removes it)
	$(MP) local down

.PHONY: contracts
contracts: install ## Regenerate contracts/tick.schema.json from the Tick model
	$(MP) contracts

.PHONY: clean
clean: ## Stop the local stack, remove it, the venv and caches
	-[ -x $(MP) ] && $(MP) local down --purge
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
