#!/usr/bin/env bash
# `make k8s-loadtest`: run the distributed Locust Jobs (k8s/loadtest/) and bring their report home.
#   1. ConfigMap `locust-files` from loadtests/ (locustfile, payload pool, SLO file); fresh Jobs.
#   2. Wait (at most LOADTEST_TIMEOUT s) until the master has written its report, which it marks
#      with an `exit-code` file in its emptyDir, or until its Job ended without one (a crash).
#   3. `kubectl cp` the report directory (Locust's HTML and CSV files, slo.json) to
#      K8S_REPORT_DIR/locust/, then `kubectl exec` the marker the master waits for: it exits
#      with Locust's exit code, the SLO verdict, which the Job's status carries.
#   4. Master and worker logs and slo.json beside it; exit 0 only when the master Job succeeded.
# Settings (environment): NAMESPACE (fraud), K8S_LOADTEST_DIR (k8s/loadtest), LOADTEST_SLO
# (loadtests/slo/product.json), LOADTEST_TIMEOUT (1200), K8S_REPORT_DIR (reports/cluster-loadtest).
set -euo pipefail
cd "$(dirname "$0")/.."
NAMESPACE=${NAMESPACE:-fraud}
LOADTEST_DIR=${K8S_LOADTEST_DIR:-k8s/loadtest}
SLO_FILE=${LOADTEST_SLO:-loadtests/slo/product.json}
TIMEOUT_S=${LOADTEST_TIMEOUT:-1200}
REPORT_DIR=${K8S_REPORT_DIR:-reports/cluster-loadtest}
# Paths inside the master pod: keep in sync with the master Job in k8s/loadtest/locust.yaml.
POD_REPORT_DIR=/tmp/report
DONE_FILE=$POD_REPORT_DIR/exit-code
COLLECTED_MARKER=$POD_REPORT_DIR/.collected

k() { kubectl --namespace "$NAMESPACE" "$@"; }
job_field() { k get job locust-master -o jsonpath="{.status.$1}" 2>/dev/null || true; }
job_ended() { [ -n "$(job_field succeeded)$(job_field failed)" ]; }

# Server-side apply: a client-side apply keeps a copy of the object in an annotation, and the
# payload pool alone is over the annotations' 256 KiB limit (the ConfigMap's own is 1 MiB).
k create configmap locust-files --dry-run=client -o yaml \
  --from-file=locustfile.py=loadtests/locustfile.py --from-file=payloads.json=loadtests/payloads.json \
  --from-file=slo.json="$SLO_FILE" | k apply --server-side --force-conflicts -f -
k delete job --selector app.kubernetes.io/name=locust --ignore-not-found --wait
k apply -k "$LOADTEST_DIR"
rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"

# The master pod of this very Job (pods of a deleted run may still be terminating).
job_uid=$(k get job locust-master -o jsonpath='{.metadata.uid}')
master_pod() {
  k get pods --selector "batch.kubernetes.io/controller-uid=$job_uid" \
    -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true
}

deadline=$((SECONDS + TIMEOUT_S))
state=timeout
pod=""
while [ "$SECONDS" -lt "$deadline" ]; do
  pod=$(master_pod)
  if [ -n "$pod" ] && k exec "$pod" -c locust -- test -e "$DONE_FILE" 2>/dev/null; then
    state=finished
    break
  fi
  if job_ended; then
    state=ended-without-report
    break
  fi
  sleep 5
done

if [ "$state" = finished ]; then
  # kubectl cp streams a tar from the container (the Locust image has tar).
  if k cp -c locust "$pod:$POD_REPORT_DIR" "$REPORT_DIR/locust" >/dev/null; then
    echo "Locust report copied to $REPORT_DIR/locust/"
  else
    echo "k8s-loadtest: could not copy $POD_REPORT_DIR from $pod" >&2
  fi
  k exec "$pod" -c locust -- touch "$COLLECTED_MARKER" || true
  # The master exits within a second of the marker; wait (bounded) for the Job's verdict.
  for _ in $(seq 60); do
    job_ended && break
    sleep 2
  done
fi

k logs job/locust-master --tail=-1 >"$REPORT_DIR/locust-master.log" 2>&1 || true
k logs --selector app.kubernetes.io/component=worker,app.kubernetes.io/name=locust \
  --prefix --tail=200 >"$REPORT_DIR/locust-workers.log" 2>&1 || true
if [ -s "$REPORT_DIR/locust/slo.json" ]; then
  cp "$REPORT_DIR/locust/slo.json" "$REPORT_DIR/slo.json"
else # no report copied: the verdict the master printed, if it got that far
  sed -n '/^SLO verdict:/,$p' "$REPORT_DIR/locust-master.log" | tail -n +2 >"$REPORT_DIR/slo.json"
fi

if [ "$(job_field succeeded)" = 1 ]; then
  verdict=passed
elif [ -n "$(job_field failed)" ]; then
  verdict=failed
else
  verdict="$state (the Job has not finished)"
fi
tail -n 40 "$REPORT_DIR/locust-master.log"
echo "distributed load test: $verdict (report: $REPORT_DIR/)"
[ "$verdict" = passed ]
