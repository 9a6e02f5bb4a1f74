#!/usr/bin/env bash
# Stop and delete the local cluster started by cluster/up.sh (`make cluster-down`): its processes,
# etcd data, certificates and kubeconfig, and the real node if this cluster has it (cluster/node-down.sh:
# processes, mounts, bridge, iptables chains, cgroups). The built binaries and Go caches stay.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

# The real node first, while the API still answers (its pods are deleted through it).
if [ "$(cat "$NODE_DIR/cluster-name" 2>/dev/null)" = "$CLUSTER_NAME" ]; then
  bash "$REPO_ROOT/cluster/node-down.sh"
fi

if [ -x "$KWOKCTL" ] && cluster_exists; then
  "$KWOKCTL" --name "$CLUSTER_NAME" delete cluster --kubeconfig "$CLUSTER_KUBECONFIG"
else
  echo "no cluster '$CLUSTER_NAME' to delete"
fi
rm -f "$CLUSTER_KUBECONFIG" "$KWOK_WORKDIR/$CLUSTER_NAME.kwokctl.yaml" # the config up.sh wrote
