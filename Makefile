# Fraud-detection serving stack: the single command surface. `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# ---- settings (override on the command line: `make serve PORT=3001`) -------------------------
UV_VERSION     ?= 0.13.9
PRESET         ?= demo
PORT           ?= 3000
UI_PORT        ?= 7860
HOST           ?= 127.0.0.1
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true
export PATH := $(CURDIR)/.tools/bin:$(PATH)

UV  := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/uv/bin/uv)
RUN := $(UV) run --frozen
PY  := $(RUN) python

##@ Set-up
.PHONY: help
help: ## List every target with a one-line description
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CURDIR)/.tools/uv/bin/uv:
	python3 -m venv $(CURDIR)/.tools/uv
	$(CURDIR)/.tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

.PHONY: env
env: .venv/.synced ## Create/refresh the virtual environment from the lock file (uv)

.PHONY: system-deps
system-deps: ## Install Debian packages and Go tools the full test suite needs (idempotent)
	@bash scripts/install-system-deps.sh

##@ Model
.PHONY: data
data: env ## Simulate transactions for PRESET (demo|small|full) into data/
	$(RUN) fraud-simulate --preset $(PRESET) --out data/$(PRESET)

.PHONY: train
train: env ## Train the default model (demo preset) into the BentoML model store
	$(RUN) fraud-train --preset $(PRESET)

.PHONY: model-benchmark
model-benchmark: env ## Handbook protocol on the full-size simulation -> reports/model-benchmark.json
	$(RUN) fraud-benchmark --out reports/model-benchmark.json

##@ Run locally
.PHONY: serve
serve: env ## Serve the scoring API on http://$(HOST):$(PORT) (trains a model first if none)
	$(PY) -m training.ensure_model --preset $(PRESET)
	$(RUN) bentoml serve service.service:FraudScoring --host $(HOST) --port $(PORT)

.PHONY: ui
ui: env ## Start the Gradio UI on http://$(HOST):$(UI_PORT) against FRAUD_UI_API_URL
	$(RUN) fraud-ui --host $(HOST) --port $(UI_PORT)

.PHONY: demo
demo: env ## Train if needed, then run API + UI locally (Ctrl-C stops both)
	$(PY) scripts/demo.py --preset $(PRESET) --host $(HOST) --api-port $(PORT) --ui-port $(UI_PORT)

##@ Quality
.PHONY: lint
lint: env ## ruff (lint + format check), mypy, yamllint, actionlint
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) yamllint -s .
	@if command -v actionlint >/dev/null; then actionlint; \
	  elif [ "$${CI:-}" = "true" ]; then echo "actionlint missing: run 'make system-deps'" >&2; exit 1; \
	  else echo "skipping actionlint (install it with 'make system-deps')"; fi

.PHONY: fmt
fmt: env ## Format and auto-fix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

.PHONY: test
test: env system-deps ## Whole test suite: lint, unit, integration, chart, e2e, load test
	$(MAKE) lint
	$(RUN) pytest tests/unit
	$(RUN) pytest tests/integration
	$(MAKE) chart-check
	$(RUN) pytest tests/e2e
	$(MAKE) loadtest

.PHONY: test-unit
test-unit: env ## Unit tests only (fast)
	$(RUN) pytest tests/unit

##@ Package and deploy
.PHONY: image
image: env ## Build the Bento and the OCI image (docker, buildah or podman; BACKEND=...)
	$(PY) scripts/build_image.py

.PHONY: chart-check
chart-check: env ## helm lint, schema validation, kube-linter, checkov, chart template tests
	bash scripts/chart-check.sh

.PHONY: cluster-build
cluster-build: ## Build (cached) etcd, kube-apiserver/controller-manager/scheduler, kubectl, kwok (cluster/)
	bash cluster/build.sh

.PHONY: cluster-up
cluster-up: cluster-build ## Start a local control plane with kwok nodes; kubeconfig: .tools/cluster/kubeconfig
	bash cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop and delete the local control plane started by cluster-up
	bash cluster/down.sh

##@ Load
.PHONY: loadtest
loadtest: env ## Short SLO-gated Locust run against a locally served model
	$(PY) -m loadtests.run_local

.PHONY: bench
bench: env ## Side-by-side benchmark vs stock BentoML, MLServer, Starlette -> reports/bench.*
	$(PY) -m loadtests.bench

.PHONY: clean
clean: ## Remove generated data, reports and build output (keeps .venv and the model store)
	rm -rf data build .pytest_cache .mypy_cache .ruff_cache
