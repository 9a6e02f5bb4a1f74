"""File scoring: read a CSV/Parquet upload within bounds, check it column-wise, add the scores.

One engine on Arrow and numpy. Reading is bounded before decoding (:mod:`service.table_limits`,
:mod:`service.csv_tables`, :mod:`service.parquet_tables`); the contract columns are checked a
whole column at a time (:mod:`service.table_rules`), and the same checks both decide
acceptance and name the first bad cells (``rows.<row>.<column>``, column by column). Columns
the contract does not know are kept in the output (back-office files carry labels, notes,
...) and ignored for scoring. Column names are matched to the contract with surrounding
spaces ignored; a contract column named twice is refused. Score columns already in the
upload are replaced.

Every stage works in chunks (CSV blocks, Parquet row groups, slices of
:data:`~service.table_limits.CHUNK_ROWS` rows) and looks at the job's token
(:class:`~service.table_limits.FileJob`) in between, so a job whose request has gone stops
within one chunk and frees what it built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraud_contract.api import CSV_MEDIA_TYPE, PARQUET_MEDIA_TYPE, SCORE_COLUMNS
from fraud_contract.features import compute_features
from fraud_contract.schema import REQUIRED_FIELDS
from service.csv_tables import read_csv, write_csv
from service.errors import ApiError
from service.file_history import HISTORY_COLUMN, read_history
from service.parquet_tables import read_parquet, write_parquet
from service.table_limits import (
    CHUNK_ROWS,
    MAX_REPORTED_CELLS,
    AbandonedError,
    FileJob,
    FileLimits,
    check,
    done,
)
from service.table_rules import (
    CONTRACT_COLUMNS,
    ID_FIELDS,
    NUMERIC_FIELDS,
    Problems,
    check_identifiers,
    check_numbers,
    check_timestamps,
    identifier_values,
    text_array,
)

if TYPE_CHECKING:
    from service.history import HistoryStore
    from service.scoring import Decisions, Scorer

__all__ = [
    "AbandonedError",
    "FileJob",
    "FileLimits",
    "ScoredTable",
    "detect_format",
    "output_filename",
    "release_memory",
    "score_table",
]

TableFormat = Literal["csv", "parquet"]
_PARQUET_MAGIC: Final = b"PAR1"


@dataclass(frozen=True)
class ScoredTable:
    """The scored file, ready to send."""

    content: bytes
    media_type: str
    rows: int
    decisions: Decisions
    #: Each row's history state (``used``/``unavailable``) with the history store on.
    history: np.ndarray | None = None
    #: The checked model input columns with the identifiers (``with_columns``; for the ledger).
    columns: dict[str, np.ndarray] | None = None

    @property
    def probabilities(self) -> np.ndarray:
        """Each row's fraud probability."""
        return self.decisions.probabilities

    @property
    def is_fraud(self) -> np.ndarray:
        """Each row's decision (probability at or above the threshold)."""
        return self.decisions.is_fraud


def detect_format(filename: str | None, content_type: str | None, head: bytes) -> TableFormat:
    """Parquet by magic bytes, extension or media type; CSV otherwise."""
    name = (filename or "").lower()
    if head.startswith(_PARQUET_MAGIC) or name.endswith((".parquet", ".pq")):
        return "parquet"
    if content_type and "parquet" in content_type:
        return "parquet"
    return "csv"


def output_filename(filename: str | None, table_format: TableFormat) -> str:
    """``<stem>.scored.<ext>`` with a safe stem."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", (filename or "transactions").rsplit(".", 1)[0])[:80]
    return f"{stem or 'transactions'}.scored.{'parquet' if table_format == 'parquet' else 'csv'}"


def score_table(
    content: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    scorer: Scorer,
    max_rows: int,
    limits: FileLimits | None = None,
    neutralise_formulas: bool = True,
    job: FileJob | None = None,
    history: HistoryStore | None = None,
    with_columns: bool = False,
) -> ScoredTable:
    """Read, check and score an uploaded table; return it with the score columns added.

    Args:
        content: the uploaded bytes.
        filename, content_type: as the client sent them (they decide the format with the
            magic bytes, see :func:`detect_format`).
        scorer: the model and its decision rules.
        max_rows: more rows than this is a 413.
        limits: bounds checked before decoding (defaults: :class:`FileLimits`).
        neutralise_formulas: CSV output only: prefix cells a spreadsheet would run as a
            formula with ``'`` (see :mod:`service.csv_tables`).
        job: cancellation token, checked between chunks (None: runs to the end).
        history: the history store: missing aggregates are read from it, nothing is
            recorded, and the output gains a ``history`` column (:mod:`service.file_history`).
        with_columns: return the checked columns with the identifiers too (what the
            ledger records of each row).

    Raises:
        ApiError: 400 unreadable or empty file, 413 over a limit, 422 missing columns, no
            rows or bad cells (the first ones named by row and column).
        AbandonedError: ``job`` was cancelled or passed its deadline.
    """
    limits = limits or FileLimits()
    if not content:
        raise ApiError(
            400,
            "empty_file",
            "The uploaded file is empty.",
            [{"field": "file", "reason": "no bytes received"}],
            reason="empty_file",
        )
    table_format = detect_format(filename, content_type, content[:4])
    names = (*SCORE_COLUMNS, HISTORY_COLUMN) if history is not None else SCORE_COLUMNS
    ids = history is not None or with_columns
    if table_format == "parquet":
        table = read_parquet(content, limits, max_rows, job)
        columns = model_columns(table, max_rows=max_rows, job=job, ids=ids)
        states = None if history is None else read_history(history, columns, job)
        decisions = _decide(scorer, columns, job)
        arrays = _score_arrays(decisions) + _history_array(states)
        scored = write_parquet(table, arrays, job, names=names)
        media_type = PARQUET_MEDIA_TYPE
    else:
        source = read_csv(content, limits, job)
        columns = model_columns(source.table, max_rows=max_rows, job=job, ids=ids)
        states = None if history is None else read_history(history, columns, job)
        decisions = _decide(scorer, columns, job)
        cells = _score_text(decisions) + _history_array(states)
        scored = write_csv(
            source, cells, neutralise_formulas=neutralise_formulas, job=job, names=names
        )
        media_type = CSV_MEDIA_TYPE
    return ScoredTable(
        scored,
        media_type,
        len(decisions.probabilities),
        decisions,
        states,
        columns if with_columns else None,
    )


def _history_array(states: np.ndarray | None) -> list[pa.Array]:
    """The ``history`` column's cells (none without the history store)."""
    return [] if states is None else [text_array(list(states))]


def release_memory() -> None:
    """Hand the Arrow memory pool's free pages back to the system (after an abandoned job).

    Arrow's allocator keeps freed pages for reuse; without this a worker's resident memory
    stays at the abandoned job's peak.
    """
    pa.default_memory_pool().release_unused()


def _decide(scorer: Scorer, columns: dict[str, np.ndarray], job: FileJob | None) -> Decisions:
    """Features and probabilities :data:`CHUNK_ROWS` rows at a time, then the decisions."""
    rows = len(columns["timestamp"])
    probabilities = []
    for start in range(0, rows, CHUNK_ROWS):
        check(job, "scoring")
        piece = {name: values[start : start + CHUNK_ROWS] for name, values in columns.items()}
        matrix = compute_features(piece, scorer.feature_names)
        probabilities.append(scorer.model.predict(matrix, explain=False).probabilities)
        done(job, "scored", len(matrix))
    return scorer.decide(np.concatenate(probabilities))


def _score_arrays(decisions: Decisions) -> list[pa.Array]:
    bands = text_array(list(decisions.band_names))
    return [
        pa.array(decisions.probabilities, type=pa.float64()),
        pa.array(decisions.is_fraud, type=pa.bool_()),
        bands.take(pa.array(decisions.band_index)),
    ]


def _score_text(decisions: Decisions) -> list[pa.Array]:
    """The score cells as CSV text (shortest float64 text; ``True``/``False``; band name)."""
    probabilities, flags, bands = _score_arrays(decisions)
    return [
        pc.cast(probabilities, pa.string()),
        pc.if_else(flags, "True", "False"),
        bands,
    ]


def model_columns(
    table: pa.Table, *, max_rows: int, job: FileJob | None = None, ids: bool = False
) -> dict[str, np.ndarray]:
    """Check an uploaded table against the contract; return its model input columns.

    With ``ids``, also the identifier columns (:data:`ID_FIELDS`, Python text, None where
    empty), which the history store needs.

    The cells are checked :data:`CHUNK_ROWS` rows at a time (``job`` checked in between);
    the report is the same as for one pass over the whole table.

    Raises:
        ApiError: 422 naming missing or repeated contract columns, a table without rows,
            or the first bad cells; 413 over ``max_rows``.
        AbandonedError: ``job`` was cancelled.
    """
    names = [name.strip() for name in table.column_names]
    repeated = sorted({n for n in names if n in CONTRACT_COLUMNS and names.count(n) > 1})
    if repeated:
        raise ApiError(
            422,
            "duplicate_columns",
            "The file names a contract column more than once.",
            [{"field": name, "reason": "column appears more than once"} for name in repeated],
            reason="invalid_rows",
        )
    missing = [name for name in REQUIRED_FIELDS if name not in names]
    if missing:
        raise ApiError(
            422,
            "missing_columns",
            "The file lacks required columns.",
            [{"field": name, "reason": "required column missing"} for name in missing],
            reason="missing_field",
        )
    rows = table.num_rows
    if rows == 0:
        raise ApiError(
            422,
            "empty_file",
            "The file has a header but no rows.",
            [{"field": "file", "reason": "no data rows"}],
            reason="empty_file",
        )
    if rows > max_rows:
        raise ApiError(
            413,
            "too_many_rows",
            f"The file has more than {max_rows} rows.",
            [{"field": "file", "reason": f"{rows} rows > {max_rows}"}],
            reason="too_large",
        )
    positions = {name: i for i, name in enumerate(names) if name in CONTRACT_COLUMNS}
    report = _Report()
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, rows, CHUNK_ROWS):
        check(job, "checking")
        piece = table.slice(start, CHUNK_ROWS)
        columns = _checked(piece, positions, report, start, ids=ids)
        if not report.count:  # once a cell is bad only the report is needed
            parts.append(columns)
        done(job, "checked", piece.num_rows)
    report.raise_if_any()
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _checked(
    piece: pa.Table, positions: dict[str, int], report: _Report, offset: int, *, ids: bool
) -> dict[str, np.ndarray]:
    """The model input columns of rows ``offset...`` of the table; bad cells go to ``report``."""
    present = {name: _decoded(piece.column(i)) for name, i in positions.items()}
    stamps, problems = check_timestamps(present["timestamp"])
    report.add("timestamp", problems, offset)
    for name in ID_FIELDS:
        if name in present:
            required = name != "transaction_id"
            report.add(name, check_identifiers(present[name], required=required), offset)
    columns: dict[str, np.ndarray] = {"timestamp": stamps}
    for name in NUMERIC_FIELDS:
        columns[name], problems = check_numbers(present.get(name), name, piece.num_rows)
        report.add(name, problems, offset)
    if ids and not report.count:
        for name in ID_FIELDS:
            columns[name] = identifier_values(present.get(name), piece.num_rows)
    return columns


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary (categorical) column as its values."""
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


class _Report:
    """The first bad cells, column by column, and how many there are in all.

    Rows come in chunks: the first rows of each (column, reason) are kept in the order the
    checks first named them, so the report does not depend on the chunk size.
    """

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], list[int]] = {}
        self.count = 0

    def add(self, column: str, problems: Problems, offset: int = 0) -> None:
        for mask, reason in problems:
            first = self.first.setdefault((column, reason), [])
            rows = np.flatnonzero(mask)
            self.count += int(rows.size)
            if len(first) < MAX_REPORTED_CELLS:
                first.extend((rows[: MAX_REPORTED_CELLS - len(first)] + offset).tolist())

    def items(self) -> list[dict[str, str]]:
        items: list[dict[str, str]] = []
        for (column, reason), rows in self.first.items():
            for row in rows[: max(0, MAX_REPORTED_CELLS - len(items))]:
                items.append({"field": f"rows.{row}.{column}", "reason": reason})
        return items

    def raise_if_any(self) -> None:
        if self.count:
            raise ApiError(
                422,
                "invalid_rows",
                f"{self.count} invalid cells; the first are listed in 'errors'.",
                self.items(),
                reason="invalid_rows",
            )
