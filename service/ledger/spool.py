"""The local write-ahead spool: decisions wait here, on disk, until PostgreSQL has them.

One SQLite database in WAL mode (``spool.sqlite3`` in the spool directory). The scoring
thread appends a batch in one short transaction (no network, no fsync per append with
``synchronous=NORMAL``); the writer reads the oldest entries, copies them to PostgreSQL and
deletes them only after PostgreSQL committed; WAL checkpoints (the fsyncs of ``normal``
mode) run on the writer's thread too. The spool is bounded: past ``max_rows`` new
decisions are dropped and counted, so a long outage can never fill the disk or stop scoring.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from service.ledger.model import Decision

SPOOL_FILE = "spool.sqlite3"
#: How stale the bound check's count may get when another process drains the spool.
_RECOUNT_S = 1.0


def encode(decision: Decision) -> bytes:
    """A decision as the spool keeps it: a JSON array in ``DECISION_COLUMNS`` order."""
    return orjson.dumps(decision.as_row())


def decode(payload: bytes) -> list[Any]:
    """The values of a spooled payload (times as ISO 8601 strings)."""
    values: list[Any] = orjson.loads(payload)
    return values


class Spool:
    """A bounded, durable FIFO of encoded decisions (thread-safe; one process appends, the
    writer drains from a thread of the same process or from its own process)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_rows: int = 5_000_000,
        sync: Literal["normal", "full"] = "normal",
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / SPOOL_FILE
        self.max_rows = max_rows
        self._lock = threading.Lock()
        # One connection for appends (shared by scoring threads under the lock), one for the
        # writer's reads and deletes; WAL lets the writer read while appends go on.
        self._append_conn = self._connect(sync)
        self._drain_conn = self._connect(sync)
        # Checkpoints (which fsync) run on the writer's thread, never inside an append.
        self._append_conn.execute("PRAGMA wal_autocheckpoint=0")
        self._append_conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)"
        )
        self._append_conn.execute(
            "CREATE TABLE IF NOT EXISTS quarantine (payload BLOB NOT NULL, error TEXT NOT NULL,"
            " at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        self._depth = self._count()
        self._counted_at = time.monotonic()
        self.dropped_total = 0

    def _count(self) -> int:
        # Entries leave from the oldest end in contiguous ranges and new ones take max + 1, so
        # the span of sequence numbers is the count (two index look-ups instead of a scan).
        row = self._append_conn.execute("SELECT min(seq), max(seq) FROM spool").fetchone()
        return 0 if row is None or row[0] is None else int(row[1]) - int(row[0]) + 1

    def _connect(self, sync: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync.upper()}")
        return conn

    @property
    def depth(self) -> int:
        """Decisions waiting for PostgreSQL (read from the file: a writer process may drain it)."""
        with self._lock:
            self._depth = self._count()
            self._counted_at = time.monotonic()
            return self._depth

    def append(self, decisions: Sequence[Decision]) -> int:
        """Spool ``decisions``; return how many were kept (the rest hit the bound, counted)."""
        if not decisions:
            return 0
        payloads = [(encode(d),) for d in decisions]
        with self._lock:
            if time.monotonic() - self._counted_at > _RECOUNT_S:
                self._depth = self._count()
                self._counted_at = time.monotonic()
            room = max(self.max_rows - self._depth, 0)
            if room < len(payloads):
                self.dropped_total += len(payloads) - room
                payloads = payloads[:room]
            if not payloads:
                return 0
            conn = self._append_conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO spool (payload) VALUES (?)", payloads)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._depth += len(payloads)
        return len(payloads)

    def peek(self, limit: int) -> tuple[int, int, list[bytes]]:
        """The oldest ``limit`` entries: (first seq, last seq, payloads); ``(0, -1, [])`` if none.

        A payload is the JSON array of :func:`encode`, passed to PostgreSQL as it is.
        """
        rows = self._drain_conn.execute(
            "SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        if not rows:
            return 0, -1, []
        return int(rows[0][0]), int(rows[-1][0]), [bytes(r[1]) for r in rows]

    def delete(self, first: int, last: int) -> None:
        """Forget entries ``first..last`` (called only after PostgreSQL committed them)."""
        with self._lock:
            cur = self._drain_conn.execute(
                "DELETE FROM spool WHERE seq BETWEEN ? AND ?", (first, last)
            )
            self._depth -= max(cur.rowcount, 0)

    def quarantine(self, refused: Sequence[tuple[bytes, str]]) -> None:
        """Keep decisions PostgreSQL refused (with its error) for a human to look at."""
        with self._lock:
            self._drain_conn.executemany(
                "INSERT INTO quarantine (payload, error) VALUES (?, ?)", refused
            )

    def quarantined(self) -> list[tuple[list[Any], str]]:
        """The quarantined decisions and why PostgreSQL refused each."""
        rows = self._drain_conn.execute("SELECT payload, error FROM quarantine").fetchall()
        return [(decode(bytes(r[0])), str(r[1])) for r in rows]

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (the writer thread calls this, never scoring)."""
        self._drain_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close both connections (the file stays: it is the queue)."""
        with self._lock:
            self._append_conn.close()
            self._drain_conn.close()
