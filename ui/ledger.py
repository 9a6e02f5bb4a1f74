"""What the API's decision-ledger routes answer, as the Alerts tab reads it.

``GET /v1/alerts`` (the queue: flagged decisions not yet labelled, newest first, cursor pages),
``GET /v1/decisions/{transaction_id}`` (every model's decision and the label events),
``GET /v1/decisions?card_hash=|terminal_id=`` (a card's or terminal's decisions, newest first,
with their labels) and ``POST /v1/labels``. The UI never imports the service, so the shapes
are restated here; unknown fields are ignored so a newer API does not break an older UI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from fraud_contract.api import Reason

ALERTS_PATH: Final = "/v1/alerts"
DECISIONS_PREFIX: Final = "/v1/decisions/"
DECISIONS_PATH: Final = "/v1/decisions"
LABELS_PATH: Final = "/v1/labels"
#: The ``source`` of every label the UI sends.
ANALYST_SOURCE: Final = "analyst"

LabelValue = Literal["fraud", "genuine"]


class StoredDecision(BaseModel):
    """One model's decision on one transaction, as the ledger stored it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    transaction_id: str
    event_time: datetime = Field(description="The transaction's time as sent.")
    card_hash: str = Field(description="Keyed hash of the card id (the raw id is never kept).")
    terminal_id: str
    amount: float
    probability: float
    is_fraud: bool
    risk_band: str
    threshold: float
    model_tag: str
    reasons: list[Reason] | None = None
    request_id: str | None = None
    history_used: bool = False
    recorded_at: datetime | None = None
    stored_at: datetime | None = None
    plain_amount: bool | None = None
    aggregates: dict[str, float | None] | None = Field(
        default=None,
        description="Every aggregate the model was given (null: absent); None when the API "
        "recorded none (decisions from before it kept them, or an older API).",
    )


class ListedDecision(StoredDecision):
    """A decision in a card's or terminal's listing, with its winning label."""

    label: LabelValue | None = None


class DecisionPage(BaseModel):
    """One page of a card's or terminal's decisions, newest first."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    items: list[ListedDecision]
    next_cursor: str | None = None


class AlertPage(BaseModel):
    """One page of the alert listing; ``next_cursor`` is ``None`` on the last page."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    items: list[StoredDecision]
    next_cursor: str | None = None


class LabelEvent(BaseModel):
    """One stored label event (labels are never updated, only added)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: int
    label: LabelValue
    reported_at: datetime
    source: str
    received_at: datetime | None = None
    status: str


class DecisionView(BaseModel):
    """``GET /v1/decisions/{id}``: its decisions (one per model), label events newest first."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    transaction_id: str
    decisions: list[StoredDecision]
    labels: list[LabelEvent]
    label: LabelValue | None = Field(default=None, description="The label that wins.")


class LabelOutcome(BaseModel):
    """What the ledger did with one label sent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    index: int
    transaction_id: str
    status: str = Field(description="new, duplicate, contradicting or unknown_transaction.")
    event_id: int
    history: str | None = Field(
        default=None,
        description="With a history store: updated, not_found or unavailable (what the "
        "terminal's history did with the winning label); absent without one.",
    )
