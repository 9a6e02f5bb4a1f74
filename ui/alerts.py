"""The Alerts tab's handlers: page through the queue, open an alert, label it.

Every handler returns page content and never raises: an API or ledger failure becomes one
sentence in the tab (no ledger on this API, ledger unreachable, API unreachable, key refused).
All calls go to the scoring API over HTTP (``ScoringClient``), with its timeouts, so a slow
API never holds the page longer than one request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any, Final, TypeVar

import gradio as gr
import pandas as pd

from ui.alerts_render import (
    AGGREGATE_COLUMNS,
    QUEUE_COLUMNS,
    RECENT_COLUMNS,
    aggregates_frame,
    decision_html,
    labels_note,
    main_decision,
    page_info_html,
    queue_frame,
    reasons_html,
    recent_frame,
)
from ui.client import APIError, ScoringClient
from ui.ledger import DecisionView, LabelOutcome, LabelValue, StoredDecision
from ui.render import error_html, notice_html

logger = logging.getLogger("fraud_ui.alerts")

T = TypeVar("T")
UNEXPECTED: Final = "Something unexpected went wrong in the UI; the details are in the UI's log."
#: Alerts per queue page.
PAGE_SIZE: Final = 20
#: Newest decisions of an alert's card and of its terminal shown beside it.
RECENT_LIMIT: Final = 20
NOTHING_OPEN: Final = "Open an alert: click its row in the queue (or pick its id and press Open)."

#: (status, queue table, page line, id picker, state) after every queue action.
QueueView = tuple[str, pd.DataFrame, str, Any, "AlertsState"]
#: (status, decision, reasons, aggregates, card decisions, terminal decisions, history note,
#: label events, Fraud button, Genuine button, open transaction id).
DetailView = tuple[str, str, str, pd.DataFrame, pd.DataFrame, pd.DataFrame, str, str, Any, Any, str]


@dataclass
class AlertsState:
    """Per-session paging: the cursor of every page visited (page 1's is ``None``)."""

    cursors: list[str | None] = field(default_factory=lambda: [None])
    next_cursor: str | None = None
    page_ids: list[str] = field(default_factory=list)

    @property
    def page(self) -> int:
        """The 1-based number of the page shown."""
        return len(self.cursors)


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


def _recent_empty(by: str) -> pd.DataFrame:
    other = "terminal" if by == "card" else "card"
    return _empty(RECENT_COLUMNS).rename(columns={"other": other})


class AlertHandlers:
    """Callbacks of the Alerts tab, bound to one API client."""

    def __init__(
        self, client: ScoringClient, *, page_size: int = PAGE_SIZE, recent_limit: int = RECENT_LIMIT
    ) -> None:
        self.client = client
        self.page_size = page_size
        self.recent_limit = recent_limit

    @staticmethod
    def _guard(action: Callable[[], T], on_error: Callable[[str], T]) -> T:
        try:
            return action()
        except APIError as exc:
            return on_error(exc.message)
        except Exception:
            logger.exception("unexpected error in an Alerts handler")
            return on_error(UNEXPECTED)

    # ---- the queue -------------------------------------------------------------------------
    def _load(self, state: AlertsState) -> QueueView:
        def action() -> QueueView:
            page = self.client.alerts(limit=self.page_size, cursor=state.cursors[-1])
            if not page.items and state.page > 1:
                # Labels emptied this page: show the last page that still has alerts.
                back = AlertsState(cursors=state.cursors[:-1])
                return self._load(back)
            ids = list(dict.fromkeys(item.transaction_id for item in page.items))
            new_state = AlertsState(
                cursors=list(state.cursors), next_cursor=page.next_cursor, page_ids=ids
            )
            return (
                "",
                queue_frame(page.items),
                page_info_html(state.page, len(page.items), page.next_cursor is not None),
                gr.update(choices=ids, value=None),
                new_state,
            )

        def fail(message: str) -> QueueView:
            return (
                error_html(message),
                _empty(QUEUE_COLUMNS),
                "",
                gr.update(choices=[], value=None),
                state,
            )

        return self._guard(action, fail)

    def refresh(self, state: AlertsState | None) -> QueueView:
        """Reload the page shown (the first one for a new session)."""
        return self._load(state or AlertsState())

    def first(self, _state: AlertsState | None = None) -> QueueView:
        """Back to the newest alerts."""
        return self._load(AlertsState())

    def older(self, state: AlertsState | None) -> QueueView:
        """The next page (older alerts), when there is one."""
        state = state or AlertsState()
        if state.next_cursor is None:
            return self._load(state)
        return self._load(AlertsState(cursors=[*state.cursors, state.next_cursor]))

    def newer(self, state: AlertsState | None) -> QueueView:
        """The previous page (newer alerts)."""
        state = state or AlertsState()
        return self._load(AlertsState(cursors=state.cursors[:-1] or [None]))

    # ---- one alert -------------------------------------------------------------------------
    def open_row(self, state: AlertsState | None, evt: gr.SelectData) -> DetailView:
        """Open the alert of the clicked queue row."""
        transaction_id = None
        row = evt.row_value if isinstance(evt.row_value, list) else None
        if row and len(row) > QUEUE_COLUMNS.index("transaction"):
            transaction_id = str(row[QUEUE_COLUMNS.index("transaction")])
        elif state is not None and isinstance(evt.index, list | tuple) and evt.index:
            index = int(evt.index[0])
            if 0 <= index < len(state.page_ids):
                transaction_id = state.page_ids[index]
        return self.open(transaction_id)

    def open(self, transaction_id: str | None) -> DetailView:
        """The decision, its reasons, the aggregates it was scored with, the card's and the
        terminal's recent decisions."""
        if not transaction_id:
            return self._detail_empty(notice_html(NOTHING_OPEN))

        def action() -> DetailView:
            view = self.client.decision(transaction_id)
            return self._detail(view)

        return self._guard(action, lambda message: self._detail_empty(error_html(message)))

    def _detail(self, view: DecisionView, status: str = "") -> DetailView:
        decision = main_decision(view)
        reasons = decision.reasons if decision is not None else None
        card, terminal, note = self._recent(decision)
        return (
            status,
            decision_html(view),
            reasons_html(
                reasons, all_aggregates=decision is not None and decision.aggregates is not None
            ),
            aggregates_frame(decision),
            card,
            terminal,
            note,
            labels_note(view.labels),
            gr.update(interactive=True),
            gr.update(interactive=True),
            view.transaction_id,
        )

    def _recent(self, decision: StoredDecision | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        """The newest decisions of the card and of the terminal (alerts or not, with labels)."""
        if decision is None:
            return _recent_empty("card"), _recent_empty("terminal"), ""
        limit = self.recent_limit + 1  # the open decision is among them, and left out
        try:
            card = self.client.decisions_of(card_hash=decision.card_hash, limit=limit).items
            terminal = self.client.decisions_of(terminal_id=decision.terminal_id, limit=limit)
        except APIError as exc:
            note = error_html(f"Recent decisions could not be read: {exc.message}")
            return _recent_empty("card"), _recent_empty("terminal"), note
        explain = (
            f"The newest {self.recent_limit} decisions of this card and of this terminal in the "
            "ledger (alerts or not, each with its label; this one left out), newest "
            "transaction first."
        )
        return (
            recent_frame(decision, card, by="card"),
            recent_frame(decision, terminal.items, by="terminal"),
            notice_html(explain),
        )

    def _detail_empty(self, status: str) -> DetailView:
        return (
            status,
            "",
            "",
            _empty(AGGREGATE_COLUMNS),
            _recent_empty("card"),
            _recent_empty("terminal"),
            "",
            "",
            gr.update(interactive=False),
            gr.update(interactive=False),
            "",
        )

    # ---- labels ----------------------------------------------------------------------------
    def label_fraud(self, transaction_id: str | None) -> DetailView:
        """Label the open alert as fraud (source ``analyst``)."""
        return self._label(transaction_id, "fraud")

    def label_genuine(self, transaction_id: str | None) -> DetailView:
        """Label the open alert as genuine (source ``analyst``)."""
        return self._label(transaction_id, "genuine")

    def _label(self, transaction_id: str | None, label: LabelValue) -> DetailView:
        if not transaction_id:
            return self._detail_empty(notice_html(NOTHING_OPEN))

        def action() -> DetailView:
            outcome = self.client.send_label(transaction_id, label)
            view = self.client.decision(transaction_id)
            return self._detail(view, status=label_status_html(outcome, label, view))

        def fail(message: str) -> DetailView:
            detail = self.open(transaction_id)
            return (error_html(f"The label was not recorded: {message}"), *detail[1:])

        return self._guard(action, fail)


def label_status_html(outcome: LabelOutcome, label: LabelValue, view: DecisionView) -> str:
    """What the ledger did with the label, in words."""
    tx = outcome.transaction_id
    if outcome.status == "duplicate":
        text = f"{tx} already had this {label} label; nothing changed."
    elif outcome.status == "contradicting":
        text = f"{tx} is now labelled {label}: this replaces its earlier label (the latest wins)."
    elif outcome.status == "unknown_transaction":
        text = (
            f"The ledger holds no decision for {tx}; the {label} label was stored and applies "
            "when the decision arrives."
        )
    else:
        text = f"{tx} is labelled {label} and has left the queue."
    text += _history_effect(outcome, label, main_decision(view))
    return f'<div class="fraud-notice" id="alert-label-outcome">{escape(text)}</div>'


def _history_effect(
    outcome: LabelOutcome, label: LabelValue, decision: StoredDecision | None
) -> str:
    """What the label does to the terminal's history, as far as the API's answer says."""
    terminal = decision.terminal_id if decision is not None else "its terminal"
    if outcome.history == "unavailable":
        return (
            " The history store was unavailable: the label is kept in the ledger and reaches "
            f"terminal {terminal}'s history when the API's apply-labels job runs."
        )
    if outcome.history == "not_found":
        return (
            " The history store holds no record of this transaction (scored while it was "
            f"down, or expired), so terminal {terminal}'s history is unchanged."
        )
    if label != "fraud" or outcome.status == "duplicate":
        return ""
    if outcome.history == "updated":
        return (
            f" Terminal {terminal}'s history now holds it as fraud: its next scores count it "
            "once the label delay has passed."
        )
    return (
        f" Terminal {terminal} counts it as confirmed fraud once the label delay has passed; "
        "its next scores change from then on."
    )
