"""File scoring with the history store: each row's missing aggregates read from it.

A file is read against the history as it stands and never recorded (the documented choice,
docs/history.md): a file is often a back-test or a re-score of transactions the service has
already seen, and recording it would count them twice or far out of order. Each row gets what
it would get as its card's and terminal's next transaction at its own time (rows of the same
file do not see each other); aggregates the file carries win, as in the JSON routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import numpy as np

from fraud_contract.schema import AGGREGATE_FIELDS
from service.errors import ApiError
from service.table_limits import MAX_REPORTED_CELLS, FileJob, check, done

if TYPE_CHECKING:
    from service.history import HistoryStore

#: Rows per read-only store call (one round trip each).
HISTORY_CHUNK_ROWS: Final = 4_096
#: The column the scored file gains with the history store on.
HISTORY_COLUMN: Final = "history"


@dataclass(frozen=True, slots=True)
class _Row:
    """One file row as the store reads it (``service.history.RawTransaction``)."""

    transaction_id: str | None
    timestamp: datetime
    customer_id: str
    terminal_id: str
    amount: float


def read_history(
    store: HistoryStore, columns: dict[str, np.ndarray], job: FileJob | None = None
) -> np.ndarray:
    """Fill the missing aggregates of ``columns`` in place; return each row's state.

    ``columns`` are :func:`service.tables.model_columns` with the identifiers. States are
    ``used`` or ``unavailable`` (the store down or slow for that chunk: the row is scored
    without history, as the JSON routes do).

    Raises:
        ApiError: 422 naming the first rows whose time the store cannot hold.
        AbandonedError: ``job`` was cancelled.
    """
    rows = len(columns["timestamp"])
    _check_times(columns["timestamp"])
    for name in AGGREGATE_FIELDS:
        if not columns[name].flags.writeable:
            columns[name] = columns[name].copy()
    states = np.full(rows, "used", dtype=object)
    stamps = columns["timestamp"].astype("datetime64[us]").astype(datetime)
    for start in range(0, rows, HISTORY_CHUNK_ROWS):
        check(job, "history")
        stop = min(start + HISTORY_CHUNK_ROWS, rows)
        chunk = [
            _Row(
                columns["transaction_id"][i],
                stamps[i],
                columns["customer_id"][i],
                columns["terminal_id"][i],
                float(columns["amount"][i]),
            )
            for i in range(start, stop)
        ]
        found = store.update_and_read(chunk, record=False)
        known = [(i, a[: len(AGGREGATE_FIELDS)]) for i, a in enumerate(found) if a is not None]
        states[start:stop][[i for i, a in enumerate(found) if a is None]] = "unavailable"
        if known:
            values = np.array([values for _, values in known], dtype=np.float64)
            where = np.array([i for i, _ in known]) + start
            for j, name in enumerate(AGGREGATE_FIELDS):
                column = columns[name]
                missing = np.isnan(column[where])
                column[where[missing]] = values[missing, j]
        done(job, "history", stop - start)
    return states


def _check_times(stamps: np.ndarray) -> None:
    """422 for times outside the store's range (unsigned 32-bit seconds since 1970)."""
    seconds = stamps.astype("datetime64[s]").astype(np.int64)
    bad = np.flatnonzero((seconds < 0) | (seconds >= 2**32))
    if bad.size:
        raise ApiError(
            422,
            "invalid_rows",
            f"{bad.size} invalid cells; the first are listed in 'errors'.",
            [
                {"field": f"rows.{row}.timestamp", "reason": "outside 1970-2106 (history store)"}
                for row in bad[:MAX_REPORTED_CELLS]
            ],
            reason="invalid_rows",
        )
