"""kube-linter's default checks, asserted on the rendered chart for every ci/ value set.

kube-linter itself cannot be installed on the project's machines (its Go module is not served
by the module proxy and no PyPI package ships it), so each of its default checks that applies
to the objects this chart renders is written out here; checkov (in `make chart-check`) covers
the same ground from a second tool. Check names are kube-linter's.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart.chart_support import (
    CI_VALUES,
    WORKLOAD_KINDS,
    of_kind,
    pod_specs,
    render,
    selects,
)

VALUE_SETS = sorted(CI_VALUES)
DEPRECATED_API_VERSIONS = re.compile(
    r"^(extensions/v1beta1|apps/v1beta\d|policy/v1beta1|autoscaling/v2beta\d)$"
)
SENSITIVE_HOST_PATHS = ("/", "/etc", "/var", "/var/run/docker.sock", "/proc", "/sys", "/root")


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_latest_tag_and_deprecated_apis(values_file: str) -> None:
    manifests = render(values_file)
    for manifest in manifests:
        assert not DEPRECATED_API_VERSIONS.match(manifest["apiVersion"]), manifest["kind"]
    for _, spec, _ in pod_specs(manifests):
        for container in containers(spec):
            image = container["image"]
            assert "@sha256:" in image or (":" in image and not image.endswith(":latest")), image


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_host_access_privileges_and_capabilities(values_file: str) -> None:
    """host-ipc, host-network, host-pid, privileged-container, privilege-escalation-container,
    run-as-non-root, no-read-only-root-fs, drop-net-raw-capability, docker-sock,
    sensitive-host-mounts, unsafe-sysctls, ssh-port."""
    for owner, spec, _ in pod_specs(render(values_file)):
        name = owner["metadata"]["name"]
        assert not (spec.get("hostIPC") or spec.get("hostNetwork") or spec.get("hostPID")), name
        assert not spec["securityContext"].get("sysctls"), name
        for volume in spec.get("volumes", []):
            host_path = volume.get("hostPath", {}).get("path")
            assert host_path is None or host_path not in SENSITIVE_HOST_PATHS, name
        for container in containers(spec):
            sc = container["securityContext"]
            assert sc.get("privileged") is not True
            assert sc.get("allowPrivilegeEscalation") is False
            assert sc.get("runAsNonRoot", spec["securityContext"].get("runAsNonRoot")) is True
            assert sc.get("readOnlyRootFilesystem") is True
            dropped = sc.get("capabilities", {}).get("drop", [])
            assert "ALL" in dropped or "NET_RAW" in dropped
            assert not sc.get("capabilities", {}).get("add")
            assert all(port["containerPort"] != 22 for port in container.get("ports", []))


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_probes_and_resource_requirements(values_file: str) -> None:
    """no-liveness-probe, no-readiness-probe (long-running pods), unset-cpu-requirements,
    unset-memory-requirements."""
    for owner, spec, _ in pod_specs(render(values_file)):
        for container in containers(spec):
            if owner["kind"] in WORKLOAD_KINDS:
                assert container.get("livenessProbe") and container.get("readinessProbe")
            assert container["resources"]["requests"].get("cpu")
            assert container["resources"]["limits"].get("memory")


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_env_var_secret(values_file: str) -> None:
    """env-var-secret: no literal value in a variable named like a secret."""
    for _, spec, _ in pod_specs(render(values_file)):
        for container in containers(spec):
            for env in container.get("env", []):
                if re.search(r"(?i)secret|password|token", env["name"]):
                    assert "value" not in env, env["name"]


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_services_selectors_and_service_accounts(values_file: str) -> None:
    """dangling-service, mismatching-selector, invalid-target-ports, non-existent-service-account,
    deprecated-service-account-field."""
    manifests = render(values_file)
    pods = list(pod_specs(manifests))
    service_accounts = {sa["metadata"]["name"] for sa in of_kind(manifests, "ServiceAccount")} | {
        "default"
    }
    for service in of_kind(manifests, "Service"):
        targets = [
            (spec, labels)
            for _, spec, labels in pods
            if selects(service["spec"]["selector"], labels)
        ]
        assert targets, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            for spec, _ in targets:
                if isinstance(port["targetPort"], str):
                    names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
                    assert port["targetPort"] in names
    for deployment in of_kind(manifests, "Deployment"):
        assert selects(
            deployment["spec"]["selector"]["matchLabels"],
            deployment["spec"]["template"]["metadata"]["labels"],
        )
    for _, spec, _ in pods:
        assert "serviceAccount" not in spec
        assert spec.get("serviceAccountName", "default") in service_accounts


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_rollouts_anti_affinity_and_disruption_budgets(values_file: str) -> None:
    """no-rolling-update-strategy, no-anti-affinity, pdb-max-unavailable, pdb-min-available,
    pdb-unhealthy-pod-eviction-policy."""
    manifests = render(values_file)
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in of_kind(manifests, "HorizontalPodAutoscaler")
    }
    scaled |= {so["spec"]["scaleTargetRef"]["name"] for so in of_kind(manifests, "ScaledObject")}
    for deployment in of_kind(manifests, "Deployment"):
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        if deployment["spec"].get("replicas", 2) > 1 or deployment["metadata"]["name"] in scaled:
            anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            assert anti["preferredDuringSchedulingIgnoredDuringExecution"] or anti.get(
                "requiredDuringSchedulingIgnoredDuringExecution"
            )
    for pdb in of_kind(manifests, "PodDisruptionBudget"):
        assert pdb["spec"].get("maxUnavailable", 1) not in (0, "0%")
        assert "minAvailable" not in pdb["spec"]
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


@pytest.mark.parametrize("values_file", [v for v in VALUE_SETS if v != "all-off-values"])
def test_non_isolated_pod(values_file: str) -> None:
    """non-isolated-pod: every pod is selected by a NetworkPolicy."""
    manifests = render(values_file)
    policies = of_kind(manifests, "NetworkPolicy")
    for owner, _, labels in pod_specs(manifests):
        assert any(selects(p["spec"]["podSelector"]["matchLabels"], labels) for p in policies), (
            owner["metadata"]["name"]
        )


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_every_checkov_skip_is_justified_in_place(values_file: str) -> None:
    for manifest in render(values_file):
        for key, value in (manifest["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
                assert len(reason.split()) >= 6, f"{check} needs a real justification: {reason!r}"
