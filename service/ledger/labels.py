"""Labels in: validate, classify against what the ledger knows, store as events (never update).

All labels of a call are classified and stored in one transaction under an advisory lock, so
concurrent callers cannot both see "no label yet" for the same transaction, and a failure
leaves nothing half-written. Under the same lock, the winning label of every labelled
transaction is handed to an ``apply`` callback (the service updates the terminal histories in
the store with it): two concurrent calls apply their winners in the order they committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from psycopg import Connection
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from service.errors import ApiError, from_validation_error
from service.ledger.model import Label, LabelOutcome, LabelStatus, LabelTarget, LabelValue

#: Advisory lock key serialising label writers (labels are low volume; correctness first).
LABEL_LOCK = 0x1ED6E5

#: Receives the winning labels of a call while its transaction holds the label lock.
ApplyLabels = Callable[[list[LabelTarget]], object]

#: Each labelled transaction's latest label (as ``latest_labels``) and its decision's fields.
_TARGETS = (
    "SELECT l.transaction_id, d.terminal_id, d.event_time, l.label = 'fraud', d.plain_amount "
    "FROM latest_labels l JOIN LATERAL (SELECT terminal_id, event_time, plain_amount "
    "FROM decisions WHERE decisions.transaction_id = l.transaction_id "
    "ORDER BY recorded_at LIMIT 1) d ON true "
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class LabelIn(BaseModel):
    """One label as a client sends it (``POST /v1/labels`` body item, or one file row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_id: Text = Field(description="Transaction the label is about.")
    label: LabelValue = Field(description="'fraud' or 'genuine'.")
    reported_at: datetime = Field(
        description="When the label was reported (ISO 8601; no offset means UTC)."
    )
    source: Text = Field(description="Who reported it, e.g. 'chargeback' or 'analyst'.")

    def to_label(self) -> Label:
        """The ledger's :class:`Label`, with the reported time made timezone-aware (UTC)."""
        reported = self.reported_at
        if reported.tzinfo is None:
            reported = reported.replace(tzinfo=UTC)
        return Label(self.transaction_id, self.label, reported, self.source)


def parse_labels(
    items: Sequence[object], *, prefix: str = "labels", max_labels: int = 100_000
) -> list[Label]:
    """Validate JSON label objects; 422 naming every bad field (``labels.3.label``).

    More than ``max_labels`` items is a 413 before any is validated.
    """
    if len(items) > max_labels:
        raise ApiError(
            413,
            "payload_too_large",
            f"At most {max_labels} labels per request.",
            [{"field": prefix, "reason": f"{len(items)} items, more than {max_labels}"}],
            reason="too_large",
        )
    labels: list[Label] = []
    problems: list[dict[str, str]] = []
    for index, item in enumerate(items):
        try:
            labels.append(LabelIn.model_validate(item).to_label())
        except ValidationError as exc:
            problems.extend(from_validation_error(exc, prefix=f"{prefix}.{index}.").errors)
        if len(problems) >= 50:
            break
    if problems:
        raise ApiError(
            422,
            "invalid_input",
            f"{len(problems)} label field(s) are invalid; see 'errors'.",
            problems[:50],
            reason="invalid_value",
        )
    return labels


def classify(
    labels: Sequence[Label],
    known: set[str],
    history: dict[str, list[tuple[str, str, datetime]]],
) -> list[LabelStatus]:
    """Status of each label in order, each one seeing the events before it (pure function).

    ``history`` maps a transaction id to its earlier events as (label, source, reported_at);
    it is extended in place as labels are classified.
    """
    statuses: list[LabelStatus] = []
    for item in labels:
        earlier = history.setdefault(item.transaction_id, [])
        status: LabelStatus
        if item.transaction_id not in known:
            status = "unknown_transaction"
        elif (item.label, item.source, item.reported_at) in earlier:
            status = "duplicate"
        elif earlier and max(earlier, key=lambda e: e[2])[0] != item.label:
            status = "contradicting"
        else:
            status = "new"
        statuses.append(status)
        earlier.append((item.label, item.source, item.reported_at))
    return statuses


def label_targets(
    conn: Connection[Any],
    transaction_ids: Sequence[str] | None = None,
    *,
    received_since: datetime | None = None,
    after: str = "",
    limit: int | None = None,
) -> list[LabelTarget]:
    """The winning label of labelled transactions that have a decision, by transaction id.

    Either of the given ``transaction_ids``, or of every transaction with a label received at
    or after ``received_since`` (all when ``None``), ids above ``after``, at most ``limit``.
    """
    where: list[str] = []
    params: list[Any] = []
    if transaction_ids is not None:
        where.append("l.transaction_id = ANY(%s)")
        params.append(list(transaction_ids))
    else:
        where.append("l.transaction_id > %s")
        params.append(after)
        if received_since is not None:
            where.append(
                "EXISTS (SELECT 1 FROM label_events e WHERE e.transaction_id = l.transaction_id "
                "AND e.received_at >= %s)"
            )
            params.append(received_since)
    sql = _TARGETS + "WHERE " + " AND ".join(where) + " ORDER BY l.transaction_id"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    return [LabelTarget(*row) for row in conn.execute(sql.encode(), params)]


def record_labels(
    pool: ConnectionPool, labels: Sequence[Label], apply: ApplyLabels | None = None
) -> list[LabelOutcome]:
    """Store every label as an event; return one outcome per label, in order.

    ``apply`` (optional) gets the winning label of each labelled transaction that has a
    decision, after the events are written and before they commit, under the label lock. It
    must not raise for a failure it can live with: an exception rolls the whole call back.
    """
    if not labels:
        return []
    ids = sorted({item.transaction_id for item in labels})
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LABEL_LOCK,))
        known = {
            str(row[0])
            for row in conn.execute(
                "SELECT DISTINCT transaction_id FROM decisions WHERE transaction_id = ANY(%s)",
                (ids,),
            )
        }
        history: dict[str, list[tuple[str, str, datetime]]] = {}
        for transaction_id, label, source, reported_at in conn.execute(
            "SELECT transaction_id, label, source, reported_at FROM label_events "
            "WHERE transaction_id = ANY(%s) ORDER BY id",
            (ids,),
        ):
            history.setdefault(transaction_id, []).append((label, source, reported_at))
        statuses = classify(labels, known, history)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO label_events (transaction_id, label, reported_at, source, status) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                [
                    (item.transaction_id, item.label, item.reported_at, item.source, status)
                    for item, status in zip(labels, statuses, strict=True)
                ],
                returning=True,
            )
            event_ids: list[int] = []
            while True:
                row = cur.fetchone()
                if row is not None:
                    event_ids.append(int(row[0]))
                if not cur.nextset():
                    break
        if apply is not None and known:
            apply(label_targets(conn, sorted(known)))
    return [
        LabelOutcome(index, item.transaction_id, status, event_id)
        for index, (item, status, event_id) in enumerate(
            zip(labels, statuses, event_ids, strict=True)
        )
    ]


def replay_labels(
    pool: ConnectionPool,
    apply: Callable[[list[LabelTarget]], int],
    *,
    received_since: datetime | None = None,
    chunk: int = 10_000,
) -> tuple[int, int]:
    """Apply the winning label of every labelled transaction again, ``chunk`` at a time.

    For labels the history store missed (it was down, or the decision reached the ledger
    after its label). Each chunk is read and applied under the label lock, so a label call
    running meanwhile is never overwritten by an older winner. ``apply`` returns how many
    it matched. Returns (transactions, matched).
    """
    after, total, matched = "", 0, 0
    while True:
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LABEL_LOCK,))
            targets = label_targets(conn, received_since=received_since, after=after, limit=chunk)
            if not targets:
                return total, matched
            matched += apply(targets)
        total += len(targets)
        after = targets[-1].transaction_id
