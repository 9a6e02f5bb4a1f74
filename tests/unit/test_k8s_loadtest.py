"""The distributed load test's report hand-over (k8s/loadtest/locust.yaml, k8s/run-loadtest.sh).

The master Job writes Locust's report into an emptyDir, marks it done with ``exit-code`` and
waits (bounded) for the ``.collected`` marker that ``make k8s-loadtest`` creates after copying
the report out; it then exits with Locust's exit code, the SLO verdict. These tests run the
master's own shell command with a stand-in ``locust`` and check both sides use the same paths.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from testkit.tools import REPO_ROOT, require_tool

MANIFEST = REPO_ROOT / "k8s" / "loadtest" / "locust.yaml"
RUNNER = REPO_ROOT / "k8s" / "run-loadtest.sh"
POD_REPORT_DIR = "/tmp/report"


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def master_job() -> dict[str, Any]:
    (job,) = [
        d for d in documents() if d["kind"] == "Job" and d["metadata"]["name"].endswith("master")
    ]
    return job


def master_container() -> dict[str, Any]:
    container: dict[str, Any] = master_job()["spec"]["template"]["spec"]["containers"][0]
    return container


def runner_setting(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", RUNNER.read_text(), re.MULTILINE)
    assert match, f"{name} not set in {RUNNER.name}"
    return match.group(1).replace("$POD_REPORT_DIR", POD_REPORT_DIR)


def collect_timeout_s() -> int:
    env = {item["name"]: item["value"] for item in master_container().get("env", [])}
    return int(env["REPORT_COLLECT_TIMEOUT_S"])


def test_both_sides_agree_on_the_report_directory_and_markers() -> None:
    command = master_container()["args"][0]
    assert runner_setting("POD_REPORT_DIR") == POD_REPORT_DIR
    assert f"--html {POD_REPORT_DIR}/locust.html" in command
    assert f"--csv {POD_REPORT_DIR}/locust" in command
    assert f"> {runner_setting('DONE_FILE')}" in command
    assert f"[ ! -e {runner_setting('COLLECTED_MARKER')} ]" in command
    settings = next(d for d in documents() if d["kind"] == "ConfigMap")["data"]
    assert settings["FRAUD_LOADTEST_SLO_RESULT"] == f"{POD_REPORT_DIR}/slo.json"


def test_the_report_lives_on_an_emptydir_and_the_wait_fits_the_deadline() -> None:
    spec = master_job()["spec"]
    pod = spec["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in master_container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    settings = next(d for d in documents() if d["kind"] == "ConfigMap")["data"]
    worst_case = 120 + int(settings["FRAUD_LOADTEST_DURATION"]) + collect_timeout_s()
    assert worst_case < spec["activeDeadlineSeconds"]
    # The Job's status is the verdict: one try, and the pod is not restarted.
    assert spec["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"


def _run_master(tmp_path: Path, locust_exit: int, timeout_s: int) -> subprocess.Popen[str]:
    """Start the master's command with ``locust`` replaced by a stand-in that writes a report."""
    report = tmp_path / "report"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "locust"
    stub.write_text(
        "#!/bin/sh\n"
        f"echo '<html>' > {report}/locust.html\n"
        f"echo 'Name,Request Count' > {report}/locust_stats.csv\n"
        f"echo '{{\"passed\": false}}' > {report}/slo.json\n"
        f"exit {locust_exit}\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    command = master_container()["args"][0].replace(POD_REPORT_DIR, str(report))
    return subprocess.Popen(
        [*master_container()["command"], command],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "REPORT_COLLECT_TIMEOUT_S": str(timeout_s),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_master_keeps_the_report_until_collected_then_exits_with_locusts_code(
    tmp_path: Path,
) -> None:
    master = _run_master(tmp_path, locust_exit=3, timeout_s=60)
    try:
        report = tmp_path / "report"
        _wait_for(report / "exit-code", 10)
        assert (report / "exit-code").read_text().strip() == "3"
        assert {"locust.html", "locust_stats.csv", "slo.json"} <= {p.name for p in report.iterdir()}
        time.sleep(1.5)
        assert master.poll() is None, "the master exited before its report was collected"
        (report / ".collected").touch()  # what k8s/run-loadtest.sh does after kubectl cp
        output, _ = master.communicate(timeout=10)
    finally:
        master.kill()
    assert master.returncode == 3, output
    assert "SLO verdict:" in output


def test_master_stops_waiting_after_the_bound_when_nobody_collects(tmp_path: Path) -> None:
    master = _run_master(tmp_path, locust_exit=0, timeout_s=1)
    try:
        master.communicate(timeout=15)
    finally:
        master.kill()
    assert master.returncode == 0


def test_the_runner_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "make system-deps (Debian package shellcheck)")
    result = subprocess.run(
        [shellcheck, str(RUNNER)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
