#!/usr/bin/env bash
# CI-machine helper (see shared/reference/ci-machines.md): no container registry is reachable
# here, so the image of the k8s/loadtest Jobs (docker.io/locustio/locust:<tag>) cannot be pulled.
# The stand-in is the local python:3.11-slim stand-in (.ci/bootstrap-base-image.sh) with the same
# Locust version from PyPI (TLS through the host CA bundle that .ci/configure-containers.sh
# mounts into builds). What the Jobs rely on is kept: `locust` as the entrypoint and on PATH, a
# sh, UID 1000 (the upstream image's user) with a home directory.
# Usage: bash .ci/bootstrap-locust-image.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(grep -o 'locustio/locust:[0-9][0-9.]*' k8s/loadtest/locust.yaml | head -1 | cut -d: -f2)
[ -n "$version" ] || {
  echo "bootstrap-locust-image: no locustio/locust:<version> in k8s/loadtest/locust.yaml" >&2
  exit 1
}
image="docker.io/locustio/locust:$version"
if [ "${1:-}" != --force ] && podman image exists "$image"; then
  echo "[bootstrap-locust-image] $image exists"
  exit 0
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cat >"$context/Containerfile" <<CONTAINERFILE
FROM docker.io/library/python:3.11-slim
RUN pip install --no-cache-dir --disable-pip-version-check "locust==$version" \
    && useradd --uid 1000 --user-group --create-home --home-dir /home/locust locust
USER 1000
WORKDIR /home/locust
ENTRYPOINT ["locust"]
CONTAINERFILE
echo "[bootstrap-locust-image] building $image (pip install locust==$version)"
podman build --quiet --tag "$image" "$context"
