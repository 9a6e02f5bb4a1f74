"""The Alerts tab's content: the queue table, one decision, its reasons, the aggregates the model
saw and the card's and terminal's recent decisions.

Pure functions of the ledger's answers (no Gradio, no HTTP); every string from outside is
HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Final

import pandas as pd

from fraud_contract import AGGREGATE_FIELDS
from fraud_contract.api import Reason
from ui.form import field_label
from ui.ledger import DecisionView, LabelEvent, ListedDecision, StoredDecision

QUEUE_COLUMNS: Final = (
    "time",
    "transaction",
    "probability",
    "band",
    "amount",
    "terminal",
    "card",
    "model",
)
AGGREGATE_COLUMNS: Final = ("aggregate", "value", "field")
RECENT_COLUMNS: Final = (
    "time",
    "transaction",
    "probability",
    "decision",
    "band",
    "amount",
    "label",
    "other",
)
#: Characters of the keyed card hash shown (enough to tell cards apart on a page).
CARD_CHARS: Final = 14
#: What a label does to later scores, said where the analyst labels.
LABEL_EFFECT: Final = (
    "A **Fraud** label confirms this transaction as fraud at its terminal: once the label "
    "delay has passed (a transaction counts as known 7 days after its time), the terminal's "
    "risk and fraud-run history count it, so the next scores at a confirmed-compromised "
    "terminal change from then on, not at once. **Genuine** adds no fraud to the history. "
    "Either label takes the alert out of the queue; labels are kept as events (a later one "
    "wins) and feed retraining."
)


def short_card(card_hash: str) -> str:
    """The start of a keyed card hash, enough to recognise the card on a page."""
    return card_hash if len(card_hash) <= CARD_CHARS else card_hash[:CARD_CHARS] + "…"


def _time(value: datetime | None) -> str:
    return "n/a" if value is None else value.isoformat(sep=" ", timespec="seconds")


def queue_frame(items: Sequence[StoredDecision]) -> pd.DataFrame:
    """The queue page as a table, in the API's order (newest transaction first)."""
    rows = [
        {
            "time": _time(item.event_time),
            "transaction": item.transaction_id,
            "probability": f"{item.probability:.3f}",
            "band": item.risk_band,
            "amount": f"{item.amount:.2f}",
            "terminal": item.terminal_id,
            "card": short_card(item.card_hash),
            "model": item.model_tag,
        }
        for item in items
    ]
    return pd.DataFrame(rows, columns=list(QUEUE_COLUMNS))


def page_info_html(page: int, shown: int, more: bool) -> str:
    """'Page 2 · 20 alerts · more older' under the queue."""
    if shown == 0 and page == 1:
        text = "The queue is empty: every alert is labelled."
    else:
        older = "older alerts on the next page" if more else "no older alerts"
        text = f"Page {page} · {shown} alerts · {older}"
    return f'<div class="fraud-meta" id="alerts-page">{escape(text)}</div>'


def main_decision(view: DecisionView) -> StoredDecision | None:
    """The decision to show first: a flagged one with the highest probability, else the first."""
    if not view.decisions:
        return None
    return max(view.decisions, key=lambda d: (d.is_fraud, d.probability))


def _label_line(view: DecisionView) -> str:
    if view.label is None:
        return '<span id="alert-label" data-label="none">not labelled yet (in the queue)</span>'
    latest = view.labels[0]
    return (
        f'<span id="alert-label" data-label="{escape(view.label)}">{escape(view.label)}</span>'
        f" (by {escape(latest.source)}, reported {_time(latest.reported_at)} UTC)"
    )


def decision_html(view: DecisionView) -> str:
    """The decision card: probability against threshold, band, terminal, card, label."""
    decision = main_decision(view)
    if decision is None:
        return (
            '<div class="fraud-result" id="alert-decision-card">'
            f"No decision is stored for {escape(view.transaction_id)} (labels only). "
            f"Label: {_label_line(view)}</div>"
        )
    flagged = "alert" if decision.is_fraud else "clear"
    comparison = "≥" if decision.is_fraud else "<"
    others = [d for d in view.decisions if d is not decision]
    other_lines = "".join(
        f"<li><code>{escape(d.model_tag)}</code>: {d.probability:.4f} "
        f"({'alert' if d.is_fraud else 'no alert'}, {escape(d.risk_band)})</li>"
        for d in others
    )
    other_models = f"<div>Other models:<ul>{other_lines}</ul></div>" if others else ""
    history = (
        "the history store answered (the card's and terminal's history was used)"
        if decision.history_used
        else "none from the store (unavailable or not configured: the model knew only the "
        "fields sent)"
    )
    return (
        f'<div class="fraud-result" data-decision="{flagged}" id="alert-decision-card">'
        f'<div class="fraud-decision {flagged}">Transaction '
        f'<span id="alert-transaction">{escape(decision.transaction_id)}</span></div>'
        f'<div class="fraud-prob"><span id="alert-probability">{decision.probability:.1%}'
        f"</span> fraud probability ({decision.probability:.4f} {comparison} threshold "
        f"{decision.threshold:.4f}), risk band <b>{escape(decision.risk_band)}</b></div>"
        f'<div class="fraud-detail">{_time(decision.event_time)} · amount '
        f'{decision.amount:.2f} · terminal <code id="alert-terminal">'
        f"{escape(decision.terminal_id)}</code> · card <code>"
        f"{escape(short_card(decision.card_hash))}</code> (keyed hash)</div>"
        f'<div class="fraud-detail">Label: {_label_line(view)}</div>'
        f'<div class="fraud-meta">History: {history} · model <code>'
        f"{escape(decision.model_tag)}</code> · request "
        f"<code>{escape(decision.request_id or 'n/a')}</code> · answered "
        f"{_time(decision.recorded_at)} UTC</div>{other_models}</div>"
    )


def reasons_html(reasons: Sequence[Reason] | None, *, all_aggregates: bool = False) -> str:
    """The TreeSHAP reasons as a table with a bar per contribution (largest first).

    HTML rather than a Gradio plot: plots throw in the browser when redrawn while hidden.
    """
    if not reasons:
        return (
            '<div class="fraud-notice" id="alert-reasons-table">No reasons were stored with '
            "this decision (the API's FRAUD_REASONS policy computed none for it).</div>"
        )
    ordered = sorted(reasons, key=lambda r: abs(r.contribution), reverse=True)
    top = max(abs(r.contribution) for r in ordered) or 1.0
    rows = []
    for reason in ordered:
        width = 100.0 * abs(reason.contribution) / top
        direction = "raises" if reason.contribution >= 0 else "lowers"
        colour = "#b91c1c" if reason.contribution >= 0 else "#15803d"
        value = "missing" if reason.value is None else f"{reason.value:.4g}"
        rows.append(
            f"<tr><td><code>{escape(reason.feature)}</code></td><td>{value}</td>"
            f'<td class="fraud-num">{reason.contribution:+.3f}</td>'
            f'<td class="fraud-bar-cell"><span class="fraud-bar" style="width:{width:.0f}%;'
            f'background:{colour}" title="{direction} the fraud log-odds"></span></td></tr>'
        )
    history = sum(reason.feature in AGGREGATE_FIELDS for reason in ordered)
    if all_aggregates:
        among = (
            f"{history} of these reasons are history aggregates"
            if history
            else "None of these reasons is a history aggregate"
        )
        note = f"{among}; every aggregate the model saw is listed below."
    elif history:
        note = f"{history} of these reasons are history aggregates (their values are listed below)."
    else:
        note = (
            "None of these reasons is a history aggregate. The ledger keeps only the top "
            "reasons' values, so the other aggregates the model saw are not stored."
        )
    return (
        '<table class="fraud-reasons" id="alert-reasons-table"><caption>Top reasons (TreeSHAP, '
        "log-odds; red raises the fraud risk, green lowers it)</caption><thead><tr>"
        "<th>feature</th><th>value</th><th>contribution</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<div class="fraud-meta" id="alert-reasons-note">{escape(note)}</div>'
    )


def _value(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


def aggregates_frame(decision: StoredDecision | None) -> pd.DataFrame:
    """Every aggregate the model saw for this decision, in the contract's order.

    ``missing``: the model got no value (unknown). A decision recorded before the ledger kept
    the aggregates falls back to those among its stored reasons.
    """
    if decision is None:
        return pd.DataFrame(columns=list(AGGREGATE_COLUMNS))
    if decision.aggregates is None:
        return reason_aggregates_frame(decision.reasons)
    rows = [
        {
            "aggregate": field_label(name),
            "value": _value(decision.aggregates.get(name)),
            "field": name,
        }
        for name in AGGREGATE_FIELDS
    ]
    return pd.DataFrame(rows, columns=list(AGGREGATE_COLUMNS))


def reason_aggregates_frame(reasons: Sequence[Reason] | None) -> pd.DataFrame:
    """The history aggregates among the stored reasons, with the value the model saw."""
    rows = [
        {
            "aggregate": field_label(reason.feature),
            "value": "missing" if reason.value is None else f"{reason.value:.4g}",
            "field": reason.feature,
        }
        for reason in reasons or ()
        if reason.feature in AGGREGATE_FIELDS
    ]
    return pd.DataFrame(rows, columns=list(AGGREGATE_COLUMNS))


def recent_frame(
    decision: StoredDecision, items: Sequence[ListedDecision], *, by: str
) -> pd.DataFrame:
    """The card's (``by='card'``) or terminal's decisions from the ledger's listing, newest
    first, the open one left out; ``other`` is the terminal (card rows) or the card."""
    rows = [
        {
            "time": _time(item.event_time),
            "transaction": item.transaction_id,
            "probability": f"{item.probability:.3f}",
            "decision": "alert" if item.is_fraud else "clear",
            "band": item.risk_band,
            "amount": f"{item.amount:.2f}",
            "label": item.label or "none",
            "other": item.terminal_id if by == "card" else short_card(item.card_hash),
        }
        for item in items
        if item.transaction_id != decision.transaction_id
    ]
    frame = pd.DataFrame(rows, columns=list(RECENT_COLUMNS))
    return frame.rename(columns={"other": "terminal" if by == "card" else "card"})


def labels_note(labels: Sequence[LabelEvent]) -> str:
    """Every label event of the transaction, newest first (the first one wins)."""
    if not labels:
        return ""
    items = "".join(
        f"<li>{escape(event.label)} by {escape(event.source)}, reported "
        f"{_time(event.reported_at)} UTC ({escape(event.status)})</li>"
        for event in labels
    )
    return f'<div class="fraud-meta" id="alert-label-events">Label events:<ul>{items}</ul></div>'
