"""Decision building, migration discovery and the ledger's settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.ledger.migrate import MIGRATIONS_DIR, MigrationError, discover
from service.ledger.model import DECISION_COLUMNS, Decision
from service.ledger.settings import LedgerSettings

RESULT = {
    "transaction_id": "tx-1",
    "fraud_probability": 0.83,
    "is_fraud": True,
    "risk_band": "high",
    "threshold": 0.5,
    "model_tag": "fraud_detector:abc",
    "reasons": [{"feature": "amount", "value": 99.0, "contribution": 1.2}],
}


def test_a_decision_is_built_from_a_scorer_result() -> None:
    sent = datetime(2018, 8, 9, 14, 23, 5, tzinfo=timezone(timedelta(hours=2)))
    d = Decision.from_result(
        RESULT,
        event_time=sent,
        card_hash="hmac",
        terminal_id="t9",
        amount=99.0,
        request_id="r1",
        history_used=True,
    )
    assert d.event_time == datetime(2018, 8, 9, 14, 23, 5)  # as sent, no conversion
    assert d.probability == 0.83
    assert d.reasons == RESULT["reasons"]
    assert d.recorded_at.tzinfo is UTC
    assert len(d.as_row()) == len(DECISION_COLUMNS)
    assert d.as_row()[DECISION_COLUMNS.index("card_hash")] == "hmac"


def test_no_reasons_is_stored_as_none_and_an_id_is_required() -> None:
    plain = dict(RESULT, reasons=[])
    d = Decision.from_result(
        plain,
        event_time=datetime(2018, 1, 1),
        card_hash="h",
        terminal_id="t",
        amount=1.0,
        request_id=None,
        history_used=False,
    )
    assert d.reasons is None
    with pytest.raises(ValueError, match="transaction_id"):
        Decision.from_result(
            dict(RESULT, transaction_id=None),
            event_time=datetime(2018, 1, 1),
            card_hash="h",
            terminal_id="t",
            amount=1.0,
            request_id=None,
            history_used=False,
        )


def test_shipped_migrations_are_numbered_from_one() -> None:
    found = discover(MIGRATIONS_DIR)
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert "CREATE TABLE decisions" in found[0].sql


def test_discovery_refuses_gaps_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="no migration files"):
        discover(tmp_path)  # a package built without its *.sql files
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="gaps"):
        discover(tmp_path)
    (tmp_path / "0003_c.sql").unlink()
    (tmp_path / "2_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name"):
        discover(tmp_path)


def test_settings_come_from_fraud_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRAUD_DATABASE_URL", "postgresql://u:secret@db/fraud")
    monkeypatch.setenv("FRAUD_LEDGER_SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUD_LEDGER_POOL_MAX_SIZE", "8")
    settings = LedgerSettings()
    assert settings.url() == "postgresql://u:secret@db/fraud"
    assert "secret" not in repr(settings)
    assert settings.ledger_spool_dir == tmp_path
    assert settings.ledger_pool_max_size == 8
    assert settings.ledger_retention_days == 180
    for name, field in LedgerSettings.model_fields.items():
        assert field.description, name
    monkeypatch.delenv("FRAUD_DATABASE_URL")
    with pytest.raises(ValueError, match="FRAUD_DATABASE_URL"):
        LedgerSettings().url()
