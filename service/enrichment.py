"""Raw transactions + the history store -> the transactions the model scores.

With ``FRAUD_HISTORY_URL`` set, a caller may send only the raw fields; every aggregate it
leaves out (or sends as null) is filled in from the store, which also records the
transaction. Aggregates the caller sends win: a caller that keeps its own history still can.
When the store is unavailable the transaction is scored as sent (missing aggregates follow the
branch the model learned for them) and its result says ``history: "unavailable"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from fraud_contract.schema import AGGREGATE_FIELDS, Transaction
from service.errors import InvalidInput

if TYPE_CHECKING:
    from service.history import HistoryStore
    from service.metrics import ServiceMetrics

HistoryState = Literal["used", "replayed", "unavailable"]


class HistoryEnricher:
    """Fills a batch's missing aggregates from the store, in one round trip per batch."""

    def __init__(
        self, store: HistoryStore, metrics: ServiceMetrics, max_future_s: float = 300.0
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_future_s = max_future_s

    def check(self, transactions: Sequence[Transaction], prefix: str = "") -> None:
        """422 naming the field of a transaction the store must not record (before any write).

        Refused: timestamps the store cannot hold, and timestamps further in the future (wall
        clock) than ``max_future_s``: a clock error would otherwise push the card's windows
        ahead for every later transaction. Old timestamps are fine (replays, late data).
        """
        from service.history import InvalidHistoryRowError, check_row  # noqa: PLC0415

        latest = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=self.max_future_s)
        for index, transaction in enumerate(transactions):
            where = f"{prefix}{index}." if prefix else ""
            try:
                check_row(transaction)
            except InvalidHistoryRowError as exc:
                raise InvalidInput(
                    "The request has 1 problem; see 'errors'.",
                    [{"field": f"{where}{exc.field}", "reason": str(exc)}],
                    reason="out_of_range",
                ) from None
            if transaction.timestamp.replace(tzinfo=None) > latest:
                raise InvalidInput(
                    "The request has 1 problem; see 'errors'.",
                    [
                        {
                            "field": f"{where}timestamp",
                            "reason": f"more than {self.max_future_s:g} s in the future",
                        }
                    ],
                    reason="out_of_range",
                )

    def enrich(
        self, endpoint: str, transactions: Sequence[Transaction], *, record: bool = True
    ) -> tuple[list[Transaction], list[HistoryState]]:
        """The transactions with their aggregates filled in, and each one's history state."""
        started = time.perf_counter()
        found = self.store.update_and_read(transactions, record=record)
        self.metrics.observe_history_step(endpoint, time.perf_counter() - started)
        enriched: list[Transaction] = []
        states: list[HistoryState] = []
        for transaction, aggregates in zip(transactions, found, strict=True):
            if aggregates is None:
                enriched.append(transaction)
                states.append("unavailable")
                continue
            update = {
                name: value
                for name, value in aggregates.as_fields().items()
                if getattr(transaction, name) is None
            }
            enriched.append(transaction.model_copy(update=update) if update else transaction)
            states.append("replayed" if aggregates.replayed else "used")
        self.metrics.observe_history(endpoint, states)
        return enriched, states


def annotate(
    results: list[dict[str, Any]],
    transactions: Sequence[Transaction],
    states: Sequence[HistoryState],
    explain: Sequence[bool] | None,
) -> None:
    """Add ``history`` (and, where reasons were asked for, ``aggregates``) to each result."""
    for i, result in enumerate(results):
        result["history"] = states[i]
        if explain is not None and explain[i]:
            transaction = transactions[i]
            result["aggregates"] = {name: getattr(transaction, name) for name in AGGREGATE_FIELDS}
