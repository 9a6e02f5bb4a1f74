"""Online transaction history in Valkey: the aggregates of raw transactions, server-side.

Public API (see docs/history.md)::

    store = HistoryStore.from_url("valkey://localhost:6379/0")
    aggregates = store.update_and_read(transactions)   # list[Aggregates | None]
    store.record_labels([Label(terminal_id, timestamp, fraud=True, transaction_id, customer_id)])
    store.backfill(frame)                               # BackfillReport (rows/s)
    store.status                                        # HistoryStatus
    store.close()
"""

from service.history.codec import check_row
from service.history.model import (
    AGGREGATE_NAMES,
    Aggregates,
    BackfillReport,
    HistorySettings,
    HistoryStatus,
    HistoryUnavailableError,
    InvalidHistoryRowError,
    Label,
    LabelReport,
    LateTransactionError,
    RawTransaction,
    event_seconds,
)
from service.history.store import HistoryStore

__all__ = [
    "AGGREGATE_NAMES",
    "Aggregates",
    "BackfillReport",
    "HistorySettings",
    "HistoryStatus",
    "HistoryStore",
    "HistoryUnavailableError",
    "InvalidHistoryRowError",
    "Label",
    "LabelReport",
    "LateTransactionError",
    "RawTransaction",
    "check_row",
    "event_seconds",
]
