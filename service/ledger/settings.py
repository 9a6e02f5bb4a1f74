"""Settings of the decision ledger (prefix ``FRAUD_``), ready to merge into the service's.

Field names carry a ``ledger_`` prefix (except ``database_url``) so that merging them into
:class:`service.settings.ServiceSettings` keeps the environment variable names unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LedgerSettings(BaseSettings):
    """Decision ledger and label store configuration (environment variables ``FRAUD_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAUD_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL connection URI of the ledger (libpq form, e.g. "
        "postgresql://user:password@host:5432/fraud?sslmode=verify-full); unset: no ledger. "
        "Secret: it may carry the password.",
    )
    ledger_spool_dir: Path = Field(
        default=Path("/var/lib/fraud/ledger-spool"),
        description="Directory of the local write-ahead spool (SQLite, WAL mode) that holds "
        "decisions until they are committed to PostgreSQL; give it a persistent volume.",
    )
    ledger_writer: Literal["thread", "process"] = Field(
        default="thread",
        description="Who drains the spool: 'thread' (a thread of the service process) or "
        "'process' (a separate `python -m service.ledger writer` sharing the spool directory, "
        "e.g. a sidecar container, so the copying never competes with scoring for the GIL).",
    )
    ledger_spool_sync: Literal["normal", "full"] = Field(
        default="normal",
        description="SQLite synchronous mode of the spool: 'normal' survives a process crash "
        "(no fsync per append, the WAL is fsynced at checkpoints); 'full' also survives power "
        "loss at the cost of one fsync per append call.",
    )
    ledger_spool_max_rows: int = Field(
        default=5_000_000,
        ge=1,
        description="Most decisions the spool holds while PostgreSQL is unreachable; beyond "
        "it new decisions are dropped and counted (scoring never stops).",
    )
    ledger_pool_min_size: int = Field(
        default=1, ge=0, description="Connections the ledger pool keeps open."
    )
    ledger_pool_max_size: int = Field(
        default=4, ge=1, description="Most connections the ledger pool opens (writer + queries)."
    )
    ledger_batch_size: int = Field(
        default=2_000,
        ge=1,
        le=100_000,
        description="Most spooled decisions the writer copies to PostgreSQL in one transaction.",
    )
    ledger_flush_interval_s: float = Field(
        default=0.2,
        gt=0,
        le=60,
        description="Longest a spooled decision waits before the writer looks at the spool.",
    )
    ledger_retry_max_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Longest pause between the writer's retries while PostgreSQL fails "
        "(exponential back-off from 0.1 s).",
    )
    ledger_connect_timeout_s: float = Field(
        default=3.0, gt=0, le=60, description="Connection and pool-checkout timeout."
    )
    ledger_retention_days: int = Field(
        default=180,
        ge=1,
        description="Decisions (and labels received) older than this many days are removed "
        "by the retention job.",
    )
    ledger_label_max_rows: int = Field(
        default=100_000, ge=1, description="Most labels accepted in one request or file."
    )
    ledger_label_max_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1, description="Largest label file accepted, in bytes."
    )
    ledger_alerts_page_max: int = Field(
        default=500, ge=1, description="Largest page of the alert listing."
    )

    def url(self) -> str:
        """The database URI in clear (raises when unset)."""
        if self.database_url is None:
            raise ValueError("FRAUD_DATABASE_URL is not set")
        return self.database_url.get_secret_value()
