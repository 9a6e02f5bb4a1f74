"""The chart's `helm test` hook and API-key Secret, run against a real served API.

No cluster is needed to check what matters: the hook's script (taken from the rendered Pod)
scores a transaction against ``bentoml serve`` with the key file rendered into the chart's
Secret mounted the way the chart mounts it (``FRAUD_API_KEYS_FILE``), and fails on a wrong key.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from fraud_contract.api import SCORE_PATH
from testkit.api import served_api, tiny_model_tag
from tests.chart.chart_support import one, render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def run_hook(script: str, url: str, api_key: str) -> subprocess.CompletedProcess[str]:
    """Run the hook's Python script the way the test Pod does (env SCORE_URL, TIMEOUT, API_KEY)."""
    env = {"SCORE_URL": url, "TIMEOUT": "30", "API_KEY": api_key, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_helm_test_hook_scores_through_the_api_with_the_charts_secret(
    bentoml_home: Path, port: int, tmp_path: Path
) -> None:
    keys = "{hook-key-one-0123456789,hook-key-two-0123456789}"
    manifests = render(auth__apiKeys=keys)
    secret = one(manifests, "Secret", "-auth")
    pod = one(manifests, "Pod")
    script = pod["spec"]["containers"][0]["args"][0]
    api = one(manifests, "Deployment", "-api")["spec"]["template"]["spec"]
    key_file_env = next(
        e["value"] for e in api["containers"][0]["env"] if e["name"] == "FRAUD_API_KEYS_FILE"
    )
    # Mount the Secret's item where the chart mounts it (same file name, same content).
    key_file = tmp_path / Path(key_file_env).name
    key_file.write_bytes(base64.b64decode(secret["data"][Path(key_file_env).name]))
    ui_key = base64.b64decode(secret["data"]["ui-api-key"]).decode()

    tiny_model_tag(bentoml_home)
    with served_api(bentoml_home, port, env={"FRAUD_API_KEYS_FILE": str(key_file)}) as base_url:
        ok = run_hook(script, base_url + SCORE_PATH, ui_key)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert '"transaction_id": "helm-test-1"' in ok.stdout
        # The second key in the file is accepted too; an unknown key makes the hook fail.
        assert run_hook(script, base_url + SCORE_PATH, "hook-key-two-0123456789").returncode == 0
        refused = run_hook(script, base_url + SCORE_PATH, "not-a-valid-key-0123456789")
        assert refused.returncode != 0
        assert "401" in refused.stderr or "403" in refused.stderr
