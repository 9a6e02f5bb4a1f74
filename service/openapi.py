"""The OpenAPI document served at ``/docs.json`` (Swagger UI at ``/`` and ``/docs``; ReDoc at
``/redoc``).

Every route the service answers is described here, from the same pydantic models the app
validates with, with real simulator transactions as examples; nothing internal is listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from fraud_contract.api import (
    ALERTS_PATH,
    API_KEY_HEADER,
    DECISION_PREFIX,
    DECISIONS_PATH,
    EXPLAIN_PARAM,
    FILE_FIELD,
    LABELS_FILE_PATH,
    LABELS_PATH,
    LIVE_PATH,
    MAX_BATCH_TRANSACTIONS,
    METRICS_PATH,
    MODEL_PATH,
    READY_PATH,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
    BatchRequest,
    BatchResult,
    ErrorBody,
    ModelInfo,
    ScoreResult,
)
from fraud_contract.schema import AGGREGATE_FIELDS, Transaction, example_transaction

EXAMPLES_PATH = Path(__file__).resolve().parents[1] / "fraud_contract" / "examples.json"
_REF = "#/components/schemas/{model}"


def load_examples(path: Path = EXAMPLES_PATH) -> list[dict[str, Any]]:
    """Simulator examples (``name``, ``description``, ``transaction``); a minimal one if absent."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        examples = [item for item in items if Transaction.model_validate(item["transaction"])]
    except (OSError, ValueError, KeyError, TypeError):
        examples = []
    if not examples:
        examples = [
            {
                "name": "example",
                "description": "A minimal valid transaction.",
                "transaction": example_transaction(),
            }
        ]
    return examples


def _error_responses(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON or multipart body.",
        401: "Missing or wrong API key (when keys are configured).",
        413: "Body larger than the configured limit.",
        404: "Unknown transaction, or no decision ledger configured (FRAUD_DATABASE_URL).",
        415: "Wrong content type.",
        422: "Input violates the contract; 'errors' names each field/row and the reason.",
        503: "Overloaded (retry after the Retry-After seconds) or not ready.",
    }
    ref = {"$ref": _REF.format(model="ErrorBody")}
    return {
        str(code): {"description": text[code], "content": {"application/json": {"schema": ref}}}
        for code in statuses
    }


def contract_paths(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAPI path items for the ``/v1`` routes."""
    named = {
        item["name"]: {
            "summary": item.get("description", item["name"]),
            "value": item["transaction"],
        }
        for item in examples
    }
    security: list[dict[str, list[str]]] = [{"ApiKey": []}]
    errors = _error_responses(400, 401, 413, 415, 422, 503)
    explain = {
        "name": EXPLAIN_PARAM,
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": False},
        "description": "TreeSHAP reasons on every result. Without it only flagged results "
        "(at or above the threshold) carry reasons (the service's FRAUD_REASONS policy).",
    }
    return {
        SCORE_PATH: {
            "post": {
                "tags": ["Scoring"],
                "operationId": "score",
                "security": security,
                "summary": "Score one transaction",
                "description": "Fraud probability, decision at the model threshold, risk band and "
                "the top TreeSHAP reasons (for flagged results, or all with ?explain=true). "
                "Requests are grouped into model calls by BentoML adaptive batching. Unknown "
                "fields are rejected (422).",
                "parameters": [explain],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": _REF.format(model="Transaction")},
                            "examples": named,
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The score.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF.format(model="ScoreResult")}
                            }
                        },
                    },
                    **errors,
                },
            }
        },
        SCORE_BATCH_PATH: {
            "post": {
                "tags": ["Scoring"],
                "operationId": "score_batch",
                "security": security,
                "summary": f"Score 1 to {MAX_BATCH_TRANSACTIONS} transactions",
                "description": "One result per transaction, in request order.",
                "parameters": [explain],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": _REF.format(model="BatchRequest")},
                            "example": {"transactions": [item["transaction"] for item in examples]},
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The scores.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF.format(model="BatchResult")}
                            }
                        },
                    },
                    **errors,
                },
            }
        },
        SCORE_FILE_PATH: {
            "post": {
                "tags": ["Scoring"],
                "operationId": "score_file",
                "security": security,
                "summary": "Score a CSV or Parquet file",
                "description": "Multipart field 'file'. Returns the same file format with the "
                "columns fraud_probability, is_fraud and risk_band added. Extra columns are kept.",
                "requestBody": _file_upload(),
                "responses": {
                    "200": {
                        "description": "The scored file.",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/vnd.apache.parquet": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    **errors,
                },
            }
        },
        MODEL_PATH: {
            "get": {
                "tags": ["Model"],
                "operationId": "model_info",
                "security": security,
                "summary": "Model card of the served model",
                "responses": {
                    "200": {
                        "description": "Tag, training date, metrics, threshold, "
                        "risk bands, feature names and the request schema.",
                        "content": {
                            "application/json": {"schema": {"$ref": _REF.format(model="ModelInfo")}}
                        },
                    },
                    **_error_responses(401),
                },
            }
        },
    }


_NULLABLE_NUMBER = {"type": ["number", "null"]}
_LABEL = {"type": ["string", "null"], "enum": ["fraud", "genuine", None]}
_HISTORY_STATE = {"type": "string", "enum": ["updated", "not_found", "unavailable"]}


def ledger_components() -> dict[str, Any]:
    """JSON schemas of the ledger's answers (plain dataclasses in ``service.ledger.model``)."""
    reason = {"$ref": _REF.format(model="Reason")}
    decision = {
        "type": "object",
        "description": "One model's decision for a transaction, as the ledger stores it.",
        "properties": {
            "transaction_id": {"type": "string"},
            "event_time": {"type": "string", "format": "date-time"},
            "card_hash": {
                "type": "string",
                "description": "Keyed hash (HMAC) of the card id; the raw id is never stored.",
            },
            "terminal_id": {"type": "string"},
            "amount": {"type": "number"},
            "probability": {"type": "number"},
            "is_fraud": {"type": "boolean"},
            "risk_band": {"type": "string"},
            "threshold": {"type": "number"},
            "model_tag": {"type": "string"},
            "reasons": {"type": ["array", "null"], "items": reason},
            "request_id": {"type": ["string", "null"]},
            "history_used": {"type": "boolean"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "stored_at": {"type": "string", "format": "date-time"},
            "plain_amount": {
                "type": ["boolean", "null"],
                "description": "The amount was at most 2x the card's reference mean in the "
                "aggregates it was scored with (null: no reference). A fraud label carries it "
                "to the terminal's history (terminal_fraud_run_nb_plain).",
            },
            "aggregates": {
                "type": ["object", "null"],
                "description": "Every aggregate the model was given (sent, or filled by the "
                "history store), in contract order; null values were absent (unknown to the "
                "model). null for decisions recorded before the ledger kept them.",
                "properties": dict.fromkeys(AGGREGATE_FIELDS, _NULLABLE_NUMBER),
            },
        },
    }
    listed = {
        "allOf": [
            {"$ref": _REF.format(model="LedgerDecision")},
            {
                "type": "object",
                "properties": {"label": {**_LABEL, "description": "The winning label."}},
            },
        ]
    }
    outcome = {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "transaction_id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["new", "duplicate", "contradicting", "unknown_transaction"],
            },
            "event_id": {"type": "integer"},
            "history": {
                **_HISTORY_STATE,
                "description": "With the history store on: the terminal's record was marked "
                "(updated), the store does not hold it or the id is unknown (not_found), or the "
                "store could not be reached (unavailable; python -m service.ledger "
                "apply-labels applies it later).",
            },
        },
    }
    return {
        "LedgerDecision": decision,
        "ListedDecision": listed,
        "DecisionView": {
            "type": "object",
            "properties": {
                "transaction_id": {"type": "string"},
                "decisions": {
                    "type": "array",
                    "items": {"$ref": _REF.format(model="LedgerDecision")},
                },
                "labels": {"type": "array", "items": {"type": "object"}},
                "label": _LABEL,
            },
        },
        "DecisionPage": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": _REF.format(model="ListedDecision")}},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "AlertPage": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": _REF.format(model="LedgerDecision")}},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "LabelAnswer": {
            "type": "object",
            "properties": {
                "outcomes": {"type": "array", "items": outcome},
                "history": {
                    "type": "string",
                    "enum": ["updated", "unavailable"],
                    "description": "With the history store on: unavailable when any label "
                    "could not reach it.",
                },
            },
        },
    }


def _file_upload() -> dict[str, Any]:
    """A multipart request body with one required file field (file scoring, label files)."""
    schema = {
        "type": "object",
        "required": [FILE_FIELD],
        "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
    }
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _json_answer(description: str, model: str) -> dict[str, Any]:
    ref = {"$ref": _REF.format(model=model)}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def ledger_paths() -> dict[str, Any]:
    """OpenAPI path items of the decision ledger's routes (404 without a ledger)."""
    security: list[dict[str, list[str]]] = [{"ApiKey": []}]
    limit = _query("limit", "Items per page (1 to FRAUD_LEDGER_ALERTS_PAGE_MAX, 500).",
                   {"type": "integer", "default": 50, "minimum": 1})  # fmt: skip
    cursor = _query("cursor", "next_cursor of the previous page.", {"type": "string"})
    label_example = {
        "labels": [
            {"transaction_id": "tx-2", "label": "fraud",
             "reported_at": "2018-09-02T10:00:00Z", "source": "chargeback"},
        ]
    }  # fmt: skip
    return {
        f"{DECISION_PREFIX}{{transaction_id}}": {
            "get": {
                "tags": ["Ledger"],
                "operationId": "get_decision",
                "security": security,
                "summary": "A transaction's decisions, labels and winning label",
                "parameters": [
                    {
                        "name": "transaction_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                    },
                ],
                "responses": {
                    "200": _json_answer(
                        "Decisions (one per model) and label events.", "DecisionView"
                    ),
                    **_error_responses(401, 404, 422, 503),
                },
            }
        },
        DECISIONS_PATH: {
            "get": {
                "tags": ["Ledger"],
                "operationId": "list_decisions",
                "security": security,
                "summary": "One card's or terminal's decisions, newest first",
                "description": "Exactly one of card_hash (the card_hash of a decision) or "
                "terminal_id. Every decision, flagged or not, with its winning label; keyset "
                "paging with next_cursor.",
                "parameters": [
                    _query(
                        "card_hash",
                        "Keyed hash of the card, as decisions show it.",
                        {"type": "string"},
                    ),
                    _query("terminal_id", "Terminal id.", {"type": "string"}),
                    limit,
                    cursor,
                ],
                "responses": {
                    "200": _json_answer("A page of decisions.", "DecisionPage"),
                    **_error_responses(401, 404, 422, 503),
                },
            }
        },
        ALERTS_PATH: {
            "get": {
                "tags": ["Ledger"],
                "operationId": "list_alerts",
                "security": security,
                "summary": "Flagged decisions not yet labelled, newest first",
                "parameters": [
                    limit,
                    cursor,
                    _query("all", "true: labelled alerts too.", {"type": "boolean"}),
                ],
                "responses": {
                    "200": _json_answer("A page of alerts.", "AlertPage"),
                    **_error_responses(401, 404, 422, 503),
                },
            }
        },
        LABELS_PATH: {
            "post": {
                "tags": ["Ledger"],
                "operationId": "post_labels",
                "security": security,
                "summary": "Store labels (fraud or genuine) as events",
                "description": "One outcome per label, in order. With the history store on, "
                "each labelled transaction's terminal record is marked with its winning label.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"example": label_example}},
                },
                "responses": {
                    "200": _json_answer("One outcome per label.", "LabelAnswer"),
                    **_error_responses(400, 401, 404, 413, 415, 422, 503),
                },
            }
        },
        LABELS_FILE_PATH: {
            "post": {
                "tags": ["Ledger"],
                "operationId": "post_label_file",
                "security": security,
                "summary": "Store labels from a CSV or Parquet file",
                "description": "Multipart field 'file' with exactly the columns transaction_id, "
                "label, reported_at, source. Checked whole first: a bad row or column is a 4xx "
                "naming it and nothing is stored. Then as POST /v1/labels.",
                "requestBody": _file_upload(),
                "responses": {
                    "200": _json_answer("One outcome per row.", "LabelAnswer"),
                    **_error_responses(400, 401, 404, 413, 415, 422, 503),
                },
            }
        },
    }


def contract_components() -> dict[str, Any]:
    """JSON schemas of the request and response models, by name."""
    _, top = models_json_schema(
        [
            (Transaction, "validation"),
            (BatchRequest, "validation"),
            (ScoreResult, "serialization"),
            (BatchResult, "serialization"),
            (ErrorBody, "serialization"),
            (ModelInfo, "serialization"),
        ],
        ref_template=_REF,
    )
    return dict(top.get("$defs", {}))


def _plain_get(summary: str, tag: str, description: str) -> dict[str, Any]:
    return {
        "get": {
            "tags": [tag],
            "summary": summary,
            "description": description,
            "responses": {"200": {"description": "OK"}},
        }
    }


def service_paths() -> dict[str, Any]:
    """Health and metrics routes (no API key)."""
    return {
        LIVE_PATH: _plain_get("Liveness", "Health", "The process answers."),
        READY_PATH: _plain_get(
            "Readiness", "Health", "200 once the model is loaded and warmed up, 503 before."
        ),
        METRICS_PATH: _plain_get(
            "Prometheus metrics", "Health", "Prometheus text exposition of every worker."
        ),
    }


def build_spec(version: str) -> dict[str, Any]:
    """The service's whole OpenAPI 3.1 document: contract routes, health, components."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fraud scoring API",
            "version": version,
            "description": (
                "Scores card transactions with the trained XGBoost model. Health (/livez, "
                "/readyz) and /metrics never need an API key."
            ),
        },
        "paths": {**contract_paths(load_examples()), **ledger_paths(), **service_paths()},
        "components": {
            "schemas": {**contract_components(), **ledger_components()},
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
            },
        },
        "tags": [{"name": "Scoring"}, {"name": "Model"}, {"name": "Ledger"}, {"name": "Health"}],
    }
