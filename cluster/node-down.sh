#!/usr/bin/env bash
# Stop the real node started by cluster/node-up.sh and remove everything it left on the machine:
# its pods (deleted through the API first, so kubelet tears down their network), the kubelet,
# kube-proxy, CoreDNS and containerd processes and containerd's shims, mounts under its state
# directories, the pods' bridge, its iptables rules and chains (kube-proxy's KUBE-* chains, the bridge
# plugin's masquerade chains), its cgroups, its directories and the pause image.
# Called by cluster/down.sh; safe to run when nothing is running.
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

[ "$(id -u)" = 0 ] || {
  echo "node-down: needs root" >&2
  exit 1
}
if [ ! -d "$NODE_DIR" ] && [ ! -d "$NODE_LIB_DIR" ] && [ ! -d "$NODE_RUN_DIR" ]; then
  exit 0
fi
echo "stopping the real node $NODE_NAME"
kubectl_() { "$CLUSTER_BIN_DIR/kubectl" --kubeconfig "$CLUSTER_KUBECONFIG" --request-timeout=15s "$@"; }
pid_of() { cat "$NODE_DIR/run/$1.pid" 2>/dev/null; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
stop() { # name: TERM the process of its pid file, KILL it after 15 s
  local pid
  pid=$(pid_of "$1")
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 30); do
    alive "$pid" || break
    sleep 0.5
  done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null
  rm -f "$NODE_DIR/run/$1.pid"
}

# 1. Pods first, while kubelet runs: it stops their containers and releases their network (CNI DEL).
if alive "$(pid_of kubelet)" && [ -f "$CLUSTER_KUBECONFIG" ] &&
  kubectl_ get node "$NODE_NAME" >/dev/null 2>&1; then
  kubectl_ delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
    --grace-period=5 --wait --timeout=90s >/dev/null 2>&1 ||
    echo "node-down: some pods did not stop in time; removing them by force" >&2
  kubectl_ delete node "$NODE_NAME" --wait=false >/dev/null 2>&1
  kubectl_ delete service kube-dns --namespace kube-system --wait=false >/dev/null 2>&1
fi

# 2. The host processes.
stop kube-proxy
stop coredns
stop kubelet
ctr_() { timeout 30 ctr --address "$NODE_CONTAINERD_SOCKET" --namespace k8s.io "$@"; }
if alive "$(pid_of containerd)"; then
  for task in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill --signal SIGKILL "$task" >/dev/null 2>&1
  done
  sleep 1
  for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete --force "$task" >/dev/null 2>&1; done
  for container in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$container" >/dev/null 2>&1; done
fi
stop containerd
# Shims outlive containerd: stop any left, by the pid each wrote, if it is still one of ours.
for pid_file in "$NODE_RUN_DIR"/containerd/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [ -f "$pid_file" ] || continue
  pid=$(cat "$pid_file")
  if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$NODE_CONTAINERD_SOCKET"; then
    kill -KILL "$pid" 2>/dev/null
  fi
done

# 3. Network: kube-proxy's chains, the bridge plugin's masquerade rules and chains (their comments
#    name the CNI network), the bridge itself.
[ -x "$CLUSTER_BIN_DIR/kube-proxy" ] && "$CLUSTER_BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1
# What `kube-proxy --cleanup` leaves: kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
# KUBE-IPTABLES-HINT) and the jumps to them, in IPv4 and IPv6.
for cmd in iptables ip6tables; do
  command -v "$cmd" >/dev/null || continue
  for table in filter nat mangle; do
    mapfile -t jumps < <("$cmd" -t "$table" -S 2>/dev/null | grep -E '^-A .* -j KUBE-' | grep -v '^-A KUBE-')
    for rule in "${jumps[@]}"; do eval "$cmd -t $table ${rule/-A /-D }" 2>/dev/null; done
    chains=$("$cmd" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p')
    for chain in $chains; do "$cmd" -t "$table" -F "$chain" 2>/dev/null; done
    for chain in $chains; do "$cmd" -t "$table" -X "$chain" 2>/dev/null; done
  done
done
mapfile -t masq_rules < <(iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$NODE_CNI_NETWORK\\\"")
for rule in "${masq_rules[@]}"; do
  chain=$(sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p' <<<"$rule")
  eval "iptables -t nat ${rule/-A /-D }" 2>/dev/null
  if [ -n "$chain" ]; then
    iptables -t nat -F "$chain" 2>/dev/null
    iptables -t nat -X "$chain" 2>/dev/null
  fi
done
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link delete "$NODE_BRIDGE"

# 4. Mounts (pod volumes, container root filesystems, network namespaces), deepest first.
for dir in "$NODE_LIB_DIR" "$NODE_RUN_DIR"; do
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r mount_point; do
      umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null
    done
done

# 5. cgroups kubelet and runc created (cgroupfs driver: kubepods/... in every v1 hierarchy, or v2).
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/unified/kubepods; do
  [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} + 2>/dev/null
done

# 6. Files and the pause image.
rm -rf "$NODE_LIB_DIR" "$NODE_RUN_DIR" "$NODE_DIR"
command -v buildah >/dev/null && buildah rmi "$NODE_PAUSE_IMAGE" >/dev/null 2>&1
echo "real node $NODE_NAME removed"
exit 0
