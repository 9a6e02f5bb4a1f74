"""The chart's API on the real node: a real container, real probes, a real Service route.

``make cluster-up`` starts one real node beside the kwok nodes (``cluster/node-up.sh``: kubelet,
containerd, runc, a bridge CNI, kube-proxy and CoreDNS on this machine). This module builds the
API image from the working tree (or reuses an identical one), side-loads it into the node's
containerd, installs the chart with values that put the API there (nodeSelector + toleration, the
image under its local name, ``pullPolicy: Never``), waits until the pod is Ready (kubelet ran the
startup and readiness probes against the process), then asks ``/readyz`` and scores one
transaction through the Service, both by its ClusterIP (kube-proxy's rules on this machine) and by
``kubectl port-forward`` (kube-apiserver to kubelet with a client certificate, kubelet's webhook
authorisation). It also checks that kubelet refuses anonymous and unauthorised clients.

Needs root, ``make system-deps`` and ``make cluster-up``; ``make test-node`` does both steps.
Without them it skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fraud_contract.api import READY_PATH, SCORE_PATH
from fraud_contract.schema import example_transaction
from testkit.net import free_port
from testkit.tools import REPO_ROOT, in_ci, require_tool
from tests.integration.container_support import build_image, tiny_model_home

pytestmark = [pytest.mark.node, pytest.mark.container, pytest.mark.timeout(1800)]

CLUSTER_BIN = REPO_ROOT / ".tools" / "cluster" / "bin"
KUBECONFIG = Path(
    os.environ.get("CLUSTER_KUBECONFIG", REPO_ROOT / ".tools" / "cluster" / "kubeconfig")
)
NODE_DIR = Path(os.environ.get("CLUSTER_NODE_DIR", REPO_ROOT / ".tools" / "cluster" / "node"))
NODE_NAME = os.uname().nodename
NODE_LABEL = "fraud-detection.dev/real-node"
KUBECTL = (str(CLUSTER_BIN / "kubectl"), "--kubeconfig", str(KUBECONFIG))
INSTALL_HINT = "make system-deps && make cluster-up (as root), or make test-node"
BUILD_TIMEOUT_S = 1200
ROLLOUT_TIMEOUT_S = 300
HTTP_DEADLINE_S = 60
#: The API key the test release accepts (a test value, never a real secret).
API_KEY = "node-test-api-key-0123456789abcdef"
#: podman's name for the image this module side-loads (the chart's repository on the node).
NODE_IMAGE_NAME = "localhost/fraud-scoring-node"


def _require(condition: bool, message: str) -> None:
    """Skip locally (fail under CI) with an install hint unless ``condition`` holds."""
    if condition:
        return
    text = f"{message}; run: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(text)
    pytest.skip(text)


def kubectl(*args: str, timeout: float = 60, check: bool = True) -> str:
    """Run the cluster's kubectl against ``make cluster-up``'s cluster; return its stdout."""
    command = [*KUBECTL, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def kubectl_json(*args: str) -> dict[str, Any]:
    """``kubectl get ... -o json`` as a dict."""
    result: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json"))
    return result


@dataclass(frozen=True)
class Release:
    """The installed chart: its namespace, API Service and pods."""

    name: str
    namespace: str
    service: dict[str, Any]
    pods: list[dict[str, Any]]

    @property
    def cluster_url(self) -> str:
        """The API Service through its ClusterIP (routed by kube-proxy's iptables rules)."""
        port = self.service["spec"]["ports"][0]["port"]
        return f"http://{self.service['spec']['clusterIP']}:{port}"


def http(
    method: str, url: str, body: object | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request, retried while the route is not there yet or the API sheds load (503).

    A refused or reset connection right after the pod turned Ready is kube-proxy still writing the
    endpoint's rules; a 503 "overloaded" is retried the way the project's clients retry it.
    """
    deadline = time.monotonic() + HTTP_DEADLINE_S
    data = json.dumps(body).encode() if body is not None else None
    last: object = None
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                return exc.code, _decode(exc.read())
            last = f"503 {exc.read()[:200]!r}"
        except (OSError, TimeoutError) as exc:  # refused / reset / unroutable for now
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{method} {url}: no answer within {HTTP_DEADLINE_S}s (last: {last})")


def _decode(body: bytes) -> Any:
    """A JSON body decoded; any other body (``/readyz`` answers plain text) as text."""
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def _keep_node_logs(target: Path) -> None:
    """Copy the tail of each real-node component's log (kubelet, containerd, ...) to ``target``."""
    target.mkdir(exist_ok=True)
    for log in sorted((NODE_DIR / "logs").glob("*.log")):
        with log.open("rb") as source:
            source.seek(max(0, log.stat().st_size - 512 * 1024))
            (target / log.name).write_bytes(source.read())


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_node() -> dict[str, Any]:
    """The real node of ``make cluster-up``, Ready (skips locally, fails under CI, without it)."""
    _require(os.geteuid() == 0, "the real node needs root")
    _require(shutil.which("containerd") is not None, "containerd is not installed")
    _require((CLUSTER_BIN / "kubectl").exists(), f"no kubectl in {CLUSTER_BIN}")
    _require(KUBECONFIG.exists(), f"no cluster kubeconfig at {KUBECONFIG}")
    done = subprocess.run(
        [*KUBECTL, "get", "node", NODE_NAME, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _require(
        done.returncode == 0, f"the cluster has no real node {NODE_NAME} ({done.stderr.strip()})"
    )
    node: dict[str, Any] = json.loads(done.stdout)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}.get("Ready")
    assert ready == "True", f"node {NODE_NAME} is not Ready: {node['status']['conditions']}"
    assert node["metadata"]["labels"].get(NODE_LABEL) == "true", node["metadata"]["labels"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert {"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    return node


@dataclass(frozen=True)
class NodeImage:
    """The API image as the node has it: its name there and the model baked into it."""

    ref: str
    model_tag: str


def _image_exists(podman: str, ref: str) -> bool:
    """Whether podman stores an image under ``ref``."""
    done = subprocess.run(
        [podman, "image", "exists", ref], capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


def _remove_older_node_images(podman: str, keep: str) -> None:
    """Untag this module's earlier images (the node keeps its own copy until cluster-down)."""
    listing = subprocess.run(
        [podman, "images", "--format", "{{.Repository}}:{{.Tag}}", NODE_IMAGE_NAME],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for ref in set(listing.stdout.split()) - {keep}:
        subprocess.run([podman, "rmi", ref], capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def image(real_node: dict[str, Any], artifacts_dir: Path) -> NodeImage:
    """The API image of the working tree (reused when identical), side-loaded into containerd."""
    podman = require_tool("podman", "make system-deps (Debian package podman)")
    # The image gets a name of this module's own: the container tests prune the other tags of
    # theirs, and on a shared machine another run may do so between the build and the tag. The
    # tag is the Bento's version, so an existing image under it is this very build.
    for attempt in (1, 2):
        built = build_image(
            podman,
            tiny_model_home(),
            artifacts_dir / "node-image-build.log",
            timeout=BUILD_TIMEOUT_S,
        )
        ref = f"{NODE_IMAGE_NAME}:{built.ref.rpartition(':')[2]}"
        if _image_exists(podman, ref):
            break
        tagged = subprocess.run(
            [podman, "tag", built.ref, ref],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if tagged.returncode == 0:
            break
        assert attempt == 1, f"podman tag {built.ref} {ref} failed: {tagged.stderr}"
    _remove_older_node_images(podman, keep=ref)
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "cluster" / "node-image.sh"), ref],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"node-image.sh {ref} failed:\n{done.stdout}{done.stderr}"
    return NodeImage(ref, built.model_tag)


@pytest.fixture(scope="module")
def release(
    image: NodeImage, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> Iterator[Release]:
    """The chart installed with its API on the real node, rolled out; uninstalled afterwards."""
    helm = require_tool("helm", "make system-deps")
    name = f"node-{uuid.uuid4().hex[:6]}"
    repository, _, tag = image.ref.rpartition(":")
    values = {
        "api": {
            "replicaCount": 1,
            # The name node-image.sh gave the image in containerd; nothing may be pulled.
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        },
        "ui": {"enabled": False},
        "autoscaling": {"enabled": False},
        "auth": {"apiKeys": [API_KEY]},
        # `helm test`'s pod goes where the API runs (a kwok node would never run it).
        "tests": {
            "nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
    values_file = tmp_path_factory.mktemp("node-release") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    base = [helm, "--kubeconfig", str(KUBECONFIG), "--namespace", name]
    install = subprocess.run(
        [
            *base,
            *("install", name, str(REPO_ROOT / "charts" / "fraud-detection")),
            *("--create-namespace", "--values", str(values_file)),
            *("--wait", "--timeout", f"{ROLLOUT_TIMEOUT_S}s"),
        ],
        capture_output=True,
        text=True,
        timeout=ROLLOUT_TIMEOUT_S + 120,
        check=False,
    )
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=api"
    try:
        if install.returncode != 0:
            pytest.fail(
                f"helm install failed:\n{install.stdout}{install.stderr}\n"
                + kubectl("describe", "pods", "--namespace", name, check=False)[-6000:]
            )
        services = kubectl_json("services", "--namespace", name, "--selector", selector)["items"]
        assert len(services) == 1, services
        pods = kubectl_json("pods", "--namespace", name, "--selector", selector)["items"]
        yield Release(name, name, services[0], pods)
    finally:
        (artifacts_dir / f"node-{name}-api.log").write_text(
            kubectl(
                "logs",
                "--namespace",
                name,
                "--selector",
                selector,
                "--tail",
                "300",
                "--all-containers",
                "--prefix",
                check=False,
                timeout=60,
            )
        )
        (artifacts_dir / f"node-{name}-describe.txt").write_text(
            kubectl("describe", "pods", "--namespace", name, check=False, timeout=60)
        )
        _keep_node_logs(artifacts_dir / "node-logs")
        subprocess.run(
            [*base, "uninstall", name, "--wait", "--timeout", "120s"],
            capture_output=True,
            timeout=240,
            check=False,
        )
        kubectl("delete", "namespace", name, "--wait", "--timeout=120s", check=False, timeout=180)


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
