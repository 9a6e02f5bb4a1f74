#!/usr/bin/env bash
# Run the whole stack on a local kind cluster (needs Docker, kind, kubectl and helm):
#   kind cluster (k8s/kind-config.yaml) -> `make image` -> kind load -> ingress-nginx ->
#   the chart with the ingress on -> `helm test`. In-cluster clients (kind's pod network
#   10.244.0.0/16, e.g. `make k8s-loadtest`) are exempt from the ingress rate limit.
# Idempotent: re-running rebuilds the image if the code changed and upgrades the release.
# Settings (environment): KIND_CLUSTER (fraud), NAMESPACE (fraud), RELEASE (fraud),
# INGRESS_NGINX_CHART_VERSION, API_HOST (fraud-api.localhost), UI_HOST (fraud-ui.localhost),
# UI_IMAGE (fraud-detection-ui:latest; the UI is deployed only if this image exists locally).
set -euo pipefail
cd "$(dirname "$0")/.."
KIND_CLUSTER=${KIND_CLUSTER:-fraud}
NAMESPACE=${NAMESPACE:-fraud}
RELEASE=${RELEASE:-fraud}
INGRESS_NGINX_CHART_VERSION=${INGRESS_NGINX_CHART_VERSION:-4.13.0}
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

echo "==> ingress-nginx $INGRESS_NGINX_CHART_VERSION (host ports 80/443 on the control-plane node)"
helm upgrade --install ingress-nginx ingress-nginx \
  --repo https://kubernetes.github.io/ingress-nginx --version "$INGRESS_NGINX_CHART_VERSION" \
  --namespace ingress-nginx --create-namespace \
  --set controller.hostPort.enabled=true \
  --set controller.service.type=NodePort \
  --set-string controller.nodeSelector.ingress-ready=true \
  --set 'controller.tolerations[0].key=node-role.kubernetes.io/control-plane' \
  --set 'controller.tolerations[0].operator=Exists' \
  --set 'controller.tolerations[0].effect=NoSchedule' \
  --wait --timeout 5m

echo "==> the fraud-detection chart ($image)"
helm upgrade --install "$RELEASE" charts/fraud-detection --namespace "$NAMESPACE" --create-namespace \
  --set "api.image.repository=${image%:*}" --set "api.image.tag=${image##*:}" \
  --set ingress.enabled=true --set "ingress.api.host=$API_HOST" --set "ingress.ui.host=$UI_HOST" \
  --set 'ingress.api.extraHosts[0]=ingress-nginx-controller.ingress-nginx.svc.cluster.local' \
  --set ingress.rateLimit.allowlist=10.244.0.0/16 \
  "${ui_args[@]}" --wait --timeout 10m
helm test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 5m

secret=$(kubectl -n "$NAMESPACE" get secret -l "app.kubernetes.io/instance=$RELEASE" -o name | head -1)
cat <<MSG

The stack is up on kind cluster '$KIND_CLUSTER':
  API:  http://$API_HOST/docs
  UI:   http://$UI_HOST/        (when deployed)
  key:  kubectl -n $NAMESPACE get $secret -o jsonpath='{.data.ui-api-key}' | base64 -d
Delete everything with: kind delete cluster --name $KIND_CLUSTER
MSG
