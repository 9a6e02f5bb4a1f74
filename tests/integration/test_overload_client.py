"""The overload client for real: ``phased-attack`` (Go) against a live echo server.

``make bench`` judges rejection latency and recovery with this client, so its plan must be
followed to the request and its results parsed back exactly; a bare Starlette echo (which
never rejects) makes the right answers known: every request answered, none late.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests import overload
from loadtests.overload import Phase
from testkit.net import free_port
from testkit.process import ServerProcess, running_server
from testkit.tools import REPO_ROOT, require_tool

PLAN = [Phase(50, 1), Phase(200, 1), Phase(50, 1)]


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The benchmark's echo peer on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "loadtests.peers.echo:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with running_server(
        command,
        base_url=f"http://127.0.0.1:{port}",
        ready_path="/readyz",
        log_path=tmp_path_factory.mktemp("echo") / "echo.log",
        cwd=REPO_ROOT,
        ready_timeout=60,
    ) as server:
        yield server


def test_the_plan_is_followed_and_every_answer_parsed(echo: ServerProcess, tmp_path: Path) -> None:
    require_tool("phased-attack", "make system-deps (builds loadtests/phased_attack)")
    requests = [{"body": json.dumps({"transaction_id": f"t-{i}"})} for i in range(20)]
    spec = tmp_path / "requests.json"
    spec.write_text(json.dumps({"path": "/v1/score", "check": "echo", "requests": requests}))

    result = overload.measure(echo.base_url, spec, 100.0, 0, tmp_path, 15.0, PLAN)

    assert 285 <= result["requests"] <= 305  # 50 + 200 + 50, paced to the request
    assert 190 <= result["achieved_rps_during_overload"] <= 210
    assert result["rejections"] == 0
    assert result["other_errors"] == 0  # every body carried the echoed transaction_id
    assert result["errors_before_overload"] == 0
    # The echo recovers at once; one second of slack for a machine busy with other work.
    assert result["recovery_s_after_drop"] <= 1
    assert result["plan"] == "50:1,200:1,50:1"
    assert [t["second"] for t in result["timeline"]][:3] == [0, 1, 2]
