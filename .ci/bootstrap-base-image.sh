#!/usr/bin/env bash
# CI-machine helper (see shared/reference/ci-machines.md): no container registry is reachable
# here, so `FROM python:3.11-slim` cannot be pulled. Build a Debian bookworm + Python 3.11
# stand-in with debootstrap and tag it locally as docker.io/library/python:3.11-slim, so the
# product's unmodified Containerfile builds with podman/buildah without pulling anything.
#
# Idempotent: skips when the tag exists and was made by this version of the script; the
# debootstrapped root filesystem is cached as a tarball so re-imports take seconds.
# Usage: bash .ci/bootstrap-base-image.sh [--force]
set -euo pipefail

# The product's bentofile says python:3.11-slim-bookworm; the short tag is kept for convenience.
IMAGE_REFS=(docker.io/library/python:3.11-slim-bookworm docker.io/library/python:3.11-slim)
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${FRAUD_CI_CACHE:-/var/cache/fraud-ci}
# The python:3.11-slim essentials: Python 3.11 with venv and pip, CA certificates, tzdata,
# netbase (/etc/services, /etc/protocols). No compilers, no curl.
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,netbase,tzdata
# Bump when the root filesystem recipe below changes (it keys the cache and the image label).
RECIPE_VERSION=1

recipe_key=$(echo "$SUITE $PACKAGES $RECIPE_VERSION" | sha256sum | cut -c1-16)
rootfs_tar="$CACHE_DIR/$SUITE-python3-$recipe_key.tar"

log() { echo "[bootstrap-base-image] $*" >&2; }

if [ "$(id -u)" != "0" ]; then
  log "must run as root (debootstrap, rootful podman)"
  exit 1
fi
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { log "$tool missing: run 'make system-deps'"; exit 1; }
done

label_of() {
  podman image inspect --format '{{ index .Labels "org.fraud-ci.bootstrap" }}' "$1" 2>/dev/null ||
    true
}
if [ "${1:-}" != "--force" ]; then
  up_to_date=true
  for ref in "${IMAGE_REFS[@]}"; do
    podman image exists "$ref" || { up_to_date=false; continue; }
    current=$(label_of "$ref")
    if [ -z "$current" ] || [ "$current" = "<no value>" ]; then
      log "$ref exists and was not made by this script (a real base image?): leaving it alone"
    elif [ "$current" != "$recipe_key" ]; then
      up_to_date=false
    fi
  done
  if $up_to_date; then
    log "${IMAGE_REFS[*]} up to date (recipe $recipe_key)"
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
  # Make it look like python:3.11-slim: python/pip on /usr/local/bin, pip allowed to install
  # (PEP 668 marker removed, as in the official image), no apt lists or caches, no logs.
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip3"
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.part" .
  mv "$rootfs_tar.part" "$rootfs_tar"
fi

log "importing $rootfs_tar as ${IMAGE_REFS[*]}"
image_id=$(podman import --quiet \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --change "LABEL org.fraud-ci.bootstrap=$recipe_key" \
  --change 'LABEL org.opencontainers.image.description=CI stand-in for python:3.11-slim' \
  "$rootfs_tar")
for ref in "${IMAGE_REFS[@]}"; do
  podman tag "$image_id" "$ref"
done
podman image inspect --format '{{ .Id }} {{ .Size }} bytes' "${IMAGE_REFS[0]}" >&2
