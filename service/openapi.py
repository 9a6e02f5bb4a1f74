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
    API_KEY_HEADER,
    EXPLAIN_PARAM,
    FILE_FIELD,
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
from fraud_contract.schema import Transaction, example_transaction

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
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": [FILE_FIELD],
                                "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
                            }
                        }
                    },
                },
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
        "paths": {**contract_paths(load_examples()), **service_paths()},
        "components": {
            "schemas": contract_components(),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
            },
        },
        "tags": [{"name": "Scoring"}, {"name": "Model"}, {"name": "Health"}],
    }
