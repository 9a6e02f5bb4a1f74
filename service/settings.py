"""All configuration of the scoring service: one settings class, environment prefix ``FRAUD_``.

Every field is an environment variable ``FRAUD_<FIELD NAME IN CAPITALS>``; lists are
comma-separated (``FRAUD_CORS_ORIGINS=https://a.example,https://b.example``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fraud_contract.artifact import MODEL_NAME


class ServiceSettings(BaseSettings):
    """Scoring-service configuration (environment variables ``FRAUD_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAUD_", extra="ignore", frozen=True)

    model_tag: str = Field(
        default=f"{MODEL_NAME}:latest",
        description="BentoML model tag to serve (name:version or name:latest).",
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Override of the model card's decision threshold (unset: use the card's).",
    )
    reasons_top_k: int = Field(
        default=3, ge=0, le=25, description="How many feature contributions each result lists."
    )
    reasons: Literal["all", "flagged", "none"] = Field(
        default="flagged",
        description="Which results carry TreeSHAP reasons unless the request asks with "
        "?explain=true: flagged ones only (score >= threshold; the default, because TreeSHAP "
        "costs ~250 us CPU per row against ~2-8 us for the plain score); all; or none.",
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="API worker processes (one per CPU core is typical)."
    )
    max_batch_size: int = Field(
        default=32,
        ge=2,
        le=4096,
        description="Adaptive batching: most single-score requests grouped into one model call "
        "(chosen by measurement, see the README).",
    )
    max_latency_ms: int = Field(
        default=250,
        ge=1,
        le=60_000,
        description="Adaptive batching: a queued request older than this is answered 503; the "
        "latency budget, not a batching delay (batches leave as soon as the model is free).",
    )
    max_concurrency: int = Field(
        default=64,
        ge=1,
        description="Admission control per worker: /v1 requests beyond this many in flight get "
        "an immediate 503 with Retry-After (64 ~ one core's capacity x the 15 ms objective; "
        "see docs/operations.md).",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="A request still running after this gets a 504."
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest JSON request body (single and batch scoring); larger is a 413.",
    )
    max_file_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest upload to the file-scoring endpoint; larger is a 413.",
    )
    max_file_rows: int = Field(
        default=2_000_000, ge=1, description="Most rows accepted in one scored file."
    )
    model_threads: int = Field(
        default=1,
        ge=1,
        description="XGBoost threads per worker (1: workers, not threads, use the cores).",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys, comma-separated. Empty (and no key file): no auth.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="File with one accepted API key per line (e.g. a mounted Kubernetes secret).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS, comma-separated. Empty: no CORS headers at all.",
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log line format of the service's own logger."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of the service's own logger."
    )
    access_log: bool = Field(
        default=False,
        description="One JSON line per successful scoring request. Off by default: at thousands "
        "of requests per second it costs throughput; rejections and errors are always logged.",
    )
    id_hash_salt: SecretStr = Field(
        default=SecretStr("fraud-scoring"),
        description="Salt for hashing card/customer identifiers in logs (set per deployment).",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def accepted_api_keys(self) -> tuple[bytes, ...]:
        """All configured keys (environment plus key file), as bytes for constant-time compare."""
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            keys.extend(line.strip() for line in lines if line.strip())
        return tuple(key.encode() for key in keys)


@lru_cache(maxsize=1)
def get_settings() -> ServiceSettings:
    """The process-wide settings (read once from the environment)."""
    return ServiceSettings()
