"""What the ledger stores: one decision per scored transaction and model, labels as events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fraud_contract.schema import AGGREGATE_FIELDS

#: Columns of ``decisions`` the writer fills, in spool and COPY order.
DECISION_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "event_time",
    "card_hash",
    "terminal_id",
    "amount",
    "probability",
    "is_fraud",
    "risk_band",
    "threshold",
    "model_tag",
    "reasons",
    "request_id",
    "history_used",
    "recorded_at",
    "plain_amount",
    "aggregates",
)

LabelValue = Literal["fraud", "genuine"]
LabelStatus = Literal["new", "duplicate", "contradicting", "unknown_transaction"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One answered decision, as the scoring thread hands it to :meth:`Ledger.record`.

    ``card_hash`` is the keyed hash of the card id (never the raw id); ``reasons`` is ``None``
    when no reasons were computed for this decision. ``plain_amount``: the amount was at most
    2x the card's reference mean (``fraud_contract.windows.is_plain``) in the aggregates it was
    scored with, ``None`` without a reference; a fraud label carries it to the terminal's
    history (``terminal_fraud_run_nb_plain``), which the card's hash alone could not.
    ``aggregates``: every ``fraud_contract.schema.AGGREGATE_FIELDS`` value the model was given
    (from the request or the history store; ``None`` values were absent), ``None`` when not
    recorded (decisions from before migration 0003).
    """

    transaction_id: str
    event_time: datetime
    card_hash: str
    terminal_id: str
    amount: float
    probability: float
    is_fraud: bool
    risk_band: str
    threshold: float
    model_tag: str
    reasons: list[dict[str, Any]] | None
    request_id: str | None
    history_used: bool
    recorded_at: datetime
    plain_amount: bool | None = field(default=None, kw_only=True)
    aggregates: dict[str, float | int | None] | None = field(default=None, kw_only=True)

    @classmethod
    def from_result(
        cls,
        result: Mapping[str, Any],
        *,
        event_time: datetime,
        card_hash: str,
        terminal_id: str,
        amount: float,
        request_id: str | None,
        history_used: bool,
        recorded_at: datetime | None = None,
        plain_amount: bool | None = None,
        aggregates: dict[str, float | int | None] | None = None,
    ) -> Decision:
        """Build from one result dict of ``Scorer.score_timed`` plus the request's fields.

        The result must carry a ``transaction_id`` (a decision without one cannot be
        labelled or looked up, so the caller skips it).
        """
        transaction_id = result["transaction_id"]
        if not transaction_id:
            raise ValueError("a ledger decision needs a transaction_id")
        reasons = result.get("reasons") or None
        return cls(
            transaction_id=str(transaction_id),
            event_time=event_time.replace(tzinfo=None),
            card_hash=card_hash,
            terminal_id=terminal_id,
            amount=float(amount),
            probability=float(result["fraud_probability"]),
            is_fraud=bool(result["is_fraud"]),
            risk_band=str(result["risk_band"]),
            threshold=float(result["threshold"]),
            model_tag=str(result["model_tag"]),
            reasons=list(reasons) if reasons is not None else None,
            request_id=request_id,
            history_used=history_used,
            recorded_at=recorded_at or datetime.now(UTC),
            plain_amount=plain_amount,
            aggregates=aggregates,
        )

    def as_row(self) -> tuple[Any, ...]:
        """The values in :data:`DECISION_COLUMNS` order (what the spool keeps).

        ``aggregates`` goes as a list of values in ``AGGREGATE_FIELDS`` order, not an object:
        the names would triple a spooled decision's size; the writer names them again.
        """
        return (
            self.transaction_id,
            self.event_time,
            self.card_hash,
            self.terminal_id,
            self.amount,
            self.probability,
            self.is_fraud,
            self.risk_band,
            self.threshold,
            self.model_tag,
            self.reasons,
            self.request_id,
            self.history_used,
            self.recorded_at,
            self.plain_amount,
            None if self.aggregates is None else [self.aggregates.get(n) for n in AGGREGATE_FIELDS],
        )


@dataclass(frozen=True, slots=True)
class Label:
    """One label as reported: a chargeback, an analyst's verdict, a customer's claim."""

    transaction_id: str
    label: LabelValue
    reported_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class LabelOutcome:
    """What happened to one label sent: always stored, with the status saying how it relates.

    ``new``: the first label of a known transaction, or one agreeing with its latest label;
    ``duplicate``: same label, source and reported time as an earlier event;
    ``contradicting``: differs from the transaction's latest label (the newer one wins);
    ``unknown_transaction``: no decision in the ledger (yet: it may still be in a spool, or
    already removed by retention).
    """

    index: int
    transaction_id: str
    status: LabelStatus
    event_id: int


@dataclass(frozen=True, slots=True)
class LabelTarget:
    """A labelled transaction's winning label, with what the history store needs to apply it.

    ``fraud`` is the transaction's latest label (by reported time, then arrival), after the
    call's own labels; ``event_time``, ``terminal_id`` and ``plain_amount`` come from its
    decision.
    """

    transaction_id: str
    terminal_id: str
    event_time: datetime
    fraud: bool
    plain_amount: bool | None


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A stored label event."""

    event_id: int
    label: LabelValue
    reported_at: datetime
    source: str
    received_at: datetime
    status: LabelStatus


@dataclass(frozen=True, slots=True)
class StoredDecision(Decision):
    """A decision read back from the ledger: the decision, and when PostgreSQL stored it."""

    stored_at: datetime


@dataclass(frozen=True, slots=True)
class DecisionView:
    """``get_decision``: every model's decision for a transaction and all its label events.

    ``label`` is the latest label (by reported time, then arrival): what training uses.
    """

    transaction_id: str
    decisions: list[StoredDecision]
    labels: list[LabelEvent]

    @property
    def label(self) -> LabelValue | None:
        """The label that wins, or ``None`` when unlabelled."""
        return self.labels[0].label if self.labels else None


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of the alert listing, newest first; ``next_cursor`` is ``None`` at the end."""

    items: list[StoredDecision]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ListedDecision(StoredDecision):
    """A decision in the per-card / per-terminal listing, with its winning label (or None)."""

    label: LabelValue | None


@dataclass(frozen=True, slots=True)
class DecisionPage:
    """One page of a card's or terminal's decisions, newest first; ``None`` cursor at the end."""

    items: list[ListedDecision]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Counters for metrics (the service wires them to Prometheus)."""

    spool_depth: int
    spool_dropped_total: int
    written_total: int
    redelivered_total: int
    writer_errors_total: int
    rejected_total: int
    last_error: str | None
    last_write_unix: float | None
