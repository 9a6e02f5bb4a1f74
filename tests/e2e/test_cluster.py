"""The Helm chart on a real Kubernetes API server: install, roll out, autoscale, upgrade, uninstall.

The control plane is real (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
metrics-server built by ``make cluster-build`` and started by ``cluster/up.sh``); the nodes are
simulated by kwok, which marks scheduled pods Running and Ready without running containers and
reports the CPU usage a test gives them. So admission, defaulting, API versions, selectors, the
Deployment/ReplicaSet/EndpointSlice/HPA/disruption controllers, the scheduler, the aggregation
layer (metrics.k8s.io) and the chart's custom resources (against CRDs built from the vendored
schemas) are exercised for real; container images, probes and traffic are not (the kind workflow
covers those).

Each module run starts its own throwaway cluster and deletes it afterwards; every release gets its
own namespace.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config, dynamic
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.resource import ResourceList
from kubernetes.utils import parse_quantity

from testkit.tools import REPO_ROOT, in_ci, require_tool
from tests.e2e.autoscaling import (
    HpaObserver,
    ReplicaTimeline,
    SimulatedCpuLoad,
    behaviour_violations,
    hpa_report,
    scale_down_periods,
)
from tests.e2e.crds import vendored_crds
from tests.e2e.watch import ResourceWatch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CHART = REPO_ROOT / "charts" / "fraud-detection"
CLUSTER_DIR = REPO_ROOT / "cluster"
CLUSTER_BIN = REPO_ROOT / ".tools" / "cluster" / "bin"
CONTROL_PLANE_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwokctl",
    "metrics-server",
)
HELM_TIMEOUT_SECONDS = 180
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"

# Every CI values file, with the kinds each must at least create. ServiceMonitor, ScaledObject,
# HTTPRoute and BackendTrafficPolicy are custom resources: the `chart_crds` fixture first applies
# their CRDs, generated from the schemas vendored in k8s/schemas/crds/ (tests/e2e/crds.py). No
# controller runs for them (KEDA, the Prometheus Operator and Envoy Gateway run only in the kind
# workflow): the API server validates them (OpenAPI and CEL rules) and stores them.
INSTALLABLE_CI_VALUES: dict[str, set[str]] = {
    "default-values.yaml": {
        "Deployment",
        "Service",
        "ServiceAccount",
        "Secret",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    },
    "ingress-tls-values.yaml": {"Deployment", "Service", "Ingress", "NetworkPolicy"},
    "gateway-api-values.yaml": {
        "Deployment",
        "Service",
        "HTTPRoute",
        "BackendTrafficPolicy",
        "NetworkPolicy",
    },
    "all-off-values.yaml": {"Deployment", "Service"},
    "custom-metric-hpa-values.yaml": {"Deployment", "HorizontalPodAutoscaler", "ServiceMonitor"},
    "keda-values.yaml": {"Deployment", "ScaledObject", "ServiceMonitor", "ConfigMap"},
    "hpa-scale-in-values.yaml": {"Deployment", "HorizontalPodAutoscaler"},
    # The in-chart Valkey (its PVC is bound to a PersistentVolume the test provides: no
    # provisioner runs here) and an external store whose URL is in an existing Secret.
    "history-values.yaml": {"Deployment", "StatefulSet", "Service", "Secret", "NetworkPolicy"},
    "history-external-values.yaml": {"Deployment", "Service", "NetworkPolicy"},
    # The decision ledger: its migration hook Job runs before the release (hooks are not in
    # the release manifest), the retention CronJob and the alerts stay.
    "ledger-values.yaml": {"Deployment", "CronJob", "NetworkPolicy", "PrometheusRule"},
    "ledger-external-values.yaml": {"Deployment", "CronJob", "NetworkPolicy"},
    # The ledger's CloudNativePG Cluster (no operator runs here: the test writes the Secret
    # the operator would, `<cluster>-app`).
    "ledger-cnpg-values.yaml": {"Deployment", "CronJob", "NetworkPolicy", "Cluster"},
}
# The values file of the autoscaling test: the chart's HPA with a short scale-down window.
HPA_TEST_VALUES = "hpa-scale-in-values.yaml"
# Simulated CPU of each API pod: idle (far below the HPA's target) and overloaded (far above it).
IDLE_CPU, LOAD_CPU = "50m", "1500m"
# kube-controller-manager's --horizontal-pod-autoscaler-sync-period (the default, 15 s).
HPA_SYNC_SECONDS = 15
# metrics-server's resolution (kwokctl runs it with --metric-resolution=15s; a CPU rate needs two
# scrapes) plus one HPA sync: how long a change of the simulated usage may take to reach the HPA.
METRICS_LAG_SECONDS = 45


# ---- the cluster ---------------------------------------------------------------------------------
@dataclass
class Cluster:
    """A running control plane: its kubeconfig, an API client and the helm CLI bound to it.

    Objects are read as plain dicts through the dynamic client (the same shape as the YAML).
    """

    name: str
    kubeconfig: Path
    helm_path: str
    dyn: dynamic.DynamicClient = field(init=False)

    def __post_init__(self) -> None:
        self.dyn = dynamic.DynamicClient(
            config.new_client_from_config(config_file=str(self.kubeconfig))
        )

    def helm(self, *args: str, timeout: float = HELM_TIMEOUT_SECONDS + 60) -> str:
        """Run helm against this cluster; fail the test with helm's output when it fails."""
        command = [self.helm_path, "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def resource(self, api_version: str, kind: str) -> Any:
        """The dynamic-client resource of ``kind`` in ``api_version``."""
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def read(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """One object as a dict (raises ApiException 404 when it does not exist)."""
        resource = self.resource(api_version, kind)
        obj = resource.get(name=name, namespace=namespace if resource.namespaced else None)
        result: dict[str, Any] = obj.to_dict()
        return result

    def items(
        self, api_version: str, kind: str, namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` matching the label ``selector``."""
        found = self.resource(api_version, kind).get(namespace=namespace, label_selector=selector)
        items: list[dict[str, Any]] = found.to_dict()["items"]
        return items


def _require_control_plane() -> None:
    """Skip locally (fail under CI) unless ``make cluster-build`` has built the binaries."""
    missing = [b for b in CONTROL_PLANE_BINARIES if not os.access(CLUSTER_BIN / b, os.X_OK)]
    if missing:
        message = (
            f"control-plane binaries missing in {CLUSTER_BIN}: {missing}; run: make cluster-build"
        )
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def _run_script(script: str, env: dict[str, str], log_path: Path, timeout: float) -> None:
    """Run a cluster/ script, appending its output to ``log_path``; fail with its tail."""
    with log_path.open("a") as log:
        result = subprocess.run(
            ["bash", str(CLUSTER_DIR / script)],
            check=False,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        pytest.fail(f"cluster/{script} exited {result.returncode}; log {log_path}:\n{tail}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Iterator[Cluster]:
    """A fresh control plane with kwok nodes for this module, deleted afterwards (logs kept)."""
    helm_path = require_tool("helm", "make system-deps")
    _require_control_plane()
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubeconfig = tmp_path_factory.mktemp("cluster") / "kubeconfig"
    env = {**os.environ, "CLUSTER_NAME": name, "CLUSTER_KUBECONFIG": str(kubeconfig)}
    log_path = artifacts_dir / f"cluster-{name}.log"
    workdir = Path(env.get("KWOK_WORKDIR", REPO_ROOT / ".tools" / "cluster" / "kwok"))
    try:
        _run_script("up.sh", env, log_path, timeout=300)
        yield Cluster(name=name, kubeconfig=kubeconfig, helm_path=helm_path)
    finally:
        # Keep the component logs (apiserver, controller-manager, ...) before they are deleted.
        logs = workdir / "clusters" / name / "logs"
        if logs.is_dir():
            shutil.copytree(logs, artifacts_dir / f"cluster-{name}-logs", dirs_exist_ok=True)
        _run_script("down.sh", env, log_path, timeout=120)


# ---- helpers -------------------------------------------------------------------------------------
def wait_until(
    check: Callable[[], object],
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] | None = None,
) -> None:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and the last error.

    ``diagnostics`` adds what to read on a timeout (for example the HPA's status and events).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return
        except (ApiException, AssertionError) as exc:
            last = exc
        time.sleep(0.5)
    report = f"\n{diagnostics()}" if diagnostics else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}{report}")


def manifest_objects(cluster: Cluster, release: str, namespace: str) -> list[dict[str, Any]]:
    """The objects of the release's current revision, as helm applied them."""
    manifest = cluster.helm("get", "manifest", release, "--namespace", namespace)
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def live_object(cluster: Cluster, rendered: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The object the API server stored for a rendered one (same apiVersion and kind)."""
    return cluster.read(
        rendered["apiVersion"], rendered["kind"], rendered["metadata"]["name"], namespace
    )


def _is_empty(value: object) -> bool:
    return value is None or value == {} or value == []


def _same_scalar(rendered: object, live: object) -> bool:
    if rendered == live:
        return True
    # The API server may canonicalise quantities ("0.5" -> "500m"): compare their values.
    if isinstance(rendered, str | int | float) and isinstance(live, str | int | float):
        try:
            return bool(parse_quantity(rendered) == parse_quantity(live))
        except ValueError:
            return False
    return False


def differences(rendered: object, live: object, path: str = "") -> list[str]:
    """Where the live object lost or changed something the chart rendered.

    Fields the API server adds (defaults, status, managed fields) are fine, and so are empty maps
    and lists it drops; anything else the chart rendered must be stored exactly as rendered.
    """
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return [f"{path or '.'}: rendered a map, stored {live!r}"]
        found: list[str] = []
        for key, value in rendered.items():
            if live.get(key) is None:
                if not _is_empty(value):
                    found.append(f"{path}.{key}: rendered {value!r}, not stored")
                continue
            found += differences(value, live[key], f"{path}.{key}")
        return found
    if isinstance(rendered, list):
        if not isinstance(live, list) or len(rendered) != len(live):
            return [f"{path}: rendered {rendered!r}, stored {live!r}"]
        return [
            d
            for i, (r, v) in enumerate(zip(rendered, live, strict=True))
            for d in differences(r, v, f"{path}[{i}]")
        ]
    if not _same_scalar(rendered, live):
        return [f"{path}: rendered {rendered!r}, stored {live!r}"]
    return []


def pod_is_healthy(pod: dict[str, Any]) -> bool:
    """Ready and not being deleted: what the disruption controller counts as healthy."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def deployment_rolled_out(cluster: Cluster, name: str, namespace: str) -> bool:
    """The Deployment controller saw the latest spec and every replica is updated and available."""
    dep = cluster.read("apps/v1", "Deployment", name, namespace)
    status, want = dep.get("status") or {}, dep["spec"]["replicas"]
    return bool(
        status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


def api_deployment(cluster: Cluster, release: str, namespace: str) -> dict[str, Any]:
    """The release's API Deployment (exactly one)."""
    selector = f"{INSTANCE_LABEL}={release},{COMPONENT_LABEL}=api"
    deployments = cluster.items("apps/v1", "Deployment", namespace, selector)
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    return deployments[0]


def api_images(cluster: Cluster, release: str, namespace: str) -> set[str]:
    """Images of the API Deployment's containers."""
    dep = api_deployment(cluster, release, namespace)
    return {c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}


def leftovers(cluster: Cluster, release: str, namespace: str) -> list[str]:
    """Every namespaced object of any listable kind still labelled with the release."""
    found = []
    for resource in cluster.dyn.resources.search():
        if isinstance(resource, ResourceList) or "/" in resource.name:  # lists, subresources
            continue
        listable = resource.namespaced and "list" in (resource.verbs or [])
        if not listable or resource.kind in {"Event", "Binding"}:
            continue
        try:
            items = resource.get(namespace=namespace, label_selector=f"{INSTANCE_LABEL}={release}")
        except ApiException:
            continue
        found += [f"{resource.kind}/{item.metadata.name}" for item in items.items]
    # helm's own release records (Secrets labelled owner=helm, name=<release>).
    records = cluster.items("v1", "Secret", namespace, f"owner=helm,name={release}")
    found += [f"Secret/{s['metadata']['name']} (helm release record)" for s in records]
    return found


class HealthyPodTracker(ResourceWatch):
    """Watches a set of pods and records the fewest healthy ones at any moment.

    A watch sees every change the API server makes, so even a dip that lasts milliseconds (as
    with kwok's instant pod transitions) is counted, which polling could miss.
    """

    def __init__(self, cluster: Cluster, namespace: str, selector: str) -> None:
        pods = cluster.resource("v1", "Pod")
        listed = pods.get(namespace=namespace, label_selector=selector).to_dict()
        super().__init__(
            pods, namespace, listed["metadata"]["resourceVersion"], label_selector=selector
        )
        self._healthy = {p["metadata"]["name"]: pod_is_healthy(p) for p in listed["items"]}
        self.initial_pods = set(self._healthy)
        self.seen_pods = set(self._healthy)
        self.min_healthy = self.healthy_now()
        self.start()

    def healthy_now(self) -> int:
        """Healthy pods according to the events seen so far."""
        return sum(self._healthy.values())

    def on_event(self, event_type: str, obj: dict[str, Any]) -> bool:
        """Update the pod's health; an ERROR event (e.g. 410 Gone) ends the watch."""
        if event_type not in {"ADDED", "MODIFIED", "DELETED"}:  # the minimum is no longer sure
            self.errors.append(f"{event_type}: {obj!r}")
            return False
        name = obj["metadata"]["name"]
        self.seen_pods.add(name)
        if event_type == "DELETED":
            self._healthy.pop(name, None)
        else:
            self._healthy[name] = pod_is_healthy(obj)
        self.min_healthy = min(self.min_healthy, self.healthy_now())
        return True


def service_endpoints_match_pods(cluster: Cluster, service: str, namespace: str) -> bool:
    """The Service's EndpointSlices list exactly the IPs of the ready pods it selects."""
    svc = cluster.read("v1", "Service", service, namespace)
    selector = ",".join(f"{k}={v}" for k, v in (svc["spec"].get("selector") or {}).items())
    assert selector, f"Service {service} has no selector"
    pods = cluster.items("v1", "Pod", namespace, selector)
    ready_ips = {
        p["status"]["podIP"] for p in pods if pod_is_healthy(p) and p["status"].get("podIP")
    }
    slices = cluster.items(
        "discovery.k8s.io/v1", "EndpointSlice", namespace, f"kubernetes.io/service-name={service}"
    )
    endpoint_ips = {
        address
        for eps in slices
        for ep in eps.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready")
        for address in ep["addresses"]
    }
    assert ready_ips, f"no ready pods behind Service {service}"
    assert endpoint_ips == ready_ips, (
        f"endpoints {sorted(endpoint_ips)} != pods {sorted(ready_ips)}"
    )
    return True


def new_namespace() -> str:
    """A fresh namespace name for one release."""
    return f"fraud-{uuid.uuid4().hex[:6]}"


def create_expected_secret(cluster: Cluster, values_file: str, namespace: str) -> None:
    """Create the Secrets a values file names as existing (the chart then makes none).

    ``auth.existingSecret`` holds the two keys the chart reads from it (``auth.apiKeysKey`` and
    ``auth.uiKeyKey``), ``api.idHashKey.existingSecret`` the id hash key, the history's and
    the ledger's existing Secrets their URLs.
    """
    values = yaml.safe_load((CHART / "ci" / values_file).read_text()) or {}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    auth = {**defaults["auth"], **(values.get("auth") or {})}
    id_hash = {**defaults["api"]["idHashKey"], **(values.get("api") or {}).get("idHashKey", {})}
    key = uuid.uuid4().hex
    wanted: dict[str, dict[str, str]] = {}
    if auth["existingSecret"]:
        wanted[auth["existingSecret"]] = {auth["apiKeysKey"]: f"{key}\n", auth["uiKeyKey"]: key}
    if id_hash["existingSecret"]:
        wanted[id_hash["existingSecret"]] = {id_hash["secretKey"]: uuid.uuid4().hex * 2}
    history = {**defaults["history"], **(values.get("history") or {})}
    if history["enabled"] and history["existingSecret"]:
        url = f"valkey://:{uuid.uuid4().hex}@history.example:6379/0"
        wanted[history["existingSecret"]] = {history["existingSecretKey"]: url}
    ledger = {**defaults["ledger"], **(values.get("ledger") or {})}
    database = {**defaults["ledger"]["database"], **(ledger.get("database") or {})}
    if ledger["enabled"] and database["existingSecret"]:
        url = f"postgresql://fraud:{uuid.uuid4().hex}@fraud-ledger-rw:5432/fraud"
        wanted[database["existingSecret"]] = {database["existingSecretKey"]: url}
    if ledger["enabled"] and (ledger.get("cloudnativepg") or {}).get("enabled"):
        # What the operator writes for the chart's Cluster of the release `fraud` (install()).
        cnpg = "fraud-fraud-detection-ledger"
        url = f"postgresql://fraud:{uuid.uuid4().hex}@{cnpg}-rw:5432/fraud"
        wanted[f"{cnpg}-app"] = {"uri": url}
    if not wanted:
        return
    cluster.resource("v1", "Namespace").create(body={"metadata": {"name": namespace}})
    for name, data in wanted.items():
        cluster.resource("v1", "Secret").create(
            namespace=namespace, body={"metadata": {"name": name}, "stringData": data}
        )


def provide_volumes(cluster: Cluster, release: str, values_file: str, namespace: str) -> list[str]:
    """PersistentVolumes pre-bound to the claims the chart's StatefulSets will make.

    The simulated cluster has no storage provisioner, so a claim would stay Pending (and helm's
    ``--wait`` with it); a PersistentVolume whose ``claimRef`` names the claim binds at once.
    """
    rendered = cluster.helm(
        "template", release, str(CHART), "--namespace", namespace,
        "--values", str(CHART / "ci" / values_file),
    )  # fmt: skip
    names = []
    for doc in yaml.safe_load_all(rendered):
        if not doc or doc["kind"] != "StatefulSet":
            continue
        for replica in range(int(doc["spec"].get("replicas", 1))):
            for claim in doc["spec"].get("volumeClaimTemplates", []):
                claim_name = f"{claim['metadata']['name']}-{doc['metadata']['name']}-{replica}"
                name = f"{namespace}-{claim_name}"[:63]
                spec = claim["spec"]
                cluster.resource("v1", "PersistentVolume").create(
                    body={
                        "metadata": {"name": name},
                        "spec": {
                            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                            "accessModes": spec["accessModes"],
                            "storageClassName": spec.get("storageClassName", ""),
                            "persistentVolumeReclaimPolicy": "Retain",
                            "hostPath": {"path": f"/tmp/{name}"},
                            "claimRef": {"namespace": namespace, "name": claim_name},
                        },
                    }
                )
                names.append(name)
    return names


def install(cluster: Cluster, values_file: str, namespace: str | None = None) -> tuple[str, str]:
    """``helm install --wait`` the chart with a CI values file into a new namespace."""
    release = "fraud"
    namespace = namespace or new_namespace()
    create_expected_secret(cluster, values_file, namespace)
    provide_volumes(cluster, release, values_file, namespace)
    cluster.helm(
        "install", release, str(CHART),
        "--namespace", namespace, "--create-namespace",
        "--values", str(CHART / "ci" / values_file),
        "--wait", "--timeout", f"{HELM_TIMEOUT_SECONDS}s",
    )  # fmt: skip
    return release, namespace


def uninstall_leaves_nothing(cluster: Cluster, release: str, namespace: str) -> None:
    """``helm uninstall --wait``; then every rendered object and everything labelled is gone."""
    rendered = manifest_objects(cluster, release, namespace)
    cluster.helm(
        "uninstall", release, "--namespace", namespace,
        "--wait", "--timeout", f"{HELM_TIMEOUT_SECONDS}s",
    )  # fmt: skip
    for obj in rendered:
        with pytest.raises(ApiException) as gone:
            live_object(cluster, obj, namespace)
        assert gone.value.status == 404, f"{obj['kind']}/{obj['metadata']['name']} still there"
    # Pods, ReplicaSets and EndpointSlices go through the garbage collector: give it time.
    wait_until(lambda: not leftovers(cluster, release, namespace), 90, "the garbage collector")
    assert not leftovers(cluster, release, namespace)
    # The volumes provide_volumes made (released now: their claims went with the StatefulSet).
    volumes = cluster.resource("v1", "PersistentVolume")
    for volume in volumes.get().to_dict()["items"]:
        if (volume["spec"].get("claimRef") or {}).get("namespace") == namespace:
            volumes.delete(name=volume["metadata"]["name"])


def release_secret_data(cluster: Cluster, release: str, namespace: str) -> dict[str, str]:
    """The decoded data of the chart's own Secrets (the API keys and the id hash key)."""
    selector = f"{INSTANCE_LABEL}={release},app.kubernetes.io/managed-by=Helm"
    secrets = cluster.items("v1", "Secret", namespace, selector)
    names = sorted(s["metadata"]["name"] for s in secrets)
    assert [n.rsplit("-", 1)[-1] for n in names] == ["auth", "key"], names
    found: dict[str, str] = {}
    for secret in secrets:
        data = secret.get("data") or {}
        assert data, f"the chart's Secret {secret['metadata']['name']} is empty"
        found |= {key: base64.b64decode(value).decode() for key, value in data.items()}
    assert len(found["id-hash-key"]) == 64, "the id hash key is not 64 hex characters"
    return found


@pytest.fixture(scope="module")
def chart_crds(cluster: Cluster) -> list[str]:
    """The CRDs of the chart's custom kinds (from the vendored schemas), established."""
    crds = cluster.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    names = []
    for crd in vendored_crds():
        crds.create(body=crd)
        names.append(crd["metadata"]["name"])

    def established() -> bool:
        for name in names:
            status = crds.get(name=name).to_dict().get("status") or {}
            # Right after create the API server may report `conditions: null` (not yet set).
            cond = {c["type"]: c for c in status.get("conditions") or []}
            assert "NonStructuralSchema" not in cond, cond["NonStructuralSchema"]["message"]
            if cond.get("Established", {}).get("status") != "True":
                return False
        return True

    wait_until(established, 60, f"the CRDs {names} to be established")
    return names


# ---- tests ---------------------------------------------------------------------------------------
def test_every_ci_values_file_is_installed() -> None:
    """No CI values file is left out of the install test (each needs its expected kinds)."""
    on_disk = {path.name for path in (CHART / "ci").glob("*.yaml")}
    assert set(INSTALLABLE_CI_VALUES) == on_disk


@pytest.mark.parametrize("values_file", sorted(INSTALLABLE_CI_VALUES))
def test_ci_values_install_roll_out_and_uninstall(
    cluster: Cluster, chart_crds: list[str], values_file: str
) -> None:
    """Every CI values file installs, is stored as rendered, serves, and uninstalls."""
    assert (CHART / "ci" / values_file).is_file(), f"update INSTALLABLE_CI_VALUES: {values_file}"
    release, namespace = install(cluster, values_file)
    objects = manifest_objects(cluster, release, namespace)

    kinds = {obj["kind"] for obj in objects}
    assert INSTALLABLE_CI_VALUES[values_file] <= kinds, f"rendered only {sorted(kinds)}"

    # Admission and defaulting kept everything the chart rendered (nothing dropped or rewritten).
    for obj in objects:
        diff = differences(obj, live_object(cluster, obj, namespace))
        assert not diff, f"{obj['kind']}/{obj['metadata']['name']} not stored as rendered: {diff}"

    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Deployment":  # rolled out onto the simulated nodes
            rolled_out = partial(deployment_rolled_out, cluster, name, namespace)
            wait_until(rolled_out, 60, f"{name} rollout")
        if obj["kind"] == "Service":  # selects exactly the ready pods of its component
            has_endpoints = partial(service_endpoints_match_pods, cluster, name, namespace)
            wait_until(has_endpoints, 60, f"{name} endpoints")

    uninstall_leaves_nothing(cluster, release, namespace)


def test_kind_gateway_manifests_are_accepted_as_written(
    cluster: Cluster, chart_crds: list[str]
) -> None:
    """The kind workflow's GatewayClass, Gateway and EnvoyProxy pass the API server's checks.

    Server-side dry run against the vendored CRDs (OpenAPI and CEL rules): nothing is pruned or
    rejected, so `make kind-up` does not meet a schema error only on kind.
    """
    text = (REPO_ROOT / "k8s" / "gateway" / "kind-gateway.yaml").read_text()
    manifests = [doc for doc in yaml.safe_load_all(text) if doc]
    assert {m["kind"] for m in manifests} == {"EnvoyProxy", "GatewayClass", "Gateway"}
    namespaces = {m["metadata"].get("namespace") for m in manifests} - {None}
    for namespace in namespaces:
        cluster.resource("v1", "Namespace").create(body={"metadata": {"name": namespace}})
    for manifest in manifests:
        resource = cluster.resource(manifest["apiVersion"], manifest["kind"])
        namespace = manifest["metadata"].get("namespace") if resource.namespaced else None
        stored = resource.create(body=manifest, namespace=namespace, dry_run="All").to_dict()
        diff = differences(manifest, stored)
        assert not diff, f"{manifest['kind']}/{manifest['metadata']['name']}: {diff}"
    for namespace in namespaces:
        cluster.resource("v1", "Namespace").delete(name=namespace)


def test_upgrade_rolls_within_pdb_then_rollback_and_uninstall(cluster: Cluster) -> None:
    """A new image tag rolls out without dropping below the PDB; rollback restores the old one."""
    release, namespace = install(cluster, "default-values.yaml")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    min_replicas = int(values["autoscaling"]["minReplicas"])
    pdb_max_unavailable = int(values["api"]["podDisruptionBudget"]["maxUnavailable"])
    dep_name = api_deployment(cluster, release, namespace)["metadata"]["name"]
    selector = f"{INSTANCE_LABEL}={release},{COMPONENT_LABEL}=api"

    # The chart leaves replicas to the HPA, whose controller must raise them to minReplicas.
    def hpa_at_min() -> bool:
        hpa = cluster.read("autoscaling/v2", "HorizontalPodAutoscaler", dep_name, namespace)
        status = hpa.get("status", {})
        return bool(status.get("currentReplicas") == status.get("desiredReplicas") == min_replicas)

    wait_until(hpa_at_min, 90, f"the HPA to scale {dep_name} to minReplicas={min_replicas}")
    wait_until(lambda: deployment_rolled_out(cluster, dep_name, namespace), 60, "API pods ready")

    # The disruption controller matched the PDB's selector to exactly those pods.
    def pdb_tracks_pods() -> bool:
        (pdb,) = cluster.items("policy/v1", "PodDisruptionBudget", namespace, selector)
        status = pdb.get("status", {})
        assert status.get("expectedPods") == min_replicas, status
        return bool(
            status.get("currentHealthy") == min_replicas
            and status.get("disruptionsAllowed") == pdb_max_unavailable
        )

    wait_until(pdb_tracks_pods, 60, "the PDB status")

    secret_before = release_secret_data(cluster, release, namespace)
    old_images = api_images(cluster, release, namespace)
    old_dep = api_deployment(cluster, release, namespace)
    old_revision = int(old_dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"])

    tracker = HealthyPodTracker(cluster, namespace, selector)
    try:
        cluster.helm(
            "upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values",
            "--set", "api.image.tag=0.1.1-e2e",
            "--wait", "--timeout", f"{HELM_TIMEOUT_SECONDS}s",
        )  # fmt: skip
        wait_until(lambda: deployment_rolled_out(cluster, dep_name, namespace), 60, "the upgrade")
    finally:
        tracker.stop()

    new_images = api_images(cluster, release, namespace)
    assert new_images and all(i.endswith(":0.1.1-e2e") for i in new_images), new_images
    new_dep = api_deployment(cluster, release, namespace)
    assert int(new_dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) == (
        old_revision + 1
    )
    # Every old pod was replaced, and healthy pods never fell below what the PDB allows.
    assert not tracker.errors, tracker.errors
    current = {p["metadata"]["name"] for p in cluster.items("v1", "Pod", namespace, selector)}
    assert current and not current & tracker.initial_pods, "the old pods were not replaced"
    assert len(tracker.seen_pods - tracker.initial_pods) >= min_replicas
    assert tracker.min_healthy >= min_replicas - pdb_max_unavailable, (
        f"healthy API pods fell to {tracker.min_healthy} during the upgrade "
        f"(the PDB allows at most {pdb_max_unavailable} of {min_replicas} unavailable)"
    )
    # The chart keeps its generated API key and id hash key across upgrades (helm's lookup on a
    # live cluster): a new hash key would make new log hashes unjoinable with the old ones.
    assert release_secret_data(cluster, release, namespace) == secret_before

    cluster.helm(
        "rollback", release, "1", "--namespace", namespace,
        "--wait", "--timeout", f"{HELM_TIMEOUT_SECONDS}s",
    )  # fmt: skip
    wait_until(lambda: deployment_rolled_out(cluster, dep_name, namespace), 60, "the rollback")
    assert api_images(cluster, release, namespace) == old_images
    history = yaml.safe_load(
        cluster.helm("history", release, "--namespace", namespace, "--output", "yaml")
    )
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert history[-1]["status"] == "deployed"
    assert "Rollback to 1" in history[-1]["description"]

    uninstall_leaves_nothing(cluster, release, namespace)


@dataclass(frozen=True)
class HpaSettings:
    """The API's HPA as the API server stored it, and the utilisation each simulated load means."""

    name: str
    min_replicas: int
    max_replicas: int
    target: int
    behavior: dict[str, Any]
    idle: int
    loaded: int

    @classmethod
    def read(cls, cluster: Cluster, release: str, namespace: str) -> HpaSettings:
        """Read the HPA and the API container's CPU request of a release."""
        dep = api_deployment(cluster, release, namespace)
        name = dep["metadata"]["name"]
        spec = cluster.read("autoscaling/v2", "HorizontalPodAutoscaler", name, namespace)["spec"]
        (metric,) = spec["metrics"]
        containers = dep["spec"]["template"]["spec"]["containers"]
        (api,) = [c for c in containers if c["name"] == "api"]
        request = parse_quantity(api["resources"]["requests"]["cpu"])
        idle, loaded = (round(parse_quantity(cpu) / request * 100) for cpu in (IDLE_CPU, LOAD_CPU))
        return cls(
            name=name,
            min_replicas=spec["minReplicas"],
            max_replicas=spec["maxReplicas"],
            target=metric["resource"]["target"]["averageUtilization"],
            behavior=spec["behavior"],  # with the API server's defaults filled in
            idle=idle,
            loaded=loaded,
        )

    def scale_out_timeout(self) -> float:
        """Metrics lag for the load and for each step's new pods, one HPA sync (15 s) per step.

        Each step at least doubles the replicas (the chart's 100 % policy): log2(max/min) steps.
        """
        steps = math.ceil(math.log2(self.max_replicas / self.min_replicas)) + 1
        return METRICS_LAG_SECONDS * (steps + 1) + steps * HPA_SYNC_SECONDS

    def scale_in_timeout(self) -> float:
        """Metrics lag, the stabilisation window, then one policy period per scale-down step."""
        rules = self.behavior["scaleDown"]
        steps = scale_down_periods(self.behavior, self.max_replicas, self.min_replicas)
        period = max(p["periodSeconds"] for p in rules["policies"])
        return METRICS_LAG_SECONDS * 2 + rules["stabilizationWindowSeconds"] + steps * period


# Above the module's 900 s: the sum of this test's own bounded waits (install, idle metrics,
# scale-out, scale-in, uninstall) is about 1,200 s, and each of them reports better than a kill.
@pytest.mark.timeout(1260)
def test_hpa_scales_out_under_cpu_load_and_back_in_when_it_drops(
    cluster: Cluster, artifacts_dir: Path
) -> None:
    """Simulated CPU load above the target scales the API out to maxReplicas within the chart's
    scale-up rules; once it drops, the API scales back in to minReplicas, held back by the
    stabilisation window and within the scale-down rules.
    """
    namespace = new_namespace()
    # Idle load from the start, so that the pods have metrics as soon as they exist.
    load = SimulatedCpuLoad(cluster.dyn, namespace, container="api", cpu=IDLE_CPU)
    try:
        release, _ = install(cluster, HPA_TEST_VALUES, namespace=namespace)
        hpa = HpaSettings.read(cluster, release, namespace)
        assert hpa.idle < hpa.target < hpa.loaded, hpa
        observer = HpaObserver(cluster.dyn, hpa.name, namespace)
        report = partial(hpa_report, cluster.dyn, hpa.name, namespace)

        # Idle: minReplicas, and the simulated usage reaches the HPA through metrics-server.
        wait_until(
            lambda: observer.observe().holds(hpa.min_replicas, hpa.idle),
            120 + METRICS_LAG_SECONDS,
            f"the HPA to read {hpa.idle}% CPU at minReplicas={hpa.min_replicas}",
            diagnostics=report,
        )
        timeline = ReplicaTimeline(cluster.dyn, hpa.name, namespace)
        try:
            load_started = time.monotonic()
            load.set_cpu(LOAD_CPU)

            def capped_at_max() -> bool:
                """At maxReplicas under the full load, held there by maxReplicas itself."""
                seen = observer.observe()
                return (
                    seen.holds(hpa.max_replicas, hpa.loaded) and seen.limited == "TooManyReplicas"
                )

            wait_until(
                capped_at_max,
                hpa.scale_out_timeout(),
                f"the HPA to scale out to maxReplicas={hpa.max_replicas} at {hpa.loaded}% CPU",
                diagnostics=lambda: f"{report()}\nreplicas: {timeline.describe(load_started)}",
            )
            scaled_out = time.monotonic()
            wait_until(lambda: deployment_rolled_out(cluster, hpa.name, namespace), 60, "new pods")

            load_dropped = time.monotonic()
            load.set_cpu(IDLE_CPU)
            wait_until(
                lambda: observer.observe().holds(hpa.min_replicas, hpa.idle),
                hpa.scale_in_timeout(),
                f"the HPA to scale back in to minReplicas={hpa.min_replicas} at {hpa.idle}% CPU",
                diagnostics=lambda: f"{report()}\nreplicas: {timeline.describe(load_started)}",
            )
            scaled_in = time.monotonic()
        finally:
            timeline.stop()

        history = timeline.describe(load_started)
        summary = {
            "values": HPA_TEST_VALUES,
            "simulated_cpu": {"idle": IDLE_CPU, "load": LOAD_CPU},
            "utilization_percent": {"idle": hpa.idle, "load": hpa.loaded, "target": hpa.target},
            "scale_out_seconds": round(scaled_out - load_started, 1),
            "scale_in_seconds": round(scaled_in - load_dropped, 1),
            "load_dropped_after_seconds": round(load_dropped - load_started, 1),
            "replicas": [
                {"after_seconds": round(s.at - load_started, 1), "replicas": s.replicas}
                for s in timeline.steps
            ],
            "hpa_conditions": sorted(observer.reasons(load_started, scaled_in)),
            "behavior": hpa.behavior,
        }
        (artifacts_dir / "hpa-autoscaling.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(
            f"HPA {hpa.min_replicas} -> {hpa.max_replicas} replicas in "
            f"{summary['scale_out_seconds']}s, back in {summary['scale_in_seconds']}s: {history}"
        )

        assert not timeline.errors, timeline.errors
        steps = timeline.steps[1:]
        out = [s for s in steps if s.at < load_dropped]
        back = [s for s in steps if s.at >= load_dropped]
        # Out: only increases, up to exactly maxReplicas.
        assert out and all(a.replicas < b.replicas for a, b in pairwise(out)), history
        assert out[0].replicas > hpa.min_replicas and out[-1].replicas == hpa.max_replicas, history
        # Back in: only decreases, down to minReplicas.
        assert back and all(a.replicas > b.replicas for a, b in pairwise(back)), history
        assert back[-1].replicas == hpa.min_replicas, history
        # The stabilisation window held the first scale-in back: the HPA reported a lower
        # recommendation it did not act on yet, and scaled in no earlier than the window allows
        # (it counts from the last high recommendation, at most one sync before the load dropped).
        held_back = observer.reasons(load_dropped, back[0].at)
        assert "ScaleDownStabilized" in held_back, f"AbleToScale reasons {held_back}: {history}"
        window = hpa.behavior["scaleDown"]["stabilizationWindowSeconds"]
        assert back[0].at - load_dropped >= window - HPA_SYNC_SECONDS, (
            f"scaled in {back[0].at - load_dropped:.1f}s after the load dropped, within the "
            f"{window}s stabilisation window: {history}"
        )
        # Every step within the rate the behaviour's policies allow over their periods.
        violations = behaviour_violations(timeline.steps, hpa.behavior, slack=5)
        assert not violations, f"{violations}; replicas: {history}"
    finally:
        load.delete()

    uninstall_leaves_nothing(cluster, release, namespace)
