"""The scoring form validates against the shared contract and names invalid fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraud_contract import TRANSACTION_FIELDS
from fraud_contract.schema import example_transaction
from ui import form
from ui.form import FORM_FIELDS, build_transaction, default_transaction, form_values


def test_form_has_exactly_the_contract_fields() -> None:
    assert sorted(FORM_FIELDS) == sorted(TRANSACTION_FIELDS)


def test_defaults_are_a_valid_transaction() -> None:
    body = build_transaction(form_values(default_transaction([])))
    assert body["amount"] == pytest.approx(example_transaction()["amount"])
    assert body["timestamp"].startswith("2018-08-09T14:23:05")


def test_blank_optional_fields_are_left_out_and_counts_become_integers() -> None:
    values = form_values({**example_transaction(), "customer_nb_tx_1d": 3.0})
    values[FORM_FIELDS.index("customer_avg_amount_7d")] = "  "
    body = build_transaction(values)
    assert body["customer_nb_tx_1d"] == 3
    assert isinstance(body["customer_nb_tx_1d"], int)
    assert "customer_avg_amount_7d" not in body


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("amount", -5.0, "Invalid field amount: input should be greater than or equal to 0"),
        ("timestamp", "yesterday", "Invalid field timestamp"),
        ("terminal_risk_7d", 1.5, "Invalid field terminal_risk_7d"),
        ("customer_id", "", "Invalid field customer_id"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object, expected: str) -> None:
    values = form_values({**example_transaction(), field: value})
    with pytest.raises(ValueError, match=expected):
        build_transaction(values)


def test_examples_skip_broken_entries_and_missing_file_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fraud_contract"
    package.mkdir()
    good = {"name": "genuine", "description": "ok", "transaction": example_transaction()}
    broken = {"name": "bad", "description": "", "transaction": {"amount": -1}}
    (package / "examples.json").write_text(json.dumps([good, broken]))

    class FakeResources:
        @staticmethod
        def files(_: str) -> Path:
            return package

    monkeypatch.setattr(form, "resources", FakeResources)
    examples = form.load_examples()
    assert [example.name for example in examples] == ["genuine"]
    assert default_transaction(examples)["customer_id"] == "C00042"

    (package / "examples.json").unlink()
    assert form.load_examples() == []
