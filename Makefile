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
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.tools/uv/bin:$(PATH)

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
data: env ## Simulate transactions for PRESET (demo|test|full) into data/PRESET (Parquet)
	$(RUN) fraud-simulate --preset $(PRESET) --out data/$(PRESET)

.PHONY: train
train: env ## Train the default model (demo preset) into the BentoML model store
	$(RUN) fraud-train --preset $(PRESET)

.PHONY: retrain
retrain: env ## Challenger trained on the decision ledger (FRAUD_DATABASE_URL, else make demo's) and its labels; saved only if it beats the serving model -> data/ledger/retrain.md
	$(PY) -m training.retrain --out-dir data/ledger

.PHONY: model-benchmark
model-benchmark: env ## Handbook protocol on the full-size simulation -> reports/model-benchmark.json
	$(RUN) fraud-benchmark --out reports/model-benchmark.json

.PHONY: replay-parity
replay-parity: env ## The full-size simulated week replayed through the API from raw fields; aggregates and AUC/AP/CP@100 equal offline -> reports/replay-parity.*
	$(PY) -m loadtests.replay_parity --preset full

##@ Run locally
.PHONY: serve
serve: env ## Serve the scoring API on http://$(HOST):$(PORT) (trains a model first if none)
	$(PY) -m training.ensure_model --preset $(PRESET)
	FRAUD_DEV_MODE=$${FRAUD_DEV_MODE:-true} \
	  $(RUN) bentoml serve service.service:FraudScoring --host $(HOST) --port $(PORT)

.PHONY: ui
ui: env ## Start the Gradio UI on http://$(HOST):$(UI_PORT) against FRAUD_UI_API_URL
	$(RUN) fraud-ui --host $(HOST) --port $(UI_PORT)

.PHONY: demo
demo: env ## Train if needed, then run API + UI locally (Ctrl-C stops both)
	$(PY) scripts/demo.py --preset $(PRESET) --host $(HOST) --api-port $(PORT) --ui-port $(UI_PORT)

##@ Quality
.PHONY: lint
lint: env ## ruff (lint + format check), mypy, yamllint, actionlint, gofmt/vet/test of the Go client
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) yamllint -s .
	@if command -v actionlint >/dev/null; then actionlint; \
	  elif [ "$${CI:-}" = "true" ]; then echo "actionlint missing: run 'make system-deps'" >&2; exit 1; \
	  else echo "skipping actionlint (install it with 'make system-deps')"; fi
	@if command -v go >/dev/null; then \
	  cd loadtests/phased_attack && test -z "$$(gofmt -l .)" && go vet . && go test ./...; \
	  elif [ "$${CI:-}" = "true" ]; then echo "go missing: run 'make system-deps'" >&2; exit 1; \
	  else echo "skipping the Go checks of loadtests/phased_attack (install Go with 'make system-deps')"; fi

.PHONY: fmt
fmt: env ## Format and auto-fix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

.PHONY: test
test: env system-deps ## Whole test suite: lint, unit, integration, chart, e2e, real node, load test
	$(MAKE) lint
	$(RUN) pytest tests/unit
	$(RUN) pytest tests/integration
	$(MAKE) chart-check
	$(MAKE) cluster-build
	$(RUN) pytest tests/e2e
	@if [ "$${CI:-}" = true ] || { [ "$$(id -u)" = 0 ] && command -v containerd >/dev/null; }; then \
	  $(MAKE) test-node; \
	  else echo "skipping tests/node: the real node needs root and 'make system-deps' (then 'make test-node')"; fi
	$(MAKE) loadtest

.PHONY: test-unit
test-unit: env ## Unit tests only (fast)
	$(RUN) pytest tests/unit

##@ Package and deploy
.PHONY: image
image: env ## Build the Bento and the OCI image (docker, buildah or podman; BACKEND=...)
	$(PY) -m training.ensure_model --preset $(PRESET)
	$(PY) scripts/build_image.py

.PHONY: image-report
image-report: env ## Time container start-to-ready and size the last image -> reports/image.*
	$(PY) scripts/image_report.py

.PHONY: chart-check
chart-check: env ## helm lint, strict schema validation (k8s 1.29-1.35, CRDs), checkov, helm-docs drift, skaffold schema, chart tests
	bash scripts/chart-check.sh

.PHONY: kind-up
kind-up: ## Create a kind cluster, build and load the image, install Envoy Gateway, a Gateway and the chart with its HTTPRoutes (Docker + kind)
	KIND_CLUSTER=$(KIND_CLUSTER) NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) bash k8s/kind-up.sh

.PHONY: kind-rate-limit-check
kind-rate-limit-check: ## Through the kind Gateway: the API answers, and one client gets 429 beyond 100 requests a minute
	bash k8s/check-rate-limit.sh

.PHONY: cluster-build
cluster-build: ## Build (cached) etcd, kube-apiserver/controller-manager/scheduler, kubectl, kwok, kubelet, kube-proxy, CoreDNS (cluster/)
	bash cluster/build.sh

# 1: `make cluster-up` adds the real node (kubelet + containerd on this machine, needs root and
# `make system-deps`); 0: kwok nodes only.
CLUSTER_REAL_NODE ?= 1

.PHONY: cluster-up
cluster-up: cluster-build ## Start a local control plane with kwok nodes and one real node (CLUSTER_REAL_NODE=0: kwok only); kubeconfig: .tools/cluster/kubeconfig
	CLUSTER_REAL_NODE=$(CLUSTER_REAL_NODE) bash cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop and delete the local cluster started by cluster-up, real node included (processes, mounts, bridge, iptables)
	bash cluster/down.sh

# A cluster this target starts is deleted afterwards; one already running (make cluster-up) stays.
.PHONY: test-node
test-node: env ## The chart's API on the real node of `make cluster-up` (real image, probes, Service): tests/node
	@started=0; [ -f .tools/cluster/node/cluster-name ] || started=1; \
	  $(MAKE) cluster-up && $(RUN) pytest tests/node; rc=$$?; \
	  if [ $$started = 1 ]; then $(MAKE) cluster-down; fi; exit $$rc

##@ Delivery (compose, Kubernetes, releases)
# Compose CLI: `docker compose` when a Docker daemon answers, else podman-compose (test group).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1 \
  && echo "docker compose" || echo "$(RUN) podman-compose")
KIND_CLUSTER  ?= fraud
RELEASE       ?= fraud
NAMESPACE     ?= fraud
# Extra `helm upgrade --install` arguments (for example the ingress host of your cluster).
HELM_ARGS     ?=
# The image the last `make image` built (build/image/build.json), as repository and tag.
IMAGE_REF      = $(shell $(PY) -c "import json; print(json.load(open('build/image/build.json'))['image'])")

.PHONY: image-ui
image-ui: env ## Build the analyst UI image fraud-detection-ui:<version> and :latest (deploy/ui.Dockerfile)
	$(PY) deploy/build_ui_image.py

.PHONY: compose-up
compose-up: image image-ui ## Build the images, start nginx + API + UI with compose (needs FRAUD_ID_HASH_KEY and FRAUD_HISTORY_PASSWORD; API_REPLICAS=3 scales; COMPOSE_PROFILES=monitoring adds Prometheus)
	FRAUD_IMAGE=$(firstword $(subst :, ,$(IMAGE_REF))) FRAUD_IMAGE_TAG=$(lastword $(subst :, ,$(IMAGE_REF))) \
	  $(COMPOSE) -f docker-compose.yml $(if $(COMPOSE_PROFILES),--profile $(COMPOSE_PROFILES)) up -d \
	  $(if $(API_REPLICAS),--scale api=$(API_REPLICAS))
	@echo "API: http://127.0.0.1:$${FRAUD_API_PORT:-3000}  UI: http://127.0.0.1:$${FRAUD_UI_PORT:-7860}"

.PHONY: compose-down
compose-down: ## Stop and remove the compose deployment (keeps the Prometheus volume)
	$(COMPOSE) -f docker-compose.yml --profile monitoring down

.PHONY: compose-smoke
compose-smoke: env ## Compose test with the images of `make image` + `make image-ui`: 3 API replicas behind nginx, 429, gzip, health, UI, down
	FRAUD_IMAGE=$(firstword $(subst :, ,$(IMAGE_REF))) FRAUD_IMAGE_TAG=$(lastword $(subst :, ,$(IMAGE_REF))) \
	  FRAUD_UI_IMAGE=fraud-detection-ui FRAUD_COMPOSE="$(COMPOSE)" $(RUN) pytest tests/integration/test_compose.py

.PHONY: config-docs
config-docs: env ## Regenerate the configuration reference in docs/operations.md from the settings classes
	$(PY) scripts/gen_config_docs.py

.PHONY: image-ref
image-ref: ## Print the image reference built by the last `make image`
	@echo $(IMAGE_REF)

# Release version: the git tag (v1.2.3) or pyproject's version; the chart is published with it.
VERSION       ?= v$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
# Where a release pushes the images and the chart (release.yml sets ghcr.io/<owner>). A packaged
# chart defaults to CHART_API_IMAGE/CHART_UI_IMAGE at tag VERSION (its appVersion), the images
# release.yml pushes; the chart in charts/ keeps the local names `make image`/`make image-ui` build.
IMAGE_REGISTRY  ?= ghcr.io/fraud-detection
CHART_API_IMAGE ?= $(IMAGE_REGISTRY)/fraud-detection
CHART_UI_IMAGE  ?= $(IMAGE_REGISTRY)/fraud-detection-ui
CHART_REGISTRY  ?= oci://$(IMAGE_REGISTRY)/charts
CHART_DIST      ?= build/chart

.PHONY: bento-path
bento-path: ## Print the directory of the Bento built by the last `make image` (buildx context)
	@$(RUN) bentoml get $$($(PY) -c "import json; print(json.load(open('build/image/build.json'))['bento_tag'])") -o path

.PHONY: release-check
release-check: ## Check that VERSION (tag vX.Y.Z) matches pyproject, Chart.yaml and CHANGELOG.md
	@v=$(patsubst v%,%,$(VERSION)); \
	  grep -q "^version = \"$$v\"" pyproject.toml || { echo "pyproject.toml version is not $$v" >&2; exit 1; }; \
	  grep -q "^version: $$v$$" charts/fraud-detection/Chart.yaml || { echo "Chart.yaml version is not $$v" >&2; exit 1; }; \
	  grep -q "^## \[$$v\]" CHANGELOG.md || { echo "CHANGELOG.md has no [$$v] entry" >&2; exit 1; }; \
	  echo "release $$v: versions agree"

.PHONY: chart-package
chart-package: env ## Package the chart as build/chart/fraud-detection-VERSION.tgz, defaulting to CHART_API_IMAGE/CHART_UI_IMAGE
	$(PY) scripts/package_chart.py --version $(VERSION) --api-image $(CHART_API_IMAGE) \
	  --ui-image $(CHART_UI_IMAGE) --destination $(CHART_DIST)

.PHONY: chart-push
chart-push: ## Push the packaged chart to CHART_REGISTRY (oci://...); HELM_REGISTRY_USER/PASSWORD log in
	@if [ -n "$${HELM_REGISTRY_PASSWORD:-}" ]; then \
	  echo "$$HELM_REGISTRY_PASSWORD" | helm registry login $(word 1,$(subst /, ,$(patsubst oci://%,%,$(CHART_REGISTRY)))) \
	    --username "$${HELM_REGISTRY_USER:?}" --password-stdin; fi
	helm push $(CHART_DIST)/fraud-detection-$(patsubst v%,%,$(VERSION)).tgz $(CHART_REGISTRY)

.PHONY: helm-install
helm-install: ## Install/upgrade the chart (image of `make image` if built; HELM_ARGS=...) and wait for the rollout
	helm upgrade --install $(RELEASE) charts/fraud-detection --namespace $(NAMESPACE) --create-namespace \
	  $(if $(wildcard build/image/build.json),--set api.image.repository=$(firstword $(subst :, ,$(IMAGE_REF))) \
	  --set api.image.tag=$(lastword $(subst :, ,$(IMAGE_REF)))) $(HELM_ARGS) --wait --timeout 10m
	kubectl --namespace $(NAMESPACE) rollout status deployment \
	  --selector app.kubernetes.io/instance=$(RELEASE) --timeout 5m

.PHONY: helm-test
helm-test: ## Run the chart's `helm test` (scores a transaction through the Service)
	@# No --logs: the passed test pod is already deleted (hook-succeeded) when helm fetches them;
	@# a failed one is kept, so its output is printed from it.
	@helm test $(RELEASE) --namespace $(NAMESPACE) --timeout 5m || { \
	  kubectl logs --namespace $(NAMESPACE) $(RELEASE)-fraud-detection-test-score; exit 1; }

# Distributed Locust run on the cluster: the k8s/loadtest Jobs (master + workers) with the
# locustfile, payloads and SLO from a ConfigMap; the master's exit code is the SLO verdict.
# k8s/run-loadtest.sh copies the master's HTML/CSV report out before it exits.
K8S_LOADTEST_DIR ?= k8s/loadtest
LOADTEST_SLO     ?= loadtests/slo/product.json
LOADTEST_TIMEOUT ?= 1200
K8S_REPORT_DIR   := reports/cluster-loadtest

.PHONY: k8s-loadtest
k8s-loadtest: ## Distributed Locust job (k8s/loadtest) against the ingress; fails on the SLO; HTML/CSV report in reports/cluster-loadtest/
	NAMESPACE=$(NAMESPACE) K8S_LOADTEST_DIR=$(K8S_LOADTEST_DIR) LOADTEST_SLO=$(LOADTEST_SLO) \
	  LOADTEST_TIMEOUT=$(LOADTEST_TIMEOUT) K8S_REPORT_DIR=$(K8S_REPORT_DIR) bash k8s/run-loadtest.sh

.PHONY: k8s-diagnose
k8s-diagnose: ## Print pods, events and API logs of the release (for failed CI runs)
	-kubectl get pods,svc,ingress,hpa,jobs --all-namespaces -o wide
	-kubectl get events --all-namespaces --sort-by=.lastTimestamp
	-kubectl --namespace $(NAMESPACE) logs --selector app.kubernetes.io/instance=$(RELEASE) \
	  --all-containers --prefix --tail 200

##@ Load
.PHONY: loadtest
loadtest: env ## Short SLO-gated Locust run against a locally served model
	$(PY) -m loadtests.run_local

.PHONY: bench
bench: env system-deps ## Side-by-side benchmark vs stock BentoML, MLServer, Starlette -> reports/bench.*
	$(PY) -m loadtests.bench

.PHONY: soak
soak: env ## 10 min at 70% of the benched capacity: zero errors, RSS growth < 5% (not in make test)
	$(PY) -m loadtests.soak

.PHONY: clean
clean: ## Remove generated data, reports and build output (keeps .venv and the model store)
	rm -rf data build .pytest_cache .mypy_cache .ruff_cache
