"""Slow clients cannot lock others out: 100 connections trickling their bodies hold no slot."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from fraud_contract.api import API_KEY_HEADER, SCORE_PATH
from fraud_contract.schema import example_transaction
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port

pytestmark = pytest.mark.integration

KEY = "slow-client-test-key-0123456789"
SLOW_CLIENTS = 100
BODY_TIMEOUT_S = 6.0
NORMAL_REQUESTS = 300


async def _trickle(port: int, answers: list[bytes], ready: threading.Event, count: int) -> None:
    """``count`` connections that send their headers, then one body byte every 0.5 s."""

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST {SCORE_PATH} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
            f"{API_KEY_HEADER}: {KEY}\r\ncontent-length: 1000\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S * 3):
                while not reader.at_eof():
                    writer.write(b" ")
                    await writer.drain()
                    try:
                        answer = await asyncio.wait_for(reader.read(200), 0.5)
                    except TimeoutError:
                        continue
                    if answer:
                        answers.append(answer)
                        return
        except (ConnectionError, TimeoutError):
            return
        finally:
            writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.sleep(1.0)  # every connection open and sending
    ready.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_normal_requests_succeed_while_100_slow_clients_hold_connections(tmp_path: Path) -> None:
    tiny_model_tag(tmp_path)
    env = {"FRAUD_API_KEYS": KEY, "FRAUD_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    answers: list[bytes] = []
    ready = threading.Event()
    port = free_port()
    with served_process(tmp_path, port, env=env, log_name="slow-clients.log") as server:
        slow = threading.Thread(
            target=lambda: asyncio.run(_trickle(port, answers, ready, SLOW_CLIENTS))
        )
        slow.start()
        assert ready.wait(30)
        statuses: list[int] = []
        latencies: list[float] = []
        with httpx.Client(base_url=server.base_url, headers={API_KEY_HEADER: KEY}) as client:
            for _ in range(NORMAL_REQUESTS):
                started = time.perf_counter()
                statuses.append(client.post(SCORE_PATH, json=example_transaction()).status_code)
                latencies.append(time.perf_counter() - started)
        slow.join(timeout=BODY_TIMEOUT_S * 4)
    assert statuses == [200] * NORMAL_REQUESTS
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"normal requests beside {SLOW_CLIENTS} slow clients: p99 {p99 * 1000:.1f} ms")
    # Every slow client got its answer: 408 once its body missed the deadline.
    assert len(answers) == SLOW_CLIENTS
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers[:3]
