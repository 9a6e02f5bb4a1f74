"""What the contract columns of an uploaded table may hold, checked a whole column at a time.

Each check takes one Arrow column and returns its clean values (what
:func:`fraud_contract.features.compute_features` takes) and the bad cells, one mask per reason,
so that the same computation decides acceptance and names the first bad cells
(:mod:`service.tables`). The JSON batch path (:mod:`service.json_input`) reuses the timestamp
and identifier checks. The limits come from :mod:`fraud_contract.schema` only.

What a cell may hold (the contract for files; see docs/api.md, "File scoring"):

* Text cells: spaces and tabs around the value are ignored; an empty cell is a missing value.
* Numbers: ``[+-]digits[.digits][(e|E)[+-]digits]`` (also ``.5`` and ``5.``); ``inf``/``infinity``
  are "must be finite", anything else ("nan", "1,5", "0x10") "not a number". Parquet numeric
  columns (any integer, float or decimal type; a float NaN is missing) are taken as they are;
  booleans are not numbers.
* Timestamps: ``YYYY-MM-DD``, optionally ``(T| )HH:MM[:SS[.fraction]]`` (up to 9 fraction digits,
  kept to the microsecond) and an offset ``Z``/``+HH:MM``/``+HHMM`` that is dropped, not
  applied: the contract uses the wall-clock time as written. Parquet timestamp columns without
  a zone are wall-clock times; with a zone they are shown in that zone; date columns are
  midnight.
* Identifiers: 1-64 characters of the contract's class (``A-Z a-z 0-9 _ . : -``); integer
  Parquet columns are taken as their decimal text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraud_contract.schema import AGGREGATE_FIELDS, Transaction, is_whole_number, numeric_bounds

#: Identifier columns; ``transaction_id`` is optional (an empty cell is allowed).
ID_FIELDS: Final = ("customer_id", "terminal_id", "transaction_id")
#: Numeric columns, ``amount`` first (it is required; the aggregates are optional).
NUMERIC_FIELDS: Final = ("amount", *AGGREGATE_FIELDS)
#: Count columns that must hold whole numbers (every integer field of the contract).
COUNT_FIELDS: Final = tuple(name for name in AGGREGATE_FIELDS if is_whole_number(name))
BOUNDS: Final = {name: numeric_bounds(name) for name in NUMERIC_FIELDS}
#: Every column the contract checks (the others are carried through untouched).
CONTRACT_COLUMNS: Final = frozenset(("timestamp", *ID_FIELDS, *NUMERIC_FIELDS))

TIMESTAMP_REASON: Final = "missing or not an ISO 8601 date-time"
ID_REASON: Final = "missing or not an identifier (1-64 of A-Z a-z 0-9 _ . : -)"
_BLANKS: Final = " \t"
_NUMBER: Final = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INFINITE: Final = r"^[+-]?(inf|infinity)$"
_TIMESTAMP: Final = (
    r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?:Z|[+-](?P<offset_hours>\d{2}):?(?P<offset_minutes>\d{2}))?)?$"
)
#: The common timestamp shape, checked byte by byte: a digit wherever the template has 0.
_PLAIN_TEMPLATE: Final = "0000-00-00T00:00:00"
_PLAIN: Final = np.frombuffer(_PLAIN_TEMPLATE.encode(), dtype=np.uint8)
#: How far above the template byte each byte may be: 9 for a digit, 0 for a separator.
_PLAIN_SPAN: Final = np.array([9 if c == "0" else 0 for c in _PLAIN_TEMPLATE], dtype=np.uint8)
_DIGIT_WEIGHTS: Final = {  # (start, width) of each component in the plain shape
    "year": (0, 4),
    "month": (5, 2),
    "day": (8, 2),
    "hour": (11, 2),
    "minute": (14, 2),
    "second": (17, 2),
}
_PLACE_VALUES: Final = np.zeros((_PLAIN.size, len(_DIGIT_WEIGHTS)), dtype=np.int64)
for _i, (_first, _size) in enumerate(_DIGIT_WEIGHTS.values()):
    _PLACE_VALUES[_first : _first + _size, _i] = 10 ** np.arange(_size - 1, -1, -1)


def _identifier_constraint(name: str) -> Any:
    """A constraint of the contract's ``Identifier`` type (read on ``customer_id``)."""
    metadata = Transaction.model_fields["customer_id"].metadata
    return next((getattr(m, name) for m in metadata if getattr(m, name, None) is not None), None)


#: The identifier pattern the contract declares (``^[...]+$``).
ID_PATTERN: Final[str] = _identifier_constraint("pattern") or r".+"
#: The longest identifier the contract accepts.
ID_MAX_LENGTH: Final[int] = _identifier_constraint("max_length") or 64


def _identifier_byte_flags() -> bytes:
    """``bytes.translate`` table: 0 for a byte an identifier may hold, 1 for any other byte.

    The pattern must be one repeated character class (``^[...]+$``): a check of every byte
    against a set plus the length bounds is then exactly the pattern.
    """
    shape = re.fullmatch(r"\^(\[[^\]]+\])\+\$", ID_PATTERN)
    if shape is None:  # a contract change this module must follow: fail loudly at import
        raise RuntimeError(f"identifier pattern {ID_PATTERN!r} is not one character class")
    character_class = re.compile(shape.group(1))
    return bytes(
        0 if byte < 128 and character_class.fullmatch(chr(byte)) else 1 for byte in range(256)
    )


ID_BYTE_FLAGS: Final = _identifier_byte_flags()

Problems = list[tuple[np.ndarray, str]]


def text_array(values: Sequence[str]) -> pa.Array:
    """A string array from Python strings, built from buffers.

    ``pa.array(list)`` asks pyarrow's pandas shim whether the list is a pandas object, which
    imports pandas whenever it is installed; the serving path never needs it.
    """
    data = "".join(values).encode()
    if len(data) == sum(map(len, values)):  # ASCII: byte lengths are the string lengths
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    else:
        lengths = np.fromiter((len(v.encode()) for v in values), dtype=np.int64, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    kind = pa.large_string() if offsets[-1] >= 2**31 else pa.string()
    offsets = offsets if kind == pa.large_string() else offsets.astype(np.int32)
    return pa.Array.from_buffers(
        kind, len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def is_text(kind: pa.DataType) -> bool:
    """Whether ``kind`` is a string type (dictionaries are decoded before the checks)."""
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _trimmed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text without surrounding blanks; empty text becomes missing."""
    if any(_blank_edges(chunk) for chunk in column.chunks):
        column = pc.utf8_trim(column, _BLANKS)
    if column.null_count == len(column):
        return column
    empty = pc.equal(pc.binary_length(column), 0)
    return (
        pc.if_else(empty, pa.scalar(None, column.type), column) if pc.any(empty).as_py() else column
    )


def _blank_edges(chunk: pa.Array) -> bool:
    """Whether a cell of the chunk starts or ends with a space or tab (no copy of the text)."""
    data = chunk.buffers()[2]
    if not len(chunk) or data is None:
        return False
    offsets = _offsets(chunk)
    text = np.frombuffer(data, dtype=np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    edges = np.concatenate((text[starts[filled]], text[ends[filled] - 1]))
    return bool(((edges == 0x20) | (edges == 0x09)).any())


def _mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow column as numpy (missing = False)."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


# ---- identifiers ----------------------------------------------------------------------------


def identifiers_ok(column: pa.ChunkedArray) -> np.ndarray:
    """Per cell: present, 1-64 bytes, every byte in the contract's class."""
    if not is_text(column.type):
        return np.zeros(len(column), dtype=bool)
    return np.concatenate(
        [_chunk_identifiers_ok(chunk) for chunk in column.chunks] or [np.zeros(0, dtype=bool)]
    )


def _chunk_identifiers_ok(chunk: pa.Array) -> np.ndarray:
    if not len(chunk):
        return np.zeros(0, dtype=bool)
    offsets = _offsets(chunk)
    lengths = np.diff(offsets)
    ok = (lengths >= 1) & (lengths <= ID_MAX_LENGTH)
    if chunk.null_count:
        ok &= _mask(chunk.is_valid())
    if chunk.buffers()[2] is not None:
        data = bytes(memoryview(chunk.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
        flags = data.translate(ID_BYTE_FLAGS)
        if b"\x01" in flags:  # which cells: bad bytes counted per cell
            bad = np.concatenate(([0], np.cumsum(np.frombuffer(flags, dtype=np.uint8))))
            relative = offsets - offsets[0]
            ok &= bad[relative[1:]] == bad[relative[:-1]]
    return ok


def _offsets(chunk: pa.Array) -> np.ndarray:
    offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], dtype=offset_type)
    return offsets[chunk.offset : chunk.offset + len(chunk) + 1].astype(np.int64)


def _identifier_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An identifier column as the text the contract reads (integers as decimal, trimmed)."""
    if pa.types.is_integer(column.type):
        return pc.cast(column, pa.string())
    if is_text(column.type):
        return _trimmed(column)
    return column


def identifier_values(column: pa.ChunkedArray | None, rows: int) -> np.ndarray:
    """The identifiers of a checked column as Python text (None where empty or absent)."""
    if column is None:
        return np.full(rows, None, dtype=object)
    text = _identifier_text(column)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)


def check_identifiers(column: pa.ChunkedArray, *, required: bool) -> Problems:
    """The bad cells of an identifier column (a missing optional id is fine)."""
    column = _identifier_text(column)
    ok = identifiers_ok(column)
    if not required:
        ok |= _mask(pc.is_null(column))
    return [(~ok, ID_REASON)]


# ---- timestamps -----------------------------------------------------------------------------


def plain_timestamps(chunk: pa.Array) -> np.ndarray | None:
    """``datetime64[us]`` of a chunk whose every cell is ``YYYY-MM-DDTHH:MM:SS``, else ``None``.

    Digits are checked byte-wise here and the ranges (month, day of month, ...) by
    :func:`compose`: ``None`` only means "not this shape", never "valid".
    """
    width = _PLAIN.size
    if chunk.null_count or not is_text(chunk.type) or chunk.buffers()[2] is None:
        return None
    offsets = _offsets(chunk)
    if not (np.diff(offsets) == width).all():
        return None
    text = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    cells = text.reshape(-1, width)
    # uint8 arithmetic wraps below the template byte: one comparison checks a range.
    if not ((cells - _PLAIN) <= _PLAIN_SPAN).all():
        return None
    # One product gives every component: digit j of the cell times its place value.
    values = (cells - 48).astype(np.int64) @ _PLACE_VALUES
    parts = {name: values[:, i] for i, name in enumerate(_DIGIT_WEIGHTS)}
    parts["fraction"] = np.zeros(len(cells), dtype=np.int64)
    stamps, bad = compose(parts)
    return None if bad.any() else stamps


def compose(parts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(``datetime64[us]`` wall-clock times, mask of impossible dates) from components."""
    year, month, day = parts["year"], parts["month"], parts["day"]
    hour, minute, second = parts["hour"], parts["minute"], parts["second"]
    bad = (year < 1) | (month < 1) | (month > 12) | (day < 1)
    bad |= (hour > 23) | (minute > 59) | (second > 59)
    months = np.where(bad, 0, (year - 1970) * 12 + month - 1).astype("datetime64[M]")
    first = months.astype("datetime64[D]")
    days_in_month = ((months + 1).astype("datetime64[D]") - first).astype(np.int64)
    bad |= day > days_in_month
    seconds = ((hour * 60 + minute) * 60 + second).astype("timedelta64[s]")
    stamps = first + (day - 1).astype("timedelta64[D]") + seconds
    stamps = stamps.astype("datetime64[us]") + parts["fraction"].astype("timedelta64[us]")
    return np.where(bad, np.datetime64("NaT", "us"), stamps), bad


def _text_timestamps(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    plain = [plain_timestamps(chunk) for chunk in column.chunks]
    if all(stamps is not None for stamps in plain):
        values = np.concatenate(
            [s for s in plain if s is not None] or [np.array([], "datetime64[us]")]
        )
        return values, np.zeros(len(values), dtype=bool)
    column = _trimmed(column)
    found = pc.extract_regex(column, _TIMESTAMP)
    matched = _mask(pc.is_valid(found))
    parts: dict[str, np.ndarray] = {}
    for name in (
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "fraction",
        "offset_hours",
        "offset_minutes",
    ):
        text = pc.struct_field(found, name)
        if name == "fraction":  # digits after the point, to the microsecond
            text = pc.utf8_slice_codeunits(pc.utf8_rpad(text, 6, "0"), 0, 6)
        number = pc.cast(pc.if_else(pc.equal(text, ""), None, text), pa.int64())
        parts[name] = np.asarray(pc.fill_null(number, 0).to_numpy(zero_copy_only=False), np.int64)
    parts["year"] = np.where(matched, parts["year"], 1970)
    parts["month"] = np.where(matched, parts["month"], 1)
    parts["day"] = np.where(matched, parts["day"], 1)
    stamps, impossible = compose(parts)
    bad = ~matched | impossible | (parts["offset_hours"] > 23) | (parts["offset_minutes"] > 59)
    return np.where(bad, np.datetime64("NaT", "us"), stamps), bad


def check_timestamps(column: pa.ChunkedArray) -> tuple[np.ndarray, Problems]:
    """Wall-clock ``datetime64[us]`` and the bad cells of the timestamp column."""
    kind = column.type
    if is_text(kind):
        values, bad = _text_timestamps(column)
    elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            column = pc.local_timestamp(column)  # the wall clock in the column's zone
        stamps = pc.cast(column, pa.timestamp("us"))
        values = np.asarray(stamps.to_numpy(zero_copy_only=False), dtype="datetime64[us]")
        bad = np.isnat(values)
    else:
        values = np.full(len(column), np.datetime64("NaT", "us"))
        bad = np.ones(len(column), dtype=bool)
    return values, [(bad, TIMESTAMP_REASON)]


# ---- numbers --------------------------------------------------------------------------------


def _text_numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, not-a-number mask, present mask) of a text column."""
    try:  # one cast when every cell parses as it is (the common case)
        values = _floats(pc.cast(column, pa.float64()))
        present = _mask(pc.is_valid(column))
    except pa.ArrowInvalid:
        column = _trimmed(column)
        present = _mask(pc.is_valid(column))
        number = _mask(pc.match_substring_regex(column, _NUMBER))
        infinite = _mask(pc.match_substring_regex(column, _INFINITE, ignore_case=True))
        parsable = pa.array(number | infinite)
        values = _floats(pc.cast(pc.if_else(parsable, column, None), pa.float64()))
        return values, present & ~(number | infinite), present
    # Arrow's parser also takes "nan", "nan(...)": not numbers for the contract.
    return values, present & np.isnan(values), present


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def check_numbers(
    column: pa.ChunkedArray | None, name: str, rows: int
) -> tuple[np.ndarray, Problems]:
    """float64 values (NaN = missing) and the bad cells of a numeric column.

    An absent optional column is unknown everywhere (NaN).
    """
    if column is None:
        return np.full(rows, np.nan), []
    kind = column.type
    if is_text(kind):
        values, garbage, present = _text_numbers(column)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = _floats(
            column if kind == pa.float64() else pc.cast(column, pa.float64(), safe=False)
        )
        garbage = np.zeros(rows, dtype=bool)
        present = ~np.isnan(values)  # a stored NaN is a missing value
    elif pa.types.is_null(kind):
        values, garbage, present = np.full(rows, np.nan), np.zeros(rows, bool), np.zeros(rows, bool)
    else:  # booleans, dates, nested values: not numbers
        present = _mask(pc.is_valid(column))
        values, garbage = np.full(rows, np.nan), present
    values = np.where(garbage, np.nan, values)
    problems: Problems = [(garbage, "not a number")]
    if name == "amount":
        problems.append((~present, "required value missing"))
    lower, upper = BOUNDS[name]
    finite = np.isfinite(values)
    problems.append((np.isinf(values), "must be finite"))
    if lower is not None:
        problems.append((finite & (values < lower), f"must be >= {lower}"))
    if upper is not None:
        problems.append((finite & (values > upper), f"must be <= {upper}"))
    if name in COUNT_FIELDS:
        problems.append((finite & (np.mod(values, 1.0) != 0), "must be a whole number"))
    return values, problems
