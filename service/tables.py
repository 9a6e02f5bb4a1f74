"""File scoring: parse a CSV/Parquet upload, validate it column-wise, add the score columns.

Validation is vectorised over whole columns with the bounds declared in the contract
(:func:`fraud_contract.schema.numeric_bounds`); the first bad cells are reported by row.
Columns the contract does not know are kept in the output untouched (back-office files
carry labels, notes, ...) and ignored for scoring.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from fraud_contract.api import CSV_MEDIA_TYPE, PARQUET_MEDIA_TYPE
from fraud_contract.features import columns_from_frame, compute_features
from fraud_contract.schema import (
    AGGREGATE_FIELDS,
    REQUIRED_FIELDS,
    Transaction,
    is_whole_number,
    numeric_bounds,
)
from service.errors import ApiError

if TYPE_CHECKING:
    import pandas as pd

    from service.scoring import Scorer

TableFormat = Literal["csv", "parquet"]
_MAX_REPORTED = 20
_PARQUET_MAGIC = b"PAR1"
_ID_FIELDS = ("customer_id", "terminal_id", "transaction_id")
_COUNT_FIELDS = tuple(name for name in AGGREGATE_FIELDS if is_whole_number(name))


@dataclass(frozen=True)
class ScoredTable:
    """The scored file, ready to send."""

    content: bytes
    media_type: str
    rows: int
    probabilities: np.ndarray
    is_fraud: np.ndarray


def detect_format(filename: str | None, content_type: str | None, head: bytes) -> TableFormat:
    """Parquet by magic bytes, extension or media type; CSV otherwise."""
    name = (filename or "").lower()
    if head.startswith(_PARQUET_MAGIC) or name.endswith((".parquet", ".pq")):
        return "parquet"
    if content_type and "parquet" in content_type:
        return "parquet"
    return "csv"


def read_table(content: bytes, table_format: TableFormat) -> pd.DataFrame:
    """Parse the upload; unparseable content is a 400 naming the format."""
    import pandas as pd  # noqa: PLC0415

    if not content:
        raise ApiError(
            400,
            "empty_file",
            "The uploaded file is empty.",
            [{"field": "file", "reason": "no bytes received"}],
            reason="empty_file",
        )
    try:
        if table_format == "parquet":
            return pd.read_parquet(io.BytesIO(content))
        return pd.read_csv(
            io.BytesIO(content),
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skipinitialspace=True,
        )
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ApiError(
            400,
            "unreadable_file",
            f"The file is not a readable {table_format} file.",
            [{"field": "file", "reason": reason}],
            reason="unreadable_file",
        ) from exc


def _numeric(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64 with NaN for empty, mask of cells that are not numbers)."""
    import pandas as pd  # noqa: PLC0415

    raw = frame[name]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    garbage = np.isnan(values) & raw.notna().to_numpy()
    return values, garbage


def _timestamps(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(wall-clock datetime64[us], mask of unparseable cells)."""
    import pandas as pd  # noqa: PLC0415

    raw = frame["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        text = raw.astype("string")
        # The contract uses the wall-clock time as written: drop any offset before parsing.
        text = text.str.replace(r"(Z|[+-]\d{2}:?\d{2})$", "", regex=True)
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    values = parsed.to_numpy(dtype="datetime64[us]")
    return values, np.isnat(values)


class _Problems:
    """Collects the first bad cells, row by row."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.count = 0

    def add(self, mask: np.ndarray, column: str, reason: str) -> None:
        rows = np.flatnonzero(mask)
        self.count += int(rows.size)
        for row in rows[: max(0, _MAX_REPORTED - len(self.items))]:
            self.items.append({"field": f"rows.{int(row)}.{column}", "reason": reason})


def validate_table(frame: pd.DataFrame, *, max_rows: int) -> dict[str, np.ndarray]:
    """Check an uploaded table against the contract and return its clean columns.

    Raises:
        ApiError: 422 naming missing columns, or the first bad cells by row and column.
    """
    import pandas as pd  # noqa: PLC0415

    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [name for name in REQUIRED_FIELDS if name not in frame.columns]
    if missing:
        raise ApiError(
            422,
            "missing_columns",
            "The file lacks required columns.",
            [{"field": name, "reason": "required column missing"} for name in missing],
            reason="missing_field",
        )
    if len(frame) == 0:
        raise ApiError(
            422,
            "empty_file",
            "The file has a header but no rows.",
            [{"field": "file", "reason": "no data rows"}],
            reason="empty_file",
        )
    if len(frame) > max_rows:
        raise ApiError(
            413,
            "too_many_rows",
            f"The file has more than {max_rows} rows.",
            [{"field": "file", "reason": f"{len(frame)} rows > {max_rows}"}],
            reason="too_large",
        )
    problems = _Problems()
    clean: dict[str, pd.Series] = {}
    stamps, bad_stamps = _timestamps(frame)
    problems.add(bad_stamps, "timestamp", "missing or not an ISO 8601 date-time")
    clean["timestamp"] = pd.Series(stamps)
    pattern = Transaction.model_fields["customer_id"].metadata
    id_regex = next((m.pattern for m in pattern if getattr(m, "pattern", None)), r".+")
    for name in _ID_FIELDS:
        if name not in frame.columns:
            continue
        text = frame[name].astype("string").str.strip()
        ok = text.str.fullmatch(id_regex).fillna(False) & (text.str.len() <= 64).fillna(False)
        bad = ~ok.to_numpy(dtype=bool)
        if name == "transaction_id":
            bad &= text.notna().to_numpy()
        problems.add(bad, name, "missing or not an identifier (1-64 of A-Z a-z 0-9 _ . : -)")
    for name in ("amount", *AGGREGATE_FIELDS):
        if name not in frame.columns:
            continue
        values, garbage = _numeric(frame, name)
        problems.add(garbage, name, "not a number")
        if name == "amount":
            problems.add(np.isnan(values) & ~garbage, name, "required value missing")
        lower, upper = numeric_bounds(name)
        finite = np.isfinite(values)
        problems.add(np.isinf(values), name, "must be finite")
        if lower is not None:
            problems.add(finite & (values < lower), name, f"must be >= {lower}")
        if upper is not None:
            problems.add(finite & (values > upper), name, f"must be <= {upper}")
        if name in _COUNT_FIELDS:
            problems.add(finite & (np.mod(values, 1.0) != 0), name, "must be a whole number")
        clean[name] = pd.Series(values)
    if problems.count:
        raise ApiError(
            422,
            "invalid_rows",
            f"{problems.count} invalid cells; the first are listed in 'errors'.",
            problems.items,
            reason="invalid_rows",
        )
    return columns_from_frame(pd.DataFrame(clean))


def score_table(
    content: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    scorer: Scorer,
    max_rows: int,
) -> ScoredTable:
    """Parse, validate and score an uploaded table; return it with the score columns added."""
    table_format = detect_format(filename, content_type, content[:4])
    frame = read_table(content, table_format)
    columns = validate_table(frame, max_rows=max_rows)
    matrix = compute_features(columns, scorer.feature_names)
    probabilities = scorer.model.predict(matrix, explain=False).probabilities
    decisions = scorer.decide(probabilities)
    frame["fraud_probability"] = probabilities
    frame["is_fraud"] = decisions.is_fraud
    frame["risk_band"] = decisions.bands
    buffer = io.BytesIO()
    if table_format == "parquet":
        frame.to_parquet(buffer, index=False)
        media_type = PARQUET_MEDIA_TYPE
    else:
        frame.to_csv(buffer, index=False)
        media_type = CSV_MEDIA_TYPE
    return ScoredTable(buffer.getvalue(), media_type, len(frame), probabilities, decisions.is_fraud)


def output_filename(filename: str | None, table_format: TableFormat) -> str:
    """``<stem>.scored.<ext>`` with a safe stem."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", (filename or "transactions").rsplit(".", 1)[0])[:80]
    return f"{stem or 'transactions'}.scored.{'parquet' if table_format == 'parquet' else 'csv'}"
