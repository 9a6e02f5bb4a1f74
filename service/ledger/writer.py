"""The ledger writer: a thread that drains the spool into PostgreSQL, in batches, exactly once.

Each batch is one PostgreSQL transaction: binary ``COPY`` of the spooled JSON into a
per-connection temporary staging table, then ``INSERT ... SELECT ... ON CONFLICT
(transaction_id, model_tag) DO NOTHING``. The spool entries are deleted only after the commit,
so a crash between the two re-delivers the batch and the conflict clause drops what PostgreSQL
already has: at-least-once delivery plus an idempotent insert gives exactly-once rows.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg_pool import ConnectionPool

from fraud_contract.schema import AGGREGATE_FIELDS
from service.ledger.model import DECISION_COLUMNS
from service.ledger.spool import Spool

_log = logging.getLogger(__name__)

_COLUMNS = ", ".join(DECISION_COLUMNS)
# One jsonb value per decision: the spooled JSON array goes to PostgreSQL unparsed, so the
# copy loop costs a length prefix per row in Python and PostgreSQL does the decoding.
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS decisions_stage (payload jsonb NOT NULL) ON COMMIT DELETE ROWS"
)
_COPY = "COPY decisions_stage (payload) FROM STDIN (FORMAT binary)"
# A payload spooled before a column was added has fewer elements: ``p->>n`` is then NULL.
# The aggregates are spooled as values in AGGREGATE_FIELDS order (names cost 3x the bytes);
# stored as a jsonb object named by the same list. A change to that list must let the spool
# drain first (an old spooled row would be named by the new list).
_AGGREGATES = (
    "CASE WHEN jsonb_typeof(p->15) = 'array' THEN jsonb_build_object("
    + ", ".join(f"'{name}', p->15->{i}" for i, name in enumerate(AGGREGATE_FIELDS))
    + ") END"
)
_VALUES = (
    "p->>0, (p->>1)::timestamp, p->>2, p->>3, (p->>4)::float8, (p->>5)::float8, "
    "(p->>6)::boolean, p->>7, (p->>8)::float8, p->>9, NULLIF(p->10, 'null'::jsonb), p->>11, "
    f"(p->>12)::boolean, (p->>13)::timestamptz, (p->>14)::boolean, {_AGGREGATES}"
)
_INSERT = (
    f"INSERT INTO decisions ({_COLUMNS}) "  # noqa: S608 - constants only
    f"SELECT {_VALUES} FROM (SELECT payload AS p FROM decisions_stage) AS staged "
    "ON CONFLICT (transaction_id, model_tag) DO NOTHING"
)
# Binary COPY framing: signature, flags, header extension; per row 1 field; trailer.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
_JSONB_VERSION = b"\x01"


def _binary_rows(payloads: list[bytes]) -> bytes:
    pack = struct.Struct("!hi").pack
    parts = [_HEADER]
    for payload in payloads:
        parts.append(pack(1, len(payload) + 1))
        parts.append(_JSONB_VERSION)
        parts.append(payload)
    parts.append(_TRAILER)
    return b"".join(parts)


def copy_payloads(pool: ConnectionPool, payloads: list[bytes]) -> int:
    """Write spooled payloads in one transaction; return how many were new (the rest existed)."""
    data = _binary_rows(payloads)
    with pool.connection() as conn, conn.transaction():
        conn.execute(_STAGE)
        with conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.write(data)
            cur.execute(_INSERT)
            return max(cur.rowcount, 0)


class LedgerWriter:
    """Drains a :class:`Spool` into PostgreSQL from a daemon thread, retrying with back-off."""

    def __init__(
        self,
        spool: Spool,
        pool: ConnectionPool,
        *,
        batch_size: int = 2_000,
        flush_interval_s: float = 0.2,
        retry_max_s: float = 5.0,
        before_write: Callable[[], None] | None = None,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.spool = spool
        self.pool = pool
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_max_s = retry_max_s
        #: Runs before each batch (the ledger uses it to apply migrations once reachable).
        self.before_write = before_write
        #: Test hook: runs between PostgreSQL's commit and the spool delete.
        self.after_commit = after_commit
        self.written_total = 0
        self.redelivered_total = 0
        self.errors_total = 0
        #: Decisions PostgreSQL refused (bad data), moved to the spool's quarantine table.
        self.rejected_total = 0
        self.last_error: str | None = None
        self.last_write_unix: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the drain thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Wake the thread now instead of at the end of its flush interval (flush, stop)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current batch (what is spooled stays spooled)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        """Whether the drain thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def write_once(self) -> int:
        """Copy one batch from the spool; return its size (0: spool empty). Raises on failure."""
        first, last, rows = self.spool.peek(self.batch_size)
        if not rows:
            return 0
        if self.before_write is not None:
            self.before_write()
        try:
            inserted = copy_payloads(self.pool, rows)
        except (psycopg.DataError, psycopg.IntegrityError):
            # A row PostgreSQL refuses would block the spool forever: find it, set it aside.
            inserted = self._write_row_by_row(rows)
        if self.after_commit is not None:
            self.after_commit()
        self.spool.delete(first, last)
        self.written_total += inserted
        self.redelivered_total += len(rows) - inserted
        self.last_write_unix = time.time()
        return len(rows)

    def _write_row_by_row(self, rows: list[bytes]) -> int:
        """Write each row alone; quarantine the ones refused (an outage still raises)."""
        inserted = 0
        refused: list[tuple[bytes, str]] = []
        for payload in rows:
            try:
                inserted += copy_payloads(self.pool, [payload])
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                refused.append((payload, f"{type(exc).__name__}: {exc}"[:500]))
        if refused:
            self.spool.quarantine(refused)
            self.rejected_total += len(refused)
            _log.error("ledger: %d decision(s) refused by PostgreSQL, quarantined", len(refused))
        return inserted

    def _checkpoint(self) -> None:
        try:
            self.spool.checkpoint()
        except Exception as exc:  # a busy spool: the next round checkpoints
            _log.debug("spool checkpoint skipped: %s", exc)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                count = self.write_once()
            except Exception as exc:  # any failure: keep the spool, retry later
                self.errors_total += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                _log.warning("ledger write failed, retrying in %.1f s: %s", backoff, exc)
                self._checkpoint()  # the spool grows during an outage: keep its WAL bounded
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            self._checkpoint()
            backoff = 0.1
            if count < self.batch_size:
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
