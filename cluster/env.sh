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

# ---- the real node (cluster/node-up.sh, cluster/node-down.sh) --------------------------------------
# CLUSTER_REAL_NODE=1 (what `make cluster-up` sets) adds one real node beside the kwok nodes: kubelet,
# containerd, runc, a bridge CNI, kube-proxy and CoreDNS as host processes. Throwaway clusters (the e2e
# tests) leave it at 0: there is one real node per machine (its name is the hostname, kubelet's port
# is fixed), so only one cluster at a time can have it.
CLUSTER_REAL_NODE="${CLUSTER_REAL_NODE:-0}"
# shellcheck disable=SC2034 # used by the scripts that source this file
{
# The node's name must be the machine's hostname: the API server reaches kubelet by that name for
# logs, exec and port-forward.
NODE_NAME="$(hostname)"
# Configuration, certificates, pid files and logs (inside the checkout, beside kwokctl's state).
NODE_DIR="${CLUSTER_NODE_DIR:-$REPO_ROOT/.tools/cluster/node}"
# containerd's and kubelet's state (image store, snapshots, pod volumes: mounts live here).
NODE_LIB_DIR="${CLUSTER_NODE_LIB_DIR:-/var/lib/fraud-detection-node}"
# Sockets and containerd's runtime state (short paths: unix sockets are limited to 108 bytes).
NODE_RUN_DIR="${CLUSTER_NODE_RUN_DIR:-/run/fraud-detection-node}"
NODE_CONTAINERD_SOCKET="$NODE_RUN_DIR/containerd.sock"
# The pods' bridge and addresses (podman's default network is 10.88.0.0/16 on cni-podman0).
NODE_BRIDGE="${CLUSTER_NODE_BRIDGE:-cni-fraud0}"
NODE_POD_CIDR="${CLUSTER_NODE_POD_CIDR:-10.244.0.0/24}"
NODE_CNI_NETWORK="fraud-detection-node"
# Pods land on the real node only when they opt in: nodeSelector on this label, toleration of this taint.
NODE_LABEL_KEY="fraud-detection.dev/real-node"
NODE_TAINT="$NODE_LABEL_KEY=true:NoSchedule"
# The sandbox image, built locally from cluster/node/pause.c (no registry to pull from).
NODE_PAUSE_IMAGE="localhost/fraud-detection/pause:local"
# The kwok controller manages only the nodes kwokctl creates (annotated so), never the real one.
KWOK_NODE_SELECTOR="kwok.x-k8s.io/node=fake"
}
