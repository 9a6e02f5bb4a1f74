# Shared settings of cluster/up.sh and cluster/down.sh (sourced, not run).
# Every setting can be overridden from the environment, e.g. to run a second, throwaway cluster:
#   CLUSTER_NAME=e2e CLUSTER_KUBECONFIG=/tmp/e2e.kubeconfig cluster/up.sh
# shellcheck shell=bash
# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-fraud-detection}"
CLUSTER_BIN_DIR="${CLUSTER_BIN_DIR:-$REPO_ROOT/.tools/cluster/bin}"
CLUSTER_KUBECONFIG="${CLUSTER_KUBECONFIG:-$REPO_ROOT/.tools/cluster/kubeconfig}"
CLUSTER_NODES="${CLUSTER_NODES:-3}"
CLUSTER_TIMEOUT_SECONDS="${CLUSTER_TIMEOUT_SECONDS:-180}"
# kwokctl keeps each cluster's config, certificates, etcd data, pid files and logs under
# $KWOK_WORKDIR/clusters/NAME: inside the checkout, not in ~/.kwok.
export KWOK_WORKDIR="${KWOK_WORKDIR:-$REPO_ROOT/.tools/cluster/kwok}"
# kwokctl runs `kubectl` from PATH (or downloads one, which cannot work offline): use the one built
# with the control plane rather than whatever version the machine happens to have.
export PATH="$CLUSTER_BIN_DIR:$PATH"
KWOKCTL="$CLUSTER_BIN_DIR/kwokctl"

# True when kwokctl knows a cluster named CLUSTER_NAME. (Not `kwokctl ... | grep -q`: with pipefail,
# grep exiting at the first match can kill kwokctl with SIGPIPE and turn a match into a failure.)
cluster_exists() {
  local clusters
  clusters=$("$KWOKCTL" get clusters 2>/dev/null) || return 1
  grep -qx "$CLUSTER_NAME" <<<"$clusters"
}
