"""PostgreSQL crashes while the served API is under load: every answered decision reaches it once.

The issue's proof at the API level: clients score single transactions and batches through
``bentoml serve`` (two workers, each with its own spool) while the ledger's server is killed
(immediate shutdown, crash recovery at restart) and brought back; scoring never fails, the
spool depth shows the outage in ``/metrics``, and afterwards the ledger holds exactly the
transaction ids that were answered 200.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from fraud_contract.api import SCORE_BATCH_PATH, SCORE_PATH
from fraud_contract.schema import example_transaction
from service.ledger.embedded import stop_embedded
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port
from testkit.process import ServerProcess
from tests.integration.test_ledger import pg_data_dir
from tests.integration.test_ledger_outage import Server

pytestmark = pytest.mark.integration

CLIENTS = 4
BATCH_ROWS = 20


@pytest.fixture(scope="module")
def database() -> Iterator[Server]:
    server = Server(pg_data_dir())
    yield server
    server.stop()  # after a pg_ctl restart the library no longer knows the process
    stop_embedded(server.data)
    shutil.rmtree(server.data.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, database: Server) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("bentoml")
    tiny_model_tag(home)
    env = {
        "FRAUD_DATABASE_URL": database.url,
        "FRAUD_LEDGER_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
        "FRAUD_LEDGER_FLUSH_INTERVAL_S": "0.1",
        "FRAUD_LEDGER_RETRY_MAX_S": "0.5",
    }
    with served_process(home, free_port(), workers=2, env=env, log_name="ledger-outage.log") as s:
        yield s


class Load:
    """Client threads scoring until stopped; the ids answered 200 and anything unexpected."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answered: set[str] = set()
        self.unexpected: list[str] = []
        self.stop = threading.Event()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(CLIENTS)]

    def _next_ids(self, count: int) -> list[str]:
        with self._lock:
            return [f"out-{next(self._ids):06d}" for _ in range(count)]

    def _send(self, client: httpx.Client, path: str, body: dict, ids: list[str]) -> None:
        for _ in range(10):
            response = client.post(path, json=body)
            if response.status_code == 503 and response.json().get("error") == "overloaded":
                time.sleep(float(response.headers["retry-after"]))
                continue
            break
        if response.status_code == 200:
            with self._lock:
                self.answered.update(ids)
        else:
            self.unexpected.append(f"{path} -> {response.status_code} {response.text[:200]}")

    def _run(self, number: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self.stop.is_set():
                if number == 0:  # one client sends batches, the others single scores
                    ids = self._next_ids(BATCH_ROWS)
                    rows = [example_transaction(transaction_id=i) for i in ids]
                    self._send(client, SCORE_BATCH_PATH, {"transactions": rows}, ids)
                else:
                    ids = self._next_ids(1)
                    self._send(client, SCORE_PATH, example_transaction(transaction_id=ids[0]), ids)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def count(self) -> int:
        with self._lock:
            return len(self.answered)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def spool_rows(base_url: str) -> float:
    """``fraud_ledger_spool_rows`` summed over the workers, from ``/metrics``."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fraud_ledger_spool_rows")
    )


def stored_ids(url: str) -> tuple[int, set[str]]:
    """(rows, distinct transaction ids) in the ledger, or (-1, empty) while it is down."""
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            ids = [row[0] for row in connection.execute("SELECT transaction_id FROM decisions")]
    except psycopg.OperationalError:
        return -1, set()
    return len(ids), set(ids)


def test_a_database_crash_under_load_loses_no_answered_decision(
    api: ServerProcess, database: Server
) -> None:
    with Load(api.base_url) as load:
        wait_for(lambda: load.count() >= 300, 60, "no traffic before the crash")
        database.crash()
        during = load.count()
        wait_for(lambda: load.count() >= during + 300, 60, "scoring stopped with the database")
        wait_for(lambda: spool_rows(api.base_url) > 0, 30, "the outage is not in /metrics")
        database.restart()
        after = load.count()
        wait_for(lambda: load.count() >= after + 300, 60, "scoring stalled after the restart")
    assert load.unexpected == []
    answered = load.answered
    wait_for(
        lambda: stored_ids(database.url)[0] >= len(answered), 90, "decisions never all arrived"
    )
    rows, ids = stored_ids(database.url)
    assert rows == len(ids) == len(answered)  # once each
    assert ids == answered  # and exactly those answered
    wait_for(lambda: spool_rows(api.base_url) == 0, 30, "the spool did not drain")
