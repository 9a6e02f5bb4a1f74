"""Retention: remove decisions answered, and label events received, before a cut-off.

Deletes run in bounded chunks, one short transaction each, so a retention job never holds
long locks or a huge transaction against a ledger that is being written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg_pool import ConnectionPool


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """Rows removed and the cut-off used."""

    cutoff: datetime
    decisions_deleted: int
    labels_deleted: int


def _delete_chunked(
    pool: ConnectionPool, table: str, column: str, cutoff: datetime, chunk: int
) -> int:
    total = 0
    sql = (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - table/column are constants
        f"SELECT ctid FROM {table} WHERE {column} < %s LIMIT %s))"
    )
    while True:
        with pool.connection() as conn:
            deleted = conn.execute(sql.encode(), (cutoff, chunk)).rowcount
        total += max(deleted, 0)
        if deleted < chunk:
            return total


def delete_older_than(
    pool: ConnectionPool, days: int, *, now: datetime | None = None, chunk: int = 10_000
) -> RetentionResult:
    """Delete decisions with ``recorded_at`` and labels with ``received_at`` older than ``days``."""
    if days < 1:
        raise ValueError("retention needs at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    decisions = _delete_chunked(pool, "decisions", "recorded_at", cutoff, chunk)
    labels = _delete_chunked(pool, "label_events", "received_at", cutoff, chunk)
    return RetentionResult(cutoff, decisions, labels)
