"""The scoring API's contract: routes, headers, limits and response bodies.

The service implements it; the UI, the load tests and the tests import it instead of
hard-coding paths or re-declaring response shapes. Request bodies are the transaction
contract in :mod:`fraud_contract.schema` (single scoring takes one flat ``Transaction``).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from fraud_contract.artifact import RiskBand
from fraud_contract.schema import Transaction

# ---- routes ------------------------------------------------------------------------------
#: Score one transaction (body: one flat ``Transaction`` JSON object) -> :class:`ScoreResult`.
SCORE_PATH: Final = "/v1/score"
#: Score a list of transactions (body: :class:`BatchRequest`) -> :class:`BatchResult`.
SCORE_BATCH_PATH: Final = "/v1/score/batch"
#: Score an uploaded CSV or Parquet file (multipart field ``file``) -> the file, scored.
SCORE_FILE_PATH: Final = "/v1/score/file"
#: Model card of the model being served -> :class:`ModelInfo`.
MODEL_PATH: Final = "/v1/model"
#: 200 only once the model is loaded and a warm-up prediction has run (503 before).
READY_PATH: Final = "/readyz"
#: 200 while the process is alive.
LIVE_PATH: Final = "/livez"
#: Prometheus exposition format.
METRICS_PATH: Final = "/metrics"
#: Decision ledger (with ``FRAUD_DATABASE_URL``; 404 without one, 503 while PostgreSQL is
#: down). One transaction's decisions and labels: ``DECISION_PREFIX + transaction_id``.
DECISION_PREFIX: Final = "/v1/decisions/"
#: One card's (``?card_hash=``) or terminal's (``?terminal_id=``) decisions, newest first.
DECISIONS_PATH: Final = "/v1/decisions"
#: Flagged decisions (by default those without a label yet), newest first.
ALERTS_PATH: Final = "/v1/alerts"
#: Labels as JSON (``{"labels": [...]}``) or as a CSV/Parquet file (multipart field ``file``).
LABELS_PATH: Final = "/v1/labels"
LABELS_FILE_PATH: Final = "/v1/labels/file"
#: Swagger UI (also served at ``/``) and the OpenAPI document.
DOCS_PATH: Final = "/docs"
OPENAPI_PATH: Final = "/docs.json"

#: Paths that never need an API key and are never access-logged.
UNAUTHENTICATED_PATHS: Final[frozenset[str]] = frozenset({READY_PATH, LIVE_PATH, METRICS_PATH})

#: Query parameter of the two JSON scoring routes: ``?explain=true`` puts TreeSHAP reasons on
#: every result of the request. Without it the service's ``FRAUD_REASONS`` policy applies
#: (by default only flagged results carry reasons).
EXPLAIN_PARAM: Final = "explain"

# ---- headers and limits ------------------------------------------------------------------
#: Header carrying the API key when keys are configured.
API_KEY_HEADER: Final = "X-API-Key"
#: Header carrying the request id (echoed back; generated when absent).
REQUEST_ID_HEADER: Final = "X-Request-ID"
#: Most transactions accepted in one ``/v1/score/batch`` request.
MAX_BATCH_TRANSACTIONS: Final = 1_000
#: File scoring: the multipart field name, and the columns added to the scored file.
FILE_FIELD: Final = "file"
SCORE_COLUMNS: Final[tuple[str, ...]] = ("fraud_probability", "is_fraud", "risk_band")
CSV_MEDIA_TYPE: Final = "text/csv"
PARQUET_MEDIA_TYPE: Final = "application/vnd.apache.parquet"


# ---- response bodies ---------------------------------------------------------------------
class Reason(BaseModel):
    """One feature's contribution to the score (XGBoost TreeSHAP, in log-odds units)."""

    model_config = ConfigDict(frozen=True)

    feature: str = Field(description="Model feature name (see the model card's feature_names).")
    value: float | None = Field(description="The feature's value; null when it was missing.")
    contribution: float = Field(
        description="SHAP contribution to the log-odds; positive pushes towards fraud."
    )


class ScoreResult(BaseModel):
    """The score of one transaction."""

    model_config = ConfigDict(frozen=True)

    transaction_id: str | None = Field(description="Echo of the request's transaction_id.")
    fraud_probability: float = Field(ge=0.0, le=1.0, description="Model probability of fraud.")
    is_fraud: bool = Field(description="Decision: fraud_probability >= threshold.")
    risk_band: str = Field(description="Risk band the probability falls in (model card).")
    threshold: float = Field(ge=0.0, le=1.0, description="Decision threshold applied.")
    model_tag: str = Field(description="BentoML tag (name:version) of the model that scored.")
    reasons: list[Reason] = Field(
        description="Top contributions, largest absolute contribution first."
    )
    history: Literal["used", "replayed", "unavailable"] | None = Field(
        default=None,
        description="Only when the service keeps the history (FRAUD_HISTORY_URL): the "
        "aggregates the caller left out came from the store (used), were the ones stored the "
        "first time this transaction_id was scored (replayed), or the store could not be "
        "reached and the transaction was scored without them (unavailable).",
    )
    aggregates: dict[str, float | int | None] | None = Field(
        default=None,
        description="With ?explain=true and the history store on: the aggregates the model saw "
        "(sent by the caller or computed from the store).",
    )


class BatchRequest(BaseModel):
    """Several transactions scored in one call (results come back in the same order)."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[Transaction] = Field(
        min_length=1,
        max_length=MAX_BATCH_TRANSACTIONS,
        description=f"1 to {MAX_BATCH_TRANSACTIONS} transactions.",
    )


class BatchResult(BaseModel):
    """Results of a batch, one per transaction, in request order."""

    model_config = ConfigDict(frozen=True)

    model_tag: str = Field(description="BentoML tag of the model that scored the batch.")
    results: list[ScoreResult] = Field(description="One result per transaction, in order.")


class FieldError(BaseModel):
    """What is wrong with one field (``field`` is a dotted path, rows as ``transactions.3``)."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path of the offending field, or 'body'/'row N'.")
    reason: str = Field(description="Why it was rejected.")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer has this body (never a stack trace)."""

    model_config = ConfigDict(frozen=True)

    error: str = Field(description="Stable machine-readable code, e.g. 'invalid_input'.")
    message: str = Field(description="One human-readable sentence.")
    errors: list[FieldError] = Field(default_factory=list, description="Per-field details.")


class ModelInfo(BaseModel):
    """The model card of the model being served."""

    model_config = ConfigDict(frozen=True, protected_namespaces=(), populate_by_name=True)

    tag: str = Field(description="BentoML tag, name:version.")
    name: str = Field(description="Model name in the store.")
    version: str = Field(description="Model version.")
    trained_at: str = Field(description="UTC ISO 8601 training time.")
    threshold: float = Field(description="Decision threshold in use (after any override).")
    model_threshold: float = Field(description="Threshold stored with the model.")
    threshold_rule: str = Field(description="How the stored threshold was chosen.")
    risk_bands: list[RiskBand] = Field(description="Bands by increasing lower bound.")
    metrics: dict[str, float] = Field(description="Held-out evaluation metrics.")
    scenario_recall: dict[str, float] = Field(description="Recall per fraud scenario.")
    feature_names: list[str] = Field(description="Model inputs, in booster column order.")
    dataset: dict[str, Any] = Field(description="Simulator preset, seed, train/test periods.")
    code_version: str = Field(description="Git revision that trained the model.")
    schema_: dict[str, Any] = Field(
        alias="schema", description="JSON schema of the request transaction."
    )
