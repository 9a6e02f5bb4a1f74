"""Strict JSON bodies: repeated keys are a 400, no coercion, and the batch column path agrees
with the contract (pydantic) on every body it accepts, value for value.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fraud_contract.api import BatchRequest
from fraud_contract.features import columns_from_records
from fraud_contract.schema import AGGREGATE_FIELDS, example_transaction, is_whole_number
from service.errors import ApiError, from_validation_error
from service.json_columns import plain_columns as _columns_if_plainly_valid
from service.json_input import TransactionColumns, decode_batch, decode_transaction


def _batch(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"transactions": rows})


def _rows(n: int = 5, **overrides: Any) -> list[dict[str, Any]]:
    return [
        example_transaction(transaction_id=f"t{i}", customer_nb_tx_1d=i, terminal_risk_7d=0.1)
        | overrides
        for i in range(n)
    ]


def _error(call: Any, body: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(body)
    return caught.value


def _pydantic_error(body: bytes) -> bytes:
    with pytest.raises(ValidationError) as caught:
        BatchRequest.model_validate_json(body)
    return from_validation_error(caught.value).body()


# ---- strict JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"amount": 1, "amount": 2}', "amount"),
        (b'{"customer_id": "a", "amount": 1, "customer_id": "b"}', "customer_id"),
        (b'{"customer_id": "a:b", "customer_id": 3}', "customer_id"),
        (b'{"a": {"b": 1, "b": 2}}', "a.b"),
        (b'{"timestamp": "x\\u003a", "amount": 1, "amount": 1}', "amount"),
    ],
)
def test_a_repeated_key_is_a_400_naming_it(body: bytes, field: str) -> None:
    error = _error(decode_transaction, body)
    assert (error.status, error.code, error.errors[0]["field"]) == (400, "duplicate_key", field)


def test_a_repeated_key_in_a_batch_names_its_row() -> None:
    rows = _rows()
    text = json.dumps({"transactions": rows})
    marker = '"transaction_id": "t3"'
    text = text.replace(marker, f'{marker}, "customer_id": "X"', 1)
    error = _error(lambda b: decode_batch(b, max_rows=10), text.encode())
    assert (error.status, error.errors) == (
        400,
        [{"field": "transactions.3.customer_id", "reason": "duplicate key 'customer_id'"}],
    )


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("amount", '"66.29"', "Input should be a valid number"),
        ("amount", "true", "Input should be a valid number"),
        ("customer_nb_tx_1d", '"3"', "Input should be a valid integer"),
        ("customer_nb_tx_1d", "false", "Input should be a valid integer"),
        ("timestamp", "1533824585", "Input should be a valid datetime"),
    ],
)
def test_no_coercion_single_and_batch(field: str, value: str, reason: str) -> None:
    single = json.dumps(example_transaction(**{field: "PLACEHOLDER"}))
    single = single.replace('"PLACEHOLDER"', value)
    error = _error(decode_transaction, single.encode())
    assert (error.status, error.errors) == (422, [{"field": field, "reason": reason}])
    rows = _rows(4)
    batch = json.dumps({"transactions": rows}).encode()
    target = json.dumps(rows[2])
    bad = json.dumps(rows[2] | {field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value)
    error = _error(
        lambda b: decode_batch(b, max_rows=10), batch.replace(target.encode(), bad.encode())
    )
    assert (error.status, error.errors) == (
        422,
        [{"field": f"transactions.2.{field}", "reason": reason}],
    )


def test_whole_floats_are_counts() -> None:
    columns = decode_batch(_batch(_rows(3, customer_nb_tx_7d=4.0)), max_rows=10)
    np.testing.assert_array_equal(columns.columns["customer_nb_tx_7d"], [4.0, 4.0, 4.0])


# ---- batch errors are the contract's --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"transactions": []}',
        b'{"transactions": [1',
        b'{"transactions": [{"amount": NaN}]}',
        b"[]",
        b'{"transactions": [], "extra": 1}',
        _batch(_rows(3, amount=-1)),
        _batch(_rows(3, customer_id=" ")),
        _batch(_rows(3, terminal_risk_7d=1.5)),
        _batch([{**r, "vip": True} for r in _rows(2)]),
        _batch([{k: v for k, v in r.items() if k != "terminal_id"} for r in _rows(2)]),
        _batch(_rows(3, timestamp="2018-02-30T10:00:00")),
    ],
)
def test_batch_errors_are_pydantics(body: bytes) -> None:
    error = _error(lambda b: decode_batch(b, max_rows=1000), body)
    assert error.body() == _pydantic_error(body)


def test_more_rows_than_allowed() -> None:
    error = _error(lambda b: decode_batch(b, max_rows=3), _batch(_rows(5)))
    assert (error.status, error.errors[0]["field"]) == (422, "transactions")
    assert "at most 3 items" in error.errors[0]["reason"]
    over = _error(lambda b: decode_batch(b, max_rows=5000), _batch(_rows(1001)))
    assert over.body() == _pydantic_error(_batch(_rows(1001)))


def test_plain_batches_take_the_column_path() -> None:
    assert _columns_if_plainly_valid(_batch(_rows(50)), 1000) is not None
    mixed = _rows(4)
    del mixed[1]["transaction_id"]
    mixed[2]["terminal_fraud_run_days"] = 7.5
    assert _columns_if_plainly_valid(_batch(mixed), 1000) is not None


@pytest.mark.parametrize(
    "row",
    [
        {"terminal_risk_7d": None, "customer_nb_tx_1d": None, "transaction_id": None},
        {"transaction_id": "null:1", "customer_id": "nullnull", "terminal_id": "a:b:c"},
        {"transaction_id": "null", "terminal_risk_7d": 0},
    ],
)
def test_nulls_and_texts_that_look_like_keys_take_the_column_path(row: dict[str, Any]) -> None:
    rows = _rows(3)
    rows[1] |= row
    body = _batch(rows)
    fast = _columns_if_plainly_valid(body, 1000)
    reference = _reference(body)
    assert fast is not None and isinstance(reference, TransactionColumns)
    assert fast.transaction_ids == reference.transaction_ids
    for name, values in reference.columns.items():
        np.testing.assert_array_equal(fast.columns[name], values, err_msg=name)


@pytest.mark.parametrize(
    ("member", "field"),
    [
        ('"terminal_risk_7d": null, "terminal_risk_7d": null', "terminal_risk_7d"),
        ('"terminal_risk_7d": 0.1, "terminal_risk_7d": null', "terminal_risk_7d"),
        ('"transaction_id": null, "transaction_id": "t9"', "transaction_id"),
        ('"customer_id": "a:b", "customer_id": "a:b"', "customer_id"),
        ('"amount": 3, "amount": 3', "amount"),
    ],
)
def test_a_repeated_key_is_never_taken_by_the_column_path(member: str, field: str) -> None:
    rows = [{k: v for k, v in r.items() if k not in (field, "terminal_risk_7d")} for r in _rows(3)]
    text = json.dumps({"transactions": rows})
    text = text.replace('"timestamp"', member + ', "timestamp"', 1)
    assert _columns_if_plainly_valid(text.encode(), 1000) is None
    error = _error(lambda b: decode_batch(b, max_rows=10), text.encode())
    assert (error.status, error.errors[0]["field"]) == (400, f"transactions.0.{field}")


@pytest.mark.parametrize(
    "value", ['""', '"-Infinity"', "-1e999", "1e999", '"NaN"', "-0.5", "[]", "{}"]
)
def test_values_like_the_absent_markers_are_the_contracts_errors(value: str) -> None:
    field = "transaction_id" if value == '""' else "terminal_risk_7d"
    rows = _rows(3)
    text = json.dumps(rows[1])
    bad = json.dumps({k: v for k, v in rows[1].items() if k != field} | {field: "PLACEHOLDER"})
    body = json.dumps({"transactions": rows}).replace(text, bad).replace('"PLACEHOLDER"', value)
    assert _columns_if_plainly_valid(body.encode(), 1000) is None
    error = _error(lambda b: decode_batch(b, max_rows=10), body.encode())
    assert error.body() == _pydantic_error(body.encode())
    assert error.errors[0]["field"] == f"transactions.1.{field}"


def test_decoding_is_safe_in_worker_threads() -> None:
    bodies = [_batch(_rows(20, amount=float(i))) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(lambda b: decode_batch(b, max_rows=100), bodies * 4))
    for i, columns in enumerate(decoded):
        assert (columns.columns["amount"] == float(i % 16)).all()


# ---- the column path agrees with the contract -----------------------------------------------

_COUNT_NAMES = [name for name in AGGREGATE_FIELDS if is_whole_number(name)]
_FLOAT_NAMES = [name for name in AGGREGATE_FIELDS if not is_whole_number(name)]
_IDS = st.from_regex(r"[A-Za-z0-9_.:-]{1,8}", fullmatch=True) | st.sampled_from(
    ["", " C1", "C 1", "Cé", "x" * 65, "C1\t", "null", "a:null:b"]
)
_TIMESTAMPS = st.sampled_from(
    [
        "2018-04-01T10:00:00", "2016-02-29T23:59:59", "2018-02-29T00:00:00",
        "2018-04-01T24:00:00", "2018-04-01 10:00:00", "2018-04-01T10:00:00Z",
        "2018-04-01T10:00:00.25", "2018-04-01T10:00:00+02:00", "0001-01-01T00:00:00",
        "9999-12-31T23:59:59", "2018-04-01", "nope", "2018-04-01T10:00:60",
    ]
) | st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
_NUMBERS = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 0.0, -0.0, 1e6, 1e7, 10_000_001, 0.5, 1.0, 36_500.0, 3.0, True, "1"])
)
_VALUE = {
    "transaction_id": st.none() | _IDS,
    "timestamp": _TIMESTAMPS,
    "customer_id": _IDS,
    "terminal_id": _IDS,
    "amount": _NUMBERS,
    **{name: st.none() | _NUMBERS | st.integers(0, 50) for name in _COUNT_NAMES},
    **{name: st.none() | _NUMBERS | st.floats(0, 1) for name in _FLOAT_NAMES},
}


@st.composite
def _rows_strategy(draw: st.DrawFn) -> list[dict[str, Any]]:
    fields = draw(st.lists(st.sampled_from(list(_VALUE)), unique=True, max_size=8))
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        row = {
            "timestamp": draw(_TIMESTAMPS),
            "customer_id": "C1",
            "terminal_id": "T1",
            "amount": 1,
        }
        for name in fields:
            row[name] = draw(_VALUE[name])
        if draw(st.booleans()):
            row.pop(draw(st.sampled_from(sorted(row))))
        rows.append(row)
    return rows


def _reference(body: bytes) -> TransactionColumns | bytes:
    """What the contract says: pydantic's columns, or its error body."""
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError as exc:
        return from_validation_error(exc).body()
    return TransactionColumns(
        columns_from_records(batch.transactions), [t.transaction_id for t in batch.transactions]
    )


@settings(max_examples=400, deadline=None)
@given(rows=_rows_strategy(), spacing=st.booleans())
def test_the_column_path_accepts_only_what_the_contract_accepts(
    rows: list[dict[str, Any]], spacing: bool
) -> None:
    separators = (", ", ": ") if spacing else (",", ":")
    body = json.dumps({"transactions": rows}, separators=separators).encode()
    fast = _columns_if_plainly_valid(body, 1000)
    reference = _reference(body)
    if fast is None:
        return
    assert isinstance(reference, TransactionColumns), reference
    assert fast.transaction_ids == reference.transaction_ids
    assert set(fast.columns) == set(reference.columns)
    for name, values in reference.columns.items():
        np.testing.assert_array_equal(fast.columns[name], values, err_msg=name)
        assert fast.columns[name].dtype == values.dtype, name
    decoded = decode_batch(body, max_rows=1000)
    assert decoded.transaction_ids == reference.transaction_ids


def test_large_floats_and_integers_keep_their_values() -> None:
    rows = _rows(3, amount=999_999.999999, terminal_fraud_run_days=36_500)
    rows[1]["amount"] = 12
    columns = decode_batch(_batch(rows), max_rows=10).columns
    assert columns["amount"].tolist() == [999_999.999999, 12.0, 999_999.999999]
    assert not math.isnan(columns["terminal_fraud_run_days"][0])
