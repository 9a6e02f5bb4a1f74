"""Service settings: FRAUD_ environment variables, list parsing, key sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import ServiceSettings, SettingsError
from service.table_limits import FileLimits


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


def test_file_limit_settings_map_onto_the_engines_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().file_limits() == FileLimits()  # one set of defaults
    monkeypatch.setenv("FRAUD_MAX_FILE_COLUMNS", "12")
    monkeypatch.setenv("FRAUD_MAX_FILE_CELL_BYTES", "100")
    limits = ServiceSettings().file_limits()
    assert (limits.max_columns, limits.max_cell_bytes) == (12, 100)


def test_hash_key_is_required_outside_dev_mode_and_keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="FRAUD_ID_HASH_KEY is not set"):
        ServiceSettings().id_hasher()
    with pytest.raises(SettingsError, match="too short"):
        ServiceSettings(id_hash_key="x" * 31).id_hasher()
    dev = ServiceSettings(dev_mode=True).id_hasher()
    assert dev("card-1") != ServiceSettings(dev_mode=True).id_hasher()("card-1")  # fresh keys
    first = ServiceSettings(id_hash_key="a" * 32, id_hash_key_id="k7").id_hasher()
    again = ServiceSettings(id_hash_key="a" * 32, id_hash_key_id="k7").id_hasher()
    other = ServiceSettings(id_hash_key="b" * 32).id_hasher()
    assert first("card-1") == again("card-1")  # stable per key: lines stay joinable
    assert first("card-1") != other("card-1")
    assert first("card-1").startswith("k7:")  # type: ignore[union-attr]
    assert len(first("card-1").split(":")[1]) == 32  # type: ignore[union-attr]
    assert "card-1" not in first("card-1")  # type: ignore[operator]
    assert first(None) is None
    monkeypatch.setenv("FRAUD_ID_HASH_KEY", "")
    assert ServiceSettings().id_hash_key is None  # an empty variable means unset
