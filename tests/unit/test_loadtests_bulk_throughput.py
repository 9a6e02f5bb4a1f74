"""Bulk-throughput measurement: batch bodies, answer checks, result counting and the timed
batch-endpoint loop (against a small stdlib HTTP server standing in for the API)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from fraud_contract.api import MAX_BATCH_TRANSACTIONS, SCORE_BATCH_PATH
from loadtests import bulk_throughput as bt

POOL = [
    {
        "transaction_id": "a",
        "timestamp": "2018-06-30T10:01:37",
        "customer_id": "C1",
        "terminal_id": "T1",
        "amount": 10.0,
        "customer_nb_tx_1d": 3,
    },
    {
        "transaction_id": "b",
        "timestamp": "2018-06-30T10:02:37",
        "customer_id": "C2",
        "terminal_id": "T2",
        "amount": 20.0,
    },
]


def test_batches_are_the_contracts_largest() -> None:
    assert bt.BATCH_ROWS == MAX_BATCH_TRANSACTIONS == 1000


def test_bulk_frame_repeats_the_pool_with_unique_ids() -> None:
    frame = bt.bulk_frame(POOL, 5)
    assert list(frame["transaction_id"]) == [f"bulk-{i}" for i in range(5)]
    assert list(frame["amount"]) == [10.0, 20.0, 10.0, 20.0, 10.0]


def test_batch_bodies_cut_the_table_and_leave_absent_aggregates_out() -> None:
    frame = bt.bulk_frame(POOL, 5)
    bodies = bt.batch_bodies(frame, np.array([0.1, 0.2, 0.3, 0.4, 0.5]), rows=2)
    assert [len(b.ids) for b in bodies] == [2, 2, 1]
    first = json.loads(bodies[0].body)["transactions"]
    assert first[0]["customer_nb_tx_1d"] == 3
    assert "customer_nb_tx_1d" not in first[1]  # NaN in the frame: not sent (JSON has no NaN)
    assert bodies[1].ids == ["bulk-2", "bulk-3"]
    assert bodies[2].probabilities == [0.5]


def _answer(ids: list[str], probabilities: list[float], threshold: float = 0.5) -> dict[str, Any]:
    return {
        "model_tag": "m:1",
        "results": [
            {
                "transaction_id": tx_id,
                "fraud_probability": p,
                "is_fraud": p >= threshold,
                "threshold": threshold,
                "model_tag": "m:1",
                "reasons": [{"feature": "amount", "value": 1.0, "contribution": 0.1}],
            }
            for tx_id, p in zip(ids, probabilities, strict=True)
        ],
    }


def test_batch_answers_are_checked_row_by_row() -> None:
    expected = bt.BatchBody(b"", ["x", "y"], [0.25, 0.75])
    assert bt.check_batch_answer(_answer(["x", "y"], [0.25, 0.75]), expected) is None
    assert bt.check_batch_answer(_answer(["x", "y"], [0.25, 0.75001]), expected) is None
    assert "probability" in (
        bt.check_batch_answer(_answer(["x", "y"], [0.25, 0.7]), expected) or ""
    )
    assert "transaction_id" in (
        bt.check_batch_answer(_answer(["y", "x"], [0.25, 0.75]), expected) or ""
    )
    assert "1 results for 2" in (bt.check_batch_answer(_answer(["x"], [0.25]), expected) or "")
    wrong_decision = _answer(["x", "y"], [0.25, 0.75])
    wrong_decision["results"][1]["is_fraud"] = False
    assert "is_fraud" in (bt.check_batch_answer(wrong_decision, expected) or "")
    assert "malformed" in (bt.check_batch_answer({"error": "x"}, expected) or "")


def test_results_are_counted_without_decoding_the_answer() -> None:
    content = json.dumps(_answer(["x", "y", "z"], [0.1, 0.9, 0.2])).encode()
    assert bt.count_results(content) == 3
    assert bt.count_results(b'{"model_tag": "m", "results": []}') == 0


class _FakeBatchAPI(BaseHTTPRequestHandler):
    """Answers batch requests with the probability encoded in each id (``bulk-<i>`` -> i/100)."""

    wrong_count = False

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        transactions = json.loads(self.rfile.read(length))["transactions"]
        ids = [t["transaction_id"] for t in transactions]
        if self.wrong_count:
            ids = ids[:-1]
        body = json.dumps(_answer(ids, [int(i.split("-")[1]) / 100 for i in ids])).encode()
        self.send_response(200 if self.path == SCORE_BATCH_PATH else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def fake_api() -> Iterator[tuple[str, type[_FakeBatchAPI]]]:
    handler = type("Handler", (_FakeBatchAPI,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _bodies(rows: int, per_request: int) -> list[bt.BatchBody]:
    frame = bt.bulk_frame(POOL, rows)
    return bt.batch_bodies(frame, np.arange(rows) / 100, rows=per_request)


def test_the_batch_endpoint_is_timed_over_repeated_batches(
    fake_api: tuple[str, type[_FakeBatchAPI]],
) -> None:
    base_url, _ = fake_api
    result = bt.batch_endpoint_rate(base_url, _bodies(30, 10), seconds=0.3, client_core=None)
    assert result["requests"] > 3  # the 3 bodies are posted again until the time is up
    assert result["rows"] == 10 * result["requests"]
    assert result["seconds"] >= 0.3
    assert result["rows_per_s"] == pytest.approx(result["rows"] / result["seconds"])
    assert result["in_flight"] == bt.BATCH_CONCURRENCY
    assert math.isfinite(result["rows_per_s"])


def test_a_wrong_batch_answer_stops_the_measurement(
    fake_api: tuple[str, type[_FakeBatchAPI]],
) -> None:
    base_url, handler = fake_api
    handler.wrong_count = True
    with pytest.raises(RuntimeError, match="batch endpoint: 9 results for 10"):
        bt.batch_endpoint_rate(base_url, _bodies(20, 10), seconds=0.2, client_core=None)
