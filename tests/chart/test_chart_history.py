"""The chart's history store (issue 17): API wiring, the in-chart Valkey, its policy and values."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml

from testkit.tools import REPO_ROOT
from tests.chart.chart_support import (
    Manifest,
    helm_args,
    of_kind,
    one,
    render,
    render_args,
    render_error,
    selects,
)

VALKEY = "fraud-fraud-detection-valkey"
HISTORY_VARS = ("FRAUD_HISTORY_URL", "FRAUD_HISTORY_CLUSTER", "FRAUD_HISTORY_TIMEOUT_S")


def api_env(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """The API container's environment by variable name."""
    deployment = one(manifests, "Deployment", "-api")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {env["name"]: env for env in container["env"]}


def valkey_container(manifests: list[Manifest]) -> dict[str, Any]:
    statefulset = one(manifests, "StatefulSet", "-valkey")
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["valkey"]
    return dict(containers[0])


def test_history_is_off_by_default_and_adds_nothing() -> None:
    manifests = render()
    assert not set(HISTORY_VARS) & set(api_env(manifests))
    assert not of_kind(manifests, "StatefulSet")
    assert not [m for m in manifests if "valkey" in m["metadata"]["name"]]


def test_in_chart_valkey_url_comes_from_the_generated_secret() -> None:
    manifests = render("history-values")
    env = api_env(manifests)
    assert env["FRAUD_HISTORY_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{VALKEY}-auth",
        "key": "url",
    }
    assert env["FRAUD_HISTORY_CLUSTER"]["value"] == "false"
    assert float(env["FRAUD_HISTORY_TIMEOUT_S"]["value"]) == 0.1
    secret = one(manifests, "Secret", "-valkey-auth")
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert re.fullmatch(r"[A-Za-z0-9]{32}", data["password"])
    # The URL names the ClusterIP Service and carries the same password.
    assert data["url"] == f"valkey://:{data['password']}@{VALKEY}.fraud.svc:6379/0"
    service = one(manifests, "Service", "-valkey")
    assert service["spec"]["ports"][0]["port"] == 6379
    # A changed password rolls the API pods (they read the URL at start).
    annotations = one(manifests, "Deployment", "-api")["spec"]["template"]["metadata"]
    assert "checksum/history" in annotations["annotations"]


def test_existing_secret_is_the_production_path() -> None:
    manifests = render("history-external-values")
    env = api_env(manifests)
    assert env["FRAUD_HISTORY_URL"] == {
        "name": "FRAUD_HISTORY_URL",
        "valueFrom": {"secretKeyRef": {"name": "fraud-history", "key": "url"}},
    }
    assert float(env["FRAUD_HISTORY_TIMEOUT_S"]["value"]) == 0.05
    # No in-chart store and no Secret of its own: the password never passes through values.
    assert not of_kind(manifests, "StatefulSet")
    assert sorted(s["metadata"]["name"] for s in of_kind(manifests, "Secret")) == [
        "fraud-fraud-detection-auth",
        "fraud-fraud-detection-id-hash-key",
    ]


def test_plain_url_and_cluster_mode_are_passed_through() -> None:
    env = api_env(
        render(
            history__enabled="true",
            history__url="redis://history.example:6379/0",
            history__cluster="true",
            history__timeoutSeconds="0.25",
        )
    )
    assert env["FRAUD_HISTORY_URL"]["value"] == "redis://history.example:6379/0"
    assert env["FRAUD_HISTORY_CLUSTER"]["value"] == "true"
    assert env["FRAUD_HISTORY_TIMEOUT_S"]["value"] == "0.25"


def test_valkey_existing_secret_replaces_the_generated_one() -> None:
    manifests = render("history-values", history__valkey__existingSecret="my-valkey")
    assert not [s for s in of_kind(manifests, "Secret") if "valkey" in s["metadata"]["name"]]
    ref = api_env(manifests)["FRAUD_HISTORY_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "my-valkey", "key": "url"}
    password = valkey_container(manifests)["env"][0]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "my-valkey", "key": "password"}


def test_valkey_is_hardened_persistent_and_probed() -> None:
    manifests = render("history-values")
    statefulset = one(manifests, "StatefulSet", "-valkey")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == f"{VALKEY}-headless"
    headless = one(manifests, "Service", "-valkey-headless")
    assert headless["spec"]["clusterIP"] == "None"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = valkey_container(manifests)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert re.fullmatch(r"valkey/valkey:\d+\.\d+\.\d+-[a-z]+", container["image"])
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert "valkey-cli" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert container["livenessProbe"]["tcpSocket"] == {"port": "valkey"}
    # The password is expanded by the kubelet from the Secret-backed variable, never inlined.
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(VALKEY_PASSWORD)"
    assert container["env"] == [
        {
            "name": "VALKEY_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": f"{VALKEY}-auth", "key": "password"}},
        }
    ]
    assert args[args.index("--dir") + 1] == "/data"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] == "data"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "256Mi"
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"


def test_valkey_persistence_defaults_keep_the_data_and_can_be_tuned() -> None:
    manifests = render(
        "history-values",
        history__valkey__persistence__retentionPolicy__whenDeleted="Retain",
        history__valkey__persistence__storageClassName="fast",
        history__valkey__save="",
        history__valkey__appendonly="false",
    )
    spec = one(manifests, "StatefulSet", "-valkey")["spec"]
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    assert spec["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    args = valkey_container(manifests)["args"]
    assert args[args.index("--save") + 1] == ""
    assert args[args.index("--appendonly") + 1] == "no"


def test_only_the_api_pods_reach_valkey_and_the_api_may_reach_it() -> None:
    manifests = render("history-values")
    policies = {p["metadata"]["name"]: p for p in of_kind(manifests, "NetworkPolicy")}
    valkey_policy = policies[VALKEY]["spec"]
    valkey_labels = one(manifests, "StatefulSet", "-valkey")["spec"]["template"]["metadata"][
        "labels"
    ]
    api_labels = one(manifests, "Deployment", "-api")["spec"]["template"]["metadata"]["labels"]
    ui_labels = one(manifests, "Deployment", "-ui")["spec"]["template"]["metadata"]["labels"]
    assert selects(valkey_policy["podSelector"]["matchLabels"], valkey_labels)
    assert valkey_policy["policyTypes"] == ["Ingress", "Egress"]
    assert valkey_policy["egress"] == []
    (rule,) = valkey_policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}
    assert selects(peer["podSelector"]["matchLabels"], api_labels)
    assert not selects(peer["podSelector"]["matchLabels"], ui_labels)
    assert rule["ports"] == [{"port": "valkey", "protocol": "TCP"}]
    # The API's egress policy (DNS only otherwise) lets it reach the Valkey pods on 6379.
    api_egress = policies["fraud-fraud-detection-api"]["spec"]["egress"]
    to_valkey = [
        e
        for e in api_egress
        if any(selects(p.get("podSelector", {}).get("matchLabels", {"x": "y"}), valkey_labels)
               for p in e.get("to", []))
    ]  # fmt: skip
    assert [e["ports"] for e in to_valkey] == [[{"port": 6379, "protocol": "TCP"}]]


def test_api_egress_to_an_external_store() -> None:
    policies = of_kind(render("history-external-values"), "NetworkPolicy")
    api = next(p for p in policies if p["metadata"]["name"] == "fraud-fraud-detection-api")
    rules = [e for e in api["spec"]["egress"] if {"port": 6379, "protocol": "TCP"} in e["ports"]]
    assert rules == [
        {
            "ports": [{"port": 6379, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}],
        }
    ]
    assert not any("valkey" in p["metadata"]["name"] for p in policies)
    # Without egressTo: any address, on the store's port only.
    policies = of_kind(
        render("history-external-values", history__egressTo="null", history__port="6380"),
        "NetworkPolicy",
    )
    api = next(p for p in policies if p["metadata"]["name"] == "fraud-fraud-detection-api")
    assert {"ports": [{"port": 6380, "protocol": "TCP"}]} in api["spec"]["egress"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"history__enabled": "yes"}, "/history/enabled"),
        ({"history__bogus": "1"}, "'bogus' not allowed"),
        ({"history__url": "http://valkey:6379"}, "/history/url"),
        ({"history__timeoutSeconds": "0"}, "/history/timeoutSeconds"),
        ({"history__port": "70000"}, "/history/port"),
        ({"history__existingSecretKey": ""}, "/history/existingSecretKey"),
        ({"history__valkey__appendfsync": "sometimes"}, "/history/valkey/appendfsync"),
        ({"history__valkey__save": "every hour"}, "/history/valkey/save"),
        ({"history__valkey__maxmemory": "lots"}, "/history/valkey/maxmemory"),
        ({"history__valkey__maxmemoryPolicy": "lru"}, "/history/valkey/maxmemoryPolicy"),
        ({"history__valkey__persistence__size": "1GB"}, "/history/valkey/persistence/size"),
        ({"history__valkey__image__digest": "sha256:no"}, "/history/valkey/image/digest"),
        ({"history__valkey__resources__limits": "null"}, "/history/valkey/resources"),
        ({"history__valkey__livenessProbe__httpGet__path": "/"}, "not allowed"),
        (
            {"history__valkey__persistence__retentionPolicy__whenDeleted": "Keep"},
            "/history/valkey/persistence/retentionPolicy/whenDeleted",
        ),
    ],
)
def test_schema_rejects_bad_history_values(values: dict[str, str], message: str) -> None:
    assert message in render_error(**values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"history__enabled": "true"}, "needs exactly one store"),
        (
            {
                "history__enabled": "true",
                "history__url": "valkey://a:6379",
                "history__existingSecret": "s",
            },
            "needs exactly one store",
        ),
        (
            {"history__enabled": "true", "history__url": "valkey://:hunter2@valkey:6379/0"},
            "must not hold a password",
        ),
        (
            {
                "history__enabled": "true",
                "history__valkey__enabled": "true",
                "history__cluster": "true",
            },
            "the in-chart Valkey is a single node",
        ),
        ({"history__valkey__enabled": "true"}, "history.valkey.enabled needs history.enabled"),
    ],
)  # fmt: skip
def test_history_combinations_the_schema_cannot_express_are_rejected(
    values: dict[str, str], message: str
) -> None:
    assert message in render_error(**values)


def skaffold_profile_values(profile: str) -> dict[str, str]:
    """The helm ``--set`` values of skaffold.yaml's release with one profile's patches applied."""
    config = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
    values = {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in config["deploy"]["helm"]["releases"][0]["setValues"].items()
    }
    (found,) = [p for p in config["profiles"] if p["name"] == profile]
    prefix = "/deploy/helm/releases/0/setValues/"
    for patch in found["patches"]:
        if patch["op"] == "add" and patch["path"].startswith(prefix):
            value = patch["value"]
            values[patch["path"].removeprefix(prefix)] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return values


@pytest.mark.parametrize("profile", ["no-ui", "loadtest"])
def test_skaffold_profiles_set_only_real_chart_values(profile: str) -> None:
    """Every value a skaffold profile sets exists (the schema rejects unknown keys) and renders."""
    manifests = render_args(helm_args(set_values=skaffold_profile_values(profile)))
    if profile == "loadtest":
        route = one(manifests, "HTTPRoute", "-api")
        assert "fraud-gateway.envoy-gateway-system.svc.cluster.local" in route["spec"]["hostnames"]
        assert not of_kind(manifests, "Ingress")
        policy = one(manifests, "BackendTrafficPolicy")
        assert "172.16.0.0/12" in str(policy["spec"])
        assert "0.0.0.0/0" not in str(policy["spec"])
