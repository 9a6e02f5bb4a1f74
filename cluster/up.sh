#!/usr/bin/env bash
# Start a local Kubernetes control plane with kwok-simulated nodes (`make cluster-up`).
#
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and metrics-server run as local
# processes (kwokctl --runtime binary) from the binaries cluster/build.sh built; kwok simulates
# CLUSTER_NODES nodes and marks the pods scheduled onto them Running and Ready (no container runs).
# kwok also simulates resource usage: ClusterResourceUsage / ResourceUsage objects (kwok.x-k8s.io
# CRDs) set the CPU and memory of pods, kwok serves them on kubelet-style /metrics/resource
# endpoints, metrics-server scrapes those and serves metrics.k8s.io, which the HPA controller reads.
# Writes CLUSTER_KUBECONFIG and returns once the API answers, every node is Ready and metrics.k8s.io
# is available.
# With CLUSTER_REAL_NODE=1 (`make cluster-up`) it also starts one real node (cluster/node-up.sh) beside
# the kwok nodes: kubelet + containerd on this machine, where pods that opt in really run.
# Idempotent: a running cluster of the same name is reused; a dead one is recreated.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl metrics-server; do
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
    [ "$CLUSTER_REAL_NODE" != 1 ] || bash "$REPO_ROOT/cluster/node-up.sh"
    exit 0
  fi
  echo "cluster '$CLUSTER_NAME' exists but does not answer: recreating it"
  "$KWOKCTL" --name "$CLUSTER_NAME" delete cluster --kubeconfig "$CLUSTER_KUBECONFIG" || true
fi

mkdir -p "$(dirname "$CLUSTER_KUBECONFIG")" "$KWOK_WORKDIR"
rm -f "$CLUSTER_KUBECONFIG"
start=$(date +%s)
echo "starting cluster '$CLUSTER_NAME': Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION," \
  "metrics-server $METRICS_SERVER_VERSION"

# kwokctl's default metrics-server manifest is a GitHub download, which cannot work offline: give it
# the local one. It is a list option, which only a config file can set (KWOK_* variables are scalars).
# kwokctl caches the manifest it built under a hash of its path: drop that copy so edits apply.
metrics_server_manifests="$REPO_ROOT/cluster/metrics-server" # APIService + Service, see kustomization
manifest_key=$(printf %s "$metrics_server_manifests" | sha256sum | cut -d' ' -f1)
rm -f "$KWOK_WORKDIR/cache/manifest/$manifest_key.yaml"
kwokctl_config="$KWOK_WORKDIR/$CLUSTER_NAME.kwokctl.yaml"
cat >"$kwokctl_config" <<CONFIG
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  metricsServerManifests:
    - $metrics_server_manifests
CONFIG
if [ "$CLUSTER_REAL_NODE" = 1 ]; then
  # The real node: kwok must leave it alone (kwokctl's binary runtime otherwise passes
  # --manage-all-nodes=true; its own nodes carry the annotation), and kube-apiserver needs a client
  # certificate for kubelet's webhook authentication (logs, exec, port-forward). kwokctl issues one
  # certificate (kwok-admin, group system:masters) for all its components; it is written to pki/
  # before kube-apiserver starts.
  pki="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pki"
  cat >>"$kwokctl_config" <<CONFIG
componentsPatches:
  - name: kwok-controller
    extraArgs:
      - {key: manage-all-nodes, value: "false"}
      - {key: manage-nodes-with-annotation-selector, value: "$KWOK_NODE_SELECTOR"}
  - name: kube-apiserver
    extraArgs:
      - {key: kubelet-client-certificate, value: "$pki/admin.crt"}
      - {key: kubelet-client-key, value: "$pki/admin.key"}
CONFIG
fi

# --enable-crds: usage comes from ClusterResourceUsage / ResourceUsage objects in the cluster (tests
# create and change them at run time) rather than from a fixed kwok configuration.
"$KWOKCTL" --name "$CLUSTER_NAME" --config "$kwokctl_config" create cluster \
  --runtime binary \
  --secure-port=true --kube-authorization=true --kube-admission=true \
  --etcd-binary "$CLUSTER_BIN_DIR/etcd" \
  --kube-apiserver-binary "$CLUSTER_BIN_DIR/kube-apiserver" \
  --kube-controller-manager-binary "$CLUSTER_BIN_DIR/kube-controller-manager" \
  --kube-scheduler-binary "$CLUSTER_BIN_DIR/kube-scheduler" \
  --kwok-controller-binary "$CLUSTER_BIN_DIR/kwok" \
  --enable metrics-server --metrics-server-binary "$CLUSTER_BIN_DIR/metrics-server" \
  --enable-crds ClusterResourceUsage,ResourceUsage \
  --kubeconfig "$CLUSTER_KUBECONFIG" \
  --timeout "${CLUSTER_TIMEOUT_SECONDS}s" \
  --wait "${CLUSTER_TIMEOUT_SECONDS}s"

deadline=$((start + CLUSTER_TIMEOUT_SECONDS))
remaining() { # what is left of CLUSTER_TIMEOUT_SECONDS, at least 10 s, as a kubectl --timeout
  local left=$((deadline - $(date +%s)))
  echo "$((left > 10 ? left : 10))s"
}
until api_answers; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "the API server did not become ready within ${CLUSTER_TIMEOUT_SECONDS}s; logs:" >&2
    echo "  $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/" >&2
    exit 1
  fi
  sleep 1
done

# Node addresses on loopback (127.0.0.1, .2, ...) instead of kwokctl's default 192.0.2.x, which does
# not route: metrics-server scrapes every node at its InternalIP and kubelet port, and the kwok
# controller, listening on all addresses at that port, answers for each node.
"$KWOKCTL" --name "$CLUSTER_NAME" scale node --replicas "$CLUSTER_NODES" --param '.nodeIPs=["127.0.0.1"]'
kubectl_ wait --for=condition=Ready node --all --timeout="$(remaining)"
# metrics-server exits at once when kube-apiserver does not answer yet, and kwokctl starts all
# components together and restarts none: on a busy machine metrics-server can lose that race (seen
# in CI). `kwokctl start cluster` starts exactly the components that are not running, so repeat it
# until metrics.k8s.io is available.
until kubectl_ wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=20s 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || {
    echo "metrics.k8s.io did not become available within ${CLUSTER_TIMEOUT_SECONDS}s; see" \
      "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/metrics-server.log" >&2
    exit 1
  }
  echo "metrics.k8s.io not available yet: starting the components that are not running"
  "$KWOKCTL" --name "$CLUSTER_NAME" start cluster
  sleep 2
done
# Workloads need the default ServiceAccount, which the controller-manager creates asynchronously.
until kubectl_ get serviceaccount default --namespace default >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$deadline" ] || {
    echo "the default ServiceAccount never appeared" >&2
    exit 1
  }
  sleep 1
done
[ "$CLUSTER_REAL_NODE" != 1 ] || bash "$REPO_ROOT/cluster/node-up.sh"
kubectl_ get nodes
echo "cluster '$CLUSTER_NAME' ready in $(($(date +%s) - start))s; use it with:"
echo "  export KUBECONFIG=$CLUSTER_KUBECONFIG"
