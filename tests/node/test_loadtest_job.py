"""The distributed Locust Jobs of ``k8s/loadtest`` as real pods; the SLO verdict is the exit code.

``make k8s-loadtest`` (``k8s/run-loadtest.sh``) runs here unchanged against a release on the
real node: the ConfigMap of locust files from ``loadtests/``, the master and worker Jobs, the
report copied out, the master's exit code as the Job's status. The test overlays the shipped
manifests only where this cluster differs from the kind one: the pods go to the real node
(nodeSelector + toleration), Locust targets the API Service instead of the Gateway (there is
none here), and the API key comes from the settings ConfigMap (the release is not named
``fraud``). The release lets the Locust pods in through ``networkPolicy.extraApiIngressFrom``,
as a cluster that enforces NetworkPolicy would need (this one does not: bridge CNI).

Two runs: the CI gate's SLO (``loadtests/slo/ci.json``) passes, and an SLO no system can meet
fails the Job and the script. The image is the Locust stand-in of
``.ci/bootstrap-locust-image.sh`` (no registry here), side-loaded into the node's containerd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.tools import REPO_ROOT, require_tool
from tests.node.node_support import (
    API_KEY,
    CLUSTER_BIN,
    KUBECONFIG,
    ON_REAL_NODE,
    NodeImage,
    Release,
    installed_release,
    kubectl_json,
    node_values,
    require_cluster,
    side_load,
)

pytestmark = [pytest.mark.node, pytest.mark.container, pytest.mark.timeout(1800)]

LOADTEST_DIR = REPO_ROOT / "k8s" / "loadtest"
CI_SLO = REPO_ROOT / "loadtests" / "slo" / "ci.json"
#: Long enough for the CI gate's minimum request counts at its step shape's average rate.
DURATION_S = 45
RUN_TIMEOUT_S = 600


def locust_image() -> str:
    """The image the Jobs name, as the node's containerd knows it (docker.io/...)."""
    text = (LOADTEST_DIR / "locust.yaml").read_text()
    images = {
        doc_image
        for document in yaml.safe_load_all(text)
        if document and document["kind"] == "Job"
        for doc_image in (c["image"] for c in document["spec"]["template"]["spec"]["containers"])
    }
    (image,) = images
    return image if image.startswith("docker.io/") else f"docker.io/{image}"


@pytest.fixture(scope="module")
def side_loaded_locust(real_node: dict[str, Any]) -> str:
    """The Locust image in the node's containerd (built by .ci/bootstrap-locust-image.sh)."""
    podman = require_tool("podman", "make system-deps (Debian package podman)")
    image = locust_image()
    present = subprocess.run(
        [podman, "image", "exists", image], capture_output=True, timeout=60, check=False
    )
    require_cluster(
        present.returncode == 0,
        f"no local image {image} (no registry here: sudo bash .ci/bootstrap-locust-image.sh)",
    )
    side_load(image)
    return image


@pytest.fixture(scope="module")
def release(
    image: NodeImage,
    side_loaded_locust: str,
    tmp_path_factory: pytest.TempPathFactory,
    artifacts_dir: Path,
) -> Iterator[Release]:
    """The API on the real node, reachable by the Locust pods under its NetworkPolicy."""
    values = node_values(image)
    values["networkPolicy"] = {
        "extraApiIngressFrom": [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "locust"}}}
        ]
    }
    values_dir = tmp_path_factory.mktemp("node-loadtest")
    with installed_release(values, values_dir, artifacts_dir, prefix="locust") as release:
        yield release


def overlay(release: Release, target: Path) -> Path:
    """The shipped manifests plus this cluster's differences, as a kustomization in ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for source in LOADTEST_DIR.glob("*.yaml"):
        shutil.copy(source, target / source.name)
    service = release.service["metadata"]["name"]
    port = release.service["spec"]["ports"][0]["port"]
    kustomization = yaml.safe_load((target / "kustomization.yaml").read_text())
    placement = [
        {"op": "add", "path": f"/spec/template/spec/{key}", "value": value}
        for key, value in ON_REAL_NODE.items()
    ]
    settings = [
        {
            "op": "replace",
            "path": "/data/LOCUST_HOST",
            "value": f"http://{service}.{release.namespace}.svc.cluster.local:{port}",
        },
        {"op": "replace", "path": "/data/FRAUD_LOADTEST_DURATION", "value": str(DURATION_S)},
        {"op": "add", "path": "/data/FRAUD_LOADTEST_API_KEY", "value": API_KEY},
    ]
    kustomization["patches"] = [
        {"target": {"kind": "Job"}, "patch": yaml.safe_dump(placement)},
        {
            "target": {"kind": "ConfigMap", "name": "locust-settings"},
            "patch": yaml.safe_dump(settings),
        },
    ]
    (target / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return target


def run_loadtest(
    release: Release, manifests: Path, slo: Path, report: Path
) -> subprocess.CompletedProcess[str]:
    """``k8s/run-loadtest.sh`` (what ``make k8s-loadtest`` runs) against this cluster."""
    env = {
        **os.environ,
        "PATH": f"{CLUSTER_BIN}:{os.environ['PATH']}",
        "KUBECONFIG": str(KUBECONFIG),
        "NAMESPACE": release.namespace,
        "K8S_LOADTEST_DIR": str(manifests),
        "LOADTEST_SLO": str(slo),
        "LOADTEST_TIMEOUT": str(RUN_TIMEOUT_S),
        "K8S_REPORT_DIR": str(report),
    }
    return subprocess.run(
        ["bash", str(REPO_ROOT / "k8s" / "run-loadtest.sh")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S + 300,
        check=False,
    )


def master_job(release: Release) -> dict[str, Any]:
    """The master Job's status as the API server has it."""
    status: dict[str, Any] = kubectl_json("job", "--namespace", release.namespace, "locust-master")[
        "status"
    ]
    return status


def test_the_ci_gate_passes_and_the_job_succeeds(
    release: Release, tmp_path: Path, artifacts_dir: Path
) -> None:
    report = tmp_path / "report"
    done = run_loadtest(release, overlay(release, tmp_path / "manifests"), CI_SLO, report)
    (artifacts_dir / "node-loadtest-pass.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert master_job(release).get("succeeded") == 1
    verdict = json.loads((report / "locust" / "slo.json").read_text())
    (artifacts_dir / "node-loadtest-slo.json").write_text(json.dumps(verdict, indent=2) + "\n")
    assert verdict["passed"] is True, verdict
    assert (report / "locust" / "locust.html").stat().st_size > 0
    assert list((report / "locust").glob("locust_stats*.csv"))


def test_a_missed_objective_fails_the_job(
    release: Release, tmp_path: Path, artifacts_dir: Path
) -> None:
    impossible = tmp_path / "impossible.json"
    impossible.write_text(
        json.dumps(
            {
                "description": "No system answers within a microsecond.",
                "objectives": [{"request": "POST /v1/score", "metric": "p99_ms", "max": 0.001}],
            }
        )
    )
    report = tmp_path / "report"
    done = run_loadtest(release, overlay(release, tmp_path / "manifests"), impossible, report)
    (artifacts_dir / "node-loadtest-fail.log").write_text(done.stdout + done.stderr)
    assert done.returncode != 0, done.stdout[-3000:]
    assert master_job(release).get("failed") == 1
    verdict = json.loads((report / "locust" / "slo.json").read_text())
    assert verdict["passed"] is False, verdict
