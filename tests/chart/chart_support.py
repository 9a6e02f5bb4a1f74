"""Render the Helm chart with the real helm CLI for the chart tests (tests/chart/)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from testkit.tools import REPO_ROOT, require_tool

CHART = REPO_ROOT / "charts" / "fraud-detection"
CI_VALUES = {path.stem: path for path in sorted((CHART / "ci").glob("*.yaml"))}
RELEASE = "fraud"
NAMESPACE = "fraud"
HELM_TIMEOUT_S = 60

Manifest = dict[str, Any]
#: Kinds whose pod template runs long-lived pods.
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def helm() -> str:
    """Path of the helm CLI (skips locally, fails under CI=true when it is missing)."""
    return require_tool("helm", "make system-deps (go installs helm into .tools/bin)")


def _template(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    cmd = [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=HELM_TIMEOUT_S, check=False)


@cache
def _render_cached(args: tuple[str, ...]) -> tuple[Manifest, ...]:
    result = _template(args)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def helm_args(
    values_file: str | None = None, set_values: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Command-line arguments for a ci values file (by stem) and ``--set`` pairs."""
    args: list[str] = []
    if values_file:
        args += ["-f", str(CI_VALUES[values_file])]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    return tuple(args)


def render(values_file: str | None = None, **set_values: str) -> list[Manifest]:
    """Rendered manifests of the chart (a fresh list; the parsed documents are shared)."""
    return list(_render_cached(helm_args(values_file, _dotted(set_values))))


def render_args(args: tuple[str, ...]) -> list[Manifest]:
    """Rendered manifests for raw helm arguments (``--set`` keys that hold brackets or dots)."""
    return list(_render_cached(args))


def render_error(values_file: str | None = None, **set_values: str) -> str:
    """helm's error output for values that must be rejected (fails if rendering succeeds)."""
    result = _template(helm_args(values_file, _dotted(set_values)))
    assert result.returncode != 0, "helm template accepted values it should reject"
    return result.stderr


def _dotted(set_values: Mapping[str, str]) -> dict[str, str]:
    # Keyword arguments cannot contain dots: `api__replicaCount` means `api.replicaCount`.
    return {key.replace("__", "."): value for key, value in set_values.items()}


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    """The manifests of one kind."""
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The single manifest of ``kind`` whose name ends with ``name_suffix``."""
    found = [m for m in of_kind(manifests, kind) if m["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
    return found[0]


def pod_template(manifest: Manifest) -> dict[str, Any] | None:
    """The pod template of a workload, Job or CronJob (``None`` for other kinds)."""
    if manifest["kind"] in (*WORKLOAD_KINDS, "Job"):
        return dict(manifest["spec"]["template"])
    if manifest["kind"] == "CronJob":
        return dict(manifest["spec"]["jobTemplate"]["spec"]["template"])
    return None


def pod_specs(
    manifests: list[Manifest],
) -> Iterator[tuple[Manifest, dict[str, Any], dict[str, str]]]:
    """(owner manifest, pod spec, pod labels) of every pod the chart makes: the templates of
    Deployments, StatefulSets, Jobs and CronJobs, and bare Pods."""
    for manifest in manifests:
        template = pod_template(manifest)
        if template is not None:
            yield manifest, template["spec"], template["metadata"]["labels"]
        elif manifest["kind"] == "Pod":
            yield manifest, manifest["spec"], manifest["metadata"]["labels"]


def selects(match_labels: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a ``matchLabels`` selector selects an object with ``labels``."""
    return all(labels.get(key) == value for key, value in match_labels.items())


def load_yaml(path: Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text())
