"""The Alerts tab against a fake ledger API: queue pages, one alert, labels, failures in words."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from pydantic import SecretStr

from fraud_contract import AGGREGATE_FIELDS
from fraud_contract.api import API_KEY_HEADER, Reason
from ui.alerts import AlertHandlers, AlertsState, label_status_html
from ui.alerts_render import (
    LABEL_EFFECT,
    QUEUE_COLUMNS,
    decision_html,
    queue_frame,
    reasons_html,
    short_card,
)
from ui.client import LEDGER_DOWN, NO_LEDGER, APIError, ScoringClient
from ui.ledger import (
    ALERTS_PATH,
    ANALYST_SOURCE,
    DECISIONS_PATH,
    DECISIONS_PREFIX,
    LABELS_PATH,
    DecisionView,
    LabelOutcome,
)
from ui.settings import UISettings

START = datetime(2018, 8, 1, 12, 0, 0)
REASONS = [
    {"feature": "amount", "value": 950.0, "contribution": 2.1},
    {"feature": "terminal_risk_7d", "value": 0.5, "contribution": 1.2},
    {"feature": "customer_avg_amount_1d", "value": None, "contribution": -0.3},
]


AGGREGATES: dict[str, Any] = dict.fromkeys(AGGREGATE_FIELDS) | {
    "customer_nb_tx_1d": 3,
    "customer_avg_amount_ref": 41.5,
    "terminal_risk_7d": 0.5,
}


def decision(
    i: int, *, card: str = "k1:card-a", terminal: str = "T1", is_fraud: bool = True
) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i}",
        "event_time": (START + timedelta(minutes=i)).isoformat(),
        "card_hash": card,
        "terminal_id": terminal,
        "amount": 100.0 + i,
        "probability": 0.9 if is_fraud else 0.05,
        "is_fraud": is_fraud,
        "risk_band": "high",
        "threshold": 0.4,
        "model_tag": "fraud-detector:abc",
        "reasons": REASONS,
        "request_id": f"req-{i}",
        "history_used": True,
        "recorded_at": "2026-12-04T21:00:00+00:00",
        "stored_at": "2026-12-04T21:00:01+00:00",
        "plain_amount": False,
        "aggregates": AGGREGATES,
        "a_field_from_a_newer_api": 1,
    }


class FakeLedger:
    """The four ledger routes over a list of decisions (cursor = an offset)."""

    def __init__(self, decisions: list[dict[str, Any]]) -> None:
        self.decisions = decisions
        self.labels: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self.down: int | None = None  # answer this status to everything

    def queue(self, *, labelled_too: bool) -> list[dict[str, Any]]:
        newest_first = sorted(self.decisions, key=lambda d: d["event_time"], reverse=True)
        return [
            d
            for d in newest_first
            if d["is_fraud"] and (labelled_too or d["transaction_id"] not in self.labels)
        ]

    def label_of(self, transaction_id: str) -> str | None:
        events = self.labels.get(transaction_id)
        return events[-1]["label"] if events else None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down == 404:
            return httpx.Response(404, json={"error": "not_found", "message": "No ledger."})
        if self.down == 503:
            return httpx.Response(
                503, json={"error": "ledger_unavailable", "message": "retry shortly."}
            )
        path = request.url.path
        if path == ALERTS_PATH:
            params = request.url.params
            items = self.queue(labelled_too=params.get("all") == "true")
            start = int(params.get("cursor", "0"))
            limit = int(params["limit"])
            page = items[start : start + limit]
            more = start + limit < len(items)
            return httpx.Response(
                200, json={"items": page, "next_cursor": str(start + limit) if more else None}
            )
        if path == DECISIONS_PATH:
            params = request.url.params
            (column,) = [name for name in ("card_hash", "terminal_id") if name in params]
            newest_first = sorted(self.decisions, key=lambda d: d["event_time"], reverse=True)
            items = [
                d | {"label": self.label_of(d["transaction_id"])}
                for d in newest_first
                if d[column] == params[column]
            ][: int(params["limit"])]
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        if path.startswith(DECISIONS_PREFIX):
            tx = unquote(request.url.raw_path.decode().removeprefix(DECISIONS_PREFIX))
            found = [d for d in self.decisions if d["transaction_id"] == tx]
            if not found:
                return httpx.Response(
                    404, json={"error": "not_found", "message": f"No decision for {tx!r}."}
                )
            events = list(reversed(self.labels.get(tx, [])))
            return httpx.Response(
                200,
                json={
                    "transaction_id": tx,
                    "decisions": found,
                    "labels": events,
                    "label": events[0]["label"] if events else None,
                },
            )
        if path == LABELS_PATH and request.method == "POST":
            items = json.loads(request.content)["labels"]
            outcomes = []
            for index, item in enumerate(items):
                tx = item["transaction_id"]
                before = self.labels.get(tx, [])
                status = (
                    "contradicting" if before and before[-1]["label"] != item["label"] else "new"
                )
                event = {**item, "event_id": len(before) + 1, "status": status}
                self.labels.setdefault(tx, []).append(event)
                outcomes.append(
                    {"index": index, "transaction_id": tx, "status": status, "event_id": 1}
                )
            return httpx.Response(200, json={"outcomes": outcomes})
        return httpx.Response(404, json={"error": "not_found", "message": "no route"})


def client_for(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> ScoringClient:
    settings = UISettings(api_url="http://api.test", **kw)
    return ScoringClient(settings, transport=httpx.MockTransport(handler))


def alerts_for(ledger: FakeLedger, page_size: int = 3) -> AlertHandlers:
    return AlertHandlers(client_for(ledger), page_size=page_size, recent_limit=5)


def transactions(frame: Any) -> list[str]:
    return list(frame["transaction"])


def test_queue_is_newest_first_and_pages_older_and_newer() -> None:
    ledger = FakeLedger([decision(i) for i in range(7)])
    alerts = alerts_for(ledger)
    status, frame, page_info, pick, state = alerts.refresh(None)
    assert status == ""
    assert list(frame.columns) == list(QUEUE_COLUMNS)
    assert transactions(frame) == ["tx-6", "tx-5", "tx-4"]
    assert "Page 1 · 3 alerts · older alerts on the next page" in page_info
    assert pick["choices"] == ["tx-6", "tx-5", "tx-4"]

    _, frame, page_info, _, state = alerts.older(state)
    assert transactions(frame) == ["tx-3", "tx-2", "tx-1"]
    assert state.page == 2
    _, frame, page_info, _, state = alerts.older(state)
    assert transactions(frame) == ["tx-0"]
    assert "Page 3 · 1 alerts · no older alerts" in page_info
    _, frame, _, _, same = alerts.older(state)  # no next page: stays
    assert transactions(frame) == ["tx-0"] and same.page == 3
    _, frame, _, _, state = alerts.newer(state)
    assert transactions(frame) == ["tx-3", "tx-2", "tx-1"]
    _, frame, _, _, state = alerts.first(state)
    assert transactions(frame) == ["tx-6", "tx-5", "tx-4"] and state.page == 1


def test_opening_an_alert_shows_decision_reasons_aggregates_and_recent_decisions() -> None:
    ledger = FakeLedger(
        [
            decision(1, card="k1:card-a", terminal="T1"),
            decision(2, card="k1:card-a", terminal="T9"),
            decision(3, card="k1:card-b", terminal="T1"),
            decision(4, card="k1:card-c", terminal="T5"),
            decision(5, card="k1:card-a", terminal="T1", is_fraud=False),  # not an alert
        ]
    )
    ledger.labels["tx-2"] = [{"label": "genuine", "source": "analyst", "event_id": 1,
                              "reported_at": "2018-09-01T00:00:00", "status": "new"}]  # fmt: skip
    alerts = alerts_for(ledger)
    (
        status,
        card_html,
        reasons,
        aggregates,
        card_recent,
        terminal_recent,
        note,
        events,
        fraud,
        genuine,
        opened,
    ) = alerts.open("tx-1")
    assert status == ""
    assert 'id="alert-transaction">tx-1<' in card_html
    assert "90.0%" in card_html and "0.9000 ≥ threshold 0.4000" in card_html
    assert "T1" in card_html and "not labelled yet" in card_html
    assert reasons.index("amount") < reasons.index("terminal_risk_7d")  # largest first
    assert "missing" in reasons
    assert "2 of these reasons are history aggregates; every aggregate the model saw" in reasons
    assert list(aggregates["field"]) == list(AGGREGATE_FIELDS)  # all 19, in contract order
    values = dict(zip(aggregates["field"], aggregates["value"], strict=True))
    assert values["customer_nb_tx_1d"] == "3"
    assert values["customer_avg_amount_ref"] == "41.5"
    assert values["terminal_risk_7d"] == "0.5"
    assert values["customer_avg_amount_1d"] == "missing"  # absent: unknown to the model
    assert transactions(card_recent) == ["tx-5", "tx-2"]  # every decision, itself left out
    assert list(card_recent["terminal"]) == ["T1", "T9"]
    assert list(card_recent["decision"]) == ["clear", "alert"]
    assert list(card_recent["label"]) == ["none", "genuine"]
    assert transactions(terminal_recent) == ["tx-5", "tx-3"]
    assert "newest 5 decisions of this card and of this terminal" in note
    assert events == ""
    assert fraud["interactive"] and genuine["interactive"]
    assert opened == "tx-1"
    listings = [r.url.params for r in ledger.requests if r.url.path == DECISIONS_PATH]
    assert [dict(p) for p in listings] == [
        {"limit": "6", "card_hash": "k1:card-a"},
        {"limit": "6", "terminal_id": "T1"},
    ]


def test_a_decision_recorded_before_the_aggregates_shows_those_among_its_reasons() -> None:
    legacy = decision(1) | {"aggregates": None}
    _status, _card, reasons, aggregates, *_ = alerts_for(FakeLedger([legacy])).open("tx-1")
    assert list(aggregates["field"]) == ["terminal_risk_7d", "customer_avg_amount_1d"]
    assert list(aggregates["value"]) == ["0.5", "missing"]
    assert "2 of these reasons are history aggregates (their values are listed below)" in reasons


def test_clicking_a_queue_row_opens_that_alert() -> None:
    ledger = FakeLedger([decision(i) for i in range(3)])
    alerts = alerts_for(ledger)
    *_, state = alerts.refresh(None)
    row = list(queue_frame([]).columns)
    assert row == list(QUEUE_COLUMNS)

    class Event:
        def __init__(self, index: list[int], row_value: list[str] | None) -> None:
            self.index = index
            self.row_value = row_value

    clicked = Event([1, 0], ["2018-08-01 12:01:00", "tx-1", "0.9", "high", "1", "T1", "k", "m"])
    assert alerts.open_row(state, clicked)[-1] == "tx-1"  # type: ignore[arg-type]
    assert alerts.open_row(state, Event([0, 3], None))[-1] == "tx-2"  # type: ignore[arg-type]


def test_fraud_label_is_sent_as_analyst_and_the_alert_leaves_the_queue() -> None:
    ledger = FakeLedger([decision(i) for i in range(3)])
    alerts = alerts_for(ledger)
    *_, state = alerts.refresh(None)
    status, card_html, *_, opened = alerts.label_fraud("tx-1")
    sent = json.loads(next(r for r in ledger.requests if r.method == "POST").content)
    (label,) = sent["labels"]
    assert label["transaction_id"] == "tx-1"
    assert label["label"] == "fraud"
    assert label["source"] == ANALYST_SOURCE == "analyst"
    reported = datetime.fromisoformat(label["reported_at"])
    assert reported.tzinfo is not None and reported.utcoffset() == timedelta(0)
    assert "tx-1 is labelled fraud and has left the queue" in status
    assert "Terminal T1 counts it as confirmed fraud once the label delay" in status
    assert 'data-label="fraud"' in card_html
    assert opened == "tx-1"
    _, frame, *_ = alerts.refresh(state)
    assert transactions(frame) == ["tx-2", "tx-0"]

    status, card_html, *_ = alerts.label_genuine("tx-1")  # a correction: the latest wins
    assert "replaces its earlier label" in status
    assert "Terminal" not in status
    assert 'data-label="genuine"' in card_html


@pytest.mark.parametrize(
    ("history", "label", "words"),
    [
        ("updated", "fraud", "Terminal T1's history now holds it as fraud"),
        ("unavailable", "fraud", "The history store was unavailable"),
        ("not_found", "genuine", "holds no record of this transaction"),
        (None, "genuine", ""),
    ],
)
def test_label_outcome_says_what_the_history_store_did(
    history: str | None, label: str, words: str
) -> None:
    ledger = FakeLedger([decision(1)])
    view = DecisionView.model_validate(
        ledger(httpx.Request("GET", "http://x/v1/decisions/tx-1")).json()
    )
    outcome = LabelOutcome(
        index=0, transaction_id="tx-1", status="new", event_id=3, history=history
    )
    text = html.unescape(label_status_html(outcome, label, view))  # type: ignore[arg-type]
    assert f"tx-1 is labelled {label} and has left the queue." in text
    assert words in text
    if history is None:
        assert "Terminal" not in text and "history" not in text


def test_labelling_the_last_alert_of_a_page_goes_back_a_page() -> None:
    ledger = FakeLedger([decision(i) for i in range(4)])
    alerts = alerts_for(ledger)
    *_, state = alerts.refresh(None)
    *_, state = alerts.older(state)
    assert state.page == 2 and state.page_ids == ["tx-0"]
    alerts.label_genuine("tx-0")
    _, frame, page_info, _, state = alerts.refresh(state)
    assert transactions(frame) == ["tx-3", "tx-2", "tx-1"]
    assert state.page == 1
    assert "no older alerts" in page_info


def test_every_ledger_call_sends_the_api_key_and_never_shows_it() -> None:
    ledger = FakeLedger([decision(1)])
    alerts = AlertHandlers(client_for(ledger, api_key=SecretStr("s3cret-key")))
    views = [alerts.refresh(None), alerts.open("tx-1"), alerts.label_fraud("tx-1")]
    assert {r.headers.get(API_KEY_HEADER) for r in ledger.requests} == {"s3cret-key"}
    assert "s3cret-key" not in repr(views)


@pytest.mark.parametrize(
    ("status", "sentence"), [(404, NO_LEDGER), (503, LEDGER_DOWN)], ids=["no-ledger", "pg-down"]
)
def test_ledger_absent_or_unreachable_is_one_sentence_on_every_action(
    status: int, sentence: str
) -> None:
    ledger = FakeLedger([decision(1)])
    ledger.down = status
    alerts = alerts_for(ledger)
    queue_status, frame, _, _, state = alerts.refresh(None)
    assert sentence.split(".", maxsplit=1)[0] in queue_status
    assert frame.empty and state.page == 1
    label_status, *_ = alerts.label_fraud("tx-1")
    assert "The label was not recorded" in label_status
    assert sentence.split(".", maxsplit=1)[0] in label_status
    assert "Traceback" not in label_status


def test_unreachable_api_and_refused_key_are_sentences() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    alerts = AlertHandlers(client_for(refused))
    status, *_ = alerts.refresh(None)
    assert "The scoring API at http://api.test is unreachable" in status
    status, decision_card, *_, fraud, _genuine, opened = alerts.open("tx-1")
    assert "is unreachable" in status
    assert decision_card == "" and not fraud["interactive"] and opened == ""

    alerts = AlertHandlers(client_for(lambda r: httpx.Response(401, json={"error": "x"})))
    assert "API key is missing or not valid" in alerts.refresh(None)[0]


def test_an_unknown_transaction_is_the_apis_sentence_and_nothing_to_label() -> None:
    alerts = alerts_for(FakeLedger([]))
    status, *_, fraud, _genuine, opened = alerts.open("nope")
    assert "No decision for &#x27;nope&#x27;" in status
    assert not fraud["interactive"] and opened == ""
    status, *_ = alerts.open("")
    assert "Open an alert" in status


def test_recent_decisions_failing_still_shows_the_decision() -> None:
    ledger = FakeLedger([decision(1)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == DECISIONS_PATH:
            return httpx.Response(503, json={"error": "ledger_unavailable"})
        return ledger(request)

    status, card_html, *_rest = AlertHandlers(client_for(handler)).open("tx-1")
    assert status == "" and "tx-1" in card_html
    note = _rest[4]
    assert "Recent decisions could not be read" in note


def test_ids_are_escaped_and_quoted() -> None:
    hostile = decision(1) | {"transaction_id": "<b>x/y?z</b>", "reasons": None}
    ledger = FakeLedger([hostile])
    status, card_html, reasons, *_ = alerts_for(ledger).open("<b>x/y?z</b>")
    assert status == ""
    assert "<b>x" not in card_html and "&lt;b&gt;x/y?z&lt;/b&gt;" in card_html
    assert "No reasons were stored" in reasons
    lookup = next(r for r in ledger.requests if r.url.path.startswith(DECISIONS_PREFIX))
    assert lookup.url.raw_path.decode().endswith("%3Cb%3Ex%2Fy%3Fz%3C%2Fb%3E")


def test_client_rejects_answers_it_does_not_understand() -> None:
    client = client_for(lambda r: httpx.Response(200, json={"items": "nope"}))
    with pytest.raises(APIError, match="does not understand"):
        client.alerts(limit=5)
    with pytest.raises(APIError, match="does not understand"):
        client.send_label("tx", "fraud")


def test_render_helpers() -> None:
    assert short_card("k1:0123456789abcdef") == "k1:0123456789a…"
    assert short_card("k1:abc") == "k1:abc"
    view = DecisionView.model_validate(
        {"transaction_id": "t", "decisions": [], "labels": [], "label": None}
    )
    assert "No decision is stored for t" in decision_html(view)
    outcome = LabelOutcome(index=0, transaction_id="t", status="duplicate", event_id=1)
    assert "already had this fraud label" in label_status_html(outcome, "fraud", view)
    assert "once the label delay has passed" in LABEL_EFFECT
    assert reasons_html([]).startswith('<div class="fraud-notice"')
    only_amount = [Reason(feature="amount", value=1.0, contribution=0.5)]
    assert "the other aggregates the model saw are not stored" in reasons_html(only_amount)
    assert "None of these reasons is a history aggregate; every aggregate the model saw" in (
        reasons_html(only_amount, all_aggregates=True)
    )
    assert AlertsState().page == 1
