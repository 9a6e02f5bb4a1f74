"""The chart's HPA scales real API pods on the real CPU they burn, out under load and back in.

metrics-server (a host process of ``make cluster-up``) scrapes the real node's kubelet
(``/metrics/resource``: the containers' cgroup CPU) beside the kwok nodes' simulated usage;
the HPA controller reads it through ``metrics.k8s.io``. The release keeps the chart's HPA with
a low target (20% of the 500m request) and short windows so that a client on this machine can
push it within a test's time; the scaling decisions, metrics and behaviour rules are the
chart's and Kubernetes' own. The times go to ``test-artifacts/node-autoscaling.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.node.node_support import (
    NODE_NAME,
    NodeImage,
    Release,
    SteadyLoad,
    installed_release,
    kubectl,
    kubectl_json,
    node_values,
    ready_pods,
)

pytestmark = [pytest.mark.node, pytest.mark.container, pytest.mark.timeout(1800)]

MAX_REPLICAS = 3
TARGET_PERCENT = 20
SCALE_TIMEOUT_S = 300
REPORT: dict[str, Any] = {}


@pytest.fixture(scope="module")
def release(
    image: NodeImage, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> Iterator[Release]:
    """One API pod on the real node under the chart's HPA (1 to 3 replicas)."""
    values = node_values(image)
    values["autoscaling"] = {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "targetCPUUtilizationPercentage": TARGET_PERCENT,
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 30,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            },
        },
    }
    values_dir = tmp_path_factory.mktemp("node-hpa")
    with installed_release(values, values_dir, artifacts_dir, prefix="hpa") as release:
        yield release


def hpa(release: Release) -> dict[str, Any]:
    """The release's HorizontalPodAutoscaler."""
    (found,) = kubectl_json("hpa", "--namespace", release.namespace)["items"]
    return found


def cpu_utilisation(status: dict[str, Any]) -> int | None:
    """The HPA's current average CPU utilisation (% of requests), None until it has one."""
    for metric in status.get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if resource.get("name") == "cpu":
            value = resource.get("current", {}).get("averageUtilization")
            return int(value) if value is not None else None
    return None


def wait_until(condition: Any, what: str, timeout: float = SCALE_TIMEOUT_S) -> float:
    """Poll ``condition()`` every 2 s; return the seconds it took (fail after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(2)
    return time.monotonic() - started


def metrics(path: str) -> dict[str, Any] | None:
    """A ``metrics.k8s.io`` document (None while metrics-server has none)."""
    text = kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/{path}", check=False)
    return json.loads(text) if text.strip() else None


def api_pod_metrics(release: Release) -> list[dict[str, Any]]:
    """The measured usage of the release's pods."""
    found = metrics(f"namespaces/{release.namespace}/pods")
    return list(found["items"]) if found else []


def test_metrics_server_reads_the_real_node(release: Release) -> None:
    """``metrics.k8s.io`` has the real node's and the API pod's measured CPU and memory."""
    node_s = wait_until(lambda: metrics(f"nodes/{NODE_NAME}") is not None, "node metrics", 120)
    pod_s = wait_until(lambda: bool(api_pod_metrics(release)), "metrics of the API pod", 180)
    node = metrics(f"nodes/{NODE_NAME}")
    assert node is not None and node["usage"]["cpu"] and node["usage"]["memory"], node
    (pod,) = api_pod_metrics(release)
    (container,) = [c for c in pod["containers"] if c["name"] == "api"]
    assert container["usage"]["memory"].endswith(("Ki", "Mi")), container
    REPORT["metrics_available_s"] = {"node": round(node_s, 1), "pod": round(pod_s, 1)}


def test_the_hpa_scales_out_under_load_and_back_in(release: Release, artifacts_dir: Path) -> None:
    wait_until(lambda: cpu_utilisation(hpa(release)["status"]) is not None, "an idle reading")
    idle = cpu_utilisation(hpa(release)["status"])
    assert idle is not None and idle < TARGET_PERCENT, hpa(release)["status"]
    with SteadyLoad(release.cluster_url, retries=1, clients=4) as load:
        out_s = wait_until(lambda: len(ready_pods(release)) >= 2, "a second Ready API pod")
        busy = hpa(release)["status"]
    REPORT["scale_out"] = {
        "seconds": round(out_s, 1),
        "cpu_percent_of_request": cpu_utilisation(busy),
        "desired_replicas": busy.get("desiredReplicas"),
        "load": load.summary(out_s),
    }
    in_s = wait_until(
        lambda: (
            hpa(release)["status"].get("desiredReplicas") == 1 and len(ready_pods(release)) == 1
        ),
        "back to one API pod",
    )
    REPORT["scale_in_seconds"] = round(in_s, 1)
    (artifacts_dir / "node-autoscaling.json").write_text(json.dumps(REPORT, indent=2) + "\n")
    assert load.failed == 0, REPORT
