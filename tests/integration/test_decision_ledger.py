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


def test_aggregates_listings_and_label_files_over_http(api: ServerProcess) -> None:
    import io  # noqa: PLC0415

    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from fraud_contract.api import DECISIONS_PATH, LABELS_FILE_PATH  # noqa: PLC0415
    from fraud_contract.schema import AGGREGATE_FIELDS  # noqa: PLC0415

    card = "CARD-LISTED"
    sent = {"customer_nb_tx_1d": 4, "customer_avg_amount_ref": 40.0, "terminal_risk_7d": 0.25}
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        for i in range(4):
            answer = client.post(
                SCORE_PATH,
                json=example_transaction(
                    transaction_id=f"LS-{i}",
                    customer_id=card,
                    terminal_id="T-LISTED",
                    timestamp=f"2018-08-10T10:0{i}:00",
                    **sent,
                ),
            )
            assert answer.status_code == 200, answer.text
        views = [_decision(client, f"LS-{i}") for i in range(4)]
        card_hash = views[0]["decisions"][0]["card_hash"]
        by_card = client.get(DECISIONS_PATH, params={"card_hash": card_hash, "limit": 3})
        rest = client.get(
            DECISIONS_PATH,
            params={"card_hash": card_hash, "limit": 3, "cursor": by_card.json()["next_cursor"]},
        )
        by_terminal = client.get(DECISIONS_PATH, params={"terminal_id": "T-LISTED"})
        both = client.get(DECISIONS_PATH, params={"terminal_id": "T-LISTED", "card_hash": "x"})
        neither = client.get(DECISIONS_PATH, params={"limit": 3})
        too_many = client.get(DECISIONS_PATH, params={"terminal_id": "T", "limit": 100_000})
        csv_file = (
            "transaction_id,label,reported_at,source\n"
            "LS-0,fraud,2018-09-01T00:00:00,chargeback\n"
            "LS-1,genuine,2018-09-01T00:00:00,analyst\n"
        )
        from_csv = client.post(
            LABELS_FILE_PATH, files={"file": ("labels.csv", csv_file, "text/csv")}
        )
        table = pa.table(
            {
                "transaction_id": ["LS-2"],
                "label": ["fraud"],
                "reported_at": ["2018-09-01T00:00:00"],
                "source": ["chargeback"],
            }
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        from_parquet = client.post(
            LABELS_FILE_PATH,
            files={"file": ("labels.parquet", buffer.getvalue(), "application/octet-stream")},
        )
        bad_row = client.post(
            LABELS_FILE_PATH,
            files={
                "file": (
                    "labels.csv",
                    "transaction_id,label,reported_at,source\n"
                    "LS-3,fraud,2018-09-01T00:00:00,chargeback\n"
                    "LS-3,maybe,2018-09-01T00:00:00,chargeback\n",
                    "text/csv",
                )
            },
        )
        bad_column = client.post(
            LABELS_FILE_PATH,
            files={"file": ("l.csv", "transaction_id,label,when\nLS-3,fraud,x\n", "text/csv")},
        )
        no_file = client.post(LABELS_FILE_PATH, files={"other": ("l.csv", "x", "text/csv")})
        not_multipart = client.post(LABELS_FILE_PATH, json={"labels": []})
        listed = client.get(DECISIONS_PATH, params={"terminal_id": "T-LISTED"}).json()
        unlabelled = client.get("/v1/decisions/LS-3").json()
    stored = views[0]["decisions"][0]["aggregates"]
    assert set(stored) == set(AGGREGATE_FIELDS)  # every aggregate, absent ones as null
    assert {k: v for k, v in stored.items() if v is not None} == sent
    assert by_card.status_code == 200, by_card.text
    assert [d["transaction_id"] for d in by_card.json()["items"]] == ["LS-3", "LS-2", "LS-1"]
    assert [d["transaction_id"] for d in rest.json()["items"]] == ["LS-0"]
    assert rest.json()["next_cursor"] is None
    assert [d["transaction_id"] for d in by_terminal.json()["items"]] == [
        "LS-3", "LS-2", "LS-1", "LS-0"
    ]  # fmt: skip
    assert by_terminal.json()["items"][0]["aggregates"] == views[3]["decisions"][0]["aggregates"]
    for answer in (both, neither):
        assert answer.status_code == 422, answer.text
        assert {e["field"] for e in answer.json()["errors"]} == {"card_hash", "terminal_id"}
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "limit"
    assert from_csv.status_code == 200, from_csv.text
    assert [o["status"] for o in from_csv.json()["outcomes"]] == ["new", "new"]
    assert from_parquet.status_code == 200, from_parquet.text
    assert [o["transaction_id"] for o in from_parquet.json()["outcomes"]] == ["LS-2"]
    assert bad_row.status_code == 422, bad_row.text
    assert bad_row.json()["errors"][0]["field"].startswith("row 2, column label")
    assert bad_column.status_code == 422
    assert {e["field"] for e in bad_column.json()["errors"]} == {
        "column 'when'", "column 'reported_at'", "column 'source'"
    }  # fmt: skip
    assert no_file.status_code == 422
    assert not_multipart.status_code == 415
    assert {d["transaction_id"]: d["label"] for d in listed["items"]} == {
        "LS-0": "fraud", "LS-1": "genuine", "LS-2": "fraud", "LS-3": None
    }  # fmt: skip
    assert unlabelled["labels"] == []  # the bad file's valid first row was not stored


def test_file_rows_are_recorded_with_their_answers(api: ServerProcess) -> None:
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from fraud_contract.api import DECISIONS_PATH, SCORE_FILE_PATH  # noqa: PLC0415

    header = "transaction_id,timestamp,customer_id,terminal_id,amount,customer_nb_tx_1d"
    rows = [
        "LF-0,2018-08-11T09:00:00,CARD-FILE,T-FILE,25.5,2",
        "LF-1,2018-08-11T09:05:00,CARD-FILE,T-FILE,990.0,",
        ",2018-08-11T09:06:00,CARD-FILE,T-FILE,10.0,",  # no id: scored, not recorded
    ]
    parquet = io.BytesIO()
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["LF-P0"],
                "timestamp": ["2018-08-11T10:00:00"],
                "customer_id": ["CARD-FILE"],
                "terminal_id": ["T-FILE"],
                "amount": [45.0],
            }
        ),
        parquet,
    )
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        from_csv = client.post(
            SCORE_FILE_PATH,
            files={"file": ("day.csv", "\n".join([header, *rows]) + "\n", "text/csv")},
            headers={"x-request-id": "ledger-file-1"},
        )
        from_parquet = client.post(
            SCORE_FILE_PATH,
            files={"file": ("day.parquet", parquet.getvalue(), "application/octet-stream")},
        )
        assert from_csv.status_code == 200, from_csv.text
        assert from_parquet.status_code == 200, from_parquet.text
        views = {tid: _decision(client, tid) for tid in ("LF-0", "LF-1", "LF-P0")}
        single = client.post(
            SCORE_PATH,
            json=example_transaction(
                transaction_id="LF-S", customer_id="CARD-FILE", terminal_id="T-FILE"
            ),
        )
        assert single.status_code == 200, single.text
        card_of_single = _decision(client, "LF-S")["decisions"][0]["card_hash"]
        unrecorded = client.get(DECISIONS_PATH, params={"terminal_id": "T-FILE"})
    answered = list(csv.DictReader(io.StringIO(from_csv.text)))
    for row in answered[:2]:
        (stored,) = views[row["transaction_id"]]["decisions"]
        assert stored["probability"] == pytest.approx(float(row["fraud_probability"]))
        assert stored["is_fraud"] == (row["is_fraud"] == "True")
        assert stored["risk_band"] == row["risk_band"]
        assert stored["request_id"] == "ledger-file-1"
        assert stored["card_hash"] == card_of_single  # the same keyed hash as the JSON path
        assert stored["reasons"] is None
    assert views["LF-0"]["decisions"][0]["aggregates"]["customer_nb_tx_1d"] == 2
    assert views["LF-0"]["decisions"][0]["event_time"].startswith("2018-08-11T09:00:00")
    scored_parquet = pq.read_table(io.BytesIO(from_parquet.content))
    (stored,) = views["LF-P0"]["decisions"]
    assert stored["probability"] == pytest.approx(scored_parquet["fraud_probability"][0].as_py())
    # Every recorded decision of the terminal has an id: the row without one is not there.
    listed = {d["transaction_id"] for d in unrecorded.json()["items"]}
    assert listed == {"LF-0", "LF-1", "LF-P0", "LF-S"}
