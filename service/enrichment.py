"""Raw transactions + the history store -> the transactions the model scores.

With ``FRAUD_HISTORY_URL`` set, a caller may send only the raw fields; every aggregate it
leaves out (or sends as null) is filled in from the store, which also records the
transaction. Aggregates the caller sends win: a caller that keeps its own history still can.
When the store is unavailable the transaction is scored as sent (missing aggregates follow the
branch the model learned for them) and its result says ``history: "unavailable"``.

Labels flow the other way (:meth:`HistoryEnricher.apply_labels`): a fraud label marks the
transaction's record in its terminal's history, so the delayed terminal windows and the fraud
run of later transactions count it (from the label delay on, as offline).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from fraud_contract.schema import AGGREGATE_FIELDS, Transaction
from service.errors import InvalidInput

if TYPE_CHECKING:
    from service.history import Aggregates, HistoryStore, Label, LateTransactionError
    from service.ledger.model import LabelTarget
    from service.metrics import ServiceMetrics

HistoryState = Literal["used", "replayed", "unavailable"]
#: What a label did to the history store: ``updated`` (its record is marked), ``not_found``
#: (the store does not hold the transaction: scored while the store was down, or expired),
#: ``unavailable`` (the store did not answer; the label is in the ledger, see docs/ledger.md).
LabelHistoryState = Literal["updated", "not_found", "unavailable"]


@functools.cache
def label_counter() -> Any:
    """``fraud_history_labels_total{outcome}``: labels applied to the store, by outcome.

    Created on first use, inside the worker (prometheus_client must see BentoML's
    multi-process directory first, see :mod:`service.metrics`).
    """
    import prometheus_client as prom  # noqa: PLC0415

    return prom.Counter(
        "fraud_history_labels",
        "Labelled transactions applied to the history store's terminal histories, by outcome: "
        "updated, not_found (the store does not hold it) or unavailable (store down; the "
        "label is kept in the ledger and applied later by `python -m service.ledger "
        "apply-labels`).",
        ["outcome"],
    )


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
        ahead for every later transaction. Old timestamps pass here (replays, late data): only
        the store knows how far behind its card's and terminal's newest one a row is, so
        that check is in :meth:`enrich`.
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

    @staticmethod
    def _refused(
        exc: LateTransactionError,
        n: int,
        *,
        strict: bool,
        refusals: dict[int, InvalidInput] | None,
    ) -> list[Aggregates | None]:
        """The 422s (or the degraded results) of a call the store refused rows of."""
        late = sorted(row for row, why in exc.refused.items() if why != "batch")
        if strict:
            problems = [
                {"field": f"transactions.{row}.timestamp", "reason": exc.reason(row)}
                for row in late
            ]
            raise InvalidInput(
                f"The request has {len(problems)} problem(s); see 'errors'.",
                problems,
                reason="out_of_range",
            ) from None
        if refusals is not None:
            refusals.update({row: _late_error("timestamp", exc.reason(row)) for row in late})
        elif len(late) == n:
            raise _late_error("timestamp", exc.reason(late[0])) from None
        return list(exc.results)

    def apply_labels(self, targets: Sequence[LabelTarget]) -> dict[str, LabelHistoryState]:
        """Mark each transaction's terminal record with its winning label, in one round trip.

        Returns the state per transaction id and counts it; never raises for the store (a
        store outage answers ``unavailable`` for every target).
        """
        from service.history import HistoryUnavailableError  # noqa: PLC0415

        if not targets:
            return {}
        states: dict[str, LabelHistoryState]
        try:
            report = self.store.record_labels(history_labels(targets))
        except HistoryUnavailableError:
            states = {target.transaction_id: "unavailable" for target in targets}
        else:
            states = {
                target.transaction_id: "updated" if found else "not_found"
                for target, found in zip(targets, report.found, strict=True)
            }
        counter = label_counter()
        for state in ("updated", "not_found", "unavailable"):
            count = sum(1 for value in states.values() if value == state)
            if count:
                counter.labels(state).inc(count)
        return states

    def enrich(
        self,
        endpoint: str,
        transactions: Sequence[Transaction],
        *,
        record: bool = True,
        refusals: dict[int, InvalidInput] | None = None,
    ) -> tuple[list[Transaction], list[HistoryState]]:
        """The transactions with their aggregates filled in, and each one's history state.

        A transaction more than ``max_lateness`` behind its card's or terminal's newest one is
        never recorded (the store refuses it, :class:`~service.history.LateTransactionError`):

        * ``batch`` (one request): nothing of the batch is recorded and the request is a 422
          naming ``transactions.N.timestamp``;
        * ``single`` (an adaptive batch of several requests): the others are recorded; the
          late ones go to ``refusals`` (index -> the 422 to answer) when the caller passes a
          dict, else the batch is a 422 naming ``timestamp`` when every row is late, else the
          late rows are scored without history (``unavailable``).
        """
        from service.history import LateTransactionError  # noqa: PLC0415

        strict = endpoint == "batch"
        started = time.perf_counter()
        try:
            found = self.store.update_and_read(transactions, record=record, strict=strict)
        except LateTransactionError as exc:
            self.metrics.observe_history_step(endpoint, time.perf_counter() - started)
            found = self._refused(exc, len(transactions), strict=strict, refusals=refusals)
        else:
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


def _late_error(field: str, reason: str) -> InvalidInput:
    return InvalidInput(
        "The request has 1 problem; see 'errors'.",
        [{"field": field, "reason": reason}],
        reason="out_of_range",
    )


def history_labels(targets: Sequence[LabelTarget]) -> list[Label]:
    """The history store's labels for the ledger's winning labels (no card needed: the
    decision kept the plain-amount flag; unknown counts as not plain)."""
    from service.history import Label  # noqa: PLC0415

    return [
        Label(
            target.terminal_id,
            target.event_time,
            target.fraud,
            target.transaction_id,
            plain=bool(target.plain_amount),
        )
        for target in targets
    ]


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
