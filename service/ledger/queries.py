"""Read side of the ledger: one decision with its labels, and the analyst's alert queue."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal

import orjson
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from fraud_contract.schema import AGGREGATE_FIELDS
from service.errors import InvalidInput
from service.ledger.model import (
    AlertPage,
    DecisionPage,
    DecisionView,
    LabelEvent,
    ListedDecision,
    StoredDecision,
)

_DECISION_COLUMNS = (
    "transaction_id, event_time, card_hash, terminal_id, amount, probability, is_fraud, "
    "risk_band, threshold, model_tag, reasons, request_id, history_used, recorded_at, stored_at, "
    "plain_amount, aggregates"
)


def _in_contract_order(row: dict[str, Any]) -> dict[str, Any]:
    # jsonb keeps keys in its own order: give them back in the contract's (any extra last).
    stored = row.get("aggregates")
    if stored:
        ordered = {name: stored.pop(name) for name in AGGREGATE_FIELDS if name in stored}
        row["aggregates"] = {**ordered, **stored}
    return row


def _decision(row: dict[str, Any]) -> StoredDecision:
    return StoredDecision(**_in_contract_order(row))


def get_decision(pool: ConnectionPool, transaction_id: str) -> DecisionView | None:
    """The decisions (one per model tag) and label events of a transaction; ``None`` if unknown.

    Labels come newest first (by reported time, then arrival): the first one wins.
    """
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE transaction_id = %s "  # noqa: S608
            "ORDER BY recorded_at, model_tag",
            (transaction_id,),
        )
        decisions = [_decision(row) for row in cur.fetchall()]
        cur.execute(
            "SELECT id AS event_id, label, reported_at, source, received_at, status "
            "FROM label_events WHERE transaction_id = %s ORDER BY reported_at DESC, id DESC",
            (transaction_id,),
        )
        labels = [LabelEvent(**row) for row in cur.fetchall()]
    if not decisions and not labels:
        return None
    return DecisionView(transaction_id, decisions, labels)


def encode_cursor(item: StoredDecision) -> str:
    """Opaque keyset cursor: the (event time, transaction id, model tag) of the last item."""
    raw = orjson.dumps([item.event_time.isoformat(), item.transaction_id, item.model_tag])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    """Parse a cursor from :func:`encode_cursor`; 422 naming ``cursor`` when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, transaction_id, model_tag = orjson.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(when), str(transaction_id), str(model_tag)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidInput(
            "The cursor is not one this service issued.",
            [{"field": "cursor", "reason": "not a cursor from a previous page"}],
        ) from exc


def _check_limit(limit: int, max_limit: int) -> None:
    if not 1 <= limit <= max_limit:
        raise InvalidInput(
            f"limit must be between 1 and {max_limit}.",
            [{"field": "limit", "reason": f"must be between 1 and {max_limit}"}],
        )


#: The columns ``list_decisions`` may filter on (each has its index, migration 0003).
EntityColumn = Literal["card_hash", "terminal_id"]
_ENTITY_COLUMNS: frozenset[str] = frozenset({"card_hash", "terminal_id"})


def listing_sql(column: EntityColumn, *, paged: bool) -> bytes:
    """The listing's statement; parameters: value, [cursor's 3 values,] limit + 1."""
    if column not in _ENTITY_COLUMNS:
        raise ValueError(f"not a listing column: {column!r}")
    where = f"d.{column} = %s"
    if paged:
        where += " AND (d.event_time, d.transaction_id, d.model_tag) < (%s, %s, %s)"
    columns = ", ".join(f"d.{c.strip()}" for c in _DECISION_COLUMNS.split(","))
    return (
        f"SELECT {columns}, w.label FROM decisions d "  # noqa: S608 - constants only
        "LEFT JOIN LATERAL (SELECT l.label FROM label_events l "
        "WHERE l.transaction_id = d.transaction_id ORDER BY l.reported_at DESC, l.id DESC "
        f"LIMIT 1) w ON true WHERE {where} "
        "ORDER BY d.event_time DESC, d.transaction_id DESC, d.model_tag DESC LIMIT %s"
    ).encode()


def list_decisions(
    pool: ConnectionPool,
    *,
    column: EntityColumn,
    value: str,
    limit: int = 50,
    cursor: str | None = None,
    max_limit: int = 500,
) -> DecisionPage:
    """Every decision of one card (by its keyed hash) or terminal, newest transaction time
    first, each with its winning label; keyset paging on the alert queue's key.

    One index range scan (``decisions_by_card`` / ``decisions_by_terminal``) plus one
    look-up in ``label_events_by_transaction`` per row returned.
    """
    _check_limit(limit, max_limit)
    params: list[Any] = [value]
    if cursor is not None:
        params.extend(decode_cursor(cursor))
    params.append(limit + 1)
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(listing_sql(column, paged=cursor is not None), params)
        rows = [ListedDecision(**_in_contract_order(row)) for row in cur.fetchall()]
    more = len(rows) > limit
    items = rows[:limit]
    return DecisionPage(items, encode_cursor(items[-1]) if more and items else None)


def list_alerts(
    pool: ConnectionPool,
    *,
    unlabelled_only: bool = True,
    limit: int = 50,
    cursor: str | None = None,
    max_limit: int = 500,
) -> AlertPage:
    """Flagged decisions, newest transaction time first, ``limit`` per page (keyset paging).

    ``unlabelled_only`` keeps those without any label event (the analyst queue).
    """
    _check_limit(limit, max_limit)
    where = ["d.is_fraud"]
    params: list[Any] = []
    if cursor is not None:
        where.append("(d.event_time, d.transaction_id, d.model_tag) < (%s, %s, %s)")
        params.extend(decode_cursor(cursor))
    if unlabelled_only:
        where.append(
            "NOT EXISTS (SELECT 1 FROM label_events l WHERE l.transaction_id = d.transaction_id)"
        )
    columns = ", ".join(f"d.{c.strip()}" for c in _DECISION_COLUMNS.split(","))
    sql = (
        f"SELECT {columns} FROM decisions d WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY d.event_time DESC, d.transaction_id DESC, d.model_tag DESC LIMIT %s"
    )
    params.append(limit + 1)
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.encode(), params)
        rows = [_decision(row) for row in cur.fetchall()]
    more = len(rows) > limit
    items = rows[:limit]
    return AlertPage(items, encode_cursor(items[-1]) if more and items else None)
