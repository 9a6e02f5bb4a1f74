#!/usr/bin/env bash
# Side-load local podman/buildah images into the real node's containerd (no registry to pull from):
#   cluster/node-image.sh localhost/fraud-scoring:1.2.3 [IMAGE...]
# Pods then run them under the same name with imagePullPolicy Never or IfNotPresent (podman names
# local images localhost/NAME:TAG, so the chart's repository is localhost/NAME).
# An image already imported from the same podman image ID is skipped.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

[ "$#" -gt 0 ] || {
  echo "usage: $0 IMAGE [IMAGE...]" >&2
  exit 2
}
[ -S "$NODE_CONTAINERD_SOCKET" ] || {
  echo "node-image: the real node's containerd is not running ($NODE_CONTAINERD_SOCKET): make cluster-up" >&2
  exit 1
}
ctr_() { ctr --address "$NODE_CONTAINERD_SOCKET" --namespace k8s.io "$@"; }
id_label="fraud-detection.dev/podman-image-id"
for image in "$@"; do
  # The canonical name podman stores: localhost/NAME:TAG for a bare local name.
  name=$image
  [[ "${name%%/*}" == *[.:]* || "${name%%/*}" == localhost ]] && [[ "$name" == */* ]] || name="localhost/$name"
  [[ "${name##*/}" == *:* ]] || name="$name:latest"
  id=$(podman image inspect --format '{{.Id}}' "$name") || {
    echo "node-image: no local image $name" >&2
    exit 1
  }
  if ctr_ images ls "name==$name" 2>/dev/null | grep -qF "$id_label=$id"; then
    echo "$name already on the node"
    continue
  fi
  archive=$(mktemp --suffix .tar)
  # docker-archive keeps the name in its RepoTags, which `ctr images import` applies.
  podman save --quiet --format docker-archive -o "$archive" "$name"
  ctr_ images import "$archive" >/dev/null
  rm -f "$archive"
  ctr_ images label "$name" "$id_label=$id" >/dev/null
  echo "$name imported into the node's containerd"
done
