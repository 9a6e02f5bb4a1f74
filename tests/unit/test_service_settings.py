"""Service settings: FRAUD_ environment variables, list parsing, key sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import ServiceSettings


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FRAUD_API_KEYS", "FRAUD_CORS_ORIGINS", "FRAUD_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings()
    assert settings.model_tag == "fraud-detector:latest"
    assert settings.threshold is None
    assert settings.accepted_api_keys() == ()
    assert settings.cors_origins == []


def test_comma_separated_lists_and_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("file-key-1\n\n  file-key-2  \n")
    monkeypatch.setenv("FRAUD_API_KEYS", "env-a, env-b,")
    monkeypatch.setenv("FRAUD_API_KEYS_FILE", str(key_file))
    monkeypatch.setenv("FRAUD_CORS_ORIGINS", "https://ui.example, http://localhost:7860")
    monkeypatch.setenv("FRAUD_THRESHOLD", "0.25")
    settings = ServiceSettings()
    assert settings.accepted_api_keys() == (b"env-a", b"env-b", b"file-key-1", b"file-key-2")
    assert settings.cors_origins == ["https://ui.example", "http://localhost:7860"]
    assert settings.threshold == 0.25
    assert "env-a" not in repr(settings)  # secrets are masked


@pytest.mark.parametrize(
    ("name", "value"),
    [("FRAUD_THRESHOLD", "1.5"), ("FRAUD_MAX_BATCH_SIZE", "0"), ("FRAUD_LOG_FORMAT", "xml")],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        ServiceSettings()
    assert name.removeprefix("FRAUD_").lower() in str(info.value)


def test_every_field_is_documented() -> None:
    for name, field in ServiceSettings.model_fields.items():
        assert field.description, f"{name} has no description"
