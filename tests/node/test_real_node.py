"""The chart on the real node: real containers, real probes, real Service routes.

``make cluster-up`` starts one real node beside the kwok nodes (``cluster/node-up.sh``: kubelet,
containerd, runc, a bridge CNI, kube-proxy and CoreDNS on this machine). This module builds the
API and UI images from the working tree (or reuses identical ones), side-loads them into the
node's containerd, installs the chart with its default values except what puts the pods there
(nodeSelector + toleration, the images under their local names, ``pullPolicy: Never``; one API
replica, no HPA: no metrics-server), waits until the pods are Ready (kubelet ran the
startup and readiness probes against the process), then asks ``/readyz`` and scores one
transaction through the Service, both by its ClusterIP (kube-proxy's rules on this machine) and by
``kubectl port-forward`` (kube-apiserver to kubelet with a client certificate, kubelet's webhook
authorisation). The UI serves its page through its Service and reaches the API at the address
the chart gave it. It also checks that kubelet refuses anonymous and unauthorised clients.

Needs root, ``make system-deps`` and ``make cluster-up``; ``make test-node`` does both steps.
Without them it skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fraud_contract.api import READY_PATH, SCORE_PATH
from fraud_contract.schema import example_transaction
from testkit.net import free_port
from testkit.tools import require_tool
from tests.node.node_support import (
    API_KEY,
    HTTP_DEADLINE_S,
    KUBECONFIG,
    KUBECTL,
    NODE_DIR,
    NODE_NAME,
    NodeImage,
    Release,
    http,
    installed_release,
    kubectl,
    kubectl_json,
    node_values,
)

pytestmark = [pytest.mark.node, pytest.mark.container, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def release(
    image: NodeImage, ui_image: str, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> Iterator[Release]:
    """The chart installed with its API and UI on the real node, rolled out; uninstalled
    afterwards."""
    values_dir = tmp_path_factory.mktemp("node-release")
    values = node_values(image, ui_image=ui_image)
    with installed_release(values, values_dir, artifacts_dir) as release:
        yield release


# ---- tests ---------------------------------------------------------------------------------------
def test_api_pod_runs_on_the_real_node_and_is_ready(release: Release, image: NodeImage) -> None:
    """The API pod ran on the real node from the side-loaded image and passed its probes."""
    assert len(release.pods) == 1, [p["metadata"]["name"] for p in release.pods]
    pod = release.pods[0]
    assert pod["spec"]["nodeName"] == NODE_NAME
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions.get("Ready") == "True", pod["status"]["conditions"]
    (status,) = pod["status"]["containerStatuses"]
    # Set by kubelet only after the startup probe, then the readiness probe, got 200 from /readyz.
    assert status["started"] is True and status["ready"] is True, status
    assert status["restartCount"] == 0, status
    assert "running" in status["state"], status["state"]
    assert status["image"].endswith(image.ref), (status["image"], image.ref)
    assert pod["status"]["podIP"].startswith("10.244."), pod["status"]  # the bridge CNI's range
    # The container's stdout came back through kube-apiserver -> kubelet (client certificate).
    logs = kubectl("logs", "--namespace", release.namespace, pod["metadata"]["name"])
    assert "fraud_scoring" in logs, logs[-2000:]


def test_readyz_and_score_through_the_cluster_ip(release: Release, image: NodeImage) -> None:
    """``/readyz`` and one ``POST /v1/score`` through the Service's ClusterIP (kube-proxy)."""
    status, _ = http("GET", release.cluster_url + READY_PATH)
    assert status == 200
    status, body = http(
        "POST", release.cluster_url + SCORE_PATH, example_transaction(), {"X-API-Key": API_KEY}
    )
    assert status == 200, body
    assert 0.0 <= body["fraud_probability"] <= 1.0, body
    assert body["model_tag"] == image.model_tag, body  # the model baked into this image
    status, body = http("POST", release.cluster_url + SCORE_PATH, example_transaction())
    assert status == 401, body  # the chart's auth is on: no key, no score


def test_helm_test_passes_on_the_real_node(release: Release) -> None:
    """The chart's own ``helm test`` pod scores a transaction through the Service."""
    helm = require_tool("helm", "make system-deps")
    done = subprocess.run(
        [
            *(helm, "--kubeconfig", str(KUBECONFIG), "--namespace", release.namespace),
            *("test", release.name, "--timeout", "180s"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    pod = f"{release.name}-fraud-detection-test-score"
    assert done.returncode == 0, (
        f"helm test failed:\n{done.stdout}{done.stderr}\n"
        + kubectl("logs", "--namespace", release.namespace, pod, check=False)[-3000:]
        + kubectl("describe", "pod", "--namespace", release.namespace, pod, check=False)[-3000:]
    )
    assert re.search(r"Phase:\s+Succeeded", done.stdout), done.stdout


def test_readyz_and_score_through_port_forward(release: Release, image: NodeImage) -> None:
    """The same through ``kubectl port-forward svc/...`` (kube-apiserver -> kubelet -> pod)."""
    local_port = free_port()
    forward = subprocess.Popen(
        [
            *KUBECTL,
            *("port-forward", "--namespace", release.namespace),
            *(f"service/{release.service['metadata']['name']}", f"{local_port}:3000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{local_port}"
        status, _ = http("GET", url + READY_PATH)
        assert status == 200
        status, body = http("POST", url + SCORE_PATH, example_transaction(), {"X-API-Key": API_KEY})
        assert status == 200, body
        assert body["model_tag"] == image.model_tag, body
    finally:
        forward.terminate()
        output, _ = forward.communicate(timeout=30)
    assert "Forwarding from" in output, output


#: Run inside the API container: the Service's name through cluster DNS, then /readyz through it.
IN_POD_CHECK = """
import socket, sys, urllib.request
name, port = sys.argv[1], sys.argv[2]
print(socket.gethostbyname(name))
with urllib.request.urlopen(f"http://{name}:{port}/readyz", timeout=10) as response:
    print(response.status)
"""


def test_pods_resolve_and_reach_the_service_by_name(release: Release) -> None:
    """From inside the pod (``kubectl exec``): CoreDNS, behind the kube-dns Service, resolves the
    API Service's name to its ClusterIP, and the pod reaches itself through it (hairpin)."""
    service = release.service["metadata"]["name"]
    fqdn = f"{service}.{release.namespace}.svc.cluster.local"
    port = str(release.service["spec"]["ports"][0]["port"])
    deadline = time.monotonic() + HTTP_DEADLINE_S
    while True:
        done = subprocess.run(
            [
                *(*KUBECTL, "exec", "--namespace", release.namespace, f"service/{service}"),
                *("--", "python", "-c", IN_POD_CHECK, fqdn, port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)  # the pod's first lookups can race kube-proxy's kube-dns rules
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == [release.service["spec"]["clusterIP"], "200"], done.stdout


def _kubelet_status(cert: tuple[str, str] | None) -> int:
    """HTTP status of kubelet's ``/pods`` for a client with ``cert`` (None: anonymous)."""
    context = ssl.create_default_context(cafile=None)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # kubelet's serving certificate is not under test here
    if cert is not None:
        context.load_cert_chain(*cert)
    try:
        with urllib.request.urlopen("https://127.0.0.1:10250/pods", timeout=10, context=context):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def test_kubelet_authenticates_and_authorises(real_node: dict[str, Any]) -> None:
    """kubelet is not AlwaysAllow: anonymous gets 401; kube-proxy's identity (known, but without
    nodes/proxy rights) gets 403 from the webhook authoriser."""
    assert _kubelet_status(None) == 401
    proxy_cert = (
        str(NODE_DIR / "pki" / "kube-proxy.crt"),
        str(NODE_DIR / "pki" / "kube-proxy.key"),
    )
    assert _kubelet_status(proxy_cert) == 403


#: Run inside the UI container: the API's /readyz at the URL the chart gave the UI.
UI_REACHES_API = """
import os, urllib.request
with urllib.request.urlopen(os.environ["FRAUD_UI_API_URL"] + "/readyz", timeout=10) as answer:
    print(answer.status)
"""


def test_the_ui_pod_is_ready_and_reaches_the_api(release: Release, ui_image: str) -> None:
    """The UI pod ran on the real node, passed its probes, serves its page through its
    Service and reaches the API at the address the chart configured."""
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=ui"
    (pod,) = kubectl_json("pods", "--namespace", release.namespace, "--selector", selector)["items"]
    assert pod["spec"]["nodeName"] == NODE_NAME
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True and status["restartCount"] == 0, status
    assert status["image"].endswith(ui_image), (status["image"], ui_image)
    (service,) = kubectl_json("services", "--namespace", release.namespace, "--selector", selector)[
        "items"
    ]
    port = service["spec"]["ports"][0]["port"]
    code, page = http("GET", f"http://{service['spec']['clusterIP']}:{port}/")
    assert code == 200 and "gradio" in str(page).lower(), str(page)[:500]
    done = subprocess.run(
        [
            *(*KUBECTL, "exec", "--namespace", release.namespace, pod["metadata"]["name"]),
            *("--", "python", "-c", UI_REACHES_API),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.split() == ["200"], done.stdout + done.stderr
