"""Every decision reaches the PostgreSQL ledger; decisions, alerts and labels over HTTP."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fraud_contract.api import SCORE_BATCH_PATH, SCORE_PATH
from fraud_contract.schema import example_transaction
from service.ledger.embedded import start_embedded, stop_embedded
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port
from testkit.process import ServerProcess

pytestmark = pytest.mark.integration

CARD = "CARD-NEVER-STORED-RAW"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("bentoml")
    tiny_model_tag(home)
    # Outside pytest's 0700 temp tree: the server runs as its own system user when root.
    database = Path(tempfile.mkdtemp(prefix="ledger-api-pg-")) / "data"
    env = {
        "FRAUD_DATABASE_URL": start_embedded(database),
        "FRAUD_LEDGER_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
        "FRAUD_LEDGER_FLUSH_INTERVAL_S": "0.1",
    }
    try:
        with served_process(home, free_port(), env=env, log_name="ledger.log") as server:
            yield server
    finally:
        stop_embedded(database)


def _decision(client: httpx.Client, transaction_id: str, timeout: float = 30.0) -> dict:
    """The ledger's view once the writer has copied the decision (it is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/decisions/{transaction_id}")
        if response.status_code == 200:
            return response.json()
        assert response.status_code in (404, 503), response.text
        assert time.monotonic() < deadline, f"{transaction_id} never reached the ledger"
        time.sleep(0.2)


def test_decisions_are_recorded_and_labels_come_back(api: ServerProcess) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        single = client.post(
            SCORE_PATH,
            json=example_transaction(transaction_id="L-1", customer_id=CARD, amount=900.0),
            headers={"x-request-id": "ledger-req-1"},
        ).json()
        batch = client.post(
            SCORE_BATCH_PATH,
            json={
                "transactions": [
                    example_transaction(transaction_id=f"L-B{i}", customer_id=CARD)
                    for i in range(5)
                ]
                + [example_transaction(transaction_id=None)]  # no id: scored, not recorded
            },
        ).json()["results"]
        view = _decision(client, "L-1")
        for i in range(5):
            assert _decision(client, f"L-B{i}")["decisions"]
        labels = client.post(
            "/v1/labels",
            json={
                "labels": [
                    {"transaction_id": "L-1", "label": "fraud",
                     "reported_at": "2018-08-20T10:00:00", "source": "chargeback"},
                    {"transaction_id": "NOPE", "label": "genuine",
                     "reported_at": "2018-08-20T10:00:00", "source": "analyst"},
                ]
            },
        )  # fmt: skip
        labelled = client.get("/v1/decisions/L-1").json()
        bad = client.post("/v1/labels", json={"labels": [{"transaction_id": "L-1"}]})
        alerts = client.get("/v1/alerts", params={"all": "true", "limit": 100})
    stored = view["decisions"][0]
    assert stored["probability"] == pytest.approx(single["fraud_probability"])
    assert stored["is_fraud"] == single["is_fraud"]
    assert stored["request_id"] == "ledger-req-1"
    assert stored["card_hash"].startswith("k1:")
    assert CARD not in str(view)  # the keyed hash, never the raw card id
    assert len(batch) == 6
    assert labels.status_code == 200, labels.text
    statuses = [outcome["status"] for outcome in labels.json()["outcomes"]]
    assert statuses[1] == "unknown_transaction"
    assert labelled["label"] == "fraud"
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} >= {"labels.0.label"}
    assert alerts.status_code == 200
    assert isinstance(alerts.json()["items"], list)
