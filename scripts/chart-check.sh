#!/usr/bin/env bash
# `make chart-check`: verify the Helm chart, the cluster manifests in k8s/ and skaffold.yaml
# with the tools their users run, offline:
#   1. helm lint --strict with the default values and every charts/fraud-detection/ci/*.yaml
#   2. render each value set; kubeconform (strict schemas from kubernetes-validate) for every
#      Kubernetes minor in CHART_K8S_VERSIONS; CRD kinds (Gateway API, Envoy Gateway, KEDA,
#      Prometheus Operator) against their strict schemas vendored in k8s/schemas/crds/
#   3. checkov on the rendered manifests (zero failed checks; skips are justified in place)
#   4. the chart README is what helm-docs generates (no drift)
#   5. skaffold.yaml against skaffold's own JSON schema (from its Go module)
#   6. the chart template tests (tests/chart/)
# kube-linter cannot be installed here (its Go module is not served by the proxy and no PyPI
# package ships it): its default checks are asserted by tests/chart/test_chart_lint.py instead.
# A missing tool fails under CI=true and skips this check (with a hint) elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tool-versions.env
source scripts/tool-versions.env
export PATH="$PWD/.tools/bin:$PATH"
RUN=(uv run --frozen)
CHART=charts/fraud-detection
OUT=build/chart-check
NAMESPACE=fraud
started=$SECONDS

step() { printf '\n==> [%3d s] %s\n' "$((SECONDS - started))" "$*"; }
missing_tool() { # name hint
  if [ "${CI:-}" = "true" ]; then
    echo "chart-check: $1 is missing (CI=true): $2" >&2
    exit 1
  fi
  echo "chart-check: SKIPPED, $1 is missing: $2" >&2
  exit 0
}
for tool in helm kubeconform helm-docs go; do
  command -v "$tool" >/dev/null || missing_tool "$tool" "run 'make system-deps'"
done

# checkov in its own virtual environment (its exact pins would downgrade packages of uv.lock's
# environment), installed with exactly the pinned, hashed set of scripts/requirements-checkov.txt
# and rebuilt only when that file changes.
CHECKOV_VENV=.tools/checkov
CHECKOV_REQUIREMENTS=scripts/requirements-checkov.txt
CHECKOV_VERSION=$(sed -n 's/^checkov==\([^ ]*\).*/\1/p' "$CHECKOV_REQUIREMENTS")
checkov_stamp=$(sha256sum "$CHECKOV_REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$CHECKOV_VENV/.requirements-sha256" 2>/dev/null)" != "$checkov_stamp" ]; then
  step "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV ($CHECKOV_REQUIREMENTS)"
  rm -rf "$CHECKOV_VENV"
  uv venv --quiet --python 3.11 "$CHECKOV_VENV"
  uv pip sync --quiet --require-hashes --python "$CHECKOV_VENV/bin/python" "$CHECKOV_REQUIREMENTS"
  echo "$checkov_stamp" >"$CHECKOV_VENV/.requirements-sha256"
fi

rm -rf "$OUT"
mkdir -p "$OUT/rendered"
value_sets=("$CHART"/ci/*.yaml)

step "helm lint --strict (defaults and ${#value_sets[@]} ci value sets)"
helm lint --strict "$CHART" --namespace "$NAMESPACE"
for values in "${value_sets[@]}"; do
  helm lint --strict --quiet "$CHART" --namespace "$NAMESPACE" -f "$values"
done

step "helm template"
for values in "${value_sets[@]}"; do
  name=$(basename "$values" .yaml)
  helm template fraud "$CHART" --namespace "$NAMESPACE" -f "$values" >"$OUT/rendered/$name.yaml"
done
ls "$OUT/rendered"

step "kubeconform -strict for Kubernetes $CHART_K8S_VERSIONS (chart and k8s/ manifests)"
# shellcheck disable=SC2086  # the version list is meant to split
"${RUN[@]}" python k8s/schemas/kubeconform_schemas.py .tools/k8s-schemas $CHART_K8S_VERSIONS >/dev/null
for minor in $CHART_K8S_VERSIONS; do
  # No -ignore-missing-schemas: a kind without a schema (native or CRD) is an error.
  # One worker: parallel workers each compile the ~1 MB definitions, which costs more CPU.
  kubeconform -n 1 -strict -summary -kubernetes-version "$minor.0" \
    -schema-location '.tools/k8s-schemas/{{ .NormalizedKubernetesVersion }}/{{ .ResourceKind }}{{ .KindSuffix }}.json' \
    -schema-location 'k8s/schemas/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json' \
    "$OUT/rendered" k8s/loadtest/locust.yaml k8s/gateway/kind-gateway.yaml
done

step "checkov $CHECKOV_VERSION (kubernetes framework)"
"$CHECKOV_VENV/bin/checkov" --directory "$OUT/rendered" --framework kubernetes --compact --quiet \
  --skip-download --output cli

step "helm-docs: the chart README is up to date"
helm-docs --chart-search-root charts --sort-values-order file --dry-run 2>/dev/null >"$OUT/README.md"
if ! diff -u "$CHART/README.md" "$OUT/README.md"; then
  echo "charts/fraud-detection/README.md is out of date: run" \
    "'.tools/bin/helm-docs --chart-search-root charts --sort-values-order file'" >&2
  exit 1
fi

step "skaffold.yaml against skaffold $SKAFFOLD_MODULE_VERSION's JSON schema"
"${RUN[@]}" python k8s/schemas/validate_skaffold.py skaffold.yaml "$SKAFFOLD_MODULE_VERSION"

step "chart template tests"
# (test_chart_hook.py serves the API, so it runs in tests/integration, not here.)
"${RUN[@]}" pytest -q -p no:cacheprovider tests/chart

echo "chart-check: all passed in $((SECONDS - started)) s"
