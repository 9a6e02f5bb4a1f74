"""Every decision into the ledger, and the routes that read it back and take labels.

With ``FRAUD_DATABASE_URL`` set, each scored transaction (single, batch or file row) that has
a ``transaction_id`` is handed to the ledger (:mod:`service.ledger`: a local write-ahead spool
on the scoring thread, a writer copying it to PostgreSQL) with the keyed hash of its card,
never the raw id. The routes answer 404 when no ledger is configured and 503 while
PostgreSQL is unreachable (scoring goes on meanwhile; nothing recorded is lost).

With the history store on too, ``POST /v1/labels`` also marks each labelled transaction's
record in its terminal's history with the transaction's winning label (under the ledger's
label lock, so concurrent calls apply in commit order). A store outage does not fail the call:
the labels are stored, the answer says ``history: "unavailable"``, and
``python -m service.ledger apply-labels`` applies them later.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import anyio.to_thread
import numpy as np
import orjson

from fraud_contract import api as contract
from fraud_contract.schema import AGGREGATE_FIELDS, Transaction, is_whole_number
from fraud_contract.windows import is_plain
from service.asgi import Reply, Request, check_json_content_type, replay
from service.errors import ApiError, InvalidInput, MalformedBody, UnsupportedMedia

if TYPE_CHECKING:
    from service.enrichment import LabelHistoryState
    from service.ledger import Ledger
    from service.ledger.model import Label, LabelTarget
    from service.logs import IdHasher
    from service.runtime import Runtime
    from service.scoring import Decisions

#: ``GET /v1/decisions/{transaction_id}``.
DECISIONS_PREFIX = contract.DECISION_PREFIX
DECISIONS_PATH = contract.DECISIONS_PATH
ALERTS_PATH = contract.ALERTS_PATH
LABELS_PATH = contract.LABELS_PATH
LABELS_FILE_PATH = contract.LABELS_FILE_PATH
#: Query parameters of ``GET /v1/decisions`` (exactly one of them).
LISTING_PARAMS: tuple[str, ...] = ("card_hash", "terminal_id")
_MAX_KEY_CHARS = 256


class DecisionRecorder:
    """Turns scored results into ledger decisions (called on the scoring thread)."""

    def __init__(self, ledger: Ledger, hasher: IdHasher) -> None:
        self.ledger = ledger
        self.hasher = hasher

    def record(
        self,
        results: Sequence[dict[str, Any]],
        transactions: Sequence[Transaction],
        request_ids: Sequence[str | None],
        history_states: Sequence[str] | None,
    ) -> None:
        """Spool the decisions of the results that carry a transaction id."""
        from service.ledger import Decision  # noqa: PLC0415

        decisions = [
            Decision.from_result(
                result,
                event_time=transaction.timestamp,
                card_hash=self.hasher(transaction.customer_id) or "",
                terminal_id=transaction.terminal_id,
                amount=transaction.amount,
                request_id=request_ids[i],
                history_used=history_states is not None and history_states[i] != "unavailable",
                plain_amount=plain_amount(transaction),
                aggregates=aggregates(transaction),
            )
            for i, (result, transaction) in enumerate(zip(results, transactions, strict=True))
            if result["transaction_id"]
        ]
        if decisions:
            self.ledger.record(decisions)

    def record_columns(
        self,
        columns: dict[str, np.ndarray],
        decisions: Decisions,
        *,
        threshold: float,
        model_tag: str,
        request_id: str | None,
        history_states: np.ndarray | None,
    ) -> None:
        """Spool the decisions of a scored file: the rows that carry a transaction id.

        ``columns`` are the checked model input columns with the identifiers
        (:func:`service.tables.model_columns` with ``ids``), after the history store filled
        them: what the model saw. No reasons are computed for files.
        """
        from service.ledger import Decision  # noqa: PLC0415

        ids = columns["transaction_id"]
        rows = np.array([i for i, tid in enumerate(ids.tolist()) if tid is not None], np.intp)
        if not rows.size:
            return
        recorded_at = datetime.now(UTC)
        stamps = columns["timestamp"][rows].astype("datetime64[us]").tolist()
        amounts = columns["amount"][rows].tolist()
        values = {name: _column_values(name, columns[name][rows]) for name in AGGREGATE_FIELDS}
        plain = [
            None if reference is None else bool(is_plain(amount, float(reference)))
            for amount, reference in zip(amounts, values["customer_avg_amount_ref"], strict=True)
        ]
        bands = decisions.band_names[decisions.band_index[rows]].tolist()
        self.ledger.record(
            [
                Decision(
                    transaction_id=ids[row],
                    event_time=stamps[i],
                    card_hash=self.hasher(columns["customer_id"][row]) or "",
                    terminal_id=columns["terminal_id"][row],
                    amount=amounts[i],
                    probability=float(decisions.probabilities[row]),
                    is_fraud=bool(decisions.is_fraud[row]),
                    risk_band=bands[i],
                    threshold=threshold,
                    model_tag=model_tag,
                    reasons=None,
                    request_id=request_id,
                    history_used=history_states is not None
                    and history_states[row] != "unavailable",
                    recorded_at=recorded_at,
                    plain_amount=plain[i],
                    aggregates={name: values[name][i] for name in AGGREGATE_FIELDS},
                )
                for i, row in enumerate(rows.tolist())
            ]
        )


def _column_values(name: str, column: np.ndarray) -> list[float | int | None]:
    """A float64 column (NaN = absent) as the values a JSON request's transaction holds."""
    whole = is_whole_number(name)
    return [
        None if math.isnan(value) else (int(value) if whole else value) for value in column.tolist()
    ]


def aggregates(transaction: Transaction) -> dict[str, float | int | None]:
    """Every aggregate the model was given for this transaction (``None``: absent, unknown).

    The transaction is the one scored: after the history store filled what the request
    left out, so this is what the model saw, not only what the caller sent.
    """
    return {name: getattr(transaction, name) for name in AGGREGATE_FIELDS}


def plain_amount(transaction: Transaction) -> bool | None:
    """Whether the amount was ordinary for the card in the aggregates it was scored with.

    ``fraud_contract.windows.is_plain`` on the same doubles the store compared (its reference
    comes back unchanged), so a fraud label gives the terminal history the bit the card's own
    record holds. ``None`` without a reference amount.
    """
    reference = transaction.customer_avg_amount_ref
    if reference is None:
        return None
    return bool(is_plain(float(transaction.amount), float(reference)))


def _ledger(runtime: Runtime | None) -> Ledger:
    if runtime is None or runtime.ledger is None:
        raise ApiError(
            404,
            "not_found",
            "No decision ledger is configured (FRAUD_DATABASE_URL).",
            reason="not_found",
        )
    return runtime.ledger.ledger


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    raise TypeError(type(value).__name__)


async def get_decision(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /v1/decisions/{transaction_id}``: its decisions, labels and the winning label."""
    ledger = _ledger(runtime)
    transaction_id = unquote(request.path.removeprefix(DECISIONS_PREFIX))
    if not transaction_id or len(transaction_id) > 64:
        raise InvalidInput(
            "The transaction id must have 1 to 64 characters.",
            [{"field": "transaction_id", "reason": "1 to 64 characters"}],
        )
    view = await anyio.to_thread.run_sync(ledger.get_decision, transaction_id)
    if view is None:
        raise ApiError(
            404,
            "not_found",
            f"No decision for transaction {transaction_id!r} in the ledger.",
            reason="not_found",
        )
    body = {
        "transaction_id": view.transaction_id,
        "decisions": view.decisions,
        "labels": view.labels,
        "label": view.label,
    }
    return Reply(_json(body))


def _limit(query: dict[str, list[str]]) -> int:
    try:
        return int(query.get("limit", ["50"])[0])
    except ValueError:
        raise InvalidInput(
            "The query parameter 'limit' must be a whole number.",
            [{"field": "limit", "reason": "must be a whole number"}],
            reason="invalid_query",
        ) from None


async def list_decisions(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /v1/decisions?card_hash=|terminal_id=&limit=&cursor=``: one card's or terminal's
    decisions (alerts or not), newest first, each with its winning label."""
    ledger = _ledger(runtime)
    query = parse_qs(request.query.decode("latin-1"))
    given = [name for name in LISTING_PARAMS if name in query]
    if len(given) != 1 or len(query[given[0]]) != 1:
        named = given or list(LISTING_PARAMS)
        raise InvalidInput(
            "Give exactly one of the query parameters 'card_hash' or 'terminal_id', once.",
            [{"field": name, "reason": "exactly one of card_hash, terminal_id"} for name in named],
            reason="invalid_query",
        )
    column = given[0]
    value = query[column][0]
    if len(value) > _MAX_KEY_CHARS:
        raise InvalidInput(
            f"The query parameter {column!r} must have 1 to {_MAX_KEY_CHARS} characters.",
            [{"field": column, "reason": f"1 to {_MAX_KEY_CHARS} characters"}],
            reason="invalid_query",
        )
    limit = _limit(query)
    cursor = query.get("cursor", [None])[0]
    page = await anyio.to_thread.run_sync(
        lambda: ledger.list_decisions(
            column="card_hash" if column == "card_hash" else "terminal_id",
            value=value,
            limit=limit,
            cursor=cursor,
        )
    )
    return Reply(_json({"items": page.items, "next_cursor": page.next_cursor}))


async def list_alerts(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /v1/alerts?limit=&cursor=&all=``: flagged decisions, newest first, paginated."""
    ledger = _ledger(runtime)
    query = parse_qs(request.query.decode("latin-1"))
    limit = _limit(query)
    cursor = query.get("cursor", [None])[0]
    unlabelled_only = query.get("all", ["false"])[0].lower() not in ("true", "1", "yes")
    page = await anyio.to_thread.run_sync(
        lambda: ledger.list_alerts(unlabelled_only=unlabelled_only, limit=limit, cursor=cursor)
    )
    return Reply(_json({"items": page.items, "next_cursor": page.next_cursor}))


async def post_labels(runtime: Runtime | None, request: Request) -> Reply:
    """``POST /v1/labels``: ``{"labels": [...]}``; one outcome per label, stored as events."""
    from service.ledger import parse_labels  # noqa: PLC0415

    ledger = _ledger(runtime)
    check_json_content_type(request.headers)
    try:
        document = orjson.loads(request.body or b"")
    except orjson.JSONDecodeError:
        raise MalformedBody from None
    items = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise InvalidInput(
            "The request has 1 problem; see 'errors'.",
            [{"field": "labels", "reason": "a non-empty list of labels is required"}],
            reason="missing_field",
        )
    labels = parse_labels(items)
    return Reply(_json(await _store_labels(runtime, ledger, labels)))


async def post_label_file(runtime: Runtime | None, request: Request) -> Reply:
    """``POST /v1/labels/file``: a CSV or Parquet label file (multipart field ``file``).

    Parsed and checked whole before anything is stored (a bad row is a 4xx naming it, nothing
    written), then stored and applied exactly as ``POST /v1/labels``.
    """
    from service.ledger import parse_label_file  # noqa: PLC0415
    from service.uploads import read_file_field  # noqa: PLC0415

    ledger = _ledger(runtime)
    content_type = request.headers.get(b"content-type", b"").decode("latin-1")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMedia(
            "Upload the label file as multipart/form-data with the field 'file'.", content_type
        )
    settings = ledger.settings
    upload = await read_file_field(
        replay(request.body or b""), content_type, settings.ledger_label_max_bytes
    )
    labels = await anyio.to_thread.run_sync(
        lambda: parse_label_file(
            upload.content,
            _file_media_type(upload.content_type, upload.filename),
            max_rows=settings.ledger_label_max_rows,
            max_bytes=settings.ledger_label_max_bytes,
        )
    )
    if not labels:
        raise InvalidInput(
            "The label file has no rows.",
            [{"field": "file", "reason": "no label rows"}],
            reason="missing_field",
        )
    return Reply(_json(await _store_labels(runtime, ledger, labels)))


def _file_media_type(content_type: str | None, filename: str | None) -> str:
    """The part's media type; a generic one falls back to the file name's extension."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("", "application/octet-stream") and filename:
        name = filename.lower()
        if name.endswith((".parquet", ".pq")):
            return "application/vnd.apache.parquet"
        if name.endswith(".csv"):
            return "text/csv"
    return media


async def _store_labels(
    runtime: Runtime | None, ledger: Ledger, labels: list[Label]
) -> dict[str, Any]:
    """Store labels as events and, with the history store on, mark the terminals' records.

    The answer of both label routes: one outcome per label (with ``history`` per outcome and
    top-level when the store is on).
    """
    history = runtime.history if runtime is not None else None
    if history is None:
        outcomes = await anyio.to_thread.run_sync(ledger.record_labels, labels)
        return {"outcomes": outcomes}
    applied: dict[str, LabelHistoryState] = {}

    def apply(targets: list[LabelTarget]) -> None:
        applied.update(history.apply_labels(targets))

    outcomes = await anyio.to_thread.run_sync(ledger.record_labels, labels, apply)
    return {
        "outcomes": [
            {**_plain(outcome), "history": applied.get(outcome.transaction_id, "not_found")}
            for outcome in outcomes
        ],
        "history": "unavailable" if "unavailable" in applied.values() else "updated",
    }
