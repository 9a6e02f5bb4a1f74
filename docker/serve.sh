#!/usr/bin/env bash
# Container entrypoint (PID 1): runs BentoML's entrypoint and drains on SIGTERM.
# On SIGTERM/SIGINT it keeps serving for FRAUD_SHUTDOWN_DRAIN_S seconds (default 3) so that
# requests already on their way (accepted but not yet read, or routed just before the
# endpoint was removed) are answered, then forwards the signal: BentoML finishes in-flight
# requests and exits 0. Set FRAUD_SHUTDOWN_DRAIN_S=0 where a preStop hook already drains.
set -uo pipefail
drain="${FRAUD_SHUTDOWN_DRAIN_S:-3}"
"${BENTO_PATH}/env/docker/entrypoint.sh" "$@" &
child=$!
forward() {
  sleep "$drain"
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
