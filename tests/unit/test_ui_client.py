"""The UI's API client: answers parsed, every failure turned into one plain sentence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fraud_contract.api import API_KEY_HEADER, EXPLAIN_PARAM, SCORE_FILE_PATH, SCORE_PATH
from ui.client import APIError, ScoringClient
from ui.settings import UISettings

RESULT = {
    "transaction_id": "tx-1",
    "fraud_probability": 0.83,
    "is_fraud": True,
    "risk_band": "high",
    "threshold": 0.4,
    "model_tag": "fraud-detector:abc",
    "reasons": [{"feature": "amount", "value": 950.0, "contribution": 2.1}],
}


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], **settings: Any
) -> ScoringClient:
    return ScoringClient(
        UISettings(api_url="http://api.test", **settings), transport=httpx.MockTransport(handler)
    )


def test_score_parses_the_result_and_sends_the_api_key() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["path"] = request.url.path
        seen["key"] = request.headers.get(API_KEY_HEADER)
        seen["explain"] = request.url.params.get(EXPLAIN_PARAM)
        return httpx.Response(200, json=RESULT)

    timed = client_for(handler, api_key=SecretStr("s3cret")).score({"amount": 1})
    assert timed.result.fraud_probability == pytest.approx(0.83)
    assert timed.result.reasons[0].feature == "amount"
    assert timed.latency_ms >= 0
    assert seen == {"path": SCORE_PATH, "key": "s3cret", "explain": "true"}


def test_no_api_key_header_when_none_configured() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert API_KEY_HEADER not in request.headers
        return httpx.Response(200, json=RESULT)

    client_for(handler).score({})


@pytest.mark.parametrize("status", [401, 403])
def test_unauthorised_is_a_sentence_about_the_api_key(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "unauthorized", "message": "no key"})

    with pytest.raises(APIError, match="API key is missing or not valid") as info:
        client_for(handler).score({})
    assert info.value.status == status


def test_invalid_field_is_named() -> None:
    body = {
        "error": "invalid_input",
        "message": "The transaction is invalid.",
        "errors": [{"field": "amount", "reason": "must be >= 0"}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json=body)

    with pytest.raises(APIError, match="invalid field amount: must be >= 0"):
        client_for(handler).score({})


def test_unreachable_api_names_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(APIError, match=r"http://api.test is unreachable"):
        client_for(handler).model_info()


def test_read_timeout_says_the_api_did_not_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(APIError, match="did not answer in time"):
        client_for(handler).metrics_text()


def test_not_ready_and_unknown_errors_are_sentences() -> None:
    def not_ready(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="<html>busy</html>")

    with pytest.raises(APIError, match="not ready"):
        client_for(not_ready).score({})

    def teapot(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, json={"error": "x", "message": "I am a teapot."})

    with pytest.raises(APIError, match=r"HTTP 418: I am a teapot\."):
        client_for(teapot).score({})


def test_malformed_success_body_is_a_sentence_not_a_traceback() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"unexpected": True})

    with pytest.raises(APIError, match="does not understand"):
        client_for(handler).score({})


def test_score_file_uploads_multipart_with_the_right_media_type(tmp_path: Path) -> None:
    upload = tmp_path / "tx.parquet"
    upload.write_bytes(b"PAR1")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == SCORE_FILE_PATH
        body = request.read()
        assert b'name="file"; filename="tx.parquet"' in body
        assert b"application/vnd.apache.parquet" in body
        return httpx.Response(200, content=b"scored")

    assert client_for(handler).score_file(upload) == b"scored"
