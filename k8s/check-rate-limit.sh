#!/usr/bin/env bash
# `make kind-rate-limit-check`: the per-client rate limit of the chart's Envoy Gateway policy,
# from outside the kind cluster (`make kind-up`), through the Gateway on the host's port 80:
#   1. the API answers through its HTTPRoute (200 on /livez);
#   2. one client sending LIMIT + EXTRA requests at once gets 429 beyond the limit, and at most
#      LIMIT requests (twice that if the minute's bucket refilled during the run) pass.
# Settings (environment): GATEWAY_URL (http://127.0.0.1), API_HOST (fraud-api.localhost),
# LIMIT (100, the chart's httpRoute.api.rateLimit.requestsPerMinute), EXTRA (30).
set -euo pipefail
GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1}
API_HOST=${API_HOST:-fraud-api.localhost}
LIMIT=${LIMIT:-100}
EXTRA=${EXTRA:-30}

status() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Host: $API_HOST" "$GATEWAY_URL/livez"; }

# Wait for the Gateway to route (Envoy picks up a new route within seconds); stop at the first
# 200 so that the test below starts with (almost) the whole minute's allowance.
first=""
for _ in $(seq 30); do
  first=$(status || true)
  [ "$first" = 200 ] && break
  sleep 2
done
if [ "$first" != 200 ]; then
  echo "rate-limit check: $GATEWAY_URL (Host: $API_HOST) answers $first, not 200" >&2
  exit 1
fi

ok=0 limited=0 other=0
for _ in $(seq $((LIMIT + EXTRA))); do
  case "$(status || true)" in
    200) ok=$((ok + 1)) ;;
    429) limited=$((limited + 1)) ;;
    *) other=$((other + 1)) ;;
  esac
done
echo "rate-limit check: $((LIMIT + EXTRA)) requests from one client: $ok x 200, $limited x 429, $other other"
if [ "$limited" -eq 0 ] || [ "$other" -ne 0 ] || [ "$ok" -gt $((2 * LIMIT)) ]; then
  echo "rate-limit check: FAILED (expected 429 beyond $LIMIT requests a minute, nothing else)" >&2
  exit 1
fi
echo "rate-limit check: passed"
