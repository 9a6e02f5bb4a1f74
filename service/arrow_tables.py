"""File scoring's fast path: Arrow parsing, whole-column checks, Arrow writing.

The precise path (:mod:`service.tables`) converts and checks every cell with pandas so that it
can name each bad cell, and that was most of the time a valid file took. This path instead
proves a file valid with whole-column Arrow and numpy checks, and *declines* (``prepare``
returns ``None``) as soon as anything is not plainly valid: a bad cell, but also any form it
does not handle (a leading space, a time zone other than UTC, a multi-line cell, a stored
pandas index, ...). The precise path then runs as before and either scores the file or returns
the error it always returned. So this path must never accept a file the precise path rejects,
nor read a value differently; declining more often than needed only costs time.

One known difference, below the float32 resolution the model works at: Arrow parses decimal
text correctly rounded (as the JSON endpoints do); pandas' parser can be one bit off for
decimals with 17 or more significant digits.

What it writes back:

* CSV: every input line as sent (same bytes, quoting and line endings) with
  ``,<fraud_probability>,<is_fraud>,<risk_band>`` appended, the values formatted exactly as
  the precise path's pandas writer formats them (``repr`` floats, ``True``/``False``).
* Parquet: the input table (column types as sent) with the three columns appended.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from fraud_contract.api import SCORE_COLUMNS
from fraud_contract.schema import REQUIRED_FIELDS, numeric_bounds
from service.logs import LOGGER_NAME
from service.table_rules import (
    COUNT_FIELDS,
    ID_FIELDS,
    ID_MAX_LENGTH,
    NUMERIC_FIELDS,
    OFFSET_SUFFIX,
    identifier_bytes,
)

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(LOGGER_NAME)

_BOUNDS: Final = {name: numeric_bounds(name) for name in NUMERIC_FIELDS}
_MAX_BLOCK: Final = 2**30
_LF: Final = 0x0A
_CR: Final = 0x0D
#: The common timestamp shape, checked byte by byte: a digit wherever the template has 0.
_PLAIN_TEMPLATE: Final = "0000-00-00T00:00:00"
_PLAIN_TIMESTAMP: Final = np.frombuffer(_PLAIN_TEMPLATE.encode(), dtype=np.uint8)
#: How far above the template byte each byte may be: 9 for a digit, 0 for a separator.
_PLAIN_SPAN: Final = np.array([9 if c == "0" else 0 for c in _PLAIN_TEMPLATE], dtype=np.uint8)
#: Template and span repeated for a block of cells: flat comparisons over a block are 5x
#: faster than broadcasting a 19-byte row against the column (measured).
_PLAIN_BLOCK_CELLS: Final = 4096
_PLAIN_LOW_BLOCK: Final = np.tile(_PLAIN_TIMESTAMP, _PLAIN_BLOCK_CELLS)
_PLAIN_SPAN_BLOCK: Final = np.tile(_PLAIN_SPAN, _PLAIN_BLOCK_CELLS)
#: Every other timestamp shape this path takes (pandas' ISO 8601 parser takes more: those
#: files go to the precise path).
_WALL_CLOCK: Final = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"
_UTC_ZONES: Final = frozenset({"UTC", "Etc/UTC", "+00:00"})
#: What pyarrow writes for each column in pandas metadata (pandas reads every key).
_PANDAS_COLUMN_KEYS: Final = frozenset(
    {"name", "field_name", "pandas_type", "numpy_type", "metadata"}
)
#: numpy types in pandas metadata that pandas takes as they are. Any other (nullable
#: "Int64", "string", ...) makes pandas convert the column with that dtype, which may fail.
_PLAIN_NUMPY_TYPES: Final = frozenset(
    {"object", "bool", "float16", "float32", "float64"}
    | {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}
    | {f"datetime64[{unit}]" for unit in ("s", "ms", "us", "ns")}
)
_ID_BYTES: Final = identifier_bytes()
#: ``bytes.translate`` table: 0 for a byte an identifier may hold, 1 for any other byte
#: (translate + memchr is about twice as fast as a numpy lookup, measured).
_ID_BYTE_FLAGS: Final = (
    None if _ID_BYTES is None else bytes(0 if byte in _ID_BYTES else 1 for byte in range(256))
)
#: Python's float ``repr`` (what pandas writes) uses an exponent below 1e-4 and keeps ``.0``
#: on whole numbers; Arrow's shortest form does neither. Elsewhere the two are identical.
_REPR_EXPONENT_BELOW: Final = 1e-4


class _DeclinedError(Exception):
    """The fast path cannot vouch for the file; the precise path decides."""


@dataclass(frozen=True)
class Scores:
    """The columns added to a scored file."""

    probabilities: np.ndarray
    is_fraud: np.ndarray
    #: Index into ``band_names`` for each row.
    band_index: np.ndarray
    band_names: Sequence[str]


@dataclass(frozen=True)
class PreparedTable:
    """An upload the fast path accepted: the model's input columns and how to write it back."""

    columns: dict[str, np.ndarray]
    rows: int
    write: Callable[[Scores], bytes]


def prepare(content: bytes, table_format: str, *, max_rows: int) -> PreparedTable | None:
    """Parse and check an upload; ``None`` when the precise path must decide.

    Args:
        content: the uploaded bytes.
        table_format: ``"csv"`` or ``"parquet"``.
        max_rows: more rows than this is an error (left to the precise path to report).
    """
    import pyarrow as pa  # noqa: PLC0415  (kept off the serving import path)

    try:
        if table_format == "parquet":
            return _prepare_parquet(content, max_rows)
        return _prepare_csv(content, max_rows)
    except (_DeclinedError, pa.ArrowException, OSError, ValueError) as declined:
        # Arrow raises ArrowException (a cell that is not a number or a date-time, a CSV it
        # cannot parse), OSError (a corrupt Parquet file) or UnicodeDecodeError (a column
        # name that is not UTF-8): the precise path reports the error.
        logger.debug("file scoring: fast path declined: %s", " ".join(str(declined).split()))
        return None


# ---- CSV -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lines:
    """The upload's non-blank lines, as offsets into ``body``."""

    body: bytes
    #: ``ends[0]`` ends the header line, ``ends[i]`` data line ``i`` (terminator excluded).
    ends: np.ndarray
    terminator: bytes


def _prepare_csv(content: bytes, max_rows: int) -> PreparedTable:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.csv as pa_csv  # noqa: PLC0415

    lines = _split_lines(content)
    names = _header_names(lines.body[: int(lines.ends[0])])
    present = [name for name in ("timestamp", *ID_FIELDS, *NUMERIC_FIELDS) if name in names]
    types = {name: pa.string() for name in ("timestamp", *ID_FIELDS)}
    types.update({name: pa.float64() for name in NUMERIC_FIELDS})
    table = pa_csv.read_csv(
        pa.BufferReader(lines.body),
        # One core per worker: no reader threads. One block (the upload is in memory
        # anyway): one chunk per column, and measured faster than 1 MB blocks. The header
        # is ours (already parsed).
        read_options=pa_csv.ReadOptions(
            use_threads=False,
            block_size=min(len(lines.body) + 1, _MAX_BLOCK),
            column_names=names,
            skip_rows=1,
        ),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=types,
            include_columns=present,
            # As the precise path reads: only an empty cell is missing ("NaN" is not).
            null_values=[""],
            strings_can_be_null=True,
            check_utf8=False,  # the whole upload was checked (_split_lines)
        ),
    )
    rows = table.num_rows
    if rows != lines.ends.size - 1:
        raise _DeclinedError("a cell spans several lines")
    columns = _model_columns(table, max_rows, nan_is_missing=False)
    return PreparedTable(columns, rows, lambda scores: _write_csv(lines, scores))


def _split_lines(content: bytes) -> _Lines:
    """Find the line ends (LF or CRLF); blank lines are skipped, as both readers do."""
    body = content.removeprefix(codecs.BOM_UTF8)  # pandas drops a UTF-8 byte-order mark too
    if not body.isascii():
        try:  # pandas refuses a file that is not UTF-8 anywhere, unknown columns included
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _DeclinedError("not UTF-8") from exc
    data = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(data == _LF)
    if b"\r" not in body:  # memchr: much cheaper than counting
        terminator, ends = b"\n", newlines
    elif (
        body.count(b"\r") == newlines.size
        and newlines[0] > 0
        and bool((data[newlines - 1] == _CR).all())
    ):
        terminator, ends = b"\r\n", newlines - 1
    else:
        raise _DeclinedError("mixed or bare-CR line endings")
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((ends, [data.size]))
    non_blank = ends > starts
    if not non_blank[0]:
        raise _DeclinedError("blank first line")
    return _Lines(body, ends[non_blank], terminator)


def _header_names(header: bytes) -> list[str]:
    text = header.decode("utf-8")
    if '"' not in text:
        names = text.split(",")
    else:
        try:
            names = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            raise _DeclinedError("header is not one CSV line") from exc
        if any('"' in name for name in names):
            raise _DeclinedError("quote inside a column name")
    _check_names(names)
    return names


def _write_csv(lines: _Lines, scores: Scores) -> bytes:
    """Append the score cells to every data line, leaving the line itself untouched."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    body, ends = lines.body, lines.ends
    large = len(body) >= 2**31 - 1  # beyond int32 offsets (only with a raised upload limit)
    binary = pa.large_binary() if large else pa.binary()
    offset_type = np.int64 if large else np.int32
    # Value i runs from the end of line i-1 to the end of line i: the terminator (and any
    # blank lines) before line i, then line i. Zero-copy views of the upload.
    rows = pa.Array.from_buffers(
        binary,
        ends.size - 1,
        [None, pa.py_buffer(ends.astype(offset_type)), pa.py_buffer(body)],
    )
    bands = pa.array([_csv_field(name) for name in scores.band_names], type=binary)
    scored = pc.binary_join_element_wise(
        rows,
        _csv_probabilities(scores.probabilities).cast(binary),
        pc.if_else(pa.array(scores.is_fraud), b"True", b"False").cast(binary),
        bands.take(pa.array(scores.band_index)),
        b",",
    )
    _, offsets_buffer, data_buffer = scored.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)
    start, stop = int(offsets[scored.offset]), int(offsets[scored.offset + len(scored)])
    header = ",".join(_csv_field(name) for name in SCORE_COLUMNS).encode()
    return b"".join(
        (
            body[: int(ends[0])],
            b",",
            header,
            memoryview(data_buffer)[start:stop],
            lines.terminator,
        )
    )


def _csv_probabilities(probabilities: np.ndarray) -> pa.Array:
    """Probabilities as text, formatted as pandas writes a float64 column."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    text = pc.cast(pa.array(probabilities, type=pa.float64()), pa.string())
    differs = (probabilities < _REPR_EXPONENT_BELOW) | (probabilities == np.floor(probabilities))
    if differs.any():  # a few rows at most: format those with repr itself
        exact = pa.array([repr(value) for value in probabilities[differs].tolist()])
        text = pc.replace_with_mask(text, pa.array(differs), exact)
    return text


def _csv_field(value: str) -> str:
    """One CSV cell, quoted only when needed (as pandas' writer does)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([value])
    return buffer.getvalue()


# ---- Parquet -------------------------------------------------------------------------------


def _prepare_parquet(content: bytes, max_rows: int) -> PreparedTable:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    # ParquetFile.read, not read_table (what pandas calls): the dataset machinery costs
    # 0.7 ms more for a one-file upload (measured) and reads the same columns. Fully
    # validated: pandas refuses text that is not UTF-8 in any column, unknown ones included.
    parquet_file = pq.ParquetFile(pa.BufferReader(content))
    table = parquet_file.read(use_threads=False)
    table.validate(full=True)
    _check_names(table.column_names)
    for field in table.schema:
        # pandas may not convert nested or extension types; the precise path decides.
        if pa.types.is_nested(field.type) or isinstance(field.type, pa.ExtensionType):
            raise _DeclinedError(f"column {field.name!r} has type {field.type}")
    # pandas (read_table) reads the pandas metadata stored inside the Arrow schema; the
    # table here carries the copy in the file's key-value pairs. They must agree (they do
    # unless the file is damaged).
    arrow_schema = parquet_file.schema_arrow
    if (arrow_schema.metadata or {}).get(b"pandas") != (table.schema.metadata or {}).get(b"pandas"):
        raise _DeclinedError("two different pandas metadata")
    _check_pandas_metadata(table.schema)
    columns = _model_columns(table, max_rows, nan_is_missing=True)
    return PreparedTable(columns, table.num_rows, lambda scores: _write_parquet(table, scores))


def _check_pandas_metadata(schema: pa.Schema) -> None:
    """Pandas metadata must not change what pandas reads (names, index, time zones)."""
    raw = (schema.metadata or {}).get(b"pandas")
    if raw is None:
        return
    try:
        metadata = json.loads(raw)
        entries, index_columns = list(metadata["columns"]), list(metadata["index_columns"])
        column_levels = len(metadata.get("column_indexes", []))
    except (ValueError, TypeError, KeyError) as exc:
        raise _DeclinedError("unreadable pandas metadata") from exc
    if any(isinstance(index, str) for index in index_columns):
        raise _DeclinedError("stored pandas index (pandas drops it on the way back)")
    if column_levels > 1:
        raise _DeclinedError("multi-level column names")
    for entry in entries:
        if not isinstance(entry, dict) or not entry.keys() >= _PANDAS_COLUMN_KEYS:
            raise _DeclinedError("unreadable pandas metadata")
        if entry["numpy_type"] not in _PLAIN_NUMPY_TYPES:
            raise _DeclinedError(f"pandas converts to {entry['numpy_type']!r}")
        name = entry.get("field_name")
        if entry.get("name") != name or name not in schema.names:
            raise _DeclinedError(f"pandas names column {name!r} differently")
        if entry["pandas_type"] == "datetimetz":
            zone = (entry.get("metadata") or {}).get("timezone")
            if zone != getattr(schema.field(name).type, "tz", None):
                raise _DeclinedError(f"pandas converts {name!r} to time zone {zone}")


def _write_parquet(table: pa.Table, scores: Scores) -> bytes:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    bands = pa.array(list(scores.band_names), type=pa.string()).take(pa.array(scores.band_index))
    scored = (
        table.append_column(SCORE_COLUMNS[0], pa.array(scores.probabilities, type=pa.float64()))
        .append_column(SCORE_COLUMNS[1], pa.array(scores.is_fraud, type=pa.bool_()))
        .append_column(SCORE_COLUMNS[2], bands)
    )
    sink = pa.BufferOutputStream()
    fields = scored.schema
    pq.write_table(
        scored,
        sink,
        # Dictionaries only where values repeat by nature: counts, flags, categoricals and
        # the risk band. Hashing every id, timestamp and amount cost 1.5 of 8 ms for 20,000
        # rows (measured) for columns that are mostly distinct in real files.
        use_dictionary=[f.name for f in fields if _repeats(f) or f.name == SCORE_COLUMNS[2]],
        # Min/max of text columns is the costly part of the statistics (1 ms of 8 for
        # 20,000 rows, measured) and the least useful for filtering: numbers and flags only.
        write_statistics=[f.name for f in fields if not _is_text(f.type)],
    )
    return bytes(sink.getvalue().to_pybytes())


def _repeats(field: pa.Field) -> bool:
    import pyarrow as pa  # noqa: PLC0415

    kind = field.type
    return bool(
        pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_dictionary(kind)
    )


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa  # noqa: PLC0415

    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_dictionary(kind)
    )


# ---- checks shared by both formats ---------------------------------------------------------


def _check_names(names: Sequence[str]) -> None:
    """Column names both paths read the same way; the score columns must not exist yet."""
    if len(set(names)) != len(names):
        raise _DeclinedError("duplicate column names (pandas renames them)")
    if any(not name or name != name.strip() for name in names):
        raise _DeclinedError("blank or padded column name (pandas renames it)")
    if any(name in SCORE_COLUMNS for name in names):
        raise _DeclinedError("already scored (pandas overwrites the columns in place)")
    if any(name not in names for name in REQUIRED_FIELDS):
        raise _DeclinedError("required column missing")


def _model_columns(table: pa.Table, max_rows: int, *, nan_is_missing: bool) -> dict[str, Any]:
    """Check the contract columns; return them as :func:`compute_features` takes them.

    ``nan_is_missing``: a NaN float is a missing value (Parquet), not the text "NaN" (CSV).
    """
    rows = table.num_rows
    if rows == 0 or rows > max_rows:
        raise _DeclinedError(f"{rows} rows")
    present = dict(zip(table.column_names, table.columns, strict=True))  # names are unique
    for name in ID_FIELDS:
        if name in present:
            _check_identifiers(present[name], required=name != "transaction_id")
    columns: dict[str, Any] = {"timestamp": _timestamps(present["timestamp"])}
    for name in NUMERIC_FIELDS:
        columns[name] = (
            _numbers(present[name], name, nan_is_missing=nan_is_missing)
            if name in present
            else np.full(rows, np.nan)  # an absent optional aggregate is unknown
        )
    return columns


def _string_buffers(chunk: pa.Array) -> tuple[np.ndarray, memoryview]:
    """(offsets, bytes) of a non-empty string array chunk, without copying."""
    import pyarrow as pa  # noqa: PLC0415

    if pa.types.is_string(chunk.type):
        offset_type: type[np.signedinteger[Any]] = np.int32
    elif pa.types.is_large_string(chunk.type):
        offset_type = np.int64
    else:
        raise _DeclinedError(f"{chunk.type} column where text is expected")
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)
    offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
    data = memoryview(b"") if data_buffer is None else memoryview(data_buffer)
    return offsets, data


def _check_identifiers(column: pa.ChunkedArray, *, required: bool) -> None:
    """Every present identifier is 1-64 bytes of the contract's character class."""
    if _ID_BYTE_FLAGS is None:
        raise _DeclinedError("identifier pattern is not a character class")
    if required and column.null_count:
        raise _DeclinedError("identifier missing")
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        offsets, data = _string_buffers(chunk)
        lengths = np.diff(offsets)
        if chunk.null_count:
            lengths = lengths[chunk.is_valid().to_numpy(zero_copy_only=False)]
        if lengths.size and (lengths.min() < 1 or lengths.max() > ID_MAX_LENGTH):
            raise _DeclinedError("identifier length")
        text = bytes(data[offsets[0] : offsets[-1]])
        if b"\x01" in text.translate(_ID_BYTE_FLAGS):
            raise _DeclinedError("identifier character")


def _timestamps(column: pa.ChunkedArray) -> np.ndarray:
    """Wall-clock ``datetime64[us]``, read as the precise path reads it."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    if column.null_count:
        raise _DeclinedError("timestamp missing")
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is not None and kind.tz not in _UTC_ZONES:
            raise _DeclinedError(f"time zone {kind.tz}")
        stamps = column
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if not _all_plain_timestamps(column):
            if not pc.all(pc.match_substring_regex(column, _WALL_CLOCK)).as_py():
                raise _DeclinedError("timestamp shape")
            column = pc.replace_substring_regex(column, OFFSET_SUFFIX, "")
        stamps = column
    else:
        raise _DeclinedError(f"{kind} timestamps")
    # Via nanoseconds: pandas parses to datetime64[ns], so its range is the one accepted
    # (out of it the cast fails: declined); then truncated to microseconds as pandas does.
    nanoseconds = np.asarray(pc.cast(stamps, pa.timestamp("ns")).to_numpy(), "datetime64[ns]")
    return nanoseconds.astype("datetime64[us]")


def _all_plain_timestamps(column: pa.ChunkedArray) -> bool:
    """Whether every cell is ``YYYY-MM-DDTHH:MM:SS`` (digits checked byte-wise, not ranges)."""
    width = _PLAIN_TIMESTAMP.size
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        offsets, data = _string_buffers(chunk)
        if not (np.diff(offsets) == width).all():
            return False
        text = np.frombuffer(data[offsets[0] : offsets[-1]], dtype=np.uint8)
        for start in range(0, text.size, _PLAIN_LOW_BLOCK.size):
            block = text[start : start + _PLAIN_LOW_BLOCK.size]
            # uint8 arithmetic wraps below the template byte: one comparison checks a range.
            low, span = _PLAIN_LOW_BLOCK[: block.size], _PLAIN_SPAN_BLOCK[: block.size]
            if not ((block - low) <= span).all():
                return False
    return True


def _numbers(column: pa.ChunkedArray, name: str, *, nan_is_missing: bool) -> np.ndarray:
    """float64 values (NaN = missing) within the contract's bounds."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    kind = column.type
    if pa.types.is_null(kind):
        values = np.full(len(column), np.nan)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        # A safe cast: an integer float64 cannot hold exactly fails (declined).
        exact = column if kind == pa.float64() else pc.cast(column, pa.float64())
        values = np.asarray(exact.to_numpy(), dtype=np.float64)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = np.asarray(pc.cast(column, pa.float64()).to_numpy(), dtype=np.float64)
        nan_is_missing = False
    else:
        raise _DeclinedError(f"{kind} column {name}")
    missing = np.isnan(values)
    missing_count = int(np.count_nonzero(missing))
    if not nan_is_missing and missing_count != column.null_count:
        raise _DeclinedError(f"NaN written in {name}")  # "not a number" to the precise path
    if missing_count and name == "amount":
        raise _DeclinedError("amount missing")
    if missing_count == values.size:
        return values
    present = values[~missing] if missing_count else values
    low, high = float(present.min()), float(present.max())
    lower, upper = _BOUNDS[name]
    if np.isinf(low) or np.isinf(high):
        raise _DeclinedError(f"infinite {name}")
    if (lower is not None and low < lower) or (upper is not None and high > upper):
        raise _DeclinedError(f"{name} out of bounds")
    if name in COUNT_FIELDS and bool((np.floor(present) != present).any()):
        raise _DeclinedError(f"fractional {name}")
    return values
