"""All configuration of the scoring service: one settings class, environment prefix ``FRAUD_``.

Every field is an environment variable ``FRAUD_<FIELD NAME IN CAPITALS>``; lists are
comma-separated (``FRAUD_CORS_ORIGINS=https://a.example,https://b.example``).
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fraud_contract.artifact import MODEL_NAME
from service.logs import IdHasher
from service.table_limits import FileLimits

#: Shortest accepted FRAUD_ID_HASH_KEY, in characters (128 bits as hex).
MIN_HASH_KEY_CHARS = 32


class SettingsError(ValueError):
    """The settings cannot run a service (one line, naming the variable)."""


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
        "(chosen by measurement, see docs/performance.md).",
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
    max_queue_wait_ms: float = Field(
        default=20.0,
        ge=0,
        description="Admission control: a single score arriving while the adaptive batcher's "
        "oldest request has waited longer than this, with at least FRAUD_MAX_BATCH_SIZE "
        "requests in flight, gets an immediate 503 (0: off). Keeps the latency of admitted "
        "requests bounded under overload (docs/operations.md).",
    )
    max_concurrency_per_key: int = Field(
        default=0,
        ge=0,
        description="Most /v1 requests in flight per worker for one API key (0: no per-key "
        "cap); beyond it that client gets 503 while the others keep their share.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="A request still running after this gets a 504."
    )
    history_url: str | None = Field(
        default=None,
        description="Valkey/Redis URL of the history store (valkey://, redis://, rediss:// "
        "for TLS; password in the URL, e.g. from a Secret). Unset: no history, callers send "
        "the aggregates themselves (docs/history.md).",
    )
    history_cluster: bool = Field(
        default=False, description="The history store is a Valkey/Redis cluster."
    )
    history_timeout_s: float = Field(
        default=0.1,
        gt=0,
        description="Longest wait for the history store on the scoring path; slower counts as "
        "unavailable (the circuit breaker then stops asking for a second).",
    )
    history_max_future_s: float = Field(
        default=300.0,
        ge=0,
        description="With the history store on: a transaction timestamped further than this "
        "in the future (wall clock, UTC) is a 422 naming timestamp, never recorded.",
    )
    history_max_lateness_s: int = Field(
        default=24 * 3600,
        ge=0,
        le=14 * 86_400,
        description="With the history store on: how far (event time) a transaction may arrive "
        "behind its card's or terminal's newest one and still be placed exactly in its "
        "windows (at most the 14-day reference lag); the store keeps that much more history.",
    )
    history_refuse_late: bool = Field(
        default=True,
        description="With the history store on: a transaction later than "
        "FRAUD_HISTORY_MAX_LATENESS_S is a 422 naming timestamp, never recorded (false: it is "
        "recorded and scored, its windows approximate).",
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
    max_file_columns: int = Field(
        default=256, ge=5, description="Most columns in a scored file (CSV header, Parquet)."
    )
    max_file_header_bytes: int = Field(
        default=64 * 1024, ge=256, description="Longest CSV header line, in bytes."
    )
    max_file_cell_bytes: int = Field(
        default=16 * 1024, ge=64, description="Longest cell of a scored file, in bytes."
    )
    max_file_decoded_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes of decoded cells in a scored file, checked from the file's own "
        "metadata before decoding (decompression bombs get a 413).",
    )
    csv_neutralise_formulas: bool = Field(
        default=True,
        description="Scored CSVs: prefix cells starting with = + - @ tab or CR with a single "
        "quote (OWASP's CSV-injection advice), so spreadsheets never run them.",
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
    id_hash_key: SecretStr | None = Field(
        default=None,
        description="Secret key of the keyed hash (HMAC-SHA-256) that replaces card ids in "
        "logs, at least 32 characters (e.g. `openssl rand -hex 32`), kept in a secret store. "
        "Required unless FRAUD_DEV_MODE is on (then a random key is made per start).",
    )
    id_hash_key_id: str = Field(
        default="k1",
        pattern=r"^[A-Za-z0-9_.-]{1,16}$",
        description="Short name of the hash key, written before every hashed id in the logs "
        "(rotate the key with a new id: old lines stay joinable under the old one).",
    )
    dev_mode: bool = Field(
        default=False,
        description="Development mode (`make serve`, `make demo`): start without "
        "FRAUD_ID_HASH_KEY, using a random key for this process only. Never in production.",
    )
    body_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request body not fully received after this many seconds gets a 408 "
        "(slow clients). Requests count against the admission limit only once their body is in.",
    )
    shutdown_drain_s: float = Field(
        default=3.0,
        ge=0,
        description="On SIGTERM, keep serving this many seconds with `Connection: close` on "
        "every response and /readyz answering 503, then stop (in-flight requests finish).",
    )
    docs_access: Literal["public", "key", "off"] = Field(
        default="public",
        description="/docs, /redoc and /docs.json: open to all, behind the API key, or not served.",
    )
    metrics_access: Literal["public", "key", "off"] = Field(
        default="public",
        description="/metrics: open to all (the usual Prometheus scrape), behind the API key, "
        "or not served.",
    )
    behind_tls: bool = Field(
        default=False,
        description="The service is reached over HTTPS (TLS ends at the gateway): send "
        "Strict-Transport-Security with every response.",
    )

    @field_validator("id_hash_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if value == "" else value

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

    def file_limits(self) -> FileLimits:
        """The bounds on one uploaded table."""
        return FileLimits(
            max_columns=self.max_file_columns,
            max_header_bytes=self.max_file_header_bytes,
            max_cell_bytes=self.max_file_cell_bytes,
            max_decoded_bytes=self.max_file_decoded_bytes,
        )

    def id_hasher(self) -> IdHasher:
        """The keyed hash for card ids in logs (a per-process random key in dev mode).

        Raises:
            SettingsError: no key outside dev mode, or a key shorter than 32 characters.
        """
        if self.id_hash_key is None:
            if not self.dev_mode:
                raise SettingsError(
                    "FRAUD_ID_HASH_KEY is not set: card ids in logs need a secret key of at "
                    f"least {MIN_HASH_KEY_CHARS} characters (or FRAUD_DEV_MODE=true for a "
                    "throw-away key)"
                )
            return IdHasher(secrets.token_bytes(32), "dev")
        key = self.id_hash_key.get_secret_value()
        if len(key) < MIN_HASH_KEY_CHARS:
            raise SettingsError(
                f"FRAUD_ID_HASH_KEY is too short: {len(key)} characters, at least "
                f"{MIN_HASH_KEY_CHARS} needed"
            )
        return IdHasher(key.encode(), self.id_hash_key_id)


@lru_cache(maxsize=1)
def get_settings() -> ServiceSettings:
    """The process-wide settings (read once from the environment)."""
    return ServiceSettings()
