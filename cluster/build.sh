#!/usr/bin/env bash
# Build (or reuse) the control-plane binaries pinned in cluster/versions.env into .tools/cluster/bin:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (kwokctl shells out to it;
#   from cluster/components/go.mod), kwok, kwokctl (go install of sigs.k8s.io/kwok), metrics-server
#   (go install of sigs.k8s.io/metrics-server: serves metrics.k8s.io from kwok's simulated usage), and for
#   the real node beside the kwok nodes: kubelet and kube-proxy (same module and version as the control
#   plane) and CoreDNS (go install of github.com/coredns/coredns).
# The Go module cache (~/go/pkg/mod) and build cache (~/.cache/go-build) stay in their default places,
# so a second build on the same machine is fast; a stamp file skips even the link step when nothing
# changed. Builds run under `nice -n 19` with limited parallelism: the machine's cores are shared.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=versions.env
source cluster/versions.env

BIN_DIR="${CLUSTER_BIN_DIR:-$PWD/.tools/cluster/bin}"
GO_PARALLEL="${CLUSTER_GO_PARALLEL:-2}"
mkdir -p "$BIN_DIR"
# `make system-deps` links the pinned Go into .tools/bin when the machine has none new enough.
export PATH="$PWD/.tools/bin:$PATH"
go_required=$(sed -n 's/^go \([0-9][0-9.]*\)$/\1/p' cluster/components/go.mod)
command -v go >/dev/null || {
  echo "go not found: the control plane is built with Go >= $go_required; run 'make system-deps'" >&2
  exit 1
}
go_have=$(go env GOVERSION | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p')
if [ "$(printf '%s\n%s\n' "$go_required" "$go_have" | sort -V | head -n 1)" != "$go_required" ]; then
  echo "go$go_have is too old: cluster/components/go.mod needs Go >= $go_required; run 'make system-deps'" >&2
  exit 1
fi

binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl metrics-server
  kubelet kube-proxy coredns)
stamp_value=$(cat cluster/versions.env cluster/components/go.mod cluster/components/go.sum cluster/build.sh |
  sha256sum | cut -d' ' -f1)-$(go env GOVERSION)
stamp_file="$BIN_DIR/.build-stamp"
all_present() {
  local b
  for b in "${binaries[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}
if all_present && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_value" ]; then
  echo "control-plane binaries up to date in $BIN_DIR"
  exit 0
fi
rm -f "$stamp_file"

export CGO_ENABLED=0 # static server binaries, as upstream releases them; also skips cgo compiles
go_build=(nice -n 19 go build -p "$GO_PARALLEL" -trimpath)

# Version ldflags: without them the binaries report v0.0.0 and kwokctl/clients mis-detect the version.
kube_minor=${KUBE_VERSION#v1.}
kube_minor=${kube_minor%%.*}
build_date=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=${KUBE_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${kube_minor}"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date}"
done

start=$(date +%s)
echo "building Kubernetes ${KUBE_VERSION} control plane, kubelet, kube-proxy + etcd ${ETCD_VERSION} into $BIN_DIR (-p $GO_PARALLEL)"
(
  cd cluster/components
  "${go_build[@]}" -ldflags "$ldflags" -o "$BIN_DIR/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy
  "${go_build[@]}" -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
)
echo "building kwok ${KWOK_VERSION}"
GOBIN="$BIN_DIR" nice -n 19 go install -p "$GO_PARALLEL" -trimpath -ldflags "-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
echo "building metrics-server ${METRICS_SERVER_VERSION}"
# Its own module (k8s.io/* at the versions metrics-server pins), built as upstream's Makefile does:
# the version ldflags make `metrics-server --version` print the release, which kwokctl parses.
ms_ldflags="-s -w -X k8s.io/client-go/pkg/version.gitVersion=${METRICS_SERVER_VERSION}"
ms_ldflags+=" -X k8s.io/client-go/pkg/version.buildDate=${build_date}"
GOBIN="$BIN_DIR" nice -n 19 go install -p "$GO_PARALLEL" -trimpath -ldflags "$ms_ldflags" \
  "sigs.k8s.io/metrics-server/cmd/metrics-server@${METRICS_SERVER_VERSION}"

echo "building CoreDNS ${COREDNS_VERSION}"
# Cluster DNS for the real node's pods, run as a host process (its go.mod has no replace directives).
GOBIN="$BIN_DIR" nice -n 19 go install -p "$GO_PARALLEL" -trimpath -ldflags "-s -w" \
  "github.com/coredns/coredns@${COREDNS_VERSION}"

all_present
echo "$stamp_value" >"$stamp_file"
echo "control-plane binaries built in $(($(date +%s) - start))s"
