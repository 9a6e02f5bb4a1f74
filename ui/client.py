"""HTTP client for the scoring API that turns every failure into one plain sentence.

The UI never imports the service: it talks to it over HTTP like any other caller. Each method
either returns a parsed answer or raises :class:`APIError` whose message can be shown to an
analyst as is (no stack traces, no status-code jargon beyond what helps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from fraud_contract.api import (
    API_KEY_HEADER,
    CSV_MEDIA_TYPE,
    EXPLAIN_PARAM,
    FILE_FIELD,
    METRICS_PATH,
    MODEL_PATH,
    PARQUET_MEDIA_TYPE,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
    BatchResult,
    ModelInfo,
    ScoreResult,
)
from ui.ledger import (
    ALERTS_PATH,
    ANALYST_SOURCE,
    DECISIONS_PATH,
    DECISIONS_PREFIX,
    LABELS_PATH,
    AlertPage,
    DecisionPage,
    DecisionView,
    LabelOutcome,
    LabelValue,
)
from ui.settings import UISettings

PageOrView = TypeVar("PageOrView", AlertPage, DecisionPage, DecisionView)

NO_LEDGER: Final = (
    "This API keeps no decision ledger (FRAUD_DATABASE_URL is not set on the API), so there "
    "is no alert queue to work on and labels cannot be sent."
)
LEDGER_DOWN: Final = (
    "The decision ledger (PostgreSQL) is unreachable at the moment. The API keeps scoring and "
    "keeps every decision in its spool; try again in a moment."
)


class APIError(Exception):
    """A failed API call, with a message meant for the person using the UI."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class TimedScore:
    """A score and how long the round trip to the API took."""

    result: ScoreResult
    latency_ms: float


def describe_error_body(response: httpx.Response) -> str:
    """Plain sentence for a 4xx/5xx answer, naming invalid fields when the API lists them."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    field_errors = body.get("errors") if isinstance(body, dict) else None
    if status in (401, 403):
        return (
            "The scoring API refused the request: the API key is missing or not valid "
            "(set FRAUD_UI_API_KEY to a key the API accepts)."
        )
    if status in (400, 413, 415, 422) and isinstance(field_errors, list) and field_errors:
        parts = [
            f"invalid field {err.get('field', '?')}: {err.get('reason', 'rejected')}"
            for err in field_errors[:5]
            if isinstance(err, dict)
        ]
        more = f" (and {len(field_errors) - 5} more)" if len(field_errors) > 5 else ""
        return "The scoring API rejected the input: " + "; ".join(parts) + more + "."
    if status == 413:
        return "The file is too large for the scoring API."
    if status == 503:
        return (
            "The scoring API is not ready (the model is still loading, or it is overloaded). "
            "Try again in a moment."
        )
    if isinstance(message, str) and message:
        return f"The scoring API answered HTTP {status}: {message}"
    return f"The scoring API answered HTTP {status}."


def describe_ledger_error(response: httpx.Response, *, lookup: bool = False) -> str:
    """Plain sentence for a failed ledger call: no ledger (404), ledger unreachable (503).

    ``lookup``: the call looked up one transaction, where a 404 may also mean "no decision
    for this id", which the API's own message says.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if response.status_code == 503 and error == "ledger_unavailable":
        return LEDGER_DOWN
    if response.status_code == 404 and not lookup:
        return NO_LEDGER
    return describe_error_body(response)


class ScoringClient:
    """Synchronous client for the scoring API (Gradio runs handlers in worker threads)."""

    def __init__(self, settings: UISettings, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        headers = {"User-Agent": "fraud-ui"}
        if settings.api_key is not None and settings.api_key.get_secret_value():
            headers[API_KEY_HEADER] = settings.api_key.get_secret_value()
        self._http = httpx.Client(
            base_url=settings.api_url,
            headers=headers,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
            transport=transport,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        describe: Callable[[httpx.Response], str] = describe_error_body,
        **kwargs: Any,
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise APIError(self._unreachable()) from exc
            raise APIError(
                "The scoring API did not answer in time. It may be overloaded; try again."
            ) from exc
        except httpx.TransportError as exc:
            raise APIError(self._unreachable()) from exc
        if response.status_code >= 400:
            raise APIError(describe(response), status=response.status_code)
        return response

    def _unreachable(self) -> str:
        return (
            f"The scoring API at {self.settings.api_url} is unreachable. Check that it is "
            "running; the UI works again as soon as it is back."
        )

    def score(self, transaction: dict[str, Any]) -> TimedScore:
        """Score one transaction (already validated against the contract)."""
        start = time.perf_counter()
        # Analysts see the reasons of every decision, not only of the flagged ones.
        response = self._request(
            "POST", SCORE_PATH, json=transaction, params={EXPLAIN_PARAM: "true"}
        )
        latency_ms = (time.perf_counter() - start) * 1000.0
        try:
            result = ScoreResult.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise APIError("The scoring API sent an answer the UI does not understand.") from exc
        return TimedScore(result=result, latency_ms=latency_ms)

    def score_batch(self, transactions: list[dict[str, Any]]) -> list[ScoreResult]:
        """Score several transactions in one call (the Live tab's replay); results in order."""
        response = self._request("POST", SCORE_BATCH_PATH, json={"transactions": transactions})
        try:
            results = BatchResult.model_validate(response.json()).results
        except (ValueError, ValidationError) as exc:
            raise APIError("The scoring API sent an answer the UI does not understand.") from exc
        if len(results) != len(transactions):
            raise APIError("The scoring API answered a batch with the wrong number of results.")
        return results

    def score_file(self, path: Path) -> bytes:
        """Score a CSV or Parquet file; return the scored file's bytes (same format)."""
        media_type = PARQUET_MEDIA_TYPE if path.suffix.lower() == ".parquet" else CSV_MEDIA_TYPE
        with path.open("rb") as handle:
            response = self._request(
                "POST",
                SCORE_FILE_PATH,
                files={FILE_FIELD: (path.name, handle, media_type)},
                timeout=httpx.Timeout(
                    self.settings.file_timeout_s, connect=self.settings.connect_timeout_s
                ),
            )
        return response.content

    def model_info(self) -> ModelInfo:
        """The model card of the served model."""
        response = self._request("GET", MODEL_PATH)
        try:
            return ModelInfo.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise APIError("The scoring API sent a model card the UI does not understand.") from exc

    def metrics_text(self) -> str:
        """The API's Prometheus exposition text."""
        return self._request("GET", METRICS_PATH).text

    # ---- Decision ledger (the Alerts tab) -----------------------------------------------------
    def alerts(self, *, limit: int, cursor: str | None = None) -> AlertPage:
        """One page of the alert queue (flagged, not yet labelled, newest first)."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = self._request("GET", ALERTS_PATH, params=params, describe=_ledger_listing)
        return _parse(AlertPage, response, "an alert page")

    def decisions_of(
        self, *, card_hash: str | None = None, terminal_id: str | None = None, limit: int
    ) -> DecisionPage:
        """The newest decisions (alerts or not, with labels) of one card or one terminal."""
        params: dict[str, str | int] = {"limit": limit}
        if card_hash is not None:
            params["card_hash"] = card_hash
        if terminal_id is not None:
            params["terminal_id"] = terminal_id
        response = self._request("GET", DECISIONS_PATH, params=params, describe=_ledger_listing)
        return _parse(DecisionPage, response, "a decision listing")

    def decision(self, transaction_id: str) -> DecisionView:
        """A transaction's decisions (one per model) and its label events."""
        response = self._request(
            "GET", DECISIONS_PREFIX + quote(transaction_id, safe=""), describe=_ledger_lookup
        )
        return _parse(DecisionView, response, "a decision")

    def send_label(
        self, transaction_id: str, label: LabelValue, *, reported_at: datetime | None = None
    ) -> LabelOutcome:
        """Label one transaction as the analyst (source ``analyst``, reported now in UTC)."""
        when = (reported_at or datetime.now(UTC)).isoformat()
        body = {
            "labels": [
                {
                    "transaction_id": transaction_id,
                    "label": label,
                    "reported_at": when,
                    "source": ANALYST_SOURCE,
                }
            ]
        }
        response = self._request("POST", LABELS_PATH, json=body, describe=_ledger_listing)
        try:
            outcomes = response.json()["outcomes"]
            return LabelOutcome.model_validate(outcomes[0])
        except (ValueError, KeyError, IndexError, TypeError, ValidationError) as exc:
            raise APIError(
                "The scoring API sent a label answer the UI does not understand."
            ) from exc


def _ledger_listing(response: httpx.Response) -> str:
    return describe_ledger_error(response)


def _ledger_lookup(response: httpx.Response) -> str:
    return describe_ledger_error(response, lookup=True)


def _parse(model: type[PageOrView], response: httpx.Response, what: str) -> PageOrView:
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        raise APIError(f"The scoring API sent {what} the UI does not understand.") from exc
