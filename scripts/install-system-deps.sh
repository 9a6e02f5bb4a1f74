#!/usr/bin/env bash
# Install what the full test suite needs beyond Python packages, idempotently:
#   Debian packages (containers, browser, base-image bootstrap) when running as root on Debian,
#   Go >= the version cluster/components/go.mod needs (the pinned toolchain into .tools/go from
#   the Go module proxy when none is on PATH), and Go tools (helm, kubeconform, helm-docs,
#   actionlint) into .tools/bin with `go install`, and make bench's overload client
#   (loadtests/phased_attack) with `go build`.
# Elsewhere it prints what is missing; tests then skip locally. Under CI=true a missing Go fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tool-versions.env
source scripts/tool-versions.env

DEBIAN_PACKAGES=(podman buildah runc debootstrap uidmap slirp4netns fuse-overlayfs
  chromium fonts-dejavu-core ca-certificates
  # Service-name DNS between compose containers on podman's CNI networks (Debian 12's podman 4.3).
  golang-github-containernetworking-plugin-dnsname
  # actionlint (make lint) checks workflow `run:` scripts with shellcheck, as on GitHub's runners.
  shellcheck
  # A Redis 7 server for the history store's compatibility test (the service speaks to both).
  redis-server
  # The real node of `make cluster-up` (cluster/node-up.sh): container runtime, pod network,
  # Service routing, and a C compiler for the locally built pause image.
  containerd containernetworking-plugins iptables iproute2 openssl gcc libc6-dev)

missing_packages() {
  local pkg
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

if command -v dpkg-query >/dev/null && [ -r /etc/debian_version ]; then
  mapfile -t missing < <(missing_packages)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
      echo "installing Debian packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "missing Debian packages (install as root): apt-get install ${missing[*]}" >&2
    fi
  fi
else
  echo "not Debian: install podman, buildah, runc and chromium with your package manager" >&2
fi

# ---- Go toolchain ---------------------------------------------------------------------------
# The control plane (cluster/build.sh) needs the Go of cluster/components/go.mod's `go` line;
# the Go tools below build with it too. .tools/bin (where install_go.py links go) comes first.
export GOBIN="$PWD/.tools/bin"
export PATH="$GOBIN:$PATH"
mkdir -p "$GOBIN"
go_required=$(sed -n 's/^go \([0-9][0-9.]*\)$/\1/p' cluster/components/go.mod)
version_at_least() { # have want: is version `have` >= `want`?
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}
go_version() { go env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p'; }
have_go=""
command -v go >/dev/null && have_go=$(go_version)
if [ -z "$have_go" ] || ! version_at_least "$have_go" "$go_required"; then
  echo "Go >= $go_required not found (${have_go:+found go$have_go}${have_go:-no go on PATH}):" \
    "installing go$GO_VERSION into .tools/go from the Go module proxy"
  if python3 scripts/install_go.py >/dev/null; then
    have_go=$(go_version)
  else
    message="Go >= $go_required is required (cluster/build.sh, the Go tools); install it from https://go.dev/dl"
    if [ "${CI:-}" = "true" ]; then
      echo "system-deps: $message (CI=true)" >&2
      exit 1
    fi
    echo "system-deps: $message; skipping helm, kubeconform, helm-docs, actionlint and phased-attack" >&2
    exit 0
  fi
fi
echo "go$have_go ($(command -v go))"

# ---- Go tools -------------------------------------------------------------------------------
install_go_tool() { # name module@version [go install flags...]
  local name=$1 module=$2
  shift 2
  local stamp="$module $*"
  if [ -x "$GOBIN/$name" ] && [ "$(cat "$GOBIN/.$name.version" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "go install $module"
  go install "$@" "$module" 2>&1 | grep -v '^go: downloading' || true
  [ -x "$GOBIN/$name" ] || { echo "failed to install $name" >&2; exit 1; }
  echo "$stamp" >"$GOBIN/.$name.version"
}
# helm's own Makefile sets these: without them `helm version` is empty and the default
# Kubernetes version that `helm template`/`helm lint` assume is an old one.
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${HELM_K8S_MINOR}"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${HELM_K8S_MINOR}"
install_go_tool helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" -ldflags "$helm_ldflags"
install_go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}"
install_go_tool helm-docs "github.com/norwoodj/helm-docs/cmd/helm-docs@${HELM_DOCS_VERSION}"
install_go_tool actionlint "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}"
# make bench's overload client: this repository's own Go module (vegeta's library, pinned in
# its go.mod/go.sum), rebuilt when its sources change.
build_local_tool() { # name module-dir
  local name=$1 dir=$2 stamp
  stamp=$(cat "$dir"/*.go "$dir"/go.mod "$dir"/go.sum | sha256sum | cut -d' ' -f1)
  if [ -x "$GOBIN/$name" ] && [ "$(cat "$GOBIN/.$name.version" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "go build $dir"
  (cd "$dir" && go build -trimpath -o "$GOBIN/$name" .) 2>&1 | grep -v '^go: downloading' || true
  [ -x "$GOBIN/$name" ] || { echo "failed to build $name" >&2; exit 1; }
  echo "$stamp" >"$GOBIN/.$name.version"
}
build_local_tool phased-attack loadtests/phased_attack
