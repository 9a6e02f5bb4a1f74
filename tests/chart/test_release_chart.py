"""The released chart defaults to the images the release pushes (release.yml + chart-package).

Runs release.yml's own steps: the one that names the images (with a mixed-case owner, as
GitHub may report it), then its ``make chart-package`` command into a temporary directory,
and renders the packaged chart with its default values. The Deployments must reference the
repositories release.yml's metadata steps push, at the tag those steps push for a version tag
(``{{version}}``, the tag without its ``v``), which must be the packaged chart's appVersion.
"""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.tools import REPO_ROOT, TOOLS_BIN
from tests.chart.chart_support import CHART, HELM_TIMEOUT_S, NAMESPACE, RELEASE, helm, one

RELEASE_WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"
OWNER = "Example-Org"  # GHCR repositories must be lower case: the workflow lowers it
METADATA_ACTION = "docker/metadata-action@"


def release_job() -> dict[str, Any]:
    workflow = yaml.safe_load(RELEASE_WORKFLOW.read_text())
    job: dict[str, Any] = workflow["jobs"]["release"]
    job["env"] = {**workflow.get("env", {}), **job.get("env", {})}
    return job


def step_running(job: dict[str, Any], fragment: str) -> dict[str, Any]:
    steps = [step for step in job["steps"] if fragment in step.get("run", "")]
    assert len(steps) == 1, f"expected one release.yml step running {fragment!r}"
    return steps[0]


def workflow_environment(job: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The job's env plus what its naming step appends to $GITHUB_ENV, as a runner would."""
    env = {key: str(value) for key, value in job["env"].items() if "${{" not in str(value)}
    github_env = tmp_path / "github_env"
    github_env.touch()
    step = step_running(job, "GITHUB_ENV")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step["run"]],
        env={
            "PATH": os.environ["PATH"],
            **env,
            "GITHUB_REPOSITORY_OWNER": OWNER,
            "GITHUB_ENV": str(github_env),
        },
        check=True,
        timeout=30,
    )
    for line in github_env.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Substitute ``${{ env.NAME }}`` expressions (the only ones the image names may use)."""
    expanded = re.sub(r"\$\{\{\s*env\.(\w+)\s*\}\}", lambda m: env[m.group(1)], text)
    assert "${{" not in expanded, f"unexpected expression in {text!r}"
    return expanded


def pushed_images(job: dict[str, Any], env: dict[str, str]) -> set[str]:
    """Repositories the metadata steps tag for the build-and-push steps."""
    repositories = set()
    for step in job["steps"]:
        if not step.get("uses", "").startswith(METADATA_ACTION):
            continue
        # A version tag vX.Y.Z is pushed as X.Y.Z: the tag the chart's appVersion must be.
        assert "type=semver,pattern={{version}}" in step["with"]["tags"]
        repositories.add(expand(step["with"]["images"].strip(), env))
    return repositories


@pytest.fixture(scope="module")
def chart_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["version"])


def test_release_packages_a_chart_that_pulls_the_images_it_pushed(
    tmp_path: Path, chart_version: str
) -> None:
    helm_path = helm()
    job = release_job()
    env = workflow_environment(job, tmp_path)
    pushed = pushed_images(job, env)
    lowered = OWNER.lower()
    assert pushed == {
        f"ghcr.io/{lowered}/fraud-detection",
        f"ghcr.io/{lowered}/fraud-detection-ui",
    }

    dist = tmp_path / "chart"
    package = step_running(job, "make chart-package")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", package["run"]],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            **env,
            "PATH": f"{TOOLS_BIN}:{os.environ['PATH']}",
            "VERSION": f"v{chart_version}",  # github.ref_name of the tag
            "CHART_DIST": str(dist),
        },
        check=True,
        timeout=120,
        capture_output=True,
    )
    archive = dist / f"fraud-detection-{chart_version}.tgz"
    assert archive.is_file(), sorted(p.name for p in dist.iterdir())
    with tarfile.open(archive) as tar:
        member = tar.extractfile("fraud-detection/Chart.yaml")
        assert member is not None
        packaged = yaml.safe_load(member.read())
    assert packaged["appVersion"] == packaged["version"] == chart_version

    rendered = subprocess.run(
        [helm_path, "template", RELEASE, str(archive), "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_S,
        check=True,
    ).stdout
    manifests = [doc for doc in yaml.safe_load_all(rendered) if doc]
    images = {
        suffix: one(manifests, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        for suffix in ("-api", "-ui")
    }
    assert images == {
        "-api": f"ghcr.io/{lowered}/fraud-detection:{chart_version}",
        "-ui": f"ghcr.io/{lowered}/fraud-detection-ui:{chart_version}",
    }
    assert {image.rsplit(":", 1)[0] for image in images.values()} == pushed
    # The chart in the repository is untouched: it still names the local images.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["api"]["image"]["repository"] == "fraud-scoring"
    assert values["ui"]["image"]["repository"] == "fraud-detection-ui"
