# marketpipe: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
MP := $(VENV)/bin/marketpipe
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Packaging checkers (helm, kubernetes-validate, checkov, ...), installed by scripts/install-tools.sh.
TOOLS ?= .tools
TOOLS_STAMP := $(TOOLS)/.installed-stamp

# Deploying to kind (see docs/kind.md).
KIND_CLUSTER ?= marketpipe
NAMESPACE ?= marketpipe
RELEASE ?= marketpipe
VALUES ?= charts/marketpipe/ci/kind-minimal-values.yaml
TAG ?= $(shell awk '/^appVersion:/ {gsub(/"/, "", $$2); print $$2}' charts/marketpipe/Chart.yaml)
CONTAINER_TOOL ?= docker
# Where images are named (and published by .github/workflows/release.yml); the chart's
# image.repository defaults to it, so images built and loaded into kind are the ones it runs.
IMAGE_REGISTRY ?= ghcr.io/marketpipe
JARS_LOCK ?= images/spark/jars.lock
# 1: every Spark jar must match its sha256 in the lock. While the lock still has unpinned ("-")
# entries (it was written where Maven Central is out of reach; `make lock-jars` fills it) the
# default is 0: each such jar is checked against Maven Central's own .sha1 instead, and `make
# images` says so. STRICT_JARS=1 on the command line insists.
JARS_UNPINNED := $(shell awk '!/^[[:space:]]*(\#|$$)/ && $$2 == "-" {n++} END {print n+0}' $(JARS_LOCK))
STRICT_JARS ?= $(if $(filter 0,$(JARS_UNPINNED)),1,0)
HELM ?= helm
KUBECTL ?= kubectl

##@ Everyday

.PHONY: help
help: ## Show this help
	@if [ -t 1 ]; then c='\033[36m'; b='\033[1m'; r='\033[0m'; else c=; b=; r=; fi; \
	TAG='$(TAG)' VALUES='$(VALUES)' RELEASE='$(RELEASE)' NAMESPACE='$(NAMESPACE)' \
	KIND_CLUSTER='$(KIND_CLUSTER)' CONTAINER_TOOL='$(CONTAINER_TOOL)' IMAGE_REGISTRY='$(IMAGE_REGISTRY)' \
	awk -v c="$$c" -v b="$$b" -v r="$$r" 'BEGIN { FS = ":.*##"; \
	    n = split("TAG VALUES RELEASE NAMESPACE KIND_CLUSTER CONTAINER_TOOL IMAGE_REGISTRY", vars, " "); \
	    printf "Usage: make %s<target>%s  (variables: make VAR=value <target>)\n", c, r } \
	  /^[a-zA-Z0-9_-]+:.*?##/ { text = $$2; \
	    for (i = 1; i <= n; i++) gsub("\\$$\\(" vars[i] "\\)", ENVIRON[vars[i]], text); \
	    printf "  %s%-14s%s %s\n", c, $$1, r, text } \
	  /^##@/ { printf "\n%s%s%s\n", b, substr($$0, 5), r }' $(MAKEFILE_LIST)

.PHONY: install
install: $(STAMP) ## Install system packages (PostgreSQL, Java, Prometheus, Chromium) if missing, and the venv

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	@touch $@

.PHONY: demo
demo: install ## Run the pipeline locally on embedded defaults and print what it did
	bash scripts/demo.sh

.PHONY: test
test: install tools lint typecheck ## Lint, typecheck, run every test (unit, integration, packaging)
	PATH="$(abspath $(TOOLS))/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: soak
soak: install ## Every stage at SOAK_RATE (2000) ticks/s for SOAK_MINUTES (30); JSON + PNG in bench/results
	$(PY) -m benchmarks.soak

.PHONY: tools
tools: $(TOOLS_STAMP) ## Install the packaging checkers into .tools (helm, kubernetes-validate, checkov, ...)

$(TOOLS_STAMP): scripts/install-tools.sh
	TOOLS=$(TOOLS) bash scripts/install-tools.sh
	@touch $@

.PHONY: chart-check
chart-check: install tools ## Only the packaging checks: chart, images, workflows, Terraform, scripts
	PATH="$(abspath $(TOOLS))/bin:$$PATH" $(PY) -m pytest tests/packaging $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Only the unit tests (no services needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: faults
faults: install ## Long fault tests: broker/PostgreSQL/S3 down, kill -9 per stage (make test skips them)
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

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
bench: install ## Throughput benchmarks; prints medians and ratios to plain client loops and a naive pipeline
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_quality.py
	$(PY) benchmarks/bench_sinks.py
	$(PY) benchmarks/bench_features.py --runs 3
	$(PY) benchmarks/bench_latency.py --runs 3 --seconds 60
	$(PY) benchmarks/naive.py --runs 3 --seconds 20 --tps 2000
	$(PY) benchmarks/bench_dashboard.py --runs 5
	$(PY) benchmarks/bench_stream.py --runs 5
	$(MAKE) bench-e2e

.PHONY: bench-e2e
bench-e2e: install ## Every stage at once at 1k-50k ticks/s and max, beside a naive baseline (~1 h; E2E_ARGS); JSON + PNG in bench/results
	$(PY) -m benchmarks.bench_e2e $(E2E_ARGS)

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

.PHONY: docs
docs: install ## Regenerate docs/settings.md from the settings model
	$(MP) settings --reference > docs/settings.md

.PHONY: contracts
contracts: install ## Regenerate contracts/tick.schema.json from the Tick model
	$(MP) contracts

##@ Kubernetes (kind)

.PHONY: kind-up
kind-up: ## Create the kind cluster from k8s/kind-config.yaml (does nothing if it exists)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster $(KIND_CLUSTER) exists"; \
	else \
	  kind create cluster --name $(KIND_CLUSTER) --config k8s/kind-config.yaml --wait 180s; \
	fi

.PHONY: images
images: ## Build the services and Spark images ($(IMAGE_REGISTRY)/marketpipe:$(TAG), ...-spark:$(TAG))
ifeq ($(STRICT_JARS),0)
	@echo "images: $(JARS_UNPINNED) jar(s) of $(JARS_LOCK) not pinned: checking them against Maven Central's .sha1 (run make lock-jars and commit the lock)" >&2
endif
	$(CONTAINER_TOOL) build -f images/python/Dockerfile -t $(IMAGE_REGISTRY)/marketpipe:$(TAG) .
	$(CONTAINER_TOOL) build -f images/spark/Dockerfile --build-arg STRICT_JARS=$(STRICT_JARS) \
	  -t $(IMAGE_REGISTRY)/marketpipe-spark:$(TAG) .

.PHONY: image-smoke
image-smoke: install ## Build the services image and run it non-root, read-only, against the local stack
	CONTAINER_TOOL=$(CONTAINER_TOOL) bash scripts/image-smoke.sh

.PHONY: kind-load
kind-load: ## Load the images into the kind cluster's nodes
	kind load docker-image $(IMAGE_REGISTRY)/marketpipe:$(TAG) \
	  $(IMAGE_REGISTRY)/marketpipe-spark:$(TAG) --name $(KIND_CLUSTER)

.PHONY: deploy
deploy: ## helm upgrade --install --wait the chart with $(VALUES)
	$(HELM) upgrade --install $(RELEASE) charts/marketpipe --namespace $(NAMESPACE) \
	  --create-namespace -f $(VALUES) --set image.tag=$(TAG) --set features.image.tag=$(TAG) \
	  --wait --timeout 15m

.PHONY: smoke
smoke: install ## helm test (rows in TimescaleDB, objects in MinIO), then every pod healthy
	$(HELM) test $(RELEASE) --namespace $(NAMESPACE) --logs --timeout 20m
	$(MP) cluster --namespace $(NAMESPACE) --release $(RELEASE)

.PHONY: status
status: install ## The release's pods (phase, readiness, restarts) and logs of unhealthy ones
	$(MP) cluster --namespace $(NAMESPACE) --release $(RELEASE) --logs 100

.PHONY: logs
logs: ## The last 200 log lines of every container of the release
	$(KUBECTL) -n $(NAMESPACE) logs -l app.kubernetes.io/instance=$(RELEASE) \
	  --all-containers --prefix --tail=200 --max-log-requests=20

.PHONY: port-forward
port-forward: ## Redpanda Console :8080, MinIO console :9001, PostgreSQL :5432, dashboard :8501 (Ctrl-C stops)
	@svc() { $(KUBECTL) -n $(NAMESPACE) get svc -o name \
	  -l app.kubernetes.io/instance=$(RELEASE),app.kubernetes.io/component=$$1 | head -n 1; }; \
	trap 'kill 0' INT TERM EXIT; \
	for pair in console:8080 minio:9001 timescaledb:5432 dashboard:8501; do \
	  name=$$(svc "$${pair%%:*}"); port=$${pair#*:}; \
	  if [ -n "$$name" ]; then $(KUBECTL) -n $(NAMESPACE) port-forward "$$name" "$$port:$$port" & \
	  else echo "port-forward: no $${pair%%:*} Service in release $(RELEASE)" >&2; fi; \
	done; \
	wait

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

.PHONY: lock-jars
lock-jars: ## Pin the Spark image's jars: download each and write its sha256 into jars.lock
	python3 images/spark/fetch_jars.py lock $(JARS_LOCK)

.PHONY: clean
clean: ## Stop the local stack, remove it, the venv and caches
	-[ -x $(MP) ] && $(MP) local down --purge
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
