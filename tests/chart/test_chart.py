"""Template tests of the Helm chart, rendered with the real helm CLI for every ci/ value set."""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fraud_contract.api import LIVE_PATH, READY_PATH, SCORE_PATH
from service.settings import ServiceSettings
from testkit.tools import REPO_ROOT
from tests.chart.chart_support import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    helm,
    load_yaml,
    of_kind,
    one,
    pod_specs,
    render,
    render_args,
    render_error,
    selects,
)

API = f"{RELEASE}-fraud-detection-api"
UI = f"{RELEASE}-fraud-detection-ui"
VALUE_SETS = sorted(CI_VALUES)
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


def test_ci_value_sets_cover_the_required_scenarios() -> None:
    assert {
        "default-values",
        "ingress-tls-values",
        "gateway-api-values",
        "keda-values",
        "custom-metric-hpa-values",
        "all-off-values",
        "history-values",
        "history-external-values",
    } <= set(CI_VALUES)


@pytest.mark.parametrize(
    ("values_file", "expected"),
    [
        (
            "default-values",
            {
                "Deployment": 2,
                "Service": 2,
                "HorizontalPodAutoscaler": 1,
                "PodDisruptionBudget": 1,
                "NetworkPolicy": 3,
                "Secret": 2,
                "ServiceAccount": 1,
                "Pod": 1,
            },
        ),
        (
            "keda-values",
            {
                "Deployment": 2,
                "Service": 2,
                "ScaledObject": 1,
                "ServiceMonitor": 1,
                "ConfigMap": 1,
                "PodDisruptionBudget": 1,
                "NetworkPolicy": 3,
                "Secret": 2,
                "ServiceAccount": 1,
                "Pod": 1,
            },
        ),
        (
            "custom-metric-hpa-values",
            {
                "Deployment": 2,
                "Service": 2,
                "HorizontalPodAutoscaler": 1,
                "ServiceMonitor": 1,
                "PodDisruptionBudget": 1,
                "NetworkPolicy": 3,
                "Secret": 1,
                "ServiceAccount": 1,
                "Pod": 1,
            },
        ),
        ("all-off-values", {"Deployment": 1, "Service": 1, "Secret": 1, "Pod": 1}),
        (
            "gateway-api-values",
            {
                "Deployment": 2,
                "Service": 2,
                "HorizontalPodAutoscaler": 1,
                "PodDisruptionBudget": 1,
                "NetworkPolicy": 3,
                "Secret": 1,
                "ServiceAccount": 1,
                "Pod": 1,
                "HTTPRoute": 2,
                "BackendTrafficPolicy": 1,
            },
        ),
    ],
)
def test_value_sets_render_exactly_the_expected_objects(
    values_file: str, expected: dict[str, int]
) -> None:
    kinds: dict[str, int] = {}
    for manifest in render(values_file):
        kinds[manifest["kind"]] = kinds.get(manifest["kind"], 0) + 1
    assert kinds == expected


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_every_object_has_standard_labels_and_the_release_namespace(values_file: str) -> None:
    for manifest in render(values_file):
        labels = manifest["metadata"]["labels"]
        assert all(label in labels for label in STANDARD_LABELS), manifest["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert manifest["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_pods_run_non_root_read_only_without_privileges(values_file: str) -> None:
    for owner, spec, _ in pod_specs(render(values_file)):
        name = owner["metadata"]["name"]
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert (pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]) == (
            10001,
            10001,
            10001,
        )
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), name
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert not any("hostPath" in v for v in volumes.values()), name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["privileged"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["runAsNonRoot"] is True, name
            # The only writable places are /tmp, an emptyDir with a size limit, and a
            # StatefulSet's own data volumes (its volumeClaimTemplates, with a size), or a
            # per-pod ephemeral claim with a size (the ledger's spool).
            claims = {c["metadata"]["name"] for c in owner["spec"].get("volumeClaimTemplates", [])}
            claims |= {
                name
                for name, volume in volumes.items()
                if volume.get("emptyDir", {}).get("sizeLimit")
                or volume.get("ephemeral", {})
                .get("volumeClaimTemplate", {})
                .get("spec", {})
                .get("resources", {})
                .get("requests", {})
                .get("storage")
            }
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1, name
            assert volumes[tmp[0]["name"]]["emptyDir"]["sizeLimit"], name
            assert all(
                m.get("readOnly")
                for m in container["volumeMounts"]
                if m["mountPath"] != "/tmp" and m["name"] not in claims
            )


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_containers_request_cpu_and_memory_and_limit_memory(values_file: str) -> None:
    for owner, spec, _ in pod_specs(render(values_file)):
        for container in spec["containers"]:
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], owner[
                "metadata"
            ]["name"]
            assert resources["limits"]["memory"], owner["metadata"]["name"]


def test_api_probes_use_readyz_and_livez_and_allow_a_slow_start() -> None:
    container = one(render(), "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000}
    assert container["startupProbe"]["httpGet"] == {"path": READY_PATH, "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": "http"}
    startup = container["startupProbe"]
    # The service is ready in seconds; the startup budget still tolerates a slow node.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    # Liveness must not kill a pod that is merely busy: several failures over >= 20 s.
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 20


def test_ui_probes_use_healthz() -> None:
    container = one(render(), "Deployment", "-ui")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 7860}
    # The UI listens where the probes and the Service look (its settings: FRAUD_UI_HOST/PORT).
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["FRAUD_UI_HOST"], env["FRAUD_UI_PORT"]) == ("0.0.0.0", "7860")


@pytest.mark.parametrize("drain", [None, "3"])
def test_graceful_termination_fits_in_the_grace_period(drain: str | None) -> None:
    overrides = {} if drain is None else {"api__shutdownDrainSeconds": drain}
    spec = one(render(**overrides), "Deployment", "-api")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    env = {item["name"]: item.get("value") for item in container["env"]}
    # The preStop sleep is the drain: by default the entrypoint (docker/serve.sh) adds none.
    entrypoint_drain = int(env["FRAUD_SHUTDOWN_DRAIN_S"])
    assert entrypoint_drain == (0 if drain is None else int(drain))
    # preStop and then the entrypoint's drain run inside the grace period; after them the
    # slowest request the service allows (its request timeout) must still finish before SIGKILL.
    request_timeout = ServiceSettings.model_fields["request_timeout_s"].default
    budget = int(pre_stop[1]) + entrypoint_drain + request_timeout
    assert spec["terminationGracePeriodSeconds"] > budget


def test_ingress_accepts_the_largest_file_the_service_accepts() -> None:
    ingress = one(render(ingress__enabled="true"), "Ingress", "-api")
    buffering = ingress["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/proxy-request-buffering"
    ]
    assert buffering == "on"  # slow clients never reach the API
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    limit = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    assert limit >= ServiceSettings.model_fields["max_file_bytes"].default


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_selectors_match_their_pods_and_services_reach_the_right_component(
    values_file: str,
) -> None:
    manifests = render(values_file)
    deployments = of_kind(manifests, "Deployment") + of_kind(manifests, "StatefulSet")
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
    for service in of_kind(manifests, "Service"):
        matched = [
            d
            for d in deployments
            if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        # A StatefulSet's governing (headless) Service is named after it plus "-headless".
        service_name = service["metadata"]["name"].removesuffix("-headless")
        assert [d["metadata"]["name"] for d in matched] == [service_name]
        target_ports = {p["targetPort"] for p in service["spec"]["ports"]}
        container_ports = {
            p["name"] for p in matched[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert target_ports <= container_ports
    for pdb in of_kind(manifests, "PodDisruptionBudget"):
        matched = [
            d
            for d in deployments
            if selects(
                pdb["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert len(matched) == 1


def test_api_and_ui_selectors_do_not_overlap() -> None:
    manifests = render()
    api_pods = one(manifests, "Deployment", "-api")["spec"]["template"]["metadata"]["labels"]
    ui_selector = one(manifests, "Deployment", "-ui")["spec"]["selector"]["matchLabels"]
    assert not selects(ui_selector, api_pods)


def test_hpa_and_keda_are_mutually_exclusive() -> None:
    error = render_error(keda__enabled="true", autoscaling__enabled="true")
    assert "mutually exclusive" in error
    keda = render("keda-values")
    assert not of_kind(keda, "HorizontalPodAutoscaler")
    assert one(keda, "ScaledObject")["spec"]["scaleTargetRef"]["name"] == API
    hpa = render()
    assert not of_kind(hpa, "ScaledObject")
    # With an autoscaler the Deployment leaves replicas alone (helm upgrade must not reset them).
    for values in (hpa, keda):
        assert "replicas" not in one(values, "Deployment", "-api")["spec"]
    assert one(render("all-off-values"), "Deployment", "-api")["spec"]["replicas"] == 1


def test_hpa_targets_the_api_with_cpu_and_a_latency_minded_behaviour() -> None:
    hpa = one(render(), "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": API,
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_hpa_test_values_change_only_the_scale_down_window() -> None:
    """The e2e autoscaling test's values render the defaults except a shorter scale-down window."""
    # Not a random key (and pod checksum) each render.
    key = {"auth__apiKeys": "{fixed-key-0123456789}", "api__idHashKey__existingSecret": "hash-key"}
    default = copy.deepcopy(render(**key))  # the rendered documents are shared: copy to edit
    short = copy.deepcopy(render("hpa-scale-in-values", **key))
    windows = [
        one(manifests, "HorizontalPodAutoscaler")["spec"]["behavior"]["scaleDown"].pop(
            "stabilizationWindowSeconds"
        )
        for manifests in (default, short)
    ]
    assert windows[0] >= 300 and 0 < windows[1] < 300, windows
    assert short == default


def test_custom_metric_hpa_uses_the_metric_prometheus_adapter_serves() -> None:
    hpa = one(render("custom-metric-hpa-values"), "HorizontalPodAutoscaler")
    pods_metrics = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert len(pods_metrics) == 1
    adapter = load_yaml(REPO_ROOT / "k8s" / "prometheus-adapter-values.yaml")
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert pods_metrics[0]["metric"]["name"] in served
    assert pods_metrics[0]["target"] == {"type": "AverageValue", "averageValue": "10"}


def test_keda_prometheus_trigger_queries_this_release() -> None:
    triggers = one(render("keda-values"), "ScaledObject")["spec"]["triggers"]
    prometheus = next(t for t in triggers if t["type"] == "prometheus")
    assert f'namespace="{NAMESPACE}"' in prometheus["metadata"]["query"]
    assert f'service="{API}"' in prometheus["metadata"]["query"]
    assert prometheus["metadata"]["threshold"] == "6"


@pytest.mark.parametrize("values_file", [v for v in VALUE_SETS if v != "all-off-values"])
def test_network_policies_select_every_pod_and_admit_only_the_intended_peers(
    values_file: str,
) -> None:
    manifests = render(values_file)
    policies = of_kind(manifests, "NetworkPolicy")
    pods = {owner["metadata"]["name"]: labels for owner, _, labels in pod_specs(manifests)}
    for name, labels in pods.items():
        assert any(selects(p["spec"]["podSelector"]["matchLabels"], labels) for p in policies), name
    api_policy = one(policies, "NetworkPolicy", "-api")
    api_labels = pods[API]
    assert selects(api_policy["spec"]["podSelector"]["matchLabels"], api_labels)
    peers = api_policy["spec"]["ingress"][0]["from"]
    same_namespace = [
        p["podSelector"]["matchLabels"] for p in peers if "namespaceSelector" not in p
    ]
    # In the release's namespace only the UI and the test pod may call the API.
    allowed = {
        name for name, labels in pods.items() if any(selects(sel, labels) for sel in same_namespace)
    }
    assert allowed == {UI, f"{RELEASE}-fraud-detection-test-score"}
    other_namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in peers
        if "namespaceSelector" in p
    }
    gateway_namespace = "gateway-system" if values_file == "gateway-api-values" else None
    assert other_namespaces == {gateway_namespace or "envoy-gateway-system", "monitoring"}
    assert api_policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The UI may call the API pods on the API port (and nothing else but DNS).
    ui_policy = one(policies, "NetworkPolicy", "-ui")
    to_api = [
        rule
        for rule in ui_policy["spec"]["egress"]
        if any(
            selects(peer.get("podSelector", {}).get("matchLabels", {"x": "x"}), api_labels)
            for peer in rule["to"]
        )
    ]
    assert [rule["ports"] for rule in to_api] == [[{"port": 3000, "protocol": "TCP"}]]


def test_ingress_limits_each_client_to_100_requests_a_minute_by_default() -> None:
    ingress = one(render(ingress__enabled="true"), "Ingress", "-api")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/limit-rpm"] == "100"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    ui_ingress = one(render(ingress__enabled="true"), "Ingress", "-ui")
    assert "nginx.ingress.kubernetes.io/limit-rpm" not in (
        ui_ingress["metadata"].get("annotations") or {}
    )
    unlimited = one(
        render(ingress__enabled="true", ingress__rateLimit__enabled="false"), "Ingress", "-api"
    )
    assert not any("limit-" in key for key in unlimited["metadata"]["annotations"])


def test_ingress_tls_hosts_and_backends() -> None:
    manifests = render("ingress-tls-values")
    api = one(manifests, "Ingress", "-api")
    assert api["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rpm"] == "300"
    assert (
        api["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-whitelist"]
        == "10.0.0.0/8"
    )
    assert api["spec"]["tls"] == [
        {"secretName": "fraud-detection-tls", "hosts": ["fraud-api.example.com"]}
    ]
    hosts = [rule["host"] for rule in api["spec"]["rules"]]
    assert hosts == [
        "fraud-api.example.com",
        "ingress-nginx-controller.ingress-nginx.svc.cluster.local",
    ]
    for rule in api["spec"]["rules"]:
        assert rule["http"]["paths"][0]["backend"]["service"] == {
            "name": API,
            "port": {"name": "http"},
        }
    ui = one(manifests, "Ingress", "-ui")
    assert ui["spec"]["tls"][0]["hosts"] == ["fraud-ui.example.com"]
    assert ui["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == UI


def test_ui_calls_the_api_service_with_the_key_from_the_secret() -> None:
    manifests = render()
    env = {
        e["name"]: e
        for e in one(manifests, "Deployment", "-ui")["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    service = one(manifests, "Service", "-api")
    assert env["FRAUD_UI_API_URL"]["value"] == f"http://{API}:{service['spec']['ports'][0]['port']}"
    secret = one(manifests, "Secret", "-auth")
    assert env["FRAUD_UI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "ui-api-key",
    }


def test_api_reads_its_keys_from_the_mounted_secret_file() -> None:
    manifests = render()
    spec = one(manifests, "Deployment", "-api")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth")
    volume = next(v for v in spec["volumes"] if v["name"] == "auth")
    item = volume["secret"]["items"][0]
    assert env["FRAUD_API_KEYS_FILE"] == f"{mount['mountPath']}/{item['path']}"
    secret = one(manifests, "Secret", "-auth")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    keys_file = base64.b64decode(secret["data"][item["key"]]).decode()
    ui_key = base64.b64decode(secret["data"]["ui-api-key"]).decode()
    assert len(ui_key) == 32
    assert keys_file.splitlines() == [ui_key]
    # Without auth there is neither a key file nor a Secret.
    off = render(auth__enabled="false")
    assert not [m for m in of_kind(off, "Secret") if m["metadata"]["name"].endswith("-auth")]
    assert "FRAUD_API_KEYS_FILE" not in str(one(off, "Deployment", "-api"))


def test_existing_secret_is_used_instead_of_creating_one() -> None:
    manifests = render("custom-metric-hpa-values")
    assert [m["metadata"]["name"] for m in of_kind(manifests, "Secret")] == [
        f"{RELEASE}-fraud-detection-id-hash-key"
    ]
    volume = next(
        v
        for v in one(manifests, "Deployment", "-api")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "auth"
    )
    assert volume["secret"]["secretName"] == "fraud-api-keys"


def test_explicit_api_keys_all_go_into_the_key_file() -> None:
    secret = one(
        render(**{"auth__apiKeys": "{first-key-0123456789,second-key-0123456789}"}),
        "Secret",
        "-auth",
    )
    assert base64.b64decode(secret["data"]["api-keys"]).decode().splitlines() == [
        "first-key-0123456789",
        "second-key-0123456789",
    ]
    assert base64.b64decode(secret["data"]["ui-api-key"]).decode() == "first-key-0123456789"


def test_helm_test_pod_scores_a_transaction_through_the_service() -> None:
    manifests = render()
    pod = one(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    api_container = one(manifests, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["image"] == api_container["image"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SCORE_URL"]["value"] == f"http://{API}:3000{SCORE_PATH}"
    assert env["API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "ui-api-key"
    script = container["args"][0]
    compile(script, "helm-test", "exec")  # the inline script is valid Python
    assert "fraud_probability" in script
    assert pod["spec"]["restartPolicy"] == "Never"


def test_image_reference_uses_tag_appversion_or_digest() -> None:
    def api_image(**values: str) -> str:
        return one(render(**values), "Deployment", "-api")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"]

    app_version = load_yaml(REPO_ROOT / "charts" / "fraud-detection" / "Chart.yaml")["appVersion"]
    assert api_image() == f"fraud-scoring:{app_version}"
    assert api_image(api__image__tag="abc123") == "fraud-scoring:abc123"
    digest = "sha256:" + "a" * 64
    assert api_image(api__image__digest=digest) == f"fraud-scoring@{digest}"


def test_monitoring_objects_scrape_the_api_service() -> None:
    manifests = render("keda-values")
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service", "-api")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboard = one(manifests, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "bentoml_service_request_in_progress" in dashboard["data"]["fraud-detection.json"]


def test_topology_spread_and_anti_affinity_spread_api_replicas() -> None:
    spec = one(render(), "Deployment", "-api")["spec"]["template"]["spec"]
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize(
    ("values_file", "expected"),
    [
        ("default-values", ["port-forward svc/fraud-fraud-detection-api 3000:3000", "X-API-Key"]),
        ("ingress-tls-values", ["https://fraud-api.example.com/docs", "300 requests per minute"]),
        (
            "gateway-api-values",
            [
                "Gateway gateway-system/platform-gateway listener https",
                "API: fraud-api.example.com",
                "300 requests per minute",
                "buffered at the gateway up to 32Mi",
            ],
        ),
        ("all-off-values", ["helm test fraud"]),
        (
            "history-values",
            [
                "the in-chart Valkey fraud-fraud-detection-valkey",
                "fraud-fraud-detection-valkey-auth",
            ],
        ),
        ("history-external-values", ["the URL in Secret fraud-history (key url)"]),
    ],
)
def test_notes_tell_how_to_reach_and_check_the_release(
    values_file: str, expected: list[str], tmp_path: Path
) -> None:
    # helm renders NOTES.txt only on install; render it as a ConfigMap from a copy of the chart.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes.render" -}}\n' + notes + "{{- end }}\n"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "notes.render" . | toJson }}\n'
    )
    out = subprocess.run(
        [helm(), "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--show-only",
         "templates/notes.yaml", "-f", str(CI_VALUES[values_file])],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    text = yaml.safe_load(out)["data"]["notes"]
    for snippet in expected:
        assert snippet in text
    assert "<no value>" not in text
    if values_file == "all-off-values":
        assert "X-API-Key" not in text
        assert "7860" not in text


def test_http_routes_attach_to_the_named_gateway_and_reach_the_services() -> None:
    manifests = render("gateway-api-values")
    api, ui = one(manifests, "HTTPRoute", "-api"), one(manifests, "HTTPRoute", "-ui")
    for route in (api, ui):
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert route["spec"]["parentRefs"] == [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "platform-gateway",
                "namespace": "gateway-system",
                "sectionName": "https",
            }
        ]
    assert api["spec"]["hostnames"] == [
        "fraud-api.example.com",
        "fraud-gateway.gateway-system.svc.cluster.local",
    ]
    (rule,) = api["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["timeouts"] == {"request": "40s"}
    service = one(manifests, "Service", "-api")
    assert rule["backendRefs"] == [
        {
            "group": "",
            "kind": "Service",
            "name": API,
            "port": service["spec"]["ports"][0]["port"],
            "weight": 1,
        }
    ]
    assert ui["spec"]["hostnames"] == ["fraud-ui.example.com"]
    assert ui["spec"]["rules"][0]["backendRefs"][0]["name"] == UI
    # The UI's event streams stay open: no request timeout by default.
    assert ui["spec"]["rules"][0]["timeouts"] == {"request": "0s"}
    # No UI route without the UI; no route at all when the option is off.
    no_ui = render("gateway-api-values", ui__enabled="false", httpRoute__ui__enabled="false")
    assert [r["metadata"]["name"] for r in of_kind(no_ui, "HTTPRoute")] == [API]
    assert not of_kind(render(), "HTTPRoute")
    assert "httpRoute.ui.enabled needs ui.enabled" in render_error(
        "gateway-api-values", ui__enabled="false"
    )


def test_api_route_timeout_outlasts_the_service_request_timeout() -> None:
    values = load_yaml(CHART / "values.yaml")
    timeout = values["httpRoute"]["api"]["requestTimeout"]
    assert timeout.endswith("s")
    assert int(timeout[:-1]) > ServiceSettings().request_timeout_s


def test_envoy_gateway_policy_limits_each_client_to_100_a_minute_and_buffers_bodies() -> None:
    policy = one(render(httpRoute__enabled="true"), "BackendTrafficPolicy")
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": API}
    ]
    # Buffer the whole body at the gateway (413 beyond it): the service's file limit, 64 MiB.
    assert policy["spec"]["requestBuffer"] == {"limit": "64Mi"}
    assert ServiceSettings().max_file_bytes <= 64 * 2**20
    rate = policy["spec"]["rateLimit"]
    assert rate["type"] == "Local"
    # Every IPv4 and IPv6 address has its own bucket of 100 requests a minute.
    assert rate["local"]["rules"] == [
        {
            "clientSelectors": [{"sourceCIDR": {"type": "Distinct", "value": cidr}}],
            "limit": {"requests": 100, "unit": "Minute"},
        }
        for cidr in ("0.0.0.0/0", "::/0")
    ]


def test_envoy_gateway_policy_burst_cap_custom_ranges_and_switches() -> None:
    policy = one(render("gateway-api-values"), "BackendTrafficPolicy")
    assert policy["spec"]["requestBuffer"] == {"limit": "32Mi"}
    assert policy["spec"]["rateLimit"]["local"]["rules"] == [
        {
            "clientSelectors": [{"sourceCIDR": {"type": "Distinct", "value": "172.16.0.0/12"}}],
            "limit": limit,
        }
        for limit in ({"requests": 300, "unit": "Minute"}, {"requests": 20, "unit": "Second"})
    ]
    unlimited = one(
        render("gateway-api-values", httpRoute__api__rateLimit__enabled="false"),
        "BackendTrafficPolicy",
    )
    assert "rateLimit" not in unlimited["spec"]
    assert unlimited["spec"]["requestBuffer"] == {"limit": "32Mi"}
    other = render("gateway-api-values", httpRoute__envoyGateway__enabled="false")
    assert not of_kind(other, "BackendTrafficPolicy")
    assert len(of_kind(other, "HTTPRoute")) == 2


def test_network_policies_admit_the_configured_gateway_proxies() -> None:
    manifests = render("gateway-api-values")
    for suffix in ("-api", "-ui"):
        peers = one(manifests, "NetworkPolicy", suffix)["spec"]["ingress"][0]["from"]
        gateway = [p for p in peers if p.get("namespaceSelector", {}).get("matchLabels") == {
            "kubernetes.io/metadata.name": "gateway-system"
        }]  # fmt: skip
        assert [p["podSelector"]["matchLabels"] for p in gateway] == [
            {
                "app.kubernetes.io/name": "envoy",
                "gateway.envoyproxy.io/owning-gateway-name": "platform-gateway",
            }
        ]
    # Nothing of ingress-nginx is left in the defaults.
    assert "ingress-nginx" not in yaml.safe_dump_all(of_kind(render(), "NetworkPolicy"))


def test_api_gets_its_id_hash_key_from_a_generated_or_existing_secret() -> None:
    manifests = render()
    container = one(manifests, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    ref = env["FRAUD_ID_HASH_KEY"]["valueFrom"]["secretKeyRef"]
    secret = one(manifests, "Secret", "-id-hash-key")
    assert ref == {"name": secret["metadata"]["name"], "key": "id-hash-key"}
    key = base64.b64decode(secret["data"]["id-hash-key"]).decode()
    assert len(key) == 64
    int(key, 16)  # hexadecimal: 256 bits
    # Without a cluster every render draws a new key (helm keeps the live one on upgrade).
    other = one(render(api__replicaCount="3"), "Secret", "-id-hash-key")["data"]["id-hash-key"]
    assert key != base64.b64decode(other).decode()
    existing = render("gateway-api-values")
    assert not [m for m in of_kind(existing, "Secret") if "id-hash-key" in m["metadata"]["name"]]
    container = one(existing, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["FRAUD_ID_HASH_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "fraud-id-hash-key",
        "key": "key",
    }
    # The UI does not get the key.
    ui = one(manifests, "Deployment", "-ui")["spec"]["template"]["spec"]["containers"][0]
    assert "FRAUD_ID_HASH_KEY" not in {e["name"] for e in ui["env"]}


def test_the_helm_test_pod_can_be_placed_with_the_api() -> None:
    """On a cluster whose API nodes are tainted, the test pod follows (tests.nodeSelector)."""
    plain = one(render(), "Pod", "-test-score")
    assert "nodeSelector" not in plain["spec"] and "tolerations" not in plain["spec"]
    placed = one(
        render_args(
            (
                "--set",
                "tests.nodeSelector.role=scoring",
                "--set",
                "tests.tolerations[0].key=role",
                "--set",
                "tests.tolerations[0].operator=Exists",
            )
        ),
        "Pod",
        "-test-score",
    )
    assert placed["spec"]["nodeSelector"] == {"role": "scoring"}
    assert placed["spec"]["tolerations"] == [{"key": "role", "operator": "Exists"}]
