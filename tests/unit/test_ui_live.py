"""The Score tab's history state and aggregates, the Live tab's handlers, the batch client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fraud_contract import AGGREGATE_FIELDS
from fraud_contract.api import API_KEY_HEADER, SCORE_BATCH_PATH, ScoreResult
from fraud_contract.schema import example_transaction
from ui.client import APIError, ScoringClient
from ui.form import FORM_FIELDS, default_transaction, form_values, load_examples
from ui.handlers import Handlers
from ui.render import HISTORY_WORDS, aggregates_frame, result_card_html
from ui.settings import UISettings

RESULT: dict[str, Any] = {
    "transaction_id": "tx-1",
    "fraud_probability": 0.83,
    "is_fraud": True,
    "risk_band": "high",
    "threshold": 0.4,
    "model_tag": "fraud-detector:abc",
    "reasons": [{"feature": "amount", "value": 950.0, "contribution": 2.1}],
}
AGGREGATES = dict.fromkeys(AGGREGATE_FIELDS, 1.5) | {"customer_nb_tx_1d": 3}


def handlers_with(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> Handlers:
    settings = UISettings(api_url="http://api.test", **kw)
    return Handlers(settings, ScoringClient(settings, transport=httpx.MockTransport(handler)))


def scorer(history: str | None, *, aggregates: bool = True) -> Callable[..., httpx.Response]:
    """A fake API answering /v1/score and /v1/score/batch with the given history state."""

    def result(body: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if history is not None:
            extra["history"] = history
            if aggregates:
                extra["aggregates"] = AGGREGATES
        return {**RESULT, "transaction_id": body.get("transaction_id"), **extra}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        if request.url.path == SCORE_BATCH_PATH:
            results = [result(item) for item in body["transactions"]]
            return httpx.Response(200, json={"model_tag": "m:1", "results": results})
        if request.url.path == "/v1/model":
            return httpx.Response(503)
        return httpx.Response(200, json=result(body))

    return handler


@pytest.mark.parametrize("history", ["used", "replayed", "unavailable", None])
def test_result_card_says_what_happened_to_the_history(history: str | None) -> None:
    result = ScoreResult.model_validate({**RESULT, "history": history})
    card = result_card_html(result, 12.0, None)
    assert f'data-history="{history or "none"}"' in card
    assert HISTORY_WORDS[history].split(":")[0] in card
    if history is None:
        assert "not computed server-side" in card


def test_aggregates_frame_lists_the_19_values_in_contract_order() -> None:
    frame = aggregates_frame(ScoreResult.model_validate({**RESULT, "aggregates": AGGREGATES}))
    assert list(frame["field"]) == list(AGGREGATE_FIELDS)
    assert frame.loc[frame["field"] == "customer_nb_tx_1d", "value"].item() == "3"
    assert frame.loc[0, "aggregate"] == "Card transactions, 1 d"
    assert aggregates_frame(ScoreResult.model_validate(RESULT)).empty


def test_form_starts_with_raw_fields_only_and_sends_typed_overrides() -> None:
    defaults = default_transaction(load_examples())
    assert set(defaults) == {"transaction_id", "timestamp", "customer_id", "terminal_id", "amount"}
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            seen.append(json.loads(request.content))
        return scorer("used")(request)

    handlers = handlers_with(handler)
    values = form_values(example_transaction())
    status, card, _reasons, aggregates = handlers.score(*values)
    assert status == ""
    assert 'data-history="used"' in card
    assert list(aggregates["field"]) == list(AGGREGATE_FIELDS)
    assert not set(seen[-1]) & set(AGGREGATE_FIELDS), "blank overrides are not sent"
    # Overrides are typed in text boxes (a number box would send 0 for "no value").
    values[FORM_FIELDS.index("customer_nb_tx_1d")] = " 7 "
    values[FORM_FIELDS.index("terminal_risk_7d")] = "0.25"
    handlers.score(*values)
    assert seen[-1]["customer_nb_tx_1d"] == 7
    assert seen[-1]["terminal_risk_7d"] == 0.25
    values[FORM_FIELDS.index("customer_nb_tx_1d")] = "many"
    status, *_ = handlers.score(*values)
    assert "Invalid field customer_nb_tx_1d" in status


def test_score_without_a_history_store_hides_the_aggregates_and_says_why() -> None:
    _status, card, _, aggregates = handlers_with(scorer(None)).score(
        *form_values(example_transaction())
    )
    assert "not computed server-side" in card
    assert aggregates.empty


def test_score_batch_sends_the_rows_and_the_key_and_checks_the_count() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get(API_KEY_HEADER))
        return scorer("used")(request)

    settings = UISettings(api_url="http://api.test", api_key=SecretStr("k-1"))
    client = ScoringClient(settings, transport=httpx.MockTransport(handler))
    results = client.score_batch([{"transaction_id": "a"}, {"transaction_id": "b"}])
    assert [r.transaction_id for r in results] == ["a", "b"]
    assert results[0].history == "used"
    assert keys == ["k-1"]

    def short(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model_tag": "m:1", "results": []})

    with pytest.raises(APIError, match="wrong number of results"):
        ScoringClient(settings, transport=httpx.MockTransport(short)).score_batch([{}])


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_live_tab_starts_refreshes_and_stops_the_replay() -> None:
    handlers = handlers_with(scorer("used"))
    status, counters, stream, *_, timer = handlers.live_refresh()
    assert "No replay yet" in status and stream.empty
    assert timer.active is False
    try:
        status, counters, stream, _, _, timer = handlers.live_start("1000x")
        assert timer.active is True
        wait_for(lambda: handlers.replay.snapshot().scored > 0)
        status, counters, stream, distribution, rate, timer = handlers.live_refresh()
        assert status == ""
        assert "running at 1000x" in counters
        assert not stream.empty and set(stream["history"]) == {"used"}
        assert distribution.count("<rect") == 20 and "<title>0.80-0.85: " in distribution
        assert "<circle" in rate or "<polyline" in rate
    finally:
        status, counters, *_, timer = handlers.live_stop()
    assert "stopped" in counters and timer.active is False


def test_live_tab_shows_an_unreachable_api_as_a_sentence() -> None:
    handlers = handlers_with(lambda request: (_ for _ in ()).throw(httpx.ConnectError("no")))
    try:
        handlers.live_start("1000x")
        wait_for(lambda: handlers.replay.snapshot().failed_calls > 0)
        status, *_ = handlers.live_refresh()
    finally:
        handlers.live_stop()
    assert "is unreachable" in status and "The replay keeps trying" in status
    assert "Traceback" not in status


@pytest.mark.parametrize(
    ("history", "words"),
    [(None, "keeps no history store"), ("unavailable", "history store was unavailable")],
)
def test_live_tab_says_when_the_history_is_missing(history: str | None, words: str) -> None:
    handlers = handlers_with(scorer(history))
    try:
        handlers.live_start("1000x")
        wait_for(lambda: handlers.replay.snapshot().scored > 0)
        status, *_ = handlers.live_refresh()
    finally:
        handlers.live_stop()
    assert words in status


def test_live_tab_rejects_a_speed_that_is_not_one() -> None:
    status, *_ = handlers_with(scorer("used")).live_start("fast")
    assert "Choose a replay speed" in status


def test_live_charts_are_plain_svg_with_escaped_text() -> None:
    from ui.render import alert_rate_svg, distribution_svg  # noqa: PLC0415

    empty = distribution_svg([])
    assert empty.count("<rect") == 20 and 'height="0.0"' in empty
    full = distribution_svg([0.01, 0.02, 0.99])
    assert "<title>0.00-0.05: 2</title>" in full and "<title>0.95-1.00: 1</title>" in full
    assert "no data yet" in alert_rate_svg([])
    line = alert_rate_svg([("10:00:00", 0.0), ("10:00:05", 0.5), ("<b>", 0.25)])
    assert "<polyline" in line and "peak 50.0%" in line and "<b>" not in line
