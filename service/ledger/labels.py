"""Labels in: validate, classify against what the ledger knows, store as events (never update).

All labels of a call are classified and stored in one transaction under an advisory lock, so
concurrent callers cannot both see "no label yet" for the same transaction, and a failure
leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from service.errors import ApiError, from_validation_error
from service.ledger.model import Label, LabelOutcome, LabelStatus, LabelValue

#: Advisory lock key serialising label writers (labels are low volume; correctness first).
LABEL_LOCK = 0x1ED6E5

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


def record_labels(pool: ConnectionPool, labels: Sequence[Label]) -> list[LabelOutcome]:
    """Store every label as an event; return one outcome per label, in order."""
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
    return [
        LabelOutcome(index, item.transaction_id, status, event_id)
        for index, (item, status, event_id) in enumerate(
            zip(labels, statuses, event_ids, strict=True)
        )
    ]
