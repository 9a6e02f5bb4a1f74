"""Settings of the analyst UI, read from ``FRAUD_UI_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    """Where the scoring API is and how the UI itself is served.

    Every field can be set with an environment variable named ``FRAUD_UI_<FIELD>``, e.g.
    ``FRAUD_UI_API_URL=http://fraud-api:3000`` or ``FRAUD_UI_ROOT_PATH=/ui``.
    """

    model_config = SettingsConfigDict(env_prefix="FRAUD_UI_", extra="ignore")

    api_url: str = Field(
        default="http://127.0.0.1:3000", description="Base URL of the scoring API."
    )
    api_key: SecretStr | None = Field(
        default=None, description="Sent as X-API-Key when the API requires a key."
    )
    host: str = Field(default="0.0.0.0", description="Interface the UI listens on.")  # noqa: S104
    port: int = Field(default=7860, ge=1, le=65535, description="Port the UI listens on.")
    root_path: str = Field(
        default="",
        description="Public sub-path the UI is served under (e.g. '/ui' behind an ingress).",
    )
    refresh_interval_s: float = Field(
        default=5.0, gt=0.0, description="How often the Service tab re-reads /metrics."
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0.0, description="Timeout for one scoring or model-card request."
    )
    file_timeout_s: float = Field(
        default=120.0, gt=0.0, description="Timeout for scoring an uploaded file."
    )
    connect_timeout_s: float = Field(
        default=3.0, gt=0.0, description="Timeout for opening a connection to the API."
    )
    reports_dir: Path = Field(
        default=Path("reports/model"),
        description="Directory with training's evaluation plots (*.png); optional.",
    )
    examples_path: Path | None = Field(
        default=None,
        description="JSON file of one-click examples; default: the simulator's examples "
        "shipped in fraud_contract/examples.json.",
    )
    max_upload_mb: int = Field(default=50, gt=0, description="Largest accepted upload.")
    preview_rows: int = Field(default=200, gt=0, description="Rows shown of a scored file.")

    @field_validator("api_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("root_path")
    @classmethod
    def _normalise_root_path(cls, value: str) -> str:
        """'' or '/ui' style: one leading slash, no trailing slash."""
        value = value.strip().strip("/")
        return f"/{value}" if value else ""
