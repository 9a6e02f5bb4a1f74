"""SIGTERM under load: in-flight and keep-alive requests finish, nobody sees a reset."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from fraud_contract.api import SCORE_PATH
from fraud_contract.schema import example_transaction
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port

pytestmark = pytest.mark.integration

CLIENTS = 8
DRAIN_S = 2.0
#: Clients keep sending this long after SIGTERM: as a load balancer would, until the failing
#: readiness probe takes the pod out of rotation (well inside the drain).
SEND_AFTER_SIGTERM_S = 1.5


def test_sigterm_drains_keep_alive_clients_without_a_single_failure(tmp_path: Path) -> None:
    tiny_model_tag(tmp_path)
    env = {"FRAUD_SHUTDOWN_DRAIN_S": str(DRAIN_S)}
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = [float("inf")]
    started = threading.Barrier(CLIENTS + 1)

    with served_process(tmp_path, free_port(), env=env, log_name="shutdown.log") as server:

        def client() -> None:
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                started.wait()
                while time.monotonic() < stop_at[0]:
                    try:
                        response = http.post(SCORE_PATH, json=example_transaction())
                        closing = response.headers.get("connection") == "close"
                        outcome = f"{response.status_code}{' close' if closing else ''}"
                    except httpx.HTTPError as exc:
                        outcome = type(exc).__name__
                    with lock:
                        outcomes[outcome] += 1

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(1.0)
        sigterm_at = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        stop_at[0] = sigterm_at + SEND_AFTER_SIGTERM_S
        for thread in threads:
            thread.join(timeout=30)
        code = server.process.wait(timeout=30)
        stopped_after = time.monotonic() - sigterm_at

    assert set(outcomes) <= {"200", "200 close"}, outcomes  # no reset, refusal or 5xx
    assert outcomes["200 close"] >= CLIENTS, outcomes  # every client was told to close
    assert code == 0
    assert DRAIN_S <= stopped_after < DRAIN_S + 20, stopped_after
