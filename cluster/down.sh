#!/usr/bin/env bash
# Stop and delete the local cluster started by cluster/up.sh (`make cluster-down`): its processes,
# etcd data, certificates and kubeconfig. The built binaries and Go caches stay for the next start.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

if [ -x "$KWOKCTL" ] && cluster_exists; then
  "$KWOKCTL" --name "$CLUSTER_NAME" delete cluster --kubeconfig "$CLUSTER_KUBECONFIG"
else
  echo "no cluster '$CLUSTER_NAME' to delete"
fi
rm -f "$CLUSTER_KUBECONFIG" "$KWOK_WORKDIR/$CLUSTER_NAME.kwokctl.yaml" # the config up.sh wrote
