#!/usr/bin/env bash
# CI-machine helper (see shared/reference/ci-machines.md): no container registry is reachable
# here, so the compose file's history store image (docker.io/valkey/valkey:<tag>) cannot be
# pulled, and Valkey is not packaged in Debian bookworm. Debian's redis-server 7 speaks the same
# protocol and the history store supports it (docs/history.md), so the stand-in is bookworm's
# redis-server package (.ci/lib/stand-in-image.sh). What the compose service relies on is kept:
# `valkey-server` and `valkey-cli` on PATH (symlinks to redis-server and redis-cli, which accept
# the same options), /data owned by the upstream image's valkey user (999), sh and grep for the
# health check.
# Usage: bash .ci/bootstrap-valkey-image.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/stand-in-image.sh
source .ci/lib/stand-in-image.sh
# shellcheck disable=SC2034  # the settings below are read by build_stand_in

NAME=valkey
IMAGE_VAR=FRAUD_VALKEY_IMAGE
PACKAGES=redis-server,redis-tools
# The upstream image's valkey user and group.
VALKEY_UID=999
RECIPE="valkey-1 uid-$VALKEY_UID"
IMPORT_CHANGES=('WORKDIR /data' "USER $VALKEY_UID:$VALKEY_UID" 'CMD ["valkey-server"]')

customize_rootfs() {
  ln -sf /usr/bin/redis-server "$1/usr/local/bin/valkey-server"
  ln -sf /usr/bin/redis-cli "$1/usr/local/bin/valkey-cli"
  echo "valkey:x:$VALKEY_UID:" >>"$1/etc/group"
  echo "valkey:x:$VALKEY_UID:$VALKEY_UID::/data:/usr/sbin/nologin" >>"$1/etc/passwd"
  install -d -m 0755 -o "$VALKEY_UID" -g "$VALKEY_UID" "$1/data"
}

build_stand_in "$@"
