#!/usr/bin/env bash
# Container entrypoint (PID 1): runs BentoML's entrypoint and forwards SIGTERM/SIGINT to it.
# The service itself drains on SIGTERM (FRAUD_SHUTDOWN_DRAIN_S seconds, default 3: it keeps
# serving with `Connection: close` and /readyz answering 503), then finishes in-flight
# requests and exits 0. Set FRAUD_SHUTDOWN_DRAIN_S=0 where a preStop hook already drains.
set -uo pipefail
"${BENTO_PATH}/env/docker/entrypoint.sh" "$@" &
child=$!
forward() {
  kill -TERM "$child" 2>/dev/null || true
}
trap forward TERM INT
wait "$child"
status=$?
# `wait` returns early (status > 128) when a trapped signal arrives: wait for the server.
while [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done
exit "$status"
