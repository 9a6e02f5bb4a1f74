#!/usr/bin/env bash
# CI-machine helper (see shared/reference/ci-machines.md): no container registry is reachable
# here, so the compose file's history store image (docker.io/valkey/valkey:<tag>) cannot be
# pulled, and Valkey is not packaged in Debian bookworm. Debian's redis-server 7 speaks the same
# protocol and the history store supports it (docs/history.md), so the stand-in is bookworm's
# redis-server package, debootstrapped and tagged locally under the compose file's reference:
# the unmodified docker-compose.yml then runs with podman-compose without pulling anything.
# What the compose service relies on is kept: `valkey-server` and `valkey-cli` on PATH
# (symlinks to redis-server and redis-cli, which accept the same options), /data owned by the
# upstream image's valkey user (999), sh and grep for the health check.
#
# Idempotent: skips when the tag exists and was made by this version of the script; the
# debootstrapped root filesystem is cached as a tarball so re-imports take seconds.
# Usage: bash .ci/bootstrap-valkey-image.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

# The reference docker-compose.yml's valkey service defaults to (FRAUD_VALKEY_IMAGE).
# shellcheck disable=SC2016  # the pattern matches a literal ${...} of the compose file
IMAGE_REF=$(sed -n 's/^ *image: \${FRAUD_VALKEY_IMAGE:-\([^}]*\)}$/\1/p' docker-compose.yml)
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${FRAUD_CI_CACHE:-/var/cache/fraud-ci}
PACKAGES=redis-server,redis-tools
# The upstream image's valkey user and group.
VALKEY_UID=999
# Bump when the root filesystem recipe below changes (it keys the cache and the image label).
RECIPE_VERSION=1

log() { echo "[bootstrap-valkey-image] $*" >&2; }

if [ -z "$IMAGE_REF" ]; then
  log "no 'image: \${FRAUD_VALKEY_IMAGE:-...}' line in docker-compose.yml"
  exit 1
fi
if [ "$(id -u)" != "0" ]; then
  log "must run as root (debootstrap, rootful podman)"
  exit 1
fi
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { log "$tool missing: run 'make system-deps'"; exit 1; }
done

recipe_key=$(echo "$SUITE $PACKAGES $VALKEY_UID $RECIPE_VERSION" | sha256sum | cut -c1-16)
rootfs_tar="$CACHE_DIR/$SUITE-valkey-$recipe_key.tar"

if [ "${1:-}" != "--force" ] && podman image exists "$IMAGE_REF"; then
  current=$(podman image inspect --format '{{ index .Labels "org.fraud-ci.bootstrap" }}' \
    "$IMAGE_REF" 2>/dev/null || true)
  if [ -z "$current" ] || [ "$current" = "<no value>" ]; then
    log "$IMAGE_REF exists and was not made by this script (a real image?): leaving it alone"
    exit 0
  fi
  if [ "$current" = "$recipe_key" ]; then
    log "$IMAGE_REF up to date (recipe $recipe_key)"
    exit 0
  fi
fi

mkdir -p "$CACHE_DIR"
if [ ! -s "$rootfs_tar" ]; then
  workdir=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$workdir"' EXIT
  log "debootstrap $SUITE ($PACKAGES) from $MIRROR (about 1 minute)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$workdir/rootfs" "$MIRROR" \
    >"$workdir/debootstrap.log" 2>&1 || { tail -n 30 "$workdir/debootstrap.log" >&2; exit 1; }
  rootfs="$workdir/rootfs"
  # The upstream image's names for the same programs; its data directory and user.
  ln -sf /usr/bin/redis-server "$rootfs/usr/local/bin/valkey-server"
  ln -sf /usr/bin/redis-cli "$rootfs/usr/local/bin/valkey-cli"
  echo "valkey:x:$VALKEY_UID:" >>"$rootfs/etc/group"
  echo "valkey:x:$VALKEY_UID:$VALKEY_UID::/data:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
  install -d -m 0755 -o "$VALKEY_UID" -g "$VALKEY_UID" "$rootfs/data"
  # No apt lists or caches, no logs.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.part" .
  mv "$rootfs_tar.part" "$rootfs_tar"
fi

log "importing $rootfs_tar as $IMAGE_REF"
image_id=$(podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'WORKDIR /data' \
  --change 'USER 999:999' \
  --change 'CMD ["valkey-server"]' \
  --change "LABEL org.fraud-ci.bootstrap=$recipe_key" \
  --change "LABEL org.opencontainers.image.description=CI stand-in for $IMAGE_REF (Debian's redis-server 7)" \
  "$rootfs_tar")
podman tag "$image_id" "$IMAGE_REF"
podman image inspect --format '{{ .Id }} {{ .Size }} bytes' "$IMAGE_REF" >&2
