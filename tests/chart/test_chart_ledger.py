"""The chart's decision ledger (issue 18): API wiring, spool volume, migration hook, retention
CronJob, network policies, alerts and the values that are refused."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.ledger import LedgerSettings
from testkit.tools import REPO_ROOT
from tests.chart.chart_support import (
    CHART,
    CI_VALUES,
    HELM_TIMEOUT_S,
    NAMESPACE,
    RELEASE,
    Manifest,
    helm,
    of_kind,
    one,
    pod_specs,
    pod_template,
    render,
    render_args,
    render_error,
    selects,
)

FULLNAME = f"{RELEASE}-fraud-detection"
LEDGER_VALUE_SETS = ("ledger-values", "ledger-external-values", "ledger-cnpg-values")
#: The ledger's objects by kind and name suffix.
LEDGER_OBJECTS = {
    ("Job", "-ledger-migrate"),
    ("CronJob", "-ledger-retention"),
    ("NetworkPolicy", "-ledger"),
}
LEDGER_ENV = (
    "FRAUD_DATABASE_URL",
    "FRAUD_LEDGER_POOL_MIN_SIZE",
    "FRAUD_LEDGER_POOL_MAX_SIZE",
    "FRAUD_LEDGER_CONNECT_TIMEOUT_S",
    "FRAUD_LEDGER_RETENTION_DAYS",
)
SPOOL_ENV = ("FRAUD_LEDGER_SPOOL_DIR", "FRAUD_LEDGER_SPOOL_MAX_ROWS", "FRAUD_LEDGER_SPOOL_SYNC")
#: Where the Bento keeps the service's source in the API image (the Jobs run from there).
BENTO_SOURCE = "/home/bentoml/bento/src"
TRY_URL = "postgresql://fraud:pw@db.example:5432/fraud"


def api_pod(manifests: list[Manifest]) -> dict[str, Any]:
    """The API Deployment's pod spec."""
    return dict(one(manifests, "Deployment", "-api")["spec"]["template"]["spec"])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's environment by variable name."""
    return {env["name"]: env for env in container.get("env", [])}


def job_pod(manifests: list[Manifest], kind: str, suffix: str) -> dict[str, Any]:
    """The pod spec of the ledger Job or CronJob."""
    template = pod_template(one(manifests, kind, suffix))
    assert template is not None
    return dict(template["spec"])


def test_ledger_is_off_by_default_and_adds_nothing() -> None:
    for values_file in [None, *sorted(set(CI_VALUES) - set(LEDGER_VALUE_SETS))]:
        manifests = render(values_file)
        assert not [m for m in manifests if "ledger" in m["metadata"]["name"]], values_file
        assert not of_kind(manifests, "PrometheusRule"), values_file
        pod = api_pod(manifests)
        assert not set(env_of(pod["containers"][0])) & {*LEDGER_ENV, *SPOOL_ENV}, values_file
        assert "ledger-spool" not in {v["name"] for v in pod["volumes"]}, values_file


def test_every_variable_the_chart_sets_is_a_ledger_setting() -> None:
    settings = {f"FRAUD_{name.upper()}" for name in LedgerSettings.model_fields}
    for values_file in LEDGER_VALUE_SETS:
        manifests = render(values_file)
        for _, spec, _ in pod_specs(manifests):
            for container in spec["containers"]:
                names = {n for n in env_of(container) if n.startswith("FRAUD_LEDGER_")}
                assert names <= settings, names - settings
        api_env = env_of(api_pod(manifests)["containers"][0])
        assert set(LEDGER_ENV) | set(SPOOL_ENV) <= set(api_env)


def test_chart_made_secret_is_a_release_object_the_migration_reads() -> None:
    manifests = render("ledger-values")
    secret = one(manifests, "Secret", "-ledger-db")
    url = base64.b64decode(secret["data"]["url"]).decode()
    assert url.startswith("postgresql://fraud:") and "sslmode=require" in url
    # Not a hook: `helm uninstall` removes it (a hook Secret with a password would stay).
    assert "helm.sh/hook" not in (secret["metadata"].get("annotations") or {})
    job = one(manifests, "Job", "-ledger-migrate")["metadata"]["annotations"]
    # So on install the Job runs after the release's objects exist.
    assert job["helm.sh/hook"] == "post-install,pre-upgrade"
    ref = {"name": f"{FULLNAME}-ledger-db", "key": "url"}
    for _, spec, _ in pod_specs(manifests):
        for container in spec["containers"]:
            env = env_of(container)
            if "FRAUD_DATABASE_URL" in env:
                assert env["FRAUD_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == ref
    # A changed URI rolls the API pods (they read it at start).
    template = one(manifests, "Deployment", "-api")["spec"]["template"]["metadata"]
    assert "checksum/ledger" in template["annotations"]


def test_existing_secret_is_the_production_path_and_no_uri_passes_through_values() -> None:
    manifests = render("ledger-external-values")
    assert not [s for s in of_kind(manifests, "Secret") if "ledger" in s["metadata"]["name"]]
    ref = {"name": "fraud-ledger-app", "key": "uri"}
    users = 0
    for _, spec, _ in pod_specs(manifests):
        for container in spec["containers"]:
            env = env_of(container)
            if "FRAUD_DATABASE_URL" in env:
                users += 1
                assert env["FRAUD_DATABASE_URL"] == {
                    "name": "FRAUD_DATABASE_URL",
                    "valueFrom": {"secretKeyRef": ref},
                }
    assert users == 3  # the API, the migration Job and the retention CronJob
    template = one(manifests, "Deployment", "-api")["spec"]["template"]["metadata"]
    assert "checksum/ledger" not in template.get("annotations", {})


def test_api_spools_on_an_empty_dir_with_a_size_limit() -> None:
    manifests = render("ledger-values")
    pod = api_pod(manifests)
    container = pod["containers"][0]
    env = env_of(container)
    assert env["FRAUD_LEDGER_SPOOL_DIR"]["value"] == "/var/lib/fraud/ledger-spool"
    assert env["FRAUD_LEDGER_SPOOL_MAX_ROWS"]["value"] == "2000000"
    assert env["FRAUD_LEDGER_SPOOL_SYNC"]["value"] == "normal"
    assert env["FRAUD_LEDGER_RETENTION_DAYS"]["value"] == "90"
    # The writer is a thread of each worker (the service's default): no sidecar.
    assert "FRAUD_LEDGER_WRITER" not in env
    assert [c["name"] for c in pod["containers"]] == ["api"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "ledger-spool"]
    assert mount["mountPath"] == env["FRAUD_LEDGER_SPOOL_DIR"]["value"]
    assert not mount.get("readOnly")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ledger-spool"] == {"name": "ledger-spool", "emptyDir": {"sizeLimit": "1Gi"}}
    # fsGroup makes the volume writable for the non-root user.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_spool_on_a_per_pod_claim_with_a_storage_class() -> None:
    manifests = render(
        "ledger-external-values",
        ledger__spool__volume="ephemeral",
        ledger__spool__ephemeral__size="4Gi",
        ledger__spool__ephemeral__storageClassName="standard",
    )
    pod = api_pod(manifests)
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["ledger-spool"]["ephemeral"]["volumeClaimTemplate"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "standard",
        "resources": {"requests": {"storage": "4Gi"}},
    }
    assert claim["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert "emptyDir" not in volumes["ledger-spool"]
    env = env_of(pod["containers"][0])
    assert env["FRAUD_LEDGER_SPOOL_SYNC"]["value"] == "full"
    assert env["FRAUD_LEDGER_POOL_MAX_SIZE"]["value"] == "8"


def assert_ledger_job_container(pod: dict[str, Any], command: str) -> None:
    """The shared shape of the migration and retention pods."""
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "service.ledger", command]
    assert container["workingDir"] == BENTO_SOURCE
    assert container["image"] == "fraud-scoring:0.1.0"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert set(env_of(container)) == set(LEDGER_ENV)
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["limits"]["memory"]
    (tmp,) = container["volumeMounts"]
    assert tmp["mountPath"] == "/tmp"
    assert {v["name"]: v for v in pod["volumes"]}[tmp["name"]]["emptyDir"]["sizeLimit"]


def test_migration_job_is_a_post_install_and_pre_upgrade_hook() -> None:
    manifests = render("ledger-values")
    job = one(manifests, "Job", "-ledger-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
    # Replaced on the next run; removed when it succeeded, kept (with its log) when it failed.
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 300
    pod = job_pod(manifests, "Job", "-ledger-migrate")
    assert_ledger_job_container(pod, "migrate")
    # On install the chart's ServiceAccount does not exist yet: the namespace's default one.
    assert "serviceAccountName" not in pod
    named = render("ledger-values", serviceAccount__create="false", serviceAccount__name="ops")
    assert job_pod(named, "Job", "-ledger-migrate")["serviceAccountName"] == "ops"


def test_migration_hook_can_be_left_to_the_api() -> None:
    manifests = render("ledger-values", ledger__migration__enabled="false")
    assert not of_kind(manifests, "Job")
    assert of_kind(manifests, "CronJob")


def test_retention_cronjob_runs_the_cli_daily_one_run_at_a_time() -> None:
    manifests = render("ledger-values")
    cronjob = one(manifests, "CronJob", "-ledger-retention")
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 2 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 3600
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600
    assert "helm.sh/hook" not in cronjob["metadata"].get("annotations", {})
    pod = job_pod(manifests, "CronJob", "-ledger-retention")
    assert_ledger_job_container(pod, "retention")
    assert pod["serviceAccountName"] == FULLNAME
    days = env_of(pod["containers"][0])["FRAUD_LEDGER_RETENTION_DAYS"]
    assert days == {"name": "FRAUD_LEDGER_RETENTION_DAYS", "value": "90"}
    default = one(render("ledger-external-values"), "CronJob", "-ledger-retention")
    assert "timeZone" not in default["spec"]
    off = render("ledger-values", ledger__retention__enabled="false")
    assert not of_kind(off, "CronJob")


def test_names_fit_their_limits_with_a_long_release_name() -> None:
    long_name = "r" * 63
    args = ("-f", str(CI_VALUES["ledger-values"]), "--set", f"fullnameOverride={long_name}")
    manifests = render_args(args)
    for kind, suffix in LEDGER_OBJECTS:
        name = one(manifests, kind, suffix)["metadata"]["name"]
        # A CronJob's name gets a suffix for each Job it starts: 52 characters at most.
        assert len(name) <= (52 if kind == "CronJob" else 63), name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)


@pytest.mark.parametrize("values_file", LEDGER_VALUE_SETS)
def test_api_and_jobs_may_reach_postgresql_and_the_jobs_nothing_else(values_file: str) -> None:
    manifests = render(values_file)
    policies = of_kind(manifests, "NetworkPolicy")
    cluster = {
        "ledger-external-values": "fraud-ledger",  # a Cluster run beside the release
        "ledger-cnpg-values": f"{FULLNAME}-ledger",  # the release's own Cluster
    }
    postgres_rule: dict[str, Any] = {"ports": [{"port": 5432, "protocol": "TCP"}]}
    if values_file in cluster:
        postgres_rule["to"] = [
            {"podSelector": {"matchLabels": {"cnpg.io/cluster": cluster[values_file]}}}
        ]
    api_policy = one(policies, "NetworkPolicy", "-api")
    assert postgres_rule in api_policy["spec"]["egress"]
    ledger_policy = one(policies, "NetworkPolicy", "-ledger")
    spec = ledger_policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    assert len(spec["egress"]) == 2 and postgres_rule in spec["egress"]
    (dns,) = [rule for rule in spec["egress"] if rule != postgres_rule]
    assert {port["port"] for port in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    for kind, suffix in (("Job", "-ledger-migrate"), ("CronJob", "-ledger-retention")):
        template = pod_template(one(manifests, kind, suffix))
        assert template is not None
        labels = template["metadata"]["labels"]
        assert selects(spec["podSelector"]["matchLabels"], labels), kind
        # Only the ledger policy selects the Job pods (the API's rules do not apply to them).
        assert [
            p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], labels)
        ] == [ledger_policy]


def test_unrestricted_egress_leaves_the_jobs_an_ingress_only_policy() -> None:
    manifests = render("ledger-values", networkPolicy__restrictEgress="false")
    spec = one(manifests, "NetworkPolicy", "-ledger")["spec"]
    assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
    off = render("ledger-values", networkPolicy__enabled="false")
    assert not of_kind(off, "NetworkPolicy")


def test_prometheus_rule_alerts_on_the_spool_and_the_writer() -> None:
    manifests = render("ledger-values")
    rule = one(manifests, "PrometheusRule", "-ledger")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "FraudLedgerSpoolBacklog",
        "FraudLedgerSpoolNearlyFull",
        "FraudLedgerWriterErrors",
        "FraudLedgerDecisionsDropped",
        "FraudLedgerDecisionsRejected",
        "FraudLedgerWriterStalled",
        "FraudLedgerLabelsNotInHistory",
    }
    exported = {
        name
        for source in ("service/metrics.py", "service/enrichment.py")
        for name in re.findall(r'"(fraud_[a-z_]+)"', (REPO_ROOT / source).read_text())
    }
    selector = f'namespace="fraud", service="{FULLNAME}-api"}}'
    for alert in alerts.values():
        metrics = {
            re.sub(r"_total$", "", m) for m in re.findall(r"\b(fraud_[a-z_]+)\{", alert["expr"])
        }
        assert metrics and metrics <= exported, alert["expr"]
        assert selector in alert["expr"], alert["expr"]
        assert alert["labels"]["severity"] in {"warning", "critical"}
        # Prometheus's own templating survives helm's.
        assert "{{ $labels.pod }}" in alert["annotations"]["description"]
    backlog = alerts["FraudLedgerSpoolBacklog"]
    assert backlog["expr"].endswith("> 10000") and backlog["for"] == "10m"
    # 0.8 of this value set's ledger.spool.maxRows (2,000,000).
    assert alerts["FraudLedgerSpoolNearlyFull"]["expr"].endswith("> 1600000")
    assert alerts["FraudLedgerSpoolNearlyFull"]["labels"]["severity"] == "critical"
    assert "[10m]" in alerts["FraudLedgerWriterErrors"]["expr"]
    unavailable = alerts["FraudLedgerLabelsNotInHistory"]["expr"]
    assert 'fraud_history_labels_total{outcome="unavailable", ' in unavailable
    assert "increase(" in unavailable and unavailable.endswith("[10m])) > 0")
    assert "apply-labels" in alerts["FraudLedgerLabelsNotInHistory"]["annotations"]["description"]
    dropped = alerts["FraudLedgerDecisionsDropped"]
    assert "increase(fraud_ledger_spool_dropped_total{" in dropped["expr"]
    assert dropped["labels"]["severity"] == "critical"
    assert "increase(fraud_ledger_rejected_total{" in alerts["FraudLedgerDecisionsRejected"]["expr"]
    stalled = alerts["FraudLedgerWriterStalled"]["expr"]
    assert "time() - max by (namespace, pod) (fraud_ledger_last_write_timestamp_seconds{" in stalled
    assert "> 300)" in stalled and "fraud_ledger_spool_rows{" in stalled
    tuned = render(
        "ledger-values",
        ledger__prometheusRule__backlogRows="500",
        ledger__prometheusRule__for="3m",
        ledger__prometheusRule__stalledAfterSeconds="120",
    )
    alerts = {
        r["alert"]: r for r in one(tuned, "PrometheusRule", "-ledger")["spec"]["groups"][0]["rules"]
    }
    assert alerts["FraudLedgerSpoolBacklog"]["expr"].endswith("> 500")
    assert alerts["FraudLedgerSpoolBacklog"]["for"] == "3m"
    assert "[3m]" in alerts["FraudLedgerWriterErrors"]["expr"]
    assert "> 120)" in alerts["FraudLedgerWriterStalled"]["expr"]
    assert not of_kind(render("ledger-external-values"), "PrometheusRule")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ledger__enabled": "true"}, "exactly one database"),
        (
            {
                "ledger__enabled": "true",
                "ledger__database__url": TRY_URL,
                "ledger__database__existingSecret": "db",
            },
            "exactly one database",
        ),
        (
            {
                "ledger__enabled": "true",
                "ledger__database__url": TRY_URL,
                "ledger__cloudnativepg__enabled": "true",
            },
            "exactly one database",
        ),
        ({"ledger__cloudnativepg__enabled": "true"}, "cloudnativepg.enabled needs ledger.enabled"),
        (
            {
                "ledger__enabled": "true",
                "ledger__database__url": TRY_URL,
                "ledger__database__poolMinSize": "5",
                "ledger__database__poolMaxSize": "2",
            },
            "poolMaxSize must be >=",
        ),
    ],
)
def test_value_combinations_the_schema_cannot_express_are_refused(
    values: dict[str, str], message: str
) -> None:
    assert message in render_error(**values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ledger__database__url": "mysql://db/fraud"}, "/ledger/database/url"),
        ({"ledger__database__port": "0"}, "/ledger/database/port"),
        ({"ledger__spool__volume": "hostPath"}, "/ledger/spool/volume"),
        ({"ledger__spool__path": "relative/dir"}, "/ledger/spool/path"),
        ({"ledger__spool__sync": "off"}, "/ledger/spool/sync"),
        ({"ledger__spool__sizeLimit": "2GB"}, "/ledger/spool/sizeLimit"),
        ({"ledger__spool__maxRows": "0"}, "/ledger/spool/maxRows"),
        ({"ledger__retentionDays": "0"}, "/ledger/retentionDays"),
        ({"ledger__retention__schedule": "daily"}, "/ledger/retention/schedule"),
        ({"ledger__prometheusRule__for": "ten minutes"}, "/ledger/prometheusRule/for"),
        ({"ledger__prometheusRule__nearlyFullRatio": "2"}, "nearlyFullRatio"),
        ({"ledger__migration__resources__limits": "null"}, "/ledger/migration/resources"),
        ({"ledger__writer": "process"}, "'writer' not allowed"),
        ({"ledger__cloudnativepg__instances": "0"}, "/ledger/cloudnativepg/instances"),
        ({"ledger__cloudnativepg__owner": "Fraud-Owner"}, "/ledger/cloudnativepg/owner"),
        ({"ledger__cloudnativepg__storage__size": "20GB"}, "/ledger/cloudnativepg/storage/size"),
        ({"ledger__cloudnativepg__extraSpec__instances": "1"}, "/ledger/cloudnativepg/extraSpec"),
    ],
)
def test_schema_rejects_wrong_ledger_values(values: dict[str, str], message: str) -> None:
    assert message in render_error(**values)


def rendered_notes(values_file: str, tmp_path: Path) -> str:
    """NOTES.txt as helm would print it on install (rendered through a copy of the chart)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = chart / "templates" / "NOTES.txt"
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes.render" -}}\n' + notes.read_text() + "{{- end }}\n"
    )
    notes.unlink()
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "notes.render" . | toJson }}\n'
    )
    out = subprocess.run(
        [helm(), "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--show-only",
         "templates/notes.yaml", "-f", str(CI_VALUES[values_file])],
        capture_output=True, text=True, timeout=HELM_TIMEOUT_S, check=True,
    ).stdout  # fmt: skip
    return str(yaml.safe_load(out)["data"]["notes"])


@pytest.mark.parametrize(
    ("values_file", "expected"),
    [
        (
            "ledger-values",
            [
                f"Secret {FULLNAME}-ledger-db (key url)",
                "an emptyDir at /var/lib/fraud/ledger-spool",
                f"logs job/{FULLNAME}-ledger-migrate",
                f"Retention: 90 days, CronJob {FULLNAME}-ledger-retention",
            ],
        ),
        ("ledger-external-values", ["Secret fraud-ledger-app (key uri)", "an emptyDir"]),
    ],
)
def test_notes_name_the_ledger_secret_spool_and_jobs(
    values_file: str, expected: list[str], tmp_path: Path
) -> None:
    text = rendered_notes(values_file, tmp_path)
    for snippet in expected:
        assert snippet in text, text
    assert "<no value>" not in text


CNPG_CLUSTER = f"{FULLNAME}-ledger"


def test_cloudnativepg_mode_makes_the_cluster_and_reads_the_operators_secret() -> None:
    manifests = render("ledger-cnpg-values")
    cluster = one(manifests, "Cluster", "-ledger")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["metadata"]["name"] == CNPG_CLUSTER
    spec = cluster["spec"]
    assert spec["instances"] == 2
    assert spec["bootstrap"]["initdb"] == {"database": "fraud", "owner": "fraud"}
    assert spec["storage"] == {"size": "5Gi"}
    assert spec["postgresql"]["parameters"] == {"max_connections": "200"}  # strings, as CNPG wants
    assert spec["enableSuperuserAccess"] is False  # extraSpec merged in
    assert spec["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert "annotations" not in cluster["metadata"]  # this value set does not keep it
    # The API and every ledger Job read the URI from the Secret the operator writes.
    pods = [
        api_pod(manifests),
        job_pod(manifests, "Job", "-ledger-migrate"),
        job_pod(manifests, "CronJob", "-ledger-retention"),
    ]
    for pod in pods:
        (container,) = [c for c in pod["containers"] if "FRAUD_DATABASE_URL" in env_of(c)]
        ref = env_of(container)["FRAUD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{CNPG_CLUSTER}-app", "key": "uri"}, ref
    assert not [s for s in of_kind(manifests, "Secret") if s["metadata"]["name"].endswith("-db")]
    # Egress to the database: the Cluster's pods only, on 5432.
    for policy in (
        one(manifests, "NetworkPolicy", "-ledger"),
        one(manifests, "NetworkPolicy", "-api"),
    ):
        database = [
            rule
            for rule in policy["spec"]["egress"]
            if {"port": 5432, "protocol": "TCP"} in rule["ports"]
        ]
        assert database == [
            {
                "ports": [{"port": 5432, "protocol": "TCP"}],
                "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": CNPG_CLUSTER}}}],
            }
        ], policy["spec"]["egress"]


def test_the_cloudnativepg_cluster_outlives_the_release_by_default() -> None:
    cluster = one(
        render(ledger__enabled="true", ledger__cloudnativepg__enabled="true"), "Cluster", "-ledger"
    )
    assert cluster["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert cluster["spec"]["instances"] == 3
    assert "imageName" not in cluster["spec"]  # the operator's default image
