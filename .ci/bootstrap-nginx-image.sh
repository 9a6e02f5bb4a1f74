#!/usr/bin/env bash
# CI-machine helper (see shared/reference/ci-machines.md): no container registry is reachable
# here, so the compose file's reverse proxy image (docker.io/library/nginx:1.28-bookworm) cannot
# be pulled. The stand-in is Debian bookworm's own nginx package (.ci/lib/stand-in-image.sh).
# It keeps what the compose service relies on: `nginx` on PATH (Debian's 1.22, with the proxy,
# gzip, limit_req and limit_conn modules), /etc/nginx/ as the configuration directory, curl for
# the health check.
# Usage: bash .ci/bootstrap-nginx-image.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/stand-in-image.sh
source .ci/lib/stand-in-image.sh
# shellcheck disable=SC2034  # the settings below are read by build_stand_in

NAME=nginx
IMAGE_VAR=FRAUD_PROXY_IMAGE
PACKAGES=nginx,curl,ca-certificates
RECIPE="nginx-1"
IMPORT_CHANGES=('CMD ["nginx", "-g", "daemon off;"]' 'STOPSIGNAL SIGQUIT')

customize_rootfs() {
  # Like the upstream image: the site configuration comes from the compose file's mount.
  rm -f "$1"/etc/nginx/sites-enabled/default
}

build_stand_in "$@"
