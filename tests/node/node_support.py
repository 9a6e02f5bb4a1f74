"""Shared by the real-node tests: the cluster's kubectl, the side-loaded image, a chart release.

``make cluster-up`` starts one real node beside the kwok nodes (``cluster/node-up.sh``: kubelet,
containerd, runc, a bridge CNI, kube-proxy and CoreDNS on this machine). Releases installed
here put the API there (nodeSelector + toleration, the image under its local name,
``pullPolicy: Never``) and wait until kubelet's real probes have passed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pytest
import yaml

from fraud_contract.api import SCORE_PATH
from fraud_contract.schema import example_transaction
from testkit.tools import REPO_ROOT, in_ci, require_tool
from tests.integration.container_support import build_image, build_ui_image, tiny_model_home

CLUSTER_BIN = REPO_ROOT / ".tools" / "cluster" / "bin"
KUBECONFIG = Path(
    os.environ.get("CLUSTER_KUBECONFIG", REPO_ROOT / ".tools" / "cluster" / "kubeconfig")
)
NODE_DIR = Path(os.environ.get("CLUSTER_NODE_DIR", REPO_ROOT / ".tools" / "cluster" / "node"))
NODE_NAME = os.uname().nodename
NODE_LABEL = "fraud-detection.dev/real-node"
#: The real node's containerd (cluster/env.sh's NODE_CONTAINERD_SOCKET).
NODE_CONTAINERD_SOCKET = (
    Path(os.environ.get("CLUSTER_NODE_RUN_DIR", "/run/fraud-detection-node")) / "containerd.sock"
)
KUBECTL = (str(CLUSTER_BIN / "kubectl"), "--kubeconfig", str(KUBECONFIG))
INSTALL_HINT = "make system-deps && make cluster-up (as root), or make test-node"
BUILD_TIMEOUT_S = 1200
ROLLOUT_TIMEOUT_S = 300
HTTP_DEADLINE_S = 60
#: The API key the test release accepts (a test value, never a real secret).
API_KEY = "node-test-api-key-0123456789abcdef"
#: podman's name for the image this module side-loads (the chart's repository on the node).
NODE_IMAGE_NAME = "localhost/fraud-scoring-node"


def require_cluster(condition: bool, message: str) -> None:
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


def keep_node_logs(target: Path) -> None:
    """Copy the tail of each real-node component's log (kubelet, containerd, ...) to ``target``."""
    target.mkdir(exist_ok=True)
    for log in sorted((NODE_DIR / "logs").glob("*.log")):
        with log.open("rb") as source:
            source.seek(max(0, log.stat().st_size - 512 * 1024))
            (target / log.name).write_bytes(source.read())


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


def side_load(ref: str) -> None:
    """Import the local podman image ``ref`` into the real node's containerd (no registry)."""
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "cluster" / "node-image.sh"), ref],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"node-image.sh {ref} failed:\n{done.stdout}{done.stderr}"


def check_real_node() -> dict[str, Any]:
    """The real node of ``make cluster-up``, Ready (skips locally, fails under CI, without it)."""
    require_cluster(os.geteuid() == 0, "the real node needs root")
    require_cluster(shutil.which("containerd") is not None, "containerd is not installed")
    require_cluster((CLUSTER_BIN / "kubectl").exists(), f"no kubectl in {CLUSTER_BIN}")
    require_cluster(KUBECONFIG.exists(), f"no cluster kubeconfig at {KUBECONFIG}")
    done = subprocess.run(
        [*KUBECTL, "get", "node", NODE_NAME, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    require_cluster(
        done.returncode == 0, f"the cluster has no real node {NODE_NAME} ({done.stderr.strip()})"
    )
    node: dict[str, Any] = json.loads(done.stdout)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}.get("Ready")
    assert ready == "True", f"node {NODE_NAME} is not Ready: {node['status']['conditions']}"
    assert node["metadata"]["labels"].get(NODE_LABEL) == "true", node["metadata"]["labels"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert {"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    return node


def side_load_image(artifacts_dir: Path) -> NodeImage:
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
    side_load(ref)
    return NodeImage(ref, built.model_tag)


#: Per attempt: a request routed to a vanished pod IP hangs rather than being refused.
ATTEMPT_TIMEOUT_S = 2.0
_SCORE_BODY = json.dumps(example_transaction()).encode()


@dataclass
class SteadyLoad:
    """Clients scoring through ``url`` until stopped; every attempt's outcome counted.

    A new connection per request, so kube-proxy picks an endpoint each time, as independent
    payment clients would.
    """

    url: str
    #: Attempts after a failed one before the request counts as failed.
    retries: int
    #: Concurrent clients; each sends its next request as soon as the last one is answered.
    clients: int
    #: Wait before the first retry, doubled for each further one.
    backoff_s: float = 0.1
    attempts: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _counting: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SteadyLoad:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _attempt(self) -> str:
        request = urllib.request.Request(
            self.url + SCORE_PATH,
            data=_SCORE_BODY,
            method="POST",
            headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
        )
        try:
            with urllib.request.urlopen(request, timeout=ATTEMPT_TIMEOUT_S) as response:
                body = json.loads(response.read())
                return "ok" if 0.0 <= body["fraud_probability"] <= 1.0 else "bad body"
        except urllib.error.HTTPError as exc:
            return f"http {exc.code}"
        except (OSError, HTTPException, ValueError) as exc:
            return type(getattr(exc, "reason", exc)).__name__

    def _client(self) -> None:
        while not self._stop.is_set():
            for attempt in range(1 + self.retries):
                if attempt:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                outcome = self._attempt()
                with self._counting:
                    self.attempts[outcome] += 1
                if outcome == "ok":
                    break
            with self._counting:
                self.requests[outcome] += 1

    @property
    def failed(self) -> int:
        """Requests whose last attempt failed."""
        return sum(n for outcome, n in self.requests.items() if outcome != "ok")

    @property
    def failed_attempts(self) -> int:
        """Attempts that failed (retried or not)."""
        return sum(n for outcome, n in self.attempts.items() if outcome != "ok")

    def summary(self, seconds: float) -> dict[str, Any]:
        """What the clients saw, for the report."""
        return {
            "seconds": round(seconds, 1),
            "requests": sum(self.requests.values()),
            "failed_requests": self.failed,
            "attempts": dict(self.attempts),
            "failed_attempts": self.failed_attempts,
        }


#: podman's name for the UI image ``make image-ui`` builds (tagged with the project version).
UI_IMAGE_NAME = "localhost/fraud-detection-ui"


def side_load_ui_image(artifacts_dir: Path) -> str:
    """The UI image of the working tree (``make image-ui``: layer cache), side-loaded."""
    from deploy.build_ui_image import project_version  # noqa: PLC0415

    require_tool("podman", "make system-deps (Debian package podman)")
    build_ui_image(artifacts_dir / "node-ui-image-build.log", timeout=BUILD_TIMEOUT_S)
    ref = f"{UI_IMAGE_NAME}:{project_version()}"
    side_load(ref)
    return ref


ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {NODE_LABEL: "true"},
    "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
}


def node_values(image: NodeImage, ui_image: str | None = None, **api: Any) -> dict[str, Any]:
    """Chart values that run the API (``api`` overrides), the UI when ``ui_image`` is given,
    and ``helm test`` on the real node; the rest are the chart's defaults."""
    repository, _, tag = image.ref.rpartition(":")
    ui: dict[str, Any] = {"enabled": False}
    if ui_image is not None:
        ui_repository, _, ui_tag = ui_image.rpartition(":")
        ui = {
            "enabled": True,
            "image": {"repository": ui_repository, "tag": ui_tag, "pullPolicy": "Never"},
            **ON_REAL_NODE,
        }
    return {
        "api": {
            "replicaCount": 1,
            # The name node-image.sh gave the image in containerd; nothing may be pulled.
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            **ON_REAL_NODE,
            **api,
        },
        "ui": ui,
        "autoscaling": {"enabled": False},
        "auth": {"apiKeys": [API_KEY]},
        # `helm test`'s pod goes where the API runs (a kwok node would never run it).
        "tests": dict(ON_REAL_NODE),
    }


def helm_base(namespace: str) -> list[str]:
    """helm against the cluster, in ``namespace``."""
    helm = require_tool("helm", "make system-deps")
    return [helm, "--kubeconfig", str(KUBECONFIG), "--namespace", namespace]


def helm_deploy(
    command: str, name: str, values: dict[str, Any], values_dir: Path
) -> subprocess.CompletedProcess[str]:
    """``helm install`` or ``helm upgrade`` of the chart with ``values``, waiting for rollout."""
    values_file = values_dir / f"values-{uuid.uuid4().hex[:6]}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    extra = ["--create-namespace"] if command == "install" else []
    return subprocess.run(
        [
            *helm_base(name),
            *(command, name, str(REPO_ROOT / "charts" / "fraud-detection")),
            *extra,
            *("--values", str(values_file)),
            *("--wait", "--timeout", f"{ROLLOUT_TIMEOUT_S}s"),
        ],
        capture_output=True,
        text=True,
        timeout=ROLLOUT_TIMEOUT_S + 120,
        check=False,
    )


API_SELECTOR = "app.kubernetes.io/component=api"


def api_pods(release: Release) -> list[dict[str, Any]]:
    """The release's API pods as the API server has them now."""
    selector = f"app.kubernetes.io/instance={release.name},{API_SELECTOR}"
    items: list[dict[str, Any]] = kubectl_json(
        "pods", "--namespace", release.namespace, "--selector", selector
    )["items"]
    return items


def ready_pods(release: Release) -> list[str]:
    """Names of the release's API pods that are Ready and not terminating."""
    return sorted(
        pod["metadata"]["name"]
        for pod in api_pods(release)
        if "deletionTimestamp" not in pod["metadata"]
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod["status"].get("conditions", [])
        )
    )


@contextmanager
def installed_release(
    values: dict[str, Any], values_dir: Path, artifacts_dir: Path, prefix: str = "node"
) -> Iterator[Release]:
    """The chart installed in a namespace of its own and rolled out; its logs kept and the
    release uninstalled on the way out."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    install = helm_deploy("install", name, values, values_dir)
    selector = f"app.kubernetes.io/instance={name},{API_SELECTOR}"
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
                *("logs", "--namespace", name, "--selector", selector, "--tail", "300"),
                *("--all-containers", "--prefix"),
                check=False,
                timeout=60,
            )
        )
        (artifacts_dir / f"node-{name}-describe.txt").write_text(
            kubectl("describe", "pods", "--namespace", name, check=False, timeout=60)
        )
        keep_node_logs(artifacts_dir / "node-logs")
        subprocess.run(
            [*helm_base(name), "uninstall", name, "--wait", "--timeout", "120s"],
            capture_output=True,
            timeout=240,
            check=False,
        )
        kubectl("delete", "namespace", name, "--wait", "--timeout=120s", check=False, timeout=180)
