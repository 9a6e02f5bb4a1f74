#!/usr/bin/env bash
# CI-machine container settings (see shared/reference/ci-machines.md): the default crun runtime
# fails on these hosts' hybrid cgroups, and the runtime may not raise RLIMIT_NOFILE. Written as
# a containers.conf drop-in so podman/buildah pick it up; nothing in the product depends on it.
# TLS to the package registries goes through an intercepting proxy whose CA only the host
# trusts: the host bundle is bind-mounted (read-only) into every container, build steps included.
set -euo pipefail
[ "$(id -u)" = "0" ] || exit 0
mkdir -p /etc/containers/containers.conf.d
cat >/etc/containers/containers.conf.d/50-ci-machine.conf <<'CONF'
[engine]
runtime = "runc"

[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
volumes = ["/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]
CONF
