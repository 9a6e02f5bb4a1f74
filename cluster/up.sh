#!/usr/bin/env bash
# Start a local Kubernetes control plane with kwok-simulated nodes (`make cluster-up`).
#
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local processes
# (kwokctl --runtime binary) from the binaries cluster/build.sh built; kwok simulates
# CLUSTER_NODES nodes and marks the pods scheduled onto them Running and Ready (no container runs).
# Writes CLUSTER_KUBECONFIG and returns once the API answers and every node is Ready.
# Idempotent: a running cluster of the same name is reused; a dead one is recreated.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl; do
  [ -x "$CLUSTER_BIN_DIR/$b" ] || {
    echo "$CLUSTER_BIN_DIR/$b missing: run 'make cluster-build' (cluster/build.sh) first" >&2
    exit 1
  }
done

kubectl_() { kubectl --kubeconfig "$CLUSTER_KUBECONFIG" --request-timeout=10s "$@"; }
api_answers() { [ -f "$CLUSTER_KUBECONFIG" ] && [ "$(kubectl_ get --raw /readyz 2>/dev/null)" = "ok" ]; }

if cluster_exists; then
  if api_answers; then
    echo "cluster '$CLUSTER_NAME' already running (kubeconfig: $CLUSTER_KUBECONFIG)"
    exit 0
  fi
  echo "cluster '$CLUSTER_NAME' exists but does not answer: recreating it"
  "$KWOKCTL" --name "$CLUSTER_NAME" delete cluster --kubeconfig "$CLUSTER_KUBECONFIG" || true
fi

mkdir -p "$(dirname "$CLUSTER_KUBECONFIG")" "$KWOK_WORKDIR"
rm -f "$CLUSTER_KUBECONFIG"
start=$(date +%s)
echo "starting cluster '$CLUSTER_NAME': Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION"
"$KWOKCTL" --name "$CLUSTER_NAME" create cluster \
  --runtime binary \
  --secure-port=true --kube-authorization=true --kube-admission=true \
  --etcd-binary "$CLUSTER_BIN_DIR/etcd" \
  --kube-apiserver-binary "$CLUSTER_BIN_DIR/kube-apiserver" \
  --kube-controller-manager-binary "$CLUSTER_BIN_DIR/kube-controller-manager" \
  --kube-scheduler-binary "$CLUSTER_BIN_DIR/kube-scheduler" \
  --kwok-controller-binary "$CLUSTER_BIN_DIR/kwok" \
  --kubeconfig "$CLUSTER_KUBECONFIG" \
  --timeout "${CLUSTER_TIMEOUT_SECONDS}s" \
  --wait "${CLUSTER_TIMEOUT_SECONDS}s"

deadline=$((start + CLUSTER_TIMEOUT_SECONDS))
until api_answers; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "the API server did not become ready within ${CLUSTER_TIMEOUT_SECONDS}s; logs:" >&2
    echo "  $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/" >&2
    exit 1
  fi
  sleep 1
done

"$KWOKCTL" --name "$CLUSTER_NAME" scale node --replicas "$CLUSTER_NODES"
remaining=$((deadline - $(date +%s)))
kubectl_ wait --for=condition=Ready node --all --timeout="$((remaining > 10 ? remaining : 10))s"
# Workloads need the default ServiceAccount, which the controller-manager creates asynchronously.
until kubectl_ get serviceaccount default --namespace default >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$deadline" ] || {
    echo "the default ServiceAccount never appeared" >&2
    exit 1
  }
  sleep 1
done
kubectl_ get nodes
echo "cluster '$CLUSTER_NAME' ready in $(($(date +%s) - start))s; use it with:"
echo "  export KUBECONFIG=$CLUSTER_KUBECONFIG"
