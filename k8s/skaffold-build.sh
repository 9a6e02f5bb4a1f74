#!/usr/bin/env bash
# skaffold custom builder: build the API image through the project's own build (`make image`:
# Bento + OCI image, reused when nothing changed), then tag it as the $IMAGE skaffold asked for
# and push it when skaffold says so ($PUSH_IMAGE). skaffold sets IMAGE and PUSH_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${IMAGE:?skaffold sets IMAGE}"
make image
built=$(python3 -c "import json; print(json.load(open('build/image/build.json'))['image'])")
backend=$(python3 -c "import json; print(json.load(open('build/image/build.json'))['backend'])")
[ "$backend" = "buildah" ] && backend=podman # buildah-built images are in podman's store
"$backend" tag "$built" "$IMAGE"
if [ "${PUSH_IMAGE:-false}" = "true" ]; then
  "$backend" push "$IMAGE"
fi
