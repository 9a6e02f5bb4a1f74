"""The transaction contract rejects what cannot be a transaction, naming the field."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from fraud_contract import AGGREGATE_FIELDS, REQUIRED_FIELDS, Transaction, numeric_bounds
from fraud_contract.schema import MAX_AMOUNT, MAX_DAYS, example_transaction, is_whole_number
from testkit.tools import REPO_ROOT

EXAMPLES = json.loads((REPO_ROOT / "fraud_contract" / "examples.json").read_text())


def _errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        Transaction.model_validate(body)
    return [dict(error) for error in caught.value.errors()]


def _fields(errors: list[dict[str, Any]]) -> set[str]:
    return {".".join(str(p) for p in error["loc"]) for error in errors}


def test_minimal_record_is_valid_and_aggregates_default_to_missing() -> None:
    tx = Transaction.model_validate(example_transaction())
    assert tx.amount == pytest.approx(57.16)
    assert all(getattr(tx, name) is None for name in AGGREGATE_FIELDS)


@pytest.mark.parametrize("field", ["timestamp", "customer_id", "terminal_id", "amount"])
def test_missing_required_field_is_named(field: str) -> None:
    body = example_transaction()
    del body[field]
    errors = _errors(body)
    assert _fields(errors) == {field}
    assert errors[0]["type"] == "missing"


@pytest.mark.parametrize(
    ("amount", "error_type"),
    [
        (math.nan, "finite_number"),
        (math.inf, "finite_number"),
        (-0.01, "greater_than_equal"),
        (MAX_AMOUNT * 10, "less_than_equal"),
        ("twelve", "float_type"),
        ("66.29", "float_type"),
        (True, "float_type"),
        (None, "float_type"),
    ],
)
def test_impossible_amount_is_rejected(amount: object, error_type: str) -> None:
    errors = _errors(example_transaction(amount=amount))
    assert _fields(errors) == {"amount"}
    assert errors[0]["type"] == error_type
    assert errors[0]["msg"]  # a human-readable reason travels with the field name


@pytest.mark.parametrize("timestamp", ["yesterday", "2018-13-01T00:00:00", "", "2018-02-30"])
def test_unparseable_timestamp_is_rejected(timestamp: str) -> None:
    assert _fields(_errors(example_transaction(timestamp=timestamp))) == {"timestamp"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_nb_tx_1d", "many"),
        ("customer_nb_tx_7d", 2.5),
        ("terminal_risk_7d", 1.5),
        ("terminal_risk_1d", -0.1),
        ("customer_avg_amount_30d", math.inf),
        ("customer_id", 42),
        ("terminal_id", "T 01; drop"),
        ("customer_id", ""),
    ],
)
def test_wrong_type_or_range_names_the_field(field: str, value: object) -> None:
    assert _fields(_errors(example_transaction(**{field: value}))) == {field}


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("amount", '"66.29"', "float_type"),
        ("amount", "true", "float_type"),
        ("terminal_risk_7d", '"0.5"', "float_type"),
        ("terminal_fraud_run_days", "false", "float_type"),
        ("customer_nb_tx_1d", '"3"', "int_type"),
        ("customer_nb_tx_1d", "true", "int_type"),
        ("terminal_fraud_run_nb", "2.5", "int_from_float"),
        ("timestamp", "1533824585", "datetime_type"),
        ("timestamp", "true", "datetime_type"),
        ("customer_id", "42", "string_type"),
    ],
)
def test_json_values_are_not_coerced(field: str, value: str, error_type: str) -> None:
    body = json.dumps(example_transaction(**{field: None})).replace(
        f'"{field}": null', f'"{field}": {value}'
    )
    with pytest.raises(ValidationError) as caught:
        Transaction.model_validate_json(body)
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [((field,), error_type)]


def test_whole_numbers_stay_valid_counts_and_integers_valid_amounts() -> None:
    body = json.dumps(example_transaction(customer_nb_tx_7d=3.0, amount=12, terminal_risk_7d=0))
    tx = Transaction.model_validate_json(body)
    assert (tx.customer_nb_tx_7d, tx.amount, tx.terminal_risk_7d) == (3, 12.0, 0.0)


def test_every_count_refuses_strings_and_booleans() -> None:
    counts = [name for name in AGGREGATE_FIELDS if is_whole_number(name)]
    for name in counts:
        assert _fields(_errors(example_transaction(**{name: "3"}))) == {name}
        assert _fields(_errors(example_transaction(**{name: True}))) == {name}
    for name in set(AGGREGATE_FIELDS) - set(counts):
        assert _fields(_errors(example_transaction(**{name: "0.5"}))) == {name}


def test_unknown_field_is_rejected_not_ignored() -> None:
    errors = _errors(example_transaction(customer_nb_tx_2d=3))
    assert _fields(errors) == {"customer_nb_tx_2d"}
    assert errors[0]["type"] == "extra_forbidden"


def test_bounds_are_readable_for_vectorised_validators() -> None:
    assert numeric_bounds("amount") == (0.0, MAX_AMOUNT)
    assert numeric_bounds("terminal_risk_30d") == (0.0, 1.0)
    assert numeric_bounds("customer_nb_tx_7d")[0] == 0
    assert numeric_bounds("terminal_fraud_run_days") == (0.0, MAX_DAYS)


def test_counts_are_whole_numbers_and_the_rest_is_not() -> None:
    counts = {name for name in AGGREGATE_FIELDS if is_whole_number(name)}
    assert {"customer_nb_tx_7d", "customer_nb_high_amount_7d", "terminal_nb_tx_30d"} <= counts
    assert {"terminal_fraud_run_nb", "terminal_fraud_run_nb_plain"} <= counts
    assert not counts & {"amount", "terminal_risk_7d", "terminal_fraud_run_days"}
    assert not is_whole_number("customer_avg_amount_ref")


def test_required_fields_are_the_card_processor_columns() -> None:
    assert set(REQUIRED_FIELDS) == {"timestamp", "customer_id", "terminal_id", "amount"}


def test_examples_are_real_labelled_simulator_records_with_every_aggregate() -> None:
    assert [e["name"] for e in EXAMPLES] == [
        "genuine",
        "large_amount",
        "compromised_terminal",
        "compromised_card",
    ]
    assert [e["fraud_scenario"] for e in EXAMPLES] == [0, 1, 2, 3]
    for example in EXAMPLES:
        tx = Transaction.model_validate(example["transaction"])
        assert example["description"]
        assert all(getattr(tx, name) is not None for name in AGGREGATE_FIELDS)
        assert tx.customer_id.startswith("C")
        assert tx.terminal_id.startswith("T")
