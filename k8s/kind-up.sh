#!/usr/bin/env bash
# Run the whole stack on a local kind cluster (needs Docker, kind, kubectl and helm):
#   kind cluster (k8s/kind-config.yaml) -> `make image` -> kind load -> Envoy Gateway and the
#   Gateway of k8s/gateway/kind-gateway.yaml -> the chart with its HTTPRoutes and Envoy Gateway
#   policy -> `helm test`. The per-client rate limit applies to clients on the Docker network
#   (the host, through port 80); in-cluster clients (kind's pod network 10.244.0.0/16, e.g.
#   `make k8s-loadtest`) are outside httpRoute.api.rateLimit.clientCIDRs and not limited.
# Idempotent: re-running rebuilds the image if the code changed and upgrades the release.
# Settings (environment): KIND_CLUSTER (fraud), NAMESPACE (fraud), RELEASE (fraud),
# ENVOY_GATEWAY_VERSION, API_HOST (fraud-api.localhost), UI_HOST (fraud-ui.localhost),
# UI_IMAGE (fraud-detection-ui:latest; the UI is deployed only if this image exists locally).
set -euo pipefail
cd "$(dirname "$0")/.."
KIND_CLUSTER=${KIND_CLUSTER:-fraud}
NAMESPACE=${NAMESPACE:-fraud}
RELEASE=${RELEASE:-fraud}
# The release whose CRD schemas k8s/schemas/ vendors (k8s/schemas/vendor_crd_schemas.py).
ENVOY_GATEWAY_VERSION=${ENVOY_GATEWAY_VERSION:-v1.9.1}
GATEWAY_NAMESPACE=envoy-gateway-system
# The Gateway's in-cluster Service (fixed name in k8s/gateway/kind-gateway.yaml): the host
# name the in-cluster load test sends (k8s/loadtest/locust.yaml).
GATEWAY_SERVICE_HOST=fraud-gateway.$GATEWAY_NAMESPACE.svc.cluster.local
API_HOST=${API_HOST:-fraud-api.localhost}
UI_HOST=${UI_HOST:-fraud-ui.localhost}
UI_IMAGE=${UI_IMAGE:-fraud-detection-ui:latest}
export PATH="$PWD/.tools/bin:$PATH"

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-up: '$tool' is not installed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind-up: the Docker daemon is not reachable" >&2; exit 1; }

if ! kind get clusters | grep -qx "$KIND_CLUSTER"; then
  kind create cluster --name "$KIND_CLUSTER" --config k8s/kind-config.yaml --wait 2m
fi
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

echo "==> building the API image (make image)"
BACKEND=docker make image
image=$(python3 -c "import json; print(json.load(open('build/image/build.json'))['image'])")
kind load docker-image "$image" --name "$KIND_CLUSTER"

ui_args=(--set ui.enabled=false)
if docker image inspect "$UI_IMAGE" >/dev/null 2>&1; then
  kind load docker-image "$UI_IMAGE" --name "$KIND_CLUSTER"
  ui_args=(--set ui.enabled=true --set "ui.image.repository=${UI_IMAGE%:*}" --set "ui.image.tag=${UI_IMAGE##*:}")
else
  echo "==> no local image $UI_IMAGE: deploying without the UI (set UI_IMAGE to deploy it)"
fi

echo "==> Envoy Gateway $ENVOY_GATEWAY_VERSION (Gateway API CRDs included) and the kind Gateway"
helm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" \
  --namespace "$GATEWAY_NAMESPACE" --create-namespace --wait --timeout 5m
kubectl apply -f k8s/gateway/kind-gateway.yaml
kubectl -n "$GATEWAY_NAMESPACE" wait gateway/fraud-gateway --for=condition=Programmed --timeout=5m

echo "==> the fraud-detection chart ($image)"
# The Gateway admits routes from namespaces with this label only.
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" fraud-detection/gateway-access=true --overwrite
helm upgrade --install "$RELEASE" charts/fraud-detection --namespace "$NAMESPACE" \
  --set "api.image.repository=${image%:*}" --set "api.image.tag=${image##*:}" \
  --set httpRoute.enabled=true \
  --set "httpRoute.parentRefs[0].name=fraud-gateway" \
  --set "httpRoute.parentRefs[0].namespace=$GATEWAY_NAMESPACE" \
  --set "httpRoute.api.hostnames={$API_HOST,$GATEWAY_SERVICE_HOST}" \
  --set "httpRoute.ui.hostnames={$UI_HOST}" \
  --set 'httpRoute.api.rateLimit.clientCIDRs={172.16.0.0/12}' \
  "${ui_args[@]}" --wait --timeout 10m
# The Gateway accepted the routes (a wrong parentRef or allowedRoutes shows up here, not as a 404).
accepted='{range .items[*]}{.metadata.name}={.status.parents[0].conditions[?(@.type=="Accepted")].status}{" "}{end}'
routes=""
for _ in $(seq 60); do
  routes=$(kubectl -n "$NAMESPACE" get httproute -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath="$accepted")
  if [ -n "$routes" ] && ! tr ' ' '\n' <<<"$routes" | grep -v '^$' | grep -qv '=True$'; then
    break
  fi
  routes=""
  sleep 2
done
if [ -z "$routes" ]; then
  echo "kind-up: the Gateway did not accept the HTTPRoutes" >&2
  kubectl -n "$NAMESPACE" get httproute -o yaml >&2
  exit 1
fi
echo "HTTPRoutes accepted: $routes"
helm test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 5m

secret=$(kubectl -n "$NAMESPACE" get secret -l "app.kubernetes.io/instance=$RELEASE" -o name | grep -- '-auth$')
cat <<MSG

The stack is up on kind cluster '$KIND_CLUSTER':
  API:  http://$API_HOST/docs       (through Envoy Gateway; 100 requests a minute per client)
  UI:   http://$UI_HOST/            (when deployed)
  key:  kubectl -n $NAMESPACE get $secret -o jsonpath='{.data.ui-api-key}' | base64 -d
Delete everything with: kind delete cluster --name $KIND_CLUSTER
MSG
