#!/usr/bin/env bash
# Start the real node of the local cluster (called by cluster/up.sh when CLUSTER_REAL_NODE=1).
#
# Beside the kwok nodes, this machine becomes a node named after its hostname, where pods really run:
#   containerd (Debian's) with runc and a bridge CNI (Debian's plugins), a locally built pause image,
#   kubelet (client certificate system:node:NAME, webhook authentication and authorisation),
#   kube-proxy (iptables mode) and CoreDNS (the kube-dns Service) as host processes.
# The node is tainted and labelled (NODE_TAINT, NODE_LABEL_KEY): only pods that tolerate the taint and
# select the label land on it; everything else still goes to the kwok nodes.
# Needs root, `make system-deps` (containerd, runc, containernetworking-plugins, buildah, gcc) and
# `make cluster-build` (kubelet, kube-proxy, coredns). Idempotent: running components are kept.
# cluster/node-down.sh undoes all of it.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

fail() {
  echo "node-up: $*" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || fail "the real node needs root (kubelet, containerd, network namespaces, iptables)"
for b in kubelet kube-proxy coredns kubectl; do
  [ -x "$CLUSTER_BIN_DIR/$b" ] || fail "$CLUSTER_BIN_DIR/$b missing: run 'make cluster-build'"
done
for tool in containerd ctr runc buildah gcc iptables openssl; do
  command -v "$tool" >/dev/null || fail "$tool not found: run 'make system-deps'"
done
for plugin in bridge host-local loopback; do
  [ -x "/usr/lib/cni/$plugin" ] ||
    fail "CNI plugin $plugin missing in /usr/lib/cni: run 'make system-deps' (containernetworking-plugins)"
done
getent hosts "$NODE_NAME" >/dev/null || fail "hostname $NODE_NAME does not resolve (add it to /etc/hosts)"

kwok_config="$KWOK_WORKDIR/$CLUSTER_NAME.kwokctl.yaml"
grep -q "manage-nodes-with-annotation-selector" "$kwok_config" 2>/dev/null ||
  fail "cluster '$CLUSTER_NAME' was started without the real node's settings (kwok would manage the" \
    "node): recreate it with 'make cluster-down cluster-up'"
pki="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pki"
[ -f "$pki/ca.key" ] || fail "no cluster CA in $pki"

owner_file="$NODE_DIR/cluster-name"
if [ -f "$owner_file" ] && [ "$(cat "$owner_file")" != "$CLUSTER_NAME" ]; then
  fail "the real node belongs to cluster '$(cat "$owner_file")': run its cluster-down first"
fi
mkdir -p "$NODE_DIR"/{pki,logs,run,cni} "$NODE_LIB_DIR" "$NODE_RUN_DIR"
echo "$CLUSTER_NAME" >"$owner_file"

kubectl_() { kubectl --kubeconfig "$CLUSTER_KUBECONFIG" --request-timeout=20s "$@"; }
start=$(date +%s)
deadline=$((start + CLUSTER_TIMEOUT_SECONDS))

# ---- addresses ------------------------------------------------------------------------------------
# The node's InternalIP: the address of the default route's interface (loopback when there is none).
node_ip=$(ip -4 route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1)
node_ip=${node_ip:-127.0.0.1}
# Cluster DNS: the tenth address of the Service range, as kubeadm does (the range's first address is
# the `kubernetes` Service's ClusterIP, which kube-apiserver allocates itself).
kubernetes_ip=$(kubectl_ get service kubernetes --namespace default -o jsonpath='{.spec.clusterIP}')
dns_ip="${kubernetes_ip%.*}.10"
server=$(kubectl_ config view --minify -o jsonpath='{.clusters[0].cluster.server}')

# Config files are rewritten only when their content changes: kube-proxy exits when its file changes,
# and a second `make cluster-up` must leave running components alone.
put() { # file: write stdin to it unless it already holds exactly that
  local tmp
  tmp=$(mktemp "$1.XXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

# ---- certificates ---------------------------------------------------------------------------------
# Signed by the cluster CA kwokctl generated. kubelet's client certificate puts it in group
# system:nodes (the Node authorizer scopes it to its own node and pods); kube-proxy's is the user the
# built-in system:node-proxier binding names.
issue_cert() { # name subject [subjectAltNames]
  local name=$1 subject=$2 sans=${3:-} ext
  [ -f "$NODE_DIR/pki/$name.crt" ] &&
    openssl verify -CAfile "$pki/ca.crt" "$NODE_DIR/pki/$name.crt" >/dev/null 2>&1 && return 0
  ext="$NODE_DIR/pki/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$NODE_DIR/pki/$name.key" -subj "$subject" \
    -out "$NODE_DIR/pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$NODE_DIR/pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -CAserial "$NODE_DIR/pki/ca.srl" -days 30 -extfile "$ext" \
    -out "$NODE_DIR/pki/$name.crt" 2>/dev/null
  chmod 600 "$NODE_DIR/pki/$name.key"
}
issue_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME"
issue_cert kubelet-serving "/CN=$NODE_NAME" "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$node_ip"
issue_cert kube-proxy "/CN=system:kube-proxy"
write_kubeconfig() { # file cert-name
  put "$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "$server", certificate-authority: "$pki/ca.crt"}
users:
  - name: local
    user: {client-certificate: "$NODE_DIR/pki/$2.crt", client-key: "$NODE_DIR/pki/$2.key"}
contexts:
  - name: local
    context: {cluster: local, user: local}
current-context: local
KUBECONFIG
  chmod 600 "$1"
}
write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" kubelet-client
write_kubeconfig "$NODE_DIR/kube-proxy.kubeconfig" kube-proxy

# ---- processes ------------------------------------------------------------------------------------
running() { # name: is the process in its pid file alive?
  local pid
  pid=$(cat "$NODE_DIR/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
launch() { # name command...: start a host process in its own session, logging to logs/NAME.log
  local name=$1
  shift
  if running "$name"; then
    echo "$name already running (pid $(cat "$NODE_DIR/run/$name.pid"))"
    return 0
  fi
  setsid "$@" >>"$NODE_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_DIR/run/$name.pid"
  echo "started $name (pid $!, log $NODE_DIR/logs/$name.log)"
}
wait_until() { # description command...: retry until the command succeeds or the deadline passes
  local what=$1
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what not within ${CLUSTER_TIMEOUT_SECONDS}s; logs: $NODE_DIR/logs/"
    sleep 1
  done
}

# ---- containerd -----------------------------------------------------------------------------------
# A private instance (own socket, root and state): the machine's podman and any system containerd
# are left alone. restrict_oom_score_adj: runc cannot raise oom_score_adj here (no
# CAP_SYS_RESOURCE in this sandbox) and fails every container without it. Network namespaces under
# the state directory, not the /run/netns that podman shares.
put "$NODE_DIR/cni/10-$NODE_CNI_NETWORK.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "$NODE_CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_LIB_DIR/cni"
      }
    }
  ]
}
CNI
put "$NODE_DIR/containerd.toml" <<TOML
version = 2
root = "$NODE_LIB_DIR/containerd"
state = "$NODE_RUN_DIR/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$NODE_CONTAINERD_SOCKET"
[ttrpc]
  address = "$NODE_CONTAINERD_SOCKET.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_LIB_DIR/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni"
    max_conf_num = 1
TOML
launch containerd containerd --config "$NODE_DIR/containerd.toml"
ctr_() { ctr --address "$NODE_CONTAINERD_SOCKET" --namespace k8s.io "$@"; }
wait_until "containerd answering on $NODE_CONTAINERD_SOCKET" ctr_ version

# ---- the pause image ------------------------------------------------------------------------------
# A static binary FROM scratch, built with buildah and imported as an OCI archive; rebuilt only when
# containerd does not have it.
if ! ctr_ images check "name==$NODE_PAUSE_IMAGE" 2>/dev/null | grep -q complete; then
  build=$(mktemp -d)
  gcc -Os -static -Wall -Wextra -o "$build/pause" "$REPO_ROOT/cluster/node/pause.c"
  strip "$build/pause" 2>/dev/null || true
  work=$(buildah from scratch)
  buildah copy --quiet --chmod 0755 "$work" "$build/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 \
    --label org.opencontainers.image.description="pod sandbox (cluster/node/pause.c)" "$work"
  buildah commit --quiet --rm "$work" "$NODE_PAUSE_IMAGE" >/dev/null
  buildah push --quiet "$NODE_PAUSE_IMAGE" "oci-archive:$build/pause.tar:$NODE_PAUSE_IMAGE"
  ctr_ images import --no-unpack=false "$build/pause.tar" >/dev/null
  rm -rf "$build"
  echo "pause image $NODE_PAUSE_IMAGE built and imported"
fi

# ---- kubelet --------------------------------------------------------------------------------------
put "$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# kube-apiserver authenticates with its client certificate (cluster CA); every request is authorised
# by a SubjectAccessReview. No anonymous access, no read-only port.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 30s}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 30s, cacheUnauthorizedTTL: 10s}
readOnlyPort: 0
tlsCertFile: "$NODE_DIR/pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$NODE_DIR/pki/kubelet-serving.key"
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: "unix://$NODE_CONTAINERD_SOCKET"
# This machine: hybrid cgroup v1 without systemd managing it, no swap accounting.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: ["$dns_ip"]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerWithTaints:
  - {key: "$NODE_LABEL_KEY", value: "true", effect: NoSchedule}
# The disk is shared with other work: evict only when it is really full, and never collect the
# side-loaded images (they cannot be pulled again).
evictionHard: {memory.available: 200Mi, nodefs.available: 1Gi, imagefs.available: 1Gi}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 30
serializeImagePulls: false
YAML
launch kubelet "$CLUSTER_BIN_DIR/kubelet" \
  --config "$NODE_DIR/kubelet.yaml" \
  --kubeconfig "$NODE_DIR/kubelet.kubeconfig" \
  --root-dir "$NODE_LIB_DIR/kubelet" \
  --hostname-override "$NODE_NAME" \
  --node-ip "$node_ip" \
  --node-labels "$NODE_LABEL_KEY=true" \
  --v=2

# ---- kube-proxy -----------------------------------------------------------------------------------
put "$NODE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$NODE_DIR/kube-proxy.kubeconfig"}
hostnameOverride: "$NODE_NAME"
mode: iptables
clusterCIDR: "$NODE_POD_CIDR"
# Leave the machine's conntrack table size alone (it may not be writable here).
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
YAML
launch kube-proxy "$CLUSTER_BIN_DIR/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml" --v=2

# ---- CoreDNS and the kube-dns Service --------------------------------------------------------------
# CoreDNS runs on the host, listening on the node's address; the kube-dns Service (the clusterDNS
# address kubelet gives pods) points at it through a hand-made EndpointSlice, and kube-proxy routes it.
put "$NODE_DIR/Corefile" <<COREFILE
.:53 {
    bind $node_ip
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $CLUSTER_KUBECONFIG
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
COREFILE
launch coredns "$CLUSTER_BIN_DIR/coredns" -conf "$NODE_DIR/Corefile"
kubectl_ apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: "$dns_ip"
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: fraud-detection-real-node
addressType: IPv4
endpoints:
  - addresses: ["$node_ip"]
    conditions: {ready: true}
    nodeName: "$NODE_NAME"
ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
YAML

# ---- ready ----------------------------------------------------------------------------------------
node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
wait_until "node $NODE_NAME Ready" node_ready
wait_until "kube-proxy healthy" curl -fsS http://127.0.0.1:10256/healthz
echo "real node $NODE_NAME ($node_ip, pods $NODE_POD_CIDR, DNS $dns_ip) ready in $(($(date +%s) - start))s;" \
  "pods opt in with nodeSelector $NODE_LABEL_KEY=true and a toleration of $NODE_TAINT"
