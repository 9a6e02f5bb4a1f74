"""The write-ahead spool: FIFO order, durability across reopen, the bound, thread safety."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from service.ledger.model import Decision
from service.ledger.spool import Spool, decode


def make(index: int) -> Decision:
    return Decision(
        transaction_id=f"t{index}",
        event_time=datetime(2018, 8, 9, 14, 0, index % 60),
        card_hash="abc",
        terminal_id="term",
        amount=1.5,
        probability=0.25,
        is_fraud=False,
        risk_band="low",
        threshold=0.5,
        model_tag="m:1",
        reasons=None,
        request_id=None,
        history_used=True,
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_entries_come_out_oldest_first_and_leave_only_when_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([make(i) for i in range(10)])
    first, last, rows = spool.peek(4)
    assert [decode(r)[0] for r in rows] == ["t0", "t1", "t2", "t3"]
    assert spool.depth == 10
    again = spool.peek(4)
    assert again[2] == rows  # peeking twice re-delivers the same batch
    spool.delete(first, last)
    assert spool.depth == 6
    assert decode(spool.peek(100)[2][0])[0] == "t4"
    spool.close()


def test_a_row_round_trips_every_column(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    original = make(7)
    spool.append([original])
    (payload,) = spool.peek(1)[2]
    row = decode(payload)
    assert row[0] == "t7"
    assert row[1] == original.event_time.isoformat()
    assert row[10] is None
    assert row[12] is True
    assert datetime.fromisoformat(row[13]) == original.recorded_at
    spool.close()


def test_the_spool_survives_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([make(i) for i in range(5)])
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.depth == 5
    assert [decode(r)[0] for r in reopened.peek(10)[2]] == [f"t{i}" for i in range(5)]
    reopened.close()


def test_the_bound_keeps_the_oldest_and_counts_the_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_rows=7)
    assert spool.append([make(i) for i in range(5)]) == 5
    assert spool.append([make(i) for i in range(5, 10)]) == 2
    assert spool.append([make(10)]) == 0
    assert (spool.depth, spool.dropped_total) == (7, 4)
    first, last, _ = spool.peek(3)
    spool.delete(first, last)
    assert spool.append([make(11)]) == 1
    spool.close()


def test_concurrent_appends_and_drains_lose_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, sync="full")
    seen: list[str] = []
    done = threading.Event()

    def drain() -> None:
        while not done.is_set() or spool.depth:
            first, last, rows = spool.peek(50)
            if rows:
                seen.extend(decode(r)[0] for r in rows)
                spool.delete(first, last)

    def produce(offset: int) -> None:
        for start in range(0, 500, 25):
            spool.append([make(offset + start + i) for i in range(25)])

    drainer = threading.Thread(target=drain)
    drainer.start()
    producers = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(3)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    done.set()
    drainer.join()
    assert len(seen) == 1_500
    assert len(set(seen)) == 1_500
    assert spool.depth == 0
    spool.close()
