"""values.schema.json rejects wrong values; the vendored schemas and the skaffold check work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testkit.tools import REPO_ROOT, require_tool
from tests.chart.chart_support import CHART, load_yaml, render, render_error

SCHEMAS = REPO_ROOT / "k8s" / "schemas"
# kubeconform's -schema-location templates (the same as scripts/chart-check.sh).
NATIVE_LAYOUT = "{{ .NormalizedKubernetesVersion }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
CRD_LAYOUT = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api__replicaCount": "two"}, "/api/replicaCount"),
        ({"api__bogus": "1"}, "'bogus' not allowed"),
        ({"unknownTopLevel": "1"}, "'unknownTopLevel' not allowed"),
        ({"ingress__rateLimit__requestsPerMinute": "0"}, "/ingress/rateLimit/requestsPerMinute"),
        ({"ingress__rateLimit__requestsPerMinute": "lots"}, "/ingress/rateLimit/requestsPerMinute"),
        ({"api__image__pullPolicy": "Sometimes"}, "/api/image/pullPolicy"),
        ({"api__image__digest": "sha256:nothex"}, "/api/image/digest"),
        ({"autoscaling__targetCPUUtilizationPercentage": "150"}, "targetCPUUtilizationPercentage"),
        ({"ingress__api__host": "Not A Host"}, "/ingress/api/host"),
        ({"api__resources__limits": "null"}, "/api/resources"),
        ({"networkPolicy__enabled": "maybe"}, "/networkPolicy/enabled"),
        ({"httpRoute__api__rateLimit__requestsPerMinute": "0"}, "requestsPerMinute"),
        ({"httpRoute__api__rateLimit__burst": "-1"}, "/httpRoute/api/rateLimit/burst"),
        ({"httpRoute__api__rateLimit__clientCIDRs": "{10.0.0.1}"}, "clientCIDRs/0"),
        ({"httpRoute__api__requestTimeout": "30"}, "/httpRoute/api/requestTimeout"),
        ({"httpRoute__api__maxBodySize": "64m"}, "/httpRoute/api/maxBodySize"),
        ({"httpRoute__api__hostnames": "{Not A Host}"}, "/httpRoute/api/hostnames/0"),
        ({"httpRoute__parentRefs": "{}"}, "/httpRoute/parentRefs"),
        ({"httpRoute__api__paths[0]__type": "Prefix"}, "/httpRoute/api/paths/0/type"),
        ({"api__idHashKey__secretKey": ""}, "/api/idHashKey/secretKey"),
        # The ingress-nginx selectors were renamed (docs/deployment.md, migration).
        ({"networkPolicy__ingressControllerPodSelector__a": "b"}, "not allowed"),
    ],
)
def test_schema_rejects_wrong_types_unknown_keys_and_bad_values(
    values: dict[str, str], message: str
) -> None:
    assert message in render_error(**values)


def test_value_combinations_the_schema_cannot_express_are_rejected() -> None:
    assert "maxReplicas must be >=" in render_error(
        autoscaling__minReplicas="5", autoscaling__maxReplicas="3"
    )
    assert "needs a metric" in render_error(autoscaling__targetCPUUtilizationPercentage="0")
    assert "needs ui.enabled" in render_error(ingress__enabled="true", ui__enabled="false")
    assert "needs ui.enabled" in render_error(httpRoute__enabled="true", ui__enabled="false")


def test_schema_accepts_the_documented_defaults_and_every_value_is_documented() -> None:
    # helm validates values.yaml against the schema on every render.
    assert render()
    readme = (CHART / "README.md").read_text()
    values = load_yaml(CHART / "values.yaml")

    def leaves(node: object, prefix: str = "") -> list[str]:
        if (
            isinstance(node, dict)
            and node
            and not prefix.rstrip(".").endswith(
                ("resources", "Probe", "behavior", "Selector", "labels")
            )
        ):
            return [
                leaf for key, child in node.items() for leaf in leaves(child, f"{prefix}{key}.")
            ]
        return [prefix.rstrip(".")]

    undocumented = [key for key in leaves(values) if f"| {key} |" not in readme]
    assert undocumented == []


def test_chart_metadata_is_semver_with_kube_version_and_app_version() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    major, minor, patch = (int(part) for part in chart["version"].split("."))
    assert major >= 0 and minor >= 0 and patch >= 0
    assert chart["kubeVersion"] == ">=1.29.0-0"
    assert chart["appVersion"]


def test_vendored_crd_schemas_are_strict() -> None:
    for name in (
        "monitoring.coreos.com/servicemonitor_v1.json",
        "keda.sh/scaledobject_v1alpha1.json",
        "gateway.networking.k8s.io/httproute_v1.json",
        "gateway.networking.k8s.io/gateway_v1.json",
        "gateway.networking.k8s.io/gatewayclass_v1.json",
        "gateway.envoyproxy.io/backendtrafficpolicy_v1alpha1.json",
        "gateway.envoyproxy.io/envoyproxy_v1alpha1.json",
    ):
        schema = json.loads((SCHEMAS / "crds" / name).read_text())
        assert schema["properties"]["spec"]["additionalProperties"] is False
        assert schema["properties"]["kind"]["enum"]


@pytest.mark.parametrize("minor", ["1.29", "1.35"])
def test_kubeconform_rejects_an_unknown_field_with_the_offline_schemas(
    minor: str, tmp_path: Path
) -> None:
    kubeconform = require_tool("kubeconform", "make system-deps")
    out = tmp_path / "schemas"
    subprocess.run(
        [sys.executable, str(SCHEMAS / "kubeconform_schemas.py"), str(out), minor],
        check=True,
        capture_output=True,
        timeout=120,
    )
    manifests = render("keda-values") + render("gateway-api-values")
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    scaled = next(m for m in manifests if m["kind"] == "ScaledObject")
    route = next(m for m in manifests if m["kind"] == "HTTPRoute")
    policy = next(m for m in manifests if m["kind"] == "BackendTrafficPolicy")
    bad_deployment = {**deployment, "spec": {**deployment["spec"], "replicaz": 2}}
    bad_scaled = {**scaled, "spec": {**scaled["spec"], "pollingIntervall": 5}}
    bad_route = {**route, "spec": {**route["spec"], "hostname": ["x.example.com"]}}
    bad_policy = {**policy, "spec": {**policy["spec"], "requestBuffer": {"limit": "lots"}}}
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump_all(manifests))
    bad.write_text(yaml.safe_dump_all([bad_deployment, bad_scaled, bad_route, bad_policy]))
    cmd = [
        kubeconform,
        "-strict",
        "-summary",
        "-kubernetes-version",
        f"{minor}.0",
        "-schema-location",
        f"{out}/{NATIVE_LAYOUT}",
        "-schema-location",
        f"{SCHEMAS}/crds/{CRD_LAYOUT}",
    ]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rejected = subprocess.run(
        [*cmd, str(bad)], capture_output=True, text=True, timeout=120, check=False
    )
    assert rejected.returncode != 0
    assert "'replicaz' not allowed" in rejected.stdout
    assert "'pollingIntervall' not allowed" in rejected.stdout
    assert "'hostname' not allowed" in rejected.stdout
    assert "/spec/requestBuffer/limit" in rejected.stdout


def test_skaffold_config_is_validated_against_skaffolds_own_schema(tmp_path: Path) -> None:
    require_tool("go", "make system-deps (Go for the skaffold schema, from its Go module)")
    version = next(
        line.split("=", 1)[1].strip()
        for line in (REPO_ROOT / "scripts" / "tool-versions.env").read_text().splitlines()
        if line.startswith("SKAFFOLD_MODULE_VERSION=")
    )
    script = str(SCHEMAS / "validate_skaffold.py")
    good = subprocess.run(
        [sys.executable, script, str(REPO_ROOT / "skaffold.yaml"), version],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    broken = tmp_path / "skaffold.yaml"
    broken.write_text((REPO_ROOT / "skaffold.yaml").read_text().replace("chartPath:", "chartPth:"))
    bad = subprocess.run(
        [sys.executable, script, str(broken), version],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad.returncode == 1
    assert "chartPth" in bad.stderr
