"""Label files (CSV or Parquet) -> labels, with 4xx errors naming the row and column.

Columns: ``transaction_id``, ``label`` (fraud/genuine), ``reported_at`` (ISO 8601), ``source``;
no other column is accepted. Row numbers in errors count data rows from 1 (the CSV header is
not a row). Size and row count are bounded before anything is parsed or stored.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from service.errors import InvalidInput, MalformedBody, TooLarge, UnsupportedMedia
from service.ledger.labels import LabelIn
from service.ledger.model import Label

LABEL_COLUMNS: tuple[str, ...] = ("transaction_id", "label", "reported_at", "source")
CSV_TYPES = frozenset({"text/csv", "application/csv"})
PARQUET_TYPES = frozenset({"application/vnd.apache.parquet", "application/x-parquet"})
_PARQUET_MAGIC = b"PAR1"
_MAX_ERRORS = 50


def _check_columns(columns: list[str]) -> None:
    unknown = [c for c in columns if c not in LABEL_COLUMNS]
    missing = [c for c in LABEL_COLUMNS if c not in columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    errors = [{"field": f"column {c!r}", "reason": "unknown column"} for c in unknown]
    errors += [{"field": f"column {c!r}", "reason": "missing column"} for c in missing]
    errors += [{"field": f"column {c!r}", "reason": "repeated column"} for c in repeated]
    if errors:
        raise InvalidInput(
            f"The label file's columns must be exactly {', '.join(LABEL_COLUMNS)}.",
            errors,
            reason="columns",
        )


def _validate_rows(records: list[dict[str, Any]]) -> list[Label]:
    labels: list[Label] = []
    errors: list[dict[str, str]] = []
    for number, record in enumerate(records, start=1):
        try:
            labels.append(LabelIn.model_validate(record).to_label())
        except ValidationError as exc:
            for item in exc.errors(include_url=False, include_input=False):
                column = ".".join(str(p) for p in item["loc"]) or "row"
                errors.append({"field": f"row {number}, column {column}", "reason": item["msg"]})
        if len(errors) >= _MAX_ERRORS:
            break
    if errors:
        raise InvalidInput(
            f"The label file has invalid rows (first {len(errors)} problems in 'errors'); "
            "nothing was stored.",
            errors[:_MAX_ERRORS],
        )
    return labels


def _too_many(max_rows: int) -> TooLarge:
    error = TooLarge(max_rows, "file")
    error.message = f"The label file has more than {max_rows} rows."
    error.errors = [{"field": "file", "reason": f"more than {max_rows} rows"}]
    return error


def parse_csv(data: bytes, *, max_rows: int) -> list[Label]:
    """Parse a UTF-8 CSV label file with a header row."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedBody(
            f"The label file is not UTF-8 (byte {exc.start}).",
            [{"field": "file", "reason": f"invalid UTF-8 at byte {exc.start}"}],
            code="malformed_csv",
            reason="malformed_csv",
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[dict[str, Any]] = []
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidInput(
                "The label file is empty.", [{"field": "file", "reason": "no header row"}]
            )
        header = [h.strip() for h in header]
        _check_columns(header)
        for row in reader:
            if not row:
                continue
            number = len(records) + 1
            if len(records) >= max_rows:
                raise _too_many(max_rows)
            if len(row) != len(header):
                raise InvalidInput(
                    f"Row {number} has {len(row)} fields, the header has {len(header)}.",
                    [{"field": f"row {number}", "reason": f"{len(row)} fields, expected 4"}],
                    reason="malformed_csv",
                )
            records.append(dict(zip(header, row, strict=True)))
    except csv.Error as exc:
        raise MalformedBody(
            f"The label file is not valid CSV near line {reader.line_num}: {exc}.",
            [{"field": f"line {reader.line_num}", "reason": str(exc)}],
            code="malformed_csv",
            reason="malformed_csv",
        ) from exc
    return _validate_rows(records)


def parse_parquet(data: bytes, *, max_rows: int) -> list[Label]:
    """Parse a Parquet label file (string or timestamp ``reported_at``)."""
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise MalformedBody(
            "The label file is not a readable Parquet file.",
            [{"field": "file", "reason": str(exc)[:200]}],
            code="malformed_parquet",
            reason="malformed_parquet",
        ) from exc
    _check_columns(list(parquet.schema_arrow.names))
    if parquet.metadata.num_rows > max_rows:
        raise _too_many(max_rows)
    table = parquet.read()
    return _validate_rows(table.to_pylist())


def parse_label_file(
    data: bytes, content_type: str, *, max_rows: int, max_bytes: int
) -> list[Label]:
    """Labels from an uploaded file; the type comes from ``content_type`` (or Parquet magic)."""
    if len(data) > max_bytes:
        raise TooLarge(max_bytes, "file")
    media = content_type.split(";", 1)[0].strip().lower()
    if media in PARQUET_TYPES or data[:4] == _PARQUET_MAGIC:
        return parse_parquet(data, max_rows=max_rows)
    if media in CSV_TYPES or media in {"", "application/octet-stream", "text/plain"}:
        return parse_csv(data, max_rows=max_rows)
    raise UnsupportedMedia(
        "A label file must be CSV (text/csv) or Parquet (application/vnd.apache.parquet).",
        media,
    )
