"""The fast path of a JSON batch: a plainly valid body straight into columns.

msgspec decodes the body into typed rows generated from the contract's field lists (it
enforces in C what needs no numpy: an object of known keys, the required fields, a string
where the contract has text and a JSON number, never a string or boolean, where it has a
number); numpy and Arrow then check whole columns against the contract's own bounds and rules
(:mod:`service.table_rules`). This path only *accepts*: the moment a batch is not plainly valid
(a bad value, a padded identifier, a timestamp in another ISO 8601 form, an escape sequence,
a key given twice, ...) it answers ``None`` and the caller lets pydantic decide, so every error
is pydantic's, field paths and all.

Synchronous and stateless: safe in worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Final

import msgspec
import numpy as np

from fraud_contract.api import MAX_BATCH_TRANSACTIONS
from fraud_contract.schema import REQUIRED_FIELDS, TRANSACTION_FIELDS
from service.table_rules import (
    BOUNDS,
    COUNT_FIELDS,
    ID_BYTE_FLAGS,
    ID_FIELDS,
    ID_MAX_LENGTH,
    NUMERIC_FIELDS,
    plain_timestamps,
    text_array,
)

_TEXT_FIELDS: Final = ("timestamp", *ID_FIELDS)
_OPTIONAL_TEXT: Final = [name for name in _TEXT_FIELDS if name not in REQUIRED_FIELDS]
_REQUIRED_TEXT_COUNT: Final = len([name for name in _TEXT_FIELDS if name in REQUIRED_FIELDS])
_COLON: Final = ord(":")
#: What an absent optional field decodes to (see :func:`_row_type`).
_ABSENT_NUMBER: Final = -np.inf
_ABSENT_TEXT: Final = ""


@dataclass(frozen=True)
class TransactionColumns:
    """A validated batch as columns: what :func:`compute_features` takes, and the ids."""

    #: ``timestamp`` (``datetime64[us]``) and every numeric field (float64, NaN = missing).
    columns: dict[str, np.ndarray]
    #: Each transaction's ``transaction_id`` (``None`` when it has none), in order.
    transaction_ids: list[str | None]

    def __len__(self) -> int:
        return len(self.transaction_ids)


def _number_type(name: str) -> Any:
    """``float`` within the contract's bounds (whole for a count), checked by msgspec."""
    low, high = BOUNDS[name]
    whole = 1 if name in COUNT_FIELDS else None  # 3.0 is a count, 3.5 is not
    return Annotated[float, msgspec.Meta(ge=low, le=high, multiple_of=whole)]


def _row_type() -> Any:
    """A msgspec row with the contract's fields: text as ``str``, numbers as bounded floats.

    JSON has no infinity or NaN (msgspec refuses ``1e999``), so a decoded number is finite. An
    absent optional field decodes to a value no JSON document can give (``-inf``, or ``""``
    for an id, which the contract refuses), an explicit ``null`` to ``None``: the key check
    tells them apart.
    """
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name in TRANSACTION_FIELDS:
        kind: Any = str if name in _TEXT_FIELDS else _number_type(name)
        if name in REQUIRED_FIELDS:
            fields.append((name, kind))
        else:
            fields.append((name, kind | None, _ABSENT_TEXT if kind is str else _ABSENT_NUMBER))
    unknown = set(TRANSACTION_FIELDS) - set(_TEXT_FIELDS) - set(NUMERIC_FIELDS)
    if unknown:  # a field this path does not know how to check: never take it
        raise RuntimeError(f"contract fields without a column check: {sorted(unknown)}")
    return msgspec.defstruct(
        "PlainTransaction", fields, kw_only=True, forbid_unknown_fields=True, gc=False
    )


_ROW: Final[Any] = _row_type()
_BATCH: Final[Any] = msgspec.defstruct(
    "PlainBatch", [("transactions", list[_ROW])], forbid_unknown_fields=True
)
_DECODER: Final[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(_BATCH)
_NUMBERS_OF: Final = attrgetter(*NUMERIC_FIELDS)
_TEXTS_OF: Final = attrgetter(*_TEXT_FIELDS)


class _NotPlainError(Exception):
    """The batch is not plainly valid: pydantic decides (and names the problem)."""


def _require(condition: bool) -> None:
    if not condition:
        raise _NotPlainError


def plain_columns(body: bytes, max_rows: int) -> TransactionColumns | None:
    """The batch as columns when every check passes at once; ``None`` otherwise."""
    try:
        return _columns(body, max_rows)
    except (_NotPlainError, msgspec.DecodeError, OverflowError, ValueError):
        return None


def _columns(body: bytes, max_rows: int) -> TransactionColumns:
    # No escapes: the key count below compares raw text with decoded text.
    _require(b"\\" not in body)
    rows = _DECODER.decode(body).transactions
    n_rows = len(rows)
    _require(1 <= n_rows <= min(max_rows, MAX_BATCH_TRANSACTIONS))
    texts = dict(zip(_TEXT_FIELDS, zip(*map(_TEXTS_OF, rows), strict=True), strict=True))
    stamps = plain_timestamps(text_array(texts["timestamp"]))
    if stamps is None:
        raise _NotPlainError
    # Members of the body: "transactions", the required text fields of every row, and below
    # the optional ids and every number given.
    given = 1 + _REQUIRED_TEXT_COUNT * n_rows
    given_texts = [texts["timestamp"]]
    ids: list[Any] = list(texts["transaction_id"])
    for name in ID_FIELDS:
        values = texts[name]
        if name in _OPTIONAL_TEXT:
            absent = values.count(_ABSENT_TEXT)
            given += n_rows - absent
            if absent:
                ids = [None if value == _ABSENT_TEXT else value for value in values]
            values = tuple(value for value in ids if value is not None)
        given_texts.append(values)
    _require(_identifiers(given_texts[1:]))
    numbers = _numbers(rows)
    absent_numbers = numbers == _ABSENT_NUMBER
    given += numbers.size - int(np.count_nonzero(absent_numbers))
    numbers[absent_numbers] = np.nan
    _check_each_key_once(body, given, given_texts)
    columns: dict[str, np.ndarray] = {"timestamp": stamps}
    columns.update(zip(NUMERIC_FIELDS, numbers, strict=True))
    return TransactionColumns(columns, ids)


def _identifiers(columns: list[Any]) -> bool:
    """Whether every value is an identifier: 1 to the contract's length, bytes of its class."""
    values = [value for column in columns for value in column]
    lengths = set(map(len, values))
    if min(lengths) < 1 or max(lengths) > ID_MAX_LENGTH:
        return False
    # Non-ASCII text encodes to bytes >= 0x80, which the class never holds.
    return b"\x01" not in "".join(values).encode().translate(ID_BYTE_FLAGS)


def _numbers(rows: list[Any]) -> np.ndarray:
    """The numeric fields as float64, one row per field (``null`` as NaN)."""
    try:  # the usual body has no null: one pass over a flat iterator
        flat = np.fromiter(
            chain.from_iterable(map(_NUMBERS_OF, rows)),
            dtype=np.float64,
            count=len(rows) * len(NUMERIC_FIELDS),
        )
        return flat.reshape(len(rows), len(NUMERIC_FIELDS)).T.copy()
    except TypeError:  # a None: numpy's array conversion takes it as NaN
        return np.array(list(map(_NUMBERS_OF, rows)), dtype=np.float64).T.copy()


def _check_each_key_once(body: bytes, given: int, texts: list[Any]) -> None:
    """Every key of the body once: a repeated key leaves one ':' more than the keys kept.

    Without escapes, the ``':'`` of the body are one per member given (``"transactions"`` and
    every field with a value, ``null`` included) plus those inside text values (no key the
    decoder accepts contains one). A member that decoded to an "absent" marker (which no
    valid value is) is not counted, so it fails the check too.
    """
    in_texts = sum("".join(values).count(":") for values in texts)
    colons = int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == _COLON))
    _require(colons == given + in_texts)
