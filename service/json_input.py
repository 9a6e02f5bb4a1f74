"""Strict JSON request bodies: one transaction, or a batch decoded straight into columns.

The contract (:class:`fraud_contract.schema.Transaction`, pydantic) defines what is valid
and every error message. A batch takes a column path first: orjson, then whole-column
checks with numpy against the contract's own bounds, types and identifier rule
(:mod:`service.table_rules`), features from the columns. That path only *accepts*; the
moment a batch is not plainly valid (a bad value, a padded identifier, a timestamp in
another ISO 8601 form, an escape sequence, ...) it steps aside and pydantic validates the
body as always, so errors are pydantic's, field paths and all (``transactions.3.amount``).

Strict JSON everywhere: a key repeated in one object is a 400 naming it (JSON parsers
otherwise keep the last value silently); no string or boolean is taken for a number (see the
schema). Everything here is synchronous and keeps no state between calls: callers may run
it in worker threads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
from pydantic import ValidationError

from fraud_contract.api import MAX_BATCH_TRANSACTIONS, BatchRequest
from fraud_contract.features import columns_from_records
from fraud_contract.schema import REQUIRED_FIELDS, TRANSACTION_FIELDS, Transaction
from service.errors import ApiError, from_validation_error
from service.table_rules import (
    BOUNDS,
    COUNT_FIELDS,
    NUMERIC_FIELDS,
    identifiers_ok,
    plain_timestamps,
    text_array,
)

_FIELDS: Final = frozenset(TRANSACTION_FIELDS)
_OPTIONAL_NUMBER_TYPES: Final = frozenset({int, float, type(None)})
_COUNTS: Final = frozenset(COUNT_FIELDS)
_LOWER: Final = {name: -np.inf if low is None else low for name, (low, _) in BOUNDS.items()}
_UPPER: Final = {name: np.inf if high is None else high for name, (_, high) in BOUNDS.items()}
_STR: Final = frozenset({str})
_COLON: Final = ord(":")
_QUOTE: Final = ord('"')
_SPACE: Final = ord(" ")
#: What may follow a ':' where a boolean could be: its first letter, or more blanks.
_MAYBE_BOOLEAN: Final = np.frombuffer(b"tf \t\r\n", dtype=np.uint8)


@dataclass(frozen=True)
class TransactionColumns:
    """A validated batch as columns: what :func:`compute_features` takes, and the ids."""

    #: ``timestamp`` (``datetime64[us]``) and every numeric field (float64, NaN = missing).
    columns: dict[str, np.ndarray]
    #: Each transaction's ``transaction_id`` (``None`` when it has none), in order.
    transaction_ids: list[str | None]

    def __len__(self) -> int:
        return len(self.transaction_ids)


def decode_transaction(body: bytes) -> Transaction:
    """One transaction from a JSON body.

    Raises:
        ApiError: 400 for a body that is not JSON or repeats a key, 422 naming every field
            that breaks the contract.
    """
    _reject_repeated_keys(body, _flat_object_members(body))
    try:
        return Transaction.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def decode_batch(body: bytes, *, max_rows: int = MAX_BATCH_TRANSACTIONS) -> TransactionColumns:
    """A ``{"transactions": [...]}`` body (1 to ``max_rows`` transactions) as columns.

    Raises:
        ApiError: as :func:`decode_transactions`.
    """
    columns = _columns_if_plainly_valid(body, max_rows)
    if columns is not None:
        return columns
    rows = decode_transactions(body, max_rows=max_rows)
    return TransactionColumns(columns_from_records(rows), [t.transaction_id for t in rows])


def decode_transactions(
    body: bytes, *, max_rows: int = MAX_BATCH_TRANSACTIONS
) -> list[Transaction]:
    """A ``{"transactions": [...]}`` body as validated transactions (for callers that need the
    card and terminal ids, which the column form does not keep).

    Raises:
        ApiError: as :func:`decode_transaction`, field paths prefixed by
            ``transactions.<index>``; 422 for an empty list or more than ``max_rows``.
    """
    _reject_repeated_keys(body, None)
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    rows = batch.transactions
    if len(rows) > max_rows:  # only when max_rows is below the contract's own limit
        raise ApiError(
            422,
            "invalid_input",
            "The request has 1 problem; see 'errors'.",
            [
                {
                    "field": "transactions",
                    "reason": f"List should have at most {max_rows} items after validation, "
                    f"not {len(rows)}",
                }
            ],
            reason="batch_size",
        )
    return list(rows)


# ---- the column path ------------------------------------------------------------------------


class _NotPlainError(Exception):
    """The batch is not plainly valid: pydantic decides (and names the problem)."""


def _require(condition: bool) -> None:
    if not condition:
        raise _NotPlainError


def _columns_if_plainly_valid(body: bytes, max_rows: int) -> TransactionColumns | None:
    """The batch as columns when every check passes at once; ``None`` otherwise."""
    try:
        return _plain_columns(body, max_rows)
    except (_NotPlainError, orjson.JSONDecodeError, OverflowError, TypeError, ValueError):
        return None  # TypeError/ValueError: a row or value of another shape than the contract's


def _plain_columns(body: bytes, max_rows: int) -> TransactionColumns:
    _require(b"\\" not in body)  # escapes: the counts below compare raw and decoded text
    document = orjson.loads(body)
    _require(type(document) is dict and len(document) == 1)
    rows = document.get("transactions")
    _require(type(rows) is list and 1 <= len(rows) <= min(max_rows, MAX_BATCH_TRANSACTIONS))
    raw = _transpose(rows)
    _require(_FIELDS.issuperset(raw) and all(name in raw for name in REQUIRED_FIELDS))
    n_rows = len(rows)
    stamps = plain_timestamps(_text(raw["timestamp"]))
    _require(stamps is not None)
    columns: dict[str, Any] = {"timestamp": stamps}
    texts: list[str] = list(raw["timestamp"])
    for name in ("customer_id", "terminal_id", "transaction_id"):
        if name in raw:
            values = raw[name]
            if name == "transaction_id" and None in values:  # an absent id is fine
                values = [value for value in values if value is not None]
            _require(bool(identifiers_ok(pa.chunked_array([_text(values)])).all()))
            texts.extend(values)
    # Every key once, and no string or boolean among the numbers: counted on the raw body.
    # A repeated key leaves one ':' more than the members kept; a string among the numbers
    # two '"' more than the keys and the text values above.
    members = 1 + sum(map(len, rows))
    raw_bytes = np.frombuffer(body, dtype=np.uint8)
    colons = np.flatnonzero(raw_bytes == _COLON)
    _require(colons.size == members + "".join(texts).count(":"))
    _require(np.count_nonzero(raw_bytes == _QUOTE) == 2 * (members + len(texts)))
    numeric = [name for name in NUMERIC_FIELDS if name in raw]
    if _may_hold_booleans(raw_bytes, colons):  # then check the types themselves
        _require(all(set(map(type, raw[name])) <= _OPTIONAL_NUMBER_TYPES for name in numeric))
    numbers = np.array([raw[name] for name in numeric], dtype=np.float64)  # None -> NaN
    _check_numbers(numbers, numeric)
    for name in NUMERIC_FIELDS:
        columns[name] = numbers[numeric.index(name)] if name in raw else np.full(n_rows, np.nan)
    transaction_ids = list(raw.get("transaction_id") or [None] * n_rows)
    return TransactionColumns(columns, transaction_ids)


def _may_hold_booleans(raw_bytes: np.ndarray, colons: np.ndarray) -> bool:
    """Whether some member value may be ``true``/``false``: a ``t``/``f`` after a ``:``.

    A colon inside a string can only make this say "maybe" (the types are then checked one
    by one); a value after more than one blank too.
    """
    last = raw_bytes.size - 1
    after = raw_bytes[np.minimum(colons + 1, last)]
    blank = after == _SPACE
    after[blank] = raw_bytes[np.minimum(colons[blank] + 2, last)]
    return bool(np.isin(after, _MAYBE_BOOLEAN).any())


def _check_numbers(values: np.ndarray, names: list[str]) -> None:
    """Bounds, finiteness and whole counts, one row of ``values`` per field in ``names``."""
    missing = np.isnan(values)
    _require(not missing[names.index("amount")].any())
    lower = np.array([_LOWER[name] for name in names])[:, None]
    upper = np.array([_UPPER[name] for name in names])[:, None]
    with np.errstate(invalid="ignore"):
        _require(not ((values < lower) | (values > upper) | np.isinf(values)).any())
        counts = [i for i, name in enumerate(names) if name in _COUNTS]
        if counts:
            whole = values[counts]
            _require(bool((np.mod(whole, 1.0) == 0)[~np.isnan(whole)].all()))


def _transpose(rows: list[dict[str, Any]]) -> dict[str, Sequence[Any]]:
    """Field name -> values of the rows that have it (absent optional fields: ``None``)."""
    keys = list(map(tuple, rows))
    first = keys[0]
    if keys.count(first) == len(keys):  # the usual case: one producer, one key order
        return dict(zip(first, zip(*map(dict.values, rows), strict=True), strict=True))
    present: set[str] = set().union(*rows)
    return {name: [row.get(name) for row in rows] for name in present}


def _text(values: Sequence[Any]) -> pa.Array:
    _require(set(map(type, values)) <= _STR)
    return text_array(values)


# ---- repeated keys --------------------------------------------------------------------------


def _flat_object_members(body: bytes) -> bool:
    """Whether ``body`` is one flat object whose every key is there once (cheap check).

    Without escapes, every '"' of the body opens or closes a key or a string value: a key
    given twice leaves two more than the decoded object has.
    """
    if b"\\" in body:
        return False
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if type(document) is not dict:
        return False
    kinds = list(map(type, document.values()))
    if dict in kinds or list in kinds:
        return False
    return body.count(b'"') == 2 * (len(document) + kinds.count(str))


def _reject_repeated_keys(body: bytes, known_unique: bool | None) -> None:
    """400 naming the first key that appears twice in one object."""
    if known_unique:
        return
    try:
        document = json.loads(body, object_pairs_hook=_Pairs.build)
    except (ValueError, RecursionError):
        return  # not JSON (pydantic names the problem)
    found = _first_repeated(document)
    if found is not None:
        path, key = found
        raise ApiError(
            400,
            "duplicate_key",
            f"The request body gives the key {key!r} more than once.",
            [{"field": path, "reason": f"duplicate key {key!r}"}],
            reason="duplicate_key",
        )


class _Pairs(dict[str, Any]):
    """A decoded object that remembers its first repeated key."""

    repeated: str | None = None

    @classmethod
    def build(cls, pairs: list[tuple[str, Any]]) -> _Pairs:
        obj = cls(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            obj.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return obj


def _first_repeated(document: Any) -> tuple[str, str] | None:
    """(dotted path of the key, key) of the first repeated key, depth first; else ``None``."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Pairs):
            if node.repeated is not None:
                return f"{path}{node.repeated}", node.repeated
            children = [(value, f"{path}{key}.") for key, value in node.items()]
        elif isinstance(node, list):
            children = [(value, f"{path}{i}.") for i, value in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    return None
