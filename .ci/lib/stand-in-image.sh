# Shared by the .ci/bootstrap-*-image.sh scripts (sourced, not run): build a CI stand-in for a
# compose image that no registry can serve here, from Debian packages, tagged locally under the
# compose file's own reference so the unmodified docker-compose.yml runs without pulling.
#
# The calling script sets, then calls `build_stand_in "$@"`:
#   NAME           short name for logs and the cache file (nginx, valkey)
#   IMAGE_VAR      the compose variable whose default is the image (FRAUD_PROXY_IMAGE)
#   PACKAGES       comma-separated Debian packages to debootstrap
#   RECIPE         words that key the cache and the image label (bump on any recipe change)
#   IMPORT_CHANGES array of `podman import --change` values (CMD, USER, ...)
#   customize_rootfs  a function given the root filesystem directory
# Idempotent: skips when the tag exists and was made from the same recipe; the debootstrapped
# root filesystem is cached as a tarball, so re-imports take seconds. `--force` rebuilds the tag.
# shellcheck shell=bash

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${FRAUD_CI_CACHE:-/var/cache/fraud-ci}

log() { echo "[bootstrap-$NAME-image] $*" >&2; }

build_stand_in() {
  local image_ref recipe_key rootfs_tar current workdir image_id change
  image_ref=$(sed -n "s/^ *image: \${$IMAGE_VAR:-\([^}]*\)}\$/\1/p" docker-compose.yml)
  if [ -z "$image_ref" ]; then
    log "no 'image: \${$IMAGE_VAR:-...}' line in docker-compose.yml"
    exit 1
  fi
  if [ "$(id -u)" != "0" ]; then
    log "must run as root (debootstrap, rootful podman)"
    exit 1
  fi
  for tool in podman debootstrap; do
    command -v "$tool" >/dev/null || { log "$tool missing: run 'make system-deps'"; exit 1; }
  done
  recipe_key=$(echo "$SUITE $PACKAGES $RECIPE" | sha256sum | cut -c1-16)
  rootfs_tar="$CACHE_DIR/$SUITE-$NAME-$recipe_key.tar"

  if [ "${1:-}" != "--force" ] && podman image exists "$image_ref"; then
    current=$(podman image inspect --format '{{ index .Labels "org.fraud-ci.bootstrap" }}' \
      "$image_ref" 2>/dev/null || true)
    if [ -z "$current" ] || [ "$current" = "<no value>" ]; then
      log "$image_ref exists and was not made by this script (a real image?): leaving it alone"
      return 0
    fi
    if [ "$current" = "$recipe_key" ]; then
      log "$image_ref up to date (recipe $recipe_key)"
      return 0
    fi
  fi

  mkdir -p "$CACHE_DIR"
  if [ ! -s "$rootfs_tar" ]; then
    workdir=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the trap runs after this function returned
    trap "rm -rf '$workdir'" EXIT
    log "debootstrap $SUITE ($PACKAGES) from $MIRROR (about 1 minute)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$workdir/rootfs" "$MIRROR" \
      >"$workdir/debootstrap.log" 2>&1 || { tail -n 30 "$workdir/debootstrap.log" >&2; exit 1; }
    customize_rootfs "$workdir/rootfs"
    # No apt lists or caches, no logs.
    rm -rf "$workdir"/rootfs/var/lib/apt/lists/* "$workdir"/rootfs/var/cache/apt/*.bin \
      "$workdir"/rootfs/var/cache/apt/archives/*.deb "$workdir"/rootfs/var/log/*.log \
      "$workdir"/rootfs/tmp/*
    tar --numeric-owner -C "$workdir/rootfs" -cf "$rootfs_tar.part" .
    mv "$rootfs_tar.part" "$rootfs_tar"
  fi

  log "importing $rootfs_tar as $image_ref"
  local args=(--quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
  for change in "${IMPORT_CHANGES[@]}"; do
    args+=(--change "$change")
  done
  args+=(--change "LABEL org.fraud-ci.bootstrap=$recipe_key")
  args+=(--change "LABEL org.opencontainers.image.description=CI stand-in for $image_ref ($PACKAGES)")
  image_id=$(podman import "${args[@]}" "$rootfs_tar")
  podman tag "$image_id" "$image_ref"
  podman image inspect --format '{{ .Id }} {{ .Size }} bytes' "$image_ref" >&2
}
