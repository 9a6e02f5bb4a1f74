"""Disruptions under steady load on the real node: a rolling upgrade, evictions, a killed pod.

Two API replicas run on the real node; a client on this machine scores transactions through
the Service's ClusterIP without pause (a new connection per request, so kube-proxy picks an
endpoint each time, as independent payment clients would):

* ``helm upgrade`` with a new pod annotation replaces both pods (maxSurge 1, maxUnavailable
  0) while the load runs: no request may fail, not even once before a retry. Readiness keeps
  a new pod out of the Service until it scores, preStop keeps an old one serving until
  kube-proxy has dropped it, and SIGTERM drains what it holds.
* The PodDisruptionBudget (maxUnavailable 1) lets the eviction API take one pod and refuses a
  second while the first's replacement is not Ready.
* A pod crashed under load (its container SIGKILLed through containerd: no preStop, no
  drain), then force-deleted: the Deployment replaces it; the client sees failed attempts
  (requests in flight on the dead pod and connections routed to it before kube-proxy drops
  it), all absorbed by a payment client's retries with back-off.

The counts go to ``test-artifacts/node-disruptions.json``.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.node.node_support import (
    API_SELECTOR,
    KUBECTL,
    NODE_CONTAINERD_SOCKET,
    ROLLOUT_TIMEOUT_S,
    NodeImage,
    Release,
    SteadyLoad,
    helm_deploy,
    installed_release,
    kubectl,
    kubectl_json,
    node_values,
    ready_pods,
)

pytestmark = [pytest.mark.node, pytest.mark.container, pytest.mark.timeout(1800)]

REPLICAS = 2
#: A payment client's retries (with back-off) after a failed attempt, for the pod kill.
RETRIES = 3
REPORT: dict[str, Any] = {}


@pytest.fixture(scope="module")
def values(image: NodeImage) -> dict[str, Any]:
    """Two API replicas on the real node; the chart's defaults for strategy, probes and PDB."""
    return node_values(image, replicaCount=REPLICAS)


@pytest.fixture(scope="module")
def release(
    values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> Iterator[Release]:
    """The release the disruptions act on; the report is written when the module ends."""
    values_dir = tmp_path_factory.mktemp("node-rollout")
    with installed_release(values, values_dir, artifacts_dir, prefix="roll") as release:
        yield release
    (artifacts_dir / "node-disruptions.json").write_text(json.dumps(REPORT, indent=2) + "\n")


def wait_for_replicas(release: Release, excluded: set[str]) -> list[str]:
    """Wait until :data:`REPLICAS` Ready pods run, none of them in ``excluded``."""
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    while True:
        names = ready_pods(release)
        if len(names) == REPLICAS and not set(names) & excluded:
            return names
        assert time.monotonic() < deadline, f"no {REPLICAS} fresh Ready pods: {names}"
        time.sleep(1)


def evict(release: Release, pod: str) -> subprocess.CompletedProcess[str]:
    """Ask the eviction API (which honours PodDisruptionBudgets) to evict ``pod``."""
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": release.namespace},
    }
    return subprocess.run(
        [
            *KUBECTL,
            *("create", "--raw", f"/api/v1/namespaces/{release.namespace}/pods/{pod}/eviction"),
            *("-f", "-"),
        ],
        input=json.dumps(eviction),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_for_disruptions_allowed(release: Release, allowed: int) -> None:
    """Wait until the disruption controller has counted the healthy pods into the PDB."""
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    selector = f"app.kubernetes.io/instance={release.name},{API_SELECTOR}"
    while True:
        (pdb,) = kubectl_json(
            "poddisruptionbudgets", "--namespace", release.namespace, "--selector", selector
        )["items"]
        if pdb.get("status", {}).get("disruptionsAllowed") == allowed:
            return
        assert time.monotonic() < deadline, pdb.get("status")
        time.sleep(1)


def test_rolling_upgrade_under_load_loses_no_request(
    release: Release, values: dict[str, Any], tmp_path: Path
) -> None:
    before = set(wait_for_replicas(release, set()))
    upgraded = {**values, "api": {**values["api"], "podAnnotations": {"rollout": uuid.uuid4().hex}}}
    started = time.monotonic()
    with SteadyLoad(release.cluster_url, retries=0, clients=3) as load:
        time.sleep(3)  # traffic before the rollout starts
        done = helm_deploy("upgrade", release.name, upgraded, tmp_path)
        after = wait_for_replicas(release, before)
        time.sleep(3)  # and after it: the new pods carry the whole load
    REPORT["rolling_upgrade"] = load.summary(time.monotonic() - started)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not set(after) & before, (before, after)
    assert load.requests["ok"] > 100, REPORT["rolling_upgrade"]
    assert load.failed_attempts == 0, REPORT["rolling_upgrade"]


def test_the_disruption_budget_allows_one_eviction_at_a_time(release: Release) -> None:
    first, second = wait_for_replicas(release, set())
    wait_for_disruptions_allowed(release, 1)
    allowed = evict(release, first)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    refused = evict(release, second)
    REPORT["second_eviction"] = refused.stderr.strip()
    assert refused.returncode != 0, refused.stdout
    assert "disruption budget" in refused.stderr, refused.stderr
    wait_for_replicas(release, {first})


def kill_container(release: Release, pod: str) -> None:
    """SIGKILL the API container's processes through the node's containerd (a crash: no
    preStop, no drain, connections reset)."""
    status = kubectl_json("pod", "--namespace", release.namespace, pod)["status"]
    (container,) = status["containerStatuses"]
    container_id = container["containerID"].removeprefix("containerd://")
    done = subprocess.run(
        [
            *("ctr", "--address", str(NODE_CONTAINERD_SOCKET), "--namespace", "k8s.io"),
            *("tasks", "kill", "--signal", "SIGKILL", container_id),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_killed_pod_is_replaced_and_retries_absorb_the_errors(release: Release) -> None:
    victim, survivor = wait_for_replicas(release, set())
    started = time.monotonic()
    with SteadyLoad(release.cluster_url, retries=RETRIES, clients=3) as load:
        time.sleep(3)
        kill_container(release, victim)
        kubectl(
            *("delete", "pod", "--namespace", release.namespace, victim),
            *("--grace-period=0", "--force", "--wait=false"),
        )
        replaced = wait_for_replicas(release, {victim})
        time.sleep(3)
    REPORT["pod_kill"] = {
        **load.summary(time.monotonic() - started),
        "retry_policy": f"up to {RETRIES} retries, back-off from {load.backoff_s} s doubling",
    }
    assert survivor in replaced, replaced
    assert load.requests["ok"] > 100, REPORT["pod_kill"]
    assert load.failed_attempts > 0, "the kill reset nothing: was the container killed?"
    assert load.failed == 0, REPORT["pod_kill"]
